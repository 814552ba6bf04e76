"""The per-run ``Transformer.open`` hook: entered around a stage's loop, exited in order."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from ductwork import (
    Batch,
    ExtractError,
    Loader,
    LoadError,
    Pipeline,
    RunContext,
    Sink,
    Transformer,
    TransformError,
    transformer,
)


def numbers(total: int, size: int) -> Any:
    async def extract(ctx: RunContext) -> AsyncIterator[Batch]:
        for start in range(0, total, size):
            yield [{"n": n} for n in range(start, min(start + size, total))]

    return extract


class EventLoader(Loader):
    """Records what happened, in order, into a shared event list."""

    def __init__(self, events: list[str], fail_on: int | None = None) -> None:
        self.events = events
        self.fail_on = fail_on
        self.rows: list[dict[str, Any]] = []

    @asynccontextmanager
    async def open(self, ctx: RunContext) -> AsyncIterator[Sink]:
        loader = self

        class _Sink:
            async def write(self, batch: Batch) -> None:
                if loader.fail_on is not None and batch[0]["n"] >= loader.fail_on:
                    raise RuntimeError("load failed")
                loader.rows.extend(batch)

        try:
            yield _Sink()
        except BaseException:
            self.events.append("load discarded")
            raise
        self.events.append("load committed")


class Counting(Transformer):
    """A transformer whose per-run state is a counter; logs its open and close."""

    name = "counting"

    def __init__(self, events: list[str], fail_on_exit: bool = False) -> None:
        self.events = events
        self.fail_on_exit = fail_on_exit
        self.exits: list[type[BaseException] | None] = []

    async def transform(self, batch: Batch, ctx: RunContext) -> Batch:
        raise AssertionError("the runner must use the per-run transformer")

    def open(self, ctx: RunContext) -> Any:
        outer = self

        class _Run(Transformer):
            name = "counting"

            def __init__(self) -> None:
                self.seen = 0

            async def transform(self, batch: Batch, ctx: RunContext) -> Batch:
                out = [{**r, "seen": self.seen + i, "run": ctx.run_id} for i, r in enumerate(batch)]
                self.seen += len(batch)
                return out

        @asynccontextmanager
        async def scope() -> AsyncIterator[Transformer]:
            outer.events.append("transform opened")
            try:
                yield _Run()
            except BaseException as exc:
                outer.exits.append(type(exc))
                outer.events.append("transform closed after error")
                raise
            outer.exits.append(None)
            outer.events.append("transform closed")
            if outer.fail_on_exit:
                raise RuntimeError("commit failed")

        return scope()


async def test_per_run_state_and_exit_before_the_loader_commits() -> None:
    events: list[str] = []
    stage = Counting(events)
    loader = EventLoader(events)
    pipeline = Pipeline(numbers(10, 3), [stage], loader, logging=False)
    result = await pipeline.run()
    assert [r["seen"] for r in loader.rows] == list(range(10))
    assert events == ["transform opened", "transform closed", "load committed"]
    assert stage.exits == [None]
    assert result.records_out == 10


async def test_concurrent_runs_have_separate_state() -> None:
    events: list[str] = []
    stage = Counting(events)
    rows: list[list[dict[str, Any]]] = [[], []]

    async def run(i: int) -> None:
        pipeline = Pipeline(numbers(50, 1), [stage], rows[i].extend, logging=False, queue_size=1)
        await pipeline.run()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run, 0)
        tg.start_soon(run, 1)
    for out in rows:
        assert [r["seen"] for r in out] == list(range(50))
        assert len({r["run"] for r in out}) == 1
    assert rows[0][0]["run"] != rows[1][0]["run"]
    assert events.count("transform opened") == 2
    assert stage.exits == [None, None]


async def test_failure_elsewhere_exits_with_the_exception() -> None:
    events: list[str] = []
    stage = Counting(events)
    loader = EventLoader(events, fail_on=0)
    pipeline = Pipeline(numbers(100, 1), [stage], loader, logging=False, queue_size=1)
    with pytest.raises(LoadError, match="load failed"):
        await pipeline.run()
    assert events[0] == "transform opened"
    assert "transform closed after error" in events
    assert "load discarded" in events
    assert "load committed" not in events
    assert len(stage.exits) == 1
    assert stage.exits[0] is not None


async def test_an_error_on_exit_fails_the_run_before_the_loader_commits() -> None:
    events: list[str] = []
    stage = Counting(events, fail_on_exit=True)
    loader = EventLoader(events)
    pipeline = Pipeline(numbers(5, 2), [stage], loader, logging=False)
    with pytest.raises(TransformError, match="commit failed") as info:
        await pipeline.run()
    assert info.value.stage == "counting"
    assert events[:2] == ["transform opened", "transform closed"]
    assert events[2:] in ([], ["load discarded"])  # the loader may not even have opened


async def test_a_cleanup_error_is_noted_on_the_original_error() -> None:
    class Broken(Transformer):
        name = "broken"

        async def transform(self, batch: Batch, ctx: RunContext) -> Batch:
            raise ValueError("bad batch")

        def open(self, ctx: RunContext) -> Any:
            stage = self

            @asynccontextmanager
            async def scope() -> AsyncIterator[Transformer]:
                try:
                    yield stage
                finally:
                    raise OSError("cleanup failed")

            return scope()

    pipeline = Pipeline(numbers(3, 1), [Broken()], [].extend, logging=False)
    with pytest.raises(TransformError, match="bad batch") as info:
        await pipeline.run()
    notes = getattr(info.value.__cause__, "__notes__", [])
    assert any("cleanup failed" in note and "'broken'" in note for note in notes)


async def test_open_must_return_an_async_context_manager() -> None:
    class Wrong(Transformer):
        async def transform(self, batch: Batch, ctx: RunContext) -> Batch:
            return batch

        def open(self, ctx: RunContext) -> Any:
            return self

    pipeline = Pipeline(numbers(3, 1), [Wrong()], [].extend, logging=False)
    with pytest.raises(TransformError, match="not an async context manager"):
        await pipeline.run()


async def test_open_must_yield_a_transformer() -> None:
    class Wrong(Transformer):
        async def transform(self, batch: Batch, ctx: RunContext) -> Batch:
            return batch

        def open(self, ctx: RunContext) -> Any:
            @asynccontextmanager
            async def scope() -> AsyncIterator[Any]:
                yield 42

            return scope()

    pipeline = Pipeline(numbers(3, 1), [Wrong()], [].extend, logging=False)
    with pytest.raises(TransformError, match="yielded int, not a transformer"):
        await pipeline.run()


async def test_concurrent_stage_uses_the_opened_transformer_in_order() -> None:
    events: list[str] = []

    class Slow(Counting):
        concurrency = 4

        def open(self, ctx: RunContext) -> Any:
            inner = super().open(ctx)

            @asynccontextmanager
            async def scope() -> AsyncIterator[Transformer]:
                async with inner as run:

                    class _Sleepy(Transformer):
                        async def transform(self, batch: Batch, ctx: RunContext) -> Batch:
                            out = await run.transform(batch, ctx)
                            await anyio.sleep(0.001 * (5 - batch[0]["n"] % 5))
                            return out

                    yield _Sleepy()

            return scope()

    rows: list[dict[str, Any]] = []
    pipeline = Pipeline(numbers(40, 1), [Slow(events)], rows.extend, logging=False)
    await pipeline.run()
    assert [r["n"] for r in rows] == list(range(40))
    assert events == ["transform opened", "transform closed"]


async def test_default_open_yields_the_transformer_itself() -> None:
    stage = transformer(lambda batch: batch, name="same")
    async with stage.open(RunContext()) as opened:
        assert opened is stage


async def test_upstream_failure_after_the_last_batch_is_not_a_clean_exit() -> None:
    # The extractor hands its last batch over and fails in the same step; the transformer then
    # sees the end of its input before the cancellation reaches it. It must not close as if the
    # run had succeeded.
    async def extract(ctx: RunContext) -> AsyncIterator[Batch]:
        await anyio.sleep(0.001)  # the other stages start and wait for input
        yield [{"n": 0}]
        await anyio.sleep(0.001)
        yield [{"n": 1}]  # handed to the waiting transformer in the same step as the failure
        raise ConnectionError("reset")

    for _ in range(10):
        events: list[str] = []
        stage = Counting(events)
        loader = EventLoader(events)
        with pytest.raises(ExtractError, match="reset"):
            await Pipeline(extract, [stage], loader, logging=False).run()
        assert len(stage.exits) == 1
        assert stage.exits[0] is not None
        assert "transform closed" not in events
        assert "load committed" not in events

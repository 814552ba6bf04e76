"""Extractors that push batches through ``produce(ctx, emit)`` instead of being iterated."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import pytest

from ductwork import (
    Batch,
    ExtractError,
    Extractor,
    LoadError,
    MemoryStateStore,
    RunContext,
    create_el_pipeline,
)

Emit = Callable[[Batch], Awaitable[None]]


class ConcurrentPusher(Extractor):
    """Fetches ``pages`` 'pages' concurrently in its own task group, emitting them in order."""

    name = "pusher"

    def __init__(self, pages: int, fail_at: int | None = None) -> None:
        self.pages = pages
        self.fail_at = fail_at
        self.committed: list[str] = []
        self.live_tasks = 0

    def extract(self, ctx: RunContext) -> AsyncIterator[Batch]:
        raise AssertionError("a pipeline must call produce(), not extract()")

    async def produce(self, ctx: RunContext, emit: Emit) -> Callable[[], Awaitable[None]]:
        done = [anyio.Event() for _ in range(self.pages)]
        results: list[Batch] = [[] for _ in range(self.pages)]

        async def fetch(i: int) -> None:
            self.live_tasks += 1
            try:
                await anyio.sleep(0.001 * (self.pages - i))  # later pages finish first
                results[i] = [{"page": i, "n": n} for n in range(3)]
                done[i].set()
            finally:
                self.live_tasks -= 1

        async with anyio.create_task_group() as tg:
            for i in range(self.pages):
                tg.start_soon(fetch, i)
            for i in range(self.pages):
                await done[i].wait()
                if i == self.fail_at:
                    raise RuntimeError(f"page {i} is broken")
                await emit(results[i])  # awaited inside the task group: allowed

        async def commit() -> None:
            self.committed.append(ctx.run_id)

        return commit


async def test_push_extractor_batches_arrive_in_order_and_are_counted() -> None:
    rows: list[dict[str, Any]] = []
    extractor = ConcurrentPusher(pages=6)
    result = await create_el_pipeline(extractor, rows.extend, logging=False).run()
    assert [r["page"] for r in rows] == [p for p in range(6) for _ in range(3)]
    stage = result.stages[0]
    assert (stage.name, stage.batches_out, stage.records_out) == ("pusher", 6, 18)
    assert result.records_out == 18
    assert extractor.committed == [result.run_id]


async def test_commit_is_skipped_when_the_loader_fails() -> None:
    extractor = ConcurrentPusher(pages=3)

    def load(batch: Batch) -> None:
        if batch[0]["page"] == 2:
            raise ValueError("disk full")

    with pytest.raises(LoadError, match="disk full"):
        await create_el_pipeline(extractor, load, logging=False).run()
    assert extractor.committed == []


async def test_produce_error_fails_the_run_and_leaves_no_task() -> None:
    extractor = ConcurrentPusher(pages=5, fail_at=2)
    rows: list[dict[str, Any]] = []
    with pytest.raises(ExtractError, match="page 2 is broken") as info:
        await create_el_pipeline(extractor, rows.extend, name="p", logging=False).run()
    assert info.value.stage == "pusher"
    assert info.value.pipeline == "p"
    assert isinstance(info.value.__cause__, RuntimeError)
    assert extractor.live_tasks == 0
    assert extractor.committed == []
    assert {r["page"] for r in rows} <= {0, 1}


async def test_emit_applies_backpressure() -> None:
    emitted = 0
    release = anyio.Event()

    class Fast(Extractor):
        def extract(self, ctx: RunContext) -> AsyncIterator[Batch]:
            raise AssertionError

        async def produce(self, ctx: RunContext, emit: Emit) -> None:
            nonlocal emitted
            for i in range(50):
                await emit([{"i": i}])
                emitted += 1

    async def slow_load(batch: Batch) -> None:
        await release.wait()

    pipeline = create_el_pipeline(Fast(), slow_load, queue_size=2, logging=False)
    async with anyio.create_task_group() as tg:
        tg.start_soon(pipeline.run)
        await anyio.sleep(0.05)
        # one batch held by the loader, two in the stream, one waiting in emit
        assert emitted <= 4
        release.set()
    assert emitted == 50


async def test_emit_checks_the_batch_shape() -> None:
    class Bad(Extractor):
        def extract(self, ctx: RunContext) -> AsyncIterator[Batch]:
            raise AssertionError

        async def produce(self, ctx: RunContext, emit: Emit) -> None:
            await emit([])  # empty batches are dropped
            await emit({"id": 1})  # type: ignore[arg-type]

    with pytest.raises(ExtractError, match="single record") as info:
        await create_el_pipeline(Bad(), [].extend, logging=False).run()
    assert info.value.retryable is False


async def test_failing_commit_fails_the_run() -> None:
    class FailingCommit(Extractor):
        name = "cursor"

        def extract(self, ctx: RunContext) -> AsyncIterator[Batch]:
            raise AssertionError

        async def produce(self, ctx: RunContext, emit: Emit) -> Callable[[], Awaitable[None]]:
            await emit([{"id": 1}])

            async def commit() -> None:
                assert ctx.state is not None
                await ctx.state.set("k", {1, 2})  # not JSON-serialisable

            return commit

    with pytest.raises(ExtractError, match="stage failed") as info:
        await create_el_pipeline(
            FailingCommit(), [].extend, logging=False, state=MemoryStateStore()
        ).run()
    assert info.value.stage == "cursor"


async def test_produce_must_return_none_or_a_callable() -> None:
    class Weird(Extractor):
        def extract(self, ctx: RunContext) -> AsyncIterator[Batch]:
            raise AssertionError

        async def produce(self, ctx: RunContext, emit: Emit) -> Any:
            return 42

    with pytest.raises(ExtractError, match="returned int"):
        await create_el_pipeline(Weird(), [].extend, logging=False).run()


async def test_cancelling_the_run_cancels_the_pushers_tasks() -> None:
    started = anyio.Event()
    cancelled = False

    class Forever(Extractor):
        def extract(self, ctx: RunContext) -> AsyncIterator[Batch]:
            raise AssertionError

        async def produce(self, ctx: RunContext, emit: Emit) -> None:
            nonlocal cancelled

            async def worker() -> None:
                nonlocal cancelled
                try:
                    started.set()
                    await anyio.sleep_forever()
                except anyio.get_cancelled_exc_class():
                    cancelled = True
                    raise

            async with anyio.create_task_group() as tg:
                tg.start_soon(worker)

    pipeline = create_el_pipeline(Forever(), [].extend, logging=False)
    with anyio.move_on_after(5) as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(pipeline.run)
            await started.wait()
            tg.cancel_scope.cancel()
    assert not scope.cancelled_caught
    assert cancelled

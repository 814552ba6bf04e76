"""The dead-letter sink: opened per run, lazily, closed in order, discarded on failure."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from ductwork import (
    Batch,
    Loader,
    Pipeline,
    RunContext,
    RunTimeoutError,
    Sink,
    TransformError,
    convert_types,
    create_lambda_transformer,
)


class RecordingLoader(Loader):
    """Buffers a run's batches and commits them only on a clean exit; logs what happens."""

    def __init__(self, label: str, events: list[tuple[Any, ...]], fail_write: bool = False):
        self.name = label
        self.label = label
        self.events = events
        self.fail_write = fail_write
        self.committed: dict[str, Batch] = {}

    @asynccontextmanager
    async def open(self, ctx: RunContext) -> AsyncIterator[Sink]:
        buffer: Batch = []
        loader = self
        opened_in = anyio.get_current_task().id
        self.events.append((self.label, "open", ctx.run_id))

        class _Sink:
            async def write(self, batch: Batch) -> None:
                await anyio.sleep(0)
                if loader.fail_write:
                    raise OSError("disk full")
                buffer.extend(batch)

        try:
            yield _Sink()
        except BaseException as exc:
            self.events.append((self.label, "discard", type(exc).__name__))
            raise
        finally:
            assert anyio.get_current_task().id == opened_in, "closed in another task"
        self.committed[ctx.run_id] = buffer
        self.events.append((self.label, "commit", len(buffer)))


def batches_of(values: list[list[Any]]) -> Any:
    async def extract(ctx: RunContext) -> AsyncIterator[Batch]:
        for batch in values:
            yield [{"n": v} for v in batch]

    return extract


def converter(sink: Any) -> Any:
    return convert_types({"n": int}, error_handling="dead_letter", dead_letter_sink=sink)


async def test_not_opened_without_dead_letters() -> None:
    events: list[tuple[Any, ...]] = []
    dead = RecordingLoader("dead", events)
    main = RecordingLoader("main", events)
    await Pipeline(batches_of([["1"], ["2"]]), [converter(dead)], main, logging=False).run()
    assert [e for e in events if e[0] == "dead"] == []
    assert events[-1] == ("main", "commit", 2)


async def test_opened_once_per_run_and_committed_before_the_loader() -> None:
    events: list[tuple[Any, ...]] = []
    dead = RecordingLoader("dead", events)
    main = RecordingLoader("main", events)
    pipeline = Pipeline(
        batches_of([["1", "x"], ["2"], ["y", "z", "3"]]), [converter(dead)], main, logging=False
    )
    result = await pipeline.run()
    steps = [e[:2] for e in events]
    assert sorted(steps[:2]) == [("dead", "open"), ("main", "open")]
    assert steps[2:] == [("dead", "commit"), ("main", "commit")]
    letters = dead.committed[result.run_id]
    assert [(d["position"], d["record"]) for d in letters] == [
        (1, {"n": "x"}),
        (3, {"n": "y"}),
        (4, {"n": "z"}),
    ]
    assert {d["run_id"] for d in letters} == {result.run_id}
    assert {d["stage"] for d in letters} == {"convert_types"}
    assert result.stage("convert_types").metrics == {"dead_letters": 3}
    assert "dead_letters 3" in result.summary()
    assert [r["n"] for r in main.committed[result.run_id]] == [1, 2, 3]


async def test_concurrent_runs_get_their_own_sinks() -> None:
    events: list[tuple[Any, ...]] = []
    dead = RecordingLoader("dead", events)
    stage = converter(dead)
    values = [[str(i) if i % 4 else "bad" for i in range(j, j + 5)] for j in range(0, 40, 5)]
    results = []

    async def one_run() -> None:
        pipeline = Pipeline(batches_of(values), [stage], [].extend, logging=False, queue_size=1)
        results.append(await pipeline.run())

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(one_run)
    assert len(dead.committed) == 3
    for result in results:
        letters = dead.committed[result.run_id]
        assert [d["position"] for d in letters] == list(range(0, 40, 4))
        assert {d["run_id"] for d in letters} == {result.run_id}
        assert result.stage("convert_types").metrics == {"dead_letters": 10}


async def test_discarded_when_a_later_stage_fails() -> None:
    events: list[tuple[Any, ...]] = []
    dead = RecordingLoader("dead", events)
    main = RecordingLoader("main", events)

    def explode(batch: Batch) -> Batch:
        if batch[0]["n"] >= 3:
            raise RuntimeError("downstream broke")
        return batch

    values = [["x", "1"]] + [[str(n)] for n in range(2, 60)]
    pipeline = Pipeline(
        batches_of(values), [converter(dead), explode], main, logging=False, queue_size=1
    )
    with pytest.raises(TransformError, match="downstream broke"):
        await pipeline.run()
    assert [e[:2] for e in events if e[0] == "dead"] == [("dead", "open"), ("dead", "discard")]
    assert dead.committed == {}
    assert main.committed == {}


async def test_discarded_when_the_run_times_out() -> None:
    events: list[tuple[Any, ...]] = []
    dead = RecordingLoader("dead", events)

    async def extract(ctx: RunContext) -> AsyncIterator[Batch]:
        yield [{"n": "x"}]
        await anyio.sleep(30)
        yield [{"n": "1"}]

    pipeline = Pipeline(extract, [converter(dead)], [].extend, logging=False, timeout=0.2)
    with pytest.raises(RunTimeoutError):
        await pipeline.run()
    assert [e[:2] for e in events] == [("dead", "open"), ("dead", "discard")]
    assert dead.committed == {}


async def test_a_failing_sink_fails_the_run() -> None:
    events: list[tuple[Any, ...]] = []
    dead = RecordingLoader("dead", events, fail_write=True)
    main = RecordingLoader("main", events)
    pipeline = Pipeline(batches_of([["1"], ["x"], ["2"]]), [converter(dead)], main, logging=False)
    with pytest.raises(TransformError, match="disk full") as info:
        await pipeline.run()
    assert info.value.stage == "convert_types"
    assert isinstance(info.value.__cause__, OSError)
    assert ("dead", "discard", "OSError") in events
    assert main.committed == {}


async def test_a_sink_that_cannot_open_fails_the_run() -> None:
    class Unopenable(Loader):
        @asynccontextmanager
        async def open(self, ctx: RunContext) -> AsyncIterator[Sink]:
            raise PermissionError("no access")
            yield  # pragma: no cover

    pipeline = Pipeline(batches_of([["x"]]), [converter(Unopenable())], [].extend, logging=False)
    with pytest.raises(TransformError, match="no access"):
        await pipeline.run()


async def test_concurrent_stage_opens_its_sink_at_the_start_in_its_own_task() -> None:
    events: list[tuple[Any, ...]] = []
    dead = RecordingLoader("dead", events)

    async def picky(batch: Batch) -> Batch:
        await anyio.sleep(0.001 * (3 - int(batch[0]["n"]) % 3))
        if int(batch[0]["n"]) % 5 == 0:
            raise ValueError("multiple of five")
        return batch

    stage = create_lambda_transformer(
        picky, per="batch", concurrency=3, error_handling="dead_letter", dead_letter_sink=dead
    )
    rows: Batch = []
    result = await Pipeline(
        batches_of([[str(n)] for n in range(20)]), [stage], rows.extend, logging=False
    ).run()
    assert [int(r["n"]) for r in rows] == [n for n in range(20) if n % 5]
    assert sorted(d["position"] for d in dead.committed[result.run_id]) == [0, 5, 10, 15]
    assert [e[:2] for e in events] == [("dead", "open"), ("dead", "commit")]

    # opened at stage start even when nothing fails
    events.clear()
    await Pipeline(batches_of([["1"]]), [stage], [].extend, logging=False).run()
    assert [e[:2] for e in events] == [("dead", "open"), ("dead", "commit")]


async def test_direct_calls_are_runs_of_their_own() -> None:
    events: list[tuple[Any, ...]] = []
    dead = RecordingLoader("dead", events)
    stage = converter(dead)
    ctx = RunContext()
    assert await stage.transform([{"n": "x"}, {"n": "2"}], ctx) == [{"n": 2}]
    assert await stage.transform([{"n": "y"}], ctx) == []
    assert [e[:2] for e in events] == [
        ("dead", "open"),
        ("dead", "commit"),
        ("dead", "open"),
        ("dead", "commit"),
    ]
    assert [d["position"] for d in dead.committed[ctx.run_id]] == [0]


async def test_a_closed_run_refuses_reuse() -> None:
    stage = convert_types({"n": int})
    scope = stage.open(RunContext())
    async with scope as run:
        assert await run.transform([{"n": "1"}], RunContext()) == [{"n": 1}]
    with pytest.raises(RuntimeError, match="is closed"):
        await run.transform([{"n": "1"}], RunContext())
    with pytest.raises(RuntimeError, match="opened only once"):
        async with scope:
            pass

"""Compositions: parallel, sequential, conditional and retry pipelines, nested freely."""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from time import perf_counter
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ductwork import (
    CompositionError,
    ConditionalPipeline,
    ConfigError,
    ExtractError,
    FileFormatError,
    MemoryStateStore,
    ParallelPipeline,
    Pipeline,
    PipelineError,
    RetryPipeline,
    RunContext,
    Runnable,
    RunResult,
    RunStatus,
    RunTimeoutError,
    SequentialPipeline,
    TransformError,
    create_conditional_pipeline,
    create_el_pipeline,
    create_etl_pipeline,
    create_parallel_pipeline,
    create_retry_pipeline,
    create_sequential_pipeline,
)
from ductwork.core.compose import SequentialConfig

ROOT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- helpers


def rows(n_batches: int = 2, size: int = 3, *, delay: float = 0.0) -> Callable[..., Any]:
    """An extractor yielding ``n_batches`` batches of ``size`` records, tagged with the run."""

    async def extract(ctx: RunContext) -> AsyncIterator[list[dict[str, Any]]]:
        for b in range(n_batches):
            if delay:
                await anyio.sleep(delay)
            yield [{"run_id": ctx.run_id, "batch": b, "i": i} for i in range(size)]

    return extract


def failing(exc: BaseException, *, after: float = 0.0) -> Callable[..., Any]:
    """An extractor that raises ``exc`` (after ``after`` seconds) before yielding anything."""

    async def extract(ctx: RunContext) -> AsyncIterator[list[dict[str, Any]]]:
        if after:
            await anyio.sleep(after)
        raise exc
        yield []  # pragma: no cover - makes this an async generator

    return extract


def discard(batch: list[dict[str, Any]]) -> None:
    """A loader that drops every batch."""


class TableLoader:
    """A loader into an in-memory table: buffers a run's rows, publishes them only on success.

    Every ``open`` makes a new sink and records the context it was opened with. (A run whose
    stage fails before the loader starts never opens it.)
    """

    def __init__(self) -> None:
        self.committed: list[dict[str, Any]] = []
        self.contexts: list[RunContext] = []
        self.sinks: list[object] = []
        self.discarded = 0
        self.commits = 0

    @asynccontextmanager
    async def open(self, ctx: RunContext) -> AsyncIterator[Any]:
        buffer: list[dict[str, Any]] = []

        class Sink:
            async def write(self, batch: list[dict[str, Any]]) -> None:
                buffer.extend(batch)

        sink = Sink()
        self.contexts.append(ctx)
        self.sinks.append(sink)
        try:
            yield sink
        except BaseException:
            self.discarded += 1
            raise
        self.committed.extend(buffer)
        self.commits += 1


def etl(name: str, extract: Callable[..., Any] | None = None, **kwargs: Any) -> Pipeline:
    return create_etl_pipeline(
        extract or rows(), None, kwargs.pop("loader", discard), name, logging=False, **kwargs
    )


def only_task_left() -> bool:
    return asyncio.all_tasks() == {asyncio.current_task()}


# --------------------------------------------------------------------------- nesting


async def test_three_deep_retry_of_parallel_of_sequentials_reports_the_whole_tree() -> None:
    calls = {"eu_orders": 0}

    def flaky_once(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        calls["eu_orders"] += 1
        if calls["eu_orders"] == 1:
            raise ConnectionError("connection reset by peer")
        return batch

    table = TableLoader()

    def leaf(name: str) -> Pipeline:
        transform = flaky_once if name == "eu_orders" else (lambda batch: batch)
        return create_etl_pipeline(rows(2, 3), transform, table, name, logging=False)

    regions = [
        create_sequential_pipeline(
            [leaf(f"{region}_orders"), leaf(f"{region}_customers")], name=region, logging=False
        )
        for region in ("eu", "us")
    ]
    nightly = create_retry_pipeline(
        create_parallel_pipeline(
            regions, max_workers=2, error_handling="continue", name="regions", logging=False
        ),
        max_retries=2,
        backoff_factor=0.01,
        jitter=0.0,
        name="nightly",
        logging=False,
    )

    result = await nightly.run()

    assert result.status is RunStatus.SUCCEEDED
    assert (result.kind, result.attempts, result.retries) == ("retry", 2, 1)
    first, second = result.children
    assert [first.status, second.status] == [RunStatus.FAILED, RunStatus.SUCCEEDED]
    for attempt in (first, second):
        assert (attempt.name, attempt.kind) == ("regions", "parallel")
        assert [c.name for c in attempt.children] == ["eu", "us"]
        assert all(c.kind == "sequential" for c in attempt.children)
    assert [c.name for c in second.children[0].children] == ["eu_orders", "eu_customers"]
    assert all(leaf.kind == "pipeline" for seq in second.children for leaf in seq.children)
    # The failed attempt shows where it failed and what did not run because of it.
    eu_first = first.children[0]
    assert [c.status for c in eu_first.children] == [RunStatus.FAILED, RunStatus.SKIPPED]
    assert isinstance(eu_first.children[0].error, TransformError)
    assert [f.name for f in result.failures()] == ["eu_orders"]
    # Records are those of the successful attempt: 4 pipelines x 2 batches x 3 records.
    assert result.records_out == second.records_out == 24
    # Committed: the two "us" pipelines of the failed attempt, then all four of the second.
    assert len(table.committed) == 2 * 6 + 4 * 6
    assert table.commits == 6
    assert table.discarded == len(table.contexts) - 6
    summary = result.summary()
    for name in ("nightly (retry)", "regions (parallel)", "eu (sequential)", "us_customers"):
        assert name in summary
    assert "attempts 2" in summary
    assert "attempt 2 of 3, after 0.01s backoff" in summary
    assert "ConnectionError: connection reset by peer" in summary
    assert "not run: an earlier pipeline failed" in summary
    # Depth is drawn: a leaf of the second attempt sits three levels down.
    assert re.search(r"^      └─ us_customers \(pipeline\) · succeeded", summary, re.M), summary
    assert str(result) == summary
    tree = result.to_dict()
    assert tree["children"][1]["children"][1]["children"][1]["name"] == "us_customers"


# --------------------------------------------------------------------------- parallel


@pytest.mark.parametrize(("max_workers", "expected_peak"), [(2, 2), (3, 3), (None, 6)])
async def test_parallel_respects_max_workers(max_workers: int | None, expected_peak: int) -> None:
    running = 0
    peak = 0

    async def extract(ctx: RunContext) -> AsyncIterator[list[dict[str, Any]]]:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            await anyio.sleep(0.02)
            yield [{"x": 1}]
        finally:
            running -= 1

    children = [etl(f"p{i}", extract) for i in range(6)]
    result = await create_parallel_pipeline(children, max_workers, logging=False).run()
    assert peak == expected_peak
    assert result.records_out == 6
    assert [c.status for c in result.children] == [RunStatus.SUCCEEDED] * 6


async def test_parallel_fail_fast_cancels_siblings_within_one_batch() -> None:
    failed_at: list[float] = []
    slow_batches: list[float] = []

    async def slow(ctx: RunContext) -> AsyncIterator[list[dict[str, Any]]]:
        while True:
            await anyio.sleep(0.02)
            slow_batches.append(perf_counter())
            yield [{"x": 1}]

    async def breaks(ctx: RunContext) -> AsyncIterator[list[dict[str, Any]]]:
        await anyio.sleep(0.1)
        failed_at.append(perf_counter())
        raise OSError("disk full")
        yield []  # pragma: no cover

    slow_table = TableLoader()
    parallel = create_parallel_pipeline(
        [etl("slow", slow, loader=slow_table), etl("breaks", breaks)],
        error_handling="fail_fast",
        logging=False,
    )
    t0 = perf_counter()
    with pytest.raises(CompositionError) as info:
        await parallel.run()
    assert perf_counter() - t0 < 1.0

    error = info.value
    assert error.pipeline == "parallel_pipeline"
    assert isinstance(error.__cause__, ExtractError)
    assert isinstance(error.__cause__.__cause__, OSError)
    assert error.errors == [error.__cause__]
    assert error.result is not None
    slow_result, breaks_result = error.result.children
    assert slow_result.status is RunStatus.CANCELLED
    assert breaks_result.status is RunStatus.FAILED
    assert error.result.status is RunStatus.FAILED
    assert "disk full" in str(error)
    assert "1 cancelled" in str(error)
    # The sibling stopped within one batch of the failure and discarded its output.
    assert len(slow_batches) >= 2  # it was running when the failure came
    assert sum(t > failed_at[0] for t in slow_batches) <= 1
    assert (slow_table.committed, slow_table.discarded) == ([], 1)
    assert only_task_left()


async def test_parallel_fail_fast_cancels_queued_children_before_they_start() -> None:
    started: list[str] = []

    def tracked(name: str, fail: bool = False) -> Pipeline:
        async def extract(ctx: RunContext) -> AsyncIterator[list[dict[str, Any]]]:
            started.append(name)
            if fail:
                raise ValueError(f"{name} is broken")
            yield [{"x": 1}]

        return etl(name, extract)

    parallel = create_parallel_pipeline(
        [tracked("a"), tracked("b", fail=True), tracked("c"), tracked("d")],
        max_workers=1,
        logging=False,
    )
    with pytest.raises(CompositionError) as info:
        await parallel.run()
    assert started == ["a", "b"]
    result = info.value.result
    assert result is not None
    statuses = [(c.name, c.status, c.detail) for c in result.children]
    assert statuses == [
        ("a", RunStatus.SUCCEEDED, None),
        ("b", RunStatus.FAILED, None),
        ("c", RunStatus.CANCELLED, "not started"),
        ("d", RunStatus.CANCELLED, "not started"),
    ]
    assert all(c.started_at is None for c in result.children[2:])
    assert "c (pipeline) · cancelled · not started" in result.summary()
    assert "1 of 4 pipelines failed, 2 cancelled" in str(info.value)
    assert only_task_left()


async def test_parallel_continue_runs_everything_and_reports_every_failure() -> None:
    table = TableLoader()
    parallel = create_parallel_pipeline(
        [
            etl("ok1", loader=table),
            etl("bad1", failing(KeyError("id"))),
            etl("ok2", rows(delay=0.01), loader=table),
            etl("bad2", failing(RuntimeError("boom"), after=0.02)),
        ],
        max_workers=2,
        error_handling="continue",
        logging=False,
    )
    with pytest.raises(CompositionError) as info:
        await parallel.run()
    error = info.value
    result = error.result
    assert result is not None
    assert [c.status for c in result.children] == [
        RunStatus.SUCCEEDED,
        RunStatus.FAILED,
        RunStatus.SUCCEEDED,
        RunStatus.FAILED,
    ]
    assert len(table.committed) == 12
    assert [e.pipeline for e in error.errors] == ["bad1", "bad2"]  # type: ignore[attr-defined]
    assert error.__cause__ is error.errors[0]
    assert "2 of 4 pipelines failed" in str(error)
    assert "KeyError" in str(error)
    assert "boom" in str(error)
    assert error.brief == "2 of 4 pipelines failed: 'bad1', 'bad2'"
    assert result.detail == "2 succeeded, 2 failed"
    assert [f.name for f in result.failures()] == ["bad1", "bad2"]


async def test_parallel_ignore_records_failures_and_succeeds() -> None:
    parallel = create_parallel_pipeline(
        [etl("ok"), etl("bad", failing(RuntimeError("boom")))],
        error_handling="ignore",
        logging=False,
    )
    result = await parallel.run()
    assert result.status is RunStatus.SUCCEEDED
    assert result.error is None
    assert [c.status for c in result.children] == [RunStatus.SUCCEEDED, RunStatus.FAILED]
    assert isinstance(result.children[1].error, ExtractError)
    assert [f.name for f in result.failures()] == ["bad"]
    assert result.detail == "1 succeeded, 1 failed; failures ignored"
    assert result.records_out == 6


@pytest.mark.parametrize("mode", ["fail_fast", "continue", "ignore"])
async def test_cancelling_a_parallel_run_cancels_every_child_and_propagates(mode: str) -> None:
    parallel = create_parallel_pipeline(
        [etl(f"slow{i}", rows(1000, delay=0.01)) for i in range(4)],
        max_workers=2,
        error_handling=mode,  # type: ignore[arg-type]
        logging=False,
    )
    ctx = RunContext(pipeline=parallel.name)
    result = parallel.new_result(ctx)
    t0 = perf_counter()
    with anyio.move_on_after(0.1) as scope:
        await parallel.execute(ctx, result)
    assert scope.cancelled_caught  # the cancellation reached the caller, it was not swallowed
    assert perf_counter() - t0 < 1.0
    assert result.status is RunStatus.CANCELLED
    assert [c.status for c in result.children] == [RunStatus.CANCELLED] * 4
    assert [c.detail for c in result.children] == [None, None, "not started", "not started"]
    assert only_task_left()


async def test_parallel_children_get_their_own_context_and_resources() -> None:
    table = TableLoader()
    shared = etl("shared", loader=table)  # the same pipeline object, twice
    parallel = create_parallel_pipeline(
        [shared, shared, etl("other", loader=table)], name="fan_out", logging=False
    )
    result = await parallel.run(params={"day": "2024-05-01"}, run_id="root")

    contexts = table.contexts
    assert len(contexts) == 3
    assert len({ctx.run_id for ctx in contexts}) == 3
    assert "root" not in {ctx.run_id for ctx in contexts}
    assert {ctx.parent_run_id for ctx in contexts} == {"root"}
    assert all(ctx.params["day"] == "2024-05-01" for ctx in contexts)
    assert len({id(sink) for sink in table.sinks}) == 3
    assert {c.run_id for c in result.children} == {ctx.run_id for ctx in contexts}
    # Each run's records carry its own run id: nothing leaked between the two runs of `shared`.
    by_run = {r["run_id"] for r in table.committed}
    assert by_run == {c.run_id for c in result.children}
    assert result.children[0].stages is not result.children[1].stages
    assert result.children[0].stages[0].records_out == 6


async def test_children_use_their_own_state_store_or_the_compositions() -> None:
    seen: dict[str, Any] = {}

    def recording(name: str, **kwargs: Any) -> Pipeline:
        async def extract(ctx: RunContext) -> AsyncIterator[list[dict[str, Any]]]:
            seen[name] = ctx.state
            yield [{"x": 1}]

        return create_el_pipeline(extract, discard, name, logging=False, **kwargs)

    own, shared = MemoryStateStore(), MemoryStateStore()
    sequence = create_sequential_pipeline(
        [recording("has_own", state=own), recording("inherits")], logging=False, state=shared
    )
    await sequence.run()
    assert seen == {"has_own": own, "inherits": shared}


# --------------------------------------------------------------------------- sequential


def _tracked(events: list[str], name: str, fail: bool = False) -> Pipeline:
    async def extract(ctx: RunContext) -> AsyncIterator[list[dict[str, Any]]]:
        events.append(f"start {name}")
        await anyio.sleep(0.005)
        if fail:
            raise RuntimeError(f"{name} failed")
        yield [{"x": 1}]
        events.append(f"end {name}")

    return etl(name, extract)


async def test_sequential_runs_children_one_after_another_in_order() -> None:
    events: list[str] = []
    sequence = create_sequential_pipeline(
        [_tracked(events, n) for n in "abc"], name="steps", logging=False
    )
    result = await sequence.run()
    assert events == ["start a", "end a", "start b", "end b", "start c", "end c"]
    assert result.status is RunStatus.SUCCEEDED
    assert result.records_out == 3
    starts = [c.started_at for c in result.children]
    ends = [c.ended_at for c in result.children]
    assert all(
        e is not None and s is not None and e <= s for e, s in zip(ends, starts[1:], strict=False)
    )


async def test_sequential_stop_on_error_stops_at_the_first_failure() -> None:
    events: list[str] = []
    sequence = create_sequential_pipeline(
        [_tracked(events, "a"), _tracked(events, "b", fail=True), _tracked(events, "c")],
        stop_on_error=True,
        logging=False,
    )
    with pytest.raises(CompositionError) as info:
        await sequence.run()
    assert events == ["start a", "end a", "start b"]
    result = info.value.result
    assert result is not None
    assert [c.status for c in result.children] == [
        RunStatus.SUCCEEDED,
        RunStatus.FAILED,
        RunStatus.SKIPPED,
    ]
    assert result.children[2].detail == "not run: an earlier pipeline failed"
    assert "1 of 3 pipelines failed, stopped with 1 not run" in str(info.value)
    assert "b failed" in str(info.value)


async def test_sequential_without_stop_on_error_runs_all_and_reports_every_failure() -> None:
    events: list[str] = []
    sequence = create_sequential_pipeline(
        [
            _tracked(events, "a", fail=True),
            _tracked(events, "b"),
            _tracked(events, "c", fail=True),
        ],
        stop_on_error=False,
        logging=False,
    )
    with pytest.raises(CompositionError) as info:
        await sequence.run()
    assert events == ["start a", "start b", "end b", "start c"]
    error = info.value
    assert [getattr(e, "pipeline", None) for e in error.errors] == ["a", "c"]
    assert "a failed" in str(error)
    assert "c failed" in str(error)
    assert error.brief == "2 of 3 pipelines failed: 'a', 'c'"


async def test_cancelling_a_sequence_records_the_rest_as_not_started() -> None:
    sequence = create_sequential_pipeline(
        [etl("a"), etl("slow", rows(1000, delay=0.01)), etl("c")], logging=False
    )
    ctx = RunContext(pipeline=sequence.name)
    result = sequence.new_result(ctx)
    with anyio.move_on_after(0.1) as scope:
        await sequence.execute(ctx, result)
    assert scope.cancelled_caught
    assert [(c.status, c.detail) for c in result.children] == [
        (RunStatus.SUCCEEDED, None),
        (RunStatus.CANCELLED, None),
        (RunStatus.CANCELLED, "not started"),
    ]


@settings(max_examples=40, deadline=None)
@given(
    outcomes=st.lists(st.booleans(), min_size=1, max_size=6),
    mode=st.sampled_from(["parallel:continue", "parallel:ignore", "seq:stop", "seq:go_on"]),
)
def test_composite_status_follows_its_children(outcomes: list[bool], mode: str) -> None:
    children = [
        etl(f"c{i}", rows(1, 1) if ok else failing(RuntimeError(f"c{i}")))
        for i, ok in enumerate(outcomes)
    ]
    kind, option = mode.split(":")
    composite: Runnable
    if kind == "parallel":
        composite = create_parallel_pipeline(children, 2, option, logging=False)  # type: ignore[arg-type]
    else:
        composite = create_sequential_pipeline(children, option == "stop", logging=False)

    async def main() -> RunResult:
        ctx = RunContext(pipeline=composite.name)
        return await composite.execute(ctx)

    result = anyio.run(main)
    failed = [f"c{i}" for i, ok in enumerate(outcomes) if not ok]
    if option == "stop" and failed:
        first = outcomes.index(False)
        failed = failed[:1]
        assert all(c.status is RunStatus.SKIPPED for c in result.children[first + 1 :])
    assert [c.name for c in result.children if c.status is RunStatus.FAILED] == failed
    if failed and option != "ignore":
        assert result.status is RunStatus.FAILED
        assert isinstance(result.error, CompositionError)
        assert [getattr(e, "pipeline", None) for e in result.error.errors] == failed
    else:
        assert result.status is RunStatus.SUCCEEDED
        assert result.records_out == sum(outcomes)


# --------------------------------------------------------------------------- conditional


async def test_conditional_runs_the_true_branch_with_a_sync_condition() -> None:
    seen: list[RunContext] = []

    def condition(ctx: RunContext) -> bool:
        seen.append(ctx)
        return bool(ctx.params.get("full"))

    when = create_conditional_pipeline(
        condition, etl("full_load"), etl("delta_load"), name="choose", logging=False
    )
    result = await when.run(params={"full": True}, run_id="r1")
    assert [c.name for c in result.children] == ["full_load"]
    assert result.detail == "condition true: ran 'full_load'"
    assert seen[0].run_id == "r1"
    assert seen[0].pipeline == "choose"
    assert result.children[0].status is RunStatus.SUCCEEDED

    result = await when.run(params={"full": False})
    assert [c.name for c in result.children] == ["delta_load"]
    assert result.detail == "condition false: ran 'delta_load'"


async def test_conditional_awaits_an_async_condition_and_skips_without_false_branch() -> None:
    table = TableLoader()

    async def is_weekend(ctx: RunContext) -> bool:
        await anyio.sleep(0)
        return False

    when = create_conditional_pipeline(is_weekend, etl("weekly", loader=table), logging=False)
    result = await when.run()  # does not raise
    assert result.status is RunStatus.SKIPPED
    assert result.children == []
    assert result.detail == "condition false: nothing to run"
    assert table.contexts == []
    assert "conditional_pipeline (conditional) · skipped" in result.summary()


async def test_conditional_condition_error_fails_the_run_naming_the_condition() -> None:
    def broken(ctx: RunContext) -> bool:
        raise LookupError("no calendar")

    when = create_conditional_pipeline(broken, etl("x"), name="guarded", logging=False)
    with pytest.raises(PipelineError) as info:
        await when.run()
    assert (info.value.pipeline, info.value.stage) == ("guarded", "condition")
    assert isinstance(info.value.__cause__, LookupError)
    assert "condition raised LookupError: no calendar" in str(info.value)


async def test_conditional_branch_failure_fails_the_composition() -> None:
    when = create_conditional_pipeline(
        lambda ctx: True, etl("bad", failing(RuntimeError("boom"))), name="guarded", logging=False
    )
    with pytest.raises(CompositionError) as info:
        await when.run()
    assert info.value.pipeline == "guarded"
    assert info.value.brief == "true branch failed: 'bad'"
    assert isinstance(info.value.__cause__, ExtractError)


# --------------------------------------------------------------------------- retry


def _always_failing(counter: list[float], exc: Exception | None = None) -> Callable[..., Any]:
    async def extract(ctx: RunContext) -> AsyncIterator[list[dict[str, Any]]]:
        counter.append(perf_counter())
        raise exc or ConnectionError("refused")
        yield []  # pragma: no cover

    return extract


async def test_retry_counts_attempts_and_backoff_grows() -> None:
    calls: list[float] = []
    retry = create_retry_pipeline(
        etl("flaky", _always_failing(calls)),
        max_retries=3,
        backoff_factor=0.02,
        jitter=0.0,
        name="stubborn",
        logging=False,
    )
    with pytest.raises(CompositionError) as info:
        await retry.run()
    error = info.value
    result = error.result
    assert result is not None
    assert (result.attempts, result.retries) == (4, 3)
    assert len(calls) == 4
    assert [c.status for c in result.children] == [RunStatus.FAILED] * 4
    assert [c.detail for c in result.children] == [
        "attempt 1 of 4",
        "attempt 2 of 4, after 0.02s backoff",
        "attempt 3 of 4, after 0.04s backoff",
        "attempt 4 of 4, after 0.08s backoff",
    ]
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    for gap, expected in zip(gaps, [0.02, 0.04, 0.08], strict=True):
        assert gap >= expected * 0.9
    assert gaps[0] < gaps[2]
    assert error.pipeline == "stubborn"
    assert error.__cause__ is result.children[-1].error
    assert isinstance(error.__cause__, ExtractError)
    assert "failed after 4 attempts" in str(error)
    assert "refused" in str(error)
    assert "attempts 4" in result.summary()


def test_retry_backoff_is_capped_and_jittered() -> None:
    steady = RetryPipeline(pipeline=etl("x"), backoff_factor=1.0, max_backoff=5.0, jitter=0.0)
    assert [steady.backoff(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert steady.backoff(10_000) == 5.0
    jittered = RetryPipeline(pipeline=etl("x"), backoff_factor=1.0, max_backoff=5.0, jitter=0.5)
    samples = [jittered.backoff(2) for _ in range(200)]
    assert all(1.0 <= s <= 2.0 for s in samples)
    assert len(set(samples)) > 100
    assert RetryPipeline(pipeline=etl("x"), backoff_factor=0.0).backoff(3) == 0.0


async def test_retry_succeeds_after_transient_failures() -> None:
    table = TableLoader()
    attempts = 0

    async def extract(ctx: RunContext) -> AsyncIterator[list[dict[str, Any]]]:
        nonlocal attempts
        attempts += 1
        yield [{"attempt": attempts}]
        if attempts < 3:
            raise ConnectionError("reset")

    retry = create_retry_pipeline(
        etl("flaky", extract, loader=table), max_retries=5, backoff_factor=0.001, logging=False
    )
    result = await retry.run()
    assert result.status is RunStatus.SUCCEEDED
    assert (result.attempts, result.retries) == (3, 2)
    # Failed attempts left nothing behind; the records are the successful attempt's.
    assert table.committed == [{"attempt": 3}]
    assert table.discarded == len(table.contexts) - 1
    assert result.records_out == 1
    assert len({c.run_id for c in result.children}) == 3


@pytest.mark.parametrize(
    "error",
    [
        FileFormatError("bad quote", file="orders.csv", line=7),
        PipelineError("schema mismatch", retryable=False),
        ConfigError.for_field("url", "missing"),
    ],
)
async def test_retry_does_not_retry_non_retryable_errors(error: Exception) -> None:
    calls: list[float] = []
    retry = create_retry_pipeline(
        etl("strict", _always_failing(calls, error)), max_retries=5, backoff_factor=10.0
    )
    t0 = perf_counter()
    with pytest.raises(CompositionError) as info:
        await retry.run()
    assert perf_counter() - t0 < 1.0
    assert len(calls) == 1
    result = info.value.result
    assert result is not None
    assert result.attempts == 1
    assert "attempt 1 failed with an error not retried" in str(info.value)
    assert info.value.retryable is False


async def test_retry_does_not_retry_a_stage_of_the_wrong_shape() -> None:
    calls: list[int] = []

    async def returns_a_record(ctx: RunContext) -> AsyncIterator[Any]:
        calls.append(1)
        yield {"id": 1}  # a record, not a batch

    retry = create_retry_pipeline(etl("wrong", returns_a_record), backoff_factor=10.0)
    with pytest.raises(CompositionError, match="not retried"):
        await retry.run()
    assert calls == [1]


async def test_retry_on_narrows_what_is_retried() -> None:
    calls: list[float] = []
    retry = create_retry_pipeline(
        etl("x", _always_failing(calls, ValueError("transient"))),
        max_retries=2,
        backoff_factor=0.0,
        retry_on=ValueError,
        logging=False,
    )
    with pytest.raises(CompositionError, match="failed after 3 attempts"):
        await retry.run()
    assert len(calls) == 3

    calls.clear()
    retry = create_retry_pipeline(
        etl("x", _always_failing(calls, KeyError("permanent"))),
        max_retries=2,
        backoff_factor=0.0,
        retry_on=(ValueError, TimeoutError),
        logging=False,
    )
    with pytest.raises(CompositionError, match="not retried"):
        await retry.run()
    assert len(calls) == 1


async def test_retry_of_a_composition_follows_its_childrens_errors() -> None:
    calls: list[float] = []
    parallel = create_parallel_pipeline(
        [etl("ok"), etl("bad", _always_failing(calls, FileFormatError("x", file="f.csv")))],
        logging=False,
    )
    retry = create_retry_pipeline(parallel, max_retries=3, backoff_factor=0.0, logging=False)
    with pytest.raises(CompositionError, match="not retried"):
        await retry.run()
    assert len(calls) == 1

    calls.clear()
    parallel = create_parallel_pipeline(
        [etl("bad", _always_failing(calls, ConnectionError("x")))], logging=False
    )
    retry = create_retry_pipeline(
        parallel, max_retries=2, backoff_factor=0.0, retry_on=ConnectionError, logging=False
    )
    with pytest.raises(CompositionError, match="failed after 3 attempts"):
        await retry.run()
    assert len(calls) == 3


async def test_cancellation_during_backoff_ends_the_run_at_once() -> None:
    calls: list[float] = []
    retry = create_retry_pipeline(
        etl("x", _always_failing(calls)), max_retries=5, backoff_factor=30.0, logging=False
    )
    ctx = RunContext(pipeline=retry.name)
    result = retry.new_result(ctx)
    t0 = perf_counter()
    with anyio.move_on_after(0.2) as scope:
        await retry.execute(ctx, result)
    assert scope.cancelled_caught
    assert perf_counter() - t0 < 1.0
    assert result.status is RunStatus.CANCELLED
    assert len(calls) == 1
    assert [c.status for c in result.children] == [RunStatus.FAILED]
    assert only_task_left()


async def test_retry_logs_each_retry(caplog: pytest.LogCaptureFixture) -> None:
    retry = create_retry_pipeline(
        etl("x", _always_failing([])), max_retries=1, backoff_factor=0.0, name="again"
    )
    with pytest.raises(CompositionError):
        await retry.run()
    messages = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("again: attempt 1 of 2 failed, retrying in 0.00s" in m for m in messages)


# --------------------------------------------------------------------------- timeouts


async def test_pipeline_timeout_raises_run_timeout_error() -> None:
    table = TableLoader()
    pipeline = etl("slow", rows(1000, delay=0.01), loader=table, timeout=0.1)
    t0 = perf_counter()
    with pytest.raises(RunTimeoutError) as info:
        await pipeline.run()
    assert perf_counter() - t0 < 1.0
    assert info.value.pipeline == "slow"
    assert isinstance(info.value, TimeoutError)
    assert "timed out after 0.1s" in str(info.value)
    assert table.committed == []
    assert table.discarded == 1
    assert only_task_left()


@pytest.mark.parametrize("kind", ["parallel", "sequential", "conditional", "retry"])
async def test_every_composition_accepts_a_timeout(kind: str) -> None:
    slow = etl("slow", rows(1000, delay=0.01))
    composite: Runnable
    if kind == "parallel":
        composite = create_parallel_pipeline([slow, etl("fast")], timeout=0.1, logging=False)
    elif kind == "sequential":
        composite = create_sequential_pipeline([etl("fast"), slow], timeout=0.1, logging=False)
    elif kind == "conditional":
        composite = create_conditional_pipeline(lambda c: True, slow, timeout=0.1, logging=False)
    else:
        composite = create_retry_pipeline(slow, timeout=0.1, logging=False)
    t0 = perf_counter()
    with pytest.raises(RunTimeoutError) as info:
        await composite.run()
    assert perf_counter() - t0 < 1.0
    assert info.value.pipeline == composite.name
    result = info.value.result
    assert result is not None
    assert result.status is RunStatus.FAILED
    slow_results = [c for c in result.children if c.name == "slow"]
    assert [c.status for c in slow_results] == [RunStatus.CANCELLED]
    assert only_task_left()


async def test_retry_retries_an_attempt_that_timed_out() -> None:
    retry = create_retry_pipeline(
        etl("slow", rows(1000, delay=0.01), timeout=0.03),
        max_retries=2,
        backoff_factor=0.0,
        logging=False,
    )
    with pytest.raises(CompositionError) as info:
        await retry.run()
    assert isinstance(info.value.__cause__, RunTimeoutError)
    result = info.value.result
    assert result is not None
    assert result.attempts == 3
    assert all(isinstance(c.error, RunTimeoutError) for c in result.children)


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: create_parallel_pipeline([]), "pipelines"),
        (lambda: create_parallel_pipeline([etl("a"), object()]), "pipelines.1"),  # type: ignore[list-item]
        (lambda: create_parallel_pipeline([etl("a")], max_workers=0), "max_workers"),
        (lambda: create_parallel_pipeline([etl("a")], max_workers=1.5), "max_workers"),  # type: ignore[arg-type]
        (lambda: create_parallel_pipeline([etl("a")], error_handling="retry"), "error_handling"),  # type: ignore[arg-type]
        (lambda: create_parallel_pipeline([etl("a")], timeout=0), "timeout"),
        (lambda: create_parallel_pipeline([etl("a")], name=""), "name"),
        (lambda: create_sequential_pipeline("abc"), "pipelines"),  # type: ignore[arg-type]
        (lambda: create_sequential_pipeline([etl("a")], stop_on_error="no"), "stop_on_error"),  # type: ignore[arg-type]
        (lambda: create_sequential_pipeline([etl("a")], logging="LOUD"), "logging"),  # type: ignore[arg-type]
        (lambda: create_conditional_pipeline(True, etl("a")), "condition"),  # type: ignore[arg-type]
        (lambda: create_conditional_pipeline(bool, None), "true_pipeline"),  # type: ignore[arg-type]
        (lambda: create_conditional_pipeline(bool, etl("a"), "b"), "false_pipeline"),  # type: ignore[arg-type]
        (lambda: create_retry_pipeline(lambda: None), "pipeline"),  # type: ignore[arg-type]
        (lambda: create_retry_pipeline(etl("a"), max_retries=-1), "max_retries"),
        (lambda: create_retry_pipeline(etl("a"), backoff_factor=-1), "backoff_factor"),
        (lambda: create_retry_pipeline(etl("a"), max_backoff=float("inf")), "max_backoff"),
        (lambda: create_retry_pipeline(etl("a"), jitter=1.5), "jitter"),
        (lambda: create_retry_pipeline(etl("a"), retry_on=int), "retry_on.0"),  # type: ignore[arg-type]
        (lambda: create_retry_pipeline(etl("a"), retry_on=["x"]), "retry_on.0"),  # type: ignore[list-item]
    ],
)
def test_bad_configuration_raises_config_error_naming_the_field(
    build: Callable[[], Any], field: str
) -> None:
    with pytest.raises(ConfigError) as info:
        build()
    names = [name for name, _ in info.value.errors]
    assert any(n == field or n.startswith(f"{field}.") for n in names), names
    assert field in str(info.value)


def test_compositions_are_runnables_with_their_children() -> None:
    a, b = etl("a"), etl("b")
    parallel = create_parallel_pipeline([a, b], name="both")
    sequence = SequentialPipeline(SequentialConfig(pipelines=[parallel, a]))
    when = ConditionalPipeline(condition=bool, true_pipeline=sequence, false_pipeline=b)
    retry = RetryPipeline(pipeline=when, retry_on=[ConnectionError])
    for composite in (parallel, sequence, when, retry):
        assert isinstance(composite, Runnable)
    assert isinstance(parallel, ParallelPipeline)
    assert parallel.children == (a, b)
    assert sequence.children == (parallel, a)
    assert when.children == (sequence, b)
    assert ConditionalPipeline(condition=bool, true_pipeline=a).children == (a,)
    assert retry.children == (when,)
    assert retry.retry_on == (ConnectionError,)
    assert repr(parallel) == "ParallelPipeline(name='both', children=['a', 'b'])"
    assert (parallel.kind, sequence.kind, when.kind, retry.kind) == (
        "parallel",
        "sequential",
        "conditional",
        "retry",
    )


async def test_a_composition_can_run_concurrently_with_itself() -> None:
    table = TableLoader()
    parallel = create_parallel_pipeline(
        [etl("a", rows(3, 2, delay=0.005), loader=table), etl("b", loader=table)], logging=False
    )
    results: list[RunResult] = []

    async def run_once() -> None:
        results.append(await parallel.run())

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(run_once)
    assert len({r.run_id for r in results}) == 3
    assert all(r.records_out == 12 for r in results)
    assert len(table.committed) == 36


# --------------------------------------------------------------------------- example
# (tests/test_docs.py runs the docstring examples and README blocks, tests/test_examples.py every
# example; this checks that the composed example really nests every kind of composition.)


def test_composed_pipeline_example_runs() -> None:
    path = ROOT / "examples" / "composed_pipeline.py"
    spec = importlib.util.spec_from_file_location("composed_pipeline_example", path)
    assert spec is not None
    assert spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    result = anyio.run(example.main)
    assert isinstance(result, RunResult)
    assert result.status is RunStatus.SUCCEEDED
    by_name = {r.name: r for r in _walk(result)}  # the last result of each name
    assert {r.kind for r in by_name.values()} == {
        "sequential",
        "retry",
        "parallel",
        "conditional",
        "pipeline",
    }
    assert by_name["load_sources"].attempts == 2  # the orders source fails once
    assert by_name["revenue_by_country"].records_in == 1800  # every paid order is reported


def _walk(result: RunResult) -> list[RunResult]:
    return [result, *(r for child in result.children for r in _walk(child))]

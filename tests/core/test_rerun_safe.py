"""A run whose loader committed rows to a target that does not deduplicate them fails with an
error that is not retryable, whichever stage failed: running it again would write those rows
twice. A sink says so with ``rerun_safe`` (see :class:`ductwork.core.stages.Loader`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from ductwork import (
    CompositionError,
    ExtractError,
    Extractor,
    LoadError,
    PipelineError,
    RunContext,
    RunTimeoutError,
    TransformError,
    create_etl_pipeline,
    create_retry_pipeline,
    create_sequential_pipeline,
)

MISSING = object()


class CommittingLoader:
    """Commits every batch as it is written (like inserts into a table), and tells the test when
    three rows of the run were committed (``three_committed``, made afresh by each run's
    extractor before the loader can see a batch)."""

    name = "warehouse"

    def __init__(self, rerun_safe: Any, fail_at: int | None = None) -> None:
        self.rerun_safe = rerun_safe
        self.fail_at = fail_at
        self.rows: list[dict[str, Any]] = []
        self.three_committed = anyio.Event()

    @asynccontextmanager
    async def open(self, ctx: RunContext) -> AsyncIterator[Any]:
        loader = self
        committed = [0]

        class Sink:
            @property
            def records_committed(self) -> int:
                return committed[0]

            async def write(self, batch: list[dict[str, Any]]) -> None:
                if loader.fail_at is not None and batch[0]["i"] == loader.fail_at:
                    raise LoadError("the target went away", retryable=True)
                loader.rows.extend(batch)
                committed[0] += len(batch)
                if committed[0] == 3:
                    loader.three_committed.set()

        sink = Sink()
        if self.rerun_safe is not MISSING:
            sink.rerun_safe = self.rerun_safe  # type: ignore[attr-defined]
        yield sink


def extractor(loader: CommittingLoader, *, fail: bool = True) -> Any:
    async def extract(ctx: RunContext) -> AsyncIterator[list[dict[str, Any]]]:
        loader.three_committed = anyio.Event()  # one per run, before the loader sees a batch
        for i in range(5):
            if i == 3:
                await loader.three_committed.wait()
                if fail:
                    raise ConnectionError("the source reset the connection")  # retryable
            yield [{"i": i}]

    return extract


def pipeline(loader: CommittingLoader, failing: str) -> Any:
    if failing == "extract":
        return create_etl_pipeline(extractor(loader), None, loader, logging=False)

    def transform(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if batch[0]["i"] == 3:
            raise TimeoutError("the lookup service timed out")  # retryable
        return batch

    if failing == "transform":
        return create_etl_pipeline(extractor(loader, fail=False), transform, loader, logging=False)
    assert failing == "load"
    return create_etl_pipeline(extractor(loader, fail=False), None, loader, logging=False)


@pytest.mark.parametrize(
    ("failing", "error_class"),
    [("extract", ExtractError), ("transform", TransformError), ("load", LoadError)],
)
async def test_committed_rows_without_deduplication_make_the_error_final(
    failing: str, error_class: type[PipelineError]
) -> None:
    loader = CommittingLoader(rerun_safe=False, fail_at=3 if failing == "load" else None)
    with pytest.raises(error_class) as info:
        await pipeline(loader, failing).run()
    error = info.value
    assert error.retryable is False
    notes = getattr(error, "__notes__", [])
    assert len(notes) == 1
    assert "loader 'warehouse' committed 3 rows" in notes[0]
    assert "running again would write them twice: not retryable" in notes[0]
    assert error.result is not None
    assert error.result.stage("warehouse").records_out == 3


@pytest.mark.parametrize("rerun_safe", [True, MISSING], ids=["rerun-safe", "unknown"])
@pytest.mark.parametrize("failing", ["extract", "transform", "load"])
async def test_a_rerun_safe_or_silent_sink_leaves_the_error_retryable(
    rerun_safe: Any, failing: str
) -> None:
    loader = CommittingLoader(rerun_safe=rerun_safe, fail_at=3 if failing == "load" else None)
    with pytest.raises(PipelineError) as info:
        await pipeline(loader, failing).run()
    assert info.value.retryable is True
    assert not getattr(info.value, "__notes__", [])
    assert loader.rows == [{"i": 0}, {"i": 1}, {"i": 2}]


async def test_nothing_committed_leaves_the_error_retryable() -> None:
    loader = CommittingLoader(rerun_safe=False)

    async def fails_at_once(ctx: RunContext) -> AsyncIterator[list[dict[str, Any]]]:
        raise ConnectionError("refused")
        yield []

    with pytest.raises(ExtractError) as info:
        await create_etl_pipeline(fails_at_once, None, loader, logging=False).run()
    assert info.value.retryable is True


async def test_an_error_already_final_gets_no_note() -> None:
    loader = CommittingLoader(rerun_safe=False)

    async def extract(ctx: RunContext) -> AsyncIterator[list[dict[str, Any]]]:
        loader.three_committed = anyio.Event()
        for i in range(3):
            yield [{"i": i}]
        await loader.three_committed.wait()
        raise ExtractError("malformed input", retryable=False)

    with pytest.raises(ExtractError) as info:
        await create_etl_pipeline(extract, None, loader, logging=False).run()
    assert info.value.retryable is False
    assert not getattr(info.value, "__notes__", [])


@pytest.mark.parametrize(("rerun_safe", "attempts"), [(False, 1), (True, 3)])
async def test_a_retry_composition_runs_again_only_when_that_cannot_duplicate(
    rerun_safe: bool, attempts: int
) -> None:
    loader = CommittingLoader(rerun_safe=rerun_safe)
    retrying = create_retry_pipeline(
        pipeline(loader, "extract"), max_retries=2, backoff_factor=0.0, logging=False
    )
    with pytest.raises(CompositionError) as info:
        await retrying.run()
    assert info.value.result is not None
    assert info.value.result.attempts == attempts
    assert len(loader.rows) == 3 * attempts


async def test_a_failure_after_the_commit_is_final_too() -> None:
    """The run can still fail once the loader committed everything: the extractor's on-success
    step (committing a cursor, say) raising. Running again would load every row twice."""
    loader = CommittingLoader(rerun_safe=False)

    class Pushing(Extractor):
        name = "push"

        def extract(self, ctx: RunContext) -> AsyncIterator[list[dict[str, Any]]]:
            raise AssertionError("a pipeline calls produce(), not extract()")

        async def produce(self, ctx: RunContext, emit: Any) -> Any:
            for i in range(3):
                await emit([{"i": i}])

            async def commit_cursor() -> None:
                raise ConnectionError("the state store went away")

            return commit_cursor

    with pytest.raises(ExtractError) as info:
        await create_etl_pipeline(Pushing(), None, loader, logging=False).run()
    assert info.value.retryable is False
    assert "committed 3 rows" in info.value.__notes__[0]
    assert len(loader.rows) == 3


@pytest.mark.parametrize(("rerun_safe", "retryable"), [(False, False), (True, True)])
async def test_a_timeout_after_committed_rows_is_final_too(
    rerun_safe: bool, retryable: bool
) -> None:
    """The run's own timeout cancels it after the loader committed three rows: running again
    would write those three twice."""
    loader = CommittingLoader(rerun_safe=rerun_safe)

    async def stalls(ctx: RunContext) -> AsyncIterator[list[dict[str, Any]]]:
        loader.three_committed = anyio.Event()
        for i in range(3):
            yield [{"i": i}]
        await loader.three_committed.wait()
        await anyio.sleep_forever()
        yield []

    timed = create_etl_pipeline(stalls, None, loader, logging=False, timeout=0.5)
    with pytest.raises(RunTimeoutError) as info:
        await timed.run()
    assert info.value.retryable is retryable
    notes = getattr(info.value, "__notes__", [])
    assert ["committed 3 rows" in note for note in notes] == ([True] if not retryable else [])
    assert len(loader.rows) == 3


@pytest.mark.parametrize(("rerun_safe", "attempts"), [(False, 1), (True, 3)])
async def test_a_composition_whose_earlier_child_committed_is_not_run_again(
    rerun_safe: bool, attempts: int
) -> None:
    """The first child of a sequence committed its rows; the second fails with a retryable
    error. Retrying the sequence would run the first child again and write its rows twice."""
    loader = CommittingLoader(rerun_safe=rerun_safe)
    first = create_etl_pipeline(extractor(loader, fail=False), None, loader, name="first")

    async def refused(ctx: RunContext) -> AsyncIterator[list[dict[str, Any]]]:
        raise ConnectionError("refused")  # retryable on its own
        yield []

    second = create_etl_pipeline(refused, None, CommittingLoader(rerun_safe=True), name="second")
    sequence = create_sequential_pipeline([first, second], name="both", logging=False)
    retrying = create_retry_pipeline(sequence, max_retries=2, backoff_factor=0.0, logging=False)
    with pytest.raises(CompositionError) as info:
        await retrying.run()
    assert info.value.result is not None
    assert info.value.result.attempts == attempts
    assert len(loader.rows) == 5 * attempts
    if not rerun_safe:
        reason = info.value.result.rerun_unsafe()
        assert reason is not None
        assert reason.startswith("both: first: loader 'warehouse' committed 5 rows")


@pytest.mark.parametrize(("rerun_safe", "attempts"), [(False, 1), (True, 3)])
async def test_retry_on_does_not_run_again_what_committed_rows(
    rerun_safe: bool, attempts: int
) -> None:
    """``retry_on`` names the errors worth another attempt; it does not override rows already
    committed where a rerun would write them twice."""
    loader = CommittingLoader(rerun_safe=rerun_safe)
    retrying = create_retry_pipeline(
        pipeline(loader, "extract"),
        max_retries=2,
        backoff_factor=0.0,
        retry_on=ConnectionError,
        logging=False,
    )
    with pytest.raises(CompositionError) as info:
        await retrying.run()
    assert info.value.result is not None
    assert info.value.result.attempts == attempts
    assert len(loader.rows) == 3 * attempts

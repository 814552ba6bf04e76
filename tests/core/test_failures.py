"""Failure semantics: a stage that raises, cancellation, and backpressure across stages.

These are the classic failures of stream libraries: a hang when a stage raises, an error
swallowed, a task left running, a queue bound that does not hold across chained stages.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from ductwork import (
    Batch,
    ExtractError,
    Loader,
    LoadError,
    PipelineError,
    RunContext,
    RunStatus,
    TransformError,
    create_etl_pipeline,
    transformer,
)

N_BATCHES = 20


class Probe:
    """Shared observations of one run: what the extractor did, how the loader ended."""

    def __init__(self) -> None:
        self.extracted = 0
        self.extractor_finally = False
        self.loader_exit: str | None = None
        self.loaded = 0


def make_extractor(probe: Probe, fail_at: int | None = None, slow: bool = False) -> Any:
    async def extract(ctx: RunContext) -> AsyncIterator[Batch]:
        try:
            for i in range(N_BATCHES):
                if fail_at is not None and i == fail_at:
                    raise ValueError(f"extractor broke at {i}")
                probe.extracted += 1
                yield [{"n": i}]
                if slow:
                    await anyio.sleep(0.001)
        finally:
            probe.extractor_finally = True

    return extract


def make_transformer(fail_at: int | None = None, concurrency: int = 1) -> Any:
    async def transform(batch: Batch) -> Batch:
        if fail_at is not None and batch[0]["n"] == fail_at:
            raise ValueError(f"transformer broke at {fail_at}")
        await anyio.sleep(0)
        return batch

    return transformer(transform, concurrency=concurrency)


class ProbeLoader(Loader):
    name = "probe_loader"

    def __init__(
        self,
        probe: Probe,
        *,
        fail_at: int | None = None,
        fail_open: bool = False,
        fail_close: bool = False,
        delay: float = 0.0,
    ) -> None:
        self.probe = probe
        self.fail_at = fail_at
        self.fail_open = fail_open
        self.fail_close = fail_close
        self.delay = delay

    def open(self, ctx: RunContext) -> Any:
        loader = self

        class _CM:
            async def __aenter__(self) -> ProbeLoader:
                if loader.fail_open:
                    raise ConnectionError("cannot open the sink")
                return loader

            async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
                await anyio.sleep(0)
                loader.probe.loader_exit = "commit" if exc_type is None else exc_type.__name__
                if loader.fail_close and exc_type is None:
                    raise ConnectionError("commit failed")

        return _CM()

    async def write(self, batch: Batch) -> None:
        if self.fail_at is not None and batch[0]["n"] == self.fail_at:
            raise ValueError(f"loader broke at {self.fail_at}")
        if self.delay:
            await anyio.sleep(self.delay)
        self.probe.loaded += 1


def other_tasks() -> set[asyncio.Task[Any]]:
    current = asyncio.current_task()
    return {t for t in asyncio.all_tasks() if t is not current and not t.done()}


@pytest.mark.parametrize("at", [0, N_BATCHES // 2, N_BATCHES - 1])
@pytest.mark.parametrize(
    ("stage", "error_class", "stage_name"),
    [
        ("extract", ExtractError, "extract"),
        ("transform", TransformError, "transform"),
        ("transform_concurrent", TransformError, "transform"),
        ("load", LoadError, "probe_loader"),
    ],
)
async def test_a_stage_that_raises_ends_the_run_cleanly(
    stage: str, error_class: type[PipelineError], stage_name: str, at: int
) -> None:
    probe = Probe()
    pipeline = create_etl_pipeline(
        make_extractor(probe, fail_at=at if stage == "extract" else None),
        make_transformer(
            fail_at=at if stage.startswith("transform") else None,
            concurrency=3 if stage == "transform_concurrent" else 1,
        ),
        ProbeLoader(probe, fail_at=at if stage == "load" else None),
        name="fragile",
        queue_size=2,
    )
    before = other_tasks()
    with anyio.fail_after(5):  # a hang fails the test instead of blocking it
        with pytest.raises(error_class) as info:
            await pipeline.run()
    err = info.value
    assert err.pipeline == "fragile"
    assert err.stage == stage_name
    assert isinstance(err.__cause__, ValueError)
    assert "broke at" in str(err.__cause__)
    assert err.result is not None
    assert err.result.status is RunStatus.FAILED
    assert err.result.error is err
    assert err.result.error_stage == stage_name
    assert probe.extractor_finally
    assert probe.loader_exit != "commit"  # never opened, or told the run failed
    assert other_tasks() <= before
    if stage == "load":
        assert f"at batch {at + 1}" in str(err)


async def test_extractor_raising_before_its_first_batch() -> None:
    probe = Probe()

    async def extract(ctx: RunContext) -> AsyncIterator[Batch]:
        raise ConnectionRefusedError("source down")
        yield []  # pragma: no cover - makes this an async generator

    with pytest.raises(ExtractError, match="source down") as info:
        await create_etl_pipeline(extract, lambda b: b, ProbeLoader(probe)).run()
    assert info.value.stage == "extract"
    assert probe.loader_exit != "commit"
    assert info.value.result is not None
    assert info.value.result.records_out == 0


async def test_extractor_raising_in_its_cleanup() -> None:
    probe = Probe()

    async def extract(ctx: RunContext) -> AsyncIterator[Batch]:
        try:
            yield [{"n": 1}]
        finally:
            raise OSError("close failed")

    with pytest.raises(ExtractError, match="close failed"):
        await create_etl_pipeline(extract, lambda b: b, ProbeLoader(probe)).run()
    assert probe.loader_exit != "commit"


async def test_loader_failing_to_open() -> None:
    probe = Probe()
    pipeline = create_etl_pipeline(
        make_extractor(probe), make_transformer(), ProbeLoader(probe, fail_open=True), queue_size=1
    )
    with anyio.fail_after(5), pytest.raises(LoadError, match="cannot open the sink") as info:
        await pipeline.run()
    assert info.value.stage == "probe_loader"
    assert probe.extractor_finally
    assert probe.extracted <= 4  # held back by the bounded streams, then cancelled


async def test_loader_failing_to_commit() -> None:
    probe = Probe()
    pipeline = create_etl_pipeline(
        make_extractor(probe), make_transformer(), ProbeLoader(probe, fail_close=True)
    )
    with pytest.raises(LoadError, match="commit failed") as info:
        await pipeline.run()
    assert "at batch" not in str(info.value)
    assert probe.loaded == N_BATCHES


async def test_first_error_wins_and_is_not_masked_by_the_cascade() -> None:
    """The transformer fails; the cancellation that follows must not replace its error."""
    probe = Probe()
    pipeline = create_etl_pipeline(
        make_extractor(probe),
        make_transformer(fail_at=3),
        ProbeLoader(probe, fail_close=True),
    )
    with pytest.raises(TransformError, match="transformer broke at 3"):
        await pipeline.run()


@pytest.mark.parametrize("concurrency", [1, 3])
async def test_cancelling_the_caller_cancels_every_stage_promptly(concurrency: int) -> None:
    probe = Probe()
    pipeline = create_etl_pipeline(
        make_extractor(probe, slow=True),
        make_transformer(concurrency=concurrency),
        ProbeLoader(probe, delay=0.05),
        queue_size=2,
    )
    before = other_tasks()
    t0 = anyio.current_time()
    with anyio.move_on_after(0.2) as scope:
        await pipeline.run()
    elapsed = anyio.current_time() - t0
    assert scope.cancelled_caught
    assert elapsed < 1.0
    assert probe.extractor_finally
    assert probe.loader_exit == "CancelledError"  # the loader was told the run did not succeed
    assert 0 < probe.loaded < N_BATCHES
    await anyio.sleep(0.01)
    assert other_tasks() <= before


async def test_cancellation_is_not_reported_as_a_failure() -> None:
    probe = Probe()
    pipeline = create_etl_pipeline(
        make_extractor(probe, slow=True), make_transformer(), ProbeLoader(probe, delay=0.05)
    )
    ctx = RunContext(pipeline=pipeline.name)
    result = pipeline.new_result(ctx)
    with anyio.move_on_after(0.1):
        await pipeline.execute(ctx, result)
    assert result.status is RunStatus.CANCELLED
    assert result.error is None


@pytest.mark.parametrize(("queue_size", "n_transformers"), [(1, 1), (2, 2), (4, 3)])
async def test_backpressure_holds_across_every_chained_stage(
    queue_size: int, n_transformers: int
) -> None:
    """With a slow loader the extractor is never more than the streams can hold ahead."""
    produced = 0
    loaded = 0
    max_ahead = 0

    async def extract() -> AsyncIterator[Batch]:
        nonlocal produced
        for i in range(60):
            produced += 1
            yield [{"n": i}]

    async def slow_load(batch: Batch) -> None:
        nonlocal loaded, max_ahead
        max_ahead = max(max_ahead, produced - loaded)
        await anyio.sleep(0.002)
        loaded += 1

    stages = n_transformers + 2
    transformers = [lambda b: b for _ in range(n_transformers)]
    result = await create_etl_pipeline(
        extract, transformers, slow_load, queue_size=queue_size, logging=False
    ).run()
    assert result.records_out == 60
    # Each stream holds queue_size batches and each stage holds one in hand.
    bound = (stages - 1) * queue_size + stages
    assert max_ahead <= bound
    assert max_ahead >= (stages - 1) * queue_size  # the streams did fill up: the bound is real


async def test_backpressure_with_a_concurrent_transformer() -> None:
    produced = 0
    loaded = 0
    max_ahead = 0
    concurrency = 4

    async def extract() -> AsyncIterator[Batch]:
        nonlocal produced
        for i in range(60):
            produced += 1
            yield [{"n": i}]

    async def fast(batch: Batch) -> Batch:
        await anyio.sleep(0)
        return batch

    async def slow_load(batch: Batch) -> None:
        nonlocal loaded, max_ahead
        max_ahead = max(max_ahead, produced - loaded)
        await anyio.sleep(0.002)
        loaded += 1

    queue_size = 2
    await create_etl_pipeline(
        extract,
        transformer(fast, concurrency=concurrency),
        slow_load,
        queue_size=queue_size,
        logging=False,
    ).run()
    stages = 3
    assert max_ahead <= (stages - 1) * queue_size + stages + 2 * concurrency


async def test_timeout_fails_the_run_with_a_timeout_error() -> None:
    from ductwork import RunTimeoutError

    probe = Probe()
    pipeline = create_etl_pipeline(
        make_extractor(probe, slow=True),
        make_transformer(),
        ProbeLoader(probe, delay=0.05),
        timeout=0.1,
        name="slowpoke",
    )
    with pytest.raises(RunTimeoutError, match=r"timed out after 0\.1s") as info:
        await pipeline.run()
    assert isinstance(info.value, TimeoutError)
    assert info.value.pipeline == "slowpoke"
    assert info.value.result is not None
    assert info.value.result.status is RunStatus.FAILED
    assert probe.loader_exit == "CancelledError"
    assert probe.extractor_finally


async def test_a_non_retryable_error_inside_a_stage_stays_non_retryable() -> None:
    from ductwork import ConfigError

    async def extract() -> AsyncIterator[Batch]:
        raise ConfigError.for_field("url", "missing scheme")
        yield []  # pragma: no cover

    with pytest.raises(ExtractError) as info:
        await create_etl_pipeline(extract, lambda b: b, print).run()
    assert info.value.retryable is False
    assert isinstance(info.value.__cause__, ConfigError)


async def test_an_ordinary_error_inside_a_stage_is_retryable() -> None:
    async def extract() -> AsyncIterator[Batch]:
        raise ConnectionResetError("peer went away")
        yield []  # pragma: no cover

    with pytest.raises(ExtractError) as info:
        await create_etl_pipeline(extract, lambda b: b, print).run()
    assert info.value.retryable is True


class CommitProbe(Loader):
    """A loader with a sync write (no await point in the loop) that records how it ended."""

    name = "commit_probe"

    def __init__(self) -> None:
        self.outcomes: list[str] = []

    def open(self, ctx: RunContext) -> Any:
        loader = self

        class _CM:
            async def __aenter__(self) -> CommitProbe:
                return loader

            async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
                loader.outcomes.append("commit" if exc_type is None else "cleanup")

        return _CM()

    def write(self, batch: Batch) -> None:
        pass


async def test_a_cancelled_run_never_commits_even_on_the_fast_path() -> None:
    """Cancelling the caller at any moment must not let the loader commit a partial run."""
    import random

    rng = random.Random(7)

    async def endless() -> AsyncIterator[Batch]:
        i = 0
        while True:
            i += 1
            yield [{"n": i}]
            if i % 50 == 0:
                await anyio.sleep(0)

    loader = CommitProbe()
    pipeline = create_etl_pipeline(endless, lambda b: b, loader, logging=False)
    for _ in range(200):
        with anyio.move_on_after(rng.uniform(0, 0.002)):
            await pipeline.run()
    assert "commit" not in loader.outcomes
    assert loader.outcomes  # the loader was opened, and told the runs did not succeed


async def test_a_timed_out_run_never_commits() -> None:
    from ductwork import RunTimeoutError

    async def endless() -> AsyncIterator[Batch]:
        i = 0
        while True:
            i += 1
            yield [{"n": i}]
            if i % 50 == 0:
                await anyio.sleep(0)

    loader = CommitProbe()
    for _ in range(50):
        with pytest.raises(RunTimeoutError):
            await create_etl_pipeline(
                endless, lambda b: b, loader, logging=False, timeout=0.002
            ).run()
    assert loader.outcomes.count("cleanup") == 50

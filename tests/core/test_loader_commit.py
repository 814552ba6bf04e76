"""Regression: a loader must not commit when an upstream stage failed and closed its stream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from ductwork import PipelineError, RunContext, create_etl_pipeline


class BufferedLoader:
    """Buffers a run's rows and publishes them only when the run's block exits cleanly."""

    def __init__(self) -> None:
        self.committed: list[dict[str, Any]] = []
        self.cleaned_up: list[str] = []
        self.received = 0

    @asynccontextmanager
    async def open(self, ctx: RunContext) -> AsyncIterator[Any]:
        buffer: list[dict[str, Any]] = []

        loader = self

        class Sink:
            def write(self, batch: list[dict[str, Any]]) -> None:  # sync: no checkpoint here
                loader.received += len(batch)
                buffer.extend(batch)

        try:
            yield Sink()
        except BaseException as exc:
            self.cleaned_up.append(type(exc).__name__)
            raise
        self.committed.extend(buffer)


async def numbers(ctx: RunContext) -> AsyncIterator[list[dict[str, Any]]]:
    for i in range(5):
        if i < 3:
            await anyio.sleep(0.001)  # the loader takes these batches as they come
        yield [{"i": i}]  # {"i": 3} follows {"i": 2} at once: the transformer passes the
        # latter on and fails on the former in one step, before the loader has run again


def fails_at_three(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if batch[0]["i"] == 3:
        raise ValueError("bad record")
    return batch


async def fails_after_two(ctx: RunContext) -> AsyncIterator[list[dict[str, Any]]]:
    await anyio.sleep(0.001)
    yield [{"i": 0}]
    await anyio.sleep(0.001)
    yield [{"i": 1}]  # handed to the waiting loader in the same step as the failure below
    raise ConnectionError("reset")


@pytest.mark.parametrize(
    ("extract", "transform"), [(numbers, fails_at_three), (fails_after_two, None)]
)
async def test_upstream_failure_makes_the_loader_clean_up_not_commit(
    extract: Any, transform: Any
) -> None:
    for _ in range(10):  # the hand-off races the cancellation; repeat to catch a flaky commit
        loader = BufferedLoader()
        pipeline = create_etl_pipeline(extract, transform, loader, logging=False)
        with pytest.raises(PipelineError):
            await pipeline.run()
        assert loader.received > 0  # the loader was open and had taken batches
        assert loader.committed == []
        assert loader.cleaned_up == ["CancelledError"]

"""A failing stage surfaces its own error: with a concurrent transformer the run raises the
original exception (not an exception group wrapping a BrokenResourceError), at the batch that
failed, with its own retryability; a KeyboardInterrupt inside a stage surfaces unwrapped."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

from ductwork import (
    Batch,
    PipelineError,
    RecordValidationError,
    RunContext,
    TransformError,
    create_el_pipeline,
    create_etl_pipeline,
    create_retry_pipeline,
    transformer,
    validate_records,
)


async def numbers(ctx: Any) -> AsyncIterator[Batch]:
    for n in range(1, 41):
        yield [{"n": n}]


def failing_at(bad: int, exc: BaseException, wait: float = 0.0) -> Any:
    """Fails on batch ``bad``; the others take ``wait`` seconds (I/O-bound work)."""

    async def transform(batch: Batch) -> Batch:
        n = batch[0]["n"]
        await anyio.sleep(wait)
        if n == bad:
            raise exc
        return batch

    return transform


@pytest.mark.parametrize("wait", [0.0, 0.005])
@pytest.mark.parametrize("concurrency", [2, 4, 8])
async def test_the_original_error_at_its_batch(concurrency: int, wait: float) -> None:
    stage = transformer(failing_at(4, ValueError("bad batch"), wait), concurrency=concurrency)
    pipeline = create_etl_pipeline(numbers, stage, lambda batch: None, logging=False)
    with anyio.fail_after(10), pytest.raises(TransformError) as info:
        await pipeline.run()
    error = info.value
    assert "at batch 4:" in str(error)
    assert "ExceptionGroup" not in str(error)
    assert type(error.__cause__) is ValueError
    assert error.retryable is not False


class Row(BaseModel):
    n: int


async def test_a_non_retryable_error_is_not_retried() -> None:
    attempts = 0

    async def extract(ctx: Any) -> AsyncIterator[Batch]:
        nonlocal attempts
        attempts += 1
        for n in range(1, 21):
            yield [{"n": "x" if n == 4 else n}]

    stage = validate_records(Row)

    async def validate(batch: Batch) -> Batch:
        await anyio.sleep(0.005)
        return await stage.transform(batch, RunContext())

    concurrent = transformer(validate, concurrency=4)
    pipeline = create_etl_pipeline(extract, concurrent, lambda batch: None, logging=False)
    retry = create_retry_pipeline(pipeline, max_retries=3, backoff_factor=0.0, logging=False)
    with anyio.fail_after(10), pytest.raises(PipelineError) as info:
        await retry.run()
    assert attempts == 1
    cause = info.value.__cause__
    assert isinstance(cause, RecordValidationError)
    assert cause.retryable is False


@pytest.mark.parametrize("concurrency", [1, 4])
async def test_keyboard_interrupt_in_a_transformer_surfaces_unwrapped(concurrency: int) -> None:
    stage = transformer(failing_at(3, KeyboardInterrupt(), 0.002), concurrency=concurrency)
    pipeline = create_etl_pipeline(numbers, stage, lambda batch: None, logging=False)
    with anyio.fail_after(10), pytest.raises(KeyboardInterrupt):
        await pipeline.run()


async def test_keyboard_interrupt_in_a_loader_surfaces_unwrapped() -> None:
    def load(batch: Batch) -> None:
        if batch[0]["n"] == 5:
            raise KeyboardInterrupt

    with anyio.fail_after(10), pytest.raises(KeyboardInterrupt):
        await create_el_pipeline(numbers, load, logging=False).run()

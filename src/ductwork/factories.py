"""Factories: thin, validated constructors for pipelines.

Each factory validates its arguments and raises :class:`~ductwork.ConfigError` naming the bad one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

from .core.compose import ConditionalPipeline, ParallelPipeline, SequentialPipeline
from .core.context import RunContext
from .core.pipeline import LogSetting, Pipeline
from .core.retry import RetryPipeline
from .core.runnable import Runnable

if TYPE_CHECKING:
    from .core.store import StateStore

__all__ = [
    "create_conditional_pipeline",
    "create_el_pipeline",
    "create_etl_pipeline",
    "create_parallel_pipeline",
    "create_retry_pipeline",
    "create_sequential_pipeline",
]


def create_etl_pipeline(
    extractor: Any,
    transformer: Any | Sequence[Any] | None,
    loader: Any,
    name: str = "etl_pipeline",
    error_handling: Literal["raise", "skip"] = "raise",
    logging: LogSetting = True,
    *,
    queue_size: int = 8,
    timeout: float | None = None,
    state: StateStore | None = None,
) -> Pipeline:
    """Create an extract → transform → load pipeline.

    Args:
        extractor: an async generator function ``(ctx) -> AsyncIterator[Batch]`` (or an extractor
            object, such as one made by ``create_file_extractor``).
        transformer: one transformer or a list of them, each ``(batch[, ctx]) -> Batch | None``,
            sync or async; wrap one in :func:`~ductwork.transformer` for ``concurrency``.
        loader: a loader object (``open(ctx)`` → sink) or a function ``(batch[, ctx])``.
        name: the pipeline's name.
        error_handling: ``"raise"`` or ``"skip"`` (see :class:`~ductwork.PipelineConfig`).
        logging: ``True``/``False`` or a level name for the run's start/end log lines.
        queue_size: batches buffered between two stages.
        timeout: seconds after which a run is cancelled and fails.
        state: the state store handed to stages as ``ctx.state``.

    Example:
        >>> import anyio
        >>> async def extract(ctx):
        ...     yield [{"id": 1, "name": "ada"}, {"id": 2, "name": "grace"}]
        >>> def upper(batch):
        ...     return [{**r, "name": r["name"].upper()} for r in batch]
        >>> rows = []
        >>> pipeline = create_etl_pipeline(extract, upper, rows.extend, logging=False)
        >>> anyio.run(pipeline.run).records_out, rows[1]["name"]
        (2, 'GRACE')
    """
    return Pipeline(
        extractor,
        transformer,
        loader,
        name=name,
        queue_size=queue_size,
        error_handling=error_handling,
        logging=logging,
        timeout=timeout,
        state=state,
    )


def create_el_pipeline(
    extractor: Any,
    loader: Any,
    name: str = "el_pipeline",
    *,
    logging: LogSetting = True,
    queue_size: int = 8,
    timeout: float | None = None,
    state: StateStore | None = None,
) -> Pipeline:
    """Create an extract → load pipeline (no transformation).

    Args:
        extractor: as for :func:`create_etl_pipeline`.
        loader: as for :func:`create_etl_pipeline`.
        name: the pipeline's name.
        logging: ``True``/``False`` or a level name for the run's start/end log lines.
        queue_size: batches buffered between the two stages.
        timeout: seconds after which a run is cancelled and fails.
        state: the state store handed to stages as ``ctx.state``.
    """
    return Pipeline(
        extractor,
        (),
        loader,
        name=name,
        queue_size=queue_size,
        logging=logging,
        timeout=timeout,
        state=state,
    )


def create_parallel_pipeline(
    pipelines: Sequence[Runnable],
    max_workers: int | None = 4,
    error_handling: Literal["fail_fast", "continue", "ignore"] = "fail_fast",
    name: str = "parallel_pipeline",
    *,
    logging: LogSetting = True,
    timeout: float | None = None,
    state: StateStore | None = None,
) -> ParallelPipeline:
    """Create a composition that runs ``pipelines`` side by side.

    Args:
        pipelines: the runnables (pipelines or other compositions) to run; at least one.
        max_workers: how many run at once (``None``: all of them); the others wait their turn.
        error_handling: ``"fail_fast"`` (the first failure cancels the running and queued
            children and fails the run), ``"continue"`` (all run; the run then fails reporting
            every failure) or ``"ignore"`` (failures are recorded, the run succeeds).
        name: the composition's name.
        logging: ``True``/``False`` or a level name for the run's start/end log lines.
        timeout: seconds after which the whole run is cancelled and fails.
        state: the state store handed to children that have none of their own.

    Raises:
        ConfigError: an argument is invalid; the error names it.

    Example:
        >>> import anyio
        >>> async def extract(ctx):
        ...     yield [{"pipeline": ctx.pipeline}]
        >>> rows = []
        >>> regions = create_parallel_pipeline(
        ...     [create_el_pipeline(extract, rows.extend, r, logging=False) for r in ("eu", "us")],
        ...     max_workers=2,
        ...     logging=False,
        ... )
        >>> anyio.run(regions.run).records_out, sorted(r["pipeline"] for r in rows)
        (2, ['eu', 'us'])
    """
    return ParallelPipeline(
        pipelines,
        max_workers,
        error_handling,
        name=name,
        logging=logging,
        timeout=timeout,
        state=state,
    )


def create_sequential_pipeline(
    pipelines: Sequence[Runnable],
    stop_on_error: bool = True,
    name: str = "sequential_pipeline",
    *,
    logging: LogSetting = True,
    timeout: float | None = None,
    state: StateStore | None = None,
) -> SequentialPipeline:
    """Create a composition that runs ``pipelines`` one after another.

    Args:
        pipelines: the runnables to run, in order; at least one.
        stop_on_error: ``True`` stops at the first failure (the rest are recorded as skipped);
            ``False`` runs every child and then fails reporting every failure.
        name: the composition's name.
        logging: ``True``/``False`` or a level name for the run's start/end log lines.
        timeout: seconds after which the whole run is cancelled and fails.
        state: the state store handed to children that have none of their own.

    Raises:
        ConfigError: an argument is invalid; the error names it.
    """
    return SequentialPipeline(
        pipelines,
        stop_on_error,
        name=name,
        logging=logging,
        timeout=timeout,
        state=state,
    )


def create_conditional_pipeline(
    condition: Callable[[RunContext], Any],
    true_pipeline: Runnable,
    false_pipeline: Runnable | None = None,
    name: str = "conditional_pipeline",
    *,
    logging: LogSetting = True,
    timeout: float | None = None,
    state: StateStore | None = None,
) -> ConditionalPipeline:
    """Create a composition that runs one of two runnables, chosen by ``condition`` at each run.

    Args:
        condition: a sync or async callable receiving the :class:`~ductwork.RunContext`.
        true_pipeline: run when the condition is true.
        false_pipeline: run when it is false; without one, the run ends with status ``skipped``.
        name: the composition's name.
        logging: ``True``/``False`` or a level name for the run's start/end log lines.
        timeout: seconds after which the whole run is cancelled and fails.
        state: the state store handed to children that have none of their own.

    Raises:
        ConfigError: an argument is invalid; the error names it.
    """
    return ConditionalPipeline(
        condition,
        true_pipeline,
        false_pipeline,
        name=name,
        logging=logging,
        timeout=timeout,
        state=state,
    )


def create_retry_pipeline(
    pipeline: Runnable,
    max_retries: int = 3,
    backoff_factor: float = 1.0,
    name: str = "retry_pipeline",
    *,
    max_backoff: float = 60.0,
    jitter: float = 0.1,
    retry_on: type[Exception] | Sequence[type[Exception]] | None = None,
    logging: LogSetting = True,
    timeout: float | None = None,
    state: StateStore | None = None,
) -> RetryPipeline:
    """Create a composition that runs ``pipeline`` again after a retryable failure.

    Before retry ``n`` it waits ``min(max_backoff, backoff_factor * 2 ** (n - 1))`` seconds,
    shortened at random by up to ``jitter`` of that; cancellation ends the wait at once. Every
    attempt is a child of the composition's result.

    Args:
        pipeline: the runnable to run.
        max_retries: runs after the first one, at most.
        backoff_factor: seconds before the first retry; doubles for each further retry.
        name: the composition's name.
        max_backoff: the longest wait between two attempts, in seconds.
        jitter: the fraction (0 to 1) of each wait that may be cut at random.
        retry_on: exception types to retry on (matched against the error and its causes).
            Default: every PipelineError except those marked not retryable (bad configuration,
            malformed input, stages of the wrong shape).
        logging: ``True``/``False`` or a level name for the run's log lines.
        timeout: seconds after which the whole run, retries included, is cancelled and fails.
        state: the state store handed to the child if it has none of its own.

    Raises:
        ConfigError: an argument is invalid; the error names it.
    """
    return RetryPipeline(
        pipeline,
        max_retries,
        backoff_factor,
        max_backoff=max_backoff,
        jitter=jitter,
        retry_on=retry_on,
        name=name,
        logging=logging,
        timeout=timeout,
        state=state,
    )

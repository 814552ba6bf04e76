"""Factories: thin, validated constructors for pipelines and compositions.

Each factory takes its main arguments by position and every other option by keyword; all of them
are fields of the configuration model of what it builds (:class:`~ductwork.PipelineConfig`,
:class:`~ductwork.core.compose.ParallelConfig`, ...), documented there and validated through it:
a bad one raises :class:`~ductwork.ConfigError` naming it.

The factories of compositions also take ``name``, the composition's name, and ``state``, the state
store handed to children that have none of their own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from .core.compose import (
    Composition,
    ConditionalPipeline,
    ParallelErrorHandling,
    ParallelPipeline,
    SequentialPipeline,
)
from .core.context import RunContext
from .core.pipeline import LogSetting, Pipeline
from .core.retry import RetryPipeline
from .core.runnable import Runnable
from .core.types import ErrorHandling

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
    error_handling: ErrorHandling | bool = "raise",
    logging: LogSetting = True,
    *,
    state: StateStore | None = None,
    **options: Any,
) -> Pipeline:
    """Create an extract → transform → load pipeline.

    Args:
        extractor: an async generator function ``(ctx) -> AsyncIterator[Batch]`` (or an extractor
            object, such as one made by ``create_file_extractor``).
        transformer: one transformer or a list of them, each ``(batch[, ctx]) -> Batch | None``,
            sync or async; wrap one in :func:`~ductwork.transformer` for ``concurrency``.
        loader: a loader object (``open(ctx)`` → sink) or a function ``(batch[, ctx])``.
        name: the pipeline's name.
        error_handling: ``"raise"`` (or ``True``: a clear error stops the run) or ``"skip"``
            (or ``False``: a batch whose transformer raises is dropped and counted).
        logging: ``True``/``False`` or a level name for the run's start/end log lines.
        state: the state store handed to stages as ``ctx.state``.
        **options: any other field of :class:`~ductwork.PipelineConfig` (``queue_size``,
            ``timeout``, ...), where every option is documented.

    Raises:
        ConfigError: an option is invalid; the error names it.

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
        error_handling=error_handling,
        logging=logging,
        state=state,
        **options,
    )


def create_el_pipeline(
    extractor: Any,
    loader: Any,
    name: str = "el_pipeline",
    *,
    state: StateStore | None = None,
    **options: Any,
) -> Pipeline:
    """Create an extract → load pipeline (no transformation).

    Args:
        extractor: as for :func:`create_etl_pipeline`.
        loader: as for :func:`create_etl_pipeline`.
        name: the pipeline's name.
        state: the state store handed to stages as ``ctx.state``.
        **options: any other field of :class:`~ductwork.PipelineConfig` (``logging``,
            ``queue_size``, ``timeout``, ...).

    Raises:
        ConfigError: an option is invalid; the error names it.
    """
    return Pipeline(extractor, (), loader, name=name, state=state, **options)


def create_parallel_pipeline(
    pipelines: Sequence[Runnable],
    max_workers: int | None = 4,
    error_handling: ParallelErrorHandling = "fail_fast",
    name: str = "parallel_pipeline",
    *,
    state: StateStore | None = None,
    **options: Any,
) -> ParallelPipeline:
    """Create a composition that runs ``pipelines`` side by side.

    Args:
        pipelines: the runnables (pipelines or other compositions) to run; at least one.
        max_workers: how many run at once (``None``: all of them); the others wait their turn.
        error_handling: what a failed child does: ``"fail_fast"``, ``"continue"`` or
            ``"ignore"`` (values of their own, described with the config's field).
        **options: any other field of :class:`~ductwork.core.compose.ParallelConfig`
            (``logging``, ``timeout``).

    Raises:
        ConfigError: an option is invalid; the error names it.

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
    return _build(ParallelPipeline, locals())


def create_sequential_pipeline(
    pipelines: Sequence[Runnable],
    stop_on_error: bool = True,
    name: str = "sequential_pipeline",
    *,
    state: StateStore | None = None,
    **options: Any,
) -> SequentialPipeline:
    """Create a composition that runs ``pipelines`` one after another.

    Args:
        pipelines: the runnables to run, in order; at least one.
        stop_on_error: ``True`` stops at the first failure; ``False`` runs every child.
        **options: any other field of :class:`~ductwork.core.compose.SequentialConfig`
            (``logging``, ``timeout``).

    Raises:
        ConfigError: an option is invalid; the error names it.
    """
    return _build(SequentialPipeline, locals())


def create_conditional_pipeline(
    condition: Callable[[RunContext], Any] | Callable[[], Any],
    true_pipeline: Runnable,
    false_pipeline: Runnable | None = None,
    name: str = "conditional_pipeline",
    *,
    state: StateStore | None = None,
    **options: Any,
) -> ConditionalPipeline:
    """Create a composition that runs one of two runnables, chosen by ``condition`` at each run.

    Args:
        condition: a sync or async callable receiving the :class:`~ductwork.RunContext`, or
            taking no argument.
        true_pipeline: run when the condition is true.
        false_pipeline: run when it is false; without one, the run ends with status ``skipped``.
        **options: any other field of :class:`~ductwork.core.compose.ConditionalConfig`
            (``logging``, ``timeout``).

    Raises:
        ConfigError: an option is invalid; the error names it.
    """
    return _build(ConditionalPipeline, locals())


def create_retry_pipeline(
    pipeline: Runnable,
    max_retries: int = 3,
    backoff_factor: float = 1.0,
    name: str = "retry_pipeline",
    *,
    state: StateStore | None = None,
    **options: Any,
) -> RetryPipeline:
    """Create a composition that runs ``pipeline`` again after a retryable failure.

    Before retry ``n`` it waits ``min(max_backoff, backoff_factor * 2 ** (n - 1))`` seconds,
    shortened at random by up to ``jitter`` of that; cancellation ends the wait at once. Every
    attempt is a child of the composition's result.

    Args:
        pipeline: the runnable to run.
        max_retries: runs after the first one, at most.
        backoff_factor: seconds before the first retry; doubles for each further retry.
        **options: any other field of :class:`~ductwork.core.retry.RetryConfig`
            (``max_backoff``, ``jitter``, ``retry_on``, ``logging``, ``timeout``).

    Raises:
        ConfigError: an option is invalid; the error names it.
    """
    return _build(RetryPipeline, locals())


C = TypeVar("C", bound=Composition[Any])


def _build(cls: type[C], arguments: dict[str, Any]) -> C:
    """Build ``cls`` from a composition factory's ``locals()``, taken before it defines any: its
    parameters, each passed by keyword (a field of the composition's model, or ``state``), and
    ``**options`` spread among them."""
    fields = dict(arguments)
    options = fields.pop("options")
    return cls(**fields, **options)

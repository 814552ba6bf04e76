"""Factories: thin, validated constructors for pipelines.

Each factory validates its arguments and raises :class:`~ductwork.ConfigError` naming the bad one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from .core.pipeline import LogSetting, Pipeline

if TYPE_CHECKING:
    from .state import StateStore

__all__ = ["create_el_pipeline", "create_etl_pipeline"]


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

"""Backfill: run a timescoped pipeline for every window of a time range.

Each window is one run of the registered pipeline, through :meth:`PipelineRegistry.run`, so it
is recorded in the state store like any other run. A window that already ran successfully (on a
schedule, by hand or in an earlier backfill) is skipped, which makes a backfill resumable: after
a crash or a cancellation, running it again runs only the windows that are still missing. The
work is done by the engine in :mod:`ductwork.backfill_engine`, below the registry; this module is
the entry point that finds the registry.

Example:
    >>> import anyio
    >>> from ductwork import PipelineRegistry, create_el_pipeline
    >>> async def extract(ctx):
    ...     yield [{"day": f"{ctx.window.start:%d}"}]
    >>> days = []
    >>> registry = PipelineRegistry()
    >>> _ = registry.register_pipeline(
    ...     "days", create_el_pipeline(extract, days.extend, logging=False), timescope="daily")
    >>> first = anyio.run(registry.backfill, "days", "2024-02-27", "2024-03-02")
    >>> sorted(d["day"] for d in days), len(first.succeeded)
    (['01', '27', '28', '29'], 4)
    >>> again = anyio.run(registry.backfill, "days", "2024-02-25", "2024-03-02")
    >>> len(again.succeeded), len(again.skipped), len(days)
    (2, 4, 6)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any

from .backfill_engine import BackfillResult, WindowRun
from .core.config import checked_keywords
from .core.executor import Executor
from .core.store import StateStore
from .registry import PipelineRegistry, get_default_registry

__all__ = ["BackfillResult", "WindowRun", "backfill_pipeline"]


@checked_keywords
async def backfill_pipeline(
    name: str,
    start: datetime | date | str,
    end: datetime | date | str,
    *,
    registry: PipelineRegistry | None = None,
    max_workers: int = 1,
    params: Mapping[str, Any] | None = None,
    rerun: bool = False,
    stop_on_failure: bool = False,
    raise_on_failure: bool = True,
    state: StateStore | None = None,
    now: datetime | None = None,
    executor: Executor | None = None,
    on_progress: Callable[[BackfillResult], object] | None = None,
) -> BackfillResult:
    """Run the registered pipeline ``name`` for every window of its timescope in ``[start, end)``.

    Windows are run oldest first, ``max_workers`` at a time. Windows that already succeeded
    (according to the state store) are skipped unless ``rerun``; windows that have not ended by
    ``now`` are skipped too. Every run is recorded like any run of a registered pipeline, so an
    interrupted backfill resumes where it stopped when started again.

    Args:
        name: the registered pipeline (it needs a timescope).
        start: the start of the range (dates and naive values are read in the timescope's zone;
            ISO text is accepted). Every window overlapping the range is included.
        end: the end of the range (exclusive).
        registry: the registry holding the pipeline (default: the default registry).
        max_workers: how many windows run at once.
        params: parameters for every run.
        rerun: run windows that already succeeded, too.
        stop_on_failure: start no new window once one has failed (those left are reported as
            not run); runs in flight finish.
        raise_on_failure: raise when a window failed (otherwise just return the result).
        state: the state store (default: the registry's).
        now: the current time, for deciding which windows are complete (default: now).
        executor: where the windows run: :class:`~ductwork.LocalExecutor` (default, in this
            event loop) or :class:`~ductwork.DaskExecutor` (on a Dask cluster's workers; the
            history and the record of succeeded windows stay in ``state``, here).
        on_progress: called with the :class:`BackfillResult` as it stands once the windows are
            planned and each time a window starts or ends (``.succeeded``, ``.running`` and
            ``.failed`` give a live display its counts); it must not block.

    Returns:
        A :class:`BackfillResult` with one entry per window.

    Raises:
        PipelineError: a window failed (and ``raise_on_failure``): the message names the failed
            windows, ``.result`` is the backfill as a RunResult (:meth:`BackfillResult.to_result`)
            and ``__cause__`` the first window's error.
        ScheduleError: the pipeline has no timescope, or the range is empty or invalid.
        ConfigError: ``max_workers`` is not a positive integer, or a keyword is not one of
            these (the error names it).
    """
    reg = registry if registry is not None else get_default_registry()
    return await reg.backfill(
        name,
        start,
        end,
        max_workers=max_workers,
        params=params,
        rerun=rerun,
        stop_on_failure=stop_on_failure,
        raise_on_failure=raise_on_failure,
        state=state,
        now=now,
        executor=executor,
        on_progress=on_progress,
    )

"""Running a registered pipeline: its time window, the run itself and the run history it
leaves in the state store."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from types import MappingProxyType
from typing import Any

import anyio

from .._exceptions import ConfigError, PipelineError, ScheduleError
from ..core.config import checked_keywords
from ..core.context import RunContext, TimeWindow, new_run_id
from ..core.executor import LOCAL, Executor
from ..core.result import RunResult
from ..core.types import RunStatus
from ..state import StateStore, record_run
from .entries import RegistryBase

__all__ = ["RunsMixin"]


class RunsMixin(RegistryBase):
    """The methods of :class:`~ductwork.PipelineRegistry` that run pipelines and read their
    history."""

    def resolve_window(
        self,
        name: str,
        window: TimeWindow | datetime | date | str | None = None,
        *,
        now: datetime | None = None,
    ) -> TimeWindow | None:
        """The window a run of ``name`` covers.

        Without ``window``: the last complete window of the pipeline's timescope before ``now``
        (``None`` for a pipeline without a timescope). A date, datetime or ISO text is resolved
        by the timescope (see :meth:`Timescope.resolve_window`).

        Raises:
            ScheduleError: a window other than a TimeWindow for a pipeline with no timescope.
        """
        entry = self.get_pipeline_entry(name)
        scope = entry.timescope
        if window is None:
            return scope.last_complete_window(now) if scope is not None else None
        if isinstance(window, TimeWindow):
            return window
        if scope is None:
            raise ScheduleError(
                f"pipeline {name!r} has no timescope: give its window as a TimeWindow"
            )
        return scope.resolve_window(window)

    @checked_keywords
    async def run(
        self,
        name: str,
        *,
        window: TimeWindow | datetime | date | str | None = None,
        params: Mapping[str, Any] | None = None,
        run_id: str | None = None,
        state: StateStore | None = None,
        now: datetime | None = None,
        trigger: str = "manual",
        on_start: Callable[[RunResult], object] | None = None,
        executor: Executor | None = None,
    ) -> RunResult:
        """Run the pipeline registered under ``name`` once and record the run.

        Args:
            name: the registered name.
            window: the window to cover (see :meth:`resolve_window`); by default the last
                complete window of the timescope before ``now``.
            params: run parameters (``ctx.params``).
            run_id: the run's id (generated when omitted).
            state: the store to record the run in and hand to the run (default: the
                registry's; the run gets the pipeline's own store instead when it has one).
            now: the trigger time the default window is computed from (default: now).
            trigger: what started the run, kept in the run record (``manual``, ``schedule``,
                ``backfill``, ...).
            on_start: called with the run's RunResult just before the run starts; its per-stage
                counters fill in while the run goes on (for progress displays).
            executor: where the run runs (default: :class:`~ductwork.LocalExecutor`, here); with
                a :class:`~ductwork.DaskExecutor` it runs on a cluster's worker while the run is
                recorded here, in ``state``.

        Returns:
            The RunResult of a successful run.

        Raises:
            PipelineError: the run failed (or the pipeline could not be built); ``.result``
                holds the failed RunResult. Either way the run is recorded in the store's
                history before the error propagates, even when the run is cancelled.
        """
        entry = self.get_pipeline_entry(name)
        resolved = self.resolve_window(name, window, now=now)
        run_params = dict(params or {})
        ctx_id = run_id or new_run_id()
        store = state if state is not None else self.state
        try:
            runnable = entry.build()
        except ConfigError as exc:
            result = RunResult(name=name, run_id=ctx_id, status=RunStatus.FAILED)
            result.started_at = result.ended_at = datetime.now(UTC)
            error = PipelineError(
                f"could not build the pipeline: {exc}",
                pipeline=name,
                result=result,
                # A factory that failed on I/O (a connection, a timeout) may succeed next time.
                retryable=isinstance(exc.__cause__, (ConnectionError, TimeoutError)),
            )
            error.__cause__ = exc
            result.error = error
            with anyio.CancelScope(shield=True):
                await record_run(
                    store, name, result, window=resolved, params=run_params, trigger=trigger
                )
            raise error from exc
        ctx = RunContext(
            run_id=ctx_id,
            pipeline=runnable.name,
            window=resolved,
            params=MappingProxyType(run_params),
            state=state if state is not None else (runnable.state or self.state),
        )
        result = runnable.new_result(ctx)
        if on_start is not None:
            on_start(result)
        try:
            await (executor or LOCAL).execute(runnable, ctx, result)
        finally:
            with anyio.CancelScope(shield=True):
                await record_run(
                    store, name, result, window=resolved, params=run_params, trigger=trigger
                )
        if result.status is RunStatus.FAILED:
            assert result.error is not None
            raise result.error
        return result

    @checked_keywords
    async def history(
        self, name: str, limit: int | None = 20, *, state: StateStore | None = None
    ) -> list[dict[str, Any]]:
        """The most recent run records of ``name``, newest first (from the registry's store)."""
        self.get_pipeline_entry(name)
        return await (state if state is not None else self.state).list_runs(name, limit)

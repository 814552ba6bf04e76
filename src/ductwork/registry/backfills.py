"""The backfill entry point of a registry: a run of a registered pipeline for every window of
its timescope in a range (the windows are planned and run by :mod:`ductwork.backfill_engine`)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from ..backfill_engine import BackfillResult, run_backfill
from ..core.config import checked_keywords
from ..core.context import TimeWindow
from ..core.executor import Executor
from ..core.result import RunResult
from ..state import StateStore
from .runs import RunsMixin

__all__ = ["BackfillMixin"]


class BackfillMixin(RunsMixin):
    """The backfill method of :class:`~ductwork.PipelineRegistry`."""

    @checked_keywords(forwards_to=run_backfill)
    async def backfill(
        self,
        name: str,
        start: datetime | date | str,
        end: datetime | date | str,
        *,
        params: Mapping[str, Any] | None = None,
        state: StateStore | None = None,
        executor: Executor | None = None,
        **options: Any,
    ) -> BackfillResult:
        """Run ``name`` for every window of its timescope in ``[start, end)``.

        Every window is a :meth:`run` with ``params``, recorded in ``state`` (default: the
        registry's store), which also tells which windows already succeeded; ``executor`` says
        where the windows run. See :func:`ductwork.backfill_pipeline` for the other options.
        """
        entry = self.get_pipeline_entry(name)

        async def run_window(window: TimeWindow) -> RunResult:
            return await self.run(
                name,
                window=window,
                params=params,
                state=state,
                trigger="backfill",
                executor=executor,
            )

        return await run_backfill(
            name,
            entry.timescope,
            start,
            end,
            run_window=run_window,
            state=state if state is not None else self.state,
            **options,
        )

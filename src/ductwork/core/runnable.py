"""Runnable: anything that can be run, nested, registered and scheduled."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping
from datetime import UTC, datetime
from time import perf_counter
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import anyio

from .._exceptions import PipelineError, RunTimeoutError, is_retryable
from .context import RunContext, TimeWindow, new_run_id
from .errors import unwrap_group
from .instrument import observe_run
from .result import RunResult
from .types import RunStatus

if TYPE_CHECKING:
    from .store import StateStore

__all__ = ["Runnable", "resolve_log_level"]

logger = logging.getLogger("ductwork")


def resolve_log_level(value: bool | int | str) -> int | None:
    """Map the ``logging`` option to the level of a run's start/end lines (``None``: silent)."""
    if value is True:
        return logging.INFO
    if value is False:
        return None
    if isinstance(value, int):
        return value
    return logging.getLevelNamesMapping()[value.upper()]


class Runnable(ABC):
    """Base class of pipelines and compositions.

    Every Runnable has a ``name`` and an optional per-run ``timeout`` (seconds), and runs with
    ``await runnable.run()``. Compositions run their children with :meth:`execute`.
    """

    name: str
    kind: str = "pipeline"
    timeout: float | None = None
    log_level: int | None = logging.INFO
    state: StateStore | None = None

    @abstractmethod
    async def _execute(self, ctx: RunContext, result: RunResult) -> None:
        """Do the work of one run, filling in ``result``; raise to fail it."""

    async def run(
        self,
        *,
        params: Mapping[str, Any] | None = None,
        window: TimeWindow | None = None,
        run_id: str | None = None,
        state: StateStore | None = None,
    ) -> RunResult:
        """Run once and return the :class:`~ductwork.RunResult`.

        Args:
            params: run parameters, available to stages as ``ctx.params``.
            window: the time window the run covers (``ctx.window``).
            run_id: an id for the run; a new one is generated when omitted.
            state: the state store for this run (defaults to the runnable's own, if any).

        Raises:
            PipelineError: the run failed; ``.result`` holds the RunResult and ``__cause__`` the
                original exception. A run that exceeds its ``timeout`` raises
                :class:`~ductwork.RunTimeoutError`.
        """
        ctx = RunContext(
            run_id=run_id or new_run_id(),
            pipeline=self.name,
            window=window,
            params=MappingProxyType(dict(params or {})),
            state=state if state is not None else self.state,
        )
        result = await self.execute(ctx)
        if result.status is RunStatus.FAILED:
            assert result.error is not None
            raise result.error
        return result

    def new_result(self, ctx: RunContext) -> RunResult:
        """An empty result for a run of this runnable with context ``ctx``."""
        return RunResult(name=self.name, run_id=ctx.run_id, kind=self.kind)

    async def execute(self, ctx: RunContext, result: RunResult | None = None) -> RunResult:
        """Run with an existing context and return the result without raising on failure.

        This is what compositions call for their children. A failed run is returned with status
        ``failed`` and ``error`` set to a :class:`~ductwork.PipelineError`; cancellation is
        recorded (status ``cancelled``) and re-raised.
        """
        if result is None:
            result = self.new_result(ctx)
        with observe_run(self, ctx, result):
            return await self._run(ctx, result)

    async def _run(self, ctx: RunContext, result: RunResult) -> RunResult:
        """The body of :meth:`execute`: run, time, log and record the outcome in ``result``."""
        result.status = RunStatus.RUNNING
        result.started_at = datetime.now(UTC)
        level = self.log_level
        if level is not None:
            logger.log(level, "run started: %s (%s) run_id=%s", self.name, self.kind, ctx.run_id)
        t0 = perf_counter()
        try:
            if self.timeout is None:
                await self._execute(ctx, result)
            else:
                with anyio.move_on_after(self.timeout) as scope:
                    await self._execute(ctx, result)
                if scope.cancelled_caught:
                    raise RunTimeoutError(
                        f"run timed out after {self.timeout:g}s and was cancelled",
                        pipeline=self.name,
                    )
        except anyio.get_cancelled_exc_class():
            result.status = RunStatus.CANCELLED
            self._finish(result, t0)
            if level is not None:
                logger.log(max(level, logging.WARNING), "run cancelled: %s", self._describe(result))
            raise
        except BaseException as raw:
            exc = unwrap_group(raw)
            if not isinstance(exc, Exception):
                raise
            if not isinstance(exc, PipelineError):
                wrapped = PipelineError(
                    f"run failed: {type(exc).__name__}: {exc}", pipeline=self.name
                )
                wrapped.__cause__ = exc
                exc = wrapped
            if exc.pipeline is None:
                exc.pipeline = self.name
            if exc.result is None:
                exc.result = result
            _not_retryable_after_commits(exc, result)
            result.status = RunStatus.FAILED
            result.error = exc
            result.error_stage = exc.stage if exc.pipeline == self.name else None
            self._finish(result, t0)
            if level is not None:
                logger.log(
                    max(level, logging.ERROR),
                    "run failed: %s error=%s",
                    self._describe(result),
                    exc,
                )
            return result
        if result.status is RunStatus.RUNNING:
            result.status = RunStatus.SUCCEEDED
        self._finish(result, t0)
        if level is not None:
            logger.log(level, "run %s: %s", result.status, self._describe(result))
        return result

    @staticmethod
    def _finish(result: RunResult, t0: float) -> None:
        result.duration_seconds = perf_counter() - t0
        result.ended_at = datetime.now(UTC)

    @staticmethod
    def _describe(result: RunResult) -> str:
        text = (
            f"{result.name} run_id={result.run_id} records_in={result.records_in} "
            f"records_out={result.records_out} duration={result.duration_seconds:.3f}s"
        )
        slowest = result.bottleneck
        if slowest is not None:
            text += f" slowest={slowest.name} (busy {slowest.busy_seconds:.3f}s)"
        if result.attempts > 1:
            text += f" attempts={result.attempts}"
        return text


def _not_retryable_after_commits(error: PipelineError, result: RunResult) -> None:
    """Make ``error`` not retryable when a loader of this run (or of a child) committed rows a
    rerun would write again; whatever failed, a timeout included."""
    reason = result.rerun_unsafe()
    if reason is not None and is_retryable(error):
        error.retryable = False
        error.add_note(reason)

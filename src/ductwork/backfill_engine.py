"""The backfill engine: run a pipeline for every window of a time range, skipping done ones.

:func:`run_backfill` cuts a range into the windows of a timescope and runs each window that has
not succeeded yet (according to the state store), oldest first and a given number at a time.
It runs a window through a function it is given, so it knows nothing of registries: the
registry's :meth:`~ductwork.PipelineRegistry.backfill` hands it one that runs the registered
pipeline and records the run, and :func:`ductwork.backfill_pipeline` is the public entry point.
A window that already ran successfully (on a schedule, by hand or in an earlier backfill) is
skipped, which makes a backfill resumable: after a crash or a cancellation, running it again runs
only the windows that are still missing.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from time import perf_counter
from typing import Any, overload

import anyio

from ._exceptions import ConfigError, PipelineError, ScheduleError
from .core.context import TimeWindow, new_run_id
from .core.errors import unwrap_group
from .core.instrument import operation
from .core.result import RunResult
from .core.store import StateStore
from .core.types import RunStatus
from .state import succeeded_windows
from .timescope import Timescope

__all__ = ["BackfillResult", "WindowRun", "run_backfill"]

logger = logging.getLogger("ductwork")

ALREADY_SUCCEEDED = "already succeeded"
NOT_COMPLETE = "window not complete yet"
NOT_RUN = "not run: an earlier window failed"


@dataclass(slots=True)
class WindowRun:
    """One window of a backfill and what happened to it.

    Attributes:
        window: the time window.
        status: ``succeeded`` or ``failed`` (it ran), ``skipped`` (it had already succeeded, or
            had not ended yet), or ``pending`` (not run because an earlier window failed and the
            backfill stops on failure).
        result: the run's RunResult, when it ran.
        reason: why it was skipped or not run.
    """

    window: TimeWindow
    status: RunStatus = RunStatus.PENDING
    result: RunResult | None = None
    reason: str | None = None

    @property
    def error(self) -> BaseException | None:
        """The error of a failed run."""
        return self.result.error if self.result is not None else None


class _WindowsWith:
    """A read-only attribute of a :class:`BackfillResult`: its windows with one status."""

    def __init__(self, status: RunStatus, doc: str) -> None:
        self.status = status
        self.__doc__ = doc

    @overload
    def __get__(self, result: None, owner: type[Any]) -> _WindowsWith: ...

    @overload
    def __get__(
        self, result: BackfillResult, owner: type[Any] | None = None
    ) -> list[WindowRun]: ...

    def __get__(
        self, result: BackfillResult | None, owner: type[Any] | None = None
    ) -> _WindowsWith | list[WindowRun]:
        if result is None:
            return self
        return [w for w in result.windows if w.status is self.status]


@dataclass(slots=True)
class BackfillResult:
    """The outcome of a backfill: one :class:`WindowRun` per window, in time order.

    Attributes:
        pipeline: the registered pipeline's name.
        timescope: the timescope that cut the range into windows.
        windows: a WindowRun per window of the range.
        started_at / ended_at: wall-clock start and end (UTC).
        duration_seconds: how long the backfill took.
    """

    pipeline: str
    timescope: Timescope
    windows: list[WindowRun] = field(default_factory=list)
    started_at: datetime | None = None
    ended_at: datetime | None = None
    duration_seconds: float = 0.0
    run_id: str = field(default_factory=new_run_id)

    succeeded = _WindowsWith(RunStatus.SUCCEEDED, "Windows that ran and succeeded.")
    running = _WindowsWith(RunStatus.RUNNING, "Windows running now (while the backfill runs).")
    failed = _WindowsWith(RunStatus.FAILED, "Windows that ran and failed.")
    skipped = _WindowsWith(
        RunStatus.SKIPPED, "Windows skipped (already succeeded, or not complete yet)."
    )
    not_run = _WindowsWith(
        RunStatus.PENDING,
        "Windows not run because an earlier one failed (with ``stop_on_failure``).",
    )

    @property
    def ok(self) -> bool:
        """Whether no window failed."""
        return not self.failed and not self.not_run

    def to_result(self) -> RunResult:
        """The backfill as a RunResult of kind ``backfill``, one child per window.

        The status is ``failed`` if any window failed, else ``succeeded`` (``skipped`` when
        every window was skipped). Windows that did not run appear as children with their
        reason in ``detail``.
        """
        children: list[RunResult] = []
        for item in self.windows:
            if item.result is not None:
                child = item.result
                if child.detail is None:
                    child.detail = f"window {item.window}"
            else:
                child = RunResult(
                    name=self.pipeline,
                    run_id="",
                    status=item.status,
                    detail=f"window {item.window}: {item.reason}",
                )
            children.append(child)
        if self.failed or self.not_run:
            status = RunStatus.FAILED
        elif self.windows and len(self.skipped) == len(self.windows):
            status = RunStatus.SKIPPED
        else:
            status = RunStatus.SUCCEEDED
        detail = (
            f"{len(self.windows)} {self.timescope.name} windows: {len(self.succeeded)} succeeded, "
            f"{len(self.failed)} failed, {len(self.skipped)} skipped"
        )
        if self.not_run:
            detail += f", {len(self.not_run)} not run"
        return RunResult(
            name=self.pipeline,
            run_id=self.run_id,
            kind="backfill",
            status=status,
            started_at=self.started_at,
            ended_at=self.ended_at,
            duration_seconds=self.duration_seconds,
            children=children,
            detail=detail,
        )

    def summary(self) -> str:
        """A readable rendering: the totals, then one line per window with its outcome."""
        overall = self.to_result()
        lines = [
            f"backfill {self.pipeline} ({self.timescope}) · {overall.status} · "
            f"{self.duration_seconds:.3f}s · {overall.records_in} in / {overall.records_out} out"
            f" · {overall.detail}"
        ]
        for item in self.windows:
            line = f"  {item.window}: {item.status}"
            result = item.result
            if result is not None:
                line += (
                    f" · {result.duration_seconds:.3f}s · "
                    f"{result.records_in} in / {result.records_out} out"
                )
                if result.error is not None:
                    line += f" · error: {type(result.error).__name__}: {result.error}"
            elif item.reason:
                line += f" ({item.reason})"
            lines.append(line)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def _covered(window: TimeWindow, starts: list[datetime], spans: list[TimeWindow]) -> bool:
    index = bisect.bisect_right(starts, window.start) - 1
    return index >= 0 and spans[index].end >= window.end


def _moment(scope: Timescope, value: datetime | date | str, what: str) -> datetime | date:
    if isinstance(value, str):
        return scope.parse_time(value)
    if isinstance(value, (datetime, date)):
        return value
    raise ScheduleError(f"invalid backfill {what} {value!r}: expected a datetime, date or ISO text")


async def run_backfill(
    name: str,
    timescope: Timescope | None,
    start: datetime | date | str,
    end: datetime | date | str,
    *,
    run_window: Callable[[TimeWindow], Awaitable[RunResult]],
    state: StateStore,
    max_workers: int = 1,
    rerun: bool = False,
    stop_on_failure: bool = False,
    raise_on_failure: bool = True,
    now: datetime | None = None,
    on_progress: Callable[[BackfillResult], object] | None = None,
) -> BackfillResult:
    """Run ``run_window`` for every window of ``timescope`` in ``[start, end)`` not done yet.

    Args:
        name: the pipeline's name (for the state store's record of succeeded windows, the
            result and the messages).
        timescope: the pipeline's timescope (``None`` is an error: nothing to cut the range by).
        start: the start of the range (dates and naive values are read in the timescope's zone;
            ISO text is accepted). Every window overlapping the range is included.
        end: the end of the range (exclusive).
        run_window: runs the pipeline for one window and returns its result; a failed run raises
            a PipelineError carrying its result.
        state: the store that tells which windows already succeeded.
        max_workers: how many windows run at once.
        rerun: run windows that already succeeded, too.
        stop_on_failure: start no new window once one has failed (those left are reported as
            not run); runs in flight finish.
        raise_on_failure: raise when a window failed (otherwise just return the result).
        now: the current time, for deciding which windows are complete (default: now).
        on_progress: called with the backfill's :class:`BackfillResult`, as it stands, once the
            windows are planned and each time a window starts or ends (for a live display of
            the windows done, running and failed; it must not block).

    Returns:
        A :class:`BackfillResult` with one entry per window.

    Raises:
        PipelineError: a window failed (and ``raise_on_failure``); see
            :func:`ductwork.backfill_pipeline`.
        ScheduleError: no timescope, or the range is empty or invalid.
        ConfigError: ``max_workers`` is not a positive integer.
    """
    scope = timescope
    if scope is None:
        raise ScheduleError(f"pipeline {name!r} has no timescope, so it cannot be backfilled")
    if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
        raise ConfigError.for_field(
            "max_workers", f"must be a positive integer, got {max_workers!r}"
        )
    windows = list(scope.windows(_moment(scope, start, "start"), _moment(scope, end, "end")))
    current = now or datetime.now(UTC)

    outcome = BackfillResult(pipeline=name, timescope=scope, started_at=datetime.now(UTC))
    t0 = perf_counter()
    spans = [] if rerun else await succeeded_windows(state, name)
    starts = [span.start for span in spans]
    to_run: list[WindowRun] = []
    for window in windows:
        item = WindowRun(window)
        if window.end > current:
            item.status, item.reason = RunStatus.SKIPPED, NOT_COMPLETE
        elif _covered(window, starts, spans):
            item.status, item.reason = RunStatus.SKIPPED, ALREADY_SUCCEEDED
        else:
            to_run.append(item)
        outcome.windows.append(item)
    logger.info(
        "backfill started: %s %s windows, %d to run, %d skipped, %d worker(s)",
        name,
        scope.name,
        len(to_run),
        len(windows) - len(to_run),
        max_workers,
    )

    pending = iter(to_run)
    stopping = False

    def progressed() -> None:
        if on_progress is not None:
            on_progress(outcome)

    progressed()

    async def worker() -> None:
        nonlocal stopping
        for item in pending:
            if stopping:
                item.reason = NOT_RUN
                continue
            item.status = RunStatus.RUNNING
            progressed()
            try:
                item.result = await run_window(item.window)
            except PipelineError as exc:
                item.status = RunStatus.FAILED
                item.result = exc.result
                if item.result is None:
                    raise
                stopping = stopping or stop_on_failure
            else:
                item.status = RunStatus.SUCCEEDED
            progressed()

    attributes: dict[str, str | int] = {"ductwork.pipeline": name, "ductwork.windows": len(to_run)}
    try:
        with operation(f"backfill {name}", attributes):  # the windows' spans nest under it
            async with anyio.create_task_group() as tg:
                for _ in range(min(max_workers, len(to_run))):
                    tg.start_soon(worker)
    except BaseExceptionGroup as group:
        raise unwrap_group(group) from None
    finally:
        outcome.ended_at = datetime.now(UTC)
        outcome.duration_seconds = perf_counter() - t0
    logger.info("backfill ended: %s %s", name, outcome.to_result().detail)

    if raise_on_failure and outcome.failed:
        failed = outcome.failed
        listed = ", ".join(str(item.window) for item in failed[:5])
        more = f" and {len(failed) - 5} more" if len(failed) > 5 else ""
        error = PipelineError(
            f"backfill failed for {len(failed)} of {len(windows)} windows: {listed}{more}; "
            f"first error: {failed[0].error}",
            pipeline=name,
            result=outcome.to_result(),
        )
        raise error from failed[0].error
    return outcome

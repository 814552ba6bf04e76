"""What the scheduler shows of itself: the overlap policies, its states, and the snapshots of
its jobs (:class:`JobStatus`) and of its totals (:class:`SchedulerStatistics`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from ..core.types import RunStatus

__all__ = ["JobStatus", "OverlapPolicy", "SchedulerState", "SchedulerStatistics"]

#: What a tick does while the job's previous run is still going.
OverlapPolicy = Literal["skip", "queue", "allow"]

SchedulerState = Literal["new", "running", "stopping", "closed"]


@dataclass(frozen=True, slots=True)
class JobStatus:
    """A snapshot of one cron job in a scheduler.

    Attributes:
        name: the job's name.
        pipeline: the registered pipeline it runs.
        schedule: its cron expression.
        timezone: the time zone the expression is read in.
        enabled: whether its ticks start runs.
        overlap: its overlap policy.
        next_fire_time: when it fires next (``None`` when disabled or not scheduling).
        running: runs in flight.
        queued: ticks waiting for the run in flight (``queue`` policy).
        last_fire_time: the tick that started the last run.
        last_started_at / last_ended_at: when the last run started and ended (UTC).
        last_status: the last run's status (``running`` while it goes on).
        last_run_id: the last run's id (as in the run history).
        last_error: the error of the last run, when it failed.
        runs: runs started.
        succeeded / failed / cancelled: how those runs ended.
        skipped: ticks skipped because of the overlap policy.
        ticks: ticks that fired (on the schedule; :meth:`Scheduler.trigger` is not a tick).
        tick_lateness_seconds: how late those ticks woke up, in total (seconds after the
            tick's time that the scheduler saw it; divide by ``ticks`` for the mean).
        last_tick_lateness: how late the last tick woke up.
    """

    name: str
    pipeline: str
    schedule: str
    timezone: str
    enabled: bool
    overlap: OverlapPolicy
    next_fire_time: datetime | None
    running: int
    queued: int
    last_fire_time: datetime | None
    last_started_at: datetime | None
    last_ended_at: datetime | None
    last_status: RunStatus | None
    last_run_id: str | None
    last_error: str | None
    runs: int
    succeeded: int
    failed: int
    cancelled: int
    skipped: int
    ticks: int = 0
    tick_lateness_seconds: float = 0.0
    last_tick_lateness: float | None = None


@dataclass(frozen=True, slots=True)
class SchedulerStatistics:
    """Totals of a scheduler, over every job it ran (including jobs removed since).

    Attributes:
        state: ``new``, ``running``, ``stopping`` or ``closed``.
        started_at: when the scheduler started (UTC).
        jobs: cron jobs known to the scheduler.
        jobs_enabled: those whose ticks start runs.
        runs_in_flight: runs going on now.
        runs_queued: ticks waiting for a run in flight.
        runs_started / runs_succeeded / runs_failed / runs_cancelled: runs and how they ended.
        ticks_skipped: ticks skipped because of an overlap policy.
    """

    state: SchedulerState
    started_at: datetime | None
    jobs: int
    jobs_enabled: int
    runs_in_flight: int
    runs_queued: int
    runs_started: int
    runs_succeeded: int
    runs_failed: int
    runs_cancelled: int
    ticks_skipped: int

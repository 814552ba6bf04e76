"""What the scheduler's jobs did: the last run, how runs ended, the ticks and their lateness.

Each job keeps a :class:`JobHistory`, and the scheduler one :class:`Totals` over every job it
ran; recording an event in a job's history counts it in the totals as well. The history's fields
are named as those of :class:`~ductwork.scheduler.JobStatus`, which copies them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import UTC, datetime
from time import time
from typing import Any

from ..core.types import RunStatus

__all__ = ["JobHistory", "Totals"]


@dataclass(slots=True)
class Totals:
    """Counts over every job of a scheduler (including jobs removed since)."""

    started: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    skipped: int = 0


@dataclass(slots=True)
class JobHistory:
    """The record of one job: its last run, how its runs ended, and its ticks.

    The fields are those of :class:`~ductwork.scheduler.JobStatus` of the same names.
    """

    last_fire_time: datetime | None = None
    last_started_at: datetime | None = None
    last_ended_at: datetime | None = None
    last_status: RunStatus | None = None
    last_run_id: str | None = None
    last_error: str | None = None
    runs: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    skipped: int = 0
    ticks: int = 0
    tick_lateness_seconds: float = 0.0
    last_tick_lateness: float | None = None

    def ticked(self, fire_time: datetime) -> None:
        """Count a tick of the schedule and how late, after ``fire_time``, it woke up."""
        lateness = max(0.0, time() - fire_time.timestamp())
        self.ticks += 1
        self.tick_lateness_seconds += lateness
        self.last_tick_lateness = lateness

    def skipped_tick(self, totals: Totals) -> None:
        """Count a tick the overlap policy skipped."""
        self.skipped += 1
        totals.skipped += 1

    def started(self, run_id: str, fire_time: datetime, totals: Totals) -> None:
        """Record that run ``run_id`` of the tick ``fire_time`` started now."""
        self.runs += 1
        totals.started += 1
        self.last_fire_time = fire_time
        self.last_started_at = datetime.now(UTC)
        self.last_ended_at = None
        self.last_status = RunStatus.RUNNING
        self.last_run_id = run_id
        self.last_error = None

    def ended(self, status: RunStatus, error: str | None, totals: Totals) -> None:
        """Record that the last run ended now, with ``status`` (and ``error`` when it failed)."""
        self.last_ended_at = datetime.now(UTC)
        self.last_status = status
        self.last_error = error
        if status is RunStatus.FAILED:
            self.failed += 1
            totals.failed += 1
        elif status is RunStatus.CANCELLED:
            self.cancelled += 1
            totals.cancelled += 1
        elif status is RunStatus.SUCCEEDED:
            self.succeeded += 1
            totals.succeeded += 1

    def status_fields(self) -> dict[str, Any]:
        """The fields, by name, as keyword arguments of a ``JobStatus``."""
        return {item.name: getattr(self, item.name) for item in fields(self)}

"""The firing of the scheduler's jobs: each job awaits its ticks on aiocron and runs on them.

A :class:`Job` is the scheduler's book-keeping for one cron job: its definition, the loop
awaiting its ticks (:func:`tick_loop`, started by :func:`start_loop` and cancelled by
:func:`stop_loop`), its runs in flight, its queued ticks, and its
:class:`~ductwork.scheduler.history.JobHistory`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import aiocron  # type: ignore[import-untyped]
import anyio
from anyio.abc import TaskGroup

from ..cron import CronJob
from ..timescope import resolve_timezone
from .history import JobHistory
from .model import JobStatus, OverlapPolicy

__all__ = ["Job", "OnTick", "Ticks", "start_loop", "stop_loop", "tick_loop"]

logger = logging.getLogger("ductwork.scheduler")


class Ticks(aiocron.Cron):  # type: ignore[misc]
    """aiocron's schedule of one job, remembering the time of the tick it waits for.

    The event loop may wake a hair before the tick, so a run's window is computed from the tick's
    time (:attr:`fire_time`), never from the clock. ``await ticks.next()`` returns at the tick.
    """

    fire_time: datetime | None = None

    def get_next(self) -> float:
        """Take the next tick from aiocron's cronsim iterator; return its event loop time."""
        self.fire_time = next(self.cronsim)
        return float(self.loop_time + (self.fire_time.timestamp() - self.time))


@dataclass(eq=False, slots=True)
class Job:
    """The scheduler's book-keeping for one cron job."""

    name: str
    definition: CronJob | None = None
    loop_scope: anyio.CancelScope | None = None
    ticks: Ticks | None = None
    running: int = 0
    queued: deque[tuple[datetime, CronJob]] = field(default_factory=deque)
    history: JobHistory = field(default_factory=JobHistory)

    def status(self, *, enabled: bool, overlap: OverlapPolicy) -> JobStatus:
        """A snapshot of the job, which ``enabled`` says starts runs on its ticks, or not."""
        definition = self.definition
        assert definition is not None
        return JobStatus(
            name=self.name,
            pipeline=definition.pipeline,
            schedule=definition.schedule,
            timezone=definition.timezone,
            enabled=enabled,
            overlap=overlap,
            next_fire_time=self.ticks.fire_time if self.ticks is not None else None,
            running=self.running,
            queued=len(self.queued),
            **self.history.status_fields(),
        )

    def drop_queue(self, why: str) -> None:
        """Drop the ticks waiting for the run in flight, logging ``why``."""
        if self.queued:
            logger.info("job %s: dropping %d queued tick(s): %s", self.name, len(self.queued), why)
            self.queued.clear()


#: What a loop calls on each tick: ``on_tick(job, definition, fire_time, trigger)``.
OnTick = Callable[[Job, CronJob, datetime, str], object]


async def tick_loop(
    job: Job, definition: CronJob, scope: anyio.CancelScope, on_tick: OnTick
) -> None:
    """Await the job's ticks (aiocron) and call ``on_tick`` on each, until ``scope`` ends."""
    ticks = Ticks(
        definition.schedule,
        start=False,
        loop=asyncio.get_running_loop(),
        tz=resolve_timezone(definition.timezone),
    )
    with scope:
        if job.loop_scope is scope:  # not stopped before the task started
            job.ticks = ticks
        try:
            while True:
                await ticks.next()
                assert ticks.fire_time is not None
                job.history.ticked(ticks.fire_time)
                on_tick(job, definition, ticks.fire_time, "schedule")
        finally:
            ticks.stop()
            if job.ticks is ticks:
                job.ticks = None


def start_loop(task_group: TaskGroup, job: Job, on_tick: OnTick) -> None:
    """Start the loop awaiting the job's ticks, as a task of ``task_group``."""
    assert job.definition is not None
    scope = anyio.CancelScope()
    job.loop_scope = scope
    task_group.start_soon(tick_loop, job, job.definition, scope, on_tick, name=f"cron {job.name}")


def stop_loop(job: Job) -> None:
    """Cancel the loop awaiting the job's ticks, if one runs."""
    if job.loop_scope is not None:
        job.loop_scope.cancel()
        job.loop_scope = None
    job.ticks = None

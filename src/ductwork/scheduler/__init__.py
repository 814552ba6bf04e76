"""The scheduler: runs the cron jobs of a registry on aiocron, inside the running event loop.

``async with open_scheduler(registry) as scheduler:`` starts one task per enabled cron job in
the current asyncio event loop, so the scheduler embeds in any asyncio service; jobs run while
the block is open. ``await scheduler.serve()`` keeps it running until it is cancelled or the
process gets SIGINT or SIGTERM.

Structure: the scheduler owns one anyio task group. Each enabled job has a task awaiting its
ticks (``aiocron.Cron.next()``); each tick starts the run as another task of the same group, so
a slow run never delays a tick and no task outlives the scheduler. A run goes through
:meth:`PipelineRegistry.run <ductwork.PipelineRegistry.run>` with ``trigger="schedule"`` and the
tick's time as ``now`` (so a daily pipeline firing at midnight covers the day that just ended),
which records it in the state store's run history, cancelled runs included.

Per job:

* **overlap policy** — what a tick does while the job's previous run is still going: ``skip``
  (the default: the tick is dropped and logged), ``queue`` (the run starts when the previous
  one ends; at most ``max_queued`` ticks wait, later ones are skipped) or ``allow`` (runs
  overlap);
* **time zone** — the job's ``timezone`` (see :class:`~ductwork.CronJob`);
* **enable/disable** — the job's ``enabled`` flag, overridden at run time by
  :meth:`Scheduler.enable` and :meth:`Scheduler.disable`;
* **status** — :meth:`Scheduler.status` gives the next fire time, the last run's start, end,
  status and error, and counts of runs, failures and skipped ticks.

Cron jobs added to or removed from the registry while the scheduler runs are picked up at once
(the scheduler listens to the registry; change the registry from the event loop's thread).

A failed run does not stop the scheduler: it is recorded in the run history and the job's
status, and logged (with the traceback when the error is not a :class:`~ductwork.DuctworkError`,
such as a state store that cannot be written).

Shutdown (leaving the block, :meth:`Scheduler.shutdown`, or a signal during ``serve``) stops
the ticks, waits for runs in flight up to ``grace_period`` seconds, then cancels those still
going; every one of them is recorded in the run history.

``http=`` runs a :class:`SchedulerService` beside the jobs, as a task of the same task group:
``ductwork.ops.HttpServer`` serves metrics, health checks, an API and a dashboard, reading
:meth:`Scheduler.status` and :meth:`Scheduler.statistics`. It starts with the scheduler (a
service that cannot start fails the ``async with``) and stops after the runs on shutdown. The
scheduler knows it only by the protocol, so it does not depend on ``ductwork.ops``.

Example:
    >>> import anyio
    >>> from ductwork import PipelineRegistry, create_el_pipeline
    >>> async def extract(ctx):
    ...     yield [{"n": 1}]
    >>> rows = []
    >>> registry = PipelineRegistry()
    >>> _ = registry.register_pipeline(
    ...     "every_second", lambda: create_el_pipeline(extract, rows.extend, logging=False),
    ...     "* * * * * *")
    >>> async def main():
    ...     async with open_scheduler(registry) as scheduler:
    ...         await anyio.sleep(1.5)  # at least one tick
    ...     (job,) = scheduler.status()
    ...     return job.runs == len(rows) >= 1, job.last_status, scheduler.statistics().state
    >>> anyio.run(main)
    (True, <RunStatus.SUCCEEDED: 'succeeded'>, 'closed')
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from ..registry import PipelineRegistry
from .engine import Scheduler, SchedulerConfig, SchedulerService
from .model import JobStatus, OverlapPolicy, SchedulerState, SchedulerStatistics

__all__ = [
    "JobStatus",
    "OverlapPolicy",
    "Scheduler",
    "SchedulerConfig",
    "SchedulerService",
    "SchedulerState",
    "SchedulerStatistics",
    "open_scheduler",
]


@asynccontextmanager
async def open_scheduler(
    registry: PipelineRegistry | None = None,
    config: SchedulerConfig | None = None,
    **options: Any,
) -> AsyncIterator[Scheduler]:
    """Run the cron jobs of ``registry`` while the ``async with`` block is open.

    Leaving the block shuts the scheduler down gracefully (see :meth:`Scheduler.shutdown`).
    The arguments are those of :class:`Scheduler`.

    Example:
        ``async with open_scheduler(registry, grace_period=10) as scheduler: await
        scheduler.serve()`` runs until SIGINT or SIGTERM.
    """
    async with Scheduler(registry, config, **options) as scheduler:
        yield scheduler

"""The runs of the scheduler's jobs: what a tick starts under the overlap policy, and the runs in
flight, each a task of the scheduler's task group in its own cancel scope.

A tick of a job whose previous run still goes on is skipped, queued or run beside it, as the
job's overlap policy says (:meth:`Runs.on_tick`). :func:`run_once` runs one tick through the
registry and records how the run ended in the job's history.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

import anyio
from anyio.abc import TaskGroup

from .._exceptions import DuctworkError, PipelineError
from ..core.context import new_run_id
from ..core.types import RunStatus
from ..cron import CronJob
from ..registry import PipelineRegistry
from .firing import Job
from .history import Totals
from .model import OverlapPolicy

__all__ = ["Runs", "run_once"]

logger = logging.getLogger("ductwork.scheduler")


class Runs:
    """The runs of a scheduler's jobs, started in ``task_group`` (set once the scheduler runs).

    Args:
        registry: the registry the runs go through.
        totals: the scheduler's totals, counting the runs and skipped ticks.
        policy: the overlap policy of a job, by name.
        max_queued: with ``queue``, how many ticks may wait for a job's run in flight.
        running: whether the scheduler runs (ticks start runs, queued ticks are taken).
        release: called with a job whose last run ended, to forget it once it is removed.
    """

    def __init__(
        self,
        registry: PipelineRegistry,
        totals: Totals,
        policy: Callable[[str], OverlapPolicy],
        max_queued: int,
        running: Callable[[], bool],
        release: Callable[[Job], None],
    ) -> None:
        self.registry = registry
        self.totals = totals
        self.task_group: TaskGroup | None = None
        self._policy = policy
        self._max_queued = max_queued
        self._running = running
        self._release = release
        self._scopes: set[anyio.CancelScope] = set()
        self.in_flight = 0
        """Runs going on now."""
        self._idle = anyio.Event()
        self._idle.set()

    def on_tick(self, job: Job, definition: CronJob, fire_time: datetime, trigger: str) -> bool:
        """Start, queue or skip a run of the tick ``fire_time``; whether it started or queued."""
        if not self._running():
            return False
        policy = self._policy(job.name)
        if job.running == 0 or policy == "allow":
            self._start(job, definition, fire_time, trigger)
            return True
        if policy == "queue" and len(job.queued) < self._max_queued:
            job.queued.append((fire_time, definition))
            logger.info(
                "job %s: tick %s queued: the previous run (%s) is still going",
                job.name,
                fire_time.isoformat(),
                job.history.last_run_id,
            )
            return True
        job.history.skipped_tick(self.totals)
        logger.warning(
            "job %s: skipped tick %s: the previous run (%s) is still going",
            job.name,
            fire_time.isoformat(),
            job.history.last_run_id,
        )
        return False

    def cancel(self) -> None:
        """Cancel every run in flight now."""
        for scope in list(self._scopes):
            scope.cancel()

    async def wait_idle(self) -> None:
        """Wait until no run is in flight."""
        while self.in_flight:
            await self._idle.wait()

    def _start(self, job: Job, definition: CronJob, fire_time: datetime, trigger: str) -> None:
        assert self.task_group is not None
        scope = anyio.CancelScope()
        self._scopes.add(scope)
        if self.in_flight == 0:
            self._idle = anyio.Event()
        self.in_flight += 1
        job.running += 1
        self.task_group.start_soon(
            self._run_task, job, definition, fire_time, trigger, scope, name=f"run {job.name}"
        )

    async def _run_task(
        self,
        job: Job,
        definition: CronJob,
        fire_time: datetime,
        trigger: str,
        scope: anyio.CancelScope,
    ) -> None:
        try:
            with scope:
                while True:
                    await run_once(self.registry, job, definition, fire_time, trigger, self.totals)
                    if not job.queued or not self._running():
                        break
                    fire_time, definition = job.queued.popleft()
                    trigger = "schedule"
        finally:
            self._scopes.discard(scope)
            job.running -= 1
            self.in_flight -= 1
            if self.in_flight == 0:
                self._idle.set()
            self._release(job)


async def run_once(
    registry: PipelineRegistry,
    job: Job,
    definition: CronJob,
    fire_time: datetime,
    trigger: str,
    totals: Totals,
) -> None:
    """Run the job's pipeline for the tick ``fire_time``, recording the run in its history.

    A run that fails, or cannot run, is recorded and logged, not raised; a cancelled one is
    recorded and the cancellation goes on.
    """
    run_id = new_run_id()
    history = job.history
    history.started(run_id, fire_time, totals)
    logger.info(
        "job %s: run %s of %s started (tick %s)",
        job.name,
        run_id,
        definition.pipeline,
        fire_time.isoformat(),
    )
    try:
        result = await registry.run(
            definition.pipeline,
            params=definition.params,
            run_id=run_id,
            now=fire_time,
            trigger=trigger,
        )
    except anyio.get_cancelled_exc_class():
        history.ended(RunStatus.CANCELLED, None, totals)
        logger.warning("job %s: run %s cancelled", job.name, run_id)
        raise
    except PipelineError as exc:
        history.ended(RunStatus.FAILED, str(exc), totals)
        logger.warning("job %s: run %s failed: %s", job.name, run_id, exc)
    except DuctworkError as exc:  # e.g. the pipeline was unregistered since the tick
        history.ended(RunStatus.FAILED, f"{type(exc).__name__}: {exc}", totals)
        logger.error("job %s: run %s could not run: %s", job.name, run_id, exc)
    except Exception as exc:
        # Not a run failure but a failure to run (the state store could not be written, ...):
        # recorded in the status, logged in full, and the scheduler goes on with its other jobs.
        history.ended(RunStatus.FAILED, f"{type(exc).__name__}: {exc}", totals)
        logger.exception("job %s: run %s could not run", job.name, run_id)
    else:
        history.ended(result.status, None, totals)
        logger.info(
            "job %s: run %s %s: %d in / %d out in %.3fs",
            job.name,
            run_id,
            result.status,
            result.records_in,
            result.records_out,
            result.duration_seconds,
        )

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

import asyncio
import logging
import signal
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from time import time
from types import TracebackType
from typing import Any, Literal, Protocol, Self, runtime_checkable

import aiocron  # type: ignore[import-untyped]
import anyio
from anyio.abc import TaskGroup, TaskStatus
from pydantic import ConfigDict, Field

from ._exceptions import ConfigError, DuctworkError, PipelineError, RegistryError
from .core.config import Options, validate_config
from .core.context import new_run_id
from .core.errors import unwrap_group
from .core.types import RunStatus
from .cron import CronJob
from .registry import PipelineRegistry, get_default_registry
from .timescope import resolve_timezone

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

logger = logging.getLogger("ductwork.scheduler")

#: What a tick does while the job's previous run is still going.
OverlapPolicy = Literal["skip", "queue", "allow"]

SchedulerState = Literal["new", "running", "stopping", "closed"]


@runtime_checkable
class SchedulerService(Protocol):
    """A service that runs beside the jobs, as a task of the scheduler's task group.

    The scheduler starts it with ``await task_group.start(service.serve, scheduler)`` when it
    starts (so a service that cannot start, such as an HTTP server whose port is taken, fails
    the ``async with``), and calls :meth:`stop` once its runs have ended on shutdown; the
    scheduler's block is left when ``serve`` has returned. ``ductwork.ops.HttpServer`` (the
    metrics, the API and the dashboard) is one; the scheduler knows it only by this protocol.
    """

    async def serve(self, scheduler: Scheduler, *, task_status: TaskStatus[None]) -> None:
        """Run until :meth:`stop` is called; call ``task_status.started()`` once serving."""
        ...

    def stop(self) -> None:
        """Make :meth:`serve` finish and return soon."""
        ...


class SchedulerConfig(Options):
    """Options of a :class:`Scheduler`."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    overlap: OverlapPolicy = "skip"
    """The overlap policy of every job: ``skip`` (default), ``queue`` or ``allow``."""
    job_overlap: Mapping[str, OverlapPolicy] = Field(default_factory=dict)
    """Overlap policies of single jobs, by job name (overriding ``overlap``)."""
    max_queued: int = Field(default=1, ge=1)
    """With ``queue``: how many ticks may wait for the run in flight; further ticks are
    skipped."""
    grace_period: float = Field(default=30.0, ge=0)
    """On shutdown, how many seconds runs in flight may take to finish before they are
    cancelled."""
    http: SchedulerService | None = None
    """An HTTP server to run beside the jobs while the scheduler runs, such as
    ``ductwork.ops.HttpServer("127.0.0.1:8080")`` (metrics, health checks, the API and the
    dashboard); it stops with the scheduler, after the runs in flight."""


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


class _Ticks(aiocron.Cron):  # type: ignore[misc]
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
class _Job:
    """The scheduler's book-keeping for one cron job."""

    name: str
    definition: CronJob | None = None
    loop_scope: anyio.CancelScope | None = None
    ticks: _Ticks | None = None
    running: int = 0
    queued: deque[tuple[datetime, CronJob]] = field(default_factory=deque)
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
    ticks_fired: int = 0
    tick_lateness: float = 0.0
    last_tick_lateness: float | None = None


class Scheduler:
    """Runs the cron jobs of a registry in the current asyncio event loop.

    Use it as an async context manager (``async with Scheduler(registry) as s:``, or
    :func:`open_scheduler`): the jobs run while the block is open, and leaving the block shuts
    the scheduler down gracefully. A scheduler runs once; it cannot be reopened.

    Args:
        registry: the registry whose cron jobs to run (default: the default registry).
        config: the options as a :class:`SchedulerConfig`, or
        **options: the options as keyword arguments (``overlap``, ``job_overlap``,
            ``max_queued``, ``grace_period``, ``http``).

    Raises:
        ConfigError: an invalid option (naming it), or both ``config`` and options.
    """

    def __init__(
        self,
        registry: PipelineRegistry | None = None,
        config: SchedulerConfig | None = None,
        **options: Any,
    ) -> None:
        if config is not None and options:
            raise ConfigError.for_field(
                "config", "pass either a SchedulerConfig or keyword options, not both"
            )
        if config is None:
            config = validate_config(SchedulerConfig, "scheduler", **options)
        elif not isinstance(config, SchedulerConfig):
            raise ConfigError.for_field(
                "config", f"expected a SchedulerConfig, got {type(config).__name__}"
            )
        self.registry = registry if registry is not None else get_default_registry()
        self.config: SchedulerConfig = config
        self._state: SchedulerState = "new"
        self._started_at: datetime | None = None
        self._jobs: dict[str, _Job] = {}
        self._enabled: dict[str, bool] = {}
        self._tg: TaskGroup | None = None
        self._remove_listener: Callable[[], None] | None = None
        self._run_scopes: set[anyio.CancelScope] = set()
        self._in_flight = 0
        self._idle = anyio.Event()
        self._idle.set()
        self._stopped = anyio.Event()
        self._grace_scope: anyio.CancelScope | None = None
        self._totals = {"started": 0, "succeeded": 0, "failed": 0, "cancelled": 0, "skipped": 0}

    def __repr__(self) -> str:
        return f"Scheduler(state={self._state!r}, jobs={sorted(self._jobs)!r})"

    @property
    def state(self) -> SchedulerState:
        """``new``, ``running``, ``stopping`` (shutting down) or ``closed``."""
        return self._state

    # --- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._state != "new":
            raise RuntimeError(f"this scheduler is {self._state}; a scheduler runs only once")
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "the scheduler needs an asyncio event loop (it runs on aiocron)"
            ) from None
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        self._state = "running"
        self._started_at = datetime.now(UTC)
        service = self.config.http
        if service is not None:
            try:
                await tg.start(service.serve, self, name="ductwork http")
            except BaseException:
                self._state = "closed"
                self._stopped.set()
                await tg.__aexit__(None, None, None)  # nothing runs in it yet
                raise
        self._remove_listener = self.registry.add_listener(self._on_registry_change)
        self._reconcile()
        jobs = [job for job in self._jobs.values() if self._is_enabled(job)]
        logger.info("scheduler started: %d cron job(s), %d enabled", len(self._jobs), len(jobs))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._tg is not None
        try:
            with anyio.CancelScope(shield=True):
                await self.shutdown()
        finally:
            if self._remove_listener is not None:
                self._remove_listener()
                self._remove_listener = None
            try:
                suppress = await self._tg.__aexit__(exc_type, exc, tb)
            except BaseExceptionGroup as group:
                raise unwrap_group(group) from None
        return suppress

    async def serve(self, *, handle_signals: bool = True) -> None:
        """Run the jobs until the scheduler is shut down or cancelled, or gets SIGINT or SIGTERM.

        On the first signal the scheduler shuts down gracefully (see :meth:`shutdown`) and
        ``serve`` returns when it is done; a second signal during the grace period cancels the
        runs at once. Signals are handled only with ``handle_signals`` and in the main thread.

        Raises:
            RuntimeError: the scheduler is not running.
        """
        self._check_running()
        if not handle_signals or threading.current_thread() is not threading.main_thread():
            await self._stopped.wait()
            return
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with anyio.create_task_group() as tg:

                async def on_signals() -> None:
                    async for signum in signals:
                        name = signal.Signals(signum).name
                        if self._state == "running":
                            logger.info("received %s: shutting down", name)
                            tg.start_soon(self.shutdown)
                        else:
                            logger.warning(
                                "received %s again: cancelling %d run(s) now",
                                name,
                                self._in_flight,
                            )
                            self.cancel_runs()

                tg.start_soon(on_signals)
                await self._stopped.wait()
                tg.cancel_scope.cancel()

    async def shutdown(self, grace_period: float | None = None) -> None:
        """Stop the ticks, wait for runs in flight, then cancel those still going.

        Returns once every run has ended and been recorded. Calling it again (or while it
        runs) waits for the first call to finish.

        Args:
            grace_period: seconds to wait for runs in flight (default: the configured one).
        """
        if self._state == "new":
            self._state = "closed"
            self._stopped.set()
            return
        if self._state != "running":
            await self._stopped.wait()
            return
        self._state = "stopping"
        grace = self.config.grace_period if grace_period is None else grace_period
        try:
            for job in self._jobs.values():
                self._stop_loop(job)
                self._drop_queue(job, "the scheduler is shutting down")
            if self._in_flight:
                logger.info("waiting up to %gs for %d run(s) in flight", grace, self._in_flight)
                with anyio.move_on_after(grace) as self._grace_scope:
                    await self._wait_idle()
                self._grace_scope = None
                if self._in_flight:
                    logger.warning(
                        "cancelling %d run(s) still going after the %gs grace period",
                        self._in_flight,
                        grace,
                    )
                    self.cancel_runs()
                    await self._wait_idle()
        finally:
            if self._in_flight:  # interrupted while waiting: do not leave runs behind
                self.cancel_runs()
            self._state = "closed"
            self._stopped.set()
            if self.config.http is not None:
                self.config.http.stop()
            logger.info("scheduler stopped")

    def cancel_runs(self) -> None:
        """Cancel every run in flight now (they are recorded as cancelled)."""
        if self._grace_scope is not None:
            self._grace_scope.cancel()
        for scope in list(self._run_scopes):
            scope.cancel()

    # --- jobs ---------------------------------------------------------------------------

    def enable(self, name: str) -> None:
        """Let the ticks of job ``name`` start runs again (overrides the job's ``enabled``).

        Raises:
            RegistryError: there is no cron job ``name``.
        """
        self._check_job(name)
        self._enabled[name] = True
        job = self._jobs.get(name)
        if job is not None and self._state == "running" and job.loop_scope is None:
            self._start_loop(job)
            logger.info("job %s enabled", name)

    def disable(self, name: str) -> None:
        """Stop the ticks of job ``name`` (overrides the job's ``enabled``).

        Runs in flight go on; ticks waiting for them are dropped.

        Raises:
            RegistryError: there is no cron job ``name``.
        """
        self._check_job(name)
        self._enabled[name] = False
        job = self._jobs.get(name)
        if job is not None:
            if job.loop_scope is not None:
                logger.info("job %s disabled", name)
            self._stop_loop(job)
            self._drop_queue(job, "the job was disabled")

    def trigger(self, name: str) -> bool:
        """Start a run of job ``name`` now, as a tick would (subject to its overlap policy).

        The run is recorded with trigger ``manual``. Returns whether a run started or was
        queued (``False``: the tick was skipped).

        Raises:
            RegistryError: there is no cron job ``name``.
            RuntimeError: the scheduler is not running.
        """
        self._check_running()
        job = self._jobs.get(name)
        if job is None or job.definition is None:
            self._check_job(name)
            self._reconcile()
            job = self._jobs[name]
        assert job.definition is not None
        fire_time = datetime.now(resolve_timezone(job.definition.timezone))
        return self._on_tick(job, job.definition, fire_time, "manual")

    def overlap_policy(self, name: str) -> OverlapPolicy:
        """The overlap policy of job ``name``."""
        return self.config.job_overlap.get(name, self.config.overlap)

    def status(self) -> list[JobStatus]:
        """A snapshot of every cron job the scheduler knows, sorted by name."""
        return [self._snapshot(job) for _, job in sorted(self._jobs.items())]

    def job_status(self, name: str) -> JobStatus:
        """A snapshot of job ``name``.

        Raises:
            RegistryError: the scheduler does not know a job ``name``.
        """
        job = self._jobs.get(name)
        if job is None or job.definition is None:
            known = ", ".join(sorted(self._jobs)) or "none"
            raise RegistryError(f"the scheduler has no cron job {name!r} (jobs: {known})")
        return self._snapshot(job)

    def statistics(self) -> SchedulerStatistics:
        """Totals over every job and run of this scheduler."""
        jobs = [job for job in self._jobs.values() if job.definition is not None]
        return SchedulerStatistics(
            state=self._state,
            started_at=self._started_at,
            jobs=len(jobs),
            jobs_enabled=sum(1 for job in jobs if self._is_enabled(job)),
            runs_in_flight=self._in_flight,
            runs_queued=sum(len(job.queued) for job in jobs),
            runs_started=self._totals["started"],
            runs_succeeded=self._totals["succeeded"],
            runs_failed=self._totals["failed"],
            runs_cancelled=self._totals["cancelled"],
            ticks_skipped=self._totals["skipped"],
        )

    # --- internals ----------------------------------------------------------------------

    def _check_running(self) -> None:
        if self._state != "running":
            raise RuntimeError(f"the scheduler is {self._state}, not running")

    def _check_job(self, name: str) -> None:
        if name not in self._jobs or self._jobs[name].definition is None:
            self.registry.get_cron_job(name)  # raises RegistryError naming the known jobs

    def _is_enabled(self, job: _Job) -> bool:
        if job.definition is None:
            return False
        return self._enabled.get(job.name, job.definition.enabled)

    def _snapshot(self, job: _Job) -> JobStatus:
        definition = job.definition
        assert definition is not None
        return JobStatus(
            name=job.name,
            pipeline=definition.pipeline,
            schedule=definition.schedule,
            timezone=definition.timezone,
            enabled=self._is_enabled(job),
            overlap=self.overlap_policy(job.name),
            next_fire_time=job.ticks.fire_time if job.ticks is not None else None,
            running=job.running,
            queued=len(job.queued),
            last_fire_time=job.last_fire_time,
            last_started_at=job.last_started_at,
            last_ended_at=job.last_ended_at,
            last_status=job.last_status,
            last_run_id=job.last_run_id,
            last_error=job.last_error,
            runs=job.runs,
            succeeded=job.succeeded,
            failed=job.failed,
            cancelled=job.cancelled,
            skipped=job.skipped,
            ticks=job.ticks_fired,
            tick_lateness_seconds=job.tick_lateness,
            last_tick_lateness=job.last_tick_lateness,
        )

    def _on_registry_change(self, event: str, name: str) -> None:
        if event in ("cron_job_added", "cron_job_removed"):
            self._reconcile()

    def _reconcile(self) -> None:
        """Match the running job loops to the registry's cron jobs."""
        if self._state != "running":
            return
        current = {job.name: job for job in self.registry.list_cron_jobs()}
        for name, job in list(self._jobs.items()):
            if name not in current and job.definition is not None:
                logger.info("job %s removed", name)
                job.definition = None
                self._stop_loop(job)
                self._drop_queue(job, "the job was removed")
                if job.running == 0:
                    del self._jobs[name]
        for name, definition in current.items():
            known = self._jobs.get(name)
            if known is None:
                known = self._jobs[name] = _Job(name)
            if known.definition == definition:
                continue
            if known.definition is not None:
                logger.info("job %s changed: %s", name, definition.schedule)
            known.definition = definition
            self._stop_loop(known)
            if self._is_enabled(known):
                self._start_loop(known)

    def _start_loop(self, job: _Job) -> None:
        assert self._tg is not None
        assert job.definition is not None
        scope = anyio.CancelScope()
        job.loop_scope = scope
        self._tg.start_soon(self._tick_loop, job, job.definition, scope, name=f"cron {job.name}")

    @staticmethod
    def _stop_loop(job: _Job) -> None:
        if job.loop_scope is not None:
            job.loop_scope.cancel()
            job.loop_scope = None
        job.ticks = None

    def _drop_queue(self, job: _Job, why: str) -> None:
        if job.queued:
            logger.info("job %s: dropping %d queued tick(s): %s", job.name, len(job.queued), why)
            job.queued.clear()

    async def _tick_loop(self, job: _Job, definition: CronJob, scope: anyio.CancelScope) -> None:
        """Await the job's ticks (aiocron) and start a run on each."""
        ticks = _Ticks(
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
                    lateness = max(0.0, time() - ticks.fire_time.timestamp())
                    job.ticks_fired += 1
                    job.tick_lateness += lateness
                    job.last_tick_lateness = lateness
                    self._on_tick(job, definition, ticks.fire_time, "schedule")
            finally:
                ticks.stop()
                if job.ticks is ticks:
                    job.ticks = None

    def _on_tick(self, job: _Job, definition: CronJob, fire_time: datetime, trigger: str) -> bool:
        if self._state != "running":
            return False
        policy = self.overlap_policy(job.name)
        if job.running == 0 or policy == "allow":
            self._start_run(job, definition, fire_time, trigger)
            return True
        if policy == "queue" and len(job.queued) < self.config.max_queued:
            job.queued.append((fire_time, definition))
            logger.info(
                "job %s: tick %s queued: the previous run (%s) is still going",
                job.name,
                fire_time.isoformat(),
                job.last_run_id,
            )
            return True
        job.skipped += 1
        self._totals["skipped"] += 1
        logger.warning(
            "job %s: skipped tick %s: the previous run (%s) is still going",
            job.name,
            fire_time.isoformat(),
            job.last_run_id,
        )
        return False

    def _start_run(self, job: _Job, definition: CronJob, fire_time: datetime, trigger: str) -> None:
        assert self._tg is not None
        scope = anyio.CancelScope()
        self._run_scopes.add(scope)
        if self._in_flight == 0:
            self._idle = anyio.Event()
        self._in_flight += 1
        job.running += 1
        self._tg.start_soon(
            self._run_task, job, definition, fire_time, trigger, scope, name=f"run {job.name}"
        )

    async def _run_task(
        self,
        job: _Job,
        definition: CronJob,
        fire_time: datetime,
        trigger: str,
        scope: anyio.CancelScope,
    ) -> None:
        try:
            with scope:
                while True:
                    await self._run_once(job, definition, fire_time, trigger)
                    if not job.queued or self._state != "running":
                        break
                    fire_time, definition = job.queued.popleft()
                    trigger = "schedule"
        finally:
            self._run_scopes.discard(scope)
            job.running -= 1
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()
            if job.definition is None and job.running == 0 and self._jobs.get(job.name) is job:
                del self._jobs[job.name]

    async def _run_once(
        self, job: _Job, definition: CronJob, fire_time: datetime, trigger: str
    ) -> None:
        run_id = new_run_id()
        job.runs += 1
        self._totals["started"] += 1
        job.last_fire_time = fire_time
        job.last_started_at = datetime.now(UTC)
        job.last_ended_at = None
        job.last_status = RunStatus.RUNNING
        job.last_run_id = run_id
        job.last_error = None
        logger.info(
            "job %s: run %s of %s started (tick %s)",
            job.name,
            run_id,
            definition.pipeline,
            fire_time.isoformat(),
        )
        try:
            result = await self.registry.run(
                definition.pipeline,
                params=definition.params,
                run_id=run_id,
                now=fire_time,
                trigger=trigger,
            )
        except anyio.get_cancelled_exc_class():
            self._ended(job, RunStatus.CANCELLED, None)
            logger.warning("job %s: run %s cancelled", job.name, run_id)
            raise
        except PipelineError as exc:
            self._ended(job, RunStatus.FAILED, str(exc))
            logger.warning("job %s: run %s failed: %s", job.name, run_id, exc)
        except DuctworkError as exc:  # e.g. the pipeline was unregistered since the tick
            self._ended(job, RunStatus.FAILED, f"{type(exc).__name__}: {exc}")
            logger.error("job %s: run %s could not run: %s", job.name, run_id, exc)
        except Exception as exc:
            # Not a run failure but a failure to run (the state store could not be written,
            # ...): recorded in the status, logged in full, and the scheduler goes on with its
            # other jobs.
            self._ended(job, RunStatus.FAILED, f"{type(exc).__name__}: {exc}")
            logger.exception("job %s: run %s could not run", job.name, run_id)
        else:
            self._ended(job, result.status, None)
            logger.info(
                "job %s: run %s %s: %d in / %d out in %.3fs",
                job.name,
                run_id,
                result.status,
                result.records_in,
                result.records_out,
                result.duration_seconds,
            )

    def _ended(self, job: _Job, status: RunStatus, error: str | None) -> None:
        job.last_ended_at = datetime.now(UTC)
        job.last_status = status
        job.last_error = error
        if status is RunStatus.FAILED:
            job.failed += 1
            self._totals["failed"] += 1
        elif status is RunStatus.CANCELLED:
            job.cancelled += 1
            self._totals["cancelled"] += 1
        elif status is RunStatus.SUCCEEDED:
            job.succeeded += 1
            self._totals["succeeded"] += 1

    async def _wait_idle(self) -> None:
        while self._in_flight:
            await self._idle.wait()


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

"""The scheduler itself: its options, its lifecycle in a task group, and its set of jobs.

See :mod:`ductwork.scheduler` for what it does. The ticks are awaited in
:mod:`~ductwork.scheduler.firing`, the runs started (under the overlap policy) in
:mod:`~ductwork.scheduler.runs` and counted in :mod:`~ductwork.scheduler.history`.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol, Self, runtime_checkable

import anyio
from anyio.abc import TaskGroup, TaskStatus
from pydantic import ConfigDict, Field

from .._exceptions import ConfigError, RegistryError
from ..core.config import Options, checked_keywords, validate_config
from ..core.errors import unwrap_group
from ..core.types import ExcInfo
from ..registry import PipelineRegistry, get_default_registry
from ..timescope import resolve_timezone
from .firing import Job, start_loop, stop_loop
from .history import Totals
from .model import JobStatus, OverlapPolicy, SchedulerState, SchedulerStatistics
from .runs import Runs

__all__ = ["Scheduler", "SchedulerConfig", "SchedulerService"]

logger = logging.getLogger("ductwork.scheduler")


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
        self._jobs: dict[str, Job] = {}
        self._enabled: dict[str, bool] = {}
        self._tg: TaskGroup | None = None
        self._remove_listener: Callable[[], None] | None = None
        self._stopped = anyio.Event()
        self._grace_scope: anyio.CancelScope | None = None
        self._totals = Totals()
        self._runs = Runs(
            self.registry,
            self._totals,
            self.overlap_policy,
            config.max_queued,
            self._is_running,
            self._release,
        )

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
        self._runs.task_group = tg
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

    async def __aexit__(self, *exc_info: *ExcInfo) -> bool | None:
        assert self._tg is not None
        try:
            with anyio.CancelScope(shield=True):
                await self.shutdown()
        finally:
            if self._remove_listener is not None:
                self._remove_listener()
                self._remove_listener = None
            try:
                suppress = await self._tg.__aexit__(*exc_info)
            except BaseExceptionGroup as group:
                raise unwrap_group(group) from None
        return suppress

    @checked_keywords
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
                                self._runs.in_flight,
                            )
                            self.cancel_runs()

                tg.start_soon(on_signals)
                await self._stopped.wait()
                tg.cancel_scope.cancel()

    @checked_keywords
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
                stop_loop(job)
                job.drop_queue("the scheduler is shutting down")
            if self._runs.in_flight:
                logger.info(
                    "waiting up to %gs for %d run(s) in flight", grace, self._runs.in_flight
                )
                with anyio.move_on_after(grace) as self._grace_scope:
                    await self._runs.wait_idle()
                self._grace_scope = None
                if self._runs.in_flight:
                    logger.warning(
                        "cancelling %d run(s) still going after the %gs grace period",
                        self._runs.in_flight,
                        grace,
                    )
                    self.cancel_runs()
                    await self._runs.wait_idle()
        finally:
            if self._runs.in_flight:  # interrupted while waiting: do not leave runs behind
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
        self._runs.cancel()

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
            stop_loop(job)
            job.drop_queue("the job was disabled")

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
        return self._runs.on_tick(job, job.definition, fire_time, "manual")

    def overlap_policy(self, name: str) -> OverlapPolicy:
        """The overlap policy of job ``name``."""
        return self.config.job_overlap.get(name, self.config.overlap)

    def status(self) -> list[JobStatus]:
        """A snapshot of every cron job the scheduler knows, sorted by name (a job removed from
        the registry is gone at once, also while its last run goes on)."""
        return [
            self._snapshot(job)
            for _, job in sorted(self._jobs.items())
            if job.definition is not None
        ]

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
            runs_in_flight=self._runs.in_flight,
            runs_queued=sum(len(job.queued) for job in jobs),
            runs_started=self._totals.started,
            runs_succeeded=self._totals.succeeded,
            runs_failed=self._totals.failed,
            runs_cancelled=self._totals.cancelled,
            ticks_skipped=self._totals.skipped,
        )

    # --- internals ----------------------------------------------------------------------

    def _is_running(self) -> bool:
        return self._state == "running"

    def _check_running(self) -> None:
        if not self._is_running():
            raise RuntimeError(f"the scheduler is {self._state}, not running")

    def _check_job(self, name: str) -> None:
        if name not in self._jobs or self._jobs[name].definition is None:
            self.registry.get_cron_job(name)  # raises RegistryError naming the known jobs

    def _is_enabled(self, job: Job) -> bool:
        if job.definition is None:
            return False
        return self._enabled.get(job.name, job.definition.enabled)

    def _snapshot(self, job: Job) -> JobStatus:
        return job.status(enabled=self._is_enabled(job), overlap=self.overlap_policy(job.name))

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
                stop_loop(job)
                job.drop_queue("the job was removed")
                if job.running == 0:
                    del self._jobs[name]
        for name, definition in current.items():
            known = self._jobs.get(name)
            if known is None:
                known = self._jobs[name] = Job(name)
            if known.definition == definition:
                continue
            if known.definition is not None:
                logger.info("job %s changed: %s", name, definition.schedule)
            known.definition = definition
            stop_loop(known)
            if self._is_enabled(known):
                self._start_loop(known)

    def _start_loop(self, job: Job) -> None:
        assert self._tg is not None
        start_loop(self._tg, job, self._runs.on_tick)

    def _release(self, job: Job) -> None:
        """Forget ``job`` once it is removed from the registry and its last run has ended."""
        if job.definition is None and job.running == 0 and self._jobs.get(job.name) is job:
            del self._jobs[job.name]

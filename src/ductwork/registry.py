"""The pipeline registry: named, schedulable pipelines and their cron jobs.

A :class:`PipelineRegistry` maps names to pipelines (a :class:`~ductwork.Runnable`, or a
zero-argument factory that builds one for every run), each with an optional cron schedule,
timescope, description, tags and metadata, and holds the cron jobs the scheduler runs. Registries
are independent objects; the module-level functions (:func:`register_pipeline`,
:func:`get_pipeline`, ...) act on a process-wide default one (:func:`get_default_registry`).

``await registry.run(name)`` runs a registered pipeline once: it resolves the time window from
the pipeline's timescope (the last complete window by default), hands the run the state store and
records the run's result in the store's run history.

Example:
    >>> import anyio
    >>> from ductwork import create_el_pipeline
    >>> async def extract(ctx):
    ...     yield [{"day": f"{ctx.window.start:%Y-%m-%d}"}]
    >>> rows = []
    >>> registry = PipelineRegistry()
    >>> entry = registry.register_pipeline_with_timescope(
    ...     "daily_rows", create_el_pipeline(extract, rows.extend, logging=False), "daily",
    ...     description="one row per day")
    >>> entry.schedule, registry.get_cron_job("daily_rows").schedule
    ('0 0 * * *', '0 0 * * *')
    >>> result = anyio.run(lambda: registry.run("daily_rows", window="2024-02-29"))
    >>> rows, result.status
    ([{'day': '2024-02-29'}], <RunStatus.SUCCEEDED: 'succeeded'>)
    >>> [run["status"] for run in anyio.run(registry.history, "daily_rows")]
    ['succeeded']
"""

from __future__ import annotations

import contextlib
import inspect
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from types import MappingProxyType
from typing import Any, cast

import anyio

from ._exceptions import ConfigError, PipelineError, RegistryError, ScheduleError
from .backfill_engine import BackfillResult, run_backfill
from .core.config import checked_keywords
from .core.context import RunContext, TimeWindow, new_run_id
from .core.executor import LOCAL, Executor
from .core.result import RunResult
from .core.runnable import Runnable
from .core.types import RunStatus
from .cron import CronJob, check_timezone, validate_schedule
from .state import MemoryStateStore, StateStore, record_run
from .timescope import Timescope, validate_timescope

__all__ = [
    "CronJob",
    "PipelineFactory",
    "PipelineRegistry",
    "RegisteredPipeline",
    "RegistryListener",
    "default_registry_bound",
    "get_cron_job",
    "get_default_registry",
    "get_pipeline",
    "get_pipeline_entry",
    "list_cron_jobs",
    "list_pipelines",
    "register_cron_job",
    "register_pipeline",
    "register_pipeline_with_timescope",
    "remove_cron_job",
    "run_pipeline",
    "unregister_pipeline",
    "validate_pipeline",
    "validate_schedule",
]

#: A zero-argument callable that builds a fresh Runnable (called for every run).
PipelineFactory = Callable[[], Runnable]

#: Called with ``(event, name)`` after every change to a registry; events are
#: ``pipeline_registered``, ``pipeline_unregistered``, ``cron_job_added`` and
#: ``cron_job_removed``.
RegistryListener = Callable[[str, str], None]

_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:\-]{0,199}$")
_EMPTY: Mapping[str, Any] = MappingProxyType({})


def _check_name(name: Any, field_name: str = "name") -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ConfigError.for_field(
            field_name,
            f"{name!r} is not a valid name (1-200 letters, digits, '_', '.', ':' or '-', "
            f"not starting with a punctuation mark)",
        )
    return name


@dataclass(frozen=True, slots=True)
class RegisteredPipeline:
    """A pipeline as registered: how to get it and how it is meant to run.

    Attributes:
        name: the registered name.
        source: the Runnable itself, or a zero-argument factory building one per run.
        schedule: the cron expression of its own cron job, if it has one.
        timescope: the timescope that gives its runs their time window, if any.
        timezone: the time zone of ``schedule``.
        description: free text (defaults to the first line of the pipeline's docstring).
        tags: labels to filter :meth:`PipelineRegistry.list_pipelines` by.
        metadata: free-form data (owner, links, ...).
        module: the module that registered it, when it was discovered.
    """

    name: str
    source: Runnable | PipelineFactory
    schedule: str | None = None
    timescope: Timescope | None = None
    timezone: str = "UTC"
    description: str = ""
    tags: frozenset[str] = frozenset()
    metadata: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, hash=False)
    module: str | None = None

    @property
    def is_factory(self) -> bool:
        """Whether ``source`` is a factory (a new Runnable is built for every run)."""
        return not isinstance(self.source, Runnable)

    def build(self) -> Runnable:
        """The Runnable for one run: ``source`` itself, or what the factory returns.

        Raises:
            ConfigError: the factory raised, or returned something that is not a Runnable.
        """
        if isinstance(self.source, Runnable):
            return self.source
        try:
            built = self.source()
        except Exception as exc:
            raise ConfigError(
                f"pipeline {self.name!r}: its factory raised {type(exc).__name__}: {exc}",
                [("pipeline", str(exc))],
            ) from exc
        if not isinstance(built, Runnable):
            raise ConfigError.for_field(
                "pipeline",
                f"the factory of {self.name!r} returned {type(built).__name__}, not a Runnable",
            )
        return built


def _check_source(pipeline: object) -> Runnable | PipelineFactory:
    if isinstance(pipeline, Runnable):
        return pipeline
    if not callable(pipeline):
        raise ConfigError.for_field(
            "pipeline",
            f"expected a Runnable or a zero-argument function returning one, "
            f"got {type(pipeline).__name__}",
        )
    try:
        signature = inspect.signature(pipeline)
    except (TypeError, ValueError):
        return cast(PipelineFactory, pipeline)  # a builtin or C callable: the call will tell
    try:
        signature.bind()
    except TypeError:
        raise ConfigError.for_field(
            "pipeline",
            f"a factory must be callable without arguments; {pipeline!r} takes {signature}",
        ) from None
    return cast(PipelineFactory, pipeline)


def _describe(source: Runnable | PipelineFactory) -> str:
    if isinstance(source, Runnable):
        return ""
    doc = inspect.getdoc(source)
    return doc.strip().splitlines()[0] if doc else ""


class PipelineRegistry:
    """Named pipelines, their cron jobs, and the state store their runs use.

    Args:
        state: the state store that keeps the run history of registered pipelines (a fresh
            :class:`~ductwork.MemoryStateStore` by default); runs get it as ``ctx.state``
            unless the pipeline has a store of its own (``Pipeline(state=...)``).
    """

    def __init__(self, state: StateStore | None = None) -> None:
        self.state: StateStore = state if state is not None else MemoryStateStore()
        self._pipelines: dict[str, RegisteredPipeline] = {}
        self._jobs: dict[str, CronJob] = {}
        self._listeners: list[RegistryListener] = []
        self._revision = 0

    def __repr__(self) -> str:
        return f"PipelineRegistry(pipelines={sorted(self._pipelines)!r})"

    def __len__(self) -> int:
        return len(self._pipelines)

    def __contains__(self, name: object) -> bool:
        return name in self._pipelines

    @property
    def revision(self) -> int:
        """A counter raised by every change (a cheap way to notice changes)."""
        return self._revision

    def add_listener(self, listener: RegistryListener) -> Callable[[], None]:
        """Call ``listener(event, name)`` after every change; returns a function removing it."""
        self._listeners.append(listener)

        def remove() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return remove

    def _changed(self, event: str, name: str) -> None:
        self._revision += 1
        for listener in list(self._listeners):
            listener(event, name)

    # --- pipelines --------------------------------------------------------------------------

    @checked_keywords
    def register_pipeline(
        self,
        name: str,
        pipeline: Runnable | PipelineFactory,
        schedule: str | None = None,
        *,
        timescope: Timescope | str | timedelta | None = None,
        timezone: str | None = None,
        description: str | None = None,
        tags: Iterable[str] = (),
        metadata: Mapping[str, Any] | None = None,
        replace: bool = False,
        module: str | None = None,
    ) -> RegisteredPipeline:
        """Register ``pipeline`` under ``name``.

        Args:
            name: a unique name (letters, digits, ``_ . : -``).
            pipeline: a Runnable, or a zero-argument factory building one for every run (so
                building happens at run time, and each run gets fresh objects).
            schedule: a cron expression; the pipeline then gets a cron job named ``name``.
            timescope: gives each run its time window (``"daily"``, ``"15m"``, a Timescope...).
            timezone: the time zone of ``schedule`` (default: the timescope's, else UTC).
            description: free text (default: the first docstring line of a factory).
            tags: labels to filter by.
            metadata: free-form JSON-like data.
            replace: replace an existing pipeline of the same name instead of raising; its own
                cron job follows the new ``schedule``, other jobs running it are kept.
            module: the module registering it (set by discovery).

        Raises:
            RegistryError: ``name`` is taken and ``replace`` is false.
            ConfigError: a bad name, pipeline, tag or metadata (naming the field).
            ScheduleError: an invalid schedule, timescope or time zone.
        """
        _check_name(name)
        source = _check_source(pipeline)
        scope = validate_timescope(timescope) if timescope is not None else None
        tz = check_timezone(timezone) if timezone is not None else None
        tz = tz or (scope.timezone if scope is not None else "UTC")
        cron = validate_schedule(schedule) if schedule is not None else None
        tag_set = frozenset(tags) if not isinstance(tags, str) else frozenset([tags])
        if not all(isinstance(tag, str) and tag for tag in tag_set):
            raise ConfigError.for_field("tags", f"tags must be non-empty strings, got {tags!r}")
        if metadata is not None and not isinstance(metadata, Mapping):
            raise ConfigError.for_field(
                "metadata", f"expected a mapping, got {type(metadata).__name__}"
            )
        if description is not None and not isinstance(description, str):
            raise ConfigError.for_field("description", "expected a string")
        if name in self._pipelines and not replace:
            owner = self._pipelines[name].module
            where = f" (by module {owner})" if owner else ""
            raise RegistryError(
                f"a pipeline named {name!r} is already registered{where}; "
                f"pass replace=True to replace it"
            )
        job = self._jobs.get(name)
        if cron is not None and job is not None and job.pipeline != name and not replace:
            raise RegistryError(f"a cron job named {name!r} already runs {job.pipeline!r}")
        entry = RegisteredPipeline(
            name=name,
            source=source,
            schedule=cron,
            timescope=scope,
            timezone=tz,
            description=description if description is not None else _describe(source),
            tags=tag_set,
            metadata=MappingProxyType(dict(metadata or {})),
            module=module,
        )
        own_job = job is not None and job.pipeline == name
        self._pipelines[name] = entry
        self._changed("pipeline_registered", name)
        if cron is not None:
            self.register_cron_job(name, cron, name, timezone=tz, replace=True)
        elif own_job:
            self.remove_cron_job(name)
        return entry

    def register_pipeline_with_timescope(
        self,
        name: str,
        pipeline: Runnable | PipelineFactory,
        timescope: Timescope | str | timedelta,
        schedule: str | None = None,
        **options: Any,
    ) -> RegisteredPipeline:
        """Register a pipeline whose runs each cover one window of ``timescope``.

        Unless ``schedule`` is given, the pipeline is scheduled on the timescope's default
        schedule (at the end of every window, in the timescope's time zone). Other options are
        those of :meth:`register_pipeline`.

        Raises:
            ScheduleError: an invalid timescope, or an interval no cron expression can follow
                and no ``schedule``.
        """
        scope = validate_timescope(timescope)
        if schedule is None:
            schedule = scope.default_schedule
            if schedule is None:
                raise ScheduleError(
                    f"timescope {scope} has no default cron schedule; pass schedule=..."
                )
        return self.register_pipeline(name, pipeline, schedule, timescope=scope, **options)

    def _drop_pipeline(self, name: str) -> RegisteredPipeline:
        entry = self._pipelines.pop(name)
        for job_name in [j.name for j in self._jobs.values() if j.pipeline == name]:
            del self._jobs[job_name]
            self._changed("cron_job_removed", job_name)
        self._changed("pipeline_unregistered", name)
        return entry

    def unregister_pipeline(self, name: str) -> RegisteredPipeline:
        """Remove a pipeline and every cron job that runs it; return its entry.

        Raises:
            RegistryError: no pipeline is registered under ``name``.
        """
        self.get_pipeline_entry(name)
        return self._drop_pipeline(name)

    def get_pipeline(self, name: str) -> Runnable:
        """The pipeline registered under ``name``, ready to run: the Runnable itself, or a fresh
        build of a factory entry (the entry is :meth:`get_pipeline_entry`).

        Raises:
            RegistryError: no pipeline is registered under ``name``.
            ConfigError: its factory raised, or returned something that is not a Runnable.
        """
        return self.get_pipeline_entry(name).build()

    def get_pipeline_entry(self, name: str) -> RegisteredPipeline:
        """The entry registered under ``name``.

        Raises:
            RegistryError: no pipeline is registered under ``name`` (the message lists the
                registered names).
        """
        try:
            return self._pipelines[name]
        except KeyError:
            known = ", ".join(sorted(self._pipelines)) or "none"
            raise RegistryError(
                f"no pipeline named {name!r} is registered (registered: {known})"
            ) from None

    def list_pipelines(self, tag: str | None = None) -> list[RegisteredPipeline]:
        """Every registered pipeline (with ``tag``, if given), sorted by name."""
        entries = sorted(self._pipelines.values(), key=lambda e: e.name)
        return [e for e in entries if tag is None or tag in e.tags]

    def build(self, name: str) -> Runnable:
        """The Runnable for one run of the pipeline registered under ``name``."""
        return self.get_pipeline_entry(name).build()

    def validate_pipeline(self, name: str | Runnable) -> Runnable:
        """Check a registered pipeline can run: build it and check what was built.

        Args:
            name: the registered name, or a pipeline object: when it is registered here, its
                entry is checked; otherwise it is checked to be a Runnable (its options were
                validated when it was made).

        Returns:
            the Runnable it builds.

        Raises:
            RegistryError: ``name`` is not registered.
            ConfigError: the factory raised or returned something that is not a Runnable, or
                ``name`` is neither a name nor a Runnable.
            ScheduleError: its schedule, timescope or time zone (or its cron jobs') is invalid.
        """
        if not isinstance(name, str):
            if not isinstance(name, Runnable):
                raise ConfigError.for_field(
                    "pipeline",
                    f"expected a pipeline name or a Runnable, got {type(name).__name__}",
                )
            owner = next((e.name for e in self._pipelines.values() if e.source is name), None)
            if owner is None:
                return name
            name = owner
        entry = self.get_pipeline_entry(name)
        runnable = entry.build()
        if entry.schedule is not None:
            validate_schedule(entry.schedule)
        check_timezone(entry.timezone)
        for job in self._jobs.values():
            if job.pipeline == name:
                validate_schedule(job.schedule)
                check_timezone(job.timezone)
        return runnable

    # --- cron jobs --------------------------------------------------------------------------

    def register_cron_job(
        self,
        name: str,
        schedule: str,
        pipeline: str | None = None,
        *,
        timezone: str | None = None,
        params: Mapping[str, Any] | None = None,
        enabled: bool = True,
        description: str = "",
        replace: bool = False,
    ) -> CronJob:
        """Add a cron job running a registered pipeline.

        Args:
            name: the job's name.
            schedule: a cron expression (see :func:`validate_schedule`).
            pipeline: the registered pipeline to run (default: the one named ``name``).
            timezone: the zone ``schedule`` is read in (default: the pipeline's timezone).
            params: parameters for every run the job starts.
            enabled: whether the scheduler runs it.
            description: free text.
            replace: replace a job of the same name instead of raising.

        Raises:
            RegistryError: the pipeline is not registered, or the job name is taken.
            ScheduleError: an invalid schedule or time zone.
        """
        _check_name(name)
        target = self.get_pipeline_entry(pipeline if pipeline is not None else name)
        cron = validate_schedule(schedule)
        tz = check_timezone(timezone) if timezone is not None else target.timezone
        if params is not None and not isinstance(params, Mapping):
            raise ConfigError.for_field(
                "params", f"expected a mapping, got {type(params).__name__}"
            )
        if name in self._jobs and not replace:
            raise RegistryError(
                f"a cron job named {name!r} already exists; pass replace=True to replace it"
            )
        job = CronJob(
            name=name,
            pipeline=target.name,
            schedule=cron,
            timezone=tz,
            params=MappingProxyType(dict(params or {})),
            enabled=bool(enabled),
            description=description,
        )
        if name in self._jobs:
            del self._jobs[name]
            self._changed("cron_job_removed", name)
        self._jobs[name] = job
        self._changed("cron_job_added", name)
        return job

    def remove_cron_job(self, name: str) -> CronJob:
        """Remove the cron job ``name`` and return it (the pipeline stays registered).

        Raises:
            RegistryError: there is no such job.
        """
        job = self.get_cron_job(name)
        del self._jobs[name]
        self._changed("cron_job_removed", name)
        return job

    def get_cron_job(self, name: str) -> CronJob:
        """The cron job ``name``.

        Raises:
            RegistryError: there is no such job.
        """
        try:
            return self._jobs[name]
        except KeyError:
            known = ", ".join(sorted(self._jobs)) or "none"
            raise RegistryError(f"no cron job named {name!r} (cron jobs: {known})") from None

    def list_cron_jobs(self, pipeline: str | None = None) -> list[CronJob]:
        """Every cron job (running ``pipeline``, if given), sorted by name."""
        jobs = sorted(self._jobs.values(), key=lambda j: j.name)
        return [j for j in jobs if pipeline is None or j.pipeline == pipeline]

    # --- running ----------------------------------------------------------------------------

    def resolve_window(
        self,
        name: str,
        window: TimeWindow | datetime | date | str | None = None,
        *,
        now: datetime | None = None,
    ) -> TimeWindow | None:
        """The window a run of ``name`` covers.

        Without ``window``: the last complete window of the pipeline's timescope before ``now``
        (``None`` for a pipeline without a timescope). A date, datetime or ISO text is resolved
        by the timescope (see :meth:`Timescope.resolve_window`).

        Raises:
            ScheduleError: a window other than a TimeWindow for a pipeline with no timescope.
        """
        entry = self.get_pipeline_entry(name)
        scope = entry.timescope
        if window is None:
            return scope.last_complete_window(now) if scope is not None else None
        if isinstance(window, TimeWindow):
            return window
        if scope is None:
            raise ScheduleError(
                f"pipeline {name!r} has no timescope: give its window as a TimeWindow"
            )
        return scope.resolve_window(window)

    async def run(
        self,
        name: str,
        *,
        window: TimeWindow | datetime | date | str | None = None,
        params: Mapping[str, Any] | None = None,
        run_id: str | None = None,
        state: StateStore | None = None,
        now: datetime | None = None,
        trigger: str = "manual",
        on_start: Callable[[RunResult], object] | None = None,
        executor: Executor | None = None,
    ) -> RunResult:
        """Run the pipeline registered under ``name`` once and record the run.

        Args:
            name: the registered name.
            window: the window to cover (see :meth:`resolve_window`); by default the last
                complete window of the timescope before ``now``.
            params: run parameters (``ctx.params``).
            run_id: the run's id (generated when omitted).
            state: the store to record the run in and hand to the run (default: the
                registry's; the run gets the pipeline's own store instead when it has one).
            now: the trigger time the default window is computed from (default: now).
            trigger: what started the run, kept in the run record (``manual``, ``schedule``,
                ``backfill``, ...).
            on_start: called with the run's RunResult just before the run starts; its per-stage
                counters fill in while the run goes on (for progress displays).
            executor: where the run runs (default: :class:`~ductwork.LocalExecutor`, here); with
                a :class:`~ductwork.DaskExecutor` it runs on a cluster's worker while the run is
                recorded here, in ``state``.

        Returns:
            The RunResult of a successful run.

        Raises:
            PipelineError: the run failed (or the pipeline could not be built); ``.result``
                holds the failed RunResult. Either way the run is recorded in the store's
                history before the error propagates, even when the run is cancelled.
        """
        entry = self.get_pipeline_entry(name)
        resolved = self.resolve_window(name, window, now=now)
        run_params = dict(params or {})
        ctx_id = run_id or new_run_id()
        store = state if state is not None else self.state
        try:
            runnable = entry.build()
        except ConfigError as exc:
            result = RunResult(name=name, run_id=ctx_id, status=RunStatus.FAILED)
            result.started_at = result.ended_at = datetime.now(UTC)
            error = PipelineError(
                f"could not build the pipeline: {exc}",
                pipeline=name,
                result=result,
                # A factory that failed on I/O (a connection, a timeout) may succeed next time.
                retryable=isinstance(exc.__cause__, (ConnectionError, TimeoutError)),
            )
            error.__cause__ = exc
            result.error = error
            with anyio.CancelScope(shield=True):
                await record_run(
                    store, name, result, window=resolved, params=run_params, trigger=trigger
                )
            raise error from exc
        ctx = RunContext(
            run_id=ctx_id,
            pipeline=runnable.name,
            window=resolved,
            params=MappingProxyType(run_params),
            state=state if state is not None else (runnable.state or self.state),
        )
        result = runnable.new_result(ctx)
        if on_start is not None:
            on_start(result)
        try:
            await (executor or LOCAL).execute(runnable, ctx, result)
        finally:
            with anyio.CancelScope(shield=True):
                await record_run(
                    store, name, result, window=resolved, params=run_params, trigger=trigger
                )
        if result.status is RunStatus.FAILED:
            assert result.error is not None
            raise result.error
        return result

    async def history(
        self, name: str, limit: int | None = 20, *, state: StateStore | None = None
    ) -> list[dict[str, Any]]:
        """The most recent run records of ``name``, newest first (from the registry's store)."""
        self.get_pipeline_entry(name)
        return await (state if state is not None else self.state).list_runs(name, limit)

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


_default_registry = PipelineRegistry()


def get_default_registry() -> PipelineRegistry:
    """The process-wide registry the module-level functions act on."""
    return _default_registry


@contextlib.contextmanager
def default_registry_bound(registry: PipelineRegistry) -> Iterator[PipelineRegistry]:
    """Make ``registry`` the default registry (of :func:`get_default_registry` and the
    module-level functions) while the block runs; discovery binds the registry it discovers
    into while it calls a module's ``register_pipelines()``."""
    global _default_registry
    previous, _default_registry = _default_registry, registry
    try:
        yield registry
    finally:
        _default_registry = previous


def register_pipeline(
    name: str,
    pipeline: Runnable | PipelineFactory,
    schedule: str | None = None,
    **options: Any,
) -> RegisteredPipeline:
    """Register a pipeline in the default registry.

    See :meth:`PipelineRegistry.register_pipeline` for the options.
    """
    return _default_registry.register_pipeline(name, pipeline, schedule, **options)


def register_pipeline_with_timescope(
    name: str,
    pipeline: Runnable | PipelineFactory,
    timescope: Timescope | str | timedelta,
    schedule: str | None = None,
    **options: Any,
) -> RegisteredPipeline:
    """Register a timescoped pipeline in the default registry (see
    :meth:`PipelineRegistry.register_pipeline_with_timescope`)."""
    return _default_registry.register_pipeline_with_timescope(
        name, pipeline, timescope, schedule, **options
    )


def get_pipeline(name: str) -> Runnable:
    """The pipeline registered under ``name`` in the default registry, ready to run (see
    :meth:`PipelineRegistry.get_pipeline`)."""
    return _default_registry.get_pipeline(name)


def get_pipeline_entry(name: str) -> RegisteredPipeline:
    """The entry registered under ``name`` in the default registry."""
    return _default_registry.get_pipeline_entry(name)


def list_pipelines(tag: str | None = None) -> list[RegisteredPipeline]:
    """Every pipeline in the default registry (with ``tag``, if given), sorted by name."""
    return _default_registry.list_pipelines(tag)


def unregister_pipeline(name: str) -> RegisteredPipeline:
    """Remove a pipeline (and its cron jobs) from the default registry."""
    return _default_registry.unregister_pipeline(name)


def validate_pipeline(name: str | Runnable) -> Runnable:
    """Check a pipeline of the default registry (see :meth:`PipelineRegistry.validate_pipeline`)."""
    return _default_registry.validate_pipeline(name)


def register_cron_job(
    name: str, schedule: str, pipeline: str | None = None, **options: Any
) -> CronJob:
    """Add a cron job to the default registry (see :meth:`PipelineRegistry.register_cron_job`)."""
    return _default_registry.register_cron_job(name, schedule, pipeline, **options)


def remove_cron_job(name: str) -> CronJob:
    """Remove a cron job from the default registry."""
    return _default_registry.remove_cron_job(name)


def get_cron_job(name: str) -> CronJob:
    """The cron job ``name`` of the default registry."""
    return _default_registry.get_cron_job(name)


def list_cron_jobs(pipeline: str | None = None) -> list[CronJob]:
    """Every cron job of the default registry (running ``pipeline``, if given)."""
    return _default_registry.list_cron_jobs(pipeline)


async def run_pipeline(name: str, **options: Any) -> RunResult:
    """Run a pipeline of the default registry once (see :meth:`PipelineRegistry.run`)."""
    return await _default_registry.run(name, **options)

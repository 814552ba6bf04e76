"""The pipeline registry: registering, replacing, removing and validating named pipelines."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta
from types import MappingProxyType
from typing import Any

from .._exceptions import ConfigError, RegistryError, ScheduleError
from ..core.config import checked_keywords
from ..core.runnable import Runnable
from ..cron import check_timezone, validate_schedule
from ..timescope import Timescope, validate_timescope
from .backfills import BackfillMixin
from .cron_jobs import CronJobsMixin
from .entries import PipelineFactory, RegisteredPipeline, check_name, check_source, describe_source

__all__ = ["PipelineRegistry"]


class PipelineRegistry(BackfillMixin, CronJobsMixin):
    """Named pipelines, their cron jobs, and the state store their runs use.

    Args:
        state: the state store that keeps the run history of registered pipelines (a fresh
            :class:`~ductwork.MemoryStateStore` by default); runs get it as ``ctx.state``
            unless the pipeline has a store of its own (``Pipeline(state=...)``).
    """

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
        check_name(name)
        source = check_source(pipeline)
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
            description=description if description is not None else describe_source(source),
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

"""The cron jobs of a registry: adding, removing and listing the jobs that run its pipelines."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from .._exceptions import ConfigError, RegistryError
from ..core.config import checked_keywords
from ..cron import CronJob, check_timezone, validate_schedule
from .entries import RegistryBase, check_name

__all__ = ["CronJobsMixin"]


class CronJobsMixin(RegistryBase):
    """The cron job methods of :class:`~ductwork.PipelineRegistry`."""

    @checked_keywords
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
        check_name(name)
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

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

from ..cron import CronJob, validate_schedule
from .default import (
    default_registry_bound,
    get_cron_job,
    get_default_registry,
    get_pipeline,
    get_pipeline_entry,
    list_cron_jobs,
    list_pipelines,
    register_cron_job,
    register_pipeline,
    register_pipeline_with_timescope,
    remove_cron_job,
    run_pipeline,
    unregister_pipeline,
    validate_pipeline,
)
from .entries import PipelineFactory, RegisteredPipeline, RegistryListener
from .pipelines import PipelineRegistry

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

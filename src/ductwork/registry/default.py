"""The process-wide default registry and the module-level functions acting on it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from ..core.result import RunResult
from ..core.runnable import Runnable
from ..cron import CronJob
from ..timescope import Timescope
from .entries import PipelineFactory, RegisteredPipeline
from .pipelines import PipelineRegistry

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

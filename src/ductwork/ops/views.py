"""What the API and the dashboard show: jobs and runs as JSON-friendly dicts.

Both read the same views, so the page shows what ``/api`` returns. Nothing secret leaves: the
values of run parameters whose names look secret (``token``, ``password``, ``api_key``, ...)
are masked, and a pipeline's free-form metadata is not shown at all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from .._exceptions import RegistryError
from ..connectors.http.config import looks_secret
from ..registry import PipelineRegistry
from ..scheduler import JobStatus
from ..state import StateStore

__all__ = ["MASK", "job_view", "masked", "recent_runs", "run_view"]

#: What replaces a secret value.
MASK = "***"


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def masked(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` with the values of secret-looking names replaced by :data:`MASK`."""
    return {key: MASK if looks_secret(key) else value for key, value in values.items()}


def job_view(job: JobStatus, registry: PipelineRegistry) -> dict[str, Any]:
    """One cron job of a scheduler: its definition, its state and its counts."""
    try:
        entry = registry.get_pipeline(job.pipeline)
    except RegistryError:  # unregistered while a run of it goes on
        timescope, description = None, ""
    else:
        timescope = str(entry.timescope) if entry.timescope is not None else None
        description = entry.description
    try:
        params = masked(registry.get_cron_job(job.name).params)
    except RegistryError:
        params = {}
    if job.running:
        state = "running"
    elif not job.enabled:
        state = "disabled"
    else:
        state = str(job.last_status) if job.last_status is not None else "idle"
    last_run = None
    if job.last_run_id is not None:
        last_run = {
            "run_id": job.last_run_id,
            "status": str(job.last_status) if job.last_status is not None else None,
            "fire_time": _iso(job.last_fire_time),
            "started_at": _iso(job.last_started_at),
            "ended_at": _iso(job.last_ended_at),
            "error": job.last_error,
        }
    return {
        "name": job.name,
        "pipeline": job.pipeline,
        "description": description,
        "schedule": job.schedule,
        "timezone": job.timezone,
        "timescope": timescope,
        "params": params,
        "enabled": job.enabled,
        "overlap": job.overlap,
        "state": state,
        "next_fire_time": _iso(job.next_fire_time),
        "running": job.running,
        "queued": job.queued,
        "last_run": last_run,
        "counts": {
            "runs": job.runs,
            "succeeded": job.succeeded,
            "failed": job.failed,
            "cancelled": job.cancelled,
            "skipped_ticks": job.skipped,
            "ticks": job.ticks,
        },
        "tick_lateness_seconds": {
            "total": round(job.tick_lateness_seconds, 6),
            "last": round(job.last_tick_lateness, 6)
            if job.last_tick_lateness is not None
            else None,
        },
    }


def run_view(record: Mapping[str, Any]) -> dict[str, Any]:
    """A run record of the history (or a live result's ``to_dict()``), parameters masked."""
    view = dict(record)
    if isinstance(view.get("params"), Mapping):
        view["params"] = masked(view["params"])
    return view


async def recent_runs(
    store: StateStore, pipelines: Sequence[str], limit: int
) -> list[dict[str, Any]]:
    """The most recent runs of ``pipelines``, newest first, at most ``limit`` in all."""
    runs: list[dict[str, Any]] = []
    for name in pipelines:
        runs.extend(await store.list_runs(name, limit))
    runs.sort(key=lambda r: r.get("started_at") or r.get("recorded_at") or "", reverse=True)
    return [run_view(run) for run in runs[:limit]]

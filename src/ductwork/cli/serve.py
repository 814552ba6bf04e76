"""``ductwork serve``: the scheduler with the pipelines' cron jobs, and its HTTP server."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from .._exceptions import RegistryError
from ..scheduler import open_scheduler
from .defaults import TOKEN_ENV
from .errors import EXIT_OK, EXIT_USAGE, CommandError
from .output import console, table, warn
from .project import load_project
from .runtime import observed

if TYPE_CHECKING:
    from ..ops.server import HttpServer


async def cmd_serve(args: argparse.Namespace) -> int:
    """Run the scheduled pipelines until SIGINT or SIGTERM; print what ran at the end."""
    project = load_project(args)
    registry = project.registry
    if args.job:
        for name in args.job:
            try:
                registry.get_cron_job(name)
            except RegistryError as exc:
                raise CommandError(str(exc), EXIT_USAGE) from None
        for job in registry.list_cron_jobs():
            if job.name not in args.job:
                registry.remove_cron_job(job.name)
    jobs = registry.list_cron_jobs()
    if not jobs:
        raise CommandError(
            f"no scheduled pipelines in {project.where}: give a pipeline a schedule "
            f"(register_pipeline(name, build, '*/5 * * * *')) or a timescope",
            EXIT_USAGE,
        )
    listing = table("JOB", "PIPELINE", "SCHEDULE", "TIME ZONE", "NEXT RUN", "ENABLED")
    for job in jobs:
        listing.add_row(
            job.name,
            job.pipeline,
            job.schedule,
            job.timezone,
            f"{job.next_fire_time():%Y-%m-%d %H:%M:%S %z}",
            "yes" if job.enabled else "no",
        )
    console(sys.stdout).print(listing)
    print(
        f"serving {len(jobs)} cron job(s) from {project.where}, state in {project.state_path}; "
        f"press Ctrl+C to stop",
        flush=True,
    )
    server = http_server(args)
    with observed(None, args.otel):
        async with open_scheduler(
            registry, grace_period=args.grace, overlap=args.overlap, http=server
        ) as s:
            if server is not None:
                posts = "on" if server.config.token is not None else f"off (no ${TOKEN_ENV})"
                print(
                    f"dashboard on {server.url}/ · metrics on {server.url}/metrics · "
                    f"API on {server.url}/api/jobs (POST endpoints {posts})",
                    flush=True,
                )
            await s.serve()
    stats = s.statistics()
    print(
        f"stopped: {stats.runs_started} run(s): {stats.runs_succeeded} succeeded, "
        f"{stats.runs_failed} failed, {stats.runs_cancelled} cancelled; "
        f"{stats.ticks_skipped} tick(s) skipped",
        flush=True,
    )
    return EXIT_OK


def http_server(args: argparse.Namespace) -> HttpServer | None:
    """The HTTP server ``serve --http`` asks for, or ``None``."""
    if not args.http:
        return None
    from ..ops.server import HttpServer, is_loopback

    token = getattr(args, "token", None) or os.environ.get(TOKEN_ENV) or None
    server = HttpServer(args.http, token=token, metrics=not args.no_metrics)
    if not is_loopback(server.host):
        warn(
            f"listening on {server.host}: the dashboard and the read endpoints need no token, "
            f"so anyone who reaches this address can read the jobs and runs"
        )
    return server

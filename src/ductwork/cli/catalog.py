"""``ductwork list`` (the pipelines and their last runs) and ``ductwork history`` (one's runs)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from rich import box
from rich.table import Table

from ..registry import RegisteredPipeline
from .errors import EXIT_FAILED, EXIT_OK
from .output import console, one_line, print_json, table, warn, when, window_text
from .project import load_project


async def cmd_list(args: argparse.Namespace) -> int:
    """List the pipelines: schedule, timescope, last run and description, or as JSON."""
    project = load_project(args)
    entries = project.registry.list_pipelines(args.tag)
    store = project.registry.state
    rows: list[tuple[RegisteredPipeline, dict[str, Any] | None]] = []
    for entry in entries:
        recent = await store.list_runs(entry.name, 1)
        rows.append((entry, recent[0] if recent else None))
    if args.json:
        print_json(
            [
                {
                    "name": entry.name,
                    "schedules": project.schedules(entry.name),
                    "timescope": str(entry.timescope) if entry.timescope else None,
                    "timezone": entry.timezone,
                    "description": entry.description,
                    "tags": sorted(entry.tags),
                    "module": entry.module,
                    "last_run": {
                        k: last.get(k)
                        for k in ("run_id", "status", "trigger", "started_at", "ended_at")
                    }
                    if last
                    else None,
                }
                for entry, last in rows
            ]
        )
        return EXIT_FAILED if project.errors() else EXIT_OK
    if not entries:
        what = f" tagged {args.tag!r}" if args.tag else ""
        warn(f"no pipelines{what} found in {project.where} (modules named *_pipeline.py)")
        return EXIT_FAILED if project.errors() else EXIT_OK
    listing = table("NAME", "SCHEDULE", "TIMESCOPE", "LAST RUN", "DESCRIPTION")
    for entry, last in rows:
        last_text = f"{last['status']} {when(last.get('started_at'))}" if last else "-"
        listing.add_row(
            entry.name,
            "\n".join(project.schedules(entry.name)) or "-",
            str(entry.timescope) if entry.timescope else "-",
            last_text,
            entry.description or "",
        )
    console(sys.stdout).print(listing)
    return EXIT_FAILED if project.errors() else EXIT_OK


async def cmd_history(args: argparse.Namespace) -> int:
    """Print the recent runs of a pipeline, newest first, or their records as JSON."""
    project = load_project(args)
    runs = await project.registry.state.list_runs(args.name, args.limit)
    if not runs:
        entry = project.pipeline(args.name)  # unknown names are an error
        if not args.json:
            print(f"no runs of {entry.name} recorded in {project.state_path}")
    if args.json:
        print_json(runs)
        return EXIT_OK
    if not runs:
        return EXIT_OK
    listing = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for column in ("STARTED (UTC)", "STATUS", "TRIGGER", "WINDOW", "DURATION", "IN", "OUT"):
        listing.add_column(
            column, justify="right" if column in ("DURATION", "IN", "OUT") else "left"
        )
    listing.add_column("ERROR", overflow="fold")
    for run in runs:
        listing.add_row(
            when(run.get("started_at")),
            str(run.get("status")),
            str(run.get("trigger") or "-"),
            window_text(run.get("window")),
            f"{run.get('duration_seconds', 0):.3f}s",
            f"{run.get('records_in', 0):,}",
            f"{run.get('records_out', 0):,}",
            one_line(run.get("error") or ""),
        )
    console(sys.stdout).print(listing)
    return EXIT_OK

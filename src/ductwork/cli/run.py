"""``ductwork run`` (one run, with progress and a summary) and ``ductwork validate``."""

from __future__ import annotations

import argparse
import sys

from .._exceptions import DuctworkError, PipelineError
from ..core.compose import Composition
from ..core.pipeline import Pipeline
from ..core.result import RunResult
from ..core.runnable import Runnable
from .errors import EXIT_OK, CommandError
from .output import one_line, print_json, warn
from .progress import LiveRun, showing_progress
from .project import Project, load_project
from .runtime import observed, open_executor
from .signals import Interrupted, interruptible


async def cmd_run(args: argparse.Namespace) -> int:
    """Run one pipeline once; print its summary, or its result as JSON."""
    project = load_project(args)
    entry = project.pipeline(args.name)
    window = project.registry.resolve_window(entry.name, args.window)
    params = dict(args.param)
    live_run = LiveRun(entry.name, window)
    show_progress = not args.no_progress and sys.stderr.isatty()

    async def run() -> RunResult:
        async with open_executor(args.cluster, project) as executor:
            return await project.registry.run(
                entry.name, window=window, params=params, on_start=live_run, executor=executor
            )

    outcome: RunResult | None = None
    failure: BaseException | None = None
    metrics = None
    if args.metrics_file:
        from ..ops.metrics import RunMetrics

        metrics = RunMetrics()
    with showing_progress(live_run, show_progress), observed(metrics, args.otel):
        try:
            outcome = await interruptible(run)
        except PipelineError as exc:
            failure = exc
        except Interrupted as exc:
            failure = exc
    if metrics is not None:
        try:
            metrics.write(args.metrics_file)
        except OSError as exc:
            warn(f"could not write the metrics to {args.metrics_file}: {exc}")

    result = outcome or live_run.result
    if result is not None:
        if args.json:
            record = result.to_dict()
            record["window"] = (
                {"start": window.start.isoformat(), "end": window.end.isoformat()}
                if window
                else None
            )
            record["params"] = params
            print_json(record)
        else:
            print(result.summary(), flush=True)
    if isinstance(failure, Interrupted):
        raise failure
    if failure is not None:
        raise CommandError(f"run failed: {failure}") from failure
    return EXIT_OK


def _describe_runnable(runnable: Runnable) -> str:
    if isinstance(runnable, Pipeline):
        return "pipeline " + " → ".join(runnable.stage_names)
    if isinstance(runnable, Composition):
        return f"{runnable.kind} of " + ", ".join(child.name for child in runnable.children)
    return runnable.kind


async def cmd_validate(args: argparse.Namespace) -> int:
    """Import every pipeline module and build every pipeline; report each one."""
    project = Project(args)
    for report in project.reports:
        print(report.summary())
    entries = project.registry.list_pipelines()
    errors = len(project.errors())
    lines = []
    for entry in entries:
        try:
            runnable = project.registry.validate_pipeline(entry.name)
        except DuctworkError as exc:
            errors += 1
            lines.append(f"  error {entry.name}: {one_line(str(exc))}")
            continue
        details = [_describe_runnable(runnable)]
        if entry.timescope is not None:
            details.append(f"timescope {entry.timescope}")
        details.extend(f"schedule {text}" for text in project.schedules(entry.name))
        lines.append(f"  ok    {entry.name}: {' · '.join(details)}")
    invalid = sum(1 for line in lines if line.startswith("  error"))
    print(f"validated {len(entries)} pipeline(s): {len(entries) - invalid} ok, {invalid} invalid")
    for line in lines:
        print(line)
    if not entries:
        raise CommandError(f"no pipelines found in {project.where} (modules named *_pipeline.py)")
    if errors:
        raise CommandError(f"{errors} error(s) in {project.where}")
    return EXIT_OK

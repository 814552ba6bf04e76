"""The ``ductwork`` command: list, run, validate, serve, backfill and history.

Pipelines come from the ``*_pipeline.py`` modules of a directory (``--path``, default
``./pipelines`` or ``$DUCTWORK_PATH``); run history lives in a state file (``--state``, default
``./.ductwork/state.db`` or ``$DUCTWORK_STATE``): an SQLite database, safe for ``ductwork run``
beside ``ductwork serve``, or a JSON file when the name ends in ``.json``. A
``./.ductwork/state.json`` left by an older version is copied into the database on first
use::

    ductwork list                          # name, schedule, timescope, last run, description
    ductwork run daily_orders --window 2026-11-10 --param output_dir=/tmp/out
    ductwork validate                      # discovery report; exit 1 on any error
    ductwork serve                         # the scheduler, until SIGINT or SIGTERM
    ductwork backfill daily_orders --start 2026-11-01 --end 2026-11-08 --workers 4
    ductwork history daily_orders

Exit codes: 0 success; 1 a run, backfill or validation failed; 2 bad usage or configuration (an
unknown pipeline, an invalid window, a missing directory...); 128 + the signal number when SIGINT
or SIGTERM interrupted a run (which is recorded as cancelled). Errors are printed as one line;
``--verbose`` adds the traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import traceback
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from time import perf_counter
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

import anyio
import orjson
from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table

from ._exceptions import ConfigError, DuctworkError, PipelineError, RegistryError
from ._version import __version__
from .connectors.console import progress_shown_elsewhere
from .core.compose import Composition
from .core.context import TimeWindow
from .core.errors import unwrap_group
from .core.pipeline import Pipeline
from .core.result import RunResult
from .core.runnable import Runnable
from .discovery import DiscoveryReport, discover_pipelines
from .registry import PipelineRegistry, RegisteredPipeline
from .scheduler import open_scheduler
from .state import JsonFileStateStore, StateStore
from .state_sqlite import SqliteStateStore, migrate_json_state

if TYPE_CHECKING:
    from .ops.metrics import RunMetrics
    from .ops.server import HttpServer

__all__ = ["main"]

PATH_ENV = "DUCTWORK_PATH"
STATE_ENV = "DUCTWORK_STATE"
TOKEN_ENV = "DUCTWORK_TOKEN"
DEFAULT_PATH = "pipelines"
DEFAULT_STATE = str(Path(".ductwork") / "state.db")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

logger = logging.getLogger("ductwork.cli")

T = TypeVar("T")


class CommandError(Exception):
    """A failure the command reports as one line and an exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


class Interrupted(Exception):
    """SIGINT or SIGTERM cancelled the command's work."""

    def __init__(self, signum: signal.Signals) -> None:
        super().__init__(signum.name)
        self.signum = signum


# --- arguments ----------------------------------------------------------------------------------


def _param(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    return key.strip(), value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {text!r}")
    return value


def _listen(text: str) -> str:
    from .ops.server import parse_listen

    try:
        host, port = parse_listen(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _otel_option(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "--otel",
        action="store_true",
        help="export OpenTelemetry spans of the runs: by OTLP as the OTEL_* variables say, "
        "else to stderr (needs the otel extra)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``ductwork`` command."""
    common = argparse.ArgumentParser(add_help=False)
    # Defaults are SUPPRESS so the options work before or after the command name.
    common.add_argument(
        "--path",
        action="append",
        default=argparse.SUPPRESS,
        metavar="DIR",
        help=f"directory of *_pipeline.py modules (repeatable; default: ${PATH_ENV} "
        f"or ./{DEFAULT_PATH})",
    )
    common.add_argument(
        "--state",
        default=argparse.SUPPRESS,
        metavar="FILE",
        help=f"state file with the run history: SQLite, or JSON for a *.json name "
        f"(default: ${STATE_ENV} or ./{DEFAULT_STATE})",
    )
    common.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=argparse.SUPPRESS,
        help="more log output, and tracebacks with errors (-vv: debug logs)",
    )
    common.add_argument(
        "-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="errors only"
    )

    parser = argparse.ArgumentParser(
        prog="ductwork",
        description="Run, schedule and inspect the ductwork pipelines of a directory.",
        parents=[common],
        epilog="Exit codes: 0 ok, 1 a run or validation failed, 2 usage or configuration "
        "error, 130/143 interrupted by SIGINT/SIGTERM.",
    )
    parser.add_argument("--version", action="version", version=f"ductwork {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help, description=help, parents=[common])

    cmd = command("list", "list the pipelines: schedule, timescope, last run, description")
    cmd.add_argument("--tag", help="only pipelines with this tag")
    cmd.add_argument("--json", action="store_true", help="print JSON")

    cmd = command("run", "run a pipeline once, with a progress display and a summary")
    cmd.add_argument("name", help="the pipeline's name")
    cmd.add_argument(
        "--window",
        metavar="WHEN",
        help="the time window to cover, read by the pipeline's timescope: a date "
        "(2026-11-10), a time, or ISO text (default: the last complete window)",
    )
    cmd.add_argument(
        "--param",
        action="append",
        type=_param,
        default=[],
        metavar="KEY=VALUE",
        help="a run parameter, as text (repeatable)",
    )
    cmd.add_argument("--no-progress", action="store_true", help="no live progress display")
    cmd.add_argument("--json", action="store_true", help="print the result as JSON")
    cmd.add_argument(
        "--metrics-file",
        metavar="PATH",
        help="write the run's Prometheus metrics to PATH at the end (for node-exporter's "
        "textfile collector: name it *.prom)",
    )
    _otel_option(cmd)

    command("validate", "import every pipeline module and check every pipeline")

    cmd = command("serve", "run the scheduled pipelines until SIGINT or SIGTERM")
    cmd.add_argument(
        "--grace",
        type=_seconds,
        default=30.0,
        metavar="SECONDS",
        help="on shutdown, how long runs in flight may take to finish (default: 30)",
    )
    cmd.add_argument(
        "--overlap",
        choices=["skip", "queue", "allow"],
        default="skip",
        help="what a tick does while the job's previous run goes on (default: skip)",
    )
    cmd.add_argument(
        "--job",
        action="append",
        default=[],
        metavar="NAME",
        help="serve only this cron job (repeatable; default: all)",
    )
    cmd.add_argument(
        "--http",
        metavar="[HOST:]PORT",
        type=_listen,
        help="serve /metrics, /healthz, /readyz, the API and the dashboard on HOST:PORT "
        "(a port alone: 127.0.0.1:PORT)",
    )
    cmd.add_argument(
        "--token",
        default=argparse.SUPPRESS,
        metavar="TOKEN",
        help=f"the bearer token the POST endpoints need (default: ${TOKEN_ENV}; without one "
        f"they are off)",
    )
    cmd.add_argument(
        "--no-metrics", action="store_true", help="with --http: do not count runs for /metrics"
    )
    _otel_option(cmd)

    cmd = command("backfill", "run a timescoped pipeline for every window of a range")
    cmd.add_argument("name", help="the pipeline's name")
    cmd.add_argument("--start", required=True, help="start of the range (a date or ISO time)")
    cmd.add_argument("--end", required=True, help="end of the range, exclusive")
    cmd.add_argument(
        "--workers", type=_positive_int, default=1, help="windows run at once (default: 1)"
    )
    cmd.add_argument("--rerun", action="store_true", help="also run windows that succeeded")
    cmd.add_argument(
        "--stop-on-failure", action="store_true", help="start no window after one failed"
    )
    cmd.add_argument("--param", action="append", type=_param, default=[], metavar="KEY=VALUE")

    cmd = command("history", "recent runs of a pipeline, newest first")
    cmd.add_argument("name", help="the pipeline's name")
    cmd.add_argument("--limit", type=_positive_int, default=20, help="how many (default: 20)")
    cmd.add_argument("--json", action="store_true", help="print the run records as JSON")
    return parser


# --- output -------------------------------------------------------------------------------------


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at the time (a live display may redirect it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


class _RunEndFilter(logging.Filter):
    """Drops the ``run failed``/``run cancelled`` log lines of runs the command reports itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.name == "ductwork"
            and isinstance(record.msg, str)
            and record.msg.startswith(("run failed:", "run cancelled:"))
        )


def _configure_logging(args: argparse.Namespace) -> None:
    base = logging.INFO if args.command == "serve" else logging.WARNING
    verbose = getattr(args, "verbose", 0)
    level = base - 10 * verbose
    if getattr(args, "quiet", False):
        level = logging.ERROR
    handler = logging.StreamHandler(_CurrentStderr())
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
    )
    if args.command in ("run", "backfill") and not verbose:
        handler.addFilter(_RunEndFilter())
    root = logging.getLogger("ductwork")
    root.handlers[:] = [handler]
    root.setLevel(max(level, logging.DEBUG))
    root.propagate = False


def _console(stream: TextIO) -> Console:
    terminal = stream.isatty()
    return Console(file=stream, width=None if terminal else 200, highlight=False)


def _print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2, default=str).decode())
    sys.stdout.write("\n")


def _warn(message: str) -> None:
    print(f"ductwork: warning: {message}", file=sys.stderr)


def _one_line(text: str) -> str:
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def _when(text: str | None) -> str:
    if not text:
        return "-"
    moment = datetime.fromisoformat(text).astimezone(UTC)
    return f"{moment:%Y-%m-%d %H:%M:%S}"


def _window_text(window: Any) -> str:
    """``2024-02-29 → 2024-03-01`` for whole days, ``2024-02-29 13:00 → 14:00`` within a day."""
    if not window:
        return "-"
    start = datetime.fromisoformat(window["start"])
    end = datetime.fromisoformat(window["end"])
    if all((t.hour, t.minute, t.second) == (0, 0, 0) for t in (start, end)):
        return f"{start:%Y-%m-%d} → {end:%Y-%m-%d}"
    clock = "%H:%M:%S" if start.second or end.second else "%H:%M"
    end_format = clock if start.date() == end.date() else f"%Y-%m-%d {clock}"
    return f"{start:%Y-%m-%d {clock}} → {end:{end_format}}"


# --- discovery ----------------------------------------------------------------------------------


def open_state(path: Path) -> StateStore:
    """The state store for ``path``: JSON for a ``*.json`` name, else SQLite.

    A new SQLite file takes over the JSON file of the same name beside it (``state.json`` for
    ``state.db``), which is renamed to ``state.json.migrated``.
    """
    if path.suffix.lower() == ".json":
        return JsonFileStateStore(path)
    fresh = not path.exists()
    store = SqliteStateStore(path)
    legacy = path.with_suffix(".json")
    try:
        if fresh and migrate_json_state(legacy, store):
            logger.warning("copied the state in %s into %s", legacy, path)
    except ConfigError:
        store.close()  # a corrupt JSON file: leave no half-made database to hide it next time
        for made in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            made.unlink(missing_ok=True)
        raise
    return store


class _Project:
    """The registry built from ``--path`` and ``--state``, and the discovery reports."""

    def __init__(self, args: argparse.Namespace) -> None:
        paths = getattr(args, "path", None)
        if not paths:
            from_env = os.environ.get(PATH_ENV, "")
            paths = [p for p in from_env.split(os.pathsep) if p] or [DEFAULT_PATH]
        state = getattr(args, "state", None) or os.environ.get(STATE_ENV) or DEFAULT_STATE
        self.paths: list[str] = paths
        self.state_path = Path(state)
        self.registry = PipelineRegistry(state=open_state(self.state_path))
        self.reports: list[DiscoveryReport] = []
        for path in paths:
            if not Path(path).is_dir():
                raise CommandError(
                    f"pipeline directory {path} does not exist (give one with --path or "
                    f"${PATH_ENV})",
                    EXIT_USAGE,
                )
            self.reports.append(discover_pipelines(path, registry=self.registry))

    @property
    def where(self) -> str:
        return ", ".join(self.paths)

    def errors(self) -> list[str]:
        return [str(error) for report in self.reports for error in report.errors]

    def warn_about_errors(self) -> None:
        errors = self.errors()
        for error in errors:
            _warn(error)
        if errors:
            _warn("run `ductwork validate` for the details")

    def pipeline(self, name: str) -> RegisteredPipeline:
        try:
            return self.registry.get_pipeline(name)
        except RegistryError:
            known = ", ".join(e.name for e in self.registry.list_pipelines()) or "none"
            hint = ""
            if self.errors():
                hint = f"; {len(self.errors())} module(s) failed to load: run `ductwork validate`"
            raise CommandError(
                f"no pipeline named {name!r} in {self.where} (pipelines: {known}){hint}",
                EXIT_USAGE,
            ) from None


# --- signals ------------------------------------------------------------------------------------


async def _interruptible(fn: Callable[[], Awaitable[T]]) -> T:
    """Await ``fn()``; SIGINT or SIGTERM cancel it and raise :class:`Interrupted`."""
    received: list[signal.Signals] = []
    value: list[T] = []
    try:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with anyio.create_task_group() as tg:

                async def watch() -> None:
                    async for signum in signals:
                        received.append(signal.Signals(signum))
                        work.cancel()

                tg.start_soon(watch)
                try:
                    with anyio.CancelScope() as work:
                        value.append(await fn())
                finally:
                    tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        raise unwrap_group(group) from None
    if received:
        raise Interrupted(received[0])
    return value[0]


# --- commands -----------------------------------------------------------------------------------


def _schedules(project: _Project, name: str) -> list[str]:
    texts = []
    for job in project.registry.list_cron_jobs(name):
        text = job.schedule if job.timezone == "UTC" else f"{job.schedule} ({job.timezone})"
        if not job.enabled:
            text += " (disabled)"
        texts.append(text)
    return texts


async def cmd_list(args: argparse.Namespace) -> int:
    project = _Project(args)
    project.warn_about_errors()
    entries = project.registry.list_pipelines(args.tag)
    store = project.registry.state
    rows: list[tuple[RegisteredPipeline, dict[str, Any] | None]] = []
    for entry in entries:
        recent = await store.list_runs(entry.name, 1)
        rows.append((entry, recent[0] if recent else None))
    if args.json:
        _print_json(
            [
                {
                    "name": entry.name,
                    "schedules": _schedules(project, entry.name),
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
        return EXIT_OK
    if not entries:
        what = f" tagged {args.tag!r}" if args.tag else ""
        _warn(f"no pipelines{what} found in {project.where} (modules named *_pipeline.py)")
        return EXIT_OK
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for column in ("NAME", "SCHEDULE", "TIMESCOPE", "LAST RUN", "DESCRIPTION"):
        table.add_column(column)
    for entry, last in rows:
        last_text = f"{last['status']} {_when(last.get('started_at'))}" if last else "-"
        table.add_row(
            entry.name,
            "\n".join(_schedules(project, entry.name)) or "-",
            str(entry.timescope) if entry.timescope else "-",
            last_text,
            entry.description or "",
        )
    _console(sys.stdout).print(table)
    return EXIT_OK


class _LiveRun:
    """What the progress display shows: the live counters of the run's RunResult."""

    def __init__(self, name: str, window: TimeWindow | None) -> None:
        self.name = name
        self.window = window
        self.result: RunResult | None = None
        self.started = perf_counter()
        self.spinner = Spinner("dots")

    def __call__(self, result: RunResult) -> None:
        self.result = result
        self.started = perf_counter()

    def __rich__(self) -> RenderableType:
        elapsed = perf_counter() - self.started
        result = self.result
        parts = [self.name]
        if self.window is not None:
            parts.append(str(self.window))
        if result is not None:
            parts.append(f"{result.records_in:,} in / {result.records_out:,} out")
            if elapsed > 0:
                parts.append(f"{result.records_out / elapsed:,.0f} rec/s")
        parts.append(f"{elapsed:.1f}s")
        self.spinner.update(text=" · ".join(parts))
        if result is None or not result.stages:
            return self.spinner
        table = Table(box=None, pad_edge=False, show_header=True, header_style="dim")
        for column in ("stage", "kind", "in", "out", "busy", "blocked"):
            table.add_column(column, justify="right" if column not in ("stage", "kind") else "left")
        for stats in result.stages:
            # a stage's busy time is settled when it ends; until then: its time not blocked
            busy = stats.busy_seconds or max(0.0, elapsed - stats.blocked_seconds)
            table.add_row(
                stats.name,
                stats.kind,
                f"{stats.records_in:,}",
                f"{stats.records_out:,}",
                f"{busy:.2f}s",
                f"{stats.blocked_seconds:.2f}s",
            )
        return Group(self.spinner, table)


async def cmd_run(args: argparse.Namespace) -> int:
    project = _Project(args)
    project.warn_about_errors()
    entry = project.pipeline(args.name)
    window = project.registry.resolve_window(entry.name, args.window)
    params = dict(args.param)
    live_run = _LiveRun(entry.name, window)
    show_progress = not args.no_progress and sys.stderr.isatty()

    async def run() -> RunResult:
        return await project.registry.run(
            entry.name, window=window, params=params, on_start=live_run
        )

    outcome: RunResult | None = None
    failure: BaseException | None = None
    metrics = None
    if args.metrics_file:
        from .ops.metrics import RunMetrics

        metrics = RunMetrics()
    token = progress_shown_elsewhere.set(show_progress)
    display = Live(
        live_run,
        console=Console(file=sys.stderr),
        refresh_per_second=10,
        transient=True,
        redirect_stdout=sys.stdout.isatty(),
        redirect_stderr=True,
    )
    try:
        if show_progress:
            display.start()
        with _observed(metrics, args.otel):
            try:
                outcome = await _interruptible(run)
            except PipelineError as exc:
                failure = exc
            except Interrupted as exc:
                failure = exc
    finally:
        if show_progress:
            display.stop()
        progress_shown_elsewhere.reset(token)
    if metrics is not None:
        try:
            metrics.write(args.metrics_file)
        except OSError as exc:
            _warn(f"could not write the metrics to {args.metrics_file}: {exc}")

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
            _print_json(record)
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


@contextmanager
def _observed(metrics: RunMetrics | None, otel: bool) -> Iterator[None]:
    """Count the runs into ``metrics`` and, with ``otel``, export their spans, in the block."""
    with ExitStack() as stack:
        if metrics is not None:
            stack.callback(metrics.install())
        if otel:
            from .ops.tracing import exporting_spans

            stack.enter_context(exporting_spans())
        yield


async def cmd_validate(args: argparse.Namespace) -> int:
    project = _Project(args)
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
            lines.append(f"  error {entry.name}: {_one_line(str(exc))}")
            continue
        details = [_describe_runnable(runnable)]
        if entry.timescope is not None:
            details.append(f"timescope {entry.timescope}")
        details.extend(f"schedule {text}" for text in _schedules(project, entry.name))
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


async def cmd_serve(args: argparse.Namespace) -> int:
    project = _Project(args)
    project.warn_about_errors()
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
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for column in ("JOB", "PIPELINE", "SCHEDULE", "TIME ZONE", "NEXT RUN", "ENABLED"):
        table.add_column(column)
    for job in jobs:
        table.add_row(
            job.name,
            job.pipeline,
            job.schedule,
            job.timezone,
            f"{job.next_fire_time():%Y-%m-%d %H:%M:%S %z}",
            "yes" if job.enabled else "no",
        )
    _console(sys.stdout).print(table)
    print(
        f"serving {len(jobs)} cron job(s) from {project.where}, state in {project.state_path}; "
        f"press Ctrl+C to stop",
        flush=True,
    )
    server = _http_server(args)
    with _observed(None, args.otel):
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


def _http_server(args: argparse.Namespace) -> HttpServer | None:
    """The HTTP server ``serve --http`` asks for, or ``None``."""
    if not args.http:
        return None
    from .ops.server import HttpServer, is_loopback

    token = getattr(args, "token", None) or os.environ.get(TOKEN_ENV) or None
    server = HttpServer(args.http, token=token, metrics=not args.no_metrics)
    if not is_loopback(server.host):
        _warn(
            f"listening on {server.host}: the dashboard and the read endpoints need no token, "
            f"so anyone who reaches this address can read the jobs and runs"
        )
    return server


async def cmd_backfill(args: argparse.Namespace) -> int:
    project = _Project(args)
    project.warn_about_errors()
    entry = project.pipeline(args.name)

    async def backfill() -> Any:
        return await project.registry.backfill(
            entry.name,
            args.start,
            args.end,
            max_workers=args.workers,
            params=dict(args.param),
            rerun=args.rerun,
            stop_on_failure=args.stop_on_failure,
            raise_on_failure=False,
        )

    try:
        outcome = await _interruptible(backfill)
    except Interrupted as exc:
        raise CommandError(
            f"backfill interrupted by {exc.signum.name}: runs in flight were cancelled; "
            f"run the same command again to resume",
            128 + exc.signum,
        ) from None
    print(outcome.summary(), flush=True)
    if outcome.failed:
        first = outcome.failed[0]
        raise CommandError(
            f"backfill failed for {len(outcome.failed)} of {len(outcome.windows)} windows; "
            f"first: {first.window}: {first.error}"
        )
    return EXIT_OK


async def cmd_history(args: argparse.Namespace) -> int:
    project = _Project(args)
    project.warn_about_errors()
    runs = await project.registry.state.list_runs(args.name, args.limit)
    if not runs:
        entry = project.pipeline(args.name)  # unknown names are an error
        if not args.json:
            print(f"no runs of {entry.name} recorded in {project.state_path}")
    if args.json:
        _print_json(runs)
        return EXIT_OK
    if not runs:
        return EXIT_OK
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for column in ("STARTED (UTC)", "STATUS", "TRIGGER", "WINDOW", "DURATION", "IN", "OUT"):
        table.add_column(column, justify="right" if column in ("DURATION", "IN", "OUT") else "left")
    table.add_column("ERROR", overflow="fold")
    for run in runs:
        table.add_row(
            _when(run.get("started_at")),
            str(run.get("status")),
            str(run.get("trigger") or "-"),
            _window_text(run.get("window")),
            f"{run.get('duration_seconds', 0):.3f}s",
            f"{run.get('records_in', 0):,}",
            f"{run.get('records_out', 0):,}",
            _one_line(run.get("error") or ""),
        )
    _console(sys.stdout).print(table)
    return EXIT_OK


COMMANDS: dict[str, Callable[[argparse.Namespace], Awaitable[int]]] = {
    "list": cmd_list,
    "run": cmd_run,
    "validate": cmd_validate,
    "serve": cmd_serve,
    "backfill": cmd_backfill,
    "history": cmd_history,
}


# --- entry point --------------------------------------------------------------------------------


def _error(message: str, code: int, exc: BaseException | None, verbose: bool) -> int:
    """Print the one-line error (after the traceback, with ``--verbose``); return ``code``."""
    if verbose and exc is not None:
        traceback.print_exception(exc, file=sys.stderr)
    hint = "" if verbose or exc is None or code == EXIT_USAGE else " (--verbose for details)"
    print(f"ductwork: error: {_one_line(message)}{hint}", file=sys.stderr, flush=True)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``ductwork`` command with ``argv`` (default: ``sys.argv[1:]``).

    Returns:
        The exit code (see the module docstring).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    verbose = bool(getattr(args, "verbose", 0))
    _configure_logging(args)
    try:
        return anyio.run(COMMANDS[args.command], args)
    except CommandError as exc:
        return _error(str(exc), exc.code, exc.__cause__ or exc, verbose)
    except Interrupted as exc:
        print(
            f"ductwork: interrupted by {exc.signum.name}: the run was cancelled "
            f"(recorded in the history)",
            file=sys.stderr,
            flush=True,
        )
        return 128 + exc.signum
    except KeyboardInterrupt:
        print("ductwork: interrupted", file=sys.stderr, flush=True)
        return 128 + signal.SIGINT
    except BrokenPipeError:
        # the reader of our output went away (`ductwork history x | head`): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILED
    except DuctworkError as exc:
        code = EXIT_FAILED if isinstance(exc, PipelineError) else EXIT_USAGE
        return _error(str(exc), code, exc, verbose)
    except Exception as exc:
        return _error(f"{type(exc).__name__}: {exc}", EXIT_FAILED, exc, verbose)

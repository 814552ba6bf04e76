"""The arguments of the ``ductwork`` command: its options, its commands and their values."""

from __future__ import annotations

import argparse

from .._version import __version__
from .defaults import DEFAULT_PATH, DEFAULT_STATE, PATH_ENV, STATE_ENV, TOKEN_ENV


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
    from ..ops.server import parse_listen

    try:
        host, port = parse_listen(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _cluster(text: str) -> str:
    if text.startswith("local:"):
        _positive_int(text.removeprefix("local:"))
    elif "://" not in text:
        raise argparse.ArgumentTypeError(
            f"expected a scheduler address (tcp://HOST:8786) or local:N, got {text!r}"
        )
    return text


def _cluster_option(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "--cluster",
        type=_cluster,
        metavar="ADDRESS",
        help="run on a Dask cluster: a scheduler address (tcp://HOST:8786), or local:N for a "
        "local cluster of N worker processes started for the command (needs ductwork[dask])",
    )


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
    _cluster_option(cmd)
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
    _cluster_option(cmd)
    cmd.add_argument(
        "--stop-on-failure", action="store_true", help="start no window after one failed"
    )
    cmd.add_argument("--param", action="append", type=_param, default=[], metavar="KEY=VALUE")
    cmd.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="a status line on stderr: windows done, running and failed (default: on a "
        "terminal, rewritten in place; --progress elsewhere: a line per finished window)",
    )

    cmd = command("history", "recent runs of a pipeline, newest first")
    cmd.add_argument("name", help="the pipeline's name")
    cmd.add_argument("--limit", type=_positive_int, default=20, help="how many (default: 20)")
    cmd.add_argument("--json", action="store_true", help="print the run records as JSON")
    return parser

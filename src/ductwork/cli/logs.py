"""The command's log output: the level -v and -q ask for, on whatever stderr is at the time."""

from __future__ import annotations

import argparse
import logging
import sys


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


def configure_logging(args: argparse.Namespace) -> None:
    """Send the ``ductwork`` logs to stderr at the level the command and ``-v``/``-q`` ask for."""
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

"""The command's exit codes, and how a failure is printed: one line, a traceback with -v."""

from __future__ import annotations

import sys
import traceback

from .output import one_line

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class CommandError(Exception):
    """A failure the command reports as one line and an exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


def print_error(message: str, code: int, exc: BaseException | None, verbose: bool) -> int:
    """Print the one-line error (after the traceback, with ``--verbose``); return ``code``."""
    if verbose and exc is not None:
        traceback.print_exception(exc, file=sys.stderr)
    hint = "" if verbose or exc is None or code == EXIT_USAGE else " (--verbose for details)"
    print(f"ductwork: error: {one_line(message)}{hint}", file=sys.stderr, flush=True)
    return code

"""The entry point: parse the arguments, run the command, turn its outcome into an exit code.

A command's module is imported only when that command runs, so ``--help`` and ``--version``
answer without loading them.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence

import anyio

from .._exceptions import DuctworkError, PipelineError
from .errors import EXIT_FAILED, EXIT_USAGE, CommandError, print_error
from .logs import configure_logging
from .parser import build_parser
from .signals import Interrupted

Command = Callable[[argparse.Namespace], Awaitable[int]]
"""What runs a command: its parsed arguments in, its exit code out."""


def command(name: str) -> Command:
    """The function that runs the command ``name`` (``cmd_<name>``), its module imported now."""
    if name in ("list", "history"):
        module = importlib.import_module("ductwork.cli.catalog")
    elif name in ("run", "validate"):
        module = importlib.import_module("ductwork.cli.run")
    elif name == "serve":
        module = importlib.import_module("ductwork.cli.serve")
    elif name == "backfill":
        module = importlib.import_module("ductwork.cli.backfill")
    else:
        raise ValueError(f"no command named {name!r}")
    function: Command = getattr(module, f"cmd_{name}")
    return function


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``ductwork`` command with ``argv`` (default: ``sys.argv[1:]``).

    Returns:
        The exit code (see :mod:`ductwork.cli`).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    verbose = bool(getattr(args, "verbose", 0))
    configure_logging(args)
    try:
        return anyio.run(command(args.command), args)
    except CommandError as exc:
        return print_error(str(exc), exc.code, exc.__cause__ or exc, verbose)
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
        return print_error(str(exc), code, exc, verbose)
    except Exception as exc:
        return print_error(f"{type(exc).__name__}: {exc}", EXIT_FAILED, exc, verbose)

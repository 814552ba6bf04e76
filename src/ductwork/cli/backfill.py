"""``ductwork backfill``: run a timescoped pipeline for every window of a range."""

from __future__ import annotations

import argparse
import sys

import anyio

from ..backfill_engine import BackfillResult
from .errors import EXIT_OK, CommandError
from .progress import ProgressLine, showing_line
from .project import load_project
from .runtime import open_executor
from .signals import Interrupted, interruptible


def progress_line(args: argparse.Namespace, name: str) -> ProgressLine | None:
    """The status line ``--progress``/``--no-progress`` ask for (default: on a terminal, unless
    ``-q``): rewritten in place on a terminal, else a plain line per finished window."""
    tty = sys.stderr.isatty()
    show = args.progress
    if show is None:
        show = tty and not getattr(args, "quiet", False)
    return ProgressLine(name, sys.stderr, live=tty) if show else None


async def cmd_backfill(args: argparse.Namespace) -> int:
    """Run the windows of ``--start`` to ``--end`` not yet done; print the summary."""
    project = load_project(args)
    entry = project.pipeline(args.name)
    line = progress_line(args, entry.name)

    async def backfill() -> BackfillResult:
        async with open_executor(args.cluster, project) as executor:
            async with anyio.create_task_group() as tg:
                if line is not None and line.live:
                    tg.start_soon(line.refreshing)
                outcome = await project.registry.backfill(
                    entry.name,
                    args.start,
                    args.end,
                    max_workers=args.workers,
                    params=dict(args.param),
                    rerun=args.rerun,
                    stop_on_failure=args.stop_on_failure,
                    raise_on_failure=False,
                    executor=executor,
                    on_progress=line,
                )
                tg.cancel_scope.cancel()
            return outcome

    try:
        with showing_line(line):
            outcome = await interruptible(backfill)
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

"""``ductwork backfill``: run a timescoped pipeline for every window of a range."""

from __future__ import annotations

import argparse

from ..backfill_engine import BackfillResult
from .errors import EXIT_OK, CommandError
from .project import load_project
from .runtime import open_executor
from .signals import Interrupted, interruptible


async def cmd_backfill(args: argparse.Namespace) -> int:
    """Run the windows of ``--start`` to ``--end`` not yet done; print the summary."""
    project = load_project(args)
    entry = project.pipeline(args.name)

    async def backfill() -> BackfillResult:
        async with open_executor(args.cluster, project) as executor:
            return await project.registry.backfill(
                entry.name,
                args.start,
                args.end,
                max_workers=args.workers,
                params=dict(args.param),
                rerun=args.rerun,
                stop_on_failure=args.stop_on_failure,
                raise_on_failure=False,
                executor=executor,
            )

    try:
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

"""The live progress display of ``ductwork run``: the counters of each stage while the run goes."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from time import perf_counter

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table

from ..connectors.console import progress_shown_elsewhere
from ..core.context import TimeWindow
from ..core.result import RunResult


class LiveRun:
    """What the progress display shows: the live counters of the run's RunResult.

    Called with the run's result when the run starts (the registry's ``on_start``).
    """

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


@contextmanager
def showing_progress(live_run: LiveRun, show: bool) -> Iterator[None]:
    """Show ``live_run`` on stderr in the block if ``show``; the console loader then keeps quiet."""
    token = progress_shown_elsewhere.set(show)
    display = Live(
        live_run,
        console=Console(file=sys.stderr),
        refresh_per_second=10,
        transient=True,
        redirect_stdout=sys.stdout.isatty(),
        redirect_stderr=True,
    )
    try:
        if show:
            display.start()
        yield
    finally:
        if show:
            display.stop()
        progress_shown_elsewhere.reset(token)

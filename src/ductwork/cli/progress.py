"""The live progress displays: the counters of each stage while ``ductwork run`` goes, and the
status line of ``ductwork backfill`` (its windows done, running and failed)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from time import monotonic, perf_counter
from typing import Any, TextIO

import anyio
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table

from ..backfill_engine import BackfillResult
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


CLEAR_LINE = "\r\x1b[K"
"""Back to the start of the line and clear it (a terminal's carriage return and erase-line)."""


class ProgressLine:
    """The status line of a backfill: ``backfill NAME: 5/12 done, 2 running, 1 failed``.

    Called with the backfill's result as it stands (the engine's ``on_progress``). With ``live``
    (a terminal) the line is rewritten in place, at most once per ``interval`` seconds of
    ``clock``; :meth:`refresh` draws a change held back by that limit. Without ``live`` a plain
    line is printed each time a window finishes (the done or failed count changes), so logs stay
    readable. :meth:`finish` always shows the last state and ends the line.

    ``done`` counts the windows that succeeded out of those to run; windows skipped (already
    succeeded, or not complete yet) are counted apart.
    """

    def __init__(
        self,
        name: str,
        stream: TextIO,
        *,
        live: bool,
        interval: float = 0.1,
        clock: Callable[[], float] = monotonic,
    ) -> None:
        self.name = name
        self.stream = stream
        self.live = live
        self.interval = interval
        self.clock = clock
        self.text: str | None = None  # the state as last reported
        self.shown: str | None = None  # the line as last written
        self.finished_count: tuple[int, int] | None = None  # (done, failed) of the last plain line
        self.drawn_at: float | None = None
        self.ended = False

    def __call__(self, result: BackfillResult) -> None:
        succeeded, failed = len(result.succeeded), len(result.failed)
        skipped = len(result.skipped)
        text = (
            f"backfill {result.pipeline}: {succeeded}/{len(result.windows) - skipped} done, "
            f"{len(result.running)} running, {failed} failed"
        )
        if skipped:
            text += f", {skipped} skipped"
        self.text = text
        if self.live:
            self.refresh()
        elif self.finished_count is not None and self.finished_count != (succeeded, failed):
            self._print_line(succeeded, failed)
        else:
            # the first report (the windows planned) or a window started: no line yet
            self.finished_count = self.finished_count or (succeeded, failed)

    def _print_line(self, succeeded: int, failed: int) -> None:
        self.finished_count = (succeeded, failed)
        self.shown = self.text
        self.stream.write(f"{self.text}\n")
        self.stream.flush()

    def refresh(self) -> None:
        """On a terminal: draw the last state if it changed and the interval has passed."""
        if not self.live or self.ended or self.text is None or self.text == self.shown:
            return
        now = self.clock()
        if self.drawn_at is not None and now - self.drawn_at < self.interval:
            return
        self._draw(now)

    def _draw(self, now: float) -> None:
        self.drawn_at = now
        self.shown = self.text
        self.stream.write(f"{CLEAR_LINE}{self.text}")
        self.stream.flush()

    async def refreshing(self) -> None:
        """Call :meth:`refresh` every interval, until cancelled (a change the limit held back
        is drawn even if no window starts or ends for a while)."""
        while True:
            await anyio.sleep(self.interval)
            self.refresh()

    def write_above(self, text: str) -> int:
        """Write ``text`` (a log line) above the status line, which is drawn again under it."""
        if not self.live or self.ended or self.shown is None:
            return self.stream.write(text)
        self.stream.write(CLEAR_LINE)
        written = self.stream.write(text)
        if text.endswith("\n"):
            self.shown = self.text
            self.stream.write(self.shown or "")
        else:  # a line in pieces: the status line comes back once the line has ended
            self.shown = None
        self.stream.flush()
        return written

    def finish(self) -> None:
        """Show the final state (whatever the interval) and end the line."""
        if self.ended or self.text is None:
            self.ended = True
            return
        if self.live:
            if self.text != self.shown:
                self._draw(self.clock())
            self.stream.write("\n")
            self.stream.flush()
        elif self.text != self.shown:
            self.shown = self.text
            self.stream.write(f"{self.text}\n")
            self.stream.flush()
        self.ended = True


class _StderrAbove:
    """``sys.stderr`` while a live status line is shown: what is written goes above the line."""

    def __init__(self, line: ProgressLine) -> None:
        self.line = line

    def write(self, text: str) -> int:
        return self.line.write_above(text)

    def flush(self) -> None:
        self.line.stream.flush()

    def __getattr__(self, name: str) -> object:
        return getattr(self.line.stream, name)


@contextmanager
def showing_line(line: ProgressLine | None) -> Iterator[None]:
    """Show ``line`` in the block (``None``: nothing), with what goes to ``sys.stderr`` meanwhile
    (log lines) written above it when it is live; the line is ended on the way out."""
    if line is None:
        yield
        return
    saved = sys.stderr
    above = _StderrAbove(line)
    try:
        if line.live:
            sys.stderr = above
            # Handlers made earlier hold stderr itself: they write above the line too.
            for handler in _stream_handlers():
                if handler.stream is saved:
                    handler.setStream(above)
        yield
    finally:
        sys.stderr = saved
        # Those, and handlers made meanwhile (distributed sets up its own when first imported),
        # get stderr back.
        for handler in _stream_handlers():
            if handler.stream is above:
                handler.setStream(saved)
        line.finish()


def _stream_handlers() -> list[logging.StreamHandler[Any]]:
    """Every stream handler of every logger made so far, the root's included."""
    loggers: list[Any] = [logging.getLogger()]
    loggers.extend(logging.Logger.manager.loggerDict.values())
    found: list[logging.StreamHandler[Any]] = []
    for logger in loggers:
        for handler in getattr(logger, "handlers", ()):
            if isinstance(handler, logging.StreamHandler) and handler not in found:
                found.append(handler)
    return found

"""Console loader: print records as a table, JSON, JSON Lines or CSV, with a live progress line.

``jsonl``, ``json`` and ``csv`` stream every record as it arrives. ``table`` renders one table at
the end of the run of at most ``max_rows`` records (memory stays bounded) followed by a line
counting the rest. The progress line (records, records/s, elapsed) goes to stderr and is shown only
when stderr is a terminal, so piping the output stays clean, and not while the ``ductwork``
command shows its own progress display for the run (see :data:`progress_shown_elsewhere`).
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from time import perf_counter
from typing import Any, Literal, TextIO

import orjson
from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console
from rich.progress import Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..core.config import validate_config
from ..core.context import RunContext
from ..core.stages import Loader
from ..core.types import Batch

__all__ = [
    "ConsoleLoader",
    "ConsoleLoaderConfig",
    "create_console_loader",
    "progress_shown_elsewhere",
]

#: True while something else (the ``ductwork run`` command) draws a live progress display on the
#: terminal for the current run: console loaders then leave the terminal to it instead of drawing
#: a second one.
progress_shown_elsewhere: ContextVar[bool] = ContextVar(
    "ductwork_progress_shown_elsewhere", default=False
)

ConsoleFormat = Literal["table", "json", "jsonl", "csv"]


class ConsoleLoaderConfig(BaseModel):
    """Options of the console loader.

    Attributes:
        format: ``table``, ``json`` (one array), ``jsonl`` (one object per line) or ``csv``.
        show_progress: show a live progress line on stderr when it is a terminal.
        max_rows: for ``table``: how many records to show (the rest are counted).
        columns: the columns to print, in order (default: the keys of the first record).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: ConsoleFormat = "table"
    show_progress: bool = True
    max_rows: int = Field(default=50, ge=1)
    columns: tuple[str, ...] | None = None


def _default(value: Any) -> Any:
    """orjson fallback for types it does not serialise natively (Decimal, sets, ...)."""
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    return str(value)


class ConsoleLoader(Loader):
    """Writes records to a text stream (stdout by default). See the module docstring."""

    def __init__(
        self,
        config: ConsoleLoaderConfig,
        *,
        stream: TextIO | None = None,
        progress_stream: TextIO | None = None,
        name: str = "console",
    ) -> None:
        self.config = config
        self.stream = stream
        self.progress_stream = progress_stream
        self.name = name

    @asynccontextmanager
    async def open(self, ctx: RunContext) -> AsyncIterator[_ConsoleSink]:
        """Open the console for one run; the table (if any) is printed when the run ends."""
        out = self.stream if self.stream is not None else sys.stdout
        err = self.progress_stream if self.progress_stream is not None else sys.stderr
        sink = _ConsoleSink(self.config, out)
        progress: Progress | None = None
        if self.config.show_progress and err.isatty() and not progress_shown_elsewhere.get():
            progress = Progress(
                TextColumn("[bold]{task.description}"),
                TextColumn("{task.completed:,} records"),
                TextColumn("{task.fields[rate]:,.0f} rec/s"),
                TimeElapsedColumn(),
                console=Console(file=err),
                transient=True,
            )
            sink.progress = progress
            sink.task = progress.add_task(ctx.pipeline, total=None, rate=0.0)
            progress.start()
        try:
            yield sink
        finally:
            if progress is not None:
                progress.stop()
            sink.finish()


class _ConsoleSink:
    def __init__(self, config: ConsoleLoaderConfig, out: TextIO) -> None:
        self.config = config
        self.out = out
        self.columns: list[str] | None = list(config.columns) if config.columns else None
        self.count = 0
        self.started = perf_counter()
        self.rows: list[list[str]] = []
        self.csv_writer: Any = None
        self.csv_buffer = io.StringIO()
        self.progress: Progress | None = None
        self.task: TaskID | None = None

    async def write(self, batch: Batch) -> None:
        fmt = self.config.format
        if self.columns is None and batch:
            self.columns = list(batch[0])
        if fmt == "jsonl":
            self.out.write(
                b"".join(orjson.dumps(r, default=_default) + b"\n" for r in batch).decode()
            )
        elif fmt == "json":
            body = ",\n".join("  " + orjson.dumps(r, default=_default).decode() for r in batch)
            self.out.write(("[\n" if self.count == 0 else ",\n") + body)
        elif fmt == "csv":
            self._write_csv(batch)
        else:
            room = self.config.max_rows - len(self.rows)
            columns = self.columns or []
            for record in batch[:room]:
                self.rows.append([_cell(record.get(c)) for c in columns])
        self.count += len(batch)
        if self.progress is not None and self.task is not None:
            elapsed = perf_counter() - self.started
            rate = self.count / elapsed if elapsed > 0 else 0.0
            self.progress.update(self.task, completed=self.count, rate=rate)

    def _write_csv(self, batch: Batch) -> None:
        if self.csv_writer is None:
            self.csv_writer = csv.DictWriter(
                self.csv_buffer,
                fieldnames=self.columns or [],
                extrasaction="ignore",
                lineterminator="\n",
            )
            self.csv_writer.writeheader()
        self.csv_writer.writerows(batch)
        self.out.write(self.csv_buffer.getvalue())
        self.csv_buffer.seek(0)
        self.csv_buffer.truncate()

    def finish(self) -> None:
        fmt = self.config.format
        if fmt == "json":
            self.out.write("[]\n" if self.count == 0 else "\n]\n")
        elif fmt == "table":
            table = Table(*(self.columns or []), show_lines=False)
            for row in self.rows:
                table.add_row(*row)
            console = Console(file=self.out, width=200 if not self.out.isatty() else None)
            console.print(table)
            hidden = self.count - len(self.rows)
            if hidden > 0:
                console.print(f"… {hidden:,} more records ({self.count:,} in all)")
        self.out.flush()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return str(value)


def create_console_loader(
    format: ConsoleFormat = "table",
    show_progress: bool = True,
    *,
    max_rows: int = 50,
    columns: list[str] | None = None,
    stream: TextIO | None = None,
    progress_stream: TextIO | None = None,
    name: str = "console",
) -> ConsoleLoader:
    """Create a loader that prints records to the console.

    Args:
        format: ``table`` (default), ``json``, ``jsonl`` or ``csv``.
        show_progress: show a live progress line (records, records/s, elapsed) on stderr when it
            is a terminal.
        max_rows: for ``table``: how many records to show; the rest are counted.
        columns: the columns to print, in order (default: the keys of the first record).
        stream: where to write (default: ``sys.stdout`` at the time of the run).
        progress_stream: where the progress line goes (default: ``sys.stderr``).
        name: the stage name.

    Example:
        >>> import anyio, io
        >>> from ductwork import create_el_pipeline
        >>> async def extract():
        ...     yield [{"id": 1, "name": "ada"}, {"id": 2, "name": "grace"}]
        >>> out = io.StringIO()
        >>> pipeline = create_el_pipeline(extract, create_console_loader("jsonl", stream=out),
        ...                               logging=False)
        >>> _ = anyio.run(pipeline.run)
        >>> print(out.getvalue(), end="")
        {"id":1,"name":"ada"}
        {"id":2,"name":"grace"}
    """
    config: ConsoleLoaderConfig = validate_config(
        ConsoleLoaderConfig,
        "console loader",
        format=format,
        show_progress=show_progress,
        max_rows=max_rows,
        columns=tuple(columns) if columns is not None else None,
    )
    return ConsoleLoader(config, stream=stream, progress_stream=progress_stream, name=name)

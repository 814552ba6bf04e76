"""What the commands print: tables on a console, JSON, warnings, times and windows as text."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

import orjson

if TYPE_CHECKING:  # rich is imported by the commands that print tables, not by --help
    from rich.console import Console
    from rich.table import Table


def console(stream: TextIO) -> Console:
    """A console writing to ``stream``: as wide as the terminal, or 200 columns into a pipe."""
    from rich.console import Console

    terminal = stream.isatty()
    return Console(file=stream, width=None if terminal else 200, highlight=False)


def table(*columns: str) -> Table:
    """An empty table of the listing commands' style, with ``columns`` as its header."""
    from rich import box
    from rich.table import Table

    listing = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for column in columns:
        listing.add_column(column)
    return listing


def print_json(value: Any) -> None:
    """Print ``value`` as indented JSON on stdout (what JSON cannot hold, as text)."""
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2, default=str).decode())
    sys.stdout.write("\n")


def warn(message: str) -> None:
    """Print ``message`` as the command's warning on stderr."""
    print(f"ductwork: warning: {message}", file=sys.stderr)


def one_line(text: str) -> str:
    """``text`` on one line: its non-blank lines, stripped, joined by spaces."""
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def when(text: str | None) -> str:
    """An ISO time as ``2026-11-10 13:00:00`` in UTC, or ``-`` for none."""
    if not text:
        return "-"
    moment = datetime.fromisoformat(text).astimezone(UTC)
    return f"{moment:%Y-%m-%d %H:%M:%S}"


def window_text(window: Any) -> str:
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

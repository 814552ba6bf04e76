"""CSV: rows of delimited fields with a header row or given field names."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ...core.types import Record
from .base import csv_format, snippet
from .lines import LineParser

EXTRA_FIELD = object()
"""The key of a row's fields past the names, so a row too long makes a dict too long."""


@dataclass(eq=False, repr=False, kw_only=True)
class CsvParser(LineParser):
    """CSV with a header row or explicit field names; every row must have as many fields.

    Quoted fields may hold delimiters, quotes (doubled) and line breaks. Parsing is strict: text
    after a closing quote, or a quote left open at the end of the file, is an error. Values are
    strings; blank lines are ignored.

    Args:
        delimiter: the field separator (keyword-only, as are the rest).
        quotechar: the quote character, or ``None``: fields are never quoted.
        header: the first row names the fields.
        field_names: the field names, replacing the header's (or naming the fields of a file
            without one).
    """

    delimiter: str
    quotechar: str | None
    header: bool
    field_names: Sequence[str] | None

    def __post_init__(self) -> None:
        super().__post_init__()
        if csv.field_size_limit() < self.max_record_size:
            # the csv module's own limit (128 KiB) would refuse fields max_record_size allows
            csv.field_size_limit(self.max_record_size)
        quotechar = self.quotechar
        self._format = csv_format(self.delimiter, quotechar, strict=True)
        self._quote = quotechar.encode(self.codec.unit) if quotechar else b""
        names = self.field_names
        self._given_names = tuple(names) if names is not None else None
        self._header_pending = self.header
        self._names: tuple[str, ...] | None = None if self.header else self._given_names
        self.records = 0  # records (rows after the header) read, the bad ones included
        self._odd = 0  # parity of the quotes in the pending input
        self._open = False  # the reader found the pending input ends inside a quoted field

    def _boundary(self, data: bytes) -> int:
        """The last line end of ``data`` outside quotes, by the parity of the quotes since the
        pending input started.

        When no line end passes that test, the parity may be thrown off by a stray quote
        inside an unquoted field (which is data): then the strict reader parses up to the last
        line end and finds where the last record starts. Once it has said the pending input
        ends inside a quoted field, the parity is exact and blocks are only scanned.
        """
        quote = self._quote
        last = data.rfind(b"\n")
        if not quote:
            return last
        total = data.count(quote)
        odd = self._odd
        if last >= 0:
            end, after = len(data), 0
            while True:
                cut = data.rfind(b"\n", 0, end)
                if cut < 0:
                    break
                after += data.count(quote, cut, end)
                if (odd + total - after) % 2 == 0:
                    return cut
                end = cut
            if not self._open:
                return last
        self._odd = (odd + total) % 2
        return -1

    def _restart(self, rest: bytes) -> None:
        self._odd = rest.count(self._quote) % 2 if self._quote else 0
        self._open = False

    def _carry(self, leftover: bytes) -> None:
        super()._carry(leftover)
        # inside a quoted field at the end of the leftover, then the rest's quotes
        self._odd = (1 + self._odd) % 2
        self._open = True

    def _header(self, row: list[str], line: int) -> tuple[str, ...]:
        if self._given_names is not None:
            return self._given_names
        seen: set[str] = set()
        for name in row:
            if name in seen:
                raise self.error(
                    f"duplicate column name {name!r} in the header",
                    line,
                    None,
                    snippet(self.delimiter.join(row)),
                )
            seen.add(name)
        return tuple(row)

    def _parse(
        self, unit: bytes, first_line: int, offset: int, final: bool
    ) -> tuple[list[Record], bytes]:
        text, unit = self._decode(unit, first_line, offset)
        reader = csv.reader(io.StringIO(text, newline=""), **self._format)
        names = self._names
        try:
            if self._header_pending:
                first = next(reader, None)
                if not first:
                    return self._parse_slowly(text, unit, first_line, offset, final)
                names = self._header(first, first_line)
            assert names is not None
            # Rows stream straight into dicts. The sentinel key makes a row with too many fields
            # give a dict one entry larger, so one pass over the lengths checks every row.
            keys: tuple[Any, ...] = (*names, EXTRA_FIELD)
            records = [dict(zip(keys, row, strict=False)) for row in reader]
        except csv.Error:
            return self._parse_slowly(text, unit, first_line, offset, final)
        if records and set(map(len, records)) != {len(names)}:
            return self._parse_slowly(text, unit, first_line, offset, final)
        self._names = names
        self._header_pending = False
        self.records += len(records)
        return records, b""

    def _parse_slowly(
        self, text: str, unit: bytes, first_line: int, offset: int, final: bool
    ) -> tuple[list[Record], bytes]:
        reader = csv.reader(io.StringIO(text, newline=""), **self._format)
        records: list[Record] = []
        while True:
            start = reader.line_num
            line = first_line + start
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                if str(exc) == "unexpected end of data":
                    if not final:
                        # The last record goes on in the next block.
                        return records, b"".join(unit.splitlines(keepends=True)[start:])
                    raise self.error(
                        "unterminated quoted field at the end of the file",
                        line,
                        None,
                        snippet("".join(io.StringIO(text, newline="").readlines()[start:])),
                    ) from None
                self.bad(f"malformed CSV: {exc}", line, None, snippet(_line_at(text, start)))
                continue
            if not row:
                continue
            if self._header_pending:
                self._names = self._header(row, line)
                self._header_pending = False
                continue
            names = self._names
            assert names is not None
            self.records += 1
            if len(row) != len(names):
                self.bad(
                    f"expected {len(names)} fields, got {len(row)}",
                    line,
                    None,
                    snippet(self.delimiter.join(row)),
                )
                continue
            records.append(dict(zip(names, row, strict=False)))
        return records, b""


def _line_at(text: str, index: int) -> str:
    lines = io.StringIO(text, newline="").readlines()
    return lines[index] if index < len(lines) else ""

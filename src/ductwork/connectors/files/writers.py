"""Batch writers of the file connector: CSV, JSON Lines and JSON arrays.

Each batch is encoded at once (``orjson.dumps`` mapped over the batch and joined, or one
``csv.writer.writerows`` call), so the per-record cost is the encoder's own.
"""

from __future__ import annotations

import codecs
import csv
import io
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.csv as pacsv

from ..._exceptions import LoadError
from ...core.types import Batch, Record
from ..parsers import snippet

__all__ = ["CsvWriter", "JsonArrayWriter", "JsonlWriter", "RecordWriter"]


class RecordWriter(ABC):
    """Encodes batches for one output file (one run). ``encode`` returns the bytes to append."""

    def __init__(self, encoding: str, continuing: bool) -> None:
        name = codecs.lookup(encoding).name
        self._encoding = encoding
        self._plain_utf8 = name == "utf-8"
        self._encoder = codecs.getincrementalencoder(name)("strict")
        if continuing:
            self._encoder.setstate(0)  # appending to existing text: no second byte-order mark
        self.batches = 0

    def _text(self, text: str) -> bytes:
        try:
            if self._plain_utf8:
                return text.encode("utf-8")
            return self._encoder.encode(text)
        except UnicodeEncodeError as exc:
            raise self._fail(
                f"cannot encode {snippet(exc.object[exc.start : exc.end])!r} as "
                f"{self._encoding}: {exc.reason}",
                exc,
            ) from exc

    def _utf8(self, data: bytes) -> bytes:
        if self._plain_utf8:
            return data
        return self._text(data.decode("utf-8"))

    @abstractmethod
    def encode(self, batch: Batch) -> bytes:
        """Encode one batch."""

    @abstractmethod
    def finish(self) -> bytes:
        """Bytes that close the output."""

    def _fail(self, message: str, exc: BaseException | None = None) -> LoadError:
        err = LoadError(f"batch {self.batches}: {message}", retryable=False)
        err.__cause__ = exc
        return err


def _dumps_each(
    batch: Batch,
    default: Callable[[Any], Any] | None,
    fail: Callable[[str, BaseException], LoadError],
) -> list[bytes]:
    dumps = orjson.dumps
    try:
        if default is None:
            return list(map(dumps, batch))
        return [dumps(record, default=default) for record in batch]
    except orjson.JSONEncodeError:
        for index, record in enumerate(batch):
            try:
                dumps(record, default=default)
            except orjson.JSONEncodeError as exc:
                raise fail(f"record {index + 1} cannot be encoded as JSON: {exc}", exc) from exc
        raise


class JsonlWriter(RecordWriter):
    """One JSON object per line (orjson, one ``join`` per batch)."""

    def __init__(self, encoding: str, continuing: bool, default: Callable[[Any], Any] | None):
        super().__init__(encoding, continuing)
        self._default = default

    def encode(self, batch: Batch) -> bytes:
        self.batches += 1
        parts = _dumps_each(batch, self._default, self._fail)
        parts.append(b"")
        return self._utf8(b"\n".join(parts))

    def finish(self) -> bytes:
        return b""


class JsonArrayWriter(RecordWriter):
    """A JSON array, one object per line. Appending continues an existing array."""

    def __init__(
        self,
        encoding: str,
        continuing: bool,
        default: Callable[[Any], Any] | None,
        has_items: bool = False,
    ) -> None:
        super().__init__(encoding, continuing)
        self._default = default
        self._opened = continuing
        self._has_items = has_items

    def encode(self, batch: Batch) -> bytes:
        self.batches += 1
        if not batch:
            return b""
        body = b",\n".join(_dumps_each(batch, self._default, self._fail))
        if not self._opened:
            prefix = b"[\n"
            self._opened = True
        else:
            prefix = b",\n" if self._has_items else b"\n"
        self._has_items = True
        return self._utf8(prefix + body)

    def finish(self) -> bytes:
        if not self._opened:
            return self._utf8(b"[]\n")
        return self._utf8(b"\n]\n" if self._has_items else b"]\n")


class CsvWriter(RecordWriter):
    """CSV with a header row. Columns come from ``field_names``, the header of the file being
    appended to, or the first record's keys; a missing value is written empty, and a key that is
    not a column raises (or is dropped with ``extra_fields="ignore"``)."""

    def __init__(
        self,
        encoding: str,
        continuing: bool,
        *,
        columns: Sequence[str] | None,
        write_header: bool,
        delimiter: str,
        quotechar: str | None,
        line_terminator: str,
        extra_fields: str,
    ) -> None:
        super().__init__(encoding, continuing)
        self._columns: tuple[str, ...] | None = tuple(columns) if columns is not None else None
        self._write_header = write_header
        self._format: dict[str, Any] = {
            "delimiter": delimiter,
            "lineterminator": line_terminator,
            "quoting": csv.QUOTE_MINIMAL if quotechar else csv.QUOTE_NONE,
        }
        if quotechar:
            self._format["quotechar"] = quotechar
        else:
            self._format["escapechar"] = "\\"
        self._ignore_extra = extra_fields == "ignore"
        self._getter: Callable[[Record], Any] | None = None

    def _start(self, columns: tuple[str, ...]) -> str:
        """Fix the columns; return the header line (or ``""``)."""
        self._columns = columns
        if len(columns) == 1:
            name = columns[0]
            self._getter = lambda record: (record[name],)
        else:
            self._getter = itemgetter(*columns)
        if not self._write_header:
            return ""
        self._write_header = False
        out = io.StringIO()
        csv.writer(out, **self._format).writerow(columns)
        return out.getvalue()

    def encode(self, batch: Batch) -> bytes:
        if isinstance(batch, pa.Table):
            return self._encode_table(batch)
        self.batches += 1
        head = ""
        if self._getter is None:
            if not batch:
                return b""
            head = self._start(self._columns or tuple(batch[0]))
        assert self._columns is not None
        assert self._getter is not None
        out = io.StringIO()
        try:
            done = False
            if set(map(len, batch)) == {len(self._columns)}:
                try:
                    csv.writer(out, **self._format).writerows(map(self._getter, batch))
                    done = True
                except KeyError:
                    out = io.StringIO()
            if not done:
                csv.writer(out, **self._format).writerows(self._rows_slowly(batch))
        except csv.Error as exc:
            raise self._fail(f"cannot write CSV: {exc}", exc) from exc
        return self._text(head + out.getvalue())

    def _encode_table(self, table: pa.Table) -> bytes:
        """An Arrow batch, written by ``pyarrow.csv`` in C++ (nulls as empty fields)."""
        if self._format.get("quotechar", '"') != '"' or "escapechar" in self._format:
            return self.encode(table.to_pylist())  # a dialect pyarrow does not write
        self.batches += 1
        if self._columns is None:
            self._columns = tuple(table.column_names)
        missing = [name for name in self._columns if name not in table.column_names]
        if missing:
            raise self._fail(f"the batch has no column(s) {', '.join(map(repr, missing))}")
        extra = [name for name in table.column_names if name not in self._columns]
        if extra and not self._ignore_extra:
            raise self._fail(
                f"the batch has columns that are not CSV columns: {', '.join(map(repr, extra))} "
                f"(columns: {', '.join(self._columns)}; set field_names, or "
                "extra_fields='ignore' to drop them)"
            )
        header = self._write_header
        self._write_header = False
        if self._getter is None:
            self._getter = itemgetter(*self._columns)  # later record batches use the same columns
        out = io.BytesIO()
        try:
            pacsv.write_csv(
                table.select(list(self._columns)),
                out,
                write_options=pacsv.WriteOptions(
                    include_header=header,
                    delimiter=self._format["delimiter"],
                    eol=self._format["lineterminator"],
                    quoting_header="needed",
                ),
            )
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise self._fail(f"cannot write CSV: {exc}", exc) from exc
        return self._utf8(out.getvalue())

    def _rows_slowly(self, batch: Batch) -> list[list[Any]]:
        columns = self._columns
        assert columns is not None
        known = set(columns)
        rows = []
        for index, record in enumerate(batch):
            if not self._ignore_extra:
                extra = [key for key in record if key not in known]
                if extra:
                    raise self._fail(
                        f"record {index + 1} has fields that are not CSV columns: "
                        f"{', '.join(map(repr, extra))} (columns: {', '.join(columns)}; set "
                        f"field_names, or extra_fields='ignore' to drop them)"
                    )
            rows.append([record.get(column, "") for column in columns])
        return rows

    def finish(self) -> bytes:
        if self._write_header and self._columns is not None:
            return self._text(self._start(self._columns))
        return b""

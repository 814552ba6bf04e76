"""Text bodies parsed by pyarrow a piece at a time: CSV and JSON Lines into Arrow tables.

Shared by the connectors that read text as Arrow batches (ClickHouse results from servers
without Arrow formats, HTTP bodies). A streamed body is cut into pieces of about a few MiB that
end at a row boundary (:class:`CsvSplitter`, :class:`LineSplitter`); pyarrow parses each piece in
C++ (in a worker thread, releasing the GIL), with the column types of the first piece so that
every table of a stream has the same schema.
"""

from __future__ import annotations

import io
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson

__all__ = ["CsvSplitter", "LineSplitter", "PieceParser"]


class CsvSplitter:
    """Cuts a streamed ``CSVWithNames`` body into pieces that end at a row boundary.

    A row ends at a line break outside quotes; ClickHouse doubles a quote inside a quoted field,
    so a line break is outside quotes exactly when the number of quote characters before it is
    even. Counting is done by ``bytes.count``, in C.
    """

    def __init__(self, piece_bytes: int) -> None:
        self.piece_bytes = piece_bytes
        self.header: bytes | None = None
        self._buffer = bytearray()
        self._quotes = 0  # quote characters in the buffer (its start is outside quotes)

    def feed(self, chunk: bytes) -> list[bytes]:
        """Add a chunk of the body; return the complete pieces now available."""
        self._buffer += chunk
        self._quotes += chunk.count(b'"')
        if self.header is None:
            end = self._row_end(0, len(self._buffer))
            if end is None:
                return []
            self.header = bytes(self._buffer[:end])
            del self._buffer[:end]
            self._quotes = self._buffer.count(b'"')
        if len(self._buffer) < self.piece_bytes:
            return []
        end = self._last_row_end()
        if end is None:
            return []
        piece = bytes(self._buffer[:end])
        del self._buffer[:end]
        self._quotes = self._buffer.count(b'"')
        return [piece]

    @property
    def rest(self) -> bytes:
        """What is buffered and not yet handed out."""
        return bytes(self._buffer)

    def finish(self) -> bytes:
        """The rest of the body (the last rows); raises ValueError if a row is cut off."""
        rest = bytes(self._buffer)
        if rest and (not rest.endswith(b"\n") or rest.count(b'"') % 2):
            raise ValueError(f"the result ended with an incomplete row {rest[:80]!r}")
        return rest

    def _row_end(self, start: int, stop: int) -> int | None:
        index = start
        buffer = self._buffer
        while True:
            newline = buffer.find(b"\n", index, stop)
            if newline < 0:
                return None
            if buffer.count(b'"', start, newline) % 2 == 0:
                return newline + 1
            index = newline + 1

    def _last_row_end(self) -> int | None:
        buffer = self._buffer
        stop = len(buffer)
        quotes_after = 0
        while True:
            newline = buffer.rfind(b"\n", 0, stop)
            if newline < 0:
                return None
            quotes_after += buffer.count(b'"', newline, stop)
            if (self._quotes - quotes_after) % 2 == 0:
                return newline + 1
            stop = newline


class LineSplitter:
    """Cuts a streamed JSON Lines body into pieces of whole lines (about ``piece_bytes``)."""

    def __init__(self, piece_bytes: int) -> None:
        self.piece_bytes = piece_bytes
        self._buffer = bytearray()

    def feed(self, chunk: bytes) -> list[bytes]:
        """Add a chunk; return a piece of whole lines when enough has arrived."""
        self._buffer += chunk
        if len(self._buffer) < self.piece_bytes:
            return []
        end = self._buffer.rfind(b"\n") + 1
        if not end:
            return []
        piece = bytes(self._buffer[:end])
        del self._buffer[:end]
        return [piece]

    @property
    def pending(self) -> int:
        """Bytes buffered in an unfinished line."""
        return len(self._buffer)

    def finish(self) -> bytes:
        """The last lines (a final line without a line break included)."""
        rest = bytes(self._buffer)
        self._buffer.clear()
        return rest if rest.strip() else b""


class PieceParser:
    """Parses pieces of one CSV or JSON Lines stream into tables of one schema.

    The first piece's inferred types are kept for the later pieces (a column that was all null
    in it is inferred again each time, and promoted when the tables are put together).
    """

    def __init__(self, kind: str, *, delimiter: str = ",", encoding: str = "utf8") -> None:
        self.kind = kind
        self.delimiter = delimiter
        self.encoding = encoding
        self.header = b""
        self._types: dict[str, pa.DataType] | None = None

    def parse(self, piece: bytes) -> pa.Table:
        """One piece as a table; raises ``pyarrow.ArrowInvalid`` for malformed input."""
        table = self._csv(piece) if self.kind == "csv" else self._json(piece)
        if self._types is None:
            self._types = {
                field.name: field.type for field in table.schema if not pa.types.is_null(field.type)
            }
        return table

    def _csv(self, piece: bytes) -> pa.Table:
        options: dict[str, Any] = {}
        if self._types is not None:
            options["column_types"] = self._types
        return pacsv.read_csv(
            io.BytesIO(self.header + piece),
            read_options=pacsv.ReadOptions(
                encoding=self.encoding, block_size=max(len(piece) + len(self.header) + 1, 1 << 20)
            ),
            parse_options=pacsv.ParseOptions(delimiter=self.delimiter, newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(**options),
        )

    def _json(self, piece: bytes) -> pa.Table:
        parse = pajson.ParseOptions(newlines_in_values=False)
        if self._types:
            parse = pajson.ParseOptions(
                explicit_schema=pa.schema(list(self._types.items())),
                unexpected_field_behavior="infer",
            )
        return pajson.read_json(
            io.BytesIO(piece),
            read_options=pajson.ReadOptions(block_size=max(len(piece) + 1, 1 << 20)),
            parse_options=parse,
        )

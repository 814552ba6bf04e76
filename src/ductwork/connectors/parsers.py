"""Incremental record parsers: CSV, JSON Lines and JSON arrays, for files and HTTP bodies.

Parsers are fed decompressed bytes a block at a time (a MiB of a file, a chunk of a response)
and return the records complete in that block, so the work per call is one C-level split, one
``csv.reader`` pass or one ijson ``send`` per block, not one Python call per line. When a fast
pass meets anything unusual (a malformed line, a blank line, a row of the wrong width, a CSV
record split across blocks) the block is parsed again line by line to name the exact line, and
to skip the bad record when ``error_handling="skip"``.

Work is linear in the input: a record that spans many blocks (a long line, a quoted CSV field,
or a quote never closed) is kept as a list of the blocks it spans, each scanned once for a record
end, and joined once when the record is complete; past ``max_record_size`` it is an error.

Line numbers are 1-based and count ``\\n``; byte offsets are positions in the decompressed file.
"""

from __future__ import annotations

import codecs
import csv
import io
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import ijson  # type: ignore[import-untyped]
import orjson

from .._exceptions import FileFormatError
from ..core.types import Record

__all__ = [
    "CsvParser",
    "JsonArrayParser",
    "JsonSyntaxError",
    "JsonlParser",
    "RecordParser",
    "TextCodec",
    "snippet",
    "text_codec",
]

_BOM = codecs.BOM_UTF8
_SNIPPET = 80
_PROBE = '\n\r",;|\t{}[]:'
_EXTRA_FIELD = object()


@dataclass(frozen=True, slots=True)
class TextCodec:
    """How a file's bytes become text.

    Attributes:
        encoding: the name the user gave.
        name: the Python codec used to decode complete lines.
        utf8: the bytes are UTF-8 (a leading byte-order mark is dropped).
        transcode: the encoding is not ASCII-compatible (UTF-16/32): the bytes are decoded
            incrementally and re-encoded as UTF-8 before framing, and offsets are not reported.
    """

    encoding: str
    name: str
    utf8: bool
    transcode: bool

    @property
    def unit(self) -> str:
        """The codec of the framed bytes the parsers see (UTF-8 once transcoded)."""
        return "utf-8" if self.utf8 or self.transcode else self.name


def text_codec(encoding: str) -> TextCodec:
    """Describe ``encoding`` (raises LookupError for an unknown one)."""
    name = codecs.lookup(encoding).name
    if name in ("utf-8", "utf-8-sig"):
        return TextCodec(encoding, "utf-8", utf8=True, transcode=False)
    try:
        ascii_compatible = _PROBE.encode(name) == _PROBE.encode("ascii")
    except (UnicodeError, LookupError):
        ascii_compatible = False
    return TextCodec(encoding, name, utf8=False, transcode=not ascii_compatible)


def snippet(data: bytes | str, codec: str = "utf-8") -> str:
    """A short, one-line excerpt of bad input for an error message."""
    text = data.decode(codec, "replace") if isinstance(data, bytes) else data
    text = text.strip()
    return text if len(text) <= _SNIPPET else text[: _SNIPPET - 3] + "..."


class JsonSyntaxError(Exception):
    """ijson rejected a block; the extractor rescans the file to find the exact line."""

    def __init__(self, message: str, block: int) -> None:
        super().__init__(message)
        self.block = block


# --------------------------------------------------------------------------- parsers


class RecordParser(ABC):
    """Turns the decompressed bytes of one file into records.

    Args:
        file: the path, for error messages.
        codec: the text encoding.
        on_bad: ``None`` to raise every :class:`FileFormatError`; otherwise called with each bad
            record's error, which is then skipped.
        max_record_size: the longest line (or CSV record) accepted, in bytes.
    """

    def __init__(
        self,
        file: str,
        codec: TextCodec,
        on_bad: Callable[[FileFormatError], None] | None,
        max_record_size: int,
    ) -> None:
        self.file = file
        self.codec = codec
        self.on_bad = on_bad
        self.max_record_size = max_record_size
        self.line = 1  # line number at the start of the unparsed input
        self.offset = 0  # byte offset of the start of the unparsed input
        self._decoder: codecs.IncrementalDecoder | None = None
        if codec.transcode:
            self._decoder = codecs.getincrementaldecoder(codec.name)("strict")
        self._raw_offset = 0  # bytes of the original encoding consumed by the transcoder

    @property
    def offsets_known(self) -> bool:
        """Whether byte offsets refer to the file (not to transcoded text)."""
        return not self.codec.transcode

    @abstractmethod
    def feed(self, data: bytes) -> list[Record]:
        """Parse the next block of decompressed bytes; return the records it completes."""

    @abstractmethod
    def finish(self) -> list[Record]:
        """The file has ended: parse what is left, or raise if it is incomplete."""

    def error(
        self, message: str, line: int | None, offset: int | None, snippet: str | None
    ) -> FileFormatError:
        """Build a FileFormatError for this file."""
        return FileFormatError(
            message,
            file=self.file,
            line=line,
            offset=offset if self.offsets_known else None,
            snippet=snippet,
        )

    def bad(self, message: str, line: int, offset: int | None, snippet: str | None) -> None:
        """Report a bad record: raise, or hand it to ``on_bad`` and go on."""
        err = self.error(message, line, offset, snippet)
        if self.on_bad is None:
            raise err
        self.on_bad(err)

    def _transcode(self, data: bytes, pending: Sequence[bytes], final: bool = False) -> bytes:
        """Decode ``data`` incrementally and re-encode it as UTF-8 (non-ASCII-compatible text);
        ``pending`` is the input before ``data`` not yet parsed (to number lines)."""
        assert self._decoder is not None
        try:
            text = self._decoder.decode(data, final)
        except UnicodeDecodeError as exc:
            head = data[: max(exc.start, 0)].decode(self.codec.name, "replace")
            line = self.line + sum(part.count(b"\n") for part in pending) + head.count("\n")
            raise self.error(
                f"cannot decode as {self.codec.encoding}: {exc.reason}",
                line,
                None,
                snippet(data[max(exc.start - 40, 0) : exc.end + 40], self.codec.name),
            ) from None
        self._raw_offset += len(data)
        return text.encode("utf-8")


class _LineParser(RecordParser):
    """Frames the input into units of complete records, cut at a line end.

    The input not yet parsed (the start of a record that goes on) is held as the list of blocks
    it arrived in, ``_parts``; each block is searched for a record end once, when it arrives,
    so a record spanning many blocks costs time linear in its size. ``scanned`` counts the bytes
    searched and parsed, for tests of that bound.
    """

    def __init__(
        self,
        file: str,
        codec: TextCodec,
        on_bad: Callable[[FileFormatError], None] | None,
        max_record_size: int,
    ) -> None:
        super().__init__(file, codec, on_bad, max_record_size)
        self._parts: list[bytes] = []
        self._size = 0  # bytes in ``_parts``
        self._bom_pending = codec.utf8
        self.scanned = 0

    def feed(self, data: bytes) -> list[Record]:
        if self._decoder is not None:
            data = self._transcode(data, self._parts)
        if not data:
            return []
        self.scanned += len(data)
        cut = self._boundary(data)
        if cut < 0:
            self._parts.append(data)
            self._size += len(data)
            self._check_size()
            return []
        head = data[: cut + 1]
        unit = b"".join([*self._parts, head]) if self._parts else head
        rest = data[cut + 1 :]
        self._parts = [rest] if rest else []
        self._size = len(rest)
        self._restart(rest)
        return self._unit(unit, final=False)

    def finish(self) -> list[Record]:
        if self._decoder is not None:
            tail = self._transcode(b"", self._parts, final=True)
            if tail:
                self._parts.append(tail)
        unit = b"".join(self._parts)
        self._parts, self._size = [], 0
        if not unit:
            return []
        return self._unit(unit, final=True)

    def _check_size(self) -> None:
        if self._size > self.max_record_size:
            raise self.error(
                f"no complete record within max_record_size={self.max_record_size} bytes "
                f"(a missing line end or an unterminated quote?)",
                self.line,
                self.offset,
                snippet(self._parts[0][:_SNIPPET], self.codec.unit),
            )

    def _restart(self, rest: bytes) -> None:
        """The pending input is now ``rest``, the input after a record end."""

    def _carry(self, leftover: bytes) -> None:
        """``leftover``, the start of a record the parser found incomplete, goes back in front
        of the pending input."""
        self._parts.insert(0, leftover)
        self._size += len(leftover)

    def _unit(self, unit: bytes, final: bool) -> list[Record]:
        if self._bom_pending:
            if unit.startswith(_BOM):
                unit = unit[len(_BOM) :]
                self.offset += len(_BOM)
            self._bom_pending = False
        self.scanned += len(unit)
        records, leftover = self._parse(unit, self.line, self.offset, final)
        consumed = len(unit) - len(leftover)
        self.line += unit.count(b"\n", 0, consumed)
        self.offset += consumed
        if leftover:
            self._carry(leftover)
            self._check_size()
        return records

    def _boundary(self, data: bytes) -> int:
        """Index in ``data``, the block just fed, of the line end that closes the last complete
        record of the pending input and ``data``, or -1."""
        return data.rfind(b"\n")

    @abstractmethod
    def _parse(
        self, unit: bytes, first_line: int, offset: int, final: bool
    ) -> tuple[list[Record], bytes]:
        """Parse a unit of whole lines; return the records and any unconsumed suffix."""

    def _decode(self, unit: bytes, first_line: int, offset: int) -> tuple[str, bytes]:
        """Decode a unit; a line that does not decode is reported (and blanked when skipping)."""
        name = self.codec.unit
        while True:
            try:
                return unit.decode(name), unit
            except UnicodeDecodeError as exc:
                start = unit.rfind(b"\n", 0, exc.start) + 1
                end = unit.find(b"\n", exc.end)
                end = len(unit) if end < 0 else end
                self.bad(
                    f"cannot decode as {self.codec.encoding}: {exc.reason}",
                    first_line + unit.count(b"\n", 0, exc.start),
                    offset + exc.start,
                    snippet(unit[start:end], name),
                )
                unit = unit[:start] + unit[end:]


class JsonlParser(_LineParser):
    """JSON Lines: one JSON object per line; blank lines are ignored."""

    def _parse(
        self, unit: bytes, first_line: int, offset: int, final: bool
    ) -> tuple[list[Record], bytes]:
        lines: Sequence[bytes | str]
        if self.codec.utf8 or self.codec.transcode:
            lines = unit.split(b"\n")
        else:
            text, unit = self._decode(unit, first_line, offset)
            lines = text.split("\n")
        if unit.endswith(b"\n"):
            lines = lines[:-1]
        loads = orjson.loads
        try:
            records = list(map(loads, lines))
        except orjson.JSONDecodeError:
            return self._parse_slowly(lines, first_line, offset), b""
        if records and set(map(type, records)) != {dict}:
            return self._parse_slowly(lines, first_line, offset), b""
        return records, b""

    def _parse_slowly(
        self, lines: Sequence[bytes | str], first_line: int, offset: int
    ) -> list[Record]:
        records: list[Record] = []
        loads = orjson.loads
        position: int | None = offset if self.codec.utf8 else None
        for index, line in enumerate(lines):
            number = first_line + index
            if line.strip():
                try:
                    value = loads(line)
                except orjson.JSONDecodeError as exc:
                    self._bad_json(line, number, position, exc)
                else:
                    if type(value) is dict:
                        records.append(value)
                    else:
                        self.bad(
                            f"expected a JSON object, got {_json_type(value)}",
                            number,
                            position,
                            snippet(line),
                        )
            if position is not None:
                position += len(line) + 1
        return records

    def _bad_json(
        self, line: bytes | str, number: int, position: int | None, exc: orjson.JSONDecodeError
    ) -> None:
        if isinstance(line, bytes):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as uexc:
                where = None if position is None else position + uexc.start
                self.bad(
                    f"cannot decode as {self.codec.encoding}: {uexc.reason}",
                    number,
                    where,
                    snippet(line),
                )
                return
        where = None if position is None else position + exc.pos
        self.bad(f"malformed JSON at column {exc.colno}: {exc.msg}", number, where, snippet(line))


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"


class CsvParser(_LineParser):
    """CSV with a header row or explicit field names; every row must have as many fields.

    Quoted fields may hold delimiters, quotes (doubled) and line breaks. Parsing is strict: text
    after a closing quote, or a quote left open at the end of the file, is an error. Values are
    strings; blank lines are ignored.
    """

    def __init__(
        self,
        file: str,
        codec: TextCodec,
        on_bad: Callable[[FileFormatError], None] | None,
        max_record_size: int,
        *,
        delimiter: str,
        quotechar: str | None,
        header: bool,
        field_names: Sequence[str] | None,
    ) -> None:
        super().__init__(file, codec, on_bad, max_record_size)
        if csv.field_size_limit() < max_record_size:
            # the csv module's own limit (128 KiB) would refuse fields max_record_size allows
            csv.field_size_limit(max_record_size)
        self._format: dict[str, Any] = {
            "delimiter": delimiter,
            "strict": True,
            "quoting": csv.QUOTE_MINIMAL if quotechar else csv.QUOTE_NONE,
        }
        if quotechar:
            self._format["quotechar"] = quotechar
        self._delimiter = delimiter
        self._quote = quotechar.encode(codec.unit) if quotechar else b""
        self._given_names = tuple(field_names) if field_names is not None else None
        self._header_pending = header
        self._names: tuple[str, ...] | None = None if header else self._given_names
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
                    snippet(self._delimiter.join(row)),
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
            keys: tuple[Any, ...] = (*names, _EXTRA_FIELD)
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
                    snippet(self._delimiter.join(row)),
                )
                continue
            records.append(dict(zip(names, row, strict=False)))
        return records, b""


def _line_at(text: str, index: int) -> str:
    lines = io.StringIO(text, newline="").readlines()
    return lines[index] if index < len(lines) else ""


class JsonArrayParser(RecordParser):
    """A JSON array of objects, at the top level or under a dotted ``records_path``, parsed
    incrementally with ijson (yajl2 C backend): memory holds one block and the records it
    completes, never the whole array.

    Syntax errors raise :class:`JsonSyntaxError` carrying the block number; the extractor then
    rescans the file with :meth:`locate` set, which feeds that block a line at a time to find the
    exact line.
    """

    def __init__(
        self,
        file: str,
        codec: TextCodec,
        on_bad: Callable[[FileFormatError], None] | None,
        max_record_size: int,
        *,
        records_path: str | None,
        locate_block: int | None = None,
    ) -> None:
        super().__init__(file, codec, on_bad, max_record_size)
        if not codec.utf8 and self._decoder is None:
            self._decoder = codecs.getincrementaldecoder(codec.name)("strict")
        self._prefix = f"{records_path}.item" if records_path else "item"
        self._items: list[Any] = ijson.sendable_list()
        self._coro = ijson.items_coro(self._items, self._prefix, use_float=True)
        # Until the array at ``records_path`` starts, a second parser watches the events, so a
        # path that is missing (or not an array) is an error rather than zero records. It is
        # dropped as soon as the array starts, usually within the first block.
        self._records_path = records_path
        self._watch_events: list[Any] = ijson.sendable_list()
        self._watch: Any = (
            ijson.parse_coro(self._watch_events, use_float=True) if records_path else None
        )
        self._blocks = 0
        self._count = 0  # records seen, for messages about a bad item
        self._start = True
        self._locate_block = locate_block

    @property
    def offsets_known(self) -> bool:
        return self.codec.utf8

    def feed(self, data: bytes) -> list[Record]:
        if self._decoder is not None:
            data = self._transcode(data, ())
        self._feed_utf8(data)
        return self._take()

    def _feed_utf8(self, data: bytes) -> None:
        if self._start:
            if data.startswith(_BOM):
                data = data[len(_BOM) :]
                self.offset += len(_BOM)
            if data.strip():
                self._start = False
                first = data.lstrip()[:1]
                if self._prefix == "item" and first != b"[":
                    raise self.error(
                        "expected a JSON array at the top level (set records_path for an array "
                        "inside an object)",
                        self.line + data[: len(data) - len(data.lstrip())].count(b"\n"),
                        self.offset,
                        snippet(data[:_SNIPPET]),
                    )
        if self._watch is not None:
            self._watch_for_path(data)
        if self._locate_block is not None and self._blocks == self._locate_block:
            self._feed_by_line(data)
        else:
            try:
                self._coro.send(data)
            except ijson.JSONError as exc:
                raise JsonSyntaxError(str(exc), self._blocks) from exc
        self._blocks += 1
        self.line += data.count(b"\n")
        self.offset += len(data)

    def _watch_for_path(self, data: bytes) -> None:
        try:
            self._watch.send(data)
        except ijson.JSONError:
            self._watch = None  # the items parser reports the syntax error, with its line
            return
        events = self._watch_events
        for prefix, event, _ in events:
            if prefix == self._records_path and event in (
                "start_array",
                "start_map",
                "string",
                "number",
                "boolean",
                "null",
            ):
                self._watch = None
                if event != "start_array":
                    kind = "an object" if event == "start_map" else f"a {event}"
                    raise self.error(
                        f"records_path {self._records_path!r} is {kind}, not an array",
                        None,
                        None,
                        None,
                    )
                break
        del events[:]

    def _feed_by_line(self, data: bytes) -> None:
        line, offset = self.line, self.offset
        for piece in data.splitlines(keepends=True):
            for start in range(0, len(piece), 4096):
                part = piece[start : start + 4096]
                try:
                    self._coro.send(part)
                except ijson.JSONError as exc:
                    raise self.error(
                        f"malformed JSON: {_yajl_message(exc)}", line, offset, snippet(piece)
                    ) from None
                offset += len(part)
            line += piece.count(b"\n")

    def finish(self) -> list[Record]:
        if self._decoder is not None:
            tail = self._transcode(b"", (), final=True)
            if tail:
                self._feed_utf8(tail)
        try:
            self._coro.close()
        except ijson.JSONError as exc:
            raise self.error(
                f"incomplete JSON at the end of the file: {_yajl_message(exc)}",
                self.line,
                self.offset,
                None,
            ) from None
        if self._watch is not None:
            raise self.error(
                f"records_path {self._records_path!r} is not in the document",
                None,
                None,
                None,
            )
        return self._take()

    def _take(self) -> list[Record]:
        items = self._items
        if not items:
            return []
        records = list(items)
        del items[:]
        first = self._count
        self._count += len(records)
        if set(map(type, records)) == {dict}:
            return records
        kept: list[Record] = []
        for index, value in enumerate(records):
            if type(value) is dict:
                kept.append(value)
            else:
                self.bad(
                    f"array item {first + index + 1} is {_json_type(value)}, not an object",
                    self.line,
                    None,
                    snippet(orjson.dumps(value)),
                )
        return kept


def _yajl_message(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__

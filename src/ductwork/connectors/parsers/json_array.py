"""JSON arrays of objects, parsed incrementally with ijson."""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from typing import Any

import ijson  # type: ignore[import-untyped]
import orjson

from ...core.types import Record
from .base import JsonSyntaxError, RecordParser, json_type, snippet

MAX_DEPTH = 1024
"""The deepest nesting of arrays and objects a JSON document may have (as orjson allows for a
JSON Lines record): ijson's memory grows with the square of the depth, so a few hundred KB of
brackets would otherwise take gigabytes."""

_QUOTED = re.compile(rb'"[^"]*"')
_NOT_STRUCTURE = bytes(sorted(set(range(256)) - set(b'[]{}"')))
_SQUARE = bytes.maketrans(b"{}", b"[]")


class _DepthGauge:
    """The nesting depth of a JSON text fed block by block, checked against :data:`MAX_DEPTH`
    before ijson sees a block, with a few linear passes per block in C (escapes and strings
    dropped, brackets collapsed pair by pair), never a loop over the bytes in Python.

    Removing ``\\\\`` pairs from the left, then ``\\"``, leaves every quote a string's start
    or end; removing ``""`` then drops empty strings or joins two adjacent ones, which keeps
    what is outside the strings."""

    __slots__ = ("depth", "escape", "in_string")

    def __init__(self) -> None:
        self.depth = 0  # at the end of the text seen so far
        self.in_string = False
        self.escape = False  # the text seen so far ends in a string's backslash

    def feed(self, data: bytes) -> int:
        """Account for ``data``; return an upper bound of the depth reached within it."""
        if self.escape and data:
            data, self.escape = data[1:], False
        if b"\\" in data:
            data = data.replace(b"\\\\", b"")
            if data.endswith(b"\\"):
                data, self.escape = data[:-1], True
            data = data.replace(b'\\"', b"")
        text = data.translate(None, _NOT_STRUCTURE)
        if self.in_string:
            close = text.find(b'"')
            if close < 0:
                return self.depth
            text, self.in_string = text[close + 1 :], False
        if text.count(b'"') % 2:
            text, self.in_string = text[: text.rfind(b'"')], True
        text = text.replace(b'""', b"")
        if b'"' in text:
            text = _QUOTED.sub(b"", text)
        brackets = text.translate(_SQUARE)
        rounds = 0  # the depth of the pairs closed within the block
        while b"[]" in brackets and self.depth + rounds <= MAX_DEPTH:
            brackets = brackets.replace(b"[]", b"")
            rounds += 1
        closes = brackets.count(b"]")  # what is left: closes, then opens
        opens = len(brackets) - closes
        reached = self.depth + opens + rounds
        self.depth = max(0, self.depth - closes) + opens
        return reached


@dataclass(eq=False, repr=False, kw_only=True)
class JsonArrayParser(RecordParser):
    """A JSON array of objects, at the top level or under a dotted ``records_path``, parsed
    incrementally with ijson (yajl2 C backend): memory holds one block and the records it
    completes, never the whole array. An item may not exceed ``max_record_size``: once the array
    has started, a run of input that long without completing one fails (checked per block, so
    the bound is ``max_record_size`` plus a block).

    Syntax errors raise :class:`JsonSyntaxError` carrying the block number; the extractor then
    rescans the file with :meth:`locate` set, which feeds that block a line at a time to find the
    exact line.

    Args:
        records_path: the dotted path of the array, ``None`` for the top level (keyword-only,
            as is the rest).
        locate_block: the number of the block to feed a line at a time, to find the line of a
            syntax error found in it.
    """

    records_path: str | None
    locate_block: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        codec, records_path = self.codec, self.records_path
        if not codec.utf8 and self._decoder is None:
            self._decoder = codecs.getincrementaldecoder(codec.name)("strict")
        self._prefix = f"{records_path}.item" if records_path else "item"
        self._items: list[Any] = ijson.sendable_list()
        self._coro = ijson.items_coro(self._items, self._prefix, use_float=True)
        # Until the array at ``records_path`` starts, a second parser watches the events, so a
        # path that is missing (or not an array) is an error rather than zero records. It is
        # dropped as soon as the array starts, usually within the first block.
        self._watch_events: list[Any] = ijson.sendable_list()
        self._watch: Any = (
            ijson.parse_coro(self._watch_events, use_float=True) if records_path else None
        )
        self._blocks = 0
        self._count = 0  # records seen, for messages about a bad item
        self._start = True
        self._depth = _DepthGauge()
        self._since = 0  # bytes fed since an item was last completed, once the array started

    @property
    def offsets_known(self) -> bool:
        return self.codec.utf8

    def feed(self, data: bytes) -> list[Record]:
        self._feed_utf8(self._as_utf8(data, ()))
        if not self._items and self._watch is None:
            self._since += len(data)
            if self._since > self.max_record_size:
                raise self.error(
                    f"no complete array item within max_record_size={self.max_record_size} bytes",
                    self.line,
                    None,
                    None,
                )
        return self._take()

    def _feed_utf8(self, data: bytes) -> None:
        if self._start:
            data = self._skip_bom(data)
            if data.strip():
                self._start = False
                first = data.lstrip()[:1]
                if self._prefix == "item" and first != b"[":
                    raise self._error_here(
                        "expected a JSON array at the top level (set records_path for an array "
                        "inside an object)",
                        self.line + data[: len(data) - len(data.lstrip())].count(b"\n"),
                        data,
                        "utf-8",
                    )
        if self._depth.feed(data) > MAX_DEPTH:
            raise self.error(
                f"JSON nested deeper than {MAX_DEPTH} arrays and objects",
                self.line,
                self.offset,
                None,
            )
        if self._watch is not None:
            self._watch_for_path(data)
        if self.locate_block is not None and self._blocks == self.locate_block:
            self._feed_by_line(data)
        else:
            try:
                self._coro.send(data)
            except ijson.JSONError as exc:
                raise JsonSyntaxError(str(exc), self._blocks) from exc
        self._blocks += 1
        self._advance(data)

    def _watch_for_path(self, data: bytes) -> None:
        try:
            self._watch.send(data)
        except ijson.JSONError:
            self._watch = None  # the items parser reports the syntax error, with its line
            return
        events = self._watch_events
        for prefix, event, _ in events:
            if prefix == self.records_path and event in (
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
                        f"records_path {self.records_path!r} is {kind}, not an array",
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
        if tail := self._as_utf8(b"", (), final=True):
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
                f"records_path {self.records_path!r} is not in the document",
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
        self._since = 0
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
                    f"array item {first + index + 1} is {json_type(value)}, not an object",
                    self.line,
                    None,
                    snippet(orjson.dumps(value)),
                )
        return kept


def _yajl_message(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__

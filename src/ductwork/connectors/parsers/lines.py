"""Framing the input of the line-based formats (JSON Lines, CSV) into units of whole records."""

from __future__ import annotations

from abc import abstractmethod

from ...core.types import Record
from .base import RecordParser, snippet


class LineParser(RecordParser):
    """Frames the input into units of complete records, cut at a line end.

    The input not yet parsed (the start of a record that goes on) is held as the list of blocks
    it arrived in, ``_parts``; each block is searched for a record end once, when it arrives,
    so a record spanning many blocks costs time linear in its size. ``scanned`` counts the bytes
    searched and parsed, for tests of that bound.
    """

    def __post_init__(self) -> None:
        super().__post_init__()
        self._parts: list[bytes] = []
        self._size = 0  # bytes in ``_parts``
        self._bom_pending = self.codec.utf8
        self.scanned = 0

    def feed(self, data: bytes) -> list[Record]:
        data = self._as_utf8(data, self._parts)
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
        if tail := self._as_utf8(b"", self._parts, final=True):
            self._parts.append(tail)
        unit = b"".join(self._parts)
        self._parts, self._size = [], 0
        if not unit:
            return []
        return self._unit(unit, final=True)

    def _check_size(self) -> None:
        if self._size > self.max_record_size:
            raise self._error_here(
                f"no complete record within max_record_size={self.max_record_size} bytes "
                f"(a missing line end or an unterminated quote?)",
                self.line,
                self._parts[0],
                self.codec.unit,
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
            unit = self._skip_bom(unit)
            self._bom_pending = False
        self.scanned += len(unit)
        records, leftover = self._parse(unit, self.line, self.offset, final)
        self._advance(unit, len(unit) - len(leftover))
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

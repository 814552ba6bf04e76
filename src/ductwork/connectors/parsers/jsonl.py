"""JSON Lines: one JSON object per line."""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from ...core.types import Record
from .base import json_type, snippet
from .lines import LineParser


class JsonlParser(LineParser):
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
                            f"expected a JSON object, got {json_type(value)}",
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

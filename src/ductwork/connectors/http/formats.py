"""Response body decoders of the HTTP extractor: JSON, JSON Lines (NDJSON) and CSV.

JSON bodies are parsed whole (the records are found at a dotted ``records_path``). JSON Lines and
CSV bodies are decoded chunk by chunk as they arrive and handed on in batches of ``batch_size``
records, so memory stays constant whatever the size of the body. Work is done per chunk (one
``split`` and one list comprehension of ``orjson.loads``), falling back to a line-by-line pass
only to report the number of a malformed line.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import orjson

from ...core.types import Batch
from .paging import get_path

__all__ = ["ResponseFormatError", "iter_csv", "iter_ndjson", "json_records"]

_SNIPPET = 120


class ResponseFormatError(ValueError):
    """A response body is malformed; ``line`` and ``snippet`` locate the problem when known."""

    def __init__(self, message: str, *, line: int | None = None, snippet: str | None = None):
        super().__init__(message)
        self.line = line
        self.snippet = snippet


def _snippet(data: bytes | str) -> str:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    text = text.strip()
    return text if len(text) <= _SNIPPET else text[: _SNIPPET - 3] + "..."


def json_records(raw: bytes, records_path: str | None) -> tuple[list[Any], Any]:
    """Parse a JSON body; return ``(records, body)``.

    Without ``records_path`` the body must be a list of records. With it, the value at that
    dotted path must be a list (or a single object, taken as one record).
    """
    if not raw.strip():
        return [], None
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ResponseFormatError(f"malformed JSON: {exc}", snippet=_snippet(raw)) from None
    data = body
    if records_path is not None:
        data = get_path(body, records_path)
        if data is None:
            raise ResponseFormatError(
                f"records_path {records_path!r} is not in the response{_keys(body)}",
                snippet=_snippet(raw),
            )
        if isinstance(data, dict):
            return [data], body
    if isinstance(data, list):
        return data, body
    if isinstance(data, dict):
        raise ResponseFormatError(
            f"the response body is a JSON object, not a list of records; set records_path to "
            f"the field holding them{_keys(body)}"
        )
    where = f"at records_path {records_path!r}" if records_path else "in the response body"
    raise ResponseFormatError(
        f"expected a list of records {where}, found {type(data).__name__}",
        snippet=_snippet(raw),
    )


def _keys(body: Any) -> str:
    if isinstance(body, dict):
        keys = ", ".join(list(body)[:10])
        return f" (top-level keys: {keys})"
    return ""


async def iter_ndjson(chunks: AsyncIterator[bytes], batch_size: int) -> AsyncGenerator[Batch, None]:
    """Decode a JSON Lines stream into batches of up to ``batch_size`` records.

    Blank lines are skipped; a malformed line raises :class:`ResponseFormatError` with its
    1-based line number.
    """
    loads = orjson.loads
    tail = b""
    lines_done = 0
    batch: Batch = []
    async for chunk in chunks:
        if tail:
            chunk = tail + chunk
        lines = chunk.split(b"\n")
        tail = lines.pop()
        try:
            records = [loads(line) for line in lines]
        except orjson.JSONDecodeError:
            records = _ndjson_slow(lines, lines_done)
        lines_done += len(lines)
        if batch:
            batch.extend(records)
        else:
            batch = records
        while len(batch) >= batch_size:
            if len(batch) == batch_size:
                yield batch
                batch = []
            else:
                yield batch[:batch_size]
                batch = batch[batch_size:]
    if tail.strip():
        batch.extend(_ndjson_slow([tail], lines_done))
    if batch:
        yield batch


def _ndjson_slow(lines: list[bytes], lines_done: int) -> list[Any]:
    """Parse line by line: skip blank lines, report the number of a malformed one."""
    records = []
    for number, line in enumerate(lines, lines_done + 1):
        if not line.strip():
            continue
        try:
            records.append(orjson.loads(line))
        except orjson.JSONDecodeError as exc:
            raise ResponseFormatError(
                f"malformed JSON Lines record at line {number}: {exc}",
                line=number,
                snippet=_snippet(line),
            ) from None
    return records


async def iter_csv(
    chunks: AsyncIterator[bytes], batch_size: int, *, encoding: str, delimiter: str
) -> AsyncGenerator[Batch, None]:
    """Decode a CSV stream (header row first) into batches of dicts of strings.

    Quoted fields may hold delimiters, quotes and line breaks, also across chunk boundaries. A
    row whose number of fields differs from the header raises :class:`ResponseFormatError`.
    """
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    state = _CsvState(delimiter)
    pending = ""
    batch: Batch = []
    async for chunk in chunks:
        try:
            text = pending + decoder.decode(chunk)
        except UnicodeDecodeError as exc:
            raise ResponseFormatError(f"CSV body is not valid {encoding}: {exc}") from None
        cut = _last_record_end(text)
        if cut < 0:
            pending = text
            continue
        pending = text[cut + 1 :]
        batch.extend(state.rows(text[: cut + 1]))
        while len(batch) >= batch_size:
            yield batch[:batch_size]
            batch = batch[batch_size:]
    try:
        rest = pending + decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        raise ResponseFormatError(f"CSV body is not valid {encoding}: {exc}") from None
    if rest.strip():
        batch.extend(state.rows(rest))
    for start in range(0, len(batch), batch_size):
        yield batch[start : start + batch_size]


def _last_record_end(text: str) -> int:
    """Index of the last newline that ends a record (outside quotes), or -1."""
    index = text.rfind("\n")
    while index >= 0 and text.count('"', 0, index) % 2:
        index = text.rfind("\n", 0, index)
    return index


class _CsvState:
    __slots__ = ("delimiter", "header", "rows_done")

    def __init__(self, delimiter: str) -> None:
        self.delimiter = delimiter
        self.header: list[str] | None = None
        self.rows_done = 0

    def rows(self, text: str) -> Batch:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=self.delimiter)
        out: Batch = []
        header = self.header
        width = len(header) if header is not None else 0
        try:
            for row in reader:
                if not row:
                    continue
                if header is None:
                    header = self.header = row
                    width = len(row)
                    continue
                self.rows_done += 1
                if len(row) != width:
                    raise ResponseFormatError(
                        f"CSV record {self.rows_done} has {len(row)} fields, the header has "
                        f"{width}",
                        line=self.rows_done,
                        snippet=_snippet(self.delimiter.join(row)),
                    )
                out.append(dict(zip(header, row, strict=True)))
        except csv.Error as exc:
            raise ResponseFormatError(
                f"malformed CSV after record {self.rows_done}: {exc}", line=self.rows_done
            ) from None
        return out

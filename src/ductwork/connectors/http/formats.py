"""Response body decoders of the HTTP extractor: JSON, JSON Lines (NDJSON) and CSV.

JSON bodies are parsed whole (the records are found at a dotted ``records_path``). JSON Lines and
CSV bodies are decoded chunk by chunk as they arrive, by the incremental parsers the file
connector uses (:mod:`ductwork.connectors.parsers`), and handed on in batches of
``batch_size`` records: memory holds a chunk and at most ``max_record_size`` bytes of a record
that goes on, and time is linear in the body. Every record must be a JSON object.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing
from typing import Any

import anyio
import orjson
import pyarrow as pa

from ..._exceptions import FileFormatError
from ...core.arrow import Rebatcher
from ...core.batch import cut_batches
from ...core.types import Batch, Record
from ..arrow_text import CsvSplitter, LineSplitter, PieceParser
from ..parsers import CsvParser, JsonlParser, RecordParser, text_codec
from .paging import get_path

__all__ = ["ResponseFormatError", "iter_arrow", "iter_csv", "iter_ndjson", "json_records"]

_SNIPPET = 120
_BODY = "response body"
_MAX_RECORD = 64 * 1024 * 1024
_WIDTH = re.compile(r"expected (?P<expected>\d+) fields, got (?P<got>\d+)")


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
        if data and set(map(type, data)) != {dict}:
            where = f"at records_path {records_path!r}" if records_path else "in the response body"
            for index, item in enumerate(data):
                if type(item) is not dict:
                    raise ResponseFormatError(
                        f"record {index + 1} {where} is a {type(item).__name__}, not a JSON object",
                        snippet=_snippet(orjson.dumps(item)),
                    )
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


async def iter_ndjson(
    chunks: AsyncIterator[bytes], batch_size: int, *, max_record_size: int = _MAX_RECORD
) -> AsyncGenerator[Batch, None]:
    """Decode a JSON Lines stream into batches of up to ``batch_size`` records.

    Blank lines are skipped; a malformed line, or one that is not a JSON object, raises
    :class:`ResponseFormatError` with its 1-based line number, as does a line longer than
    ``max_record_size`` bytes.
    """
    parser = JsonlParser(_BODY, text_codec("utf-8"), None, max_record_size)

    def describe(exc: FileFormatError) -> ResponseFormatError:
        return ResponseFormatError(
            f"malformed JSON Lines record at line {exc.line}: {exc.reason}",
            line=exc.line,
            snippet=exc.snippet,
        )

    async with aclosing(_batches(parser, chunks, batch_size, describe)) as batches:
        async for batch in batches:
            yield batch


async def iter_csv(
    chunks: AsyncIterator[bytes],
    batch_size: int,
    *,
    encoding: str,
    delimiter: str,
    max_record_size: int = _MAX_RECORD,
) -> AsyncGenerator[Batch, None]:
    """Decode a CSV stream (header row first) into batches of dicts of strings.

    Quoted fields may hold delimiters, quotes and line breaks, also across chunk boundaries. A
    row whose number of fields differs from the header, bad quoting, or a record longer than
    ``max_record_size`` bytes raises :class:`ResponseFormatError`.
    """
    parser = CsvParser(
        _BODY,
        text_codec(encoding),
        None,
        max_record_size,
        delimiter=delimiter,
        quotechar='"',
        header=True,
        field_names=None,
    )

    def describe(exc: FileFormatError) -> ResponseFormatError:
        reason = exc.reason
        width = _WIDTH.fullmatch(reason)
        if width is not None:
            reason = (
                f"CSV record {parser.records} has {width['got']} fields, the header has "
                f"{width['expected']}"
            )
        elif reason.startswith("cannot decode"):
            reason = f"CSV body is not valid {encoding}: {reason}"
        else:
            reason = f"malformed CSV at line {exc.line}: {reason}"
        return ResponseFormatError(reason, line=exc.line, snippet=exc.snippet)

    async with aclosing(_batches(parser, chunks, batch_size, describe)) as batches:
        async for batch in batches:
            yield batch


async def _batches(
    parser: RecordParser,
    chunks: AsyncIterator[bytes],
    batch_size: int,
    describe: Callable[[FileFormatError], ResponseFormatError],
) -> AsyncGenerator[Batch, None]:
    """Feed the chunks of a body to ``parser``; yield its records in batches."""
    batch: list[Record] = []
    try:
        async for chunk in chunks:
            records = parser.feed(chunk)
            if not records:
                continue
            batches, batch = cut_batches(batch, records, batch_size)
            for full in batches:
                yield full
        batch.extend(parser.finish())
    except FileFormatError as exc:
        raise describe(exc) from None
    for start in range(0, len(batch), batch_size):
        yield batch[start : start + batch_size]


# Bytes of body parsed by pyarrow at once.
_ARROW_PIECE = 4 << 20


async def iter_arrow(
    chunks: AsyncIterator[bytes],
    batch_size: int,
    *,
    kind: str,
    encoding: str = "utf-8",
    delimiter: str = ",",
    max_record_size: int = _MAX_RECORD,
) -> AsyncGenerator[pa.Table, None]:
    """Decode a JSON Lines (``kind="ndjson"``) or CSV body into Arrow tables of ``batch_size``
    rows, parsed by pyarrow a piece at a time (no Python object per row).

    A piece pyarrow rejects is parsed again by the records parser, which names the line (as
    :func:`iter_ndjson` and :func:`iter_csv` do); a record longer than ``max_record_size`` bytes
    raises too.
    """
    parser = PieceParser(kind, delimiter=delimiter, encoding=encoding)
    splitter: CsvSplitter | LineSplitter
    splitter = CsvSplitter(_ARROW_PIECE) if kind == "csv" else LineSplitter(_ARROW_PIECE)
    rebatcher = Rebatcher(batch_size)
    lines_before = 0  # lines of the body in the pieces already parsed

    async def parse(piece: bytes) -> pa.Table:
        if kind == "csv":
            parser.header = getattr(splitter, "header", None) or b""
        try:
            table: pa.Table = await anyio.to_thread.run_sync(parser.parse, piece)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise await _locate(kind, piece, lines_before, parser, encoding, delimiter) from exc
        return table

    async for chunk in chunks:
        for piece in splitter.feed(chunk):
            for table in rebatcher.add(await parse(piece)):
                yield table
            lines_before += piece.count(b"\n")
        if isinstance(splitter, LineSplitter) and splitter.pending > max_record_size:
            raise ResponseFormatError(
                f"a JSON Lines record is longer than max_record_size ({max_record_size} bytes)"
            )
    try:
        rest = splitter.finish()
    except ValueError as exc:
        raise ResponseFormatError(f"malformed CSV: {exc}") from None
    if rest:
        for table in rebatcher.add(await parse(rest)):
            yield table
    for table in rebatcher.finish():
        yield table


async def _locate(
    kind: str,
    piece: bytes,
    lines_before: int,
    parser: PieceParser,
    encoding: str,
    delimiter: str,
) -> ResponseFormatError:
    """The records parser over the rejected piece alone, to name the bad line of the body."""

    async def replay() -> AsyncIterator[bytes]:
        if kind == "csv":
            yield parser.header
        yield piece

    records = (
        iter_csv(replay(), 1 << 20, encoding=encoding, delimiter=delimiter)
        if kind == "csv"
        else iter_ndjson(replay(), 1 << 20)
    )
    try:
        async with aclosing(records) as batches:
            async for _ in batches:
                pass
    except ResponseFormatError as located:
        if located.line is None:
            return located
        line = located.line + lines_before
        message = str(located).replace(f"line {located.line}", f"line {line}", 1)
        return ResponseFormatError(message, line=line, snippet=located.snippet)
    return ResponseFormatError(
        f"the {'CSV' if kind == 'csv' else 'JSON Lines'} body does not parse into columns of "
        "one type each (pyarrow keeps the types of the first rows); read it as records"
    )

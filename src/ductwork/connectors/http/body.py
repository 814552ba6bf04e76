"""Reading a response body: its chunks within the request deadline, decoded, as batches."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing

import anyio
import httpx

from ...core.arrow import to_arrow
from ...core.types import Batch
from ..compression import CONTENT_CODINGS, CorruptDataError, Decoder, make_content_decoder
from .config import HttpExtractorConfig
from .formats import ResponseFormatError, iter_arrow, iter_csv, iter_ndjson, json_records
from .paging import PageInfo

SNIPPET = 200
"""The most of an error response's body an error quotes, in characters."""

_DECODED_PIECE = 1024 * 1024
"""Bytes of a compressed body decoded at a time (the parsers' bound per chunk)."""


class DeadlineExceeded(httpx.TimeoutException):
    """A request (sending it, its redirects and reading its body) took longer than
    ``request_deadline``; retried as a timeout is."""

    def __init__(self) -> None:
        super().__init__("the request took longer than request_deadline")


async def until(deadline: float | None, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The chunks of a body, raising :class:`DeadlineExceeded` once ``deadline`` passes.

    Each wait for a chunk is bounded by its own cancel scope, which never spans a ``yield``."""
    if deadline is None:
        async for chunk in chunks:
            yield chunk
        return
    iterator = chunks.__aiter__()
    while True:
        with anyio.move_on_after(deadline - anyio.current_time()) as scope:
            try:
                chunk = await iterator.__anext__()
            except StopAsyncIteration:
                return
        if scope.cancelled_caught:
            raise DeadlineExceeded
        yield chunk


def body(response: httpx.Response, deadline: float | None) -> AsyncIterator[bytes]:
    """The decoded chunks of a response body, within ``deadline``.

    A body with ``Content-Encoding: gzip``, ``deflate`` or ``zstd``, or several of them in
    turn (``gzip, gzip``), is decoded here in pieces of at most a MiB (httpx's own decoders turn
    each network chunk into all of its output at once, which a highly compressible body makes
    arbitrarily large); a body in a coding not listed here is left to httpx.
    """
    header = response.headers.get("content-encoding", "")
    codings = [name.strip().lower() for name in header.split(",")]
    codings = [name for name in codings if name and name != "identity"]
    if not codings or not all(name in CONTENT_CODINGS for name in codings):
        return until(deadline, response.aiter_bytes())
    decoder = make_content_decoder(codings)
    return _decoded(decoder, header.strip(), until(deadline, response.aiter_raw()))


async def _decoded(
    decoder: Decoder, coding: str, chunks: AsyncIterator[bytes]
) -> AsyncIterator[bytes]:
    try:
        async for chunk in chunks:
            decoder.feed(chunk)
            while piece := decoder.read(_DECODED_PIECE):
                yield piece
        decoder.finish()
    except CorruptDataError as exc:
        raise ResponseFormatError(f"the {coding} response body is corrupt: {exc}") from None


async def read_snippet(response: httpx.Response, deadline: float | None) -> str:
    """The start of an error response's body, without reading a large body whole."""
    data = b""
    try:
        async for chunk in body(response, deadline):
            data += chunk
            if len(data) >= SNIPPET:
                break
    except httpx.TransportError:
        pass  # the status is the error; a broken error body only shortens the snippet
    text = data[:SNIPPET].decode(response.encoding or "utf-8", "replace").strip()
    return text[: SNIPPET - 3] + "..." if len(data) > SNIPPET else text


async def iter_batches(
    config: HttpExtractorConfig, response: httpx.Response, info: PageInfo, deadline: float | None
) -> AsyncGenerator[Batch, None]:
    """The batches of a successful response's body, in ``config``'s format and batch kind,
    counting its records into ``info``."""
    fmt = "ndjson" if config.response_format == "jsonl" else config.response_format
    size = config.batch_size
    chunks = body(response, deadline)
    arrow = config.batch_format == "arrow"
    if fmt == "json":
        raw = b"".join([chunk async for chunk in chunks])
        records, info.body = json_records(raw, config.records_path)
        info.records = len(records)
        for start in range(0, len(records), size):
            part = records if len(records) <= size else records[start : start + size]
            yield to_arrow(part) if arrow else part  # a JSON body: converted per batch
        return
    if arrow:
        tables = iter_arrow(
            chunks,
            size,
            kind="csv" if fmt == "csv" else "ndjson",
            encoding=response.charset_encoding or config.encoding,
            delimiter=config.csv_delimiter,
            max_record_size=config.max_record_size,
        )
        async with aclosing(tables) as batches:
            async for table in batches:
                info.records += table.num_rows
                yield table
        return
    if fmt == "ndjson":
        stream = iter_ndjson(chunks, size, max_record_size=config.max_record_size)
    else:
        stream = iter_csv(
            chunks,
            size,
            encoding=response.charset_encoding or config.encoding,
            delimiter=config.csv_delimiter,
            max_record_size=config.max_record_size,
        )
    async with aclosing(stream) as batches:
        async for batch in batches:
            info.records += len(batch)
            yield batch

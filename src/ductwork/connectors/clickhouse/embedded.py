"""Embedded ClickHouse: the connector's HTTP requests answered in-process by chDB.

``ClickHouseConfig(url="chdb:///var/lib/etl/clickhouse")`` (or ``"chdb://"`` for an engine in
memory) runs the ClickHouse extractor and loader on chDB, the ClickHouse engine as a library (the
``chdb-core`` package: ``pip install 'ductwork[chdb]'``). :class:`EmbeddedTransport` is an httpx
transport answering the requests of ClickHouse's HTTP interface with this process's engine
(:mod:`.embedded_engine`: one data path per process, calls in worker threads, cancellation), so
aiochclient, the extractor and the loader work unchanged: the same types, errors and batching as
over HTTP.

- **Requests**: a connection per request: ``USE`` the ``database`` parameter, ``SET`` the
  settings of the query string, then run the query (in the URL, the body, or both, as the server
  joins them) with the ``param_*`` values as query parameters. ``INSERT ... FORMAT X`` in the URL
  streams the body into the insert. A ``GET`` is read-only (``readonly=2``), as on the server;
  ``/ping`` answers ``Ok.``.
- **Streamed results**: a query's result goes out block by block as chDB produces it. chDB formats
  each block as a whole output, so the blocks are joined as the server would write them: the
  header of ``*WithNames[AndTypes]`` formats and ArrowStream's schema once, ArrowStream's end
  marker at the end, ``Values`` blocks joined by commas. Formats that do not stream (``JSON``,
  ``Pretty``, ``Parquet``, ...) are produced whole, as are statements chDB does not stream (DDL,
  ``INSERT ... SELECT``, ``SHOW``, ``DESCRIBE``).
- **Errors** look like the server's: before the first block, the HTTP status of the error code,
  ``X-ClickHouse-Exception-Code`` and a ``Code: N. DB::Exception: ...`` body; after it, the
  exception block of 25.11+ servers ends the body (its tag in ``X-ClickHouse-Exception-Tag``).
- **Timeouts**: the request's read timeout bounds each call (the wait for every block of a
  result, each step of an insert); one that takes longer is killed and raises ``ReadTimeout``.

Nothing crosses a network: credentials, ``session_id``, compression and progress headers are
not used (``SET``, ``USE`` and temporary tables last one request), and the native ``compress=1``
protocol is refused.
"""

from __future__ import annotations

import functools
import json
import random
import re
import uuid
import zlib
from collections.abc import AsyncIterator, Callable

import anyio
import httpx

from .embedded_engine import (
    Call,
    EngineError,
    embedded_path,
    engine_error,
    open_engine,
    started_engine,
)

__all__ = ["EmbeddedTransport"]

# Query-string names that are not settings (the server's reserved parameters).
_NOT_SETTINGS = frozenset(
    str.split(
        "query database default_format user password quota_key query_id session_id"
        " session_timeout session_check close_session buffer_size wait_end_of_query stacktrace"
        " role compress decompress client_protocol_version"
    )
)
_INSERT = re.compile(r"\s*(INSERT\s+INTO\s.*?)\s+(?:FORMAT\s+(\w+)|VALUES)\s*", re.I | re.S)
_FORMAT = re.compile(r"\bFORMAT\s+(\w+)(?:\s+SETTINGS\s[^;]*)?\s*;?\s*$", re.I | re.S)
_ARROW_END = b"\xff\xff\xff\xff\x00\x00\x00\x00"
_MAX_EXCEPTION = 16 * 1024 - 77  # the server's limit on an exception block's message

# The server's HTTP status per error code (exceptionCodeToHTTPStatus.cpp); others are 500.
_STATUS: dict[int, int] = {
    **dict.fromkeys(
        (6, 8, 15, 25, 26, 27, 36, 37, 38, 41, 44, 53, 62, 72, 117, 123, 167, 168, 223, 321, 376),
        400,
    ),
    **dict.fromkeys((427, 441, 675, 676), 400),
    **dict.fromkeys((46, 47, 50, 56, 60, 63, 73, 78, 81, 115, 152, 336, 511), 404),
    194: 401,
    **dict.fromkeys((192, 193, 497, 512, 516), 403),
    159: 408,
    381: 411,
    229: 413,
    779: 415,
    48: 501,
    **dict.fromkeys((76, 209, 439), 503),
}

# Formats whose per-block outputs concatenate into the whole output.
_ROW_FORMATS = frozenset(
    str.split(
        "tabseparated tsv tabseparatedraw tsvraw raw csv customseparated jsoneachrow jsonlines"
        " ndjson jsonstringseachrow jsoncompacteachrow jsoncompactstringseachrow lineasstring tskv"
        " rawblob rowbinary native msgpack bsoneachrow null"
    )
)


# --------------------------------------------------------------------------- errors


def _error_response(error: EngineError, headers: dict[str, str]) -> httpx.Response:
    body = error.text.rstrip("\n").encode() + b"\n"
    headers = {
        **headers,
        "Content-Type": "text/plain; charset=UTF-8",
        "X-ClickHouse-Exception-Code": str(error.code),
    }
    return httpx.Response(_STATUS.get(error.code, 500), headers=headers, content=body)


def _exception_block(error: EngineError, tag: str) -> bytes:
    """The block a 25.11+ server ends a body with when the query fails after the first block."""
    text = error.text.encode()[:_MAX_EXCEPTION].rstrip(b"\n") + b"\n"
    name = tag.encode()
    return b"\r\n__exception__\r\n%s\r\n%s%d %s\r\n__exception__\r\n" % (
        name,
        text,
        len(text),
        name,
    )


# --------------------------------------------------------------------------- results


class _Blocks:
    """Joins chDB's per-block outputs of a format into the output the server writes."""

    def __init__(self, fmt: str) -> None:
        name = fmt.lower()
        self.header = 0  # header sections (names, types) every block's output repeats
        self.kind = "whole"
        for suffix, sections in (("withnamesandtypes", 2), ("withnames", 1)):
            if name.endswith(suffix) and name[: -len(suffix)] in _ROW_FORMATS:
                self.header = sections
                self.kind = "binary" if name.startswith("rowbinary") else "text"
                return
        if name in _ROW_FORMATS:
            self.kind = "rows"
        elif name in ("arrowstream", "values"):
            self.kind = name

    @property
    def streamed(self) -> bool:
        return self.kind != "whole"

    @property
    def needs_header(self) -> bool:
        """Whether an empty result still has output (a header, a schema)."""
        return self.kind in ("text", "binary", "arrowstream")

    def join(self, data: bytes, first: bool) -> bytes:
        """The output of one block, without what the first block's output already had."""
        if self.kind == "arrowstream":
            data = data.removesuffix(_ARROW_END)
            if not first and data[:4] == b"\xff\xff\xff\xff":  # the schema message
                data = data[8 + int.from_bytes(data[4:8], "little") :]
            return data
        if first or self.kind == "rows":
            return data
        if self.kind == "values":
            return b"," + data
        if self.kind == "text":
            start = 0
            for _ in range(self.header):
                start = data.index(b"\n", start) + 1
            return data[start:]
        return data[_binary_header_end(data, self.header) :]

    def end(self) -> bytes:
        """What ends the output of a non-empty result."""
        return _ARROW_END if self.kind == "arrowstream" else b""


def _binary_header_end(data: bytes, sections: int) -> int:
    """Where the header of a ``RowBinaryWithNames[AndTypes]`` output ends: a column count, then
    ``sections`` lists of that many strings, all length-prefixed with LEB128 varints."""
    pos = 0

    def varint() -> int:
        nonlocal pos
        value = shift = 0
        while True:
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value

    for _ in range(varint() * sections):
        size = varint()
        pos += size
    return pos


class _ResultBody(httpx.AsyncByteStream):
    """A streamed result: the first block, then the rest as the consumer reads."""

    def __init__(self, call: Call, blocks: _Blocks, first: bytes, tag: str) -> None:
        self.call = call
        self.blocks = blocks
        self.first = first
        self.tag = tag

    async def __aiter__(self) -> AsyncIterator[bytes]:
        call, blocks = self.call, self.blocks
        yield blocks.join(self.first, True)
        while call.streaming:
            try:
                data = await call.run(call.fetch)
            except httpx.TimeoutException:
                raise
            except Exception as exc:
                yield _exception_block(engine_error(exc), self.tag)
                return
            if data is None:
                break
            yield blocks.join(data, False)
        yield blocks.end()

    async def aclose(self) -> None:
        await self.call.close()


# --------------------------------------------------------------------------- the transport


class EmbeddedTransport(httpx.AsyncBaseTransport):
    """An httpx transport answering ClickHouse HTTP requests with this process's chDB engine.

    Requests go to any URL (``Connection`` uses :attr:`url`); ``/ping`` answers ``Ok.``. See the
    module docs for what is supported.

    Args:
        url: a ``chdb://`` URL: the engine's data path.
    """

    url = "http://embedded.chdb/"
    """The base URL of the requests (a placeholder: nothing is sent anywhere)."""

    def __init__(self, url: str) -> None:
        path = embedded_path(url)
        if path is None:
            raise ValueError(f"{url!r} is not a chdb:// URL")
        self.path = path

    @classmethod
    def for_url(cls, url: str) -> EmbeddedTransport | None:
        """A transport for a ``chdb://`` URL; ``None`` for any other."""
        return cls(url) if embedded_path(url) is not None else None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        headers = {"X-ClickHouse-Server-Display-Name": "chdb"}
        engine = started_engine(self.path)
        if engine is None:
            try:  # the first request starts the engine (imports chDB: a moment)
                engine = await anyio.to_thread.run_sync(open_engine, self.path)
            except ImportError:
                raise
            except Exception as exc:
                return _error_response(engine_error(exc), headers)
        headers["X-ClickHouse-Timezone"] = engine.timezone
        if request.url.path == "/ping":
            return httpx.Response(200, headers=headers, content=b"Ok.\n")
        params = request.url.params
        headers["X-ClickHouse-Query-Id"] = params.get("query_id") or str(uuid.uuid4())
        settings = {
            name: value
            for name, value in params.multi_items()
            if name not in _NOT_SETTINGS and not name.startswith("param_")
        }
        if request.method == "GET":
            settings.setdefault("readonly", "2")
        timeout = request.extensions.get("timeout", {}).get("read")
        call = Call(engine, settings, timeout)
        database = params.get("database") or request.headers.get("X-ClickHouse-Database")
        query = params.get("query", "")
        fmt = params.get("default_format") or request.headers.get("X-ClickHouse-Format")
        query_params = {
            name[6:]: value for name, value in params.multi_items() if name.startswith("param_")
        }
        try:
            if "1" in (params.get("compress"), params.get("decompress")):
                raise EngineError(
                    48,
                    "DB::Exception: compress=1 and decompress=1 are not supported in-process."
                    " (NOT_IMPLEMENTED)",
                )
            await call.run(lambda: call.open(database))
            insert = _INSERT.fullmatch(query) if request.method == "POST" else None
            if insert is not None:
                return await self._insert(call, request, insert, headers)
            body = await _request_body(request)
            sql = f"{query}\n{body}" if query and body else query or body
            if not sql.strip():
                raise EngineError(62, "DB::Exception: Empty query. (SYNTAX_ERROR)")
            match = _FORMAT.search(sql)
            fmt = match.group(1) if match else fmt or "TabSeparated"
            response = await self._query(call, sql, fmt, query_params, headers)
        except httpx.TimeoutException:
            await call.close()
            raise
        except anyio.get_cancelled_exc_class():
            await call.close()
            raise
        except Exception as exc:
            await call.close()
            return _error_response(engine_error(exc), headers)
        return response

    async def _query(
        self,
        call: Call,
        sql: str,
        fmt: str,
        query_params: dict[str, str],
        headers: dict[str, str],
    ) -> httpx.Response:
        blocks = _Blocks(fmt)
        headers = {**headers, "X-ClickHouse-Format": fmt, "Content-Type": _content_type(fmt)}

        def first_block() -> bytes | None:
            """The first block's output (``None``: the result is empty, or not streamed)."""
            return call.fetch() if call.start(sql, fmt, query_params) else None

        def whole() -> bytes:
            return bytes(call.conn.query(sql, fmt, params=query_params).bytes())

        first = await call.run(first_block) if blocks.streamed else None
        if first is not None:
            tag = "".join(random.choices("abcdefghijklmnopqrstuvwxyz", k=16))
            headers["X-ClickHouse-Exception-Tag"] = tag
            body = _ResultBody(call, blocks, first, tag)
            return httpx.Response(200, headers=headers, stream=body)
        # Not streamed, or empty: an empty result of a format with a header still has the
        # header, which chDB writes only with a block, so its SELECT runs again, whole.
        content = b""
        if call.stream is None or blocks.needs_header:
            content = await call.run(whole)
        await call.close()
        return httpx.Response(200, headers=headers, content=content)

    async def _insert(
        self,
        call: Call,
        request: httpx.Request,
        insert: re.Match[str],
        headers: dict[str, str],
    ) -> httpx.Response:
        statement, fmt = insert.group(1), insert.group(2) or "Values"
        call.inserter = await call.run(lambda: call.conn.send_insert(statement, fmt))
        decode = _decoder(request.headers.get("Content-Encoding", ""))
        async for chunk in _body_chunks(request):
            data = decode(chunk) if decode else chunk
            if data:
                await call.run(functools.partial(call.inserter.append, data))
        if decode and (tail := decode(b"", True)):
            await call.run(functools.partial(call.inserter.append, tail))
        inserter, call.inserter = call.inserter, None
        result = await call.run(inserter.finish)
        await call.close()
        summary = {"written_rows": str(result.rows_written)}
        summary["written_bytes"] = str(result.bytes_written)
        headers["X-ClickHouse-Summary"] = json.dumps(summary, separators=(",", ":"))
        return httpx.Response(200, headers=headers, content=b"")


async def _body_chunks(request: httpx.Request) -> AsyncIterator[bytes]:
    stream = request.stream
    if isinstance(stream, httpx.AsyncByteStream):
        async for chunk in stream:
            yield chunk
    else:
        for chunk in stream:
            yield chunk


async def _request_body(request: httpx.Request) -> str:
    data = b"".join([chunk async for chunk in _body_chunks(request)])
    decode = _decoder(request.headers.get("Content-Encoding", ""))
    if decode:
        data = decode(data) + decode(b"", True)
    return data.decode("utf-8", errors="replace")


def _decoder(encoding: str) -> Callable[..., bytes] | None:
    """A decompressor ``(data, final=False) -> bytes`` for a request's Content-Encoding."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise EngineError(
            48, f"DB::Exception: Unsupported Content-Encoding {encoding!r}. (NOT_IMPLEMENTED)"
        )
    inflater = zlib.decompressobj(15 if encoding == "deflate" else 31)

    def decode(data: bytes, final: bool = False) -> bytes:
        return inflater.flush() if final else inflater.decompress(data)

    return decode


def _content_type(fmt: str) -> str:
    name = fmt.lower()
    if name.startswith(("native", "rowbinary", "parquet", "arrow", "orc", "avro", "msgpack")):
        return "application/octet-stream"
    if name.startswith("csv"):
        return "text/csv; charset=UTF-8"
    if name.startswith(("tabseparated", "tsv")):
        return "text/tab-separated-values; charset=UTF-8"
    if name.startswith(("json", "ndjson")):
        return "application/json; charset=UTF-8"
    return "text/plain; charset=UTF-8"

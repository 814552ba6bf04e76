"""Embedded ClickHouse: the connector's HTTP requests answered in-process by chDB.

``ClickHouseConfig(url="chdb:///var/lib/etl/clickhouse")`` (or ``"chdb://"`` for an engine in
memory) runs the ClickHouse extractor and loader on chDB, the ClickHouse engine as a library (the
``chdb-core`` package: ``pip install 'ductwork[chdb]'``). :class:`EmbeddedTransport` is an httpx
transport answering the requests of ClickHouse's HTTP interface by calling chDB, so aiochclient,
the extractor and the loader work unchanged: the same types, errors and batching as over HTTP.

- **One engine per process**, on one data path (a second path is refused, naming both), from its
  first request to the end of the process: chDB stops the engine when its last connection closes,
  so one connection stays open. chDB is imported on first use (about 0.2 s; the engine takes some
  260-400 MB of memory).
- **A connection per request**: ``USE`` the ``database`` parameter, ``SET`` the settings of the
  query string, then run the query (in the URL, the body, or both, as the server joins them) with
  the ``param_*`` values as query parameters. ``INSERT ... FORMAT X`` in the URL streams the body
  into the insert. A ``GET`` is read-only (``readonly=2``), as on the server.
- **Streamed results**: a query's result goes out block by block as chDB produces it. chDB formats
  each block as a whole output, so the blocks are joined as the server would write them: the
  header of ``*WithNames[AndTypes]`` formats and ArrowStream's schema once, ArrowStream's end
  marker at the end, ``Values`` blocks joined by commas. Formats that do not stream (``JSON``,
  ``Pretty``, ``Parquet``, ...) are produced whole, as are statements chDB does not stream (DDL,
  ``INSERT ... SELECT``, ``SHOW``, ``DESCRIBE``).
- **Errors** look like the server's: before the first block, the HTTP status of the error code,
  ``X-ClickHouse-Exception-Code`` and a ``Code: N. DB::Exception: ...`` body; after it, the
  exception block of 25.11+ servers ends the body (its tag in ``X-ClickHouse-Exception-Tag``).
- **Threads and cancellation**: every blocking call runs in a worker thread. A cancelled call (a
  cancelled run, a read timeout) kills its query (``KILL QUERY``) and waits for the thread, and a
  result closed early stops its query, so nothing keeps running. The read timeout of the request
  bounds each call: the wait for every block of a result, an insert.

Nothing crosses a network: credentials, ``session_id``, compression, progress headers and the
native ``compress`` protocol are not used (a session's ``SET``, ``USE`` and temporary tables end
with its request).
"""

from __future__ import annotations

import atexit
import functools
import importlib
import importlib.util
import json
import os
import random
import re
import threading
import uuid
import zlib
from collections.abc import AsyncIterator, Callable
from contextlib import suppress
from typing import Any, Generic, TypeVar

import anyio
import httpx

__all__ = [
    "EmbeddedTransport",
    "embedded_path",
    "embedded_url",
    "engine_path",
]

T = TypeVar("T")

SCHEME = "chdb://"
_INSTALL_HINT = "pip install 'ductwork[chdb]'"

# Query-string names that are not settings (the server's reserved parameters).
_NOT_SETTINGS = frozenset(
    str.split(
        "query database default_format user password quota_key query_id session_id"
        " session_timeout session_check close_session buffer_size wait_end_of_query stacktrace"
        " role compress decompress client_protocol_version"
    )
)
# chDB's defaults differ from the server's here.
_SERVER_DEFAULTS = {
    "allow_introspection_functions": "0",
    "implicit_select": "0",
    "storage_file_read_method": "pread",
}
_SETTING_NAME = re.compile(r"\w+")
_INSERT = re.compile(r"\s*(INSERT\s+INTO\s.*?)\s+(?:FORMAT\s+(\w+)|VALUES)\s*", re.I | re.S)
_FORMAT = re.compile(r"\bFORMAT\s+(\w+)(?:\s+SETTINGS\s[^;]*)?\s*;?\s*$", re.I | re.S)
_CODE = re.compile(r"Code: (\d+)\. ")
_NOT_STREAMED = "Streaming query is not supported"
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


# --------------------------------------------------------------------------- URLs and the engine


def embedded_path(url: str) -> str | None:
    """The data path of a ``chdb://`` URL: ``""`` for ``chdb://`` (in memory), the normalised
    absolute path for ``chdb:///abs/path``; ``None`` for any other URL.

    Raises:
        ValueError: a ``chdb:`` URL that is neither.

    Example:
        >>> embedded_path("chdb:///var/lib/etl/"), embedded_path("chdb://")
        ('/var/lib/etl', '')
        >>> embedded_path("http://localhost:8123") is None
        True
    """
    if url[:5].lower() != "chdb:":
        return None
    rest = url[len(SCHEME) :] if url[: len(SCHEME)].lower() == SCHEME else None
    if rest is None or (rest and not rest.startswith("/")) or "?" in rest or "#" in rest:
        raise ValueError(
            f"{url!r} is not an embedded ClickHouse URL: chdb:///absolute/path for a data "
            f"directory, or chdb:// for an engine in memory"
        )
    if not rest:
        return ""
    path = os.path.normpath(rest)
    if path in ("/", "//"):
        raise ValueError(f"{url!r}: the data directory cannot be the root directory")
    return path


def _describe(path: str) -> str:
    return SCHEME + path if path else f"{SCHEME} (in memory)"


def embedded_url(url: str) -> str:
    """Check a ``chdb://`` URL and return it normalised (the check of ``ClickHouseConfig.url``).

    Raises:
        ValueError: a malformed URL; chDB is not installed; or this process's engine already
            runs on another data path (chDB runs one per process).
    """
    path = embedded_path(url)
    if path is None:
        raise ValueError(f"{url!r} is not a chdb:// URL")
    if importlib.util.find_spec("chdb") is None:
        raise ValueError(f"chdb:// needs chDB, the embedded ClickHouse engine: {_INSTALL_HINT}")
    running = engine_path()
    if running is not None and running != path:
        raise ValueError(_one_path(running, path))
    return SCHEME + path


def _one_path(running: str, wanted: str) -> str:
    return (
        f"this process's embedded ClickHouse runs on {_describe(running)}, so it cannot open "
        f"{_describe(wanted)}: chDB runs one data path per process"
    )


def engine_path() -> str | None:
    """The data path of this process's embedded engine (``""``: in memory), ``None`` before one
    was started."""
    engine = _engine
    return None if engine is None else engine.path


class _Engine:
    """The process's chDB engine, kept running by one connection held open."""

    def __init__(self, path: str) -> None:
        try:
            self.chdb: Any = importlib.import_module("chdb")
        except ImportError as exc:
            raise ImportError(f"embedded ClickHouse (chdb://) needs chDB: {_INSTALL_HINT}") from exc
        self.path = path
        self.target = path or ":memory:"
        self.lock = threading.Lock()
        self.base = self.chdb.connect(self.target)
        atexit.register(self.base.close)
        version, timezone = self.base.query("SELECT version(), timezone()", "TSV").bytes().split()
        self.version = version.decode()
        self.timezone = timezone.decode()

    def connect(self) -> Any:
        with self.lock:  # chDB's connect is not thread-safe
            return self.chdb.connect(self.target)

    def kill(self, marker: str) -> None:
        """Kill the queries of the request with this marker (its ``log_comment``)."""
        conn = self.connect()
        try:
            conn.query(f"KILL QUERY WHERE Settings['log_comment'] = '{marker}' ASYNC")
        finally:
            conn.close()


_engine: _Engine | None = None
_engine_lock = threading.Lock()


def _open_engine(path: str) -> _Engine:
    """The process's engine, started on ``path`` if there is none yet.

    Raises:
        _EngineError: it runs on another path.
    """
    global _engine
    with _engine_lock:
        if _engine is None:
            _engine = _Engine(path)
        elif _engine.path != path:
            raise _EngineError(36, f"{_one_path(_engine.path, path)}. (BAD_ARGUMENTS)")
        return _engine


# --------------------------------------------------------------------------- errors


class _EngineError(Exception):
    """An error to answer with: the code and the server's text."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.text = message if message.startswith("Code: ") else f"Code: {code}. {message}"


def _engine_error(exc: BaseException) -> _EngineError:
    """The code and text of an error chDB raised (its messages carry the server's text after a
    prefix such as ``Streaming query failed: ``)."""
    if isinstance(exc, _EngineError):
        return exc
    text = str(exc).strip()
    if match := _CODE.search(text):
        return _EngineError(int(match.group(1)), text[match.start() :])
    return _EngineError(1001, f"DB::Exception: {text or type(exc).__name__}. (STD_EXCEPTION)")


def _error_response(error: _EngineError, headers: dict[str, str]) -> httpx.Response:
    body = error.text.rstrip("\n").encode() + b"\n"
    headers = {
        **headers,
        "Content-Type": "text/plain; charset=UTF-8",
        "X-ClickHouse-Exception-Code": str(error.code),
    }
    return httpx.Response(_STATUS.get(error.code, 500), headers=headers, content=body)


def _exception_block(error: _EngineError, tag: str) -> bytes:
    """The block a 25.11+ server ends a body with when the query fails after the first block."""
    text = error.text.encode()[:_MAX_EXCEPTION].rstrip(b"\n") + b"\n"
    name = tag.encode()
    return b"\r\n__exception__\r\n%s\r\n%s%d %s\r\n__exception__\r\n" % (
        name,
        text,
        len(text),
        name,
    )


# --------------------------------------------------------------------------- one request


class _Work(Generic[T]):
    """A blocking call for a worker thread that can be abandoned before it starts."""

    def __init__(self, fn: Callable[[], T]) -> None:
        self.fn = fn
        self.lock = threading.Lock()
        self.state = "pending"
        self.done = threading.Event()

    def __call__(self) -> T | None:
        with self.lock:
            if self.state == "abandoned":
                return None
            self.state = "running"
        try:
            return self.fn()
        finally:
            self.done.set()

    def abandon(self) -> bool:
        """Whether the call will never run (else it is running, or ran)."""
        with self.lock:
            if self.state == "pending":
                self.state = "abandoned"
            return self.state == "abandoned"


class _Call:
    """One request's engine connection. Its blocking calls run in worker threads; a cancelled
    call kills the request's query and waits for its thread."""

    def __init__(self, engine: _Engine, settings: dict[str, str], timeout: float | None) -> None:
        self.engine = engine
        # The marker KILL QUERY finds the request's queries by (unless the request sets
        # log_comment itself: then a cancelled call is waited for without being killed).
        self.marker = None if "log_comment" in settings else uuid.uuid4().hex
        self.settings = {**_SERVER_DEFAULTS, **settings}
        if self.marker is not None:
            self.settings["log_comment"] = self.marker
        self.timeout = timeout
        self.conn: Any = None
        self.stream: Any = None  # a streaming result
        self.streaming = False  # whether it has blocks still to come
        self.inserter: Any = None  # an open streaming insert

    def open(self, database: str | None) -> None:
        """Connect, then ``USE`` the database and ``SET`` the settings (in a worker thread)."""
        if bad := [name for name in self.settings if not _SETTING_NAME.fullmatch(name)]:
            raise _EngineError(115, f"DB::Exception: Unknown setting '{bad[0]}'. (UNKNOWN_SETTING)")
        self.conn = self.engine.connect()
        if database:
            self.conn.query(f"USE {_quote(database, '`')}")
        pairs = ", ".join(f"{name} = {_quote(value)}" for name, value in self.settings.items())
        self.conn.query(f"SET {pairs}")

    async def run(self, fn: Callable[[], T]) -> T:
        """``fn()`` in a worker thread, within the request's read timeout.

        Raises:
            httpx.ReadTimeout: it took longer.
        """
        try:
            with anyio.fail_after(self.timeout):
                return await self._run(fn)
        except TimeoutError:
            raise httpx.ReadTimeout(
                f"embedded ClickHouse did not answer within {self.timeout:g} s"
            ) from None

    async def _run(self, fn: Callable[[], T]) -> T:
        work = _Work(fn)
        try:
            result = await anyio.to_thread.run_sync(work, abandon_on_cancel=True)
        except anyio.get_cancelled_exc_class():
            if not work.abandon():
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(self._stop, work.done)
            raise
        return result  # type: ignore[return-value]  # None only when abandoned

    def _stop(self, done: threading.Event) -> None:
        while not done.wait(0.05):
            if self.marker is not None:
                self.engine.kill(self.marker)

    def start(self, sql: str, fmt: str, params: dict[str, str]) -> bool:
        """Start streaming the result of ``sql``; ``False`` if chDB does not stream it."""
        try:
            self.stream = self.conn.send_query(sql, fmt, params=params)
        except RuntimeError as exc:
            if _NOT_STREAMED not in str(exc):
                raise
            return False
        self.streaming = True
        return True

    def fetch(self) -> bytes | None:
        """The next block's output (``None``: the result is complete)."""
        try:
            chunk = self.stream.fetch()
        except BaseException:
            self.streaming = False
            raise
        if chunk is None:
            self.streaming = False
            return None
        return bytes(chunk.bytes())

    async def close(self) -> None:
        """End the request: stop a query still running, drop an unfinished insert, disconnect."""
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self._close)

    def _close(self) -> None:
        stream, inserter, conn = self.stream, self.inserter, self.conn
        self.stream = self.inserter = self.conn = None
        with suppress(Exception):
            if stream is not None and self.streaming:
                self.streaming = False
                if self.marker is not None:
                    self.engine.kill(self.marker)  # else cancel() waits for the block in flight
                stream.cancel()
        with suppress(Exception):
            if inserter is not None:
                inserter.cancel()
        if conn is not None:
            conn.close()


def _quote(value: str, quote: str = "'") -> str:
    return quote + value.replace("\\", "\\\\").replace(quote, "\\" + quote) + quote


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

    def __init__(self, call: _Call, blocks: _Blocks, first: bytes, tag: str) -> None:
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
                yield _exception_block(_engine_error(exc), self.tag)
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
        engine = _engine
        if engine is None or engine.path != self.path:
            try:  # the first request starts the engine (imports chDB: a moment)
                engine = await anyio.to_thread.run_sync(_open_engine, self.path)
            except ImportError:
                raise
            except Exception as exc:
                return _error_response(_engine_error(exc), headers)
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
        call = _Call(engine, settings, timeout)
        database = params.get("database") or request.headers.get("X-ClickHouse-Database")
        query = params.get("query", "")
        fmt = params.get("default_format") or request.headers.get("X-ClickHouse-Format")
        query_params = {
            name[6:]: value for name, value in params.multi_items() if name.startswith("param_")
        }
        try:
            await call.run(lambda: call.open(database))
            insert = _INSERT.fullmatch(query) if request.method == "POST" else None
            if insert is not None:
                return await self._insert(call, request, insert, headers)
            body = await _request_body(request)
            sql = f"{query}\n{body}" if query and body else query or body
            if not sql.strip():
                raise _EngineError(62, "DB::Exception: Empty query. (SYNTAX_ERROR)")
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
            return _error_response(_engine_error(exc), headers)
        return response

    async def _query(
        self,
        call: _Call,
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
        call: _Call,
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
        raise _EngineError(
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

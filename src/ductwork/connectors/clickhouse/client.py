"""ClickHouse connection settings and the per-run HTTP connection shared by the connector.

:class:`Connection` is the one place where the connector makes HTTP requests: metadata queries,
DDL, streamed results and inserts all go through its httpx client.

**Errors in mid-result.** Once a result has started streaming the server can no longer change the
status code, so when the query fails later it appends the error to the body and (25.11 and later)
closes the connection without ending the body. 25.11+ frame it as ``\r\n__exception__\r\n<TAG>
\r\n<message>\n<N> <TAG>\r\n__exception__\r\n``, ``TAG`` being the response's
``X-ClickHouse-Exception-Tag``; somewhat older servers wrote ``__exception__\r\n<message>\n``,
and the oldest (18.16) just the ``Code: ...`` line. Every body read through
:class:`ResultStream` is scanned for the framed forms (the ``Code:`` line is left to the line
decoders), and the server's error is raised as :class:`~.codec.ServerError` instead of the broken
connection. A compressed response starts only once 1 MiB is compressed (the server buffers it),
so that a query failing before hands back an ordinary error status; uncompressed responses
(``compression=False`` asks for ``Accept-Encoding: identity``, also of servers that compress by
default) stream block by block.
"""

from __future__ import annotations

import functools
import gzip
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Annotated, Any

import anyio
import httpx
import orjson
from aiochclient import ChClient  # type: ignore[import-untyped]
from aiochclient.exceptions import ChClientError  # type: ignore[import-untyped]
from pydantic import BeforeValidator, ConfigDict, Field, SecretStr, field_validator, model_validator

from ...core.config import Options
from . import capabilities as _capabilities
from .bulk import BulkReader, BulkResponse, bulk_eligible
from .capabilities import Capabilities
from .codec import InsertBody, ServerError, valid_identifier
from .embedded import EmbeddedTransport
from .embedded_engine import embedded_url

__all__ = [
    "ClickHouseConfig",
    "Connection",
    "ResultStream",
    "SettingValue",
    "StageOptions",
    "check_settings",
    "short_repr",
]

SettingValue = str | int | float


def _setting_value(value: Any) -> SettingValue:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, str | int | float):
        return value
    raise ValueError(
        f"a setting value must be a string, number or bool, got {type(value).__name__}"
    )


def check_settings(settings: Mapping[str, Any]) -> dict[str, SettingValue]:
    out = {}
    for key, value in settings.items():
        if not valid_identifier(key):
            raise ValueError(f"{key!r} is not a setting name")
        out[key] = _setting_value(value)
    return out


class ClickHouseConfig(Options):
    """How to reach a ClickHouse server over HTTP, or an embedded engine in this process.

    Credentials in the URL (``http://user:password@host:8123``) are moved to ``user`` and
    ``password``; the password is a ``SecretStr``, never shown in reprs, errors or logs.
    ``chdb:///abs/path`` (or ``chdb://``, in memory) runs ClickHouse in-process on chDB (see
    :mod:`ductwork.connectors.clickhouse.embedded`).

    The server may also be given as ClickHouse clients write it, by ``host`` and ``port``
    (default 8123, the HTTP interface) and ``secure`` (``True``: https, default port 8443)
    instead of ``url``; the native protocol's ports (9000, 9440) are refused with a pointer to
    the HTTP one.

    Example:
        >>> config = ClickHouseConfig(url="http://ada:s3cret@db.example:8123", database="sales")
        >>> config.url, config.user, config.password
        ('http://db.example:8123', 'ada', SecretStr('**********'))
        >>> ClickHouseConfig(host="db.example", port=8443, secure=True, user="ada").url
        'https://db.example:8443'
    """

    model_config = ConfigDict(hide_input_in_errors=True)

    url: str = "http://localhost:8123"
    """The server's HTTP endpoint; or ``chdb:///abs/path`` for the embedded engine on that data
    directory, ``chdb://`` for one in memory (one data path per process)."""
    user: Annotated[str, Field(min_length=1)] = "default"
    """The user name."""
    password: SecretStr = SecretStr("")
    """The password."""
    database: str = "default"
    """The default database of every query and insert."""
    settings: dict[str, SettingValue] = Field(default_factory=dict)
    """Server settings sent with every request (``{"max_threads": 4}``)."""
    connect_timeout: Annotated[float, Field(gt=0)] = 10.0
    """Seconds to wait for a connection."""
    read_timeout: Annotated[float, Field(gt=0)] | None = 300.0
    """Seconds to wait for the next bytes of a response (a query may compute for this long
    before its first row arrives); ``None`` waits forever."""
    compression: bool = False
    """Compress responses and gzip insert bodies (worth it over slow networks). Off, responses
    are asked for uncompressed, also of servers that compress by default (26.x), so that a result
    streams as the server produces it."""

    @model_validator(mode="before")
    @classmethod
    def _credentials_from_url(cls, data: Any) -> Any:
        data = _url_from_host(data)
        if not isinstance(data, Mapping) or not isinstance(data.get("url"), str):
            return data
        try:
            url = httpx.URL(data["url"])
        except (httpx.InvalidURL, TypeError, ValueError):
            return data  # the field validator reports it
        if not url.username and not url.password:
            return data
        values = dict(data)
        values["url"] = str(url.copy_with(username=None, password=None))
        if url.username:
            values.setdefault("user", url.username)
        if url.password:
            values.setdefault("password", url.password)
        return values

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if value[:5].lower() == "chdb:":
            return embedded_url(value)
        try:
            url = httpx.URL(value)
        except (httpx.InvalidURL, TypeError, ValueError) as exc:
            raise ValueError(f"not a URL: {exc}") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("must be an http:// or https:// URL with a host, or a chdb:// URL")
        return value.rstrip("/")

    @field_validator("database")
    @classmethod
    def _check_database(cls, value: str) -> str:
        if not valid_identifier(value):
            raise ValueError(f"{value!r} is not a database name (letters, digits, _)")
        return value

    @field_validator("settings", mode="before")
    @classmethod
    def _check_settings(cls, value: Any) -> Any:
        return check_settings(value) if isinstance(value, Mapping) else value


_NATIVE_PORTS = {9000: 8123, 9440: 8443}
"""The native protocol's ports (plain, TLS) and the HTTP interface's ports that go with them."""


def _url_from_host(data: Any) -> Any:
    """``host``/``port``/``secure``, as ClickHouse clients take them, made into ``url``."""
    if not isinstance(data, Mapping) or not {"host", "port", "secure"} & data.keys():
        return data
    values = dict(data)
    host = values.pop("host", "localhost")
    port = values.pop("port", None)
    secure = values.pop("secure", False)
    if "url" in values:
        raise ValueError("give url, or host and port, not both")
    if not isinstance(host, str) or not host:
        raise ValueError(f"host must be a host name, got {host!r}")
    if not isinstance(secure, bool):
        raise ValueError(f"secure must be True or False, got {secure!r}")
    if port is None:
        port = 8443 if secure else 8123
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"port must be a TCP port number, got {port!r}")
    if port in _NATIVE_PORTS:
        raise ValueError(
            f"port {port} is ClickHouse's native protocol; ductwork talks to the HTTP "
            f"interface (port {_NATIVE_PORTS[port]} by default)"
        )
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 address
    values["url"] = f"{'https' if secure else 'http'}://{host}:{port}"
    return values


def _connection(value: Any) -> Any:
    """``connection_config`` as given: a ClickHouseConfig, a mapping of its fields, a URL, or
    ``None`` for the defaults."""
    if value is None:
        return ClickHouseConfig()
    if isinstance(value, str):
        return {"url": value}
    if isinstance(value, ClickHouseConfig | Mapping):
        return value
    raise ValueError(f"expected a ClickHouseConfig, a mapping or a URL, got {type(value).__name__}")


class StageOptions(Options):
    """Options of the ClickHouse extractor and loader alike."""

    model_config = ConfigDict(hide_input_in_errors=True)
    none_is_default = frozenset({"settings"})

    connection_config: Annotated[ClickHouseConfig, BeforeValidator(_connection)] = (
        ClickHouseConfig()
    )
    """How to reach the server: a :class:`ClickHouseConfig`, a mapping of its fields (or of
    ``host``, ``port``, ``secure``, ``user``, ``password``, ``database``), or a URL (``None``:
    the defaults, ``http://localhost:8123``)."""
    settings: dict[str, SettingValue] = Field(default_factory=dict)
    """Server settings for this stage's requests (the extractor's query, the loader's inserts),
    on top of the connection's (``{"max_execution_time": 60}``)."""
    name: Annotated[str, Field(min_length=1, max_length=200)] = "clickhouse"
    """The stage name."""

    @field_validator("settings", mode="before")
    @classmethod
    def _check_settings(cls, value: Any) -> Any:
        return check_settings(value) if isinstance(value, Mapping) else value


# --------------------------------------------------------------------------- connection


class Connection:
    """One httpx client per run, shared by aiochclient (metadata, DDL) and the bulk paths."""

    def __init__(self, config: ClickHouseConfig, settings: Mapping[str, SettingValue]) -> None:
        self.config = config
        headers = {"X-ClickHouse-User": config.user}
        password = config.password.get_secret_value()
        if password:
            headers["X-ClickHouse-Key"] = password
        # Masked wherever a response is quoted: a server may echo credentials in an error.
        self.secrets = (password,) if password else ()
        if not config.compression:
            headers["Accept-Encoding"] = "identity"
        # chdb:// runs the same requests on the embedded engine, in-process (uncompressed).
        embedded = EmbeddedTransport.for_url(config.url)
        self.http = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(config.read_timeout, connect=config.connect_timeout),
            # Below the server's keep_alive_timeout (3 s by default), so an idle pooled
            # connection is never one the server has just closed.
            limits=httpx.Limits(keepalive_expiry=2.0),
            transport=embedded,
        )
        self.url = config.url + "/" if embedded is None else embedded.url
        # result streams of plain-HTTP servers are read with aiohttp (see .bulk)
        self.bulk: BulkReader | None = None
        if embedded is None and bulk_eligible(config.url, config.compression):
            self.bulk = BulkReader(headers, self.http.timeout)
        merged = {**config.settings, **settings}
        self.settings: dict[str, SettingValue] = merged
        self.params: dict[str, Any] = {"database": config.database, **merged}
        self.compression = config.compression and embedded is None
        if self.compression:
            self.params["enable_http_compression"] = 1
        self.client = ChClient(
            self.http,
            url=self.url,
            database=config.database,
            compress_response=self.compression,
            **merged,
        )
        self._capabilities: Capabilities | None = None

    async def __aenter__(self) -> Connection:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            if self.bulk is not None:
                await self.bulk.aclose()
        finally:
            await self.http.aclose()

    async def capabilities(self) -> Capabilities:
        """What the server can do: detected on the first connection to this URL as this user,
        then cached (see :mod:`.capabilities`).

        Raises:
            ServerError: the server rejected the detection query.
            httpx.TransportError: the server cannot be reached.
        """
        if self._capabilities is None:
            found = _capabilities.cached(self.config.url, self.config.user)
            if found is None:
                found = await self._detect()
                _capabilities.store(self.config.url, self.config.user, found)
            self._capabilities = found
        return self._capabilities

    async def _detect(self) -> Capabilities:
        # Without this run's settings: what is cached holds for every stage of this user.
        plain = {"database": self.config.database}
        try:
            rows = await self.rows(_capabilities.detection_query(), plain, settings=False)
        except ServerError as exc:
            if exc.code != 60:  # UNKNOWN_TABLE: a server without system.formats
                raise
            query = _capabilities.detection_query(with_formats=False)
            rows = await self.rows(query, plain, settings=False)
        probed = None
        if _capabilities.needs_parameter_probe(str(rows[0]["version"])):
            probe = "SELECT {p:UInt8} AS p FORMAT JSONEachRow"
            try:
                probed = await self.rows(probe, {**plain, "param_p": 1}, settings=False)
            except ServerError:
                probed = []
        return _capabilities.from_row(rows[0], None if probed is None else bool(probed))

    async def fetch(self, sql: str) -> list[Any]:
        """Run a query through aiochclient and return its rows."""
        try:
            rows: list[Any] = await self.client.fetch(sql)
        except ChClientError as exc:
            raise ServerError(str(exc)).mask(self.secrets) from None
        return rows

    async def execute(self, sql: str) -> None:
        """Run a statement (DDL, OPTIMIZE) through aiochclient."""
        try:
            await self.client.execute(sql)
        except ChClientError as exc:
            raise ServerError(str(exc)).mask(self.secrets) from None

    async def rows(
        self, sql: str, params: Mapping[str, Any] | None = None, *, settings: bool = True
    ) -> list[dict[str, Any]]:
        """Run a query ending in ``FORMAT JSONEachRow`` (with request parameters such as
        ``param_*``) and return its rows as parsed JSON.

        Raises:
            ServerError: the server rejected the query or failed in mid-result.
        """
        async with self.stream(sql, params or {}, settings=settings) as result:
            body = await result.aread()
        return [orjson.loads(line) for line in body.splitlines() if line.strip()]

    @asynccontextmanager
    async def stream(
        self, sql: str, params: Mapping[str, Any], *, settings: bool = True
    ) -> AsyncIterator[ResultStream]:
        """Send a query and stream its result; with ``settings=False`` only ``params`` go with
        it, not the connection's and the stage's settings.

        Raises:
            ServerError: the server rejected the query (an error status), or failed after the
                result started (raised while the body is read).
        """
        base = self.params if settings else {}
        query = {**base, **params}
        try:
            if self.bulk is not None:
                async with self.bulk.post(self.url, query, sql.encode()) as bulk:
                    result = ResultStream(bulk)
                    await result.check()
                    yield result  # errors decoded from the body, by the caller too, are masked
                return
            async with self.http.stream(
                "POST", self.url, params=query, content=sql.encode()
            ) as response:
                result = ResultStream(response)
                await result.check()
                yield result
        except ServerError as exc:
            exc.mask(self.secrets)
            raise

    async def insert(self, query: str, body: InsertBody, params: Mapping[str, Any]) -> None:
        """POST an insert body.

        Raises:
            ServerError: the server rejected the insert.
            httpx.TransportError: the connection failed (before, while or after the body was
                sent: whether the server wrote the rows is then unknown, unless nothing was sent,
                ``httpx.ConnectError``).
        """
        headers = {}
        if self.compression:
            whole = body if isinstance(body, bytes) else b"".join(body)
            body = await anyio.to_thread.run_sync(
                functools.partial(gzip.compress, whole, compresslevel=1)
            )
            headers["Content-Encoding"] = "gzip"
        headers["Content-Length"] = str(body_size(body))
        try:
            async with self.http.stream(
                "POST",
                self.url,
                params={**self.params, **params, "query": query},
                content=_SentOnce(body),
                headers=headers,
            ) as response:
                result = ResultStream(response)
                await result.check()
                await result.aread()
        except ServerError as exc:
            exc.mask(self.secrets)
            raise


class _SentOnce:
    """An insert body that lets go of its bytes once sent.

    httpx keeps a request's body in a reference cycle (request, response and the connection
    pool's stream) that only the cyclic garbage collector frees; large bytes do not make it
    run, so without this a loader's bodies would pile up for several inserts. With the
    ``Content-Length`` header set, httpx sends it as a plain body, not chunked.
    """

    def __init__(self, body: InsertBody) -> None:
        self._pieces: list[bytes] | None = [body] if isinstance(body, bytes) else list(body)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        pieces, self._pieces = self._pieces, None
        if pieces is None:
            raise RuntimeError("an insert body is sent once")
        pieces.reverse()
        while pieces:
            yield pieces.pop()  # each piece let go once it is sent


def body_size(body: InsertBody) -> int:
    """The bytes in an insert body."""
    return len(body) if isinstance(body, bytes) else sum(map(len, body))


class ResultStream:
    """A streamed response whose body raises the server's error where the server appended one
    (see the module docs), instead of ending early or breaking off."""

    def __init__(self, response: httpx.Response | BulkResponse) -> None:
        self.response = response
        self.status_code = response.status_code
        self.headers = response.headers
        self._scanner = _ExceptionScanner(response.headers.get("X-ClickHouse-Exception-Tag"))

    @property
    def num_bytes_downloaded(self) -> int:
        """Bytes received so far (compressed, if the response is)."""
        return self.response.num_bytes_downloaded

    async def check(self) -> None:
        """Raise the server's error if the response has an error status."""
        if self.status_code != 200:
            await self.response.aread()
            raise ServerError(self.response.text, self.status_code)

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        """The body as it arrives, without the error block.

        Raises:
            ServerError: the server failed in mid-result.
            httpx.TransportError: the connection broke with no error from the server.
        """
        scanner = self._scanner
        gathered = bytearray()  # old servers send 4 KiB chunks, too small to scan one by one
        try:
            async for chunk in self.response.aiter_bytes():
                gathered += chunk
                if len(gathered) < _READ_BYTES:
                    continue
                data = scanner.feed(bytes(gathered))
                gathered.clear()
                if data:
                    yield data
        except httpx.TransportError:
            data = scanner.feed(bytes(gathered))  # the server's error may be in what came last
            if data:
                yield data
            scanner.raise_found()
            raise
        if gathered:
            data = scanner.feed(bytes(gathered))
            if data:
                yield data
        data = scanner.end()
        if data:
            yield data

    async def aread(self) -> bytes:
        """The whole body (see :meth:`aiter_bytes`)."""
        return b"".join([chunk async for chunk in self.aiter_bytes()])


_READ_BYTES = 256 * 1024
_MARK = b"__exception__\r\n"
# The largest error block: the server's MAX_EXCEPTION_SIZE (16 KiB) with the framing.
_BLOCK_LIMIT = 16 * 1024 + 256


def _overlap(data: bytes, needle: bytes) -> int:
    """The length of the longest end of ``data`` that begins ``needle`` (shorter than it)."""
    for n in range(min(len(needle) - 1, len(data)), 0, -1):
        if data.endswith(needle[:n]):
            return n
    return 0


class _ExceptionScanner:
    """Finds the error block in a body passing through, holding back only what may begin one."""

    def __init__(self, tag: str | None) -> None:
        self.tag = tag.encode() if tag else b""
        self.needle = _MARK + (self.tag + b"\r\n" if self.tag else b"")
        self.prefix = b"\r\n" + self.needle
        self.held = b""
        self.block: bytearray | None = None

    def feed(self, chunk: bytes) -> bytes:
        """Take the next piece of body; return what is certainly data."""
        if self.block is not None:
            self.block += chunk
            if self.tag or len(self.block) <= _BLOCK_LIMIT:
                return b""
            # Untagged, and longer than any error: the marker was data. Look past it.
            data = bytes(self.block)
            self.block = None
            past = data.index(self.needle) + len(self.needle)
            return data[:past] + self.feed(data[past:])
        data = self.held + chunk if self.held else chunk
        found = data.find(self.needle)
        if found >= 0:
            start = found - 2 if data[max(0, found - 2) : found] == b"\r\n" else found
            self.block = bytearray(data[start:])
            self.held = b""
            return data[:start]
        keep = max(_overlap(data, self.prefix), _overlap(data, self.needle))
        self.held = data[len(data) - keep :] if keep else b""
        return data[: len(data) - keep] if keep else data

    def raise_found(self) -> None:
        """Raise the server's error if a block has begun."""
        if self.block is None:
            return
        block = bytes(self.block).removeprefix(b"\r\n").removeprefix(_MARK)
        if self.tag:
            block = block.removeprefix(self.tag + b"\r\n")
            trailer = re.search(rb"\n(\d+) " + re.escape(self.tag) + rb"\r\n", block)
            if trailer:
                block = block[: trailer.start()]
        raise ServerError(block.decode("utf-8", "replace"))

    def end(self) -> bytes:
        """The body ended: raise the server's error if it ended with one, else return what was
        held back."""
        self.raise_found()
        held, self.held = self.held, b""
        return held


def short_repr(value: Any, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."

"""ClickHouse connection settings and the per-run HTTP connection shared by the connector."""

from __future__ import annotations

import functools
import gzip
from collections.abc import Mapping
from types import TracebackType
from typing import Annotated, Any

import anyio
import httpx
from aiochclient import ChClient  # type: ignore[import-untyped]
from aiochclient.exceptions import ChClientError  # type: ignore[import-untyped]
from pydantic import BeforeValidator, ConfigDict, Field, SecretStr, field_validator, model_validator

from ...core.config import Options
from .codec import ServerError, valid_identifier
from .embedded import EmbeddedTransport
from .embedded_engine import embedded_url

__all__ = [
    "ClickHouseConfig",
    "Connection",
    "SettingValue",
    "StageOptions",
    "check_settings",
    "server_version",
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

    Example:
        >>> config = ClickHouseConfig(url="http://ada:s3cret@db.example:8123", database="sales")
        >>> config.url, config.user, config.password
        ('http://db.example:8123', 'ada', SecretStr('**********'))
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
    """Gzip responses and insert bodies (worth it over slow networks)."""

    @model_validator(mode="before")
    @classmethod
    def _credentials_from_url(cls, data: Any) -> Any:
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
    """How to reach the server: a :class:`ClickHouseConfig`, a mapping of its fields, or a URL
    (``None``: the defaults, ``http://localhost:8123``)."""
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


def server_version(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


class Connection:
    """One httpx client per run, shared by aiochclient (metadata, DDL) and the bulk paths."""

    def __init__(self, config: ClickHouseConfig, settings: Mapping[str, SettingValue]) -> None:
        headers = {"X-ClickHouse-User": config.user}
        password = config.password.get_secret_value()
        if password:
            headers["X-ClickHouse-Key"] = password
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
        merged = {**config.settings, **settings}
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

    async def __aenter__(self) -> Connection:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.http.aclose()

    async def fetch(self, sql: str) -> list[Any]:
        """Run a query through aiochclient and return its rows."""
        try:
            rows: list[Any] = await self.client.fetch(sql)
        except ChClientError as exc:
            raise ServerError(str(exc)) from None
        return rows

    async def execute(self, sql: str) -> None:
        """Run a statement (DDL, OPTIMIZE) through aiochclient."""
        try:
            await self.client.execute(sql)
        except ChClientError as exc:
            raise ServerError(str(exc)) from None

    def stream(self, sql: str, params: Mapping[str, Any]) -> Any:
        """Send a query and stream its response (an async context manager)."""
        return self.http.stream(
            "POST", self.url, params={**self.params, **params}, content=sql.encode()
        )

    async def insert(self, query: str, body: bytes, params: Mapping[str, Any]) -> None:
        """POST an insert body; raise ServerError when the server rejects it."""
        headers = {}
        if self.compression:
            body = await anyio.to_thread.run_sync(
                functools.partial(gzip.compress, body, compresslevel=1)
            )
            headers["Content-Encoding"] = "gzip"
        response = await self.http.post(
            self.url,
            params={**self.params, **params, "query": query},
            content=body,
            headers=headers,
        )
        if response.status_code != 200:
            raise ServerError(response.text, response.status_code)


def short_repr(value: Any, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."

"""The ClickHouse extractor: streams a query's result in batches (see the package docs)."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from typing import Annotated, Any, Literal

import httpx
import pyarrow as pa
from aiochclient.sql import sqlparse  # type: ignore[import-untyped]
from pydantic import Field, field_validator

from ..._exceptions import ClickHouseExtractError, ExtractError
from ...core.config import validate_config
from ...core.context import RunContext
from ...core.stages import Extractor
from ...core.types import Batch
from .arrow import (
    ARROW_RESULT_SETTINGS,
    arrow_schema,
    records_to_table,
    result_format,
    stream_tables,
    wire_select,
)
from .client import ClickHouseConfig, Connection, ResultStream, StageOptions, short_repr
from .codec import RowDecoder, ServerError, has_naive_datetime
from .query import bind_query, template_fields

ParamsLike = Mapping[str, Any] | Callable[[RunContext], Mapping[str, Any]] | None


class ClickHouseExtractorConfig(StageOptions):
    """Options of a :class:`ClickHouseExtractor` (see :func:`create_clickhouse_extractor`)."""

    query: Annotated[str, Field(min_length=1)]
    """A ``SELECT``; ``{name}`` placeholders are bound from ``params``, the run's parameters and
    its time window (``{window_start}``, ``{window_end}``): as typed server-side query parameters
    (``{name:Type}``) on servers that have them (19.x and later), as escaped literals on older
    ones, never formatted into the SQL text. No ``FORMAT`` clause (the extractor chooses the wire
    format)."""
    batch_size: Annotated[int, Field(ge=1, le=10_000_000, strict=True)] = 10_000
    """Records per batch (with ``batch_format="arrow"``: rows per table)."""
    batch_format: Literal["records", "arrow"] = "records"
    """``records`` yields lists of dicts; ``arrow`` yields ``pyarrow.Table`` batches typed from
    the server's column types (see :mod:`.arrow`), decoded with no Python object per row: from
    ``ArrowStream`` on servers that write it (20.4 and later), from ``CSVWithNames`` parsed by
    ``pyarrow.csv`` on older ones. There, a result with arrays, maps or tuples is read as
    records and converted per batch (the slower path)."""
    params: ParamsLike = None
    """Values for the placeholders: a mapping, or a function ``(ctx) -> mapping`` called at the
    start of every run."""

    @field_validator("query")
    @classmethod
    def _check_query(cls, value: str) -> str:
        value = value.strip().rstrip(";").rstrip()
        if not value:
            raise ValueError("the query is empty")
        template_fields(value)  # raises ValueError naming a malformed placeholder
        statement = sqlparse.parse(value)[0]
        kind = statement.get_type()
        if kind not in ("SELECT", "UNKNOWN"):
            raise ValueError(f"must be a SELECT query, got {kind}")
        tokens = [
            tok
            for tok in statement.flatten()
            if not tok.is_whitespace and tok.ttype not in sqlparse.tokens.Comment
        ]
        if len(tokens) >= 2 and tokens[-2].match(sqlparse.tokens.Keyword, "FORMAT"):
            raise ValueError("must not have a FORMAT clause (the extractor sets the format)")
        return value

    @field_validator("params", mode="before")
    @classmethod
    def _check_params(cls, value: Any) -> Any:
        if value is not None and not callable(value) and not isinstance(value, Mapping):
            raise ValueError(
                f"expected a mapping or a function (ctx) -> mapping, got {type(value).__name__}"
            )
        return value


# Settings the JSONEachRow result decoder relies on.
_RESULT_SETTINGS = {
    "output_format_json_quote_64bit_integers": 0,
    "output_format_json_quote_denormals": 1,
    "output_format_json_escape_forward_slashes": 0,
}
# Bytes of result decoded at once (network chunks are small; one call per chunk would cost more).
_DECODE_BYTES = 256 * 1024


class ClickHouseExtractor(Extractor):
    """Streams the result of a query in batches of dicts. Made by
    :func:`create_clickhouse_extractor`; see there and the module docs."""

    def __init__(self, config: ClickHouseExtractorConfig) -> None:
        self.config = config
        self.connection: ClickHouseConfig = config.connection_config
        self.params: ParamsLike = config.params
        self.name = config.name

    def values(self, ctx: RunContext) -> dict[str, Any]:
        """The placeholder values of one run (see the module docs), checked to be complete.

        Raises:
            ExtractError: a placeholder has no value.
        """
        values: dict[str, Any] = {}
        if ctx.window is not None:
            values["window_start"] = ctx.window.start
            values["window_end"] = ctx.window.end
        values.update(ctx.params)
        params = self.params(ctx) if callable(self.params) else self.params
        values.update(params or {})
        for name in template_fields(self.config.query):
            if name not in values:
                window = name.startswith("window_")
                hint = " or run the pipeline with a time window" if window else ""
                raise ExtractError(
                    f"query placeholder {{{name}}} has no value: pass it in params or as a run "
                    f"parameter{hint}",
                    retryable=False,
                )
        return values

    def bind(self, values: dict[str, Any], query_parameters: bool) -> tuple[str, dict[str, str]]:
        """The query of one run and its ``param_*`` request parameters: placeholders as typed
        query parameters when the server has them, else as escaped literals.

        Raises:
            ExtractError: a value can be bound neither way.
        """
        try:
            return bind_query(self.config.query, values, server_side=query_parameters)
        except TypeError as exc:
            raise ExtractError(f"query parameters: {exc}", retryable=False) from None

    async def extract(self, ctx: RunContext) -> AsyncIterator[Batch]:
        """Run the query and yield its rows in batches of ``batch_size`` records."""
        values = self.values(ctx)
        sql = self.config.query
        async with Connection(self.connection, self.config.settings) as conn:
            try:
                capabilities = await conn.capabilities()
                sql, query_params = self.bind(values, capabilities.query_parameters)
                described = await conn.rows(
                    f"DESCRIBE TABLE ({sql}\n) FORMAT JSONEachRow", query_params
                )
                columns = [(row["name"], row["type"]) for row in described]
                timezone = None
                if any(has_naive_datetime(type_name) for _, type_name in columns):
                    timezone = capabilities.timezone
                    if "session_timezone" in conn.settings:  # this stage's own time zone
                        query = "SELECT timezone() AS tz FORMAT JSONEachRow"
                        timezone = (await conn.rows(query))[0]["tz"]
                if self.config.batch_format == "arrow":
                    tables = self._tables(
                        conn, sql, query_params, columns, timezone or capabilities.timezone, ctx
                    )
                    async with contextlib.aclosing(tables) as batches:
                        async for table in batches:
                            yield table
                    return
                decoder = RowDecoder(columns, timezone)
                params = {
                    **_RESULT_SETTINGS,
                    **query_params,
                    "query_id": f"{ctx.run_id}-{secrets.token_hex(4)}",
                }
                async with conn.stream(sql + "\nFORMAT JSONEachRow", params) as response:
                    try:
                        async for batch in _batches(response, decoder, self.config.batch_size):
                            yield batch
                    finally:
                        ctx.add_metric("bytes_received", response.num_bytes_downloaded)
            except ServerError as exc:
                raise self._error(str(exc), sql, code=exc.code, retryable=exc.transient) from None
            except httpx.TransportError as exc:
                raise self._error(
                    f"connection failed: {type(exc).__name__}: {exc}", sql, retryable=True
                ) from exc
            except ValueError as exc:
                raise self._error(f"malformed result: {exc}", sql, retryable=True) from exc

    async def _tables(
        self,
        conn: Connection,
        sql: str,
        query_params: dict[str, str],
        columns: list[tuple[str, str]],
        timezone: str,
        ctx: RunContext,
    ) -> AsyncGenerator[pa.Table]:
        """The columnar path: the result as tables of ``batch_size`` rows (see the config)."""
        try:
            schema = arrow_schema(columns, timezone)
        except ValueError as exc:
            raise self._error(str(exc), sql, retryable=False) from None
        capabilities = await conn.capabilities()
        wire = result_format(capabilities.arrow_stream, columns)
        batch_size = self.config.batch_size
        if wire is None:
            decoder = RowDecoder(columns, None if capabilities.arrow_stream else timezone)
            params = {**_RESULT_SETTINGS, **query_params, "query_id": _query_id(ctx)}
            async with conn.stream(sql + "\nFORMAT JSONEachRow", params) as response:
                try:
                    async for batch in _batches(response, decoder, batch_size):
                        yield records_to_table(batch, schema)
                finally:
                    ctx.add_metric("bytes_received", response.num_bytes_downloaded)
            return
        settings = ARROW_RESULT_SETTINGS if wire == "ArrowStream" else {}
        params = {**settings, **query_params, "query_id": _query_id(ctx)}
        select = wire_select(sql, columns, wire)
        async with conn.stream(select + f"\nFORMAT {wire}", params) as response:
            try:
                chunks = response.aiter_bytes()
                async with contextlib.aclosing(
                    stream_tables(chunks, wire, columns, schema, batch_size)
                ) as tables:
                    async for table in tables:
                        yield table
            finally:
                ctx.add_metric("bytes_received", response.num_bytes_downloaded)

    def _error(
        self, message: str, sql: str, *, code: int | None = None, retryable: bool
    ) -> ClickHouseExtractError:
        return ClickHouseExtractError(
            f"query {short_repr(self.config.query, 120)} failed: {message}",
            code=code,
            query=sql,
            retryable=retryable,
        )


def _query_id(ctx: RunContext) -> str:
    return f"{ctx.run_id}-{secrets.token_hex(4)}"


async def _batches(
    response: ResultStream, decoder: RowDecoder, batch_size: int
) -> AsyncIterator[Batch]:
    """Decode a streamed ``JSONEachRow`` response into batches of exactly ``batch_size`` rows.

    Network chunks are gathered until there are ``_DECODE_BYTES``, whose complete lines are then
    decoded in one call; the partial line at the end waits for the next chunk. Memory holds about
    one batch and ``_DECODE_BYTES``.
    """
    pending: Batch = []
    buffer = bytearray()
    async for chunk in response.aiter_bytes():
        buffer += chunk
        if len(buffer) < _DECODE_BYTES:
            continue
        end = buffer.rfind(b"\n") + 1
        if not end:
            continue
        rows = decoder.decode(bytes(buffer[:end]))
        del buffer[:end]
        if pending:
            pending.extend(rows)
        else:
            pending = rows
        while len(pending) >= batch_size:
            if len(pending) == batch_size:
                batch, pending = pending, []
            else:
                batch = pending[:batch_size]
                del pending[:batch_size]
            yield batch
    if buffer:
        if not buffer.endswith(b"\n"):
            decoder.decode(bytes(buffer) + b"\n")  # raises the server's error, if that is it
            raise ValueError(f"the result ended with an incomplete row {bytes(buffer[:80])!r}")
        pending.extend(decoder.decode(bytes(buffer)))
    while pending:
        yield pending[:batch_size]
        del pending[:batch_size]


def create_clickhouse_extractor(
    query: str,
    connection_config: ClickHouseConfig | Mapping[str, Any] | str | None = None,
    batch_size: int = 10_000,
    **options: Any,
) -> ClickHouseExtractor:
    """Create an extractor streaming the result of a ClickHouse query.

    Rows arrive as dicts of Python values: ``int``, ``float``, ``str`` (also ``FixedString``,
    NUL-padded as stored, and ``Enum``), ``date``, ``datetime`` (naive, as the server prints it in
    the column's time zone), ``Decimal`` (exact), ``UUID``, lists for arrays, tuples for tuples and
    ``None`` for nulls. The result is read as it streams: memory holds about one batch, however
    many rows the query returns. ``{name}`` placeholders are bound as typed server-side query
    parameters where the server has them, else as escaped literals (see
    :mod:`ductwork.connectors.clickhouse.query`). An error of the server, also one after the
    result has started, raises :class:`~ductwork.ClickHouseExtractError` with its code and
    message (retryable only when the code says the condition passes, such as an overload).

    Args:
        query: a ``SELECT``, with ``{name}`` placeholders bound safely.
        connection_config: a :class:`ClickHouseConfig`, a mapping of its fields, or a URL.
        batch_size: records per batch.
        **options: any other field of :class:`ClickHouseExtractorConfig` (``params``,
            ``settings``, ``name``), where every option is documented.

    Raises:
        ConfigError: an invalid argument (the error names it).

    Example:
        >>> extractor = create_clickhouse_extractor(
        ...     "SELECT id, name FROM users WHERE country = {country}",
        ...     "http://localhost:8123",
        ...     batch_size=50_000,
        ...     params={"country": "DE"},
        ... )
        >>> extractor.name, extractor.config.batch_size
        ('clickhouse', 50000)
    """
    config = validate_config(
        ClickHouseExtractorConfig,
        "clickhouse extractor",
        query=query,
        connection_config=connection_config,
        batch_size=batch_size,
        **options,
    )
    return ClickHouseExtractor(config)

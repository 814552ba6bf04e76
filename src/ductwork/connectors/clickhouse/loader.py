"""The ClickHouse loader: buffered, batched inserts; upsert into ReplacingMergeTree; dead letters;
exactly-once inserts into deduplicating tables.

See :mod:`ductwork.connectors.clickhouse` for the semantics of ``upsert``, retries and duplicates.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from time import monotonic
from typing import Annotated, Any, Literal

import anyio
import httpx
import orjson
import pyarrow as pa
from pydantic import Field, field_validator, model_validator

from ..._exceptions import ClickHouseLoadError
from ...core.arrow import concat
from ...core.backoff import Backoff
from ...core.config import validate_config
from ...core.context import RunContext
from ...core.stages import Loader
from ...core.types import Batch
from .arrow import clickhouse_type, insert_body
from .capabilities import Capabilities
from .client import ClickHouseConfig, Connection, StageOptions, short_repr
from .codec import (
    ServerError,
    encode_for_file,
    encode_records,
    quote_identifier,
    split_table,
    valid_column,
    valid_identifier,
    valid_type,
)
from .query import render_query
from .tables import deduplication_window, engine_version, sorting_key_columns

__all__ = ["ClickHouseLoader", "ClickHouseLoaderConfig", "create_clickhouse_loader"]

logger = logging.getLogger("ductwork.clickhouse")

# Server error codes meaning "nothing was written, try again later".
_OVERLOADED = frozenset({202, 241, 252})  # too many queries, memory limit, too many parts
# Server error codes meaning "this data is bad" (parse and conversion errors): a dead-letter file
# may take the rows that caused them.
_BAD_DATA = frozenset({6, 26, 27, 32, 38, 41, 53, 69, 70, 72, 117, 131, 190, 321, 349, 377, 469})


class ClickHouseLoaderConfig(StageOptions):
    """Options of a :class:`ClickHouseLoader` (see :func:`create_clickhouse_loader`)."""

    table: str
    """``table`` or ``database.table`` (the default database is the connection's)."""
    columns: tuple[str, ...] | None = None
    """The columns to insert, in order; other keys of the records are ignored, and a column a
    record lacks gets a default value (the type's zero value on old servers such as 18.16,
    which ignore DEFAULT expressions there). ``None`` inserts every key of the records."""
    mode: Literal["insert", "upsert"] = "insert"
    """``insert`` appends; ``upsert`` replaces rows by key in a ``ReplacingMergeTree`` table
    (see :mod:`ductwork.connectors.clickhouse`)."""
    batch_size: Annotated[int, Field(ge=1, le=10_000_000, strict=True)] = 100_000
    """Rows per insert."""
    max_bytes: Annotated[int, Field(ge=1024, strict=True)] = 64 * 1024 * 1024
    """Flush when the encoded buffer reaches this many bytes (not with deduplication tokens:
    then inserts are cut by ``batch_size`` alone, so that a rerun cuts them alike)."""
    flush_interval: Annotated[float, Field(gt=0)] | None = 30.0
    """Flush when the oldest buffered record is this many seconds old, also while the input
    pauses (the rest is flushed when the run ends); ``None`` never. Not with deduplication
    tokens (see ``max_bytes``)."""
    deduplication: bool = True
    """Exactly-once inserts where the server can do them: into a table that deduplicates
    (``Replicated*``, or ``non_replicated_deduplication_window`` above 0) on a server with
    ``insert_deduplication_token`` (22.2 and later), every insert carries a token made of the
    pipeline, the run's window and parameters, the insert's number and a digest of its rows, so
    that a retry, or a rerun of the same window, re-sending a batch the server already committed
    is discarded; and a failure after the data was sent is retried. ``False``: no tokens, and
    inserts cut also by ``max_bytes`` and ``flush_interval``."""
    deduplication_window: Annotated[int, Field(ge=0, strict=True)] = 1000
    """The ``non_replicated_deduplication_window`` (blocks remembered) of a table made by
    ``create_table``, on servers that have the setting (21.x and later) and with
    ``deduplication``; ``0`` leaves it out. It must exceed the number of inserts a rerun can
    re-send (the run's rows / ``batch_size``), or the earliest are not recognised. Like a
    Replicated table, the table then also drops an insert of any client that repeats one of its
    last blocks byte for byte."""
    async_insert: bool = False
    """Insert with ``async_insert=1`` and ``wait_for_async_insert=1``: the server gathers many
    small concurrent inserts into one part (for many small loads at once), and each insert still
    returns once its rows are written. Needs ClickHouse 21.11 or later; exactly-once only where
    the server deduplicates async inserts (23.7 and later)."""
    upsert_key: tuple[str, ...] | None = None
    """For ``upsert``: the key columns; must be the table's sorting key."""
    version_column: str | None = None
    """For ``upsert``: the engine's version column (checked against the table's engine)."""
    create_table: dict[str, str] | None = None
    """``{column: type}``: create the table when it does not exist (a ``MergeTree``, or for
    ``upsert`` a ``ReplacingMergeTree`` on ``upsert_key`` and ``version_column``), deduplicating
    inserts (see ``deduplication_window``). A ``pyarrow.Schema`` works too: its fields become
    columns of the types every server version has (``UInt8`` for booleans, ``Date`` for dates,
    ``Nullable(...)`` for nullable fields; sub-second timestamps need ``DateTime64``, 20.1+)."""
    order_by: tuple[str, ...] | None = None
    """The sorting key of a created table (default: ``upsert_key``, else the first column)."""
    dead_letter: Path | None = None
    """A JSON Lines file for records the server rejects: instead of failing, a rejected insert
    is split to isolate its bad records, which are appended there with the error, and the rest
    is inserted."""
    max_dead_letters: Annotated[int, Field(ge=1)] = 1000
    """Fail anyway once this many records were dead-lettered in a run."""
    retries: Annotated[int, Field(ge=0, le=100)] = 3
    """Attempts after the first for an insert that can be retried without duplicating rows."""
    retry_backoff: Annotated[float, Field(ge=0)] = 0.5
    """Seconds before the first retry; doubled for each next one."""
    optimize_final: bool = False
    """Run ``OPTIMIZE TABLE ... FINAL`` after a successful run."""

    @field_validator("table")
    @classmethod
    def _check_table(cls, value: str) -> str:
        if not all(valid_identifier(part) for part in value.split(".")) or value.count(".") > 1:
            raise ValueError(f"{value!r} is not a table name ('table' or 'database.table')")
        return value

    @field_validator("columns", "upsert_key", "order_by")
    @classmethod
    def _check_columns(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("must name at least one column")
        for name in value:
            if not valid_column(name):
                raise ValueError(f"{name!r} is not a column name")
        if len(set(value)) != len(value):
            raise ValueError("names a column twice")
        return value

    @field_validator("version_column")
    @classmethod
    def _check_version(cls, value: str | None) -> str | None:
        if value is not None and not valid_column(value):
            raise ValueError(f"{value!r} is not a column name")
        return value

    @field_validator("create_table", mode="before")
    @classmethod
    def _schema_columns(cls, value: Any) -> Any:
        if isinstance(value, pa.Schema):
            return {field.name: _portable_type(field) for field in value}
        return value

    @field_validator("create_table")
    @classmethod
    def _check_create(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("must define at least one column")
        for column, spec in value.items():
            if not valid_column(column):
                raise ValueError(f"{column!r} is not a column name")
            if not valid_type(spec.strip()):
                raise ValueError(f"{spec!r} (column {column!r}) is not a ClickHouse type")
        return {column: spec.strip() for column, spec in value.items()}

    @model_validator(mode="after")
    def _check_combination(self) -> ClickHouseLoaderConfig:
        if self.mode == "insert" and (self.upsert_key or self.version_column):
            raise ValueError("upsert_key and version_column need mode='upsert'")
        if self.columns is not None:
            keys = [
                *(self.upsert_key or ()),
                *([self.version_column] if self.version_column else []),
            ]
            for key in keys:
                if key not in self.columns:
                    raise ValueError(f"column {key!r} of the upsert key must be in columns")
        if self.create_table is not None:
            for name in (*(self.columns or ()), *(self.order_by or ()), *(self.upsert_key or ())):
                if name not in self.create_table:
                    raise ValueError(f"column {name!r} is not in create_table")
            if self.version_column and self.version_column not in self.create_table:
                raise ValueError(f"column {self.version_column!r} is not in create_table")
        elif self.order_by is not None:
            raise ValueError("order_by needs create_table")
        return self


class ClickHouseLoader(Loader):
    """Inserts batches (records or Arrow tables) into a ClickHouse table. Made by
    :func:`create_clickhouse_loader`; see there and the module docs."""

    batch_format = "any"

    def __init__(self, config: ClickHouseLoaderConfig) -> None:
        self.config = config
        self.connection: ClickHouseConfig = config.connection_config
        self.name = config.name
        database, table = split_table(config.table, self.connection.database)
        self.database = database
        self.table = table
        self.qualified = f"{database}.{table}"
        self.quoted = f"{quote_identifier(database)}.{quote_identifier(table)}"
        self.backoff = Backoff(config.retry_backoff)

    @asynccontextmanager
    async def open(self, ctx: RunContext) -> AsyncIterator[_ClickHouseSink]:
        """Open a connection, check (or create) the table, and yield the sink of one run.

        A clean exit flushes what is buffered; an exit with an error discards it (inserts already
        made stay: ClickHouse has no transactions; the ``rows_inserted`` metric counts them).
        """
        async with Connection(self.connection, self.config.settings) as conn:
            sink = _ClickHouseSink(self, conn, ctx)
            try:
                await sink.prepare()
                yield sink
                await sink.finish()
            finally:
                await sink.close()


class _ClickHouseSink:
    def __init__(self, loader: ClickHouseLoader, conn: Connection, ctx: RunContext) -> None:
        self.loader = loader
        self.config = loader.config
        self.conn = conn
        self.ctx = ctx
        self.parts: list[tuple[Batch, bytes]] = []
        self.tables: list[pa.Table] = []  # Arrow batches buffered (never beside records parts)
        self.caps: Capabilities | None = None
        self.rows = 0
        self.nbytes = 0
        self.since: float | None = None
        self.inserts = 0
        self.rows_inserted = 0
        self.dead = 0
        self.dead_file: Any = None
        # Whether inserts carry deduplication tokens that the table honours (then a failure
        # after the data was sent can be retried), and if not, why.
        self.dedup_tokens = False
        self.no_dedup = "the server was not asked yet"
        self.window: int | None = None  # blocks the table remembers for deduplication
        self.scope = ""
        self.key: tuple[str, ...] = ()
        self.version: str | None = None
        self.query = ""
        self.params: dict[str, Any] = {}

    @property
    def records_committed(self) -> int:
        """Rows the server committed in this run (the stage's ``records_out``)."""
        return self.rows_inserted

    # ------------------------------------------------------------------ setup

    async def prepare(self) -> None:
        loader, config = self.loader, self.config
        try:
            caps = self.caps = await self.conn.capabilities()
            if config.async_insert and not caps.async_insert:
                raise self._setup_error(
                    f"async_insert=True needs ClickHouse 21.11 or later; "
                    f"{loader.connection.url} runs {caps.version_text}"
                )
            if config.create_table is not None:
                await self.conn.execute(self._create_sql(caps))
            info = await self.conn.fetch(
                render_query(
                    "SELECT engine, engine_full, sorting_key FROM system.tables "
                    "WHERE database = {db} AND name = {table}",
                    {"db": loader.database, "table": loader.table},
                )
            )
            if not info:
                raise self._setup_error(
                    f"table {loader.qualified} does not exist "
                    f"(pass create_table={{column: type}} to create it)"
                )
            engine, engine_full, sorting_key = info[0][0], info[0][1], info[0][2]
            existing = [
                row[0]
                for row in await self.conn.fetch(
                    render_query(
                        "SELECT name FROM system.columns WHERE database = {db} AND table = {table}",
                        {"db": loader.database, "table": loader.table},
                    )
                )
            ]
        except ServerError as exc:
            raise self._setup_error(str(exc), code=exc.code) from None
        except httpx.TransportError as exc:
            raise ClickHouseLoadError(
                f"cannot reach ClickHouse at {self.loader.connection.url}: "
                f"{type(exc).__name__}: {exc}",
                table=loader.qualified,
                retryable=True,
            ) from exc
        if config.columns is not None:
            unknown = [c for c in config.columns if c not in existing]
            if unknown:
                raise self._setup_error(
                    f"table {loader.qualified} has no column(s) {', '.join(unknown)} "
                    f"(it has {', '.join(existing)})"
                )
        if config.mode == "upsert":
            self._check_upsert(engine, engine_full, sorting_key)
        self._plan_deduplication(caps, engine, engine_full)
        columns = ""
        if config.columns is not None:
            columns = " (" + ", ".join(quote_identifier(c) for c in config.columns) + ")"
        self.query = f"INSERT INTO {loader.quoted}{columns} FORMAT JSONEachRow"
        self.params = {
            "date_time_input_format": "best_effort",
            "input_format_skip_unknown_fields": 1 if config.columns is not None else 0,
        }
        if config.async_insert:
            self.params.update(async_insert=1, wait_for_async_insert=1)
            if self.dedup_tokens:
                self.params["async_insert_deduplicate"] = 1

    def _plan_deduplication(self, caps: Capabilities, engine: str, engine_full: str) -> None:
        """Decide whether inserts carry tokens the table honours (see the config's
        ``deduplication``), and say why not where they cannot."""
        table = self.loader.qualified
        window = deduplication_window(engine, engine_full, caps)
        setting = self.conn.settings.get("insert_deduplicate")
        if setting is None:
            setting = caps.settings.get("insert_deduplicate", "1")
        if not self.config.deduplication:
            self.no_dedup = "deduplication=False"
        elif not caps.dedup_tokens:
            self.no_dedup = (
                f"ClickHouse {caps.version_text} has no insert_deduplication_token (22.2 and later)"
            )
        elif not window:
            self.no_dedup = (
                f"{table} does not deduplicate inserts ({engine} without "
                f"non_replicated_deduplication_window; create_table sets it)"
            )
        elif str(setting).lower() in ("0", "false"):
            self.no_dedup = "insert_deduplicate is 0"
        elif self.config.async_insert and not caps.async_insert_dedup:
            self.no_dedup = (
                f"ClickHouse {caps.version_text} does not deduplicate async inserts "
                f"(23.7 and later)"
            )
        else:
            self.dedup_tokens = True
            self.no_dedup = ""
            self.window = window
            self.scope = _scope(self.ctx)

    def _create_sql(self, caps: Capabilities) -> str:
        config = self.config
        assert config.create_table is not None
        columns = ", ".join(f"{quote_identifier(c)} {t}" for c, t in config.create_table.items())
        order = config.order_by or config.upsert_key or (next(iter(config.create_table)),)
        if config.mode == "upsert":
            version = quote_identifier(config.version_column) if config.version_column else ""
            engine = f"ReplacingMergeTree({version})"
        else:
            engine = "MergeTree()"
        order_sql = ", ".join(quote_identifier(c) for c in order)
        settings = ""
        if (
            config.deduplication
            and config.deduplication_window
            and caps.dedup_tokens
            and "non_replicated_deduplication_window" in caps.merge_tree
        ):
            window = config.deduplication_window
            settings = f" SETTINGS non_replicated_deduplication_window = {window}"
        return (
            f"CREATE TABLE IF NOT EXISTS {self.loader.quoted} ({columns}) "
            f"ENGINE = {engine} ORDER BY ({order_sql}){settings}"
        )

    def _check_upsert(self, engine: str, engine_full: str, sorting_key: str) -> None:
        table = self.loader.qualified
        if not engine.endswith("ReplacingMergeTree"):
            raise self._setup_error(
                f"mode='upsert' needs a ReplacingMergeTree table (rows with equal sorting key "
                f"replace each other); {table} is {engine}"
            )
        key = tuple(sorting_key_columns(sorting_key))
        if not key or not all(valid_column(part) for part in key):
            raise self._setup_error(
                f"mode='upsert' needs a sorting key of plain columns; {table} is ordered by "
                f"({sorting_key})"
            )
        if self.config.upsert_key is not None and set(self.config.upsert_key) != set(key):
            raise self._setup_error(
                f"upsert_key ({', '.join(self.config.upsert_key)}) is not the sorting key of "
                f"{table} ({', '.join(key)}): ReplacingMergeTree replaces rows whose sorting "
                f"keys are equal"
            )
        version = engine_version(engine_full)
        if self.config.version_column is not None and self.config.version_column != version:
            have = f"version column {version!r}" if version else "no version column"
            raise self._setup_error(
                f"version_column {self.config.version_column!r} is not the version column of "
                f"{table} ({engine} with {have})"
            )
        self.key = key
        self.version = version

    def _setup_error(self, message: str, code: int | None = None) -> ClickHouseLoadError:
        return ClickHouseLoadError(message, code=code, table=self.loader.qualified, retryable=False)

    # ------------------------------------------------------------------ writing

    async def write(self, batch: Batch) -> None:
        config = self.config
        table: pa.Table | None = batch if isinstance(batch, pa.Table) else None
        if table is not None and (config.mode == "upsert" or config.dead_letter is not None):
            batch = table.to_pylist()  # per-record work: the records path (see the docs)
            table = None
        if self.tables if table is None else self.parts:
            await self.flush()  # one kind per insert
        by_bytes = not self.dedup_tokens  # with tokens, inserts are cut by rows alone
        start = 0
        total = len(batch)
        while start < total:
            take = min(total - start, config.batch_size - self.rows)
            if table is not None:
                self._add_table(table.slice(start, take) if take != total else table)
            else:
                part = batch if take == total else batch[start : start + take]
                await self._add(part, start)
            start += take
            if self.rows >= config.batch_size or (by_bytes and self.nbytes >= config.max_bytes):
                await self.flush()
        if self.idle_after == 0.0:
            await self.flush()

    @property
    def idle_after(self) -> float | None:
        """Seconds until the buffer is ``flush_interval`` old (``None``: nothing buffered, or
        inserts are cut by rows alone); the runner calls :meth:`on_idle` then if no batch
        arrived meanwhile."""
        interval = self.config.flush_interval
        if interval is None or self.since is None or self.dedup_tokens:
            return None
        return max(0.0, self.since + interval - monotonic())

    async def on_idle(self) -> None:
        """Flush a buffer that has waited ``flush_interval`` while the input paused."""
        if self.idle_after == 0.0:
            await self.flush()

    def _add_table(self, table: pa.Table) -> None:
        if self.since is None:
            self.since = monotonic()
        self.tables.append(table)
        self.rows += table.num_rows
        self.nbytes += table.nbytes

    async def _flush_tables(self) -> None:
        """Insert the buffered Arrow batches: ``ArrowStream`` where the server reads it, CSV
        written by pyarrow on older servers, JSONEachRow for nested columns there."""
        tables, self.tables = self.tables, []
        count = self.rows
        self.rows = self.nbytes = 0
        self.since = None
        self.inserts += 1
        batch_no = self.inserts
        table = concat(tables)
        if self.config.columns is not None:
            missing = [c for c in self.config.columns if c not in table.column_names]
            if missing:
                raise ClickHouseLoadError(
                    f"batch {batch_no} has no column(s) {', '.join(missing)} for "
                    f"{self.loader.qualified}",
                    table=self.loader.qualified,
                    batch=batch_no,
                    retryable=False,
                )
            table = table.select(list(self.config.columns))
        arrow_stream = self.caps is not None and self.caps.arrow_stream
        encoded = await anyio.to_thread.run_sync(insert_body, table, arrow_stream)
        if encoded is None:
            wire, body = "JSONEachRow", encode_records(table.to_pylist())[1:-1]
        else:
            wire, body = encoded
        names = ", ".join(quote_identifier(name) for name in table.column_names)
        query = f"INSERT INTO {self.loader.quoted} ({names}) FORMAT {wire}"
        params = self._token(batch_no, body)
        if wire == "CSVWithNames":
            params["date_time_input_format"] = "basic"  # times are Unix seconds: no guessing
        try:
            await self._send(body, params, query)
        except ServerError as exc:
            raise self._insert_error(exc, batch_no, _TableRows(table), query) from None
        except httpx.TransportError as exc:
            raise self._connection_error(exc, batch_no, count) from exc
        self._inserted(count, len(body))

    async def _add(self, part: Batch, offset: int) -> None:
        try:
            data = encode_records(part)
        except TypeError:
            part = await self._encodable(part, offset)
            if not part:
                return
            data = encode_records(part)
        if self.since is None:
            self.since = monotonic()
        self.parts.append((part, data))
        self.rows += len(part)
        self.nbytes += len(data)

    async def _encodable(self, part: Batch, offset: int) -> Batch:
        """Split off the records orjson cannot encode: dead-letter them, or fail naming one."""
        good = []
        for i, record in enumerate(part):
            try:
                encode_records([record])
            except TypeError as exc:
                if self.config.dead_letter is None:
                    raise ClickHouseLoadError(
                        f"record {offset + i} of an incoming batch cannot be inserted into "
                        f"{self.loader.qualified}: {exc}: {short_repr(record)}",
                        table=self.loader.qualified,
                        batch=self.inserts + 1,
                        record=record,
                        retryable=False,
                    ) from None
                await self._dead_letter(record, f"cannot encode: {exc}", self.inserts + 1)
            else:
                good.append(record)
        return good

    async def flush(self) -> None:
        """Insert what is buffered, as one insert (or, with a dead-letter file, as few as needed
        to set the rejected records aside)."""
        if self.tables:
            await self._flush_tables()
            return
        if not self.parts:
            return
        parts, self.parts = self.parts, []
        count = self.rows
        self.rows = self.nbytes = 0
        self.since = None
        self.inserts += 1
        batch_no = self.inserts
        if len(parts) == 1:
            body = parts[0][1][1:-1]
        else:
            body = b",".join(memoryview(data)[1:-1] for _, data in parts)
        records: Batch | None = None
        if self.config.mode == "upsert":
            records = [record for part, _ in parts for record in part]
            kept = self._latest_per_key(records, batch_no)
            if len(kept) < len(records):
                self.ctx.add_metric("rows_deduplicated", len(records) - len(kept))
                records = kept
                count = len(kept)
                body = encode_records(kept)[1:-1]
        try:
            await self._send(body, self._token(batch_no, body))
        except ServerError as exc:
            if records is None:
                records = [record for part, _ in parts for record in part]
            if self.config.dead_letter is not None and exc.code in _BAD_DATA:
                await self._isolate(records, batch_no, exc)
                return
            raise self._insert_error(exc, batch_no, records) from None
        except httpx.TransportError as exc:
            raise self._connection_error(exc, batch_no, count) from exc
        self._inserted(count, len(body))

    def _inserted(self, rows: int, nbytes: int) -> None:
        self.rows_inserted += rows
        self.ctx.add_metric("rows_inserted", rows)
        self.ctx.add_metric("inserts", 1)
        self.ctx.add_metric("bytes_sent", nbytes)

    def _token(self, batch_no: int, body: bytes, piece: str = "") -> dict[str, Any]:
        """The deduplication token of an insert: the same for the same rows at the same place
        of a rerun of the same window (or parameters), different for different rows."""
        if not self.dedup_tokens:
            return {}
        digest = hashlib.blake2b(body, digest_size=16).hexdigest()
        return {"insert_deduplication_token": f"{self.scope}:{batch_no}{piece}:{digest}"}

    def _latest_per_key(self, records: Batch, batch_no: int) -> Batch:
        """Keep one record per upsert key: the highest version, or the last one."""
        key, version = self.key, self.version
        latest: dict[Any, dict[str, Any]] = {}
        for record in records:
            try:
                k = tuple(record[c] for c in key)
                if version is not None:
                    old = latest.get(k)
                    if old is not None and record[version] < old[version]:
                        continue
            except (KeyError, TypeError) as exc:
                what = f"no column {exc}" if isinstance(exc, KeyError) else str(exc)
                raise ClickHouseLoadError(
                    f"upsert into {self.loader.qualified}, batch {batch_no}: a record has {what} "
                    f"(key {', '.join(key)}{', version ' + version if version else ''}): "
                    f"{short_repr(record)}",
                    table=self.loader.qualified,
                    batch=batch_no,
                    record=record,
                    retryable=False,
                ) from None
            latest[k] = record
        return list(latest.values())

    async def _send(self, body: bytes, params: Mapping[str, Any], query: str | None = None) -> None:
        """One insert, retried where that cannot duplicate rows (see the module docs)."""
        retries = self.loader.backoff.retries(self.config.retries)
        while True:
            try:
                await self.conn.insert(query or self.query, body, {**self.params, **params})
                return
            except ServerError as exc:
                if exc.code not in _OVERLOADED or not retries.left:
                    raise
                reason = str(exc)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if not retries.left:
                    raise
                reason = f"{type(exc).__name__}: {exc}"
            except httpx.TransportError:
                if not self.dedup_tokens or not retries.left:
                    raise
                reason = "the connection failed after the data was sent"
            delay = retries.take()
            logger.warning(
                "%s: insert into %s failed (%s); retry %d of %d in %.1fs",
                self.ctx.pipeline,
                self.loader.qualified,
                reason,
                retries.spent,
                retries.limit,
                delay,
            )
            await retries.wait()

    async def _isolate(self, records: Batch, batch_no: int, first: ServerError) -> None:
        """Insert ``records`` without the ones the server rejects, which go to the dead letters.

        The server names the first row it could not parse; the rows before it are inserted, it is
        set aside, and the rest is tried again. Errors that name no row are narrowed down by
        bisection.
        """
        stack: list[tuple[int, Batch, ServerError | None]] = [(0, records, first)]
        while stack:
            offset, chunk, error = stack.pop()
            if error is None:
                body = encode_records(chunk)[1:-1]
                token = self._token(batch_no, body, f":{offset}:{len(chunk)}")
                try:
                    await self._send(body, token)
                except ServerError as exc:
                    if exc.code not in _BAD_DATA:
                        raise self._insert_error(exc, batch_no, chunk) from None
                    error = exc
                except httpx.TransportError as exc:
                    raise self._connection_error(exc, batch_no, len(chunk)) from exc
                else:
                    self._inserted(len(chunk), len(body))
                    continue
            if len(chunk) == 1:
                await self._dead_letter(chunk[0], str(error), batch_no)
                continue
            row = error.row
            if row is not None and 1 <= row <= len(chunk):
                i = row - 1
                stack.append((offset + i + 1, chunk[i + 1 :], None))
                stack.append((offset + i, chunk[i : i + 1], error))
                stack.append((offset, chunk[:i], None))
            else:
                mid = len(chunk) // 2
                stack.append((offset + mid, chunk[mid:], None))
                stack.append((offset, chunk[:mid], None))
            stack[:] = [entry for entry in stack if entry[1]]

    async def _dead_letter(self, record: Any, error: str, batch_no: int) -> None:
        path = self.config.dead_letter
        assert path is not None
        self.dead += 1
        if self.dead > self.config.max_dead_letters:
            raise ClickHouseLoadError(
                f"more than {self.config.max_dead_letters} records rejected by "
                f"{self.loader.qualified} (see {path}); last error at batch {batch_no}: {error}",
                table=self.loader.qualified,
                batch=batch_no,
                record=record,
                retryable=False,
            )
        if self.dead_file is None:
            self.dead_file = await anyio.open_file(path, "ab")
        line = encode_for_file(
            {"table": self.loader.qualified, "batch": batch_no, "error": error, "record": record}
        )
        await self.dead_file.write(line + b"\n")
        self.ctx.add_metric("rows_dead_lettered", 1)

    def _insert_error(
        self, exc: ServerError, batch_no: int, records: Any, query: str | None = None
    ) -> ClickHouseLoadError:
        record = None
        where = ""
        if exc.row is not None and 1 <= exc.row <= len(records):
            record = records[exc.row - 1]
            where = f"; first rejected record (row {exc.row} of the batch): {short_repr(record)}"
        done = self._done()
        return ClickHouseLoadError(
            f"insert into {self.loader.qualified} failed at batch {batch_no} "
            f"({len(records)} rows): {exc}{where}; {done}",
            code=exc.code,
            query=query or self.query,
            table=self.loader.qualified,
            batch=batch_no,
            record=record,
            rows_committed=self.rows_inserted,
            retryable=exc.code in _OVERLOADED,
        )

    def _connection_error(
        self, exc: httpx.TransportError, batch_no: int, count: int
    ) -> ClickHouseLoadError:
        """A failed connection: retryable if nothing was sent, or if the table deduplicates the
        re-sent rows; otherwise the server may have written them, and a retry could again."""
        unsent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
        what = (
            ""
            if unsent or self.dedup_tokens
            else (
                f"; the rows were sent, so the server may have written them, and a retry could "
                f"write them twice ({self.no_dedup}): not retryable"
            )
        )
        return ClickHouseLoadError(
            f"insert into {self.loader.qualified} failed at batch {batch_no} ({count} rows): "
            f"connection to {self.loader.connection.url} failed: {type(exc).__name__}: {exc}; "
            f"{self._done()}{what}",
            query=self.query,
            table=self.loader.qualified,
            batch=batch_no,
            rows_committed=self.rows_inserted,
            retryable=unsent or self.dedup_tokens,
        )

    def _done(self) -> str:
        return f"{self.rows_inserted} rows were inserted before it"

    # ------------------------------------------------------------------ end of run

    async def finish(self) -> None:
        """Flush the rest and optimise the table if asked to (a clean end of the run)."""
        await self.flush()
        if self.window is not None and self.inserts > self.window:
            logger.warning(
                "%s: %d inserts into %s exceed the %d blocks it remembers for deduplication: a "
                "rerun would insert the earliest again (raise its deduplication window, or "
                "batch_size)",
                self.ctx.pipeline,
                self.inserts,
                self.loader.qualified,
                self.window,
            )
        if self.config.optimize_final:
            try:
                await self.conn.execute(f"OPTIMIZE TABLE {self.loader.quoted} FINAL")
            except ServerError as exc:
                raise self._setup_error(f"OPTIMIZE TABLE failed: {exc}", exc.code) from None

    async def close(self) -> None:
        """Drop what is still buffered (after a failure) and close the dead-letter file."""
        self.parts = []
        self.tables = []
        if self.dead_file is not None:
            await self.dead_file.aclose()
            self.dead_file = None


def _portable_type(field: pa.Field) -> str:
    """The ClickHouse type of an Arrow field that every server version has, where one exists."""
    try:
        return clickhouse_type(field, modern=False)
    except ValueError:
        return clickhouse_type(field, modern=True)  # sub-second times: DateTime64


class _TableRows:
    """The rows of an Arrow batch as an error names them: one converted when asked for."""

    def __init__(self, table: pa.Table) -> None:
        self.table = table

    def __len__(self) -> int:
        return int(self.table.num_rows)

    def __getitem__(self, index: int) -> Any:
        return self.table.slice(index, 1).to_pylist()[0]


def _scope(ctx: RunContext) -> str:
    """What a rerun has in common with the run it repeats: the pipeline, and its window and
    parameters; a run with neither repeats only itself (its retries, within a composition that
    retries it, share the parent's run id)."""
    basis: list[Any] = []
    if ctx.window is not None:
        basis.append(["window", *(_instant(t) for t in (ctx.window.start, ctx.window.end))])
    if ctx.params:
        basis.append(["params", dict(ctx.params)])
    if not basis:
        basis.append(["run", ctx.parent_run_id or ctx.run_id])
    data = orjson.dumps(basis, default=repr, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    return f"{ctx.pipeline}:{hashlib.blake2b(data, digest_size=8).hexdigest()}"


def _instant(moment: datetime) -> str:
    """A datetime as text that is the same for the same instant in any time zone."""
    return (moment.astimezone(UTC) if moment.utcoffset() is not None else moment).isoformat()


def create_clickhouse_loader(
    table: str,
    columns: Sequence[str] | None = None,
    mode: Literal["insert", "upsert"] = "insert",
    batch_size: int = 100_000,
    **options: Any,
) -> ClickHouseLoader:
    """Create a loader inserting records into a ClickHouse table in batches.

    Records are buffered and inserted when ``batch_size`` rows or ``max_bytes`` bytes are
    buffered, when the oldest is ``flush_interval`` seconds old, and when the run ends. A rejected
    insert raises :class:`~ductwork.ClickHouseLoadError` (a ``LoadError``) naming the table, the
    batch number, the server's message and the first rejected record — or, with ``dead_letter``,
    the bad records are set aside in that file and the rest is inserted.

    Args:
        table: ``table`` or ``database.table``.
        columns: the columns to insert, in order (default: every key of the records).
        mode: ``"insert"`` appends; ``"upsert"`` replaces rows by key.
        batch_size: rows per insert.
        **options: any other field of :class:`ClickHouseLoaderConfig` (``connection_config``,
            ``max_bytes``, ``flush_interval``, ``upsert_key``, ``version_column``,
            ``create_table``, ``dead_letter``, ``retries``, ``settings``, ...), where every
            option is documented.

    Raises:
        ConfigError: an invalid argument (the error names it).

    Example:
        >>> loader = create_clickhouse_loader(
        ...     "analytics.events", ["id", "ts", "name"], batch_size=50_000,
        ...     connection_config={"url": "http://localhost:8123", "user": "etl"},
        ... )
        >>> loader.qualified, loader.config.mode
        ('analytics.events', 'insert')
    """
    config = validate_config(
        ClickHouseLoaderConfig,
        "clickhouse loader",
        table=table,
        columns=columns,
        mode=mode,
        batch_size=batch_size,
        **options,
    )
    return ClickHouseLoader(config)

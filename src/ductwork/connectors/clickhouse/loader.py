"""The ClickHouse loader: buffered, batched inserts; upsert into ReplacingMergeTree; dead letters;
exactly-once inserts into deduplicating tables.

This module opens a run: it checks (or creates) the table and decides how inserts are made. The
options are :mod:`.loader_config`, the inserts :mod:`.loader_insert`, the upsert's checks and
per-key reduction :mod:`.loader_upsert`. See :mod:`ductwork.connectors.clickhouse` for the
semantics of ``upsert``, retries and duplicates.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
import orjson

from ..._exceptions import ClickHouseLoadError
from ...core.backoff import Backoff
from ...core.config import validate_config
from ...core.context import RunContext
from ...core.stages import Loader
from .capabilities import Capabilities
from .client import ClickHouseConfig, Connection
from .codec import ServerError, quote_identifier, split_table
from .loader_config import ClickHouseLoaderConfig
from .loader_insert import InFlight, InsertSink
from .loader_upsert import check_upsert
from .query import render_query
from .tables import deduplication_window

__all__ = ["ClickHouseLoader", "ClickHouseLoaderConfig", "create_clickhouse_loader"]

logger = logging.getLogger("ductwork.clickhouse")


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
            if ctx.run_tasks is not None:
                sink.in_flight = InFlight(ctx.run_tasks)
            try:
                await sink.prepare()
                yield sink
                await sink.finish()
            finally:
                await sink.close()


class _ClickHouseSink(InsertSink):
    """The sink of one run: the table checked (or created), then the inserts of
    :class:`.loader_insert.InsertSink`."""

    # ------------------------------------------------------------------ setup

    async def prepare(self) -> None:
        """Check (or create) the table, and decide the insert query and its settings."""
        loader, config = self.loader, self.config
        try:
            caps = self.caps = await self.conn.capabilities()
            if config.async_insert and not caps.async_insert:
                raise self._error(
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
                raise self._error(
                    f"table {loader.qualified} does not exist "
                    f"(pass create_table={{column: type}} to create it)"
                )
            engine, engine_full, sorting_key = info[0][0], info[0][1], info[0][2]
            self.types = [
                (row[0], row[1])
                for row in await self.conn.fetch(
                    render_query(
                        "SELECT name, type FROM system.columns "
                        "WHERE database = {db} AND table = {table}",
                        {"db": loader.database, "table": loader.table},
                    )
                )
            ]
            existing = [name for name, _ in self.types]
        except ServerError as exc:
            raise self._error(str(exc), code=exc.code) from None
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
                raise self._error(
                    f"table {loader.qualified} has no column(s) {', '.join(unknown)} "
                    f"(it has {', '.join(existing)})"
                )
        if config.mode == "upsert":
            self.key, self.version = check_upsert(
                config, loader.qualified, engine, engine_full, sorting_key, self._error
            )
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
                raise self._error(f"OPTIMIZE TABLE failed: {exc}", exc.code) from None

    async def close(self) -> None:
        """Drop what is still buffered (after a failure) and close the dead-letter file."""
        self.parts = []
        self.tables = []
        if self.dead_file is not None:
            await self.dead_file.aclose()
            self.dead_file = None


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

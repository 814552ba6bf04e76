"""The ClickHouse loader's insert path: the buffer and how it is cut into inserts, the bodies of
records and Arrow batches, deduplication tokens, retries, dead letters, the rows committed and the
errors that name them.

See :mod:`ductwork.connectors.clickhouse` for the semantics of retries and duplicates.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from time import monotonic
from typing import Any, Protocol

import anyio
import anyio.abc
import httpx
import orjson
import pyarrow as pa

from ..._exceptions import ClickHouseLoadError
from ...core.arrow import concat
from ...core.backoff import Backoff
from ...core.context import RunContext
from ...core.types import Batch
from .arrow import insert_body
from .capabilities import Capabilities
from .client import ClickHouseConfig, Connection, body_size, short_repr
from .codec import (
    InsertBody,
    ServerError,
    encode_for_file,
    encode_records,
    quote_identifier,
)
from .loader_config import ClickHouseLoaderConfig
from .loader_upsert import latest_per_key

__all__ = ["InFlight", "InsertSink", "LoadTarget"]

logger = logging.getLogger("ductwork.clickhouse")

# Server error codes meaning "nothing was written, try again later".
_OVERLOADED = frozenset({202, 241, 252})  # too many queries, memory limit, too many parts
# Server error codes meaning "this data is bad" (parse and conversion errors): a dead-letter file
# may take the rows that caused them.
_BAD_DATA = frozenset({6, 26, 27, 32, 38, 41, 53, 69, 70, 72, 117, 131, 190, 321, 349, 377, 469})


class LoadTarget(Protocol):
    """What the insert path needs of its loader: the options and the table."""

    config: ClickHouseLoaderConfig
    connection: ClickHouseConfig
    database: str
    table: str
    qualified: str
    quoted: str
    backoff: Backoff


class InFlight:
    """At most one insert in flight in the background, so that the next batch is encoded while
    the server takes the previous one.

    Inserts stay in order: one starts only once the one before it succeeded, and an insert's
    error is raised by the next :meth:`start` or :meth:`settle`, so no later insert is sent
    after a failed one. The task runs in the run's task group (``RunContext.run_tasks``), which
    cancels it if the run ends early; the loader settles it before it closes.
    """

    def __init__(self, tasks: anyio.abc.TaskGroup) -> None:
        self._tasks = tasks
        self._done: anyio.Event | None = None
        self._error: Exception | None = None

    async def start(self, insert: Callable[[], Awaitable[None]]) -> None:
        """Wait for the insert in flight (raising its error), then start ``insert``."""
        await self.settle()
        done = self._done = anyio.Event()

        async def run() -> None:
            try:
                await insert()
            except Exception as exc:  # raised in the loader's task, by settle()
                self._error = exc
            finally:
                done.set()

        self._tasks.start_soon(run)

    async def settle(self) -> None:
        """Wait for the insert in flight, if any; raise its error."""
        if self._done is not None:
            await self._done.wait()
            self._done = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error


class InsertSink:
    """The buffer of one run's inserts into a loader's table, and the inserts made of it."""

    def __init__(self, loader: LoadTarget, conn: Connection, ctx: RunContext) -> None:
        self.loader = loader
        self.config = loader.config
        self.conn = conn
        self.ctx = ctx
        # Encoded records waiting for an insert, each with its records only where an insert
        # needs them back (upsert, dead letters): otherwise only the bytes are held, so that
        # max_bytes bounds the buffer's memory (see the config).
        self.parts: list[tuple[Batch | None, bytes]] = []
        self.keep_records = self.config.mode == "upsert" or self.config.dead_letter is not None
        self.tables: list[pa.Table] = []  # Arrow batches buffered (never beside records parts)
        # The insert left in flight while the next is encoded (set by the loader's open()).
        self.in_flight: InFlight | None = None
        self.caps: Capabilities | None = None
        self.types: list[tuple[str, str]] = []  # the table's (column, type), for Native inserts
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

    @property
    def rerun_safe(self) -> bool:
        """Whether running the load again cannot write a row twice (see ``_rerun_is_safe``)."""
        return self._rerun_is_safe()

    def _error(
        self, message: str, code: int | None = None, *, batch: int | None = None, record: Any = None
    ) -> ClickHouseLoadError:
        """An error about this loader's table that running again would not cure."""
        return ClickHouseLoadError(
            message,
            code=code,
            table=self.loader.qualified,
            batch=batch,
            record=record,
            retryable=False,
        )

    # ------------------------------------------------------------------ writing

    async def write(self, batch: Batch) -> None:
        """Buffer ``batch``, inserting whenever the buffer is full (see the config's
        ``batch_size``, ``max_bytes`` and ``flush_interval``)."""
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
                if self.tables:
                    await self._flush_tables(wait=False)
                else:
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

    def _next_insert(self) -> tuple[int, int]:
        """Empty the buffer's counters for an insert of what it held; return that insert's row
        count and its number (from 1)."""
        count = self.rows
        self.rows = self.nbytes = 0
        self.since = None
        self.inserts += 1
        return count, self.inserts

    async def _flush_tables(self, *, wait: bool = True) -> None:
        """Insert the buffered Arrow batches: ``ArrowStream`` where the server reads it, CSV
        written by pyarrow on older servers, JSONEachRow for nested columns there.

        The batches are encoded while the previous insert is still in flight; with
        ``wait=False`` this insert is left in flight in turn (see :class:`InFlight`), and its
        error, if any, is raised by the next insert or flush."""
        tables, self.tables = self.tables, []
        count, batch_no = self._next_insert()
        table = concat(tables)
        if self.config.columns is not None:
            missing = [c for c in self.config.columns if c not in table.column_names]
            if missing:
                raise self._error(
                    f"batch {batch_no} has no column(s) {', '.join(missing)} for "
                    f"{self.loader.qualified}",
                    batch=batch_no,
                )
            table = table.select(list(self.config.columns))
        arrow_stream = self.caps is not None and self.caps.arrow_stream
        encoded = await anyio.to_thread.run_sync(insert_body, table, arrow_stream, self.types)
        body: InsertBody
        if encoded is None:
            wire, body = "JSONEachRow", encode_records(table.to_pylist())[1:-1]
        else:
            wire, body = encoded
        names = ", ".join(quote_identifier(name) for name in table.column_names)
        query = f"INSERT INTO {self.loader.quoted} ({names}) FORMAT {wire}"
        params = self._token(batch_no, body)
        if wire == "CSVWithNames":
            params["date_time_input_format"] = "basic"  # times are Unix seconds: no guessing

        async def insert() -> None:
            try:
                await self._send(body, params, query)
            except ServerError as exc:
                raise self._insert_error(exc, batch_no, TableRows(table), query) from None
            except httpx.TransportError as exc:
                raise self._connection_error(exc, batch_no, count) from exc
            self._inserted(count, body_size(body))

        if self.in_flight is None:
            await insert()
            return
        await self.in_flight.start(insert)
        if wait:
            await self.in_flight.settle()

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
        self.parts.append((part if self.keep_records else None, data))
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
                    raise self._error(
                        f"record {offset + i} of an incoming batch cannot be inserted into "
                        f"{self.loader.qualified}: {exc}: {short_repr(record)}",
                        batch=self.inserts + 1,
                        record=record,
                    ) from None
                await self._dead_letter(record, f"cannot encode: {exc}", self.inserts + 1)
            else:
                good.append(record)
        return good

    async def flush(self) -> None:
        """Insert what is buffered, as one insert (or, with a dead-letter file, as few as needed
        to set the rejected records aside), and wait until every insert made is committed."""
        if self.in_flight is not None:
            await self.in_flight.settle()
        if self.tables:
            await self._flush_tables()
            return
        if not self.parts:
            return
        parts, self.parts = self.parts, []
        count, batch_no = self._next_insert()
        if len(parts) == 1:
            body = parts[0][1][1:-1]
        else:
            body = b",".join(memoryview(data)[1:-1] for _, data in parts)
        records: Any = None
        if self.config.mode == "upsert":
            records = _records(parts)
            kept = latest_per_key(
                records, self.key, self.version, self.loader.qualified, batch_no, self._error
            )
            if len(kept) < len(records):
                self.ctx.add_metric("rows_deduplicated", len(records) - len(kept))
                records = kept
                count = len(kept)
                body = encode_records(kept)[1:-1]
        try:
            await self._send(body, self._token(batch_no, body))
        except ServerError as exc:
            if records is None:
                records = _records(parts) if self.keep_records else EncodedRows(body, count)
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

    def _token(self, batch_no: int, body: InsertBody, piece: str = "") -> dict[str, Any]:
        """The deduplication token of an insert: the same for the same rows at the same place
        of a rerun of the same window (or parameters), different for different rows."""
        if not self.dedup_tokens:
            return {}
        hashed = hashlib.blake2b(digest_size=16)
        for data in [body] if isinstance(body, bytes) else body:
            hashed.update(data)
        digest = hashed.hexdigest()
        return {"insert_deduplication_token": f"{self.scope}:{batch_no}{piece}:{digest}"}

    async def _send(
        self, body: InsertBody, params: Mapping[str, Any], query: str | None = None
    ) -> None:
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
            raise self._error(
                f"more than {self.config.max_dead_letters} records rejected by "
                f"{self.loader.qualified} (see {path}); last error at batch {batch_no}: {error}",
                batch=batch_no,
                record=record,
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
        if exc.code in _OVERLOADED and not self._rerun_is_safe():
            done += f"; {self._not_again()}"
        return ClickHouseLoadError(
            f"insert into {self.loader.qualified} failed at batch {batch_no} "
            f"({len(records)} rows): {exc}{where}; {done}",
            code=exc.code,
            query=query or self.query,
            table=self.loader.qualified,
            batch=batch_no,
            record=record,
            rows_committed=self.rows_inserted,
            retryable=exc.code in _OVERLOADED and self._rerun_is_safe(),
        )

    def _connection_error(
        self, exc: httpx.TransportError, batch_no: int, count: int
    ) -> ClickHouseLoadError:
        """A failed connection: retryable if the table deduplicates the re-sent rows, or if
        nothing of this run reached the server; otherwise the server may have written this batch,
        or has written earlier ones, and running again would write them twice."""
        unsent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
        if self.dedup_tokens or (unsent and self._rerun_is_safe()):
            what = ""
        elif unsent:
            what = f"; {self._not_again()}"
        else:
            what = (
                f"; the rows were sent, so the server may have written them, and a retry could "
                f"write them twice ({self.no_dedup}): not retryable"
            )
        return ClickHouseLoadError(
            f"insert into {self.loader.qualified} failed at batch {batch_no} ({count} rows): "
            f"connection to {self.loader.connection.url} failed: {type(exc).__name__}: {exc}; "
            f"{self._done()}{what}",
            query=self.query,
            table=self.loader.qualified,
            batch=batch_no,
            rows_committed=self.rows_inserted,
            retryable=self.dedup_tokens or (unsent and self._rerun_is_safe()),
        )

    def _rerun_is_safe(self) -> bool:
        """Whether running the load again cannot write a row twice: the table deduplicates the
        re-sent inserts (by token, or by key for an upsert), or nothing of this run was
        committed yet."""
        return self.dedup_tokens or self.config.mode == "upsert" or self.rows_inserted == 0

    def _not_again(self) -> str:
        return (
            f"the earlier batches were committed and {self.no_dedup}, so running again would "
            f"insert them twice: not retryable"
        )

    def _done(self) -> str:
        return f"{self.rows_inserted} rows were inserted before it"


def _records(parts: list[tuple[Batch | None, bytes]]) -> Batch:
    return [record for part, _ in parts if part is not None for record in part]


class EncodedRows:
    """The rows of an insert body of records (not held beside it) as an error names them: the
    one asked for decoded from the body, as it was sent."""

    def __init__(self, body: bytes, count: int) -> None:
        self.body = body
        self.count = count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> Any:
        return orjson.loads(b"[" + self.body + b"]")[index]


class TableRows:
    """The rows of an Arrow batch as an error names them: one converted when asked for."""

    def __init__(self, table: pa.Table) -> None:
        self.table = table

    def __len__(self) -> int:
        return int(self.table.num_rows)

    def __getitem__(self, index: int) -> Any:
        return self.table.slice(index, 1).to_pylist()[0]

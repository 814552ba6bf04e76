"""ClickHouse as each server version runs it: capabilities, typed query parameters, errors in
mid-result, exactly-once loads and async inserts, on both legs
(``tests/clickhouse_legs.py``) or on the one a feature needs.

Faults on the chdb leg come from the front's drop hooks, injected into chosen inserts by
:func:`drop_inserts`: ``body`` resets the connection while the insert's body is sent (nothing is
written), ``response`` lets the insert commit and closes the connection before the answer (the
rows are written, but the loader cannot know).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import anyio
import httpx
import pytest
from test_clickhouse import collect, count, source, sql

from ductwork import (
    Batch,
    ClickHouseConfig,
    ClickHouseExtractError,
    ClickHouseLoadError,
    CompositionError,
    TimeWindow,
    create_clickhouse_extractor,
    create_clickhouse_loader,
    create_el_pipeline,
    create_retry_pipeline,
)
from ductwork.connectors.clickhouse import capabilities
from ductwork.connectors.clickhouse.client import Connection
from ductwork.connectors.clickhouse.codec import ServerError

pytestmark = pytest.mark.clickhouse

modern = pytest.mark.clickhouse_legs("chdb")
DAY = TimeWindow(datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 3, 2, tzinfo=UTC))


@pytest.fixture
def table() -> str:
    return f"m_{uuid.uuid4().hex[:10]}"


def drop_inserts(monkeypatch: pytest.MonkeyPatch, drops: Mapping[int, str]) -> list[dict[str, Any]]:
    """Make insert number ``n`` (1-based, counting retries) of the test send
    ``x_front_drop=drops[n]``; return the parameters of every insert, as sent."""
    sent: list[dict[str, Any]] = []
    insert = Connection.insert

    async def dropping(
        self: Connection, query: str, body: bytes, params: Mapping[str, Any]
    ) -> None:
        params = dict(params)
        if len(sent) + 1 in drops:
            params["x_front_drop"] = drops[len(sent) + 1]
        sent.append(params)
        await insert(self, query, body, params)

    monkeypatch.setattr(Connection, "insert", dropping)
    return sent


def rows(n: int, start: int = 0) -> Batch:
    return [{"id": i, "name": f"row {i}"} for i in range(start, start + n)]


def loader(config: ClickHouseConfig, table: str, **options: Any) -> Any:
    options.setdefault("create_table", {"id": "UInt64", "name": "String"})
    return create_clickhouse_loader(
        table, batch_size=100, retry_backoff=0.0, connection_config=config, **options
    )


# --------------------------------------------------------------------------- capabilities


async def test_capabilities_are_detected_once_per_server_and_user(
    clickhouse: ClickHouseConfig, clickhouse_leg: str
) -> None:
    capabilities.clear_cache()
    async with Connection(clickhouse, {}) as conn:
        caps = await conn.capabilities()
    assert capabilities.cached(clickhouse.url, clickhouse.user) is caps
    async with Connection(clickhouse, {}) as conn:
        assert await conn.capabilities() is caps  # from the cache: no second detection
    assert caps.timezone
    if clickhouse_leg == "server":
        assert caps.version[:2] == (18, 16)
        assert not any([caps.query_parameters, caps.dedup_tokens, caps.async_insert])
        assert not any([caps.arrow_stream, caps.tagged_exceptions, caps.modern_types])
        assert "non_replicated_deduplication_window" not in caps.merge_tree
    else:
        assert caps.version >= (26, 9, 0)
        assert all([caps.query_parameters, caps.dedup_tokens, caps.async_insert])
        assert all([caps.async_insert_dedup, caps.arrow_stream, caps.parquet])
        assert caps.tagged_exceptions
        assert caps.merge_tree["non_replicated_deduplication_window"] == "0"
    assert caps.version_text in caps.describe()


# --------------------------------------------------------------------------- query parameters

VALUES: dict[str, Any] = {
    "i": -(2**63),
    "u": 2**64 - 1,
    "f": -1.25e-300,
    "dec": Decimal("-12345678.0123"),
    "s": "quote ' backslash \\ tab \t newline \n nul \0 🦆 {x} $1",
    "d": date(2024, 2, 29),
    "dt": datetime(2024, 2, 29, 23, 59, 58),
    "aware": datetime(2024, 2, 29, 23, 59, 58, tzinfo=UTC) + timedelta(hours=-2),
    "uid": UUID("12345678-1234-5678-1234-567812345678"),
    "tags": ["a'b", "c\\d", "e\tf"],
    "ids": [1, 2, 3],
    "none": None,
    "flag": True,
}


async def test_placeholders_of_every_common_type_are_bound(
    clickhouse: ClickHouseConfig, table: str
) -> None:
    """As typed query parameters on modern servers, as literals on 18.16: the same rows."""
    await sql(
        clickhouse,
        f"CREATE TABLE {table} (i Int64, u UInt64, f Float64, dec Decimal(18, 4), s String, "
        f"d Date, dt DateTime, uid UUID, tag String, id UInt64, flag UInt8) ENGINE = Memory",
    )
    record = {k: v for k, v in VALUES.items() if k not in ("tags", "ids", "none", "aware")}
    loader = create_clickhouse_loader(table, connection_config=clickhouse)
    await create_el_pipeline(
        source([{**record, "tag": "c\\d", "id": 2}, {**record, "tag": "x", "id": 2}]),
        loader,
        logging=False,
    ).run()
    extractor = create_clickhouse_extractor(
        f"SELECT tag, {{none}} AS nothing FROM {table} WHERE i = {{i}} AND u = {{u}} "
        f"AND f = {{f}} AND dec = {{dec}} AND s = {{s}} AND d = {{d}} AND dt = {{dt}} "
        f"AND toUnixTimestamp(dt) - 7200 = toUnixTimestamp({{aware}}) AND uid = {{uid}} "
        f"AND has({{tags}}, tag) AND has({{ids}}, id) AND flag = {{flag}}",
        clickhouse,
        params=VALUES,
    )
    batches, _ = await collect(extractor)
    assert batches == [[{"tag": "c\\d", "nothing": None}]]


@modern
async def test_placeholders_travel_as_typed_parameters_apart_from_the_sql(
    clickhouse: ClickHouseConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[str, dict[str, Any]]] = []
    stream = Connection.stream

    def recording(self: Connection, query: str, params: Mapping[str, Any], **kw: Any) -> Any:
        seen.append((query, dict(params)))
        return stream(self, query, params, **kw)

    monkeypatch.setattr(Connection, "stream", recording)
    moment = datetime(2024, 1, 1, 12, 30, 0, 250000)
    extractor = create_clickhouse_extractor(
        "SELECT {s} AS s, {n} + 1 AS n, {d} AS d, {m}['k'] AS m, {big} > 1e79 AS big",
        clickhouse,
        params={"s": "x' OR 1 --", "n": 41, "d": moment, "m": {"k": 7}, "big": 10**80},
    )
    batches, _ = await collect(extractor)
    assert batches == [[{"s": "x' OR 1 --", "n": 42, "d": moment, "m": 7, "big": 1}]]
    query, params = seen[-1]
    assert query.startswith(
        "SELECT {s:String} AS s, {n:Int64} + 1 AS n, {d:DateTime64(6)} AS d, "
        "{m:Map(String, Int64)}['k'] AS m, "
    )
    assert f"{10**80} > 1e79" in query  # too big for any parameter type: a literal
    assert "OR 1" not in query
    assert (params["param_s"], params["param_n"], params["param_m"]) == (
        "x' OR 1 --",
        "41",
        "{'k':7}",
    )


async def test_run_windows_are_bound_as_instants(clickhouse: ClickHouseConfig) -> None:
    extractor = create_clickhouse_extractor(
        "SELECT count() AS n FROM numbers(48) "
        "WHERE toDateTime('2024-03-01 00:00:00', 'UTC') + number * 1800 >= {window_start} "
        "AND toDateTime('2024-03-01 00:00:00', 'UTC') + number * 1800 < {window_end}",
        clickhouse,
    )
    window = TimeWindow(
        datetime(2024, 3, 1, 6, tzinfo=UTC).astimezone(), datetime(2024, 3, 1, 7, tzinfo=UTC)
    )
    batches, _ = await collect(extractor, window=window)
    assert batches == [[{"n": 2}]]


# --------------------------------------------------------------------------- errors in mid-result


@modern
async def test_an_error_after_the_result_started_is_the_servers(
    clickhouse: ClickHouseConfig,
) -> None:
    """25.11+ end a failing result with a tagged exception block and a broken connection."""
    extractor = create_clickhouse_extractor(
        "SELECT number AS n, throwIf(number = 150000) AS x FROM numbers(200000)",
        clickhouse,
        batch_size=10_000,
        settings={"max_block_size": 1000},
    )
    batches: list[Batch] = []
    with pytest.raises(ClickHouseExtractError) as info:
        await create_el_pipeline(extractor, batches.append, logging=False).run()
    error = info.value
    assert batches  # the result had started: the error came in mid-stream
    assert sum(map(len, batches)) <= 150_000
    assert error.code == 395
    assert "FUNCTION_THROW_IF_VALUE_IS_NON_ZERO" in str(error)
    assert "connection failed" not in str(error)
    assert error.retryable is False


@modern
async def test_an_error_in_a_compressed_result_is_the_servers(
    clickhouse: ClickHouseConfig,
) -> None:
    """A compressed result starts after 1 MiB: an error past that arrives in mid-stream too."""
    extractor = create_clickhouse_extractor(
        "SELECT number AS n, hex(cityHash64(number)) AS h, throwIf(number = 200000) AS x "
        "FROM numbers(300000)",
        clickhouse.model_copy(update={"compression": True}),
        batch_size=10_000,
        settings={"max_block_size": 1000},
    )
    batches: list[Batch] = []
    with pytest.raises(ClickHouseExtractError) as info:
        await create_el_pipeline(extractor, batches.append, logging=False).run()
    assert batches
    assert info.value.code == 395
    assert info.value.retryable is False


@modern
async def test_a_transient_server_error_is_retryable(clickhouse: ClickHouseConfig) -> None:
    extractor = create_clickhouse_extractor(
        "SELECT number, throwIf(number = 5000, 'busy', toInt16(202)) AS x FROM numbers(10000)",
        clickhouse,
        settings={"max_block_size": 100, "allow_custom_error_code_in_throwif": 1},
    )
    with pytest.raises(ClickHouseExtractError) as info:
        await collect(extractor)
    assert info.value.code == 202  # TOO_MANY_SIMULTANEOUS_QUERIES: it passes
    assert info.value.retryable is True


# --------------------------------------------------------------------------- upsert on 26.x


@modern
async def test_upsert_accepts_a_one_column_key_in_parentheses(
    clickhouse: ClickHouseConfig, table: str
) -> None:
    await sql(
        clickhouse,
        f"CREATE TABLE {table} (user_id UInt64, seen DateTime) "
        f"ENGINE = ReplacingMergeTree(seen) ORDER BY (user_id)",
    )
    assert "(user_id)" in await sql(
        clickhouse, f"SELECT sorting_key FROM system.tables WHERE name = '{table}'"
    )
    upsert = create_clickhouse_loader(
        table, mode="upsert", upsert_key=["user_id"], connection_config=clickhouse
    )
    batch = [{"user_id": 1, "seen": datetime(2024, 1, d)} for d in (3, 1, 2)]
    await create_el_pipeline(source(batch), upsert, logging=False).run()
    text = await sql(clickhouse, f"SELECT user_id, seen FROM {table} FINAL FORMAT TSV")
    assert text == "1\t2024-01-03 00:00:00\n"


# --------------------------------------------------------------------------- exactly-once loads


async def test_inserts_carry_tokens_only_where_the_table_deduplicates(
    clickhouse: ClickHouseConfig, clickhouse_leg: str, table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = drop_inserts(monkeypatch, {})
    await create_el_pipeline(source(rows(150)), loader(clickhouse, table), logging=False).run(
        window=DAY
    )
    engine = await sql(clickhouse, f"SELECT engine_full FROM system.tables WHERE name = '{table}'")
    plain = f"{table}_plain"
    await sql(
        clickhouse, f"CREATE TABLE {plain} (id UInt64, name String) ENGINE = MergeTree ORDER BY id"
    )
    await create_el_pipeline(
        source(rows(150)), loader(clickhouse, plain, create_table=None), logging=False
    ).run(window=DAY)
    tokens = [params.get("insert_deduplication_token") for params in sent]
    if clickhouse_leg == "server":  # 18.16: no tokens, and no window a create could set
        assert tokens == [None] * 4
        assert "deduplication_window" not in engine
        return
    assert "non_replicated_deduplication_window = 1000" in engine
    assert all(tokens[:2])
    assert tokens[2:] == [None, None]
    assert tokens[0] != tokens[1]
    assert tokens[0].split(":")[1] == tokens[1].split(":")[1]  # the same run scope


@modern
async def test_a_connection_lost_after_the_commit_is_retried_without_duplicates(
    clickhouse: ClickHouseConfig, table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = drop_inserts(monkeypatch, {2: "response"})  # batch 2 commits, its answer is lost
    result = await create_el_pipeline(
        source(rows(250)), loader(clickhouse, table, retries=2), logging=False
    ).run(window=DAY)
    assert len(sent) == 4  # batch 2 was sent twice
    assert sent[1]["insert_deduplication_token"] == sent[2]["insert_deduplication_token"]
    assert await count(clickhouse, table) == 250  # the server recognised the second one
    assert result.records_out == 250


@modern
@pytest.mark.parametrize("drop", ["body", "response"])
async def test_rerunning_the_window_after_a_lost_connection_loads_each_row_once(
    clickhouse: ClickHouseConfig, table: str, monkeypatch: pytest.MonkeyPatch, drop: str
) -> None:
    drop_inserts(monkeypatch, {3: drop})
    data = rows(450)
    pipeline = create_el_pipeline(
        source(data[:170], data[170:380], data[380:]),
        loader(clickhouse, table, retries=0),
        name="p",
    )
    with pytest.raises(ClickHouseLoadError) as info:
        await pipeline.run(window=DAY)
    error = info.value
    assert error.retryable is True  # the table deduplicates: a rerun cannot duplicate
    assert error.batch == 3
    assert error.rows_committed == 200
    assert error.result is not None
    assert error.result.records_out == 200  # committed, not buffered
    assert await count(clickhouse, table) == (300 if drop == "response" else 200)

    result = await pipeline.run(window=DAY)  # the same window again
    assert await count(clickhouse, table) == 450
    assert result.records_out == 450

    other = TimeWindow(DAY.end, DAY.end + timedelta(days=1))
    await pipeline.run(window=other)  # the same rows for another window are loaded again
    assert await count(clickhouse, table) == 900


@modern
async def test_a_retry_composition_loads_each_row_once(
    clickhouse: ClickHouseConfig, table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    drop_inserts(monkeypatch, {2: "response", 4: "body"})  # two attempts fail
    pipeline = create_el_pipeline(
        source(rows(100), rows(100, 100), rows(100, 200)),
        loader(clickhouse, table, retries=0),
        name="p",
        logging=False,
    )
    retrying = create_retry_pipeline(pipeline, max_retries=3, backoff_factor=0.0, logging=False)
    result = await retrying.run(window=DAY)
    assert result.succeeded
    assert len(result.children) == 3
    assert await count(clickhouse, table) == 300
    text = await sql(clickhouse, f"SELECT uniqExact(id) FROM {table}")
    assert int(text) == 300


@modern
async def test_identical_batches_are_not_taken_for_duplicates(
    clickhouse: ClickHouseConfig, table: str
) -> None:
    same = rows(100)
    await create_el_pipeline(
        source(same, same, same), loader(clickhouse, table), logging=False
    ).run(window=DAY)
    assert await count(clickhouse, table) == 300


@modern
async def test_with_tokens_inserts_are_cut_by_rows_alone(
    clickhouse: ClickHouseConfig, table: str
) -> None:
    load = loader(clickhouse, table, max_bytes=1024, flush_interval=0.01)
    result = await create_el_pipeline(
        source(rows(30), rows(30, 30), rows(40, 60)), load, logging=False
    ).run(window=DAY)
    assert result.stage("clickhouse").metrics["inserts"] == 1  # 100 rows: one insert


@modern
async def test_without_deduplication_a_failure_after_sending_is_not_retryable(
    clickhouse: ClickHouseConfig, table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await sql(
        clickhouse, f"CREATE TABLE {table} (id UInt64, name String) ENGINE = MergeTree ORDER BY id"
    )
    sent = drop_inserts(monkeypatch, {2: "response"})
    with pytest.raises(ClickHouseLoadError) as info:
        await create_el_pipeline(
            source(rows(250)), loader(clickhouse, table, create_table=None), logging=False
        ).run(window=DAY)
    error = info.value
    assert len(sent) == 2  # not retried
    assert error.retryable is False
    text = str(error)
    assert "may have written them" in text
    assert "does not deduplicate inserts" in text
    assert "100 rows were inserted before it" in text
    assert error.rows_committed == 100
    assert error.result is not None
    assert error.result.records_out == 100
    assert await count(clickhouse, table) == 200  # which is why: the lost batch did land


def refuse_inserts(monkeypatch: pytest.MonkeyPatch, after: int, error: Exception) -> None:
    """Make every insert after the first ``after`` fail with ``error`` before anything is sent
    (the server refusing the connection, or refusing the insert as overloaded)."""
    insert = Connection.insert
    seen = [0]

    async def refusing(
        self: Connection, query: str, body: bytes, params: Mapping[str, Any]
    ) -> None:
        seen[0] += 1
        if seen[0] > after:
            raise error
        await insert(self, query, body, params)

    monkeypatch.setattr(Connection, "insert", refusing)


@pytest.mark.parametrize(
    "refusal",
    [
        httpx.ConnectError("connection refused"),
        ServerError("Code: 202. DB::Exception: Too many simultaneous queries. Maximum: 1"),
    ],
    ids=["refused", "overloaded"],
)
async def test_a_batch_never_sent_after_committed_rows_without_deduplication_is_final(
    clickhouse: ClickHouseConfig, table: str, monkeypatch: pytest.MonkeyPatch, refusal: Exception
) -> None:
    await sql(
        clickhouse, f"CREATE TABLE {table} (id UInt64, name String) ENGINE = MergeTree ORDER BY id"
    )
    refuse_inserts(monkeypatch, 2, refusal)
    pipeline = create_el_pipeline(
        source(rows(500)), loader(clickhouse, table, create_table=None, retries=1), logging=False
    )
    retrying = create_retry_pipeline(pipeline, max_retries=3, backoff_factor=0.0, logging=False)
    with pytest.raises(CompositionError) as info:
        await retrying.run(window=DAY)
    result = info.value.result
    assert result is not None
    assert result.attempts == 1  # not run again: that would insert 200 rows twice
    error = info.value.__cause__
    assert isinstance(error, ClickHouseLoadError)
    assert error.retryable is False
    assert error.batch == 3
    assert error.rows_committed == 200
    assert "running again would insert them twice" in str(error)
    assert "does not deduplicate inserts" in str(error) or "no insert_deduplication_token" in str(
        error
    )
    assert result.children[0].records_out == 200  # committed, not buffered
    assert await count(clickhouse, table) == 200


async def test_a_batch_never_sent_before_any_commit_stays_retryable(
    clickhouse: ClickHouseConfig, table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await sql(
        clickhouse, f"CREATE TABLE {table} (id UInt64, name String) ENGINE = MergeTree ORDER BY id"
    )
    refuse_inserts(monkeypatch, 0, httpx.ConnectError("connection refused"))
    with pytest.raises(ClickHouseLoadError) as info:
        await create_el_pipeline(
            source(rows(150)), loader(clickhouse, table, create_table=None), logging=False
        ).run(window=DAY)
    assert info.value.retryable is True  # nothing of the run is in the table
    assert info.value.rows_committed == 0
    assert await count(clickhouse, table) == 0


async def test_a_rejected_batch_leaves_records_out_at_what_was_committed(
    clickhouse: ClickHouseConfig, table: str
) -> None:
    bad = rows(50, 100)
    bad[10]["id"] = "eleven"
    with pytest.raises(ClickHouseLoadError) as info:
        await create_el_pipeline(
            source(rows(100), bad), loader(clickhouse, table), logging=False
        ).run()
    assert info.value.rows_committed == 100
    assert info.value.result is not None
    assert info.value.result.records_in == 150
    assert info.value.result.records_out == 100


# --------------------------------------------------------------------------- async inserts


@modern
async def test_many_small_async_loads_at_once(
    clickhouse: ClickHouseConfig, table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = drop_inserts(monkeypatch, {3: "response"})

    async def load(n: int) -> None:
        pipeline = create_el_pipeline(
            source(rows(10, 10 * n)),
            loader(clickhouse, table, async_insert=True, retries=2),
            name=f"small-{n}",
            logging=False,
        )
        await pipeline.run(window=DAY)

    await load(0)  # creates the table
    async with anyio.create_task_group() as tg:
        for n in range(1, 5):
            tg.start_soon(load, n)
    assert await count(clickhouse, table) == 50  # the dropped answer was retried, deduplicated
    assert all(p["async_insert"] == 1 and p["wait_for_async_insert"] == 1 for p in sent)
    assert all(p["async_insert_deduplicate"] == 1 for p in sent)
    assert all(p["insert_deduplication_token"] for p in sent)


@pytest.mark.clickhouse_legs("server")
async def test_async_insert_needs_a_server_that_has_it(
    clickhouse: ClickHouseConfig, table: str
) -> None:
    with pytest.raises(
        ClickHouseLoadError, match=r"async_insert=True needs ClickHouse 21\.11"
    ) as info:
        await create_el_pipeline(
            source(rows(10)), loader(clickhouse, table, async_insert=True), logging=False
        ).run()
    assert info.value.retryable is False
    assert "18.16" in str(info.value)


# --------------------------------------------------------------------------- float edge


async def test_non_finite_parameters(clickhouse: ClickHouseConfig) -> None:
    extractor = create_clickhouse_extractor(
        "SELECT isNaN({nan}) AS a, isInfinite({inf}) AS b",
        clickhouse,
        params={"nan": math.nan, "inf": -math.inf},
    )
    batches, _ = await collect(extractor)
    assert batches == [[{"a": 1, "b": 1}]]

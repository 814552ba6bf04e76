"""Arrow batches to and from ClickHouse, on both legs: exact round trips of every supported type,
through Arrow, through Parquet files, and mixed with records stages."""

from __future__ import annotations

import gc
import tracemalloc
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests.connectors.test_clickhouse import sql

from ductwork import (
    ClickHouseConfig,
    ClickHouseExtractError,
    ClickHouseLoadError,
    RunContext,
    create_clickhouse_extractor,
    create_clickhouse_loader,
    create_el_pipeline,
    create_etl_pipeline,
    create_file_extractor,
    create_file_loader,
    loader,
)
from ductwork.connectors.clickhouse import loader_insert
from ductwork.connectors.clickhouse.client import Connection
from ductwork.connectors.clickhouse.codec import ServerError

pytestmark = pytest.mark.clickhouse

# Every type the columnar path supports, with the values that break naive codecs: NULLs, empty
# strings beside NULL, UInt64 above 2**63, exact decimals, DateTime zones, zero dates, arrays.
COLUMNS = (
    "id UInt64, name Nullable(String), blank String, score Float64, small Int8, "
    "at DateTime('Asia/Tokyo'), utc DateTime('UTC'), day Date, price Decimal(18, 4), "
    "big Decimal(38, 10), key UUID, level Nullable(Int32), kind String, "
    "tags Array(String), nums Array(Nullable(Int64))"
)
VALUES = (
    "(18446744073709551615, NULL, '', 1.5, -128, '2024-03-31 02:30:00', 0, '2024-02-29', "
    "12345678901234.5678, -1234567890123456789012345678.0123456789, "
    "'61f0c404-5cb3-11e7-907b-a6006ad3dba0', NULL, 'a', ['x', ''], "
    "[1, NULL, -9223372036854775808]),"
    "(2, '', 'not blank', -0.0, 127, '1970-01-01 09:00:00', '2038-01-19 03:14:07', '1970-01-01', "
    "0.0001, 0, '00000000-0000-0000-0000-000000000000', 7, 'b', [], []),"
    "(9223372036854775808, 'ü \"quoted\", with\nnewline', 'x', inf, 0, '2000-01-01 00:00:00', "
    "'2000-01-01 00:00:00', '2000-01-01', -0.5, 1, '61f0c404-5cb3-11e7-907b-a6006ad3dba1', -1, "
    "'a', ['a,b'], [NULL])"
)


async def _table(config: ClickHouseConfig, columns: str = COLUMNS) -> str:
    name = f"t_{uuid.uuid4().hex[:10]}"
    await sql(config, f"CREATE TABLE {name} ({columns}) ENGINE = MergeTree ORDER BY tuple()")
    return name


async def _fill(config: ClickHouseConfig) -> str:
    name = await _table(config)
    await sql(config, f"INSERT INTO {name} VALUES {VALUES}")
    return name


def _finite(values: str) -> str:
    return values.replace(", inf, ", ", 2.5, ").replace(", -0.0, ", ", 0.0, ")


async def _tables(config: ClickHouseConfig, query: str, **options: Any) -> list[pa.Table]:
    extractor = create_clickhouse_extractor(query, config, batch_format="arrow", **options)
    return [table async for table in extractor.extract(RunContext())]


async def _dump(config: ClickHouseConfig, table: str) -> str:
    return await sql(config, f"SELECT * FROM {table} ORDER BY id FORMAT TSV")


async def test_extract_types_as_arrow(clickhouse: ClickHouseConfig) -> None:
    source = await _fill(clickhouse)
    (table,) = await _tables(clickhouse, f"SELECT * FROM {source} ORDER BY id")
    schema = table.schema
    assert schema.field("id").type == pa.uint64()
    assert not schema.field("id").nullable
    assert schema.field("name").nullable
    assert schema.field("at").type == pa.timestamp("s", "Asia/Tokyo")
    assert schema.field("price").type == pa.decimal128(18, 4)
    assert schema.field("tags").type == pa.list_(pa.field("item", pa.string(), False))
    rows = {row["id"]: row for row in table.to_pylist()}
    first = rows[2**64 - 1]
    assert first["name"] is None
    assert first["blank"] == ""
    assert first["price"] == Decimal("12345678901234.5678")
    assert first["big"] == Decimal("-1234567890123456789012345678.0123456789")
    assert first["key"] == "61f0c404-5cb3-11e7-907b-a6006ad3dba0"
    assert first["nums"] == [1, None, -(2**63)]
    assert first["at"].isoformat() == "2024-03-31T02:30:00+09:00"
    assert first["utc"].timestamp() == 0
    assert rows[2]["name"] == ""
    assert rows[2]["level"] == 7
    assert rows[2**63]["name"] == 'ü "quoted", with\nnewline'


async def test_round_trip_through_arrow_is_exact(clickhouse: ClickHouseConfig) -> None:
    """Arrays included: on a server without Arrow formats they take the records path, whose
    JSON has no infinities and no negative zero, so this table holds neither."""
    source = await _table(clickhouse)
    await sql(clickhouse, f"INSERT INTO {source} VALUES {_finite(VALUES)}")
    target = await _table(clickhouse)
    extractor = create_clickhouse_extractor(
        f"SELECT * FROM {source}", clickhouse, batch_format="arrow"
    )
    pipeline = create_el_pipeline(
        extractor, create_clickhouse_loader(target, connection_config=clickhouse), logging=False
    )
    result = await pipeline.run()
    assert result.records_out == 3
    assert await _dump(clickhouse, target) == await _dump(clickhouse, source)


async def test_round_trip_of_scalar_types_uses_the_columnar_codecs(
    clickhouse: ClickHouseConfig,
) -> None:
    """Without arrays, both server generations take the columnar path both ways (ArrowStream,
    or CSV written and read by pyarrow), and the values come back exactly, inf included."""
    scalars = COLUMNS.split(", tags")[0]
    source = await _table(clickhouse, scalars)
    rows = VALUES.replace(", ['x', ''], [1, NULL, -9223372036854775808])", ")")
    rows = rows.replace(", [], [])", ")").replace(", ['a,b'], [NULL])", ")")
    await sql(clickhouse, f"INSERT INTO {source} VALUES {rows}")
    target = await _table(clickhouse, scalars)
    extractor = create_clickhouse_extractor(
        f"SELECT * FROM {source}", clickhouse, batch_format="arrow"
    )
    sink = create_clickhouse_loader(target, connection_config=clickhouse)
    await create_el_pipeline(extractor, sink, logging=False).run()
    assert await _dump(clickhouse, target) == await _dump(clickhouse, source)


async def test_round_trip_through_parquet_is_exact(
    clickhouse: ClickHouseConfig, tmp_path: Path
) -> None:
    source = await _table(clickhouse)
    await sql(clickhouse, f"INSERT INTO {source} VALUES {_finite(VALUES)}")
    target = await _table(clickhouse)
    path = tmp_path / "dump.parquet"
    extractor = create_clickhouse_extractor(
        f"SELECT * FROM {source}", clickhouse, batch_format="arrow"
    )
    await create_el_pipeline(extractor, create_file_loader(path), logging=False).run()
    assert pq.read_table(path).schema.field("id").type == pa.uint64()
    reader = create_file_extractor(path, batch_format="arrow")
    sink = create_clickhouse_loader(target, connection_config=clickhouse)
    await create_el_pipeline(reader, sink, logging=False).run()
    assert await _dump(clickhouse, target) == await _dump(clickhouse, source)


async def test_small_blocks_are_gathered_into_batches(clickhouse: ClickHouseConfig) -> None:
    tables = await _tables(
        clickhouse,
        "SELECT number AS n, toString(number) AS s FROM numbers(25000)",
        batch_size=10_000,
        settings={"max_block_size": 100},
    )
    assert [table.num_rows for table in tables] == [10_000, 10_000, 5_000]
    assert pa.concat_tables(tables).column("n").to_pylist() == list(range(25000))


async def test_an_arrow_extract_into_a_records_stage(clickhouse: ClickHouseConfig) -> None:
    seen: list[Any] = []

    def label(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{"label": f"#{record['n']}"} for record in batch]

    extractor = create_clickhouse_extractor(
        "SELECT number AS n FROM numbers(5)", clickhouse, batch_format="arrow"
    )
    await create_etl_pipeline(extractor, label, seen.append, logging=False).run()
    assert [record["label"] for batch in seen for record in batch] == [f"#{i}" for i in range(5)]


async def test_an_error_in_mid_result_is_the_servers(clickhouse: ClickHouseConfig) -> None:
    with pytest.raises(ClickHouseExtractError) as info:
        await _tables(
            clickhouse,
            "SELECT number, throwIf(number = 150000) AS x FROM numbers(300000)",
            settings={"max_block_size": 1000},
        )
    assert info.value.code == 395
    assert not info.value.retryable


async def test_arrow_batches_into_named_columns(clickhouse: ClickHouseConfig) -> None:
    target = await _table(clickhouse, "id UInt64, name String, extra String DEFAULT 'd'")
    batch = pa.table({"name": ["a", "b"], "id": pa.array([1, 2], pa.uint64()), "x": [0, 0]})
    sink = create_clickhouse_loader(target, ["id", "name"], connection_config=clickhouse)

    async def extract() -> Any:
        yield batch

    result = await create_el_pipeline(extract, sink, logging=False).run()
    assert result.records_out == 2
    assert await _dump(clickhouse, target) == "1\ta\td\n2\tb\td\n"


async def test_a_failed_arrow_insert_names_the_batch(clickhouse: ClickHouseConfig) -> None:
    target = await _table(clickhouse, "id UInt8")
    sink = create_clickhouse_loader(target, connection_config=clickhouse, batch_size=2)

    async def extract() -> Any:
        yield pa.table({"id": [1, 2]})
        yield pa.table({"id": ["x", "y"]})

    from ductwork import ClickHouseLoadError

    with pytest.raises(ClickHouseLoadError) as info:
        await create_el_pipeline(extract, sink, logging=False).run()
    assert info.value.batch == 2
    assert info.value.rows_committed == 2
    assert await sql(clickhouse, f"SELECT count() FROM {target}") == "2\n"


async def test_a_loader_function_taking_arrow(clickhouse: ClickHouseConfig) -> None:
    counted: list[int] = []
    extractor = create_clickhouse_extractor(
        "SELECT number AS n FROM numbers(1000)", clickhouse, batch_size=300
    )
    stage = loader(lambda table: counted.append(table.num_rows), batch_format="arrow")
    await create_el_pipeline(extractor, stage, logging=False).run()
    assert counted == [300, 300, 300, 100]


async def test_create_table_from_an_arrow_schema(clickhouse: ClickHouseConfig) -> None:
    schema = pa.schema(
        [
            pa.field("id", pa.uint64(), nullable=False),  # the sorting key: not nullable
            pa.field("name", pa.string()),
            pa.field("ok", pa.bool_(), nullable=False),
            pa.field("at", pa.timestamp("s", "UTC"), nullable=False),
        ]
    )
    batch = pa.table(
        {"id": [1, 2], "name": ["a", None], "ok": [True, False], "at": [3600, 86_400]},
        schema=schema,
    )
    name = f"t_{uuid.uuid4().hex[:10]}"
    sink = create_clickhouse_loader(name, connection_config=clickhouse, create_table=batch.schema)

    async def extract() -> Any:
        yield batch

    await create_el_pipeline(extract, sink, logging=False).run()
    described = await sql(
        clickhouse, f"SELECT name, type FROM system.columns WHERE table = '{name}' FORMAT TSV"
    )
    assert described == ("id\tUInt64\nname\tNullable(String)\nok\tUInt8\nat\tDateTime(\\'UTC\\')\n")
    assert await sql(clickhouse, f"SELECT * FROM {name} ORDER BY id FORMAT TSV") == (
        "1\ta\t1\t1970-01-01 01:00:00\n2\t\\N\t0\t1970-01-02 00:00:00\n"
    )


async def test_insert_bodies_are_not_kept_after_they_were_sent(
    clickhouse: ClickHouseConfig,
) -> None:
    """httpx holds a request's body in a reference cycle: without care, each insert's body would
    stay in memory until the cyclic garbage collector runs, which large bytes do not trigger."""
    name = f"t_{uuid.uuid4().hex[:10]}"
    await sql(clickhouse, f"CREATE TABLE {name} (s String) ENGINE = MergeTree ORDER BY tuple()")
    rows, inserts = 20_000, 6
    text = pa.array(["x" * 200] * rows)  # a body of about 4 MB per insert

    async def tables() -> Any:
        for _ in range(inserts):
            yield pa.table({"s": text})

    sink = create_clickhouse_loader(name, connection_config=clickhouse, batch_size=rows)
    pipeline = create_el_pipeline(tables, sink, logging=False)
    gc.disable()
    tracemalloc.start()
    try:
        result = await pipeline.run()
        left, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        gc.enable()
    assert result.stage("clickhouse").metrics["inserts"] == inserts
    body = result.stage("clickhouse").metrics["bytes_sent"] / inserts
    assert body > 4_000_000
    assert left < 1.5 * body, f"{left:,} bytes still held after {inserts} inserts of {body:,.0f}"


def _numbers(batches: int, rows: int) -> Any:
    async def tables() -> Any:
        for index in range(batches):
            yield pa.table({"n": pa.array(range(index * rows, (index + 1) * rows), pa.uint64())})

    return tables


async def _numbers_table(clickhouse: ClickHouseConfig) -> str:
    name = f"t_{uuid.uuid4().hex[:10]}"
    await sql(clickhouse, f"CREATE TABLE {name} (n UInt64) ENGINE = MergeTree ORDER BY n")
    return name


async def test_the_next_arrow_batch_is_encoded_while_an_insert_is_in_flight(
    clickhouse: ClickHouseConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each insert waits until the next batch has been encoded: only an insert left in flight
    while the loader encodes the next one can finish."""
    name = await _numbers_table(clickhouse)
    encoded: list[anyio.Event] = [anyio.Event() for _ in range(4)]
    encode, insert = loader_insert.insert_body, Connection.insert
    calls = [0, 0]

    def encoding(*args: Any) -> Any:
        body = encode(*args)
        calls[0] += 1
        encoded[calls[0] - 1].set()
        return body

    async def inserting(self: Connection, query: str, body: bytes, params: Any) -> None:
        calls[1] += 1
        if calls[1] < 4:
            await encoded[calls[1]].wait()  # the batch after this one
        await insert(self, query, body, params)

    monkeypatch.setattr(loader_insert, "insert_body", encoding)
    monkeypatch.setattr(Connection, "insert", inserting)
    sink = create_clickhouse_loader(name, connection_config=clickhouse, batch_size=1000)
    with anyio.fail_after(30):
        result = await create_el_pipeline(_numbers(4, 1000), sink, logging=False).run()
    assert result.records_out == 4000
    loaded = await sql(clickhouse, f"SELECT n FROM {name} ORDER BY n FORMAT TSV")
    assert loaded.split() == [str(n) for n in range(4000)]


async def test_an_insert_failing_in_flight_stops_the_load_at_its_batch(
    clickhouse: ClickHouseConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = await _numbers_table(clickhouse)
    insert, sent = Connection.insert, []

    async def failing(self: Connection, query: str, body: bytes, params: Any) -> None:
        sent.append(len(sent) + 1)
        if len(sent) == 2:
            raise ServerError("Code: 27. DB::Exception: Cannot parse input (for the test)", 500)
        await insert(self, query, body, params)

    monkeypatch.setattr(Connection, "insert", failing)
    sink = create_clickhouse_loader(name, connection_config=clickhouse, batch_size=1000)
    with pytest.raises(ClickHouseLoadError) as info:
        await create_el_pipeline(_numbers(5, 1000), sink, logging=False).run()
    assert info.value.batch == 2
    assert info.value.rows_committed == 1000
    assert sent == [1, 2]  # nothing sent after the failed insert
    assert (await sql(clickhouse, f"SELECT count() FROM {name}")).strip() == "1000"


async def test_a_cancelled_run_cancels_the_insert_in_flight(
    clickhouse: ClickHouseConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = await _numbers_table(clickhouse)
    started, stopped = anyio.Event(), anyio.Event()

    async def hanging(self: Connection, query: str, body: bytes, params: Any) -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            stopped.set()

    monkeypatch.setattr(Connection, "insert", hanging)
    sink = create_clickhouse_loader(name, connection_config=clickhouse, batch_size=1000)
    pipeline = create_el_pipeline(_numbers(3, 1000), sink, logging=False)
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(pipeline.run)
            await started.wait()
            tasks.cancel_scope.cancel()
    assert stopped.is_set()  # the insert's task ended with the run

"""The ClickHouse extractor and loader against a real server (started by
``tests/clickhouse_legs.py``).

Every test taking ``clickhouse`` runs on both legs (the 18.16 server and the chdb front); those
taking ``local_clickhouse`` kill and restart a server of their own, so they run on the 18.16
server only (their faults on the chdb leg: ``test_clickhouse_modern.py``)."""

from __future__ import annotations

import gc
import logging
import math
import re
import threading
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import anyio
import httpx
import orjson
import pytest

from clickhouse_legs import count as count
from clickhouse_legs import sql as sql
from ductwork import (
    Batch,
    ClickHouseConfig,
    ClickHouseError,
    ClickHouseExtractError,
    ClickHouseLoadError,
    ExtractError,
    LoadError,
    RunContext,
    TimeWindow,
    create_clickhouse_extractor,
    create_clickhouse_loader,
    create_el_pipeline,
)

pytestmark = pytest.mark.clickhouse

ROOT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- helpers


async def committed(config: ClickHouseConfig, table: str) -> int:
    """Rows in the active parts of a MergeTree table (0 while the table does not exist yet)."""
    return int(
        await sql(
            config,
            f"SELECT sum(rows) FROM system.parts WHERE active "
            f"AND database = '{config.database}' AND table = '{table}'",
        )
    )


@pytest.fixture
def table() -> str:
    return f"t_{uuid.uuid4().hex[:10]}"


def source(*batches: Batch) -> Callable[[], AsyncIterator[Batch]]:
    async def extract() -> AsyncIterator[Batch]:
        for batch in batches:
            yield batch

    return extract


async def collect(extractor: Any, **run: Any) -> tuple[list[Batch], Any]:
    batches: list[Batch] = []
    result = await create_el_pipeline(extractor, batches.append, logging=False).run(**run)
    return batches, result


# --------------------------------------------------------------------------- round trip

TYPES = {
    "i8": "Int8",
    "i16": "Int16",
    "i32": "Int32",
    "i64": "Int64",
    "u8": "UInt8",
    "u16": "UInt16",
    "u32": "UInt32",
    "u64": "UInt64",
    "f32": "Float32",
    "f64": "Float64",
    "s": "String",
    "fs": "FixedString(4)",
    "d": "Date",
    "dt": "DateTime",
    "dec9": "Decimal(9, 2)",
    "dec18": "Decimal(18, 4)",
    "dec38": "Decimal(38, 10)",
    "u": "UUID",
    "ns": "Nullable(String)",
    "ni": "Nullable(Int32)",
    "arr": "Array(String)",
    "arrn": "Array(Nullable(Int64))",
    "arrd": "Array(Decimal(9, 2))",
    "e8": "Enum8('red' = 1, 'green' = 2)",
    "e16": "Enum16('low' = -1000, 'high' = 1000)",
    "tup": "Tuple(UInt8, String)",
}

RECORDS: Batch = [
    {
        "i8": -128,
        "i16": -32768,
        "i32": -(2**31),
        "i64": -(2**63),
        "u8": 255,
        "u16": 65535,
        "u32": 2**32 - 1,
        "u64": 2**64 - 1,
        "f32": 0.5,
        "f64": -1.25e-300,
        "s": "quote ' double \" backslash \\ tab \t newline \n unicode é 🦆",
        "fs": "ab",
        "d": date(2024, 2, 29),
        "dt": datetime(2024, 2, 29, 23, 59, 58),
        "dec9": Decimal("-9999999.99"),
        "dec18": Decimal("12345678901234.5678"),
        "dec38": Decimal("1234567890123456789012345678.0123456789"),
        "u": UUID("12345678-1234-5678-1234-567812345678"),
        "ns": None,
        "ni": None,
        "arr": ["a", "b'c", ""],
        "arrn": [1, None, -(2**63)],
        "arrd": [Decimal("1.25"), Decimal("-0.01")],
        "e8": "green",
        "e16": "low",
        "tup": (7, "x"),
    },
    {
        "i8": 127,
        "i16": 32767,
        "i32": 2**31 - 1,
        "i64": 2**63 - 1,
        "u8": 0,
        "u16": 0,
        "u32": 0,
        "u64": 0,
        "f32": -0.0,
        "f64": 3.0,
        "s": "",
        "fs": "abcd",
        "d": date(1970, 1, 2),
        "dt": datetime(1999, 12, 31, 0, 0, 1),
        "dec9": Decimal("0.00"),
        "dec18": Decimal("-0.0001"),
        "dec38": Decimal("0E-10"),
        "u": UUID("00000000-0000-0000-0000-000000000001"),
        "ns": "present",
        "ni": -7,
        "arr": [],
        "arrn": [],
        "arrd": [],
        "e8": "red",
        "e16": "high",
        "tup": (0, ""),
    },
]


async def test_round_trip_of_every_common_type(clickhouse: ClickHouseConfig, table: str) -> None:
    loader = create_clickhouse_loader(
        table, list(TYPES), connection_config=clickhouse, create_table=TYPES, order_by=["i8"]
    )
    result = await create_el_pipeline(source(RECORDS), loader, logging=False).run()
    assert result.stage("clickhouse").metrics["rows_inserted"] == 2

    extractor = create_clickhouse_extractor(
        f"SELECT * FROM {table} ORDER BY i8", clickhouse, batch_size=10
    )
    [batch], _ = await collect(extractor)
    expected = [dict(r, fs=r["fs"].ljust(4, "\0")) for r in RECORDS]  # FixedString pads with NUL
    assert batch == expected
    for got, want in zip(batch, expected, strict=True):
        for key, value in want.items():
            assert type(got[key]) is type(value), key
    assert str(batch[0]["dec9"]) == "-9999999.99"  # exact digits, not through a float
    assert str(batch[1]["dec18"]) == "-0.0001"


async def test_non_finite_floats_and_timezones(clickhouse: ClickHouseConfig) -> None:
    extractor = create_clickhouse_extractor(
        "SELECT nan AS n, -inf AS i, toDateTime(0) AS zero, toDate(0) AS day, "
        "toDateTime(1700000000, 'Asia/Tokyo') AS tokyo",
        clickhouse,
    )
    [[row]], _ = await collect(extractor)
    assert math.isnan(row["n"])
    assert row["i"] == -math.inf
    assert row["zero"] == datetime(1970, 1, 1)
    assert row["day"] == date(1970, 1, 1)
    assert row["tokyo"] == datetime(2023, 11, 15, 7, 13, 20)  # 22:13:20 UTC, printed in Tokyo


async def test_aware_datetimes_land_on_the_right_instant(
    clickhouse: ClickHouseConfig, table: str
) -> None:
    instant = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    berlin = instant.astimezone(ZoneInfo("Europe/Berlin"))  # 14:00 local time
    loader = create_clickhouse_loader(
        table, connection_config=clickhouse, create_table={"id": "UInt8", "ts": "DateTime"}
    )
    await create_el_pipeline(
        source([{"id": 1, "ts": instant}, {"id": 2, "ts": berlin}]), loader, logging=False
    ).run()
    text = await sql(clickhouse, f"SELECT toUnixTimestamp(ts) FROM {table} ORDER BY id")
    assert text.split() == [str(int(instant.timestamp()))] * 2


# --------------------------------------------------------------------------- extractor


async def test_multi_batch_extract_has_exact_counts(clickhouse: ClickHouseConfig) -> None:
    extractor = create_clickhouse_extractor(
        "SELECT number AS n, toString(number) AS s FROM numbers(25003)",
        clickhouse,
        batch_size=1000,
        settings={"max_block_size": 777},
    )
    batches, result = await collect(extractor)
    assert [len(b) for b in batches] == [1000] * 25 + [3]
    assert [r["n"] for b in batches for r in b] == list(range(25003))
    assert batches[-1][-1] == {"n": 25002, "s": "25002"}
    assert result.records_in == 25003
    assert result.stage("clickhouse").metrics["bytes_received"] > 25003 * 10


async def test_an_empty_result_yields_no_batch(clickhouse: ClickHouseConfig) -> None:
    batches, result = await collect(
        create_clickhouse_extractor("SELECT number FROM numbers(10) WHERE 0", clickhouse)
    )
    assert batches == []
    assert result.succeeded


async def test_params_are_bound_safely(clickhouse: ClickHouseConfig, table: str) -> None:
    await sql(clickhouse, f"CREATE TABLE {table} (name String) ENGINE = Memory")
    names = ["ada", "o'brien", "back\\slash", "x' OR 1=1 --", "'; DROP TABLE t; --"]
    await sql(
        clickhouse,
        f"INSERT INTO {table} FORMAT JSONEachRow\n"
        + "\n".join(orjson.dumps({"name": n}).decode() for n in names),
    )
    query = f"SELECT name FROM {table} WHERE name = {{name}} ORDER BY name"
    for name in names:
        extractor = create_clickhouse_extractor(query, clickhouse, params={"name": name})
        batches, _ = await collect(extractor)
        assert batches == [[{"name": name}]]
    attack = "nobody' OR '1'='1"
    batches, _ = await collect(
        create_clickhouse_extractor(query, clickhouse, params={"name": attack})
    )
    assert batches == []
    assert await count(clickhouse, table) == len(names)  # still there, nothing dropped


async def test_params_from_the_run_window_and_a_function(
    clickhouse: ClickHouseConfig, table: str
) -> None:
    await sql(clickhouse, f"CREATE TABLE {table} (ts DateTime, kind String) ENGINE = Memory")
    await sql(
        clickhouse,
        f"INSERT INTO {table} SELECT toDateTime('2024-01-01 00:00:00') + number * 3600, "
        f"if(number % 2 = 0, 'even', 'odd') FROM numbers(48)",
    )
    extractor = create_clickhouse_extractor(
        f"SELECT count() AS n FROM {table} "
        f"WHERE ts >= {{window_start}} AND ts < {{window_end}} AND kind = {{kind}}",
        clickhouse,
        params=lambda ctx: {"kind": ctx.params["want"]},
    )
    window = TimeWindow(datetime(2024, 1, 1, 6, tzinfo=UTC), datetime(2024, 1, 2, tzinfo=UTC))
    batches, _ = await collect(extractor, window=window, params={"want": "even"})
    assert batches == [[{"n": 9}]]  # hours 6, 8, ..., 22

    with pytest.raises(ExtractError, match=r"\{window_start\} has no value") as info:
        await collect(extractor, params={"want": "even"})
    assert info.value.retryable is False


async def test_a_server_error_is_surfaced_with_its_message(clickhouse: ClickHouseConfig) -> None:
    extractor = create_clickhouse_extractor("SELECT no_such_column FROM numbers(3)", clickhouse)
    with pytest.raises(ClickHouseExtractError) as info:
        await collect(extractor)
    assert isinstance(info.value, ExtractError)
    assert info.value.code == 47
    assert "no_such_column" in str(info.value)
    assert info.value.result is not None
    assert not info.value.result.succeeded


async def test_an_error_in_the_middle_of_a_result_is_raised(clickhouse: ClickHouseConfig) -> None:
    extractor = create_clickhouse_extractor(
        "SELECT number AS n, throwIf(number = 150000) AS x FROM numbers(200000)",
        clickhouse,
        batch_size=10_000,
        settings={"max_block_size": 1000},
    )
    batches: list[Batch] = []
    with pytest.raises(ClickHouseExtractError, match="throwIf") as info:
        await create_el_pipeline(extractor, batches.append, logging=False).run()
    assert info.value.code == 395
    assert sum(map(len, batches)) <= 150000  # nothing past the failing row was passed on
    assert info.value.result is not None
    assert info.value.result.records_in == sum(map(len, batches))


async def test_stopping_early_cancels_the_query_on_the_server(
    clickhouse: ClickHouseConfig,
) -> None:
    extractor = create_clickhouse_extractor(
        "SELECT number FROM system.numbers", clickhouse, batch_size=1000
    )
    ctx = RunContext()
    seen = 0
    async with aclosing(extractor.extract(ctx)) as batches:
        async for batch in batches:
            seen += len(batch)
            if seen >= 5000:
                break
    assert seen == 5000
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        running = await sql(
            clickhouse,
            "SELECT count() FROM system.processes WHERE query LIKE '%FROM system.numbers%' "
            "AND query NOT LIKE '%system.processes%'",
        )
        if int(running) == 0:
            break
        await anyio.sleep(0.05)
    assert int(running) == 0


async def test_compression_both_ways(clickhouse: ClickHouseConfig, table: str) -> None:
    config = clickhouse.model_copy(update={"compression": True})
    rows = [{"id": i, "text": "compress me " * 5} for i in range(5000)]
    loader = create_clickhouse_loader(
        table,
        connection_config=config,
        create_table={"id": "UInt32", "text": "String"},
        batch_size=2000,
    )
    await create_el_pipeline(source(rows), loader, logging=False).run()
    extractor = create_clickhouse_extractor(f"SELECT * FROM {table} ORDER BY id", config, 5000)
    batches, result = await collect(extractor)
    assert batches == [rows]
    assert result.stage("clickhouse").metrics["bytes_received"] < 5000 * 60 / 4


async def test_credentials_work_and_never_leak(
    local_clickhouse: Callable[[], Any], caplog: pytest.LogCaptureFixture
) -> None:
    server = local_clickhouse()  # it defines the user "etl"
    password = server.etl_password
    good = ClickHouseConfig(url=server.url, user="etl", password=password)
    batches, _ = await collect(create_clickhouse_extractor("SELECT 1 AS one", good))
    assert batches == [[{"one": 1}]]

    caplog.set_level(logging.DEBUG)
    bad = ClickHouseConfig(url=server.url, user="etl", password="wrong-" + password)
    with pytest.raises(ClickHouseError) as info:
        await create_el_pipeline(
            create_clickhouse_extractor("SELECT 1", bad), print, logging=True
        ).run()
    assert "password" in str(info.value).lower()
    with pytest.raises(LoadError) as load_info:
        await create_el_pipeline(
            source([{"a": 1}]), create_clickhouse_loader("x", connection_config=bad)
        ).run()
    texts = [str(info.value), repr(bad), str(load_info.value), caplog.text]
    assert not any(password in text for text in texts)


# --------------------------------------------------------------------------- loader


async def test_loader_selects_and_orders_columns_in_bounded_batches(
    clickhouse: ClickHouseConfig, table: str
) -> None:
    await sql(
        clickhouse,
        f"CREATE TABLE {table} (id UInt64, name String, score Float64) "
        f"ENGINE = MergeTree ORDER BY id",
    )
    rows = [{"name": f"n{i}", "id": i, "ignored": [1, 2], "score": i / 2} for i in range(2500)]
    loader = create_clickhouse_loader(
        table, ["id", "name", "score"], batch_size=1000, connection_config=clickhouse
    )
    result = await create_el_pipeline(
        source(rows[:700], rows[700:2300], rows[2300:], [{"id": 9999, "name": "no score"}]),
        loader,
        logging=False,
    ).run()
    metrics = result.stage("clickhouse").metrics
    assert metrics["rows_inserted"] == 2501
    assert metrics["inserts"] == 3  # 1000 + 1000 + 501 rows
    text = await sql(
        clickhouse, f"SELECT id, name, score FROM {table} ORDER BY id FORMAT JSONEachRow"
    )
    got = [orjson.loads(line) for line in text.splitlines()]
    assert got[1] == {"id": 1, "name": "n1", "score": 0.5}
    assert got[-1] == {"id": 9999, "name": "no score", "score": 0}  # a default value
    assert [r["id"] for r in got[:-1]] == list(range(2500))


async def test_loader_flushes_on_bytes_and_on_interval(
    clickhouse: ClickHouseConfig, table: str
) -> None:
    loader = create_clickhouse_loader(
        table,
        connection_config=clickhouse,
        create_table={"id": "UInt32", "pad": "String"},
        max_bytes=2048,
        flush_interval=0.2,
        deduplication=False,  # with deduplication tokens, inserts are cut by rows alone
    )
    rows = [{"id": i, "pad": "x" * 100} for i in range(30)]
    async with loader.open(RunContext()) as sink:
        await sink.write(rows[:10])  # ~1.2 KB: buffered
        assert await count(clickhouse, table) == 0
        await sink.write(rows[10:20])  # ~2.4 KB: reaches max_bytes
        assert await count(clickhouse, table) == 20
        await sink.write(rows[20:21])
        await anyio.sleep(0.3)
        await sink.write(rows[21:22])  # the buffer is older than flush_interval
        assert await count(clickhouse, table) == 22
        await sink.write(rows[22:])
        assert await count(clickhouse, table) == 22
    assert await count(clickhouse, table) == 30  # the rest when the run ends


class Row(dict[str, Any]):
    """A record that a weak reference can follow."""


async def test_the_buffer_holds_encoded_bytes_not_the_records(
    clickhouse: ClickHouseConfig, table: str
) -> None:
    # What max_bytes bounds is the memory the buffer holds: the records handed to the loader are
    # encoded and let go; only the bytes wait for the insert.
    loader = create_clickhouse_loader(
        table, connection_config=clickhouse, create_table={"id": "UInt32", "pad": "String"}
    )
    async with loader.open(RunContext()) as sink:
        batch = [Row(id=i, pad="x" * 100) for i in range(50)]
        refs = [weakref.ref(row) for row in batch]
        await sink.write(batch)
        del batch
        gc.collect()
        assert await count(clickhouse, table) == 0  # still buffered
        assert all(ref() is None for ref in refs)
    assert await count(clickhouse, table) == 50


async def test_loader_flushes_on_interval_while_the_input_pauses(
    clickhouse: ClickHouseConfig, table: str
) -> None:
    seen_during_pause: list[int] = []

    async def landed() -> int:
        try:
            return await count(clickhouse, table)
        except AssertionError:
            return 0  # the loader has not created the table yet

    async def extract() -> AsyncIterator[Batch]:
        yield [{"id": i, "pad": "x"} for i in range(5)]
        # The source pauses (until the rows land, for at most 10 s: far beyond flush_interval,
        # also when the loader's start is slow); the loader must not sit on the rows.
        with anyio.move_on_after(10):
            while await landed() < 5:
                await anyio.sleep(0.05)
        seen_during_pause.append(await count(clickhouse, table))
        yield [{"id": 5, "pad": "y"}]

    loader = create_clickhouse_loader(
        table,
        connection_config=clickhouse,
        create_table={"id": "UInt32", "pad": "String"},
        flush_interval=0.2,
        deduplication=False,  # with deduplication tokens, inserts are cut by rows alone
    )
    result = await create_el_pipeline(extract, loader, logging=False).run()
    assert seen_during_pause == [5]
    assert result.records_out == 6
    assert await count(clickhouse, table) == 6


async def test_upsert_keeps_the_latest_version_per_key(
    clickhouse: ClickHouseConfig, table: str
) -> None:
    def loader(**kwargs: Any) -> Any:
        return create_clickhouse_loader(
            table,
            ["id", "name", "version"],
            "upsert",
            connection_config=clickhouse,
            upsert_key=["id"],
            version_column="version",
            create_table={"id": "UInt64", "name": "String", "version": "UInt32"},
            **kwargs,
        )

    first = [{"id": i, "name": f"v1-{i}", "version": 1} for i in range(5)]
    await create_el_pipeline(source(first), loader(), logging=False).run()
    updates = [
        {"id": 1, "name": "v2-1", "version": 2},
        {"id": 2, "name": "v0-2", "version": 0},  # older than what is stored: loses
        {"id": 3, "name": "v3-3", "version": 3},
        {"id": 3, "name": "v2-3", "version": 2},  # same batch, lower version: loses
        {"id": 7, "name": "v1-7", "version": 1},
    ]
    result = await create_el_pipeline(source(updates), loader(), logging=False).run()
    assert result.stage("clickhouse").metrics["rows_deduplicated"] == 1
    text = await sql(clickhouse, f"SELECT id, name FROM {table} FINAL ORDER BY id FORMAT TSV")
    assert text.split("\n")[:-1] == [
        "0\tv1-0",
        "1\tv2-1",
        "2\tv1-2",
        "3\tv3-3",
        "4\tv1-4",
        "7\tv1-7",
    ]
    await create_el_pipeline(source([]), loader(optimize_final=True), logging=False).run()
    assert await count(clickhouse, table) == 6  # merged: one row per key without FINAL


async def test_upsert_without_version_keeps_the_last_record(
    clickhouse: ClickHouseConfig, table: str
) -> None:
    await sql(
        clickhouse,
        f"CREATE TABLE {table} (k String, n UInt8, v String) "
        f"ENGINE = ReplacingMergeTree ORDER BY (k, n)",
    )
    loader = create_clickhouse_loader(table, mode="upsert", connection_config=clickhouse)
    batch = [{"k": "a", "n": 1, "v": str(i)} for i in range(50)] + [{"k": "b", "n": 1, "v": "x"}]
    await create_el_pipeline(source(batch[:20], batch[20:]), loader, logging=False).run()
    text = await sql(clickhouse, f"SELECT k, v FROM {table} FINAL ORDER BY k FORMAT TSV")
    assert text.split() == ["a", "49", "b", "x"]


async def test_upsert_checks_the_table(clickhouse: ClickHouseConfig, table: str) -> None:
    await sql(
        clickhouse, f"CREATE TABLE {table} (id UInt64, v UInt8) ENGINE = MergeTree ORDER BY id"
    )
    loader = create_clickhouse_loader(table, mode="upsert", connection_config=clickhouse)
    with pytest.raises(ClickHouseLoadError, match="needs a ReplacingMergeTree") as info:
        await create_el_pipeline(source([{"id": 1, "v": 1}]), loader, logging=False).run()
    assert info.value.retryable is False

    other = f"{table}_r"
    await sql(
        clickhouse,
        f"CREATE TABLE {other} (id UInt64, v UInt8) ENGINE = ReplacingMergeTree(v) ORDER BY id",
    )
    for kwargs, message in [
        ({"upsert_key": ["v"]}, r"upsert_key \(v\) is not the sorting key"),
        ({"version_column": "id"}, "not the version column"),
    ]:
        loader = create_clickhouse_loader(
            other, mode="upsert", connection_config=clickhouse, **kwargs
        )
        with pytest.raises(ClickHouseLoadError, match=message):
            await create_el_pipeline(source([{"id": 1, "v": 1}]), loader, logging=False).run()
    assert await count(clickhouse, table) + await count(clickhouse, other) == 0


async def test_a_rejected_insert_names_table_batch_message_and_record(
    clickhouse: ClickHouseConfig, table: str
) -> None:
    await sql(
        clickhouse, f"CREATE TABLE {table} (id UInt64, n UInt32) ENGINE = MergeTree ORDER BY id"
    )
    good = [{"id": i, "n": i} for i in range(100)]
    bad = [{"id": 100 + i, "n": i} for i in range(10)]
    bad[6]["n"] = "seven"
    loader = create_clickhouse_loader(table, batch_size=100, connection_config=clickhouse)
    with pytest.raises(LoadError) as info:
        await create_el_pipeline(source(good, bad), loader, logging=False).run()
    error = info.value
    assert isinstance(error, ClickHouseLoadError)
    assert error.batch == 2
    assert error.table == f"{clickhouse.database}.{table}"
    assert error.record == {"id": 106, "n": "seven"}
    assert error.code == 27
    text = str(error)
    assert f"{clickhouse.database}.{table}" in text
    assert "batch 2" in text
    assert "(at row 7)" in text  # the server's message
    assert "'seven'" in text
    assert "100 rows were inserted before it" in text
    assert await count(clickhouse, table) == 100  # the rejected batch left nothing behind
    assert error.result is not None
    assert error.result.stage("clickhouse").metrics["rows_inserted"] == 100


async def test_unknown_fields_and_columns_are_reported(
    clickhouse: ClickHouseConfig, table: str
) -> None:
    await sql(clickhouse, f"CREATE TABLE {table} (id UInt64) ENGINE = Memory")
    loader = create_clickhouse_loader(table, connection_config=clickhouse)
    with pytest.raises(ClickHouseLoadError, match="Unknown field") as info:
        await create_el_pipeline(source([{"id": 1}, {"id": 2, "extra": 1}]), loader).run()
    assert info.value.record == {"id": 2, "extra": 1}

    loader = create_clickhouse_loader(table, ["id", "nope"], connection_config=clickhouse)
    with pytest.raises(ClickHouseLoadError, match=r"has no column\(s\) nope \(it has id\)"):
        await create_el_pipeline(source([{"id": 1}]), loader, logging=False).run()
    missing = create_clickhouse_loader(f"{table}_missing", connection_config=clickhouse)
    with pytest.raises(ClickHouseLoadError, match="does not exist"):
        await create_el_pipeline(source([{"id": 1}]), missing, logging=False).run()


async def test_dead_letter_isolates_the_bad_records(
    clickhouse: ClickHouseConfig, table: str, tmp_path: Path
) -> None:
    await sql(
        clickhouse, f"CREATE TABLE {table} (id UInt64, day Date) ENGINE = MergeTree ORDER BY id"
    )
    rows: Batch = [{"id": i, "day": date(2024, 1, 1)} for i in range(200)]
    rows[3]["day"] = "not a date"
    rows[4]["id"] = -1  # Int out of range for UInt64 is rejected by the parser
    rows[150]["day"] = object()  # cannot even be encoded
    rows[199]["id"] = "x"
    dead = tmp_path / "dead.jsonl"
    loader = create_clickhouse_loader(
        table, batch_size=100, dead_letter=dead, connection_config=clickhouse
    )
    result = await create_el_pipeline(source(rows[:120], rows[120:]), loader, logging=False).run()
    letters = [orjson.loads(line) for line in dead.read_bytes().splitlines()]
    rejected = sorted(letter["record"]["id"] for letter in letters if letter["record"]["id"] != "x")
    inserted = await sql(clickhouse, f"SELECT id FROM {table} ORDER BY id FORMAT TSV")
    good_ids = {int(i) for i in inserted.split()}
    assert 3 not in good_ids
    assert 150 not in good_ids
    assert 199 not in good_ids
    assert len(letters) == 200 - len(good_ids)
    assert 3 in rejected
    assert 150 in rejected
    assert any(letter["record"]["id"] == "x" for letter in letters)
    assert all(letter["error"] and letter["batch"] >= 1 for letter in letters)
    metrics = result.stage("clickhouse").metrics
    assert metrics["rows_dead_lettered"] == len(letters)
    assert metrics["rows_inserted"] == len(good_ids)


async def test_too_many_dead_letters_fail_the_run(
    clickhouse: ClickHouseConfig, table: str, tmp_path: Path
) -> None:
    await sql(clickhouse, f"CREATE TABLE {table} (id UInt64) ENGINE = Memory")
    loader = create_clickhouse_loader(
        table, dead_letter=tmp_path / "dead.jsonl", max_dead_letters=3, connection_config=clickhouse
    )
    with pytest.raises(ClickHouseLoadError, match="more than 3 records rejected"):
        await create_el_pipeline(source([{"id": "bad"}] * 10), loader, logging=False).run()


async def test_server_stopped_mid_load(local_clickhouse: Callable[[], Any], table: str) -> None:
    server = local_clickhouse()
    config = ClickHouseConfig(url=server.url)
    batch_rows = 1000

    async def extract() -> AsyncIterator[Batch]:
        for n in range(6):
            if n == 3:
                # Three batches are committed; then the server dies.
                while await committed(config, table) < 3 * batch_rows:
                    await anyio.sleep(0.01)
                server.kill()
            yield [{"id": n * batch_rows + i} for i in range(batch_rows)]

    loader = create_clickhouse_loader(
        table,
        batch_size=batch_rows,
        retries=1,
        retry_backoff=0.01,
        connection_config=config,
        create_table={"id": "UInt64"},
    )
    with pytest.raises(ClickHouseLoadError) as info:
        await create_el_pipeline(extract, loader, logging=False, queue_size=1).run()
    error = info.value
    assert error.batch == 4
    # Batch 4 never reached the server, but 3000 rows did, into a table that does not
    # deduplicate (18.16 has no tokens): running again would insert those twice.
    assert error.retryable is False
    assert "3000 rows were inserted before it" in str(error)
    assert "running again would insert them twice" in str(error)
    assert error.result is not None
    assert error.result.stage("clickhouse").metrics["rows_inserted"] == 3000
    server.start()  # the data survived: exactly what was reported as committed
    assert await count(config, table) == 3000


async def test_a_retried_insert_after_a_restart_does_not_duplicate(
    local_clickhouse: Callable[[], Any], table: str
) -> None:
    server = local_clickhouse()
    config = ClickHouseConfig(url=server.url)
    restart = threading.Thread(target=lambda: (time.sleep(0.5), server.start()))

    async def extract() -> AsyncIterator[Batch]:
        yield [{"id": i} for i in range(100)]
        while await committed(config, table) < 100:
            await anyio.sleep(0.01)
        server.kill()
        restart.start()
        yield [{"id": i} for i in range(100, 200)]

    loader = create_clickhouse_loader(
        table,
        batch_size=100,
        retries=8,
        retry_backoff=0.1,
        connection_config=config,
        create_table={"id": "UInt64"},
    )
    try:
        result = await create_el_pipeline(extract, loader, logging=False, queue_size=1).run()
    finally:
        if restart.ident is not None:
            restart.join()
    assert result.stage("clickhouse").metrics["rows_inserted"] == 200
    assert (
        await sql(config, f"SELECT count(), uniqExact(id) FROM {table} FORMAT TSV") == "200\t200\n"
    )


# --------------------------------------------------------------------------- README


def _readme_clickhouse_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("### ClickHouse", 1)[1].split("\n### ", 1)[0].split("\n## ", 1)[0]
    return re.findall(r"^```python\n(.*?)^```", section, flags=re.S | re.M)


def test_readme_has_clickhouse_examples() -> None:
    blocks = _readme_clickhouse_blocks()
    assert len(blocks) >= 2
    assert all(block.startswith("# not run: needs a ClickHouse server") for block in blocks)


@pytest.mark.parametrize("index", range(len(_readme_clickhouse_blocks())))
def test_readme_clickhouse_examples_run(
    index: int, clickhouse: ClickHouseConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's ClickHouse examples run against the test server (``CLICKHOUSE_URL``)."""
    url = httpx.URL(clickhouse.url)
    if clickhouse.user != "default" or clickhouse.password.get_secret_value():
        url = url.copy_with(
            username=clickhouse.user, password=clickhouse.password.get_secret_value()
        )
    monkeypatch.setenv("CLICKHOUSE_URL", str(url))
    monkeypatch.setenv("CLICKHOUSE_DATABASE", clickhouse.database)
    monkeypatch.chdir(tmp_path)
    for code in _readme_clickhouse_blocks()[: index + 1]:  # later blocks may use earlier files
        exec(compile(code, "README.md", "exec"), {"__name__": "__readme__"})

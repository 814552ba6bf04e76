"""The ClickHouse extractor and loader on the embedded engine (``chdb://``), in this process.

chDB runs one data path per process, so every test here shares one engine: ``chdb://`` on the
session's base temporary directory (``tests/test_examples.py`` uses the same one), and each test
module gets a database of its own. Plain requests (:func:`sql`) go through the transport directly,
independently of the connector.
"""

from __future__ import annotations

import gzip
import importlib.util
import io
import math
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
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
import pyarrow as pa
import pytest

from ductwork import (
    Batch,
    ClickHouseConfig,
    ClickHouseExtractError,
    ClickHouseLoadError,
    ConfigError,
    RunContext,
    TimeWindow,
    create_clickhouse_extractor,
    create_clickhouse_loader,
    create_el_pipeline,
)
from ductwork.connectors.clickhouse import embedded_engine
from ductwork.connectors.clickhouse.codec import decode_error_text
from ductwork.connectors.clickhouse.embedded import EmbeddedTransport
from ductwork.connectors.clickhouse.embedded_engine import embedded_path

ROOT = Path(__file__).resolve().parents[2]
SLOW = {"max_block_size": 100, "function_sleep_max_microseconds_per_block": 100_000_000}


@pytest.fixture(scope="session")
def chdb_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The session's embedded engine: one data path for the whole process."""
    return f"chdb://{tmp_path_factory.getbasetemp() / 'chdb'}"


@pytest.fixture(scope="module")
def embedded_config(chdb_url: str) -> Iterator[ClickHouseConfig]:
    """Connection settings for a fresh database of the session's engine, dropped at the end."""
    database = f"ductwork_embedded_{uuid.uuid4().hex[:12]}"
    base = ClickHouseConfig(url=chdb_url)
    anyio.run(sql, base, f"CREATE DATABASE {database}")
    yield base.model_copy(update={"database": database})
    anyio.run(sql, base, f"DROP DATABASE IF EXISTS {database}")


@pytest.fixture
def table() -> str:
    return f"t_{uuid.uuid4().hex[:10]}"


async def request(
    config: ClickHouseConfig, body: bytes | str = b"", method: str = "POST", **params: Any
) -> httpx.Response:
    """One request to the engine through the transport (not through the connector)."""
    transport = EmbeddedTransport(config.url)
    async with httpx.AsyncClient(transport=transport) as client:
        content = body.encode() if isinstance(body, str) else body
        return await client.request(
            method,
            transport.url,
            params={"database": config.database, **params},
            content=content or None,
        )


async def sql(config: ClickHouseConfig, query: str, **params: Any) -> str:
    """Run a statement and return the body (failing the test on an error)."""
    response = await request(config, query, output_format_json_quote_64bit_integers=0, **params)
    assert response.status_code == 200, response.text
    return response.text


async def count(config: ClickHouseConfig, table: str) -> int:
    return int(await sql(config, f"SELECT count() FROM {table}"))


def source(*batches: Batch) -> Callable[[], AsyncIterator[Batch]]:
    async def extract() -> AsyncIterator[Batch]:
        for batch in batches:
            yield batch

    return extract


async def collect(extractor: Any, **run: Any) -> tuple[list[Batch], Any]:
    batches: list[Batch] = []
    result = await create_el_pipeline(extractor, batches.append, logging=False).run(**run)
    return batches, result


def engine_threads() -> list[str]:
    """The threads inside a chDB call right now."""
    busy = []
    for ident, frame in sys._current_frames().items():
        stack = frame
        while stack is not None:
            if f"{os.sep}chdb{os.sep}" in stack.f_code.co_filename:
                busy.append(str(ident))
                break
            stack = stack.f_back
    return busy


async def running_queries(config: ClickHouseConfig) -> int:
    return int(
        await sql(
            config,
            "SELECT count() FROM system.processes WHERE query NOT LIKE '%system.processes%'",
        )
    )


# --------------------------------------------------------------------------- configuration


def test_chdb_urls_are_validated_and_normalised(chdb_url: str) -> None:
    assert ClickHouseConfig(url=chdb_url + "/").url == chdb_url
    assert embedded_path("chdb:///var/lib//etl/") == "/var/lib/etl"
    assert embedded_path("chdb://") == ""
    assert embedded_path("https://db.example:8443") is None
    for bad, message in [
        ("chdb://relative/dir", "chdb:///absolute/path"),
        ("chdb:relative", "chdb:///absolute/path"),
        ("chdb:///data?x=1", "chdb:///absolute/path"),
        ("chdb:///", "root directory"),
        ("ftp://host", "or a chdb:// URL"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            create_clickhouse_extractor("SELECT 1", bad)


async def test_one_data_path_per_process(embedded_config: ClickHouseConfig) -> None:
    await sql(embedded_config, "SELECT 1")  # the engine runs
    running = embedded_engine.engine_path()
    assert running is not None
    assert ClickHouseConfig(url="chdb://" + running).url == "chdb://" + running
    with pytest.raises(ConfigError) as info:
        create_clickhouse_extractor("SELECT 1", "chdb:///elsewhere/data")
    message = str(info.value)
    assert f"chdb://{running}" in message
    assert "chdb:///elsewhere/data" in message
    assert "one data path per process" in message
    with pytest.raises(ConfigError, match=r"cannot open chdb:// \(in memory\)"):
        create_clickhouse_loader("t", connection_config="chdb://")

    # A config made before the engine started on another path fails when it is used.
    stale = ClickHouseConfig.model_construct(url="chdb:///elsewhere/data", database="default")
    with pytest.raises(ClickHouseExtractError) as error:
        await collect(create_clickhouse_extractor("SELECT 1", stale))
    assert error.value.code == 36
    assert f"chdb://{running}" in str(error.value)
    assert "chdb:///elsewhere/data" in str(error.value)
    assert error.value.retryable is False


async def test_another_process_cannot_open_the_data_directory(
    embedded_config: ClickHouseConfig,
) -> None:
    await sql(embedded_config, "SELECT 1")  # this process has it open
    code = (
        "import anyio\n"
        "from ductwork import create_clickhouse_extractor, create_el_pipeline\n"
        f"extract = create_clickhouse_extractor('SELECT 1', {embedded_config.url!r})\n"
        "anyio.run(create_el_pipeline(extract, print, logging=False).run)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert "ClickHouseExtractError" in done.stderr
    assert "a data directory is open in one process at a time" in done.stderr


def test_without_chdb_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "chdb" else real(name, *a)
    )
    with pytest.raises(ConfigError, match=re.escape("pip install 'ductwork[chdb]'")):
        create_clickhouse_loader("t", connection_config="chdb://")
    monkeypatch.setitem(sys.modules, "chdb", None)  # import chdb now fails
    with pytest.raises(ImportError, match=re.escape("pip install 'ductwork[chdb]'")):
        embedded_engine.Engine("/nowhere")


# --------------------------------------------------------------------------- extractor

TYPES = {
    "i8": "Int8",
    "u64": "UInt64",
    "i64": "Int64",
    "f64": "Float64",
    "s": "String",
    "fs": "FixedString(3)",
    "d": "Date",
    "dt": "DateTime",
    "dec": "Decimal(18, 4)",
    "dec38": "Decimal(38, 10)",
    "u": "UUID",
    "ns": "Nullable(String)",
    "ni": "Nullable(Int32)",
    "arr": "Array(String)",
    "arrn": "Array(Nullable(Int64))",
    "e8": "Enum8('red' = 1, 'green' = 2)",
    "tup": "Tuple(UInt8, String)",
}
RECORDS: Batch = [
    {
        "i8": -128,
        "u64": 2**64 - 1,
        "i64": -(2**63),
        "f64": -1.25e-300,
        "s": "quote ' backslash \\ tab \t newline \n é 🦆",
        "fs": "ab",
        "d": date(2024, 2, 29),
        "dt": datetime(2024, 2, 29, 23, 59, 58),
        "dec": Decimal("12345678901234.5678"),
        "dec38": Decimal("1234567890123456789012345678.0123456789"),
        "u": UUID("12345678-1234-5678-1234-567812345678"),
        "ns": None,
        "ni": None,
        "arr": ["a", "b'c", ""],
        "arrn": [1, None, -(2**63)],
        "e8": "green",
        "tup": (7, "x"),
    },
    {
        "i8": 127,
        "u64": 0,
        "i64": 2**63 - 1,
        "f64": 3.0,
        "s": "",
        "fs": "abc",
        "d": date(1970, 1, 2),
        "dt": datetime(1999, 12, 31, 0, 0, 1),
        "dec": Decimal("-0.0001"),
        "dec38": Decimal("0E-10"),
        "u": UUID("00000000-0000-0000-0000-000000000001"),
        "ns": "present",
        "ni": -7,
        "arr": [],
        "arrn": [],
        "e8": "red",
        "tup": (0, ""),
    },
]


async def test_round_trip_of_types_nulls_decimals_datetimes_and_arrays(
    embedded_config: ClickHouseConfig, table: str
) -> None:
    loader = create_clickhouse_loader(
        table, list(TYPES), connection_config=embedded_config, create_table=TYPES, order_by=["i8"]
    )
    result = await create_el_pipeline(source(RECORDS), loader, logging=False).run()
    assert result.stage("clickhouse").metrics["rows_inserted"] == 2

    extractor = create_clickhouse_extractor(
        f"SELECT * FROM {table} ORDER BY i8", embedded_config, batch_size=10
    )
    [batch], _ = await collect(extractor)
    expected = [dict(r, fs=r["fs"].ljust(3, "\0")) for r in RECORDS]
    assert batch == expected
    for got, want in zip(batch, expected, strict=True):
        for key, value in want.items():
            assert type(got[key]) is type(value), key
    assert str(batch[0]["dec"]) == "12345678901234.5678"


async def test_non_finite_floats_and_time_zones(embedded_config: ClickHouseConfig) -> None:
    extractor = create_clickhouse_extractor(
        "SELECT nan AS n, -inf AS i, toDateTime(1700000000, 'Asia/Tokyo') AS tokyo",
        embedded_config,
    )
    [[row]], _ = await collect(extractor)
    assert math.isnan(row["n"])
    assert row["i"] == -math.inf
    assert row["tokyo"] == datetime(2023, 11, 15, 7, 13, 20)


async def test_batches_have_exact_counts(embedded_config: ClickHouseConfig) -> None:
    extractor = create_clickhouse_extractor(
        "SELECT number AS n, toString(number) AS s FROM numbers(25003)",
        embedded_config,
        batch_size=1000,
        settings={"max_block_size": 777},
    )
    batches, result = await collect(extractor)
    assert [len(b) for b in batches] == [1000] * 25 + [3]
    assert [r["n"] for b in batches for r in b] == list(range(25003))
    assert result.stage("clickhouse").metrics["bytes_received"] > 25003 * 10


async def test_an_empty_result_yields_no_batch(embedded_config: ClickHouseConfig) -> None:
    extractor = create_clickhouse_extractor(
        "SELECT number FROM numbers(10) WHERE 0", embedded_config
    )
    batches, result = await collect(extractor)
    assert batches == []
    assert result.succeeded


async def test_params_are_bound_safely(embedded_config: ClickHouseConfig, table: str) -> None:
    await sql(embedded_config, f"CREATE TABLE {table} (name String) ENGINE = Memory")
    names = ["ada", "o'brien", "back\\slash", "'; DROP TABLE t; --"]
    rows = "\n".join(orjson.dumps({"name": n}).decode() for n in names)
    await sql(embedded_config, f"INSERT INTO {table} FORMAT JSONEachRow\n{rows}")
    query = f"SELECT name FROM {table} WHERE name = {{name}}"
    for name in names:
        extractor = create_clickhouse_extractor(query, embedded_config, params={"name": name})
        assert (await collect(extractor))[0] == [[{"name": name}]]
    assert await count(embedded_config, table) == len(names)


async def test_window_and_function_params_and_aware_datetimes(
    embedded_config: ClickHouseConfig, table: str
) -> None:
    await sql(embedded_config, f"CREATE TABLE {table} (ts DateTime, kind String) ENGINE = Memory")
    await sql(
        embedded_config,
        f"INSERT INTO {table} SELECT toDateTime('2024-01-01 00:00:00') + number * 3600, "
        f"if(number % 2 = 0, 'even', 'odd') FROM numbers(48)",
    )
    extractor = create_clickhouse_extractor(
        f"SELECT count() AS n FROM {table} "
        f"WHERE ts >= {{window_start}} AND ts < {{window_end}} AND kind = {{kind}}",
        embedded_config,
        params=lambda ctx: {"kind": ctx.params["want"]},
    )
    window = TimeWindow(datetime(2024, 1, 1, 6, tzinfo=UTC), datetime(2024, 1, 2, tzinfo=UTC))
    batches, _ = await collect(extractor, window=window, params={"want": "even"})
    assert batches == [[{"n": 9}]]

    instant = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    berlin = instant.astimezone(ZoneInfo("Europe/Berlin"))
    loader = create_clickhouse_loader(
        f"{table}_at",
        connection_config=embedded_config,
        create_table={"id": "UInt8", "ts": "DateTime"},
    )
    records = [{"id": 1, "ts": instant}, {"id": 2, "ts": berlin}]
    await create_el_pipeline(source(records), loader, logging=False).run()
    text = await sql(embedded_config, f"SELECT toUnixTimestamp(ts) FROM {table}_at ORDER BY id")
    assert text.split() == [str(int(instant.timestamp()))] * 2


async def test_a_failing_query_raises_with_its_code(embedded_config: ClickHouseConfig) -> None:
    extractor = create_clickhouse_extractor(
        "SELECT no_such_column FROM numbers(3)", embedded_config
    )
    with pytest.raises(ClickHouseExtractError) as info:
        await collect(extractor)
    assert info.value.code == 47
    assert "no_such_column" in str(info.value)
    assert info.value.retryable is False
    assert info.value.result is not None
    assert not info.value.result.succeeded


async def test_an_error_in_the_middle_of_a_result_is_raised(
    embedded_config: ClickHouseConfig,
) -> None:
    extractor = create_clickhouse_extractor(
        "SELECT number AS n, throwIf(number = 150000) AS x FROM numbers(200000)",
        embedded_config,
        batch_size=10_000,
        settings={"max_block_size": 1000},
    )
    batches: list[Batch] = []
    with pytest.raises(ClickHouseExtractError, match="throwIf") as info:
        await create_el_pipeline(extractor, batches.append, logging=False).run()
    assert info.value.code == 395
    assert "__exception__" not in str(info.value)  # the exception block's framing is gone
    assert sum(map(len, batches)) <= 150000
    assert info.value.result is not None
    assert info.value.result.records_in == sum(map(len, batches))


async def test_stopping_early_stops_the_query(embedded_config: ClickHouseConfig) -> None:
    extractor = create_clickhouse_extractor(
        "SELECT number FROM system.numbers", embedded_config, batch_size=1000
    )
    seen = 0
    async with aclosing(extractor.extract(RunContext())) as batches:
        async for batch in batches:
            seen += len(batch)
            if seen >= 5000:
                break
    assert seen == 5000
    assert await running_queries(embedded_config) == 0
    assert engine_threads() == []


async def test_cancellation_kills_the_query_and_leaves_no_thread_running(
    embedded_config: ClickHouseConfig,
) -> None:
    # 100 rows of half a second each: 50 s if nothing stopped it
    slow = create_clickhouse_extractor(
        "SELECT sleepEachRow(0.5) AS s, number FROM numbers(100)", embedded_config, settings=SLOW
    )
    started = time.monotonic()
    with anyio.move_on_after(0.5) as scope:
        await create_el_pipeline(slow, print, logging=False).run()
    assert scope.cancelled_caught
    assert time.monotonic() - started < 10
    assert engine_threads() == []
    assert anyio.to_thread.current_default_thread_limiter().borrowed_tokens == 0
    assert await running_queries(embedded_config) == 0


async def test_the_read_timeout_bounds_the_wait_for_a_block(
    embedded_config: ClickHouseConfig,
) -> None:
    config = embedded_config.model_copy(update={"read_timeout": 0.5})
    slow = create_clickhouse_extractor(
        "SELECT sleepEachRow(0.5) AS s, number FROM numbers(100)", config, settings=SLOW
    )
    started = time.monotonic()
    with pytest.raises(ClickHouseExtractError, match="ReadTimeout") as info:
        await collect(slow)
    assert info.value.retryable is True
    assert time.monotonic() - started < 10
    assert engine_threads() == []
    assert await running_queries(embedded_config) == 0


# --------------------------------------------------------------------------- loader


async def test_loader_batches_selects_columns_and_fills_defaults(
    embedded_config: ClickHouseConfig, table: str
) -> None:
    await sql(
        embedded_config,
        f"CREATE TABLE {table} (id UInt64, name String, score Float64) "
        f"ENGINE = MergeTree ORDER BY id",
    )
    rows = [{"name": f"n{i}", "id": i, "ignored": [1, 2], "score": i / 2} for i in range(2500)]
    loader = create_clickhouse_loader(
        table, ["id", "name", "score"], batch_size=1000, connection_config=embedded_config
    )
    result = await create_el_pipeline(
        source(rows[:700], rows[700:2300], rows[2300:], [{"id": 9999, "name": "no score"}]),
        loader,
        logging=False,
    ).run()
    metrics = result.stage("clickhouse").metrics
    assert metrics["rows_inserted"] == 2501
    assert metrics["inserts"] == 3
    text = await sql(embedded_config, f"SELECT * FROM {table} ORDER BY id FORMAT JSONEachRow")
    got = [orjson.loads(line) for line in text.splitlines()]
    assert got[1] == {"id": 1, "name": "n1", "score": 0.5}
    assert got[-1] == {"id": 9999, "name": "no score", "score": 0}


async def test_loader_flushes_on_bytes_and_on_interval(
    embedded_config: ClickHouseConfig, table: str
) -> None:
    loader = create_clickhouse_loader(
        table,
        connection_config=embedded_config,
        create_table={"id": "UInt32", "pad": "String"},
        max_bytes=2048,
        flush_interval=0.2,
        deduplication=False,  # with tokens, inserts are cut by rows only
    )
    rows = [{"id": i, "pad": "x" * 100} for i in range(30)]
    async with loader.open(RunContext()) as sink:
        await sink.write(rows[:10])
        assert await count(embedded_config, table) == 0
        await sink.write(rows[10:20])  # reaches max_bytes
        assert await count(embedded_config, table) == 20
        await sink.write(rows[20:21])
        await anyio.sleep(0.3)
        await sink.write(rows[21:22])  # older than flush_interval
        assert await count(embedded_config, table) == 22
        await sink.write(rows[22:])
        assert await count(embedded_config, table) == 22
    assert await count(embedded_config, table) == 30  # the rest when the run ends


async def test_loader_flushes_on_interval_while_the_input_pauses(
    embedded_config: ClickHouseConfig, table: str
) -> None:
    seen_during_pause: list[int] = []

    async def landed() -> int:
        try:
            return await count(embedded_config, table)
        except AssertionError:
            return 0  # the loader has not created the table yet

    async def extract() -> AsyncIterator[Batch]:
        yield [{"id": i} for i in range(5)]
        # The source pauses (until the rows land, for at most 10 s: far beyond flush_interval,
        # also when the loader's start is slow); the loader must not sit on the rows.
        with anyio.move_on_after(10):
            while await landed() < 5:
                await anyio.sleep(0.05)
        seen_during_pause.append(await count(embedded_config, table))
        yield [{"id": 5}]

    loader = create_clickhouse_loader(
        table,
        connection_config=embedded_config,
        create_table={"id": "UInt32"},
        flush_interval=0.2,
        deduplication=False,  # with tokens, inserts are cut by rows only
    )
    result = await create_el_pipeline(extract, loader, logging=False).run()
    assert seen_during_pause == [5]
    assert result.records_out == 6


async def test_upsert_creates_the_table_and_keeps_the_latest_version(
    embedded_config: ClickHouseConfig, table: str
) -> None:
    def loader(**kwargs: Any) -> Any:
        return create_clickhouse_loader(
            table,
            ["id", "name", "version"],
            "upsert",
            connection_config=embedded_config,
            upsert_key=["id"],
            version_column="version",
            create_table={"id": "UInt64", "name": "String", "version": "UInt32"},
            **kwargs,
        )

    first = [{"id": i, "name": f"v1-{i}", "version": 1} for i in range(5)]
    await create_el_pipeline(source(first), loader(), logging=False).run()
    updates = [
        {"id": 1, "name": "v2-1", "version": 2},
        {"id": 2, "name": "v0-2", "version": 0},
        {"id": 3, "name": "v3-3", "version": 3},
        {"id": 3, "name": "v2-3", "version": 2},
        {"id": 7, "name": "v1-7", "version": 1},
    ]
    result = await create_el_pipeline(source(updates), loader(), logging=False).run()
    assert result.stage("clickhouse").metrics["rows_deduplicated"] == 1
    text = await sql(embedded_config, f"SELECT id, name FROM {table} FINAL ORDER BY id FORMAT TSV")
    assert text.split("\n")[:-1] == [
        "0\tv1-0",
        "1\tv2-1",
        "2\tv1-2",
        "3\tv3-3",
        "4\tv1-4",
        "7\tv1-7",
    ]
    await create_el_pipeline(source([]), loader(optimize_final=True), logging=False).run()
    assert await count(embedded_config, table) == 6

    plain = f"{table}_plain"
    await sql(embedded_config, f"CREATE TABLE {plain} (id UInt64) ENGINE = MergeTree ORDER BY id")
    wrong = create_clickhouse_loader(plain, mode="upsert", connection_config=embedded_config)
    with pytest.raises(ClickHouseLoadError, match="needs a ReplacingMergeTree"):
        await create_el_pipeline(source([{"id": 1}]), wrong, logging=False).run()

    last = f"{table}_last"  # no version column: the last record wins
    await sql(
        embedded_config,
        f"CREATE TABLE {last} (k String, n UInt8, v String) "
        f"ENGINE = ReplacingMergeTree ORDER BY (k, n)",
    )
    batch = [{"k": "a", "n": 1, "v": str(i)} for i in range(50)] + [{"k": "b", "n": 1, "v": "x"}]
    loader_last = create_clickhouse_loader(last, mode="upsert", connection_config=embedded_config)
    await create_el_pipeline(source(batch[:20], batch[20:]), loader_last, logging=False).run()
    text = await sql(embedded_config, f"SELECT k, v FROM {last} FINAL ORDER BY k FORMAT TSV")
    assert text.split() == ["a", "49", "b", "x"]


async def test_a_rejected_insert_names_table_batch_message_and_record(
    embedded_config: ClickHouseConfig, table: str
) -> None:
    await sql(
        embedded_config,
        f"CREATE TABLE {table} (id UInt64, n UInt32) ENGINE = MergeTree ORDER BY id",
    )
    good = [{"id": i, "n": i} for i in range(100)]
    bad = [{"id": 100 + i, "n": i} for i in range(10)]
    bad[6]["n"] = "seven"
    loader = create_clickhouse_loader(table, batch_size=100, connection_config=embedded_config)
    with pytest.raises(ClickHouseLoadError) as info:
        await create_el_pipeline(source(good, bad), loader, logging=False).run()
    error = info.value
    assert error.batch == 2
    assert error.code == 27
    assert error.record == {"id": 106, "n": "seven"}
    assert "(at row 7)" in str(error)
    assert "100 rows were inserted before it" in str(error)
    assert await count(embedded_config, table) == 100


async def test_dead_letters_isolate_the_bad_records(
    embedded_config: ClickHouseConfig, table: str, tmp_path: Path
) -> None:
    await sql(
        embedded_config,
        f"CREATE TABLE {table} (id UInt64, day Date) ENGINE = MergeTree ORDER BY id",
    )
    rows: Batch = [{"id": i, "day": date(2024, 1, 1)} for i in range(50)]
    rows[3]["day"] = "not a date"
    rows[40]["id"] = "x"
    dead = tmp_path / "dead.jsonl"
    loader = create_clickhouse_loader(table, dead_letter=dead, connection_config=embedded_config)
    result = await create_el_pipeline(source(rows), loader, logging=False).run()
    letters = [orjson.loads(line) for line in dead.read_bytes().splitlines()]
    assert sorted(str(letter["record"]["id"]) for letter in letters) == ["3", "x"]
    assert result.stage("clickhouse").metrics["rows_inserted"] == 48
    assert await count(embedded_config, table) == 48

    too_many = create_clickhouse_loader(
        table, dead_letter=dead, max_dead_letters=3, connection_config=embedded_config
    )
    with pytest.raises(ClickHouseLoadError, match="more than 3 records rejected"):
        await create_el_pipeline(source([{"id": "bad"}] * 10), too_many, logging=False).run()


async def test_unknown_fields_columns_and_tables_are_reported(
    embedded_config: ClickHouseConfig, table: str
) -> None:
    await sql(embedded_config, f"CREATE TABLE {table} (id UInt64) ENGINE = Memory")
    loader = create_clickhouse_loader(table, connection_config=embedded_config)
    with pytest.raises(ClickHouseLoadError, match="Unknown field") as info:
        await create_el_pipeline(source([{"id": 1}, {"id": 2, "extra": 1}]), loader).run()
    assert info.value.record == {"id": 2, "extra": 1}
    loader = create_clickhouse_loader(table, ["id", "nope"], connection_config=embedded_config)
    with pytest.raises(ClickHouseLoadError, match=r"has no column\(s\) nope \(it has id\)"):
        await create_el_pipeline(source([{"id": 1}]), loader, logging=False).run()
    missing = create_clickhouse_loader(f"{table}_missing", connection_config=embedded_config)
    with pytest.raises(ClickHouseLoadError, match="does not exist"):
        await create_el_pipeline(source([{"id": 1}]), missing, logging=False).run()


async def test_compression_has_no_effect_in_process(
    embedded_config: ClickHouseConfig, table: str
) -> None:
    config = embedded_config.model_copy(update={"compression": True})
    rows = [{"id": i, "text": "compress me " * 5} for i in range(3000)]
    loader = create_clickhouse_loader(
        table, connection_config=config, create_table={"id": "UInt32", "text": "String"}
    )
    await create_el_pipeline(source(rows), loader, logging=False).run()
    extractor = create_clickhouse_extractor(f"SELECT * FROM {table} ORDER BY id", config, 5000)
    batches, result = await collect(extractor)
    assert batches == [rows]
    assert result.stage("clickhouse").metrics["bytes_received"] > 3000 * 60  # as it is


# --------------------------------------------------------------------------- the transport


async def test_header_formats_have_their_header_once(embedded_config: ClickHouseConfig) -> None:
    query = "SELECT number AS n FROM numbers(7) SETTINGS max_block_size = 3"
    text = await sql(embedded_config, f"{query} FORMAT TSVWithNamesAndTypes")
    assert text == "n\nUInt64\n0\n1\n2\n3\n4\n5\n6\n"
    text = await sql(embedded_config, f"{query} FORMAT CSVWithNames")
    assert text == '"n"\n0\n1\n2\n3\n4\n5\n6\n'
    assert await sql(embedded_config, f"{query} FORMAT Values") == "(0),(1),(2),(3),(4),(5),(6)"
    empty = await sql(embedded_config, "SELECT 1 AS one WHERE 0 FORMAT TSVWithNamesAndTypes")
    assert empty == "one\nUInt8\n"
    whole = await sql(embedded_config, f"{query} FORMAT JSON")
    assert [row["n"] for row in orjson.loads(whole)["data"]] == list(range(7))


async def test_binary_formats_stream_as_one_output(embedded_config: ClickHouseConfig) -> None:
    select = "SELECT number AS n, toString(number) AS s FROM numbers(10)"
    for fmt in ("RowBinaryWithNamesAndTypes", "RowBinaryWithNames", "TSVWithNames"):
        streamed = await request(
            embedded_config, f"{select} FORMAT {fmt}", max_block_size=3
        )  # four blocks
        one_block = await request(embedded_config, f"{select} FORMAT {fmt}")
        assert streamed.content == one_block.content, fmt

    arrow = await request(embedded_config, f"{select} FORMAT ArrowStream", max_block_size=3)
    assert arrow.headers["content-type"] == "application/octet-stream"
    table = pa.ipc.open_stream(io.BytesIO(arrow.content)).read_all()
    assert table.column("n").to_pylist() == list(range(10))
    empty = await request(embedded_config, f"{select} WHERE 0 FORMAT ArrowStream")
    table = pa.ipc.open_stream(io.BytesIO(empty.content)).read_all()
    assert table.num_rows == 0
    assert table.column_names == ["n", "s"]


async def test_requests_are_answered_as_the_server_does(
    embedded_config: ClickHouseConfig, table: str
) -> None:
    empty = await request(embedded_config)
    assert empty.headers["X-ClickHouse-Exception-Code"] == "62"  # nothing to run
    missing = await request(embedded_config, "SELECT * FROM no_such_table")
    assert missing.status_code == 404
    assert missing.headers["X-ClickHouse-Exception-Code"] == "60"
    assert missing.text.startswith("Code: 60. DB::Exception: ")
    readonly = await request(
        embedded_config, method="GET", query=f"CREATE TABLE {table} (a UInt8) ENGINE = Memory"
    )
    assert readonly.headers["X-ClickHouse-Exception-Code"] == "164"  # READONLY
    unknown = await request(embedded_config, "SELECT 1", no_such_setting=1)
    assert unknown.headers["X-ClickHouse-Exception-Code"] == "115"
    native = await request(embedded_config, "SELECT 1", compress=1)
    assert native.headers["X-ClickHouse-Exception-Code"] == "48"  # NOT_IMPLEMENTED

    # settings and parameters from the query string; nothing survives the request
    text = await sql(
        embedded_config,
        "SELECT getSetting('max_threads'), {x:String}",
        max_threads=3,
        param_x="a'b",
    )
    assert text == "3\ta\\'b\n"  # TSV escapes the quote
    assert await sql(embedded_config, "SELECT getSetting('max_threads') = 3") == "0\n"

    # an insert: the statement in the URL, the body (here gzip) streamed into it
    await sql(embedded_config, f"CREATE TABLE {table} (a UInt8) ENGINE = Memory")
    transport = EmbeddedTransport(embedded_config.url)
    async with httpx.AsyncClient(transport=transport) as client:
        assert (await client.get(transport.url + "ping")).text == "Ok.\n"
        response = await client.post(
            transport.url,
            params={
                "database": embedded_config.database,
                "query": f"INSERT INTO {table} FORMAT CSV",
            },
            content=gzip.compress(b"1\n2\n3\n"),
            headers={"Content-Encoding": "gzip"},
        )
    assert response.status_code == 200, response.text
    assert orjson.loads(response.headers["X-ClickHouse-Summary"])["written_rows"] == "3"
    assert await sql(embedded_config, f"SELECT sum(a) FROM {table}") == "6\n"


async def test_an_error_after_the_first_block_ends_the_body(
    embedded_config: ClickHouseConfig,
) -> None:
    response = await request(
        embedded_config,
        "SELECT throwIf(number = 5000) FROM numbers(10000) FORMAT TSV",
        max_block_size=1000,
    )
    assert response.status_code == 200
    tag = response.headers["X-ClickHouse-Exception-Tag"]
    body = response.content
    assert body.startswith(b"0\n")
    head, _, tail = body.partition(b"\r\n__exception__\r\n" + tag.encode() + b"\r\n")
    assert head.count(b"\n") >= 1000
    framed = re.fullmatch(
        rb"(Code: 395\. DB::Exception: .*\n)(\d+) (\w+)\r\n__exception__\r\n", tail, re.S
    )
    assert framed is not None, tail
    assert int(framed.group(2)) == len(framed.group(1))
    assert framed.group(3) == tag.encode()
    assert decode_error_text(tail.decode())[0] == 395


# --------------------------------------------------------------------------- README


def _readme_blocks(heading: str) -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split(f"### {heading}\n", 1)[1].split("\n### ", 1)[0].split("\n## ", 1)[0]
    return re.findall(r"^```python\n(.*?)^```", section, flags=re.S | re.M)


def test_readme_clickhouse_examples_run_on_the_embedded_engine(
    embedded_config: ClickHouseConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ClickHouse section's examples (written for a server at ``CLICKHOUSE_URL``) run as
    they are on ``chdb://``."""
    monkeypatch.setenv("CLICKHOUSE_URL", embedded_config.url)
    monkeypatch.setenv("CLICKHOUSE_DATABASE", embedded_config.database)
    monkeypatch.chdir(tmp_path)
    blocks = _readme_blocks("ClickHouse")
    assert len(blocks) >= 2
    for code in blocks:  # later blocks read the files of earlier ones
        exec(compile(code, "README.md", "exec"), {"__name__": "__readme__"})


def test_readme_embedded_example_runs_in_a_fresh_process(tmp_path: Path) -> None:
    """The docs test skips it (this process has an engine on another path): it runs here, in a
    process of its own, from an empty directory."""
    [code] = _readme_blocks("Embedded ClickHouse")
    assert code.startswith("# not run: ")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]

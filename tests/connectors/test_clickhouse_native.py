"""The ``Native`` reader: results of servers without Arrow formats decoded into Arrow batches.

The bodies are the servers' own (both legs write ``Native`` over HTTP), fed to the decoder in
pieces of every size, and compared with what the records path makes of the same query.
"""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
import uuid
from decimal import Decimal
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pytest
from tests.connectors.test_clickhouse import sql

from ductwork import (
    ClickHouseConfig,
    ClickHouseExtractError,
    RunContext,
    create_clickhouse_extractor,
)
from ductwork.connectors.clickhouse.arrow import arrow_schema, records_to_table, result_format
from ductwork.connectors.clickhouse.native import (
    NativeDecoder,
    encode_native,
    native_select,
    native_supported,
)

pytestmark = pytest.mark.clickhouse

# Lengths on both sides of each varint size (1, 2 and 3 bytes), multi-byte text, NULLs, decimals
# of every width with negative values, dates, times, enums, UUIDs and fixed strings.
COLUMNS = (
    "id UInt32, s String, ns Nullable(String), d32 Decimal(9, 2), d64 Decimal(18, 6), "
    "d128 Nullable(Decimal(38, 10)), day Date, at DateTime('Asia/Tokyo'), "
    "e Enum8('a' = 1, 'b' = -2), key UUID, fixed FixedString(3), f Nullable(Float32), "
    "i8 Int8, u64 UInt64"
)
LENGTHS = (0, 1, 127, 128, 129, 16383, 16384, 16385, 70000)


async def _source(config: ClickHouseConfig) -> str:
    name = f"t_{uuid.uuid4().hex[:10]}"
    await sql(config, f"CREATE TABLE {name} ({COLUMNS}) ENGINE = MergeTree ORDER BY id")
    rows = []
    for index, length in enumerate(LENGTHS):
        text = ("é" * (length // 2)) + ("x" * (length % 2))
        nullable = "NULL" if index % 3 == 0 else f"'{text[:5]}ü'"
        sign = -1 if index % 2 else 1
        rows.append(
            f"({index}, '{text}', {nullable}, {sign * 1234567.89}, {sign * 123456789012.123456}, "
            f"{'NULL' if index == 4 else f'{sign * 1234567890123456789012345678}.0123456789'}, "
            f"'2024-02-{index + 1:02d}', '2024-03-31 02:30:{index:02d}', "
            f"'{'a' if index % 2 else 'b'}', '61f0c404-5cb3-11e7-907b-a6006ad3dba{index}', "
            f"'ab', {'NULL' if index == 2 else index / 4}, {-128 + index}, "
            f"{18446744073709551615 - index})"
        )
    await sql(config, f"INSERT INTO {name} VALUES {', '.join(rows)}")
    return name


async def _native_body(config: ClickHouseConfig, query: str, **settings: Any) -> bytes:
    headers = {"X-ClickHouse-User": config.user}
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(
            config.url,
            params={"database": config.database, **settings},
            content=query.encode(),
            headers=headers,
        )
    assert response.status_code == 200, response.text
    return response.content


async def _columns(config: ClickHouseConfig, table: str) -> list[tuple[str, str]]:
    body = await sql(config, f"DESCRIBE TABLE {table} FORMAT JSONEachRow")
    return [(row["name"], row["type"]) for row in map(json.loads, body.splitlines())]


async def _records(config: ClickHouseConfig, query: str) -> list[dict[str, Any]]:
    extractor = create_clickhouse_extractor(query, config)
    return [row async for batch in extractor.extract(RunContext()) for row in batch]


def _decode(columns: list[tuple[str, str]], body: bytes, piece: int) -> pa.Table:
    decoder = NativeDecoder(columns, arrow_schema(columns, "UTC"))
    tables = []
    for start in range(0, len(body), piece):
        tables += decoder.feed(body[start : start + piece])
    tables += decoder.finish()
    return pa.concat_tables(tables)


@pytest.mark.parametrize("piece", [1, 7, 4096, 1 << 30])
async def test_a_native_body_in_any_pieces_decodes_as_the_records_path_reads_it(
    clickhouse: ClickHouseConfig, piece: int
) -> None:
    table = await _source(clickhouse)
    columns = await _columns(clickhouse, table)
    assert native_supported(columns)
    query = f"SELECT * FROM {table} ORDER BY id"
    body = await _native_body(
        clickhouse, native_select(query, columns) + "\nFORMAT Native", max_block_size=4
    )
    decoded = _decode(columns, body, piece)
    assert decoded.schema == arrow_schema(columns, "UTC")
    expected = await _records(clickhouse, query)
    assert decoded.num_rows == len(LENGTHS)
    # the records path gives naive times in the column's zone: compare as tables of one schema
    assert decoded.to_pylist() == records_to_table(expected, decoded.schema).to_pylist()
    assert [len(text) for text in decoded.column("s").to_pylist()] == [
        length // 2 + length % 2 for length in LENGTHS
    ]


def test_which_results_take_the_native_path() -> None:
    scalars = [("n", "UInt64"), ("s", "Nullable(String)"), ("t", "DateTime('UTC')")]
    assert result_format(False, scalars) == "Native"
    assert result_format(True, scalars) == "ArrowStream"
    assert result_format(False, [("c", "LowCardinality(String)")]) == "CSVWithNames"
    assert result_format(False, [("a", "Array(UInt8)")]) is None
    assert not native_supported([])


@pytest.mark.clickhouse_legs("server")
async def test_an_old_server_sends_native_and_the_batches_are_exact(
    clickhouse: ClickHouseConfig,
) -> None:
    """On 18.16 (no Arrow formats) the arrow extract reads Native; a long result in many small
    blocks comes back whole and in order."""
    extractor = create_clickhouse_extractor(
        "SELECT number AS n, toString(number * 7) AS s, number / 2 AS f FROM numbers(100000)",
        clickhouse,
        batch_format="arrow",
        batch_size=30_000,
        settings={"max_block_size": 999},
    )
    ctx = RunContext()
    tables = [table async for table in extractor.extract(ctx)]
    assert [table.num_rows for table in tables] == [30_000, 30_000, 30_000, 10_000]
    whole = pa.concat_tables(tables)
    assert whole.column("n").to_pylist() == list(range(100000))
    assert whole.column("s").to_pylist() == [str(n * 7) for n in range(100000)]
    assert whole.column("f").to_pylist()[-1] == 99999 / 2


async def test_text_that_is_not_utf8_is_an_error_naming_the_column(
    clickhouse: ClickHouseConfig,
) -> None:
    columns = [("bad", "String")]
    body = await _native_body(
        clickhouse,
        native_select("SELECT unhex('C328') AS bad", columns) + "\nFORMAT Native",
    )
    with pytest.raises(ValueError, match="column 'bad' holds text that is not UTF-8"):
        _decode(columns, body, 1 << 20)


async def test_a_body_cut_inside_a_block_is_an_error(clickhouse: ClickHouseConfig) -> None:
    columns = [("n", "UInt64"), ("s", "String")]
    query = native_select("SELECT number AS n, toString(number) AS s FROM numbers(10)", columns)
    body = await _native_body(clickhouse, query + "\nFORMAT Native")
    with pytest.raises(ValueError, match="ended inside a block"):
        _decode(columns, body[:-3], 1 << 20)


@pytest.mark.clickhouse_legs("server")
async def test_an_old_servers_error_after_native_blocks_is_reported(
    clickhouse: ClickHouseConfig,
) -> None:
    extractor = create_clickhouse_extractor(
        "SELECT number AS n, toString(throwIf(number = 150000)) AS s FROM numbers(300000)",
        clickhouse,
        batch_format="arrow",
        settings={"max_block_size": 1000},
    )
    with pytest.raises(ClickHouseExtractError) as info:
        [table async for table in extractor.extract(RunContext())]
    assert info.value.code == 395
    assert not info.value.retryable


INSERT_COLUMNS = (
    "id UInt64, s String, ns Nullable(String), f Float64, i8 Int8, day Date, "
    "at DateTime('Asia/Tokyo'), d32 Decimal(9, 2), d128 Nullable(Decimal(38, 10)), "
    "level Nullable(Int32)"
)


def _insert_table() -> pa.Table:
    texts = [("é" * (length // 2)) + ("x" * (length % 2)) for length in LENGTHS]
    rows = len(texts)
    return pa.table(
        {
            "id": pa.array([2**64 - 1 - n for n in range(rows)], pa.uint64()),
            "s": texts,
            "ns": [None if n % 3 == 0 else text[:9] for n, text in enumerate(texts)],
            "f": [n / 3 for n in range(rows)],
            "i8": pa.array([-128 + n for n in range(rows)], pa.int64()),
            "day": pa.array([datetime.date(2024, 2, n + 1) for n in range(rows)]),
            "at": pa.array(
                [
                    datetime.datetime(2024, 3, 30, 17, 30, n, tzinfo=datetime.UTC)
                    for n in range(rows)
                ],
                pa.timestamp("ms", "UTC"),
            ),
            "d32": pa.array([Decimal(f"-{n}.25") for n in range(rows)], pa.decimal128(9, 2)),
            "d128": pa.array(
                [
                    None if n == 4 else Decimal(f"{n}1234567890123456789012345.0123456789")
                    for n in range(rows)
                ],
                pa.decimal128(38, 10),
            ),
            "level": pa.array([None if n % 2 else n for n in range(rows)], pa.int32()),
        }
    )


async def test_an_arrow_batch_encoded_as_native_is_inserted_exactly(
    clickhouse: ClickHouseConfig,
) -> None:
    name = f"t_{uuid.uuid4().hex[:10]}"
    await sql(
        clickhouse, f"CREATE TABLE {name} ({INSERT_COLUMNS}) ENGINE = MergeTree ORDER BY tuple()"
    )
    types = await _columns(clickhouse, name)
    table = _insert_table()
    body = encode_native(table, types)
    assert body is not None
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(
            clickhouse.url,
            params={"database": clickhouse.database, "query": f"INSERT INTO {name} FORMAT Native"},
            content=body,
            headers={"X-ClickHouse-User": clickhouse.user},
        )
    assert response.status_code == 200, response.text
    back = await _records(clickhouse, f"SELECT * FROM {name} ORDER BY id DESC")
    schema = arrow_schema(types, "UTC")
    expected = table.cast(schema)
    assert records_to_table(back, schema).to_pylist() == expected.to_pylist()


@pytest.mark.parametrize(
    ("column", "kind", "value"),
    [
        ("i8", pa.int64(), 300),  # does not fit Int8
        ("s", pa.int64(), 1),  # a number for a String column: the server converts it
        ("f", pa.string(), "1.5"),  # text for a number column
        ("id", pa.uint64(), None),  # NULL for a column that cannot hold it
        ("day", pa.date32(), datetime.date(2200, 1, 1)),  # past the last Date
        ("d32", pa.decimal128(12, 2), Decimal("1234567890.12")),  # does not fit Decimal(9, 2)
    ],
)
def test_what_the_native_encoder_leaves_to_csv(column: str, kind: pa.DataType, value: Any) -> None:
    types = [(name, type_name) for name, type_name in _declared(INSERT_COLUMNS)]
    assert encode_native(pa.table({column: pa.array([value], kind)}), types) is None


def test_a_column_the_table_does_not_have_is_left_to_csv() -> None:
    types = _declared(INSERT_COLUMNS)
    assert encode_native(pa.table({"other": [1]}), types) is None
    assert encode_native(pa.table({"id": pa.array([1], pa.uint64())}), types) is not None


def _declared(columns: str) -> list[tuple[str, str]]:
    pairs = []
    depth, start = 0, 0
    for index, char in enumerate(columns + ","):
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            name, _, type_name = columns[start:index].strip().partition(" ")
            pairs.append((name, type_name))
            start = index + 1
    return pairs


async def test_a_null_text_value_covering_bytes_is_inserted_as_null(
    clickhouse: ClickHouseConfig,
) -> None:
    # Arrow lets a NULL slot keep bytes ("bb" below); the encoder must not send them.
    name = f"t_{uuid.uuid4().hex[:10]}"
    columns = "id UInt8, ns Nullable(String), s String"
    await sql(clickhouse, f"CREATE TABLE {name} ({columns}) ENGINE = MergeTree ORDER BY id")
    offsets = pa.py_buffer(np.array([0, 1, 3, 6], dtype=np.int32))
    validity = pa.py_buffer(np.packbits([1, 0, 1], bitorder="little"))
    text = pa.Array.from_buffers(pa.string(), 3, [validity, offsets, pa.py_buffer(b"abbccc")])
    assert text.to_pylist() == ["a", None, "ccc"]
    table = pa.table({"id": pa.array([1, 2, 3], pa.uint8()), "ns": text, "s": text})
    body = encode_native(table.select(["id", "ns"]), _declared(columns))
    assert body is not None
    # A NULL in a column that cannot hold one is left to the CSV path, which the server checks.
    assert encode_native(table.select(["id", "s"]), _declared(columns)) is None
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(
            clickhouse.url,
            params={
                "database": clickhouse.database,
                "query": f"INSERT INTO {name} (id, ns) FORMAT Native",
            },
            content=body,
            headers={"X-ClickHouse-User": clickhouse.user},
        )
    assert response.status_code == 200, response.text
    back = await _records(clickhouse, f"SELECT id, ns FROM {name} ORDER BY id")
    assert [(r["id"], r["ns"]) for r in back] == [(1, "a"), (2, None), (3, "ccc")]


def test_the_native_encoder_does_not_load_pandas() -> None:
    # pyarrow's to_numpy(), from_numpy_dtype() and Python scalars load pandas (about 55 MiB).
    script = f"""
import io, sys
import pyarrow.csv
from ductwork.connectors.clickhouse.native import encode_native
table = pyarrow.csv.read_csv(io.BytesIO(
    b"id,ns,f,i8,day,level\\n1,x,1.5,-3,2024-01-02,\\n2,,,4,,7\\n"))
types = {_declared(INSERT_COLUMNS)!r}
types = [(n, t.replace("Int8", "Nullable(Int8)").replace("Float64", "Nullable(Float64)")
          .replace("Date", "Nullable(Date)")) for n, t in types]
body = encode_native(table, types)
assert body is not None
assert "pandas" not in sys.modules, "pandas was loaded"
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok", done.stderr

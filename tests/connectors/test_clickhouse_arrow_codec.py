"""The ClickHouse connector's Arrow codec, without a server: types, CSV pieces, IPC streams."""

from __future__ import annotations

import io
from decimal import Decimal

import pyarrow as pa
import pyarrow.ipc as ipc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ductwork.connectors.clickhouse.arrow import (
    ArrowStreamDecoder,
    CsvSplitter,
    arrow_schema,
    arrow_type,
    clickhouse_type,
    conform,
    csv_select,
    decode_csv,
    encode_csv,
    has_nested,
)
from ductwork.core.arrow import Rebatcher


@pytest.mark.parametrize(
    ("ch", "arrow"),
    [
        ("UInt64", pa.uint64()),
        ("Int8", pa.int8()),
        ("Float32", pa.float32()),
        ("Nullable(Float64)", pa.float64()),
        ("String", pa.string()),
        ("LowCardinality(Nullable(String))", pa.string()),
        ("Date", pa.date32()),
        ("DateTime", pa.timestamp("s", "Asia/Tokyo")),
        ("DateTime('Europe/Berlin')", pa.timestamp("s", "Europe/Berlin")),
        ("DateTime64(3)", pa.timestamp("ms", "Asia/Tokyo")),
        ("DateTime64(6, 'UTC')", pa.timestamp("us", "UTC")),
        ("Decimal(18, 4)", pa.decimal128(18, 4)),
        ("Decimal64(2)", pa.decimal128(18, 2)),
        ("Decimal(50, 10)", pa.decimal256(50, 10)),
        ("Enum8('a' = 1, 'b' = 2)", pa.string()),
        ("UUID", pa.string()),
        ("Array(Nullable(Int32))", pa.list_(pa.field("item", pa.int32(), True))),
        ("Array(String)", pa.list_(pa.field("item", pa.string(), False))),
    ],
)
def test_arrow_type_of_clickhouse_types(ch: str, arrow: pa.DataType) -> None:
    assert arrow_type(ch, "Asia/Tokyo") == arrow


def test_unsupported_type_is_named() -> None:
    with pytest.raises(ValueError, match="AggregateFunction"):
        arrow_type("AggregateFunction(uniq, UInt64)")


def test_schema_marks_nullable_columns() -> None:
    schema = arrow_schema([("a", "UInt64"), ("b", "Nullable(String)")])
    assert [field.nullable for field in schema] == [False, True]


@pytest.mark.parametrize(
    ("field", "modern", "expected"),
    [
        (pa.field("a", pa.uint64(), False), True, "UInt64"),
        (pa.field("a", pa.string(), True), True, "Nullable(String)"),
        (pa.field("a", pa.bool_(), False), False, "UInt8"),
        (pa.field("a", pa.bool_(), False), True, "Bool"),
        (pa.field("a", pa.timestamp("s", "UTC"), False), False, "DateTime('UTC')"),
        (pa.field("a", pa.timestamp("ms"), False), True, "DateTime64(3)"),
        (pa.field("a", pa.decimal128(20, 3), True), True, "Nullable(Decimal(20, 3))"),
        (pa.field("a", pa.list_(pa.int32()), True), True, "Array(Nullable(Int32))"),
        (
            pa.field("a", pa.dictionary(pa.int32(), pa.string()), False),
            True,
            "LowCardinality(String)",
        ),
    ],
)
def test_clickhouse_type_of_arrow_fields(field: pa.Field, modern: bool, expected: str) -> None:
    assert clickhouse_type(field, modern=modern) == expected


def test_sub_second_timestamps_need_a_modern_server() -> None:
    with pytest.raises(ValueError, match="DateTime64"):
        clickhouse_type(pa.field("at", pa.timestamp("ms")), modern=False)


def test_has_nested() -> None:
    assert has_nested([("a", "UInt8"), ("b", "Array(String)")])
    assert not has_nested([("a", "Nullable(String)")])


def test_csv_select_turns_dates_into_numbers() -> None:
    sql = csv_select(
        "SELECT * FROM t", [("d", "Nullable(DateTime)"), ("x", "Date"), ("y", "UInt8")]
    )
    assert sql == (
        "SELECT toUnixTimestamp(`d`) AS `d`, toUInt16(`x`) AS `x`, `y` FROM (SELECT * FROM t\n)"
    )
    assert csv_select("SELECT 1", [("a", "UInt8")]) == "SELECT 1"


_TEXT = st.text(alphabet='ab",\n\r x', max_size=12)


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.one_of(st.none(), _TEXT), min_size=1, max_size=40),
    cut=st.integers(min_value=1, max_value=50),
    piece=st.integers(min_value=1, max_value=200),
)
def test_csv_pieces_end_at_row_boundaries(values: list[str | None], cut: int, piece: int) -> None:
    """However the body is chunked, the pieces parse to the same rows, nulls and empties kept."""
    columns = [("s", "Nullable(String)")]
    schema = arrow_schema(columns)
    body = encode_csv(pa.table({"s": pa.array(values, pa.string())}))
    splitter = CsvSplitter(piece)
    tables = []
    for start in range(0, len(body), cut):
        for part in splitter.feed(body[start : start + cut]):
            tables.append(decode_csv(splitter.header or b"", part, columns, schema))
    rest = splitter.finish()
    if rest:
        tables.append(decode_csv(splitter.header or b"", rest, columns, schema))
    assert pa.concat_tables(tables).column("s").to_pylist() == values


def test_cut_off_csv_is_an_error() -> None:
    splitter = CsvSplitter(1 << 20)
    splitter.feed(b'"s"\n"abc\n')
    with pytest.raises(ValueError, match="incomplete row"):
        splitter.finish()


def test_csv_round_trip_of_scalar_types() -> None:
    columns = [("a", "UInt64"), ("d", "DateTime('UTC')"), ("m", "Decimal(18, 4)"), ("b", "Bool")]
    schema = arrow_schema(columns)
    table = pa.table(
        {
            "a": pa.array([2**64 - 1, 0], pa.uint64()),
            "d": pa.array([0, 1_600_000_000], pa.timestamp("s", "UTC")),
            "m": pa.array([Decimal("-1.2345"), Decimal("0.0001")], pa.decimal128(18, 4)),
            "b": pa.array([True, False]),
        }
    )
    body = encode_csv(table)
    assert body.splitlines()[1].startswith(b'18446744073709551615,"0000000000",-1.2345,1')
    header, _, rows = body.partition(b"\n")
    # the server would send back numbers for the DateTime column, as csv_select asks it to
    decoded = decode_csv(header + b"\n", rows, columns, schema)
    assert decoded.column("a").to_pylist() == [2**64 - 1, 0]
    assert decoded.column("m").to_pylist() == [Decimal("-1.2345"), Decimal("0.0001")]
    assert decoded.column("d").type == pa.timestamp("s", "UTC")


def test_conform_casts_clickhouse_arrow_output() -> None:
    schema = arrow_schema([("d", "DateTime('UTC')"), ("day", "Date"), ("s", "String")])
    sent = pa.table(
        {
            "d": pa.array([86_400], pa.uint32()),
            "day": pa.array([1], pa.uint16()),
            "s": pa.array([b"x"], pa.binary()),
        }
    )
    table = conform(sent, schema)
    assert table.schema.equals(schema)
    assert table.to_pylist()[0]["day"].isoformat() == "1970-01-02"
    assert table.to_pylist()[0]["s"] == "x"


@pytest.mark.parametrize("chunk", [1, 7, 4096, 1 << 20])
def test_arrow_stream_decoded_in_any_chunking(chunk: int) -> None:
    table = pa.table({"a": list(range(5000)), "s": [str(i) for i in range(5000)]})
    sink = io.BytesIO()
    with ipc.new_stream(sink, table.schema) as writer:
        for batch in table.to_batches(max_chunksize=333):
            writer.write_batch(batch)
    data = sink.getvalue()
    decoder = ArrowStreamDecoder(retry_bytes=512)
    batches = []
    for start in range(0, len(data), chunk):
        batches += decoder.feed(data[start : start + chunk])
    batches += decoder.finish()
    assert pa.Table.from_batches(batches).equals(table)


def test_cut_off_arrow_stream_is_an_error() -> None:
    table = pa.table({"a": list(range(1000))})
    sink = io.BytesIO()
    with ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    decoder = ArrowStreamDecoder()
    decoder.feed(sink.getvalue()[:-200])
    with pytest.raises(ValueError, match="incomplete"):
        decoder.finish()


def test_rebatcher_gathers_tiny_blocks() -> None:
    rebatcher = Rebatcher(1000)
    out = []
    for start in range(0, 2500, 7):
        out += rebatcher.add(pa.table({"a": list(range(start, min(start + 7, 2500)))}))
    out += rebatcher.finish()
    assert [table.num_rows for table in out] == [1000, 1000, 500]
    assert pa.concat_tables(out).column("a").to_pylist() == list(range(2500))

"""Unit tests of the ClickHouse connector's pieces that need no server: configuration, identifier
and literal handling, result decoding, insert encoding, error parsing and the retry rules."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

import httpx
import orjson
import pytest

from ductwork import (
    ClickHouseConfig,
    ClickHouseLoadError,
    ConfigError,
    RunContext,
    create_clickhouse_extractor,
    create_clickhouse_loader,
)
from ductwork.connectors.clickhouse.codec import (
    RowDecoder,
    ServerError,
    column_converter,
    decode_error_text,
    encode_records,
    has_naive_datetime,
    quote_identifier,
    valid_type,
)
from ductwork.connectors.clickhouse.loader import _ClickHouseSink
from ductwork.connectors.clickhouse.query import render_query, sql_literal
from ductwork.connectors.clickhouse.tables import engine_version

# --------------------------------------------------------------------------- configuration


def test_config_moves_credentials_out_of_the_url() -> None:
    config = ClickHouseConfig(url="http://etl:hunter2@db.example:8123/")
    assert config.url == "http://db.example:8123"
    assert config.user == "etl"
    assert config.password.get_secret_value() == "hunter2"
    assert "hunter2" not in repr(config)
    assert "hunter2" not in str(config.model_dump())


def test_config_errors_name_the_field_and_hide_the_password() -> None:
    with pytest.raises(ConfigError) as info:
        create_clickhouse_extractor(
            "SELECT 1", {"url": "ftp://x", "password": 12345, "database": "a;b"}
        )
    fields = {field for field, _ in info.value.errors}
    assert {f"connection_config.{name}" for name in ("url", "password", "database")} <= fields
    assert "12345" not in str(info.value)
    assert "12345" not in str(info.value.__cause__ or "")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"query": "SELECT 1", "batch_size": 0}, "batch_size"),
        ({"query": "INSERT INTO t VALUES (1)"}, "query"),
        ({"query": "SELECT 1 FORMAT JSON"}, "query"),
        ({"query": "SELECT {a.b}"}, "query"),
        ({"query": "SELECT '}'"}, "query"),
        ({"query": "SELECT 1", "settings": {"bad name": 1}}, "settings"),
    ],
)
def test_extractor_config_errors(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        create_clickhouse_extractor(**kwargs)
    assert field in {f for f, _ in info.value.errors}


def test_a_column_named_format_is_not_a_format_clause() -> None:
    extractor = create_clickhouse_extractor("SELECT format FROM t;  ")
    assert extractor.config.query == "SELECT format FROM t"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"table": "t; DROP TABLE x"}, "table"),
        ({"table": "a.b.c"}, "table"),
        ({"table": "t", "columns": ["ok", "no`pe"]}, "columns"),
        ({"table": "t", "columns": ["a", "a"]}, "columns"),
        ({"table": "t", "mode": "merge"}, "mode"),
        ({"table": "t", "upsert_key": ["id"]}, "<root>"),
        ({"table": "t", "mode": "upsert", "columns": ["v"], "upsert_key": ["id"]}, "<root>"),
        ({"table": "t", "create_table": {"id": "UInt64; DROP TABLE x"}}, "create_table"),
        ({"table": "t", "create_table": {"id": "UInt64"}, "order_by": ["nope"]}, "<root>"),
        ({"table": "t", "batch_size": -1}, "batch_size"),
        ({"table": "t", "flush_interval": 0}, "flush_interval"),
    ],
)
def test_loader_config_errors(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        create_clickhouse_loader(**kwargs)
    assert field in {f for f, _ in info.value.errors}, info.value


def test_connection_config_accepts_a_url_a_mapping_or_a_config() -> None:
    for value in ("http://h:1", {"url": "http://h:1"}, ClickHouseConfig(url="http://h:1")):
        assert create_clickhouse_loader("t", connection_config=value).connection.url == "http://h:1"
    with pytest.raises(ConfigError):
        create_clickhouse_loader("t", connection_config=42)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- identifiers, literals


def test_identifiers_are_quoted() -> None:
    assert quote_identifier("events") == "`events`"
    assert quote_identifier("we`ird\\") == "`we\\`ird\\\\`"


@pytest.mark.parametrize(
    ("spec", "ok"),
    [
        ("UInt64", True),
        ("Nullable(Decimal(18, 4))", True),
        ("Enum8('a' = 1, 'b' = -2)", True),
        ("DateTime('Europe/Berlin')", True),
        ("String) ENGINE = Log; --", False),
        ("UInt8 DEFAULT 1", False),
        ("Array(UInt8", False),
        ("Enum8('a)' = 1", False),
    ],
)
def test_type_specs_are_validated(spec: str, ok: bool) -> None:
    assert valid_type(spec) is ok


def test_literals_escape_strings_and_bind_aware_datetimes_as_instants() -> None:
    assert sql_literal("it's \\ fine") == "'it\\'s \\\\ fine'"
    assert sql_literal(None) == "NULL"
    assert sql_literal([1, "a"]) == "[1,'a']"
    assert sql_literal(date(2024, 1, 2)) == "'2024-01-02'"
    moment = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    assert sql_literal(moment) == f"toDateTime({int(moment.timestamp())})"
    with pytest.raises(TypeError, match="object"):
        sql_literal(object())


def test_templates_fill_placeholders_and_keep_doubled_braces() -> None:
    sql = render_query("SELECT {{1}}, {a} WHERE x = {a} OR y = {b}", {"a": "x'y", "b": 2})
    assert sql == "SELECT {1}, 'x\\'y' WHERE x = 'x\\'y' OR y = 2"
    with pytest.raises(KeyError, match="missing"):
        render_query("SELECT {missing}", {})


# --------------------------------------------------------------------------- decoding


def test_decoder_converts_each_type_to_its_python_value() -> None:
    columns = [
        ("i", "UInt64"),
        ("f", "Float64"),
        ("d", "Date"),
        ("dt", "DateTime"),
        ("tz", "DateTime('Asia/Tokyo')"),
        ("dec", "Nullable(Decimal(38, 20))"),
        ("u", "UUID"),
        ("a", "Array(Nullable(Date))"),
        ("t", "Tuple(UInt8, Decimal(9, 2))"),
        ("e", "Enum8('x' = 1)"),
    ]
    line = (
        b'{"i":18446744073709551615,"f":2,"d":"0000-00-00","dt":"2024-01-02 03:04:05",'
        b'"tz":"0000-00-00 00:00:00","dec":1.00000000000000000001,'
        b'"u":"12345678-1234-5678-1234-567812345678","a":["2024-01-01",null],'
        b'"t":[1,0.10],"e":"x"}\n'
    )
    [row] = RowDecoder(columns, "UTC").decode(line * 1)
    assert row == {
        "i": 2**64 - 1,
        "f": 2.0,
        "d": date(1970, 1, 1),
        "dt": datetime(2024, 1, 2, 3, 4, 5),
        "tz": datetime(1970, 1, 1, 9, 0),
        "dec": Decimal("1.00000000000000000001"),
        "u": UUID("12345678-1234-5678-1234-567812345678"),
        "a": [date(2024, 1, 1), None],
        "t": (1, Decimal("0.10")),
        "e": "x",
    }
    assert type(row["f"]) is float


def test_decoder_keeps_every_digit_of_top_level_decimals() -> None:
    columns = [
        ("a", "Decimal(38, 20)"),
        ("b", "Nullable(Decimal(18, 4))"),
        ("s", "String"),
        ("z", "Decimal(9, 0)"),
    ]
    decoder = RowDecoder(columns, None)
    assert decoder.quote  # the fast path: numbers become strings before orjson reads them
    lines = (
        b'{"a":123456789012345678.00000000000000000001,"b":null,"s":"\\"a\\":1}","z":7}\n'
        b'{"a":-0.00000000000000000001,"b":-12345678901234.5678,"s":"","z":-3}\n'
    )
    rows = decoder.decode(lines)
    assert rows == [
        {
            "a": Decimal("123456789012345678.00000000000000000001"),
            "b": None,
            "s": '"a":1}',
            "z": Decimal(7),
        },
        {
            "a": Decimal("-1E-20"),
            "b": Decimal("-12345678901234.5678"),
            "s": "",
            "z": Decimal(-3),
        },
    ]
    assert str(rows[0]["a"]) == "123456789012345678.00000000000000000001"


def test_decoder_reads_named_tuples_written_as_objects() -> None:
    [row] = RowDecoder([("t", "Tuple(a UInt8, b Date)")], None).decode(
        b'{"t":{"a":1,"b":"2024-01-02"}}\n'
    )
    assert row == {"t": (1, date(2024, 1, 2))}


def test_decoder_reads_non_finite_floats() -> None:
    rows = RowDecoder([("f", "Float32")], None).decode(b'{"f":"nan"}\n{"f":"-inf"}\n')
    assert math.isnan(rows[0]["f"])
    assert rows[1]["f"] == -math.inf


def test_decoder_raises_the_error_the_server_appends_mid_stream() -> None:
    decoder = RowDecoder([("n", "UInt64")], None)
    text = b'{"n":1}\nCode: 395, e.displayText() = DB::Exception: boom, e.what() = DB::Exception\n'
    with pytest.raises(ServerError) as info:
        decoder.decode(text)
    assert info.value.code == 395
    assert info.value.message == "boom"


def test_naive_datetime_detection() -> None:
    assert has_naive_datetime("Nullable(DateTime)")
    assert has_naive_datetime("DateTime64(3)")
    assert not has_naive_datetime("DateTime('UTC')")
    assert not has_naive_datetime("DateTime64(3, 'UTC')")
    assert column_converter("String") is None
    assert column_converter("Array(String)") is None


# --------------------------------------------------------------------------- encoding and errors


def test_records_encode_with_exact_decimals_and_iso_datetimes() -> None:
    moment = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    body = encode_records([{"d": Decimal("12345678901234.5678"), "t": moment, "s": {1}}])
    assert body == b'[{"d":12345678901234.5678,"t":"2024-01-02T03:04:05+00:00","s":[1]}]'
    assert orjson.loads(body)[0]["t"] == "2024-01-02T03:04:05+00:00"
    with pytest.raises(TypeError):
        encode_records([{"x": object()}])


@pytest.mark.parametrize(
    ("text", "code", "message"),
    [
        (
            "Code: 27, e.displayText() = DB::Exception: Cannot parse input: (at row 3)\n"
            ", e.what() = DB::Exception",
            27,
            "Cannot parse input: (at row 3)",
        ),
        (
            "Code: 60. DB::Exception: Table x.y does not exist. (UNKNOWN_TABLE) (version 24.3)",
            60,
            "Table x.y does not exist. (UNKNOWN_TABLE) (version 24.3)",
        ),
        ("plain text", None, "plain text"),
    ],
)
def test_server_error_text_is_decoded(text: str, code: int | None, message: str) -> None:
    assert decode_error_text(text) == (code, message)


def test_server_error_knows_the_rejected_row() -> None:
    assert ServerError("Code: 27, e.displayText() = DB::Exception: x: (at row 7)").row == 7


@pytest.mark.parametrize(
    ("engine_full", "version"),
    [
        ("ReplacingMergeTree(ver) ORDER BY k SETTINGS index_granularity = 8192", "ver"),
        ("ReplacingMergeTree ORDER BY (k, k2) SETTINGS index_granularity = 8192", None),
        ("ReplicatedReplacingMergeTree('/t/{shard}', '{replica}', v) ORDER BY k", "v"),
        ("ReplacingMergeTree(ver, is_deleted) ORDER BY k", "ver"),
        ("ReplacingMergeTree(d, (k), 8192, ver)", "ver"),
        ("ReplacingMergeTree(d, (k), 8192)", None),
    ],
)
def test_engine_version_column(engine_full: str, version: str | None) -> None:
    assert engine_version(engine_full) == version


# --------------------------------------------------------------------------- retry rules


class _FlakyConnection:
    """Fails the first ``failures`` inserts with ``error``, then accepts."""

    def __init__(self, error: Exception, failures: int) -> None:
        self.error = error
        self.failures = failures
        self.calls = 0

    async def insert(self, query: str, body: bytes, params: Any) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error


def _sink(conn: _FlakyConnection, *, dedup_tokens: bool) -> _ClickHouseSink:
    loader = create_clickhouse_loader("t", retries=2, retry_backoff=0.0)
    sink = _ClickHouseSink(loader, conn, RunContext())  # type: ignore[arg-type]
    sink.dedup_tokens = dedup_tokens
    return sink


async def test_connect_errors_are_retried() -> None:
    conn = _FlakyConnection(httpx.ConnectError("refused"), failures=2)
    await _sink(conn, dedup_tokens=False)._send(b"{}", {})
    assert conn.calls == 3


async def test_an_ambiguous_failure_is_not_retried_without_deduplication_tokens() -> None:
    conn = _FlakyConnection(httpx.ReadError("reset"), failures=1)
    with pytest.raises(httpx.ReadError):
        await _sink(conn, dedup_tokens=False)._send(b"{}", {})
    assert conn.calls == 1


async def test_an_ambiguous_failure_is_retried_with_deduplication_tokens() -> None:
    conn = _FlakyConnection(httpx.ReadError("reset"), failures=1)
    await _sink(conn, dedup_tokens=True)._send(b"{}", {})
    assert conn.calls == 2


async def test_bad_data_is_not_retried_but_an_overloaded_server_is() -> None:
    bad = _FlakyConnection(ServerError("Code: 27, e.displayText() = DB::Exception: x"), 1)
    with pytest.raises(ServerError):
        await _sink(bad, dedup_tokens=True)._send(b"{}", {})
    assert bad.calls == 1
    busy = _FlakyConnection(ServerError("Code: 252, e.displayText() = DB::Exception: parts"), 2)
    await _sink(busy, dedup_tokens=False)._send(b"{}", {})
    assert busy.calls == 3


async def test_retries_give_up_after_the_configured_count() -> None:
    conn = _FlakyConnection(httpx.ConnectError("refused"), failures=10)
    with pytest.raises(httpx.ConnectError):
        await _sink(conn, dedup_tokens=False)._send(b"{}", {})
    assert conn.calls == 3


def test_load_error_is_both_kinds() -> None:
    from ductwork import ClickHouseError, LoadError

    error = ClickHouseLoadError("x", table="db.t", batch=4, code=27, record={"a": 1})
    assert isinstance(error, LoadError)
    assert isinstance(error, ClickHouseError)
    assert (error.table, error.batch, error.code, error.record) == ("db.t", 4, 27, {"a": 1})

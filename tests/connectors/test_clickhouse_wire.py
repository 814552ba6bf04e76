"""Unit tests of the ClickHouse connector's version-dependent pieces that need no server: typed
query parameters, capability parsing, the scan for errors in mid-result, sorting keys, and what
decides exactly-once inserts (deduplication windows, token scopes)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from enum import Enum
from ipaddress import IPv4Address
from typing import Any
from uuid import UUID

import httpx
import pytest

from ductwork import RunContext, TimeWindow
from ductwork.connectors.clickhouse import capabilities
from ductwork.connectors.clickhouse.client import ResultStream, _ExceptionScanner
from ductwork.connectors.clickhouse.codec import ServerError
from ductwork.connectors.clickhouse.loader import _scope
from ductwork.connectors.clickhouse.query import bind_query, query_parameter, sql_literal
from ductwork.connectors.clickhouse.tables import (
    deduplication_window,
    sorting_key_columns,
    table_settings,
)

# --------------------------------------------------------------------------- query parameters


class Color(Enum):
    RED = "red"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, ("Nullable(Nothing)", "\\N")),
        (False, ("UInt8", "0")),
        (-(2**63), ("Int64", str(-(2**63)))),
        (2**64 - 1, ("UInt64", str(2**64 - 1))),
        (2**100, ("Int128", str(2**100))),
        (2**300, None),
        (0.1, ("Float64", "0.1")),
        (float("-inf"), ("Float64", "-inf")),
        (Decimal("-0.050"), ("Decimal(3, 3)", "-0.050")),
        (Decimal("12E3"), ("Decimal(5, 0)", "12000")),
        (Decimal("NaN"), None),
        ("a\tb\nc\\d'e", ("String", "a\\tb\\nc\\\\d'e")),
        (date(2024, 2, 29), ("Date", "2024-02-29")),
        (date(1969, 12, 31), ("Date32", "1969-12-31")),
        (datetime(2024, 1, 2, 3, 4, 5), ("DateTime", "2024-01-02 03:04:05")),
        (datetime(2024, 1, 2, 3, 4, 5, 6), ("DateTime64(6)", "2024-01-02 03:04:05.000006")),
        (
            datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2))),
            ("DateTime('UTC')", "2024-01-02 01:04:05"),
        ),
        (datetime(1960, 1, 1, tzinfo=UTC), ("DateTime64(6, 'UTC')", "1960-01-01 00:00:00")),
        (UUID(int=1), ("UUID", "00000000-0000-0000-0000-000000000001")),
        (IPv4Address("10.0.0.1"), ("IPv4", "10.0.0.1")),
        (Color.RED, ("String", "red")),
        ([], ("Array(Nothing)", "[]")),
        ([1, None, 3], ("Array(Nullable(Int64))", "[1,NULL,3]")),
        ([1, 2.5], ("Array(Float64)", "[1,2.5]")),
        (["it's", "a\\b"], ("Array(String)", "['it\\'s','a\\\\b']")),
        ([[1], []], ("Array(Array(Int64))", "[[1],[]]")),
        ([[1], None], None),  # Nullable(Array) does not exist
        ([1, "a"], None),
        ((1, "x", None), ("Tuple(Int64, String, Nullable(Nothing))", "(1,'x',NULL)")),
        ({"k": [date(2024, 1, 1)]}, ("Map(String, Array(Date))", "{'k':['2024-01-01']}")),
        ({}, None),
        (object(), None),
    ],
)
def test_parameter_types_follow_the_python_value(value: Any, expected: Any) -> None:
    assert query_parameter(value) == expected


def test_templates_bind_parameters_or_literals() -> None:
    template = "SELECT {{x}}, {s} WHERE a = {s} AND b IN {ids} AND c = {odd}"
    values = {"s": "it's", "ids": (1, 2), "odd": 10**90, "extra": 1}
    sql, params = bind_query(template, values, server_side=True)
    assert sql == (
        f"SELECT {{x}}, {{s:String}} WHERE a = {{s:String}} AND b IN {{ids:Tuple(Int64, Int64)}} "
        f"AND c = {10**90}"
    )
    assert params == {"param_s": "it's", "param_ids": "(1,2)"}
    sql, params = bind_query(template, values, server_side=False)
    assert sql == f"SELECT {{x}}, 'it\\'s' WHERE a = 'it\\'s' AND b IN (1,2) AND c = {10**90}"
    assert params == {}
    with pytest.raises(KeyError, match="ids"):
        bind_query("SELECT {ids}", {}, server_side=True)


def test_decimal_literals_are_exact_decimals() -> None:
    assert sql_literal(Decimal("-1.50")) == "toDecimal128('-1.50', 2)"
    assert sql_literal(Decimal("1E-40")).startswith("1")  # past Decimal128: as aiochclient has it


# --------------------------------------------------------------------------- capabilities


def test_versions_parse_leniently() -> None:
    assert capabilities.parse_version("26.9.2.1") == (26, 9, 2)
    assert capabilities.parse_version("18.16.1") == (18, 16, 1)
    assert capabilities.parse_version("24.3-lts") == (24, 3, 0)


def row(version: str, settings: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "version": version,
        "timezone": "UTC",
        "settings": [f"{name}=1" for name in settings],
        "merge_tree": [],
        **extra,
    }


def test_capabilities_come_from_the_system_tables_and_the_version() -> None:
    old = capabilities.from_row(row("18.16.1", ["insert_deduplicate"]), None)
    assert (old.query_parameters, old.dedup_tokens, old.async_insert) == (False, False, False)
    assert old.formats == frozenset()  # no system.formats column: by version

    mid = capabilities.from_row(
        row(
            "23.3.1",
            [
                "insert_deduplication_token",
                "async_insert",
                "wait_for_async_insert",
                "async_insert_deduplicate",
            ],
            formats=["Parquet"],
        ),
        None,
    )
    assert all([mid.query_parameters, mid.dedup_tokens, mid.async_insert, mid.parquet])
    assert not mid.async_insert_dedup  # the setting exists, but honours tokens from 23.7
    assert not mid.arrow_stream

    new = capabilities.from_row(
        row("25.11.1", [], merge_tree=["non_replicated_deduplication_window=100"]), None
    )
    assert new.tagged_exceptions
    assert new.deduplicates_by_default()
    assert capabilities.needs_parameter_probe("19.9.1")
    assert not capabilities.needs_parameter_probe("20.1.1")
    probed = capabilities.from_row(row("19.9.1", []), False)
    assert probed.query_parameters is False


def test_the_cache_is_per_url_and_user() -> None:
    capabilities.clear_cache()
    caps = capabilities.from_row(row("26.9.1", []), None)
    capabilities.store("http://a:8123", "etl", caps)
    assert capabilities.cached("http://a:8123", "etl") is caps
    assert capabilities.cached("http://a:8123", "default") is None
    capabilities.clear_cache()
    assert capabilities.cached("http://a:8123", "etl") is None


# --------------------------------------------------------------------------- errors in mid-result

ROWS = b"".join(b'{"n":%d}\n' % i for i in range(300))
MESSAGE = (
    b"Code: 395. DB::Exception: Value passed to 'throwIf' function is non-zero. "
    b"(FUNCTION_THROW_IF_VALUE_IS_NON_ZERO) (version 26.9.2.1 (official build))\n"
)
TAG = b"abcdefghijklmnop"
TAGGED = b"\r\n__exception__\r\n%s\r\n%s%d %s\r\n__exception__\r\n" % (
    TAG,
    MESSAGE,
    len(MESSAGE),
    TAG,
)


def scan(scanner: _ExceptionScanner, body: bytes, size: int) -> tuple[bytes, ServerError | None]:
    out = b""
    for start in range(0, len(body), size):
        out += scanner.feed(body[start : start + size])
    try:
        out += scanner.end()
    except ServerError as exc:
        return out, exc
    return out, None


@pytest.mark.parametrize("size", [1, 2, 7, 16, 33, 4096])
def test_a_tagged_exception_block_is_found_across_any_chunking(size: int) -> None:
    data, error = scan(_ExceptionScanner(TAG.decode()), ROWS + TAGGED, size)
    assert data == ROWS
    assert error is not None
    assert error.code == 395
    assert error.message.startswith("Value passed to 'throwIf'")
    assert not error.transient


@pytest.mark.parametrize("size", [1, 5, 4096])
def test_the_untagged_block_of_older_servers_is_found(size: int) -> None:
    block = b"__exception__\r\nCode: 241. DB::Exception: Memory limit exceeded\n"
    data, error = scan(_ExceptionScanner(None), ROWS + block, size)
    assert data == ROWS
    assert error is not None
    assert error.code == 241
    assert error.transient


def test_data_that_only_looks_like_a_block_passes_through() -> None:
    tagged = b"x__exception__\r\nwrongtag\r\n" + ROWS
    assert scan(_ExceptionScanner(TAG.decode()), tagged, 3) == (tagged, None)
    untagged = b"x__exception__\r\n" + ROWS * 100 + b"__exception_" + b"\r\n"
    assert scan(_ExceptionScanner(None), untagged, 1000) == (untagged, None)


class _Broken(httpx.AsyncByteStream):
    """A body that ends in a broken connection after its chunks."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk
        raise httpx.RemoteProtocolError("incomplete chunked read")


async def test_a_broken_connection_after_a_block_raises_the_servers_error() -> None:
    headers = {"X-ClickHouse-Exception-Tag": TAG.decode()}
    response = httpx.Response(200, headers=headers, stream=_Broken(ROWS, TAGGED[:20], TAGGED[20:]))
    received: list[bytes] = []

    async def read() -> None:
        async for chunk in ResultStream(response).aiter_bytes():
            received.append(chunk)

    with pytest.raises(ServerError) as info:
        await read()
    assert b"".join(received) == ROWS
    assert info.value.code == 395

    response = httpx.Response(200, headers=headers, stream=_Broken(ROWS))
    with pytest.raises(httpx.RemoteProtocolError):  # no block: the connection broke
        await ResultStream(response).aread()


# --------------------------------------------------------------------------- tables


@pytest.mark.parametrize(
    ("sorting_key", "columns"),
    [
        ("user_id", ["user_id"]),
        ("(user_id)", ["user_id"]),  # 26.x
        ("k, n", ["k", "n"]),
        ("(k, n)", ["k", "n"]),
        ("`weird name`, b", ["weird name", "b"]),
        ("(toDate(ts)), x", ["(toDate(ts))", "x"]),
        ("tuple()", []),
    ],
)
def test_sorting_keys_are_parsed(sorting_key: str, columns: list[str]) -> None:
    assert sorting_key_columns(sorting_key) == columns


def test_table_settings_and_deduplication_windows() -> None:
    caps = capabilities.from_row(row("26.9.1", []), None)
    full = "MergeTree ORDER BY id SETTINGS non_replicated_deduplication_window = 100, a = 'x, y'"
    assert table_settings(full) == {"non_replicated_deduplication_window": "100", "a": "x, y"}
    assert deduplication_window("MergeTree", full, caps) == 100
    assert deduplication_window("MergeTree", "MergeTree ORDER BY id", caps) is None
    assert deduplication_window(
        "ReplicatedMergeTree", "ReplicatedMergeTree('/p', 'r') ORDER BY id", caps
    )
    replicated_off = "ReplicatedMergeTree ORDER BY id SETTINGS replicated_deduplication_window = 0"
    assert deduplication_window("ReplicatedMergeTree", replicated_off, caps) is None
    assert deduplication_window("Memory", "Memory", caps) is None
    server_wide = capabilities.from_row(
        row("26.9.1", [], merge_tree=["non_replicated_deduplication_window=50"]), None
    )
    assert deduplication_window("MergeTree", "MergeTree ORDER BY id", server_wide) == 50


def test_token_scopes_are_what_a_rerun_repeats() -> None:
    day = TimeWindow(datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 2, tzinfo=UTC))
    first = RunContext(pipeline="p", window=day, params={"b": 1, "a": [1, 2]})
    rerun = RunContext(pipeline="p", window=day, params={"a": [1, 2], "b": 1})
    assert _scope(first) == _scope(rerun)
    berlin = timezone(timedelta(hours=1))
    elsewhere = TimeWindow(day.start.astimezone(berlin), day.end.astimezone(berlin))
    assert _scope(RunContext(pipeline="p", window=elsewhere, params=first.params)) == _scope(first)
    assert _scope(first).startswith("p:")
    assert _scope(first) != _scope(RunContext(pipeline="p", window=day))
    assert _scope(first) != _scope(RunContext(pipeline="q", window=day, params=first.params))
    parent = RunContext(pipeline="retry")
    attempts = [parent.child("p"), parent.child("p")]
    assert _scope(attempts[0]) == _scope(attempts[1])  # retries of one composition run
    assert _scope(RunContext(pipeline="p")) != _scope(RunContext(pipeline="p"))  # separate runs

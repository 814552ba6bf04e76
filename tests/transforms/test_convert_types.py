"""convert_types: the conversion matrix, strict and lenient modes, options and configuration."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest

from ductwork import (
    Batch,
    ColumnType,
    ConfigError,
    Pipeline,
    RunContext,
    RunResult,
    TransformError,
    TypeConversionError,
    convert_types,
)

U = "12345678-1234-5678-1234-567812345678"


async def convert(spec: Any, values: list[Any], **options: Any) -> list[Any]:
    """Convert one column of values in one batch; missing results come back as '<missing>'."""
    stage = convert_types({"v": spec}, **options)
    out = await stage.transform([{"v": v} for v in values], RunContext())
    assert out is not None
    return [record.get("v", "<missing>") for record in out]


async def run(stage: Any, batches: list[Batch], name: str = "orders") -> tuple[Batch, RunResult]:
    rows: Batch = []

    async def extract(ctx: RunContext) -> AsyncIterator[Batch]:
        for batch in batches:
            yield [dict(record) for record in batch]

    result = await Pipeline(extract, [stage], rows.extend, name=name, logging=False).run()
    return rows, result


CONVERTS = [
    ("int", "42", 42),
    ("int", " -7 ", -7),
    ("int", 5, 5),
    ("int", True, 1),
    ("int", 2.0, 2),
    ("int", Decimal("3"), 3),
    ("int", b"12", 12),
    ("int", "1_000", 1000),
    ("int8", "127", 127),
    ("int8", "-128", -128),
    ("uint8", "255", 255),
    ("int64", str(2**63 - 1), 2**63 - 1),
    ("uint64", str(2**64 - 1), 2**64 - 1),
    ("float", "1.5", 1.5),
    ("float", "1e3", 1000.0),
    ("float", " 2 ", 2.0),
    ("float", 3, 3.0),
    ("float", Decimal("0.5"), 0.5),
    ("float", True, 1.0),
    ("float", "inf", math.inf),
    ("str", "x", "x"),
    ("str", 5, "5"),
    ("str", 1.5, "1.5"),
    ("str", Decimal("1.10"), "1.10"),
    ("str", UUID(U), U),
    ("str", date(2024, 5, 1), "2024-05-01"),
    ("str", datetime(2024, 5, 1, 12, 30, tzinfo=UTC), "2024-05-01T12:30:00+00:00"),
    ("str", "café".encode(), "café"),
    ("str", {"a": 1}, '{"a":1}'),
    ("str", [1, 2], "[1,2]"),
    ("bool", "yes", True),
    ("bool", "0", False),
    ("bool", "Y", True),
    ("bool", " off ", False),
    ("bool", "TRUE", True),
    ("bool", "tRuE", True),
    ("bool", "f", False),
    ("bool", 1, True),
    ("bool", 0, False),
    ("bool", 1.0, True),
    ("bool", True, True),
    ("bool", b"no", False),
    ("decimal", "9.90", Decimal("9.90")),
    ("decimal", " 1.5 ", Decimal("1.5")),
    ("decimal", 0.1, Decimal("0.1")),
    ("decimal", 5, Decimal(5)),
    ("decimal", Decimal("2.50"), Decimal("2.50")),
    ("date", "2024-05-01", date(2024, 5, 1)),
    ("date", "2024-05-01T23:59:00", date(2024, 5, 1)),
    ("date", datetime(2024, 5, 1, 8), date(2024, 5, 1)),
    ("date", date(2024, 5, 1), date(2024, 5, 1)),
    ("datetime", "2024-05-01T12:00:00Z", datetime(2024, 5, 1, 12, tzinfo=UTC)),
    (
        "datetime",
        "2024-05-01 12:00:00+02:00",
        datetime(2024, 5, 1, 12, tzinfo=timezone(timedelta(hours=2))),
    ),
    ("datetime", "2024-05-01T12:00:00", datetime(2024, 5, 1, 12)),
    ("datetime", date(2024, 5, 1), datetime(2024, 5, 1)),
    ("uuid", U, UUID(U)),
    ("uuid", "{" + U + "}", UUID(U)),
    ("uuid", "urn:uuid:" + U, UUID(U)),
    ("uuid", UUID(U).bytes, UUID(U)),
    ("uuid", UUID(U), UUID(U)),
    ("json", '{"a": 1}', {"a": 1}),
    ("json", b"[1, 2]", [1, 2]),
    ("json", {"a": 1}, {"a": 1}),
    ("json", "3", 3),
]


@pytest.mark.parametrize(("kind", "value", "expected"), CONVERTS)
async def test_converts(kind: str, value: Any, expected: Any) -> None:
    # alone (the fast path where it applies) and beside a None (the per-value path)
    assert await convert(kind, [value]) == [expected]
    assert await convert(kind, [value, None]) == [expected, None]
    converted = (await convert(kind, [value]))[0]
    assert type(converted) is type(expected)


FAILS = [
    ("int", "1.0"),
    ("int", 1.5),
    ("int", "abc"),
    ("int", ""),
    ("int", math.inf),
    ("int", math.nan),
    ("int", Decimal("1.5")),
    ("int", "0x10"),
    ("int", [1]),
    ("int8", "128"),
    ("int8", "-129"),
    ("uint8", "-1"),
    ("uint8", 300),
    ("int64", str(2**63)),
    ("uint64", str(2**64)),
    ("float", "abc"),
    ("float", 10**400),
    ("float", ""),
    ("float", [1.0]),
    ("str", b"\xff"),
    ("str", object()),
    ("bool", "2"),
    ("bool", 2),
    ("bool", "maybe"),
    ("bool", 0.5),
    ("bool", ""),
    ("decimal", "NaN"),
    ("decimal", "Infinity"),
    ("decimal", "abc"),
    ("decimal", math.nan),
    ("date", "2024-13-01"),
    ("date", "yesterday"),
    ("date", 20240501),
    ("datetime", "2024-05-01T25:00"),
    ("datetime", 1714567890),
    ("datetime", ""),
    ("uuid", "not-a-uuid"),
    ("uuid", "+2345678-1234-5678-1234-567812345678"),
    ("uuid", "1234_678-1234-5678-1234-567812345678"),
    ("uuid", "0x345678-1234-5678-1234-567812345678"),
    ("uuid", "12345678-1234-5678-1234-56781234567\u00e9"),
    ("uuid", 123),
    ("json", "{bad"),
    ("json", ""),
]


@pytest.mark.parametrize(("kind", "value"), FAILS)
async def test_strict_mode_rejects(kind: str, value: Any) -> None:
    with pytest.raises(TypeConversionError) as info:
        await convert(kind, [value], empty_as_none=False)
    assert info.value.column == "v"
    assert info.value.position == 0
    assert info.value.value is value
    assert repr(value)[:20] in str(info.value)


@pytest.mark.parametrize(("kind", "value"), FAILS)
async def test_lenient_mode_gives_none(kind: str, value: Any) -> None:
    stage = convert_types({"v": kind, "other": int}, strict_mode=False, empty_as_none=False)
    rows, result = await run(stage, [[{"v": value, "other": "1"}, {"v": None, "other": "2"}]])
    assert rows == [{"v": None, "other": 1}, {"v": None, "other": 2}]
    assert result.stage("convert_types").metrics == {"conversion_failures": 1}


async def test_one_point_zero_to_int_strict_vs_lenient_exact_text() -> None:
    batches = [
        [{"id": "1", "qty": "2"}, {"id": "2", "qty": "3"}],
        [{"id": "3", "qty": "4"}, {"id": "4", "qty": "1.0"}],
    ]
    with pytest.raises(TypeConversionError) as info:
        await run(convert_types({"id": int, "qty": int}), batches)
    assert str(info.value) == (
        "[pipeline 'orders', stage 'convert_types'] "
        "column 'qty', record 3: cannot convert '1.0': expected an integer"
    )
    assert isinstance(info.value, TransformError)
    assert (info.value.column, info.value.value, info.value.position) == ("qty", "1.0", 3)
    assert info.value.retryable is False
    assert info.value.result is not None
    assert info.value.result.error_stage == "convert_types"

    rows, result = await run(convert_types({"id": int, "qty": int}, strict_mode=False), batches)
    assert rows[-1] == {"id": 4, "qty": None}
    assert [r["qty"] for r in rows[:3]] == [2, 3, 4]
    assert result.stage("convert_types").metrics["conversion_failures"] == 1


async def test_strict_error_names_the_earliest_record_of_the_batch() -> None:
    # column a fails in record 1, column b in record 0: record 0 is reported
    stage = convert_types({"a": int, "b": int})
    with pytest.raises(TypeConversionError) as info:
        await run(stage, [[{"a": "1", "b": "x"}, {"a": "y", "b": "2"}]])
    assert (info.value.column, info.value.position) == ("b", 0)


async def test_range_errors_name_the_range() -> None:
    with pytest.raises(TypeConversionError, match=r"expected an integer in \[-128, 127\]$"):
        await convert("int8", ["128"])
    with pytest.raises(TypeConversionError, match="expected a float: out of range"):
        await convert(float, [10**400])
    with pytest.raises(TypeConversionError, match="expected JSON text: unexpected"):
        await convert("json", ["{bad"])


async def test_datetime_formats_and_time_zones() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    spec = {"type": "datetime", "timezone": "Europe/Berlin"}
    naive, aware, value = await convert(
        spec, ["2024-05-01T12:00:00", "2024-05-01T12:00:00Z", datetime(2024, 1, 1, 9)]
    )
    assert naive == datetime(2024, 5, 1, 12, tzinfo=berlin)
    assert aware == datetime(2024, 5, 1, 14, tzinfo=berlin)
    assert aware.tzinfo is berlin
    assert value == datetime(2024, 1, 1, 9, tzinfo=berlin)

    fmt = {"type": "datetime", "format": "%d/%m/%Y %H:%M"}
    assert await convert(fmt, ["31/01/2024 08:15"]) == [datetime(2024, 1, 31, 8, 15)]
    with pytest.raises(TypeConversionError, match="expected a datetime in format '%d/%m/%Y %H:%M'"):
        await convert(fmt, ["2024-01-31T08:15"])
    offset = {"type": "datetime", "format": "%Y-%m-%d %H:%M %z"}
    [moment] = await convert(offset, ["2024-01-31 08:15 +0100"])
    assert moment.utcoffset() == timedelta(hours=1)

    assert await convert(ColumnType(type="date", format="%d.%m.%Y"), ["31.01.2024"]) == [
        date(2024, 1, 31)
    ]


async def test_unix_timestamps() -> None:
    unix = {"type": "datetime", "format": "unix"}
    assert await convert(unix, [0, "1714567890", 1.5]) == [
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(2024, 5, 1, 12, 51, 30, tzinfo=UTC),
        datetime(1970, 1, 1, 0, 0, 1, 500000, tzinfo=UTC),
    ]
    [ms] = await convert({"type": "datetime", "format": "unix_ms"}, [1714567890123])
    assert ms == datetime(2024, 5, 1, 12, 51, 30, 123000, tzinfo=UTC)
    with pytest.raises(TypeConversionError, match="Unix timestamp in seconds: out of range"):
        await convert(unix, [10**20])
    with pytest.raises(TypeConversionError):
        await convert(unix, [True])


async def test_empty_strings() -> None:
    assert await convert(int, ["", " ", "3"], empty_as_none=True) == [None, None, 3]
    assert await convert(str, ["", " ", "x"], empty_as_none=True) == [None, " ", "x"]
    assert await convert(str, ["", " "]) == ["", " "]
    per_column = ColumnType(type="int", empty_as_none=False)
    with pytest.raises(TypeConversionError):
        await convert(per_column, [""], empty_as_none=True)
    assert await convert({"type": "float", "empty_as_none": True}, ["", "1"]) == [None, 1.0]


async def test_not_nullable_columns() -> None:
    spec = {"type": "int", "nullable": False}
    with pytest.raises(
        TypeConversionError,
        match="cannot convert None: expected an integer; the column is not nullable",
    ):
        await convert(spec, [None])
    # lenient mode cannot make the value None: the record still fails
    with pytest.raises(TypeConversionError):
        await convert(spec, ["x"], strict_mode=False)
    with pytest.raises(TypeConversionError):
        await convert(spec, [""], empty_as_none=True)


async def test_missing_and_other_columns_are_left_alone_in_place() -> None:
    stage = convert_types({"id": int, "price": float})
    batch = [{"id": "1", "price": "2.5", "note": "a"}, {"id": "2", "note": "b"}]
    records = list(batch)
    out = await stage.transform(batch, RunContext())
    assert out == [{"id": 1, "price": 2.5, "note": "a"}, {"id": 2, "note": "b"}]
    assert out is not None
    assert all(a is b for a, b in zip(out, records, strict=True))


async def test_fast_and_per_value_paths_agree() -> None:
    spec = {
        "i": int,
        "f": float,
        "b": bool,
        "d": Decimal,
        "t": datetime,
        "u": UUID,
        "j": "json",
        "s": str,
        "day": date,
    }
    record = {
        "i": "7",
        "f": "0.25",
        "b": "no",
        "d": "1.20",
        "t": "2024-05-01T12:00:00+02:00",
        "u": U,
        "j": '{"k": [1]}',
        "s": "x",
        "day": "2024-05-01",
    }
    stage = convert_types(spec)
    fast = await stage.transform([dict(record)], RunContext())
    slow = await stage.transform([dict(record), dict.fromkeys(spec)], RunContext())
    assert fast is not None
    assert slow is not None
    assert fast[0] == slow[0]
    assert slow[1] == dict.fromkeys(spec)


async def test_positions_count_per_run() -> None:
    letters: list[dict[str, Any]] = []
    stage = convert_types({"n": int}, error_handling="dead_letter", dead_letter_sink=letters.extend)
    batches = [[{"n": "1"}, {"n": "x"}], [{"n": "y"}, {"n": "4"}]]
    for _ in range(2):
        rows, result = await run(stage, batches)
        assert rows == [{"n": 1}, {"n": 4}]
        assert result.stage("convert_types").metrics == {"dead_letters": 2}
    assert [letter["position"] for letter in letters] == [1, 2, 1, 2]
    assert len({letter["run_id"] for letter in letters}) == 2


async def test_dead_letter_holds_the_original_record() -> None:
    letters: list[dict[str, Any]] = []
    stage = convert_types(
        {"a": int, "b": int, "c": int},
        error_handling="dead_letter",
        dead_letter_sink=letters.extend,
    )
    rows, _ = await run(stage, [[{"a": "1", "b": "x", "c": "3"}, {"a": "4", "b": "5", "c": "6"}]])
    assert rows == [{"a": 4, "b": 5, "c": 6}]
    [letter] = letters
    assert letter["record"] == {"a": "1", "b": "x", "c": "3"}
    assert letter["error"] == "column 'b', record 0: cannot convert 'x': expected an integer"
    assert letter["error_type"] == "TypeConversionError"


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"type_mapping": {"id": "flaot"}}, "type_mapping.id.type"),
        ({"type_mapping": {"id": set}}, "type_mapping.id.type"),
        ({"type_mapping": {}}, "type_mapping"),
        ({"type_mapping": ["id"]}, "type_mapping"),
        ({"type_mapping": {"d": {"type": "int", "format": "%Y"}}}, "type_mapping.d"),
        ({"type_mapping": {"d": {"type": "date", "format": "unix"}}}, "type_mapping.d"),
        (
            {"type_mapping": {"t": {"type": "datetime", "timezone": "Mars/Base"}}},
            "type_mapping.t.timezone",
        ),
        ({"type_mapping": {"t": {"type": "date", "timezone": "UTC"}}}, "type_mapping.t"),
        ({"type_mapping": {"t": {"type": "int", "colour": 1}}}, "type_mapping.t.colour"),
        ({"type_mapping": {"id": int}, "strict_mode": "maybe"}, "strict_mode"),
        ({"type_mapping": {"id": int}, "error_handling": "ignore"}, "error_handling"),
        ({"type_mapping": {"id": int}, "error_handling": "dead_letter"}, "dead_letter_sink"),
        ({"type_mapping": {"id": int}, "dead_letter_sink": print}, "dead_letter_sink"),
        ({"type_mapping": {"id": int}, "name": ""}, "name"),
    ],
)
def test_bad_configuration_names_the_field(options: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        convert_types(**options)
    assert field in [name for name, _ in info.value.errors]
    assert field in str(info.value)


def test_type_names_and_python_types() -> None:
    assert ColumnType.parse("Int64").type == "int64"
    assert ColumnType.parse("string").type == "str"
    assert ColumnType.parse(UUID).type == "uuid"
    assert ColumnType.parse(dict).type == "json"
    assert ColumnType.parse(datetime).type == "datetime"
    assert ColumnType.parse(date).type == "date"
    assert ColumnType.parse(bool).type == "bool"
    stage = convert_types({"a": "Float64", "b": ColumnType(type="uint16")})
    assert "'a': 'float'" in repr(stage)


async def test_clean_batches_take_the_column_path(monkeypatch: pytest.MonkeyPatch) -> None:
    from ductwork.transforms import converters

    def per_value(self: Any, value: Any) -> Any:
        raise AssertionError(f"per-value path taken for {value!r}")

    monkeypatch.setattr(converters.ColumnConverter, "convert", per_value)
    spec = {
        "i": int,
        "i8": "int8",
        "f": float,
        "b": bool,
        "d": Decimal,
        "t": datetime,
        "u": UUID,
        "j": "json",
        "s": str,
        "day": date,
    }
    texts = {
        "i": "7",
        "i8": "-3",
        "f": "0.25",
        "b": "no",
        "d": "1.20",
        "t": "2024-05-01T12:00:00+02:00",
        "u": U,
        "j": '{"k": [1]}',
        "s": "x",
        "day": "2024-05-01",
    }
    stage = convert_types(spec)
    [once] = await stage.transform([dict(texts)], RunContext()) or []
    [twice] = await stage.transform([dict(once)], RunContext()) or []
    assert twice == once
    assert once["t"] == datetime(2024, 5, 1, 10, tzinfo=UTC)


async def test_time_zone_conversion_out_of_range() -> None:
    spec = {"type": "datetime", "timezone": "America/New_York"}
    with pytest.raises(TypeConversionError, match="expected an ISO 8601 datetime: out of range"):
        await convert(spec, ["0001-01-01T00:00:00+00:00"])

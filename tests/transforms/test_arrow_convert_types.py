"""convert_types on Arrow batches: values, types, errors (column, row, value) and the policies."""

from __future__ import annotations

import copy
import logging
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import anyio
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from ductwork import ColumnType, RunContext, TypeConversionError, convert_types
from ductwork.core.result import StageStats

BERLIN = ZoneInfo("Europe/Berlin")


def run(stage: Any, batch: Any, ctx: RunContext | None = None) -> Any:
    return anyio.run(stage.transform, batch, ctx or RunContext())


def stage_context(pipeline: str = "pipeline") -> tuple[RunContext, StageStats]:
    """A context as a pipeline hands it to a stage, and the stage's counters."""
    stats = StageStats(name="convert_types", kind="transform")
    return RunContext(pipeline=pipeline).for_stage("convert_types", stats), stats


def convert(spec: Any, array: Any, **options: Any) -> tuple[Any, list[Any]]:
    """The converted column's type and values (an Arrow batch of one column)."""
    out = run(convert_types({"v": spec}, **options), pa.table({"v": array}))
    return out.schema.field("v").type, out.column("v").to_pylist()


def records_values(spec: Any, values: list[Any], **options: Any) -> list[Any]:
    out = run(convert_types({"v": spec}, **options), [{"v": v} for v in copy.deepcopy(values)])
    return [record["v"] for record in out]


@pytest.mark.parametrize(
    ("spec", "array", "arrow_type", "expected"),
    [
        (int, pa.array(["1", " 2 ", "+3", "-0", "007", None]), pa.int64(), [1, 2, 3, 0, 7, None]),
        (int, pa.array(["1_000", "\u00a05"]), pa.int64(), [1000, 5]),  # Python's forms too
        (int, pa.array([1.0, -2.0]), pa.int64(), [1, -2]),
        (int, pa.array([True, False]), pa.int64(), [1, 0]),
        (int, pa.array([Decimal("4.00")]), pa.int64(), [4]),
        ("int16", pa.array(["-32768", "32767"]), pa.int16(), [-32768, 32767]),
        ("uint64", pa.array(["18446744073709551615"]), pa.uint64(), [2**64 - 1]),
        (float, pa.array(["1.5", "1e3", " -inf ", ".5", "+2"]), pa.float64(), None),
        (float, pa.array([1, 2**62 + 1]), pa.float64(), [1.0, float(2**62 + 1)]),
        (float, pa.array([Decimal("0.1")]), pa.float64(), [0.1]),
        (str, pa.array([1, -2]), pa.string(), ["1", "-2"]),
        (str, pa.array([True, False]), pa.string(), ["True", "False"]),
        (str, pa.array([1.5, 2.0, 1e16]), pa.string(), ["1.5", "2.0", "1e+16"]),
        (str, pa.array([Decimal("1.50")]), pa.string(), ["1.50"]),
        (str, pa.array([date(2024, 5, 1)]), pa.string(), ["2024-05-01"]),
        (str, pa.array([datetime(2024, 5, 1, 12)]), pa.string(), ["2024-05-01T12:00:00"]),
        (str, pa.array([b"caf\xc3\xa9"]), pa.string(), ["café"]),
        (bool, pa.array(["yes", "NO", " t ", "On", "0", "\u00a0y"]), pa.bool_(), None),
        (bool, pa.array([1, 0]), pa.bool_(), [True, False]),
        (bool, pa.array([1.0, 0.0]), pa.bool_(), [True, False]),
        ("decimal", pa.array(["9.90", "1", "-.5"]), pa.decimal128(38, 2), None),
        ("decimal", pa.array(["1e3"]), pa.decimal128(38, 0), [Decimal(1000)]),
        ("decimal", pa.array([1.5, 0.1]), pa.decimal128(38, 1), None),
        ("decimal", pa.array([7]), pa.decimal128(38, 0), [Decimal(7)]),
        ("decimal", pa.array(["1" * 40]), pa.decimal256(76, 0), [Decimal("1" * 40)]),
        (
            "date",
            pa.array(["2024-05-01", "2024-05-01T23:30", "2024-05-01T01:00+02:00"]),
            None,
            None,
        ),
        ("date", pa.array(["20240501", "2024-W18-3"]), pa.date32(), None),  # Python's ISO forms
        ("date", pa.array([datetime(2024, 5, 1, 23)], pa.timestamp("us")), pa.date32(), None),
        ("datetime", pa.array(["2024-05-01T12:00:00", "2024-05-01 12:00:00.5"]), None, None),
        ("datetime", pa.array(["2024-05-01T12:00Z", "2024-05-01T12:00:00+02:00"]), None, None),
        ("datetime", pa.array([date(2024, 5, 1)]), pa.timestamp("us"), None),
        ("uuid", pa.array(["12345678-1234-5678-1234-567812345678"]), pa.uuid(), None),
        ("uuid", pa.array(["{12345678-1234-5678-1234-567812345678}"]), pa.uuid(), None),
        ("uuid", pa.array([UUID(int=5).bytes], pa.binary(16)), pa.uuid(), [UUID(int=5)]),
    ],
)
def test_values_and_types(spec: Any, array: Any, arrow_type: Any, expected: Any) -> None:
    kind, values = convert(spec, array)
    if arrow_type is not None:
        assert kind == arrow_type
    if expected is None:  # the records path's values
        expected = records_values(spec, array.to_pylist())
    assert values == expected


def test_kept_columns_are_not_touched() -> None:
    table = pa.table({"a": [1, 2], "b": ["x", "y"], "c": [1.5, None]})
    out = run(convert_types({"a": int, "b": str, "c": float, "missing": int}), table)
    assert out.equals(table)
    assert out.column("a").chunks[0] is not None


def test_other_columns_and_their_order_are_kept() -> None:
    table = pa.table({"a": ["1"], "b": ["x"], "c": ["2.5"]})
    out = run(convert_types({"c": float, "a": int}), table)
    assert out.column_names == ["a", "b", "c"]
    assert out.to_pylist() == [{"a": 1, "b": "x", "c": 2.5}]


def test_record_batch_and_chunked_and_dictionary_columns() -> None:
    stage = convert_types({"v": int})
    batch = pa.record_batch({"v": ["1", "2"]})
    assert run(stage, batch).to_pylist() == [{"v": 1}, {"v": 2}]
    chunked = pa.Table.from_batches([batch, pa.record_batch({"v": ["3"]})])
    assert run(stage, chunked).column("v").to_pylist() == [1, 2, 3]
    encoded = pa.table({"v": pa.array(["4", "4", "5"]).dictionary_encode()})
    assert run(stage, encoded).column("v").to_pylist() == [4, 4, 5]
    assert run(stage, pa.table({"v": pa.array(["6"], pa.large_string())})).num_rows == 1


def test_an_empty_table() -> None:
    out = run(convert_types({"v": int}), pa.table({"v": pa.array([], pa.string())}))
    assert out.num_rows == 0


def test_nulls_stay_null_and_empty_strings() -> None:
    assert convert(int, pa.array([None, "1"]))[1] == [None, 1]
    assert convert(int, pa.nulls(2))[1] == [None, None]
    assert convert(int, pa.array(["", " \u3000", "1"]), empty_as_none=True)[1] == [None, None, 1]
    # for str columns only "" is empty
    assert convert(str, pa.array(["", " "]), empty_as_none=True)[1] == [None, " "]
    spec = ColumnType(type="int", empty_as_none=True)
    assert convert(spec, pa.array(["", "2"]))[1] == [None, 2]


def test_an_empty_string_without_empty_as_none_is_an_error() -> None:
    with pytest.raises(TypeConversionError) as info:
        run(convert_types({"v": int}), pa.table({"v": ["1", ""]}))
    assert str(info.value) == "column 'v', record 1: cannot convert '': expected an integer"


@pytest.mark.parametrize("value", [None, ""])
def test_not_nullable(value: Any) -> None:
    stage = convert_types({"v": ColumnType(type="int", nullable=False)}, empty_as_none=True)
    with pytest.raises(TypeConversionError) as info:
        run(stage, pa.table({"v": pa.array(["1", value], pa.string())}))
    assert str(info.value) == (
        f"column 'v', record 1: cannot convert {value!r}: expected an integer; "
        f"the column is not nullable"
    )
    # with strict_mode=False too, as on records
    loose = convert_types(
        {"v": ColumnType(type="int", nullable=False)}, empty_as_none=True, strict_mode=False
    )
    with pytest.raises(TypeConversionError):
        run(loose, pa.table({"v": pa.array([value], pa.string())}))


@pytest.mark.parametrize(
    ("spec", "values", "row", "message"),
    [
        (int, ["1", "2", "x"], 2, "cannot convert 'x': expected an integer"),
        (int, ["1", "0x1"], 1, "cannot convert '0x1': expected an integer"),
        (int, ["99999999999999999999"], 0, "expected an integer: out of range for int64"),
        ("int8", ["1", "200"], 1, "cannot convert '200': expected an integer in [-128, 127]"),
        (float, ["1", "one"], 1, "cannot convert 'one': expected a float"),
        (bool, ["yes", "maybe"], 1, "expected a boolean (true/false, yes/no, y/n, t/f, on/off"),
        ("decimal", ["1", "nan"], 1, "cannot convert 'nan': expected a finite decimal number"),
        ("date", ["2024-02-29", "2024-02-30"], 1, "cannot convert '2024-02-30': expected an ISO"),
        ("datetime", ["2024-05-01T24:00"], 0, "expected an ISO 8601 datetime"),
        ("uuid", ["x"], 0, "cannot convert 'x': expected a UUID"),
        ("json", ["{}", "{"], 1, "cannot convert '{': expected JSON text: "),
    ],
)
def test_errors_name_column_row_and_value(spec: Any, values: list[Any], row: int, message: str):
    stage = convert_types({"v": spec})
    with pytest.raises(TypeConversionError) as info:
        run(stage, pa.table({"v": values}))
    error = info.value
    assert str(error).startswith(f"column 'v', record {row}: ")
    assert message in str(error)
    assert (error.column, error.position, error.value) == ("v", row, values[row])
    if "out of range for int64" in message:
        return  # records have no bound
    # the same error as on records
    with pytest.raises(TypeConversionError) as on_records:
        run(convert_types({"v": spec}), [{"v": v} for v in values])
    assert str(on_records.value) == str(error)


def test_the_first_bad_row_is_found_in_a_large_column() -> None:
    values = [str(i) for i in range(100_000)]
    values[76_543] = "2" * 30  # passes the screen, fails the cast: found by bisection
    values[98_765] = "bad"
    with pytest.raises(TypeConversionError) as info:
        run(convert_types({"v": "int64"}), pa.table({"v": values}))
    assert info.value.position == 76_543


def test_the_first_failing_column_of_a_row_is_reported() -> None:
    table = pa.table({"a": ["1", "x"], "b": ["y", "2"]})
    with pytest.raises(TypeConversionError) as info:
        run(convert_types({"b": int, "a": int}), table)
    assert str(info.value) == "column 'b', record 0: cannot convert 'y': expected an integer"


def test_positions_count_across_the_batches_of_a_run() -> None:
    stage = convert_types({"v": int}, error_handling="skip")
    ctx = RunContext()

    async def main() -> list[Any]:
        async with stage.open(ctx) as run_:
            first = await run_.transform(pa.table({"v": ["1", "2"]}), ctx)
            second = await run_.transform([{"v": "3"}], ctx)
            try:
                await run_.transform(pa.table({"v": ["x"]}), ctx)
            except TypeConversionError as exc:
                return [first, second, exc]
        return [first, second]

    first, second, *_ = anyio.run(main)
    assert first.num_rows == 2
    assert second == [{"v": 3}]
    strict = convert_types({"v": int})

    async def failing() -> TypeConversionError:
        async with strict.open(ctx) as run_:
            await run_.transform(pa.table({"v": ["1", "2"]}), ctx)
            try:
                await run_.transform(pa.table({"v": ["3", "x"]}), ctx)
            except TypeConversionError as exc:
                return exc
        raise AssertionError("no error")

    assert anyio.run(failing).position == 3


def test_skip_drops_the_bad_rows(caplog: pytest.LogCaptureFixture) -> None:
    table = pa.table({"id": ["1", "x", "3", "y"], "name": ["a", "b", "c", "d"]})
    ctx, stats = stage_context()
    with caplog.at_level(logging.WARNING):
        out = run(convert_types({"id": int}, error_handling="skip"), table, ctx)
    assert out.to_pylist() == [{"id": 1, "name": "a"}, {"id": 3, "name": "c"}]
    assert stats.metrics == {"records_skipped": 2}
    assert "column 'id', record 1: cannot convert 'x'" in caplog.text


def test_dead_letters_are_records_in_the_usual_shape() -> None:
    letters: list[Any] = []
    table = pa.table({"id": ["1", "x"], "at": ["2024-05-01", "2024-05-02"]})
    stage = convert_types(
        {"at": "date", "id": int}, error_handling="dead_letter", dead_letter_sink=letters.extend
    )
    ctx, stats = stage_context("orders")
    out = run(stage, table, ctx)
    assert out.to_pylist() == [{"id": 1, "at": date(2024, 5, 1)}]
    assert letters == [
        {
            "record": {"id": "x", "at": "2024-05-02"},  # the row as the stage received it
            "error": "column 'id', record 1: cannot convert 'x': expected an integer",
            "error_type": "TypeConversionError",
            "stage": "convert_types",
            "pipeline": "orders",
            "run_id": ctx.run_id,
            "position": 1,
        }
    ]
    assert stats.metrics == {"dead_letters": 1}


def test_non_strict_mode_nulls_bad_values_and_counts_them() -> None:
    ctx, stats = stage_context()
    stage = convert_types({"a": int, "b": float}, strict_mode=False)
    table = pa.table({"a": ["1", "x", "y"], "b": ["1.5", "z", "2"]})
    out = run(stage, table, ctx)
    assert out.to_pylist() == [{"a": 1, "b": 1.5}, {"a": None, "b": None}, {"a": None, "b": 2.0}]
    assert stats.metrics == {"conversion_failures": 3}


def test_datetimes_with_a_time_zone() -> None:
    spec = ColumnType(type="datetime", timezone="Europe/Berlin")
    values = [
        "2024-05-01T12:00:00",  # naive: taken to be in Berlin
        "2024-05-01T12:00:00Z",  # aware: converted
        "2024-10-27T02:30:00",  # ambiguous: the first occurrence, as replace(tzinfo=) gives
        "2024-03-31T02:30:00",  # in the gap: the offset before it, as replace(tzinfo=) gives
    ]
    kind, got = convert(spec, pa.array(values))
    assert kind == pa.timestamp("us", "Europe/Berlin")
    expected = records_values(spec, values)
    # the same instants (Arrow holds instants; Python keeps the wall time of the gap)
    assert [v.astimezone(UTC) for v in got] == [v.astimezone(UTC) for v in expected]
    assert got[0] == datetime(2024, 5, 1, 12, tzinfo=BERLIN)
    assert got[2].utcoffset() == timedelta(hours=2)
    # timestamps in, naive and aware
    naive = pa.array([datetime(2024, 5, 1, 12)], pa.timestamp("ms"))
    assert convert(spec, naive)[1] == [datetime(2024, 5, 1, 12, tzinfo=BERLIN)]
    aware = pa.array([datetime(2024, 5, 1, 10, tzinfo=UTC)], pa.timestamp("us", "UTC"))
    assert convert(spec, aware)[1] == [datetime(2024, 5, 1, 12, tzinfo=BERLIN)]


def test_naive_and_aware_values_in_one_column_need_a_time_zone() -> None:
    values = ["2024-05-01T12:00:00", "2024-05-01T12:00:00Z"]
    with pytest.raises(TypeConversionError) as info:
        run(convert_types({"v": datetime}), pa.table({"v": values}))
    assert str(info.value) == (
        "column 'v', record 1: cannot convert '2024-05-01T12:00:00Z': expected an ISO 8601 "
        "datetime: an aware datetime among naive ones (give timezone= to mix them)"
    )
    kind, got = convert(datetime, pa.array(values[::-1]), error_handling="skip")
    assert (kind, got) == (pa.timestamp("us", "UTC"), [datetime(2024, 5, 1, 12, tzinfo=UTC)])


def test_offsets_keep_their_instant() -> None:
    kind, got = convert(datetime, pa.array(["2024-05-01T12:00:00+02:00", "2024-05-01T12:00-0130"]))
    assert kind == pa.timestamp("us", "UTC")
    assert got == [
        datetime(2024, 5, 1, 12, tzinfo=timezone(timedelta(hours=2))),
        datetime(2024, 5, 1, 12, tzinfo=timezone(-timedelta(hours=1, minutes=30))),
    ]


@pytest.mark.parametrize("fmt", ["unix", "unix_ms"])
def test_unix_timestamps_round_as_timedelta_does(fmt: str) -> None:
    spec = ColumnType(type="datetime", format=fmt)
    floats = [1714564800.5, 0.0000015, -1.5e-6, 0.0000025, 1714564800.123456789, -0.5e-6, 1.5]
    for array in (
        pa.array(floats),
        pa.array([1714564800, -1, 0]),
        pa.array(["1714564800.25", " 2.5 ", "1e3"]),
        pa.array([Decimal("1.0000005")]),
    ):
        kind, got = convert(spec, array)
        assert kind == pa.timestamp("us", "UTC")
        assert got == records_values(spec, array.to_pylist())
    with pytest.raises(TypeConversionError, match="out of range"):
        run(convert_types({"v": spec}), pa.table({"v": [1e20]}))
    with pytest.raises(TypeConversionError, match="record 0: cannot convert True"):
        run(convert_types({"v": spec}), pa.table({"v": [True]}))


@pytest.mark.parametrize(
    ("fmt", "text", "expected"),
    [
        ("%d/%m/%Y", " 1/5/2024 ", date(2024, 5, 1)),
        ("%d/%m/%Y", "31/02/2024", None),  # Arrow's strptime would roll it over to 2 March
        ("%d/%m/%Y", "29/02/2023", None),
        ("%d/%m/%Y", "01/05/24", None),  # %Y takes four digits
        ("%d/%m/%y", "01/05/24", date(2024, 5, 1)),
        ("%d/%m/%y", "01/05/69", date(1969, 5, 1)),
        ("%d %b %Y", "1 MAY 2024", date(2024, 5, 1)),
        ("%d %B %Y", "1 may 2024", date(2024, 5, 1)),
        ("%Y-%m-%d %H:%M:%S", "2024-05-01 12:00:60", None),  # no leap seconds
        ("%Y-%m-%d %H:%M:%S.%f", "2024-05-01 12:00:00.5", date(2024, 5, 1)),  # by value
        ("%Y%m%d", "2024051", date(2024, 5, 1)),
    ],
)
def test_formats_parse_as_python_strptime(fmt: str, text: str, expected: date | None) -> None:
    for kind in ("date", "datetime"):
        spec = ColumnType(type=kind, format=fmt)
        stage = convert_types({"v": spec}, error_handling="skip")
        got = run(stage, pa.table({"v": [text]})).column("v").to_pylist()
        assert got == records_values(spec, [text], error_handling="skip")
        if expected is None:
            assert got == []
        else:
            assert got[0] == expected if kind == "date" else got[0].date() == expected


def test_json_keeps_the_checked_text() -> None:
    kind, got = convert("json", pa.array(['{"a": 1}', "[1, 2]", None]))
    assert kind == pa.json_()
    assert got == ['{"a": 1}', "[1, 2]", None]
    nested = pa.array([{"a": 1}])
    assert convert("json", nested) == (nested.type, [{"a": 1}])


def test_no_row_is_converted_in_python_on_the_plain_path(monkeypatch: pytest.MonkeyPatch) -> None:
    from ductwork.transforms.converters import ColumnConverter

    def refuse(self: Any, value: Any) -> Any:
        raise AssertionError(f"converted {value!r} in Python")

    monkeypatch.setattr(ColumnConverter, "convert", refuse)
    n = 1000
    table = pa.table(
        {
            "i": [str(i) for i in range(n)],
            "f": [f"{i / 7:.3f}" for i in range(n)],
            "b": ["true", "No"] * (n // 2),
            "d": [f"2024-05-{1 + i % 28:02d}" for i in range(n)],
            "t": [f"2024-05-01T{i % 24:02d}:00:00+02:00" for i in range(n)],
            "m": [f"{i}.{i % 100:02d}" for i in range(n)],
            "u": [str(UUID(int=i)) for i in range(n)],
            "s": list(range(n)),
        }
    )
    stage = convert_types(
        {
            "i": int,
            "f": float,
            "b": bool,
            "d": date,
            "t": datetime,
            "m": Decimal,
            "u": UUID,
            "s": str,
        }
    )
    out = run(stage, table)
    assert out.num_rows == n
    assert pc.sum(out.column("i")).as_py() == n * (n - 1) // 2

"""Property test: convert_types gives the same values, and the same errors, on both kinds of batch.

For random columns (valid values in the forms the records path accepts, padded, signed, and junk
among them), the records path and the Arrow path must keep the same rows with equal values and
send the same rows to the dead-letter sink with the same error text. The known differences of
Arrow's types are kept out of the inputs: integers beyond int64, decimals beyond 76 digits, naive
and aware datetimes in one batch, and JSON, whose values Arrow keeps as their (checked) text.
"""

from __future__ import annotations

import copy
import math
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import anyio
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from ductwork import ColumnType, RunContext, convert_types

SETTINGS = settings(max_examples=300, deadline=None)

JUNK = st.text(alphabet="0123456789+-._eE:T Zxnaif\u00a0", max_size=8)
PADDING = st.sampled_from(["", " ", "\t", "\u00a0", "\u3000"])


def padded(strategy: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.tuples(PADDING, strategy, PADDING).map("".join)


def texts(*valid: st.SearchStrategy[str]) -> st.SearchStrategy[str | None]:
    return st.one_of(*(padded(v) for v in valid), *valid, JUNK, st.just(""), st.none())


INT64 = st.integers(-(2**63), 2**63 - 1)
DECIMALS = st.decimals(
    min_value=Decimal(-(10**20)), max_value=Decimal(10**20), allow_nan=False, places=8
)
BOOL_WORDS = st.sampled_from(["true", "False", "YES", "n", "t", "On", "off", "1", "0", "maybe"])
OFFSETS = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
NAIVE = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30))
SEPARATORS = st.sampled_from(["T", " "])
SMALL_FLOATS = st.floats(-1e12, 1e12).filter(lambda x: x == 0 or abs(x) > 1e-9)


def iso(moment: datetime, sep: str, timespec: str) -> str:
    return moment.isoformat(sep=sep, timespec=timespec)


TIMESPECS = st.sampled_from(["hours", "minutes", "seconds", "milliseconds", "microseconds"])
NAIVE_TEXT = st.builds(iso, NAIVE, SEPARATORS, TIMESPECS)
AWARE_TEXT = st.builds(
    lambda m, z, sep, spec: iso(m.replace(tzinfo=z), sep, spec),
    NAIVE,
    OFFSETS,
    SEPARATORS,
    TIMESPECS,
) | st.builds(lambda m: m.isoformat() + "Z", NAIVE)

# (target, strategy of one column's values, the Arrow type to build them as or None to infer)
CASES: list[tuple[Any, st.SearchStrategy[Any], Any]] = [
    (int, texts(INT64.map(str), st.sampled_from(["+7", "1_000", "0x1f", "1.0"])), pa.string()),
    ("int16", texts(st.integers(-40000, 40000).map(str)), pa.string()),
    ("uint8", texts(st.integers(-5, 300).map(str)), pa.string()),
    (int, st.one_of(st.floats(-1e18, 1e18), st.none()), pa.float64()),
    ("int32", st.one_of(INT64, st.none()), pa.int64()),
    (float, texts(st.floats().map(repr), st.sampled_from(["1e400", "-nan", ".5", "5."])), None),
    (float, st.one_of(INT64, st.none()), pa.int64()),
    (float, st.one_of(DECIMALS, st.none()), pa.decimal128(38, 8)),
    (str, st.one_of(INT64, st.none()), pa.int64()),
    (str, st.one_of(st.booleans(), st.none()), pa.bool_()),
    (str, st.one_of(st.floats(), st.none()), pa.float64()),
    (str, st.one_of(DECIMALS, st.none()), pa.decimal128(38, 8)),
    (str, st.one_of(st.dates(), st.none()), pa.date32()),
    (str, st.one_of(NAIVE, st.none()), pa.timestamp("us")),
    (bool, texts(BOOL_WORDS), pa.string()),
    (bool, st.one_of(st.integers(-2, 2), st.none()), pa.int64()),
    (bool, st.one_of(st.sampled_from([0.0, 1.0, 0.5, math.nan]), st.none()), pa.float64()),
    ("decimal", texts(DECIMALS.map(str), st.sampled_from(["1e3", "1_0", "NaN", "-.5"])), None),
    ("decimal", st.one_of(SMALL_FLOATS, st.none()), pa.float64()),
    ("decimal", st.one_of(INT64, st.none()), pa.int64()),
    ("date", texts(st.dates().map(date.isoformat), NAIVE_TEXT, AWARE_TEXT), pa.string()),
    ("date", st.one_of(NAIVE, st.none()), pa.timestamp("us")),
    ("datetime", texts(NAIVE_TEXT, st.dates().map(date.isoformat)), pa.string()),
    ("datetime", texts(AWARE_TEXT), pa.string()),
    (ColumnType(type="datetime", timezone="UTC"), texts(NAIVE_TEXT, AWARE_TEXT), pa.string()),
    (ColumnType(type="datetime", format="unix"), st.one_of(SMALL_FLOATS, st.none()), None),
    (ColumnType(type="datetime", format="unix_ms"), st.one_of(INT64, st.none()), pa.int64()),
    (ColumnType(type="datetime", format="unix"), texts(SMALL_FLOATS.map(repr)), pa.string()),
    (
        ColumnType(type="date", format="%d/%m/%Y"),
        texts(st.dates().map(lambda d: f"{d.day}/{d.month:02d}/{d.year:04d}"), JUNK),
        pa.string(),
    ),
    ("uuid", texts(st.uuids().map(str), st.uuids().map(lambda u: u.hex.upper())), pa.string()),
]


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b and type(a) is type(b))


def convert_both(spec: Any, values: list[Any], arrow_type: Any, **options: Any) -> Any:
    outcomes = []
    for kind in ("records", "arrow"):
        letters: list[Any] = []
        stage = convert_types(
            {"v": spec},
            error_handling="dead_letter",
            dead_letter_sink=letters.extend,
            **options,
        )
        if kind == "records":
            out = anyio.run(
                stage.transform, [{"v": v} for v in copy.deepcopy(values)], RunContext()
            )
            kept = [record["v"] for record in out]
        else:
            table = pa.table({"v": pa.array(values, type=arrow_type)})
            kept = anyio.run(stage.transform, table, RunContext()).column("v").to_pylist()
        outcomes.append((kept, [(x["position"], x["error"], repr(x["record"])) for x in letters]))
    return outcomes


@SETTINGS
@given(data=st.data(), which=st.sampled_from(range(len(CASES))), empty=st.booleans())
def test_both_kinds_convert_alike(data: st.DataObject, which: int, empty: bool) -> None:
    spec, strategy, arrow_type = CASES[which]
    values = data.draw(st.lists(strategy, min_size=1, max_size=8))
    if arrow_type is None:
        arrow_type = pa.array([v for v in values if v is not None] or [""]).type
    (records, records_letters), (arrow, arrow_letters) = convert_both(
        spec, values, arrow_type, empty_as_none=empty
    )
    assert arrow_letters == records_letters
    assert len(arrow) == len(records)
    for a, r in zip(arrow, records, strict=True):
        assert same(a, r), (a, r)

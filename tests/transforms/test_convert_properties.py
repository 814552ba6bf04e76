"""Property tests of convert_types: idempotence and agreement of the fast and per-value paths."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, get_args
from uuid import UUID

import anyio
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from ductwork import RunContext, convert_types
from ductwork.transforms.column_type import TypeName

SETTINGS = settings(max_examples=150, deadline=None)


def run_convert(spec: Any, values: list[Any], **options: Any) -> list[Any]:
    stage = convert_types({"v": spec}, **options)
    out = anyio.run(stage.transform, [{"v": v} for v in values], RunContext())
    assert out is not None
    return [record["v"] for record in out]


offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
datetimes = st.datetimes(timezones=st.none() | st.just(UTC) | offsets)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)

# (type, strategy of typed values, how such a value is written as text)
TYPED: list[tuple[str, st.SearchStrategy[Any], Any]] = [
    ("int", st.integers(), str),
    ("int32", st.integers(-(2**31), 2**31 - 1), str),
    ("float", st.floats(allow_nan=False), repr),
    ("str", st.text(), str),
    ("bool", st.booleans(), None),  # written as one of several words, drawn in the test
    ("decimal", st.decimals(allow_nan=False, allow_infinity=False), str),
    ("date", st.dates(), date.isoformat),
    ("datetime", datetimes, datetime.isoformat),
    ("uuid", st.uuids(), str),
    ("json", st.dictionaries(st.text(max_size=5), json_values, max_size=4), orjson.dumps),
]


@SETTINGS
@given(data=st.data(), which=st.sampled_from(range(len(TYPED))), with_none=st.booleans())
def test_conversion_is_idempotent(data: st.DataObject, which: int, with_none: bool) -> None:
    kind, strategy, render = TYPED[which]
    values = data.draw(st.lists(strategy, min_size=1, max_size=6))
    if kind == "bool":
        words = {True: ["yes", "TRUE", "1", "On", " y "], False: ["no", "0", "False", "off"]}
        texts = [data.draw(st.sampled_from(words[v])) for v in values]
    else:
        texts = [render(v) for v in values]
    if with_none:  # the per-value path
        texts.append(None)
    once = run_convert(kind, texts)
    twice = run_convert(kind, list(once))
    assert twice == once
    assert [type(v) for v in twice] == [type(v) for v in once]
    # the typed values themselves come back unchanged
    assert run_convert(kind, list(values)) == list(values)
    # and the text converts to the value it was written from
    assert once[: len(values)] == list(values)


@SETTINGS
@given(
    values=st.lists(
        st.datetimes(
            min_value=datetime(1900, 1, 1),
            max_value=datetime(2200, 1, 1),
            timezones=st.none() | st.just(UTC) | offsets,
        ),
        min_size=1,
        max_size=5,
    )
)
def test_time_zone_conversion_is_idempotent(values: list[datetime]) -> None:
    spec = {"type": "datetime", "timezone": "America/New_York"}
    once = run_convert(spec, [v.isoformat() for v in values])
    assert all(v.tzinfo is not None for v in once)
    assert run_convert(spec, list(once)) == once
    for original, converted in zip(values, once, strict=True):
        if original.tzinfo is not None:  # the same instant (compared in UTC: PEP 495)
            assert converted.astimezone(UTC) == original.astimezone(UTC)


texts = st.one_of(
    st.text(max_size=12),
    st.from_regex(r"\s?[+-]?\d{1,25}(\.\d{0,3})?([eE][+-]?\d{1,3})?\s?", fullmatch=True),
    st.sampled_from(["", " ", "1_000", "nan", "inf", "-0", "TRUE", "tRuE", "0x1f", "1e999"]),
    st.uuids().map(str),
    st.dates().map(date.isoformat),
    datetimes.map(datetime.isoformat),
)
# every target type; int8 and uint64 stand for the other bounded integers (one converter serves all)
KINDS = [
    kind
    for kind in get_args(TypeName)
    if kind not in {"int16", "int32", "int64", "uint8", "uint16", "uint32"}
]


@SETTINGS
@given(kind=st.sampled_from(KINDS), values=st.lists(texts, min_size=1, max_size=8))
def test_fast_path_agrees_with_per_value_path(kind: str, values: list[str]) -> None:
    batch = run_convert(kind, values, strict_mode=False)
    one_by_one = [run_convert(kind, [value, None], strict_mode=False)[0] for value in values]
    for a, b in zip(batch, one_by_one, strict=True):
        assert a == b or (a != a and b != b)  # NaN is not equal to itself
        assert type(a) is type(b)


@SETTINGS
@given(values=st.lists(st.integers() | st.floats() | st.decimals() | st.booleans(), max_size=8))
def test_numbers_to_int_never_truncate(values: list[Any]) -> None:
    out = run_convert("int", values, strict_mode=False)
    for value, converted in zip(values, out, strict=True):
        if converted is not None:
            assert converted == value


def test_uuid_type_is_kept() -> None:
    value = UUID(int=5)
    assert run_convert("uuid", [value])[0] is value
    assert run_convert(Decimal, [Decimal("1.50")]) == [Decimal("1.50")]

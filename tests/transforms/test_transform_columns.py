"""transform_columns: rename, computed columns, defaults, select and drop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ductwork import (
    Batch,
    ConfigError,
    Pipeline,
    RunContext,
    RunResult,
    TransformError,
    transform_columns,
)


async def apply(stage: Any, batch: Batch) -> Batch:
    out = await stage.transform(batch, RunContext())
    assert out is not None
    return out


async def run(stage: Any, batches: list[Batch]) -> tuple[Batch, RunResult]:
    rows: Batch = []

    async def extract(ctx: RunContext) -> AsyncIterator[Batch]:
        for batch in batches:
            yield batch

    result = await Pipeline(extract, [stage], rows.extend, name="p", logging=False).run()
    return rows, result


async def test_rename_keeps_column_order_and_leaves_input_alone() -> None:
    stage = transform_columns({"b": "beta", "c": "gamma"})
    record = {"a": 1, "b": 2, "c": 3, "d": 4}
    [out] = await apply(stage, [record])
    assert list(out.items()) == [("a", 1), ("beta", 2), ("gamma", 3), ("d", 4)]
    assert record == {"a": 1, "b": 2, "c": 3, "d": 4}


async def test_a_renamed_column_wins_over_an_existing_one() -> None:
    stage = transform_columns({"user_id": "id"})
    assert await apply(stage, [{"user_id": 1, "id": 99}, {"id": 5, "user_id": 2}]) == [
        {"id": 1},
        {"id": 2},
    ]
    sparse = transform_columns({"user_id": "id"}, missing_columns="warn")
    assert await apply(sparse, [{"id": 5}]) == [{"id": 5}]


async def test_swapping_names() -> None:
    stage = transform_columns({"a": "b", "b": "a"})
    assert await apply(stage, [{"a": 1, "b": 2}]) == [{"b": 1, "a": 2}]


async def test_computed_columns_see_input_names_and_defaults() -> None:
    stage = transform_columns(
        {"price": "unit_price"},
        {"total": lambda r: r["price"] * r["qty"], "qty": lambda r: r["qty"] + 0},
        defaults={"qty": 1},
    )
    out = await apply(stage, [{"price": 2.5, "qty": 4}, {"price": 3.0}])
    assert out == [
        {"unit_price": 2.5, "qty": 4, "total": 10.0},
        {"unit_price": 3.0, "qty": 1, "total": 3.0},
    ]


async def test_computed_column_replaces_in_place() -> None:
    stage = transform_columns(new_columns={"b": lambda r: r["b"] * 10})
    [out] = await apply(stage, [{"a": 1, "b": 2, "c": 3}])
    assert list(out.items()) == [("a", 1), ("b", 20), ("c", 3)]


async def test_select_orders_and_limits() -> None:
    stage = transform_columns(
        {"user_id": "id"},
        {"total": lambda r: r["price"] * r["qty"]},
        select=["total", "id", "country"],
        defaults={"country": "unknown"},
    )
    out = await apply(stage, [{"user_id": 1, "price": 2.0, "qty": 3, "x": 0, "country": "de"}])
    assert [list(r.items()) for r in out] == [[("total", 6.0), ("id", 1), ("country", "de")]]
    out = await apply(stage, [{"user_id": 2, "price": 1.0, "qty": 1}])
    assert out == [{"total": 1.0, "id": 2, "country": "unknown"}]


async def test_select_of_a_missing_column_fails_the_record() -> None:
    stage = transform_columns({"user_id": "id"}, select=["id", "name"])
    rows = [[{"user_id": 1, "name": "a"}], [{"user_id": 2, "name": "b"}, {"user_id": 3}]]
    with pytest.raises(TransformError) as info:
        await run(stage, rows)
    assert str(info.value) == (
        "[pipeline 'p', stage 'transform_columns'] "
        "record 2: selected column 'name' is missing; give it a default"
    )
    stage = transform_columns({"user_id": "id"}, select=["id"])
    with pytest.raises(TransformError, match="selected column 'id' \\(renamed from 'user_id'\\)"):
        await apply(stage, [{"id": 1}])


async def test_drop() -> None:
    stage = transform_columns(
        {"a": "alpha"}, {"c": lambda r: 0, "d": lambda r: 1}, drop=["alpha", "c", "x"]
    )
    assert await apply(stage, [{"a": 1, "b": 2, "c": 3}]) == [{"b": 2, "d": 1}]
    stage = transform_columns(drop=["secret"])
    assert await apply(stage, [{"id": 1, "secret": "s"}, {"id": 2}]) == [{"id": 1}, {"id": 2}]


async def test_defaults_fill_only_missing_columns() -> None:
    stage = transform_columns(defaults={"country": "unknown", "tags": ()})
    out = await apply(stage, [{"country": None}, {"id": 1}])
    assert out == [{"country": None, "tags": ()}, {"id": 1, "country": "unknown", "tags": ()}]


async def test_failing_computed_column_under_each_policy() -> None:
    new = {"ratio": lambda r: r["a"] / r["b"]}
    batches = [[{"a": 1, "b": 2}, {"a": 1, "b": 0}, {"a": 3}]]
    with pytest.raises(TransformError) as info:
        await run(transform_columns(new_columns=new), batches)
    assert str(info.value).endswith(
        "record 1: new column 'ratio': ZeroDivisionError: division by zero"
    )
    assert isinstance(info.value.__cause__, ZeroDivisionError)

    rows, result = await run(transform_columns(new_columns=new, error_handling="skip"), batches)
    assert rows == [{"a": 1, "b": 2, "ratio": 0.5}]
    assert result.stage("transform_columns").metrics == {"records_skipped": 2}

    letters: list[dict[str, Any]] = []
    stage = transform_columns(
        new_columns=new, error_handling="dead_letter", dead_letter_sink=letters.extend
    )
    rows, result = await run(stage, batches)
    assert [(d["position"], d["record"], d["error"]) for d in letters] == [
        (1, {"a": 1, "b": 0}, "record 1: new column 'ratio': ZeroDivisionError: division by zero"),
        (2, {"a": 3}, "record 2: new column 'ratio': KeyError: 'b'"),
    ]


async def test_column_names_are_only_ever_literals() -> None:
    odd = "a'b\"c\\n\n__import__('os')"
    stage = transform_columns({odd: "x"}, {"y" + odd: lambda r: r[odd]}, defaults={odd: 0})
    assert await apply(stage, [{odd: 5}, {}]) == [{"x": 5, "y" + odd: 5}, {"x": 0, "y" + odd: 0}]
    stage = transform_columns(select=[odd])
    assert await apply(stage, [{odd: 1, "b": 2}]) == [{odd: 1}]


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({}, "<root>"),
        ({"select": ["a"], "drop": ["b"]}, "<root>"),
        ({"column_mapping": {"a": "x", "b": "x"}}, "column_mapping"),
        ({"column_mapping": {"a": ""}}, "column_mapping.a"),
        ({"column_mapping": ["a"]}, "column_mapping"),
        ({"new_columns": {"a": 5}}, "new_columns"),
        ({"new_columns": {"a": lambda: 1}}, "new_columns"),
        ({"select": []}, "select"),
        ({"select": ["a", "a"]}, "select"),
        ({"select": "abc"}, "select"),
        ({"column_mapping": {"a": "b"}, "select": ["a"]}, "select"),
        ({"drop": ["a"], "error_handling": "dead_letter"}, "dead_letter_sink"),
    ],
)
def test_bad_configuration_names_the_field(options: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        transform_columns(**options)
    assert field in [name for name, _ in info.value.errors]


names = st.sampled_from(["a", "b", "c", "d", "e"])


@settings(max_examples=200, deadline=None)
@given(
    rename=st.dictionaries(names, names, max_size=3).filter(
        lambda m: len(set(m.values())) == len(m)
    ),
    computed=st.lists(names, max_size=2, unique=True),
    defaults=st.dictionaries(names, st.integers(), max_size=2),
    drop=st.lists(names, max_size=2, unique=True),
    select=st.none() | st.lists(names, min_size=1, max_size=3, unique=True),
    records=st.lists(st.dictionaries(names, st.integers(), max_size=5), min_size=1, max_size=4),
)
def test_compiled_mapping_matches_the_step_by_step_one(
    rename: dict[str, str],
    computed: list[str],
    defaults: dict[str, int],
    drop: list[str],
    select: list[str] | None,
    records: list[dict[str, int]],
) -> None:
    new_columns = {name: (lambda r: len(r)) for name in computed}
    try:
        stage = transform_columns(
            rename,
            new_columns,
            select=select,
            drop=None if select is not None else drop,
            defaults=defaults,
        )
    except ConfigError:
        return
    for record in records:
        try:
            expected = stage.row_checked(record)
        except Exception:
            with pytest.raises(Exception):  # noqa: B017, PT011 - the same record fails both ways
                stage.row(record)
            with pytest.raises(Exception):  # noqa: B017, PT011
                stage.rows([record], [])
            continue
        got = stage.row(record)
        assert list(got.items()) == list(expected.items())
        out: list[dict[str, Any]] = []
        stage.rows([record, record], out)
        assert [list(r.items()) for r in out] == [list(expected.items())] * 2


async def test_after_a_failure_the_batch_goes_on_and_nothing_is_computed_twice() -> None:
    calls: list[int] = []

    def inverse(record: dict[str, Any]) -> float:
        calls.append(record["n"])
        return 1 / record["n"]

    stage = transform_columns(new_columns={"inv": inverse}, error_handling="skip")
    batch = [{"n": n} for n in (1, 0, 2, 0, 0, 4)]
    out = await apply(stage, batch)
    assert out == [{"n": 1, "inv": 1.0}, {"n": 2, "inv": 0.5}, {"n": 4, "inv": 0.25}]
    # each failing record is evaluated once more to name the column; no other record is
    assert calls == [1, 0, 0, 2, 0, 0, 0, 0, 4]

"""Empty strings as missing values, and named columns that no record has."""

from __future__ import annotations

import logging
from typing import Any

import pyarrow as pa
import pytest

from ductwork import (
    PipelineError,
    RunContext,
    TransformError,
    TypeConversionError,
    convert_types,
    create_etl_pipeline,
    transform_columns,
)


async def test_an_empty_string_is_a_missing_value_for_non_string_targets() -> None:
    stage = convert_types({"arr_delay": float, "n": int, "carrier": str})
    batch = [
        {"arr_delay": "", "n": " ", "carrier": ""},
        {"arr_delay": "1.5", "n": "2", "carrier": "UA"},
    ]
    assert await stage.transform(batch, RunContext()) == [
        {"arr_delay": None, "n": None, "carrier": ""},
        {"arr_delay": 1.5, "n": 2, "carrier": "UA"},
    ]
    table = pa.table({"arr_delay": ["", "2"], "carrier": ["", "AA"]})
    out = await convert_types({"arr_delay": float, "carrier": str}).transform(table, RunContext())
    assert out.to_pylist() == [
        {"arr_delay": None, "carrier": ""},
        {"arr_delay": 2.0, "carrier": "AA"},
    ]


async def test_empty_as_none_true_and_false() -> None:
    every = convert_types({"carrier": str, "arr_delay": float}, empty_as_none=True)
    assert await every.transform([{"carrier": "", "arr_delay": ""}], RunContext()) == [
        {"carrier": None, "arr_delay": None}
    ]
    none = convert_types({"arr_delay": float}, empty_as_none=False)
    with pytest.raises(TypeConversionError, match="cannot convert ''"):
        await none.transform([{"arr_delay": ""}], RunContext())


def _pipeline(batches: list[Any], stage: Any, rows: list[Any]) -> Any:
    async def extract(ctx: RunContext) -> Any:
        for batch in batches:
            yield batch

    return create_etl_pipeline(extract, stage, rows.extend, "flights", logging=False)


async def test_a_misspelt_column_warns_at_the_first_batch_and_fails_the_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    batches = [[{"dep_time": "1", "arr_delay": "2"}], [{"dep_time": "3", "arr_delay": "4"}]]
    rows: list[Any] = []
    stage = convert_types({"dep_tme": float, "arr_delay": float})
    with caplog.at_level(logging.WARNING, logger="ductwork"), pytest.raises(PipelineError) as info:
        await _pipeline(batches, stage, rows).run()
    error = info.value
    assert isinstance(error, TransformError)
    assert error.stage == "convert_types"
    message = str(error)
    assert "'dep_tme' named in convert_types is in no record of the run" in message
    assert "the records have 'dep_time', 'arr_delay'" in message
    assert "did you mean 'dep_time' for 'dep_tme'?" in message
    warnings = [r.getMessage() for r in caplog.records if "dep_tme" in r.getMessage()]
    assert len(warnings) == 1  # once, at the first batch
    assert "in no record of the batch" in warnings[0]
    assert "batch starting at record 0" in warnings[0]


async def test_a_column_of_sparse_records_that_appears_later_is_no_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    batches = [[{"id": "1"}], [{"id": "2", "score": "0.5"}]]
    rows: list[Any] = []
    with caplog.at_level(logging.WARNING, logger="ductwork"):
        result = await _pipeline(batches, convert_types({"id": int, "score": float}), rows).run()
    assert result.succeeded
    assert rows == [{"id": 1}, {"id": 2, "score": 0.5}]
    assert sum("'score'" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.parametrize(("policy", "warned"), [("warn", 1), ("ignore", 0)])
async def test_warn_and_ignore(policy: str, warned: int, caplog: pytest.LogCaptureFixture) -> None:
    rows: list[Any] = []
    stage = convert_types({"dep_tme": float}, missing_columns=policy)
    with caplog.at_level(logging.WARNING, logger="ductwork"):
        result = await _pipeline([[{"dep_time": "1"}]], stage, rows).run()
    assert result.succeeded
    assert rows == [{"dep_time": "1"}]
    assert sum("dep_tme" in r.getMessage() for r in caplog.records) == warned


async def test_arrow_batches_and_transform_columns_are_checked_too() -> None:
    table = pa.table({"dep_time": ["1"]})
    with pytest.raises(TransformError, match=r"did you mean 'dep_time' for 'dep_tme'"):
        await convert_types({"dep_tme": float}).transform(table, RunContext())
    rename = transform_columns({"usr_id": "id"})
    with pytest.raises(TransformError, match=r"'usr_id' named in transform_columns.*'user_id'"):
        await rename.transform([{"user_id": 1}], RunContext())
    assert await rename.transform([{"usr_id": 1}], RunContext()) == [{"id": 1}]


async def test_a_run_without_records_says_nothing() -> None:
    rows: list[Any] = []
    result = await _pipeline([[]], convert_types({"dep_tme": float}), rows).run()
    assert result.succeeded

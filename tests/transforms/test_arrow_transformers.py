"""transform_columns, validate_records and lambda transformers on Arrow batches."""

from __future__ import annotations

from typing import Any

import anyio
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from pydantic import BaseModel, field_validator

from ductwork import (
    ConfigError,
    RecordValidationError,
    RunContext,
    TransformError,
    convert_types,
    create_lambda_transformer,
    transform_columns,
    validate_records,
)

TABLE = pa.table({"user_id": [1, 2], "price": [2.5, 3.0], "qty": [4, 0], "debug": [True, False]})


def run(stage: Any, batch: Any) -> Any:
    return anyio.run(stage.transform, batch, RunContext())


def test_every_transformer_declares_both_kinds() -> None:
    stages = [
        convert_types({"a": int}),
        transform_columns({"a": "b"}),
        validate_records(BaseModel),
        create_lambda_transformer(lambda r: r),
    ]
    for stage in stages:
        assert stage.batch_format == "any"

        async def opened(stage: Any = stage) -> Any:
            async with stage.open(RunContext()) as run_:
                return run_.batch_format

        assert anyio.run(opened) == "any"


# --------------------------------------------------------------------------- transform_columns


def test_columns_rename_select_drop_and_defaults_on_a_table() -> None:
    stage = transform_columns({"user_id": "id"}, defaults={"country": "unknown"}, drop=["debug"])
    out = run(stage, TABLE)
    assert out.column_names == ["id", "price", "qty", "country"]
    assert out.column("country").to_pylist() == ["unknown", "unknown"]
    assert out.to_pylist() == run(stage, TABLE.to_pylist())
    selected = run(transform_columns({"user_id": "id"}, select=["qty", "id"]), TABLE)
    assert selected.column_names == ["qty", "id"]
    # a column that is there keeps its nulls: defaults fill missing columns only
    nulls = pa.table({"country": pa.array([None, "fr"], pa.string())})
    kept = run(transform_columns(defaults={"country": "unknown"}), nulls)
    assert kept.column("country").to_pylist() == [None, "fr"]
    assert TABLE.column_names == ["user_id", "price", "qty", "debug"]  # input unchanged


def test_table_columns_are_functions_of_the_table() -> None:
    stage = transform_columns(
        table_columns={
            "total": lambda t: pc.multiply(t["price"], t["qty"]),  # an array
            "source": lambda t: "api",  # a value for every row
            "n": lambda t: pa.scalar(7, pa.int8()),
            "rank": lambda t: list(range(t.num_rows)),  # anything pyarrow.array takes
            "price": lambda t: pc.multiply(t["price"], 100),  # replaces a column
        },
        select=["user_id", "total", "source", "n", "rank", "price"],
    )
    out = run(stage, TABLE)
    assert out.to_pylist() == [
        {"user_id": 1, "total": 10.0, "source": "api", "n": 7, "rank": 0, "price": 250.0},
        {"user_id": 2, "total": 0.0, "source": "api", "n": 7, "rank": 1, "price": 300.0},
    ]
    assert out.schema.field("n").type == pa.int8()


def test_table_columns_see_the_defaults() -> None:
    stage = transform_columns(
        defaults={"rate": 2.0}, table_columns={"x": lambda t: pc.multiply(t["qty"], t["rate"])}
    )
    assert run(stage, TABLE).column("x").to_pylist() == [8.0, 0.0]


def test_table_columns_on_records_go_through_a_table() -> None:
    stage = transform_columns(
        {"user_id": "id"}, table_columns={"total": lambda t: pc.multiply(t["price"], t["qty"])}
    )
    out = run(stage, [{"user_id": 1, "price": 2.0, "qty": 3}])
    assert out == [{"id": 1, "price": 2.0, "qty": 3, "total": 6.0}]
    with pytest.raises(
        TransformError, match="records 0-1: table_columns need the batch as a table"
    ):
        run(stage, [{"user_id": 1, "price": 2.0, "qty": 3}, {"user_id": "x", "price": 1, "qty": 1}])


def test_a_polars_series_is_a_column() -> None:
    polars = pytest.importorskip("polars")
    stage = transform_columns(
        table_columns={"double": lambda t: polars.from_arrow(t)["qty"] * 2}, select=["double"]
    )
    assert run(stage, TABLE).to_pylist() == [{"double": 8}, {"double": 0}]


def test_per_record_columns_on_a_table() -> None:
    letters: list[Any] = []
    stage = transform_columns(
        {"user_id": "id"},
        {"unit": lambda r: r["price"] / r["qty"]},
        drop=["debug"],
        error_handling="dead_letter",
        dead_letter_sink=letters.extend,
    )
    out = run(stage, TABLE)
    assert out.to_pylist() == [{"id": 1, "price": 2.5, "qty": 4, "unit": 0.625}]
    assert [(x["position"], x["error"], x["record"]) for x in letters] == [
        (
            1,
            "record 1: new column 'unit': ZeroDivisionError: float division by zero",
            {"user_id": 2, "price": 3.0, "qty": 0, "debug": False},
        )
    ]
    with pytest.raises(TransformError, match="record 1: new column 'unit': ZeroDivisionError"):
        run(transform_columns(new_columns={"unit": lambda r: r["price"] / r["qty"]}), TABLE)


def test_a_failing_table_column_fails_the_batch() -> None:
    stage = transform_columns(table_columns={"x": lambda t: 1 / 0})
    with pytest.raises(TransformError) as info:
        run(stage, TABLE)
    assert str(info.value) == "records 0-1: new column 'x': ZeroDivisionError: division by zero"
    assert isinstance(info.value.__cause__, ZeroDivisionError)
    letters: list[Any] = []
    skipping = transform_columns(
        table_columns={"x": lambda t: 1 / 0},
        error_handling="dead_letter",
        dead_letter_sink=letters.extend,
    )
    assert run(skipping, TABLE).num_rows == 0
    assert [x["position"] for x in letters] == [0, 1]
    wrong = transform_columns(table_columns={"x": lambda t: [1]})
    with pytest.raises(TransformError, match="the function returned 1 values for a batch of 2"):
        run(wrong, TABLE)


def test_a_missing_selected_column_fails_every_row() -> None:
    stage = transform_columns({"user_id": "id"}, select=["id", "country"], error_handling="skip")
    assert run(stage, TABLE).num_rows == 0
    with pytest.raises(TransformError) as info:
        run(transform_columns(select=["country"]), TABLE)
    assert str(info.value) == "record 0: selected column 'country' is missing; give it a default"


def test_a_function_is_given_as_one_kind_or_the_other() -> None:
    with pytest.raises(ConfigError, match="'x' given in both new_columns and table_columns"):
        transform_columns(new_columns={"x": lambda r: 1}, table_columns={"x": lambda t: 1})
    with pytest.raises(ConfigError, match="expected a function of the table, got int"):
        transform_columns(table_columns={"x": 1})
    assert transform_columns(table_columns={"x": lambda t: 1}).table_computed


# --------------------------------------------------------------------------- validate_records


class Order(BaseModel):
    user_id: int
    price: float

    @field_validator("price")
    @classmethod
    def cents(cls, value: float) -> float:
        if value > 2.7:
            raise ValueError("too dear")
        return round(value * 100)


def test_validate_records_passes_on_a_table_of_the_schema() -> None:
    out = run(validate_records(Order, error_handling="skip"), TABLE)
    assert out.schema == TABLE.schema
    # the model's values where it has the column, the others as they were
    assert out.to_pylist() == [{"user_id": 1, "price": 250.0, "qty": 4, "debug": True}]
    batch = pa.record_batch({"user_id": pa.array(["7"]), "price": pa.array([1.0])})
    assert run(validate_records(Order), batch).to_pylist() == [{"user_id": "7", "price": 100.0}]


def test_validate_records_errors_on_a_table() -> None:
    with pytest.raises(RecordValidationError) as info:
        run(validate_records(Order), TABLE)
    assert str(info.value) == "record 1: field 'price': Value error, too dear (got 3.0)"
    letters: list[Any] = []
    stage = validate_records(Order, error_handling="dead_letter", dead_letter_sink=letters.extend)
    run(stage, TABLE)
    assert letters[0]["record"] == {"user_id": 2, "price": 3.0, "qty": 0, "debug": False}


def test_model_values_that_do_not_fit_the_schema() -> None:
    class Named(BaseModel):
        qty: str

        @field_validator("qty", mode="before")
        @classmethod
        def word(cls, value: int) -> str:
            return "none" if value == 0 else str(value)

    with pytest.raises(TransformError, match="column 'qty': the model's values do not fit"):
        run(validate_records(Named), TABLE)


# --------------------------------------------------------------------------- lambdas


def test_a_batch_lambda_gets_the_table_as_it_is() -> None:
    seen: list[Any] = []

    def double(table: pa.Table) -> pa.Table:
        seen.append(table)
        return table.set_column(2, "qty", pc.multiply(table["qty"], 2))

    out = run(create_lambda_transformer(double, per="batch"), TABLE)
    assert seen[0] is TABLE
    assert out.column("qty").to_pylist() == [8, 0]


def test_a_failing_batch_lambda_on_a_table() -> None:
    letters: list[Any] = []
    stage = create_lambda_transformer(
        lambda t: 1 / 0, per="batch", error_handling="dead_letter", dead_letter_sink=letters.extend
    )
    assert run(stage, TABLE) is None
    assert [x["record"]["user_id"] for x in letters] == [1, 2]
    assert letters[0]["error"] == "records 0-1: ZeroDivisionError: division by zero"


def test_a_record_lambda_gets_records_of_a_table() -> None:
    stage = create_lambda_transformer(
        lambda r: {**r, "total": r["price"] * r["qty"]} if r["qty"] else None
    )
    out = run(stage, TABLE)
    assert out == [{"user_id": 1, "price": 2.5, "qty": 4, "debug": True, "total": 10.0}]

    async def enrich(record: dict[str, Any]) -> dict[str, Any]:
        await anyio.sleep(0)
        return {"id": record["user_id"]}

    concurrent = create_lambda_transformer(enrich, concurrency=4)
    assert run(concurrent, TABLE) == [{"id": 1}, {"id": 2}]


async def test_a_table_passes_through_a_pipeline_of_ready_made_transformers() -> None:
    """The runner hands Arrow batches to these transformers as they are (no conversion)."""
    import pyarrow as pa

    from ductwork import create_etl_pipeline, loader

    seen: list[Any] = []

    async def extract() -> Any:
        yield pa.table({"a": ["1", "2", "x"]})

    stage = convert_types({"a": int}, error_handling="skip")
    pipeline = create_etl_pipeline(extract, stage, loader(seen.append, batch_format="any"))
    result = await pipeline.run()
    assert isinstance(seen[0], pa.Table)
    assert seen[0].column("a").to_pylist() == [1, 2]
    assert result.records_out == 2

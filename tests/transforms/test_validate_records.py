"""validate_records: pydantic validation per batch, errors naming fields, policies."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypedDict

from ductwork import (
    Batch,
    ConfigError,
    Pipeline,
    RecordValidationError,
    RunContext,
    RunResult,
    TransformError,
    validate_records,
)


class Address(BaseModel):
    city: str
    zip: str = Field(pattern=r"^\d{5}$")


class Order(BaseModel):
    id: int
    amount: float = 0.0
    day: date | None = None
    address: Address | None = None


async def run(stage: Any, batches: list[Batch]) -> tuple[Batch, RunResult]:
    rows: Batch = []

    async def extract(ctx: RunContext) -> AsyncIterator[Batch]:
        for batch in batches:
            yield batch

    result = await Pipeline(extract, [stage], rows.extend, name="p", logging=False).run()
    return rows, result


async def test_records_become_model_coerced_dicts() -> None:
    rows, result = await run(
        validate_records(Order),
        [[{"id": "7", "day": "2024-05-01"}, {"id": 8, "amount": "2.5", "extra": 1}]],
    )
    assert rows == [
        {"id": 7, "amount": 0.0, "day": date(2024, 5, 1), "address": None},
        {"id": 8, "amount": 2.5, "day": None, "address": None},
    ]
    assert result.stage("validate_records").records_out == 2


async def test_errors_name_the_field_and_the_record() -> None:
    batches = [[{"id": 1}], [{"id": 2}, {"id": "x", "amount": "lots"}]]
    with pytest.raises(RecordValidationError) as info:
        await run(validate_records(Order), batches)
    error = info.value
    assert isinstance(error, TransformError)
    assert error.position == 2
    assert error.retryable is False
    assert [field for field, _ in error.errors] == ["id", "amount"]
    assert str(error) == (
        "[pipeline 'p', stage 'validate_records'] record 2: "
        "field 'id': Input should be a valid integer, unable to parse string as an integer "
        "(got 'x'); field 'amount': Input should be a valid number, unable to parse string "
        "as a number (got 'lots')"
    )


async def test_nested_and_missing_fields() -> None:
    stage = validate_records(Order)
    with pytest.raises(RecordValidationError) as info:
        await stage.transform([{"id": 1, "address": {"city": "Ulm", "zip": "1"}}], RunContext())
    assert info.value.errors[0][0] == "address.zip"
    assert "(got '1')" in info.value.errors[0][1]
    with pytest.raises(RecordValidationError, match=r"^record 0: field 'id': Field required$"):
        await stage.transform([{}], RunContext())
    with pytest.raises(RecordValidationError, match=r"^record 0: Input should be a valid dict"):
        await stage.transform(["not a record"], RunContext())  # type: ignore[list-item]


async def test_skip_and_dead_letter_keep_the_valid_records_in_order() -> None:
    batch = [{"id": 1}, {"id": "x"}, {"id": 3}, {"amount": 1}, {"id": 5}]
    rows, result = await run(validate_records(Order, error_handling="skip"), [batch])
    assert [r["id"] for r in rows] == [1, 3, 5]
    assert result.stage("validate_records").metrics == {"records_skipped": 2}

    letters: list[dict[str, Any]] = []
    stage = validate_records(Order, error_handling="dead_letter", dead_letter_sink=letters.extend)
    rows, result = await run(stage, [batch])
    assert [r["id"] for r in rows] == [1, 3, 5]
    assert [(d["position"], d["record"], d["error_type"]) for d in letters] == [
        (1, {"id": "x"}, "RecordValidationError"),
        (3, {"amount": 1}, "RecordValidationError"),
    ]
    assert letters[1]["error"] == "record 3: field 'id': Field required"


async def test_strict_and_aliases() -> None:
    class Strict(BaseModel):
        model_config = ConfigDict(populate_by_name=True)
        user_id: int = Field(alias="userId")

    stage = validate_records(Strict, strict=True, by_alias=True)
    assert await stage.transform([{"userId": 5}], RunContext()) == [{"userId": 5}]
    with pytest.raises(RecordValidationError, match="field 'userId'"):
        await stage.transform([{"userId": "5"}], RunContext())
    lax = validate_records(Strict)
    assert await lax.transform([{"userId": "5"}], RunContext()) == [{"user_id": 5}]


async def test_dataclass_and_typed_dict_models() -> None:
    @dataclass
    class Point:
        x: int
        y: int = 0

    class Row(TypedDict):
        name: str
        size: int

    assert await validate_records(Point).transform([{"x": "1"}], RunContext()) == [{"x": 1, "y": 0}]
    out = await validate_records(Row).transform([{"name": "a", "size": "2"}], RunContext())
    assert out == [{"name": "a", "size": 2}]


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"model": 5}, "model"),
        ({"model": Order, "strict": "very"}, "strict"),
        ({"model": Order, "error_handling": "dead_letter"}, "dead_letter_sink"),
        ({"model": Order, "name": ""}, "name"),
    ],
)
def test_bad_configuration_names_the_field(options: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate_records(**options)
    assert field in [name for name, _ in info.value.errors]


def test_a_type_pydantic_cannot_validate_is_a_config_error() -> None:
    class Opaque:
        pass

    with pytest.raises(ConfigError, match=r"model: .*cannot validate records against Opaque"):
        validate_records(Opaque)

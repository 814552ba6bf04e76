"""Arrow tables as batches: counted, passed on untouched, converted once at a records stage."""

from __future__ import annotations

import logging
from typing import Any

import pyarrow as pa
import pytest

from ductwork import (
    ExtractError,
    create_el_pipeline,
    create_etl_pipeline,
    loader,
    to_arrow,
    to_records,
    transformer,
)


def _tables(count: int, rows: int) -> Any:
    async def extract() -> Any:
        for start in range(0, count * rows, rows):
            yield pa.table({"id": list(range(start, start + rows))})

    return extract


async def test_tables_flow_untouched_into_a_loader_taking_arrow() -> None:
    seen: list[Any] = []
    pipeline = create_el_pipeline(
        _tables(3, 100), loader(seen.append, batch_format="arrow"), name="t", logging=False
    )
    result = await pipeline.run()
    assert all(isinstance(batch, pa.Table) for batch in seen)
    assert sum(batch.num_rows for batch in seen) == 300
    assert (result.records_in, result.records_out) == (300, 300)
    extract = result.stages[0]
    assert (extract.batches_out, extract.records_out) == (3, 300)


async def test_a_records_stage_gets_records_converted_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[Any] = []

    def double(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        assert isinstance(batch, list)
        return [{"id": record["id"] * 2} for record in batch]

    caplog.set_level(logging.DEBUG, logger="ductwork")
    pipeline = create_etl_pipeline(_tables(2, 10), double, seen.append, name="mixed")
    await pipeline.run()
    assert [record["id"] for batch in seen for record in batch] == [i * 2 for i in range(20)]
    notes = [r.getMessage() for r in caplog.records if "converted at its input" in r.getMessage()]
    assert notes == ["mixed: double takes records: batches are converted at its input"]


async def test_an_arrow_transformer_gets_records_as_a_table() -> None:
    seen: list[Any] = []

    def add(table: pa.Table) -> pa.Table:
        assert isinstance(table, pa.Table)
        return table.append_column("twice", pa.compute.multiply(table["id"], 2))

    async def extract() -> Any:
        yield [{"id": 1}, {"id": 2}]

    stage = transformer(add, batch_format="arrow")
    await create_etl_pipeline(extract, stage, loader(seen.append, batch_format="any")).run()
    assert isinstance(seen[0], pa.Table)
    assert seen[0].to_pylist() == [{"id": 1, "twice": 2}, {"id": 2, "twice": 4}]


async def test_record_batches_travel_as_tables_and_empty_ones_are_dropped() -> None:
    seen: list[Any] = []

    async def extract() -> Any:
        yield pa.record_batch({"id": [1, 2]})
        yield pa.table({"id": pa.array([], pa.int64())})
        yield pa.table({"id": [3]})

    result = await create_el_pipeline(extract, loader(seen.append, batch_format="any")).run()
    assert [type(batch) for batch in seen] == [pa.Table, pa.Table]
    assert result.stages[0].batches_out == 2
    assert result.records_out == 3


async def test_something_else_is_still_an_error_naming_the_stage() -> None:
    async def extract() -> Any:
        yield pa.array([1, 2])

    with pytest.raises(ExtractError, match=r"returned Int64Array; expected a batch"):
        await create_el_pipeline(extract, print, logging=False).run()


def test_explicit_conversions() -> None:
    records = [{"a": 1, "b": "x"}, {"a": None, "b": "y"}]
    table = to_arrow(records)
    assert table.schema.names == ["a", "b"]
    assert to_records(table) == records
    assert to_records(records) is records
    assert to_arrow(table) is table
    typed = to_arrow(records, pa.schema([("a", pa.int32()), ("b", pa.string())]))
    assert typed.schema.field("a").type == pa.int32()
    assert to_arrow(pa.record_batch({"a": [1]})).num_rows == 1


@pytest.mark.parametrize("value", ["columns", 3])
def test_batch_format_is_checked(value: Any) -> None:
    from ductwork import ConfigError

    with pytest.raises(ConfigError, match="batch_format"):
        transformer(print, batch_format=value)

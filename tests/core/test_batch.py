"""The shape of a batch, decided by ``batch_rows``, and the runner using it for every stage."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections import UserDict
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from ductwork import (
    Batch,
    ExtractError,
    RunContext,
    TransformError,
    create_el_pipeline,
    create_etl_pipeline,
    transformer,
)
from ductwork.core import batch as batch_module
from ductwork.core.batch import BatchShapeError, batch_rows


def test_a_list_of_records_counts_its_records() -> None:
    assert batch_rows([{"id": 1}, {"id": 2}, {"id": 3}]) == 3
    assert batch_rows([]) == 0
    assert batch_rows(None) == 0  # a stage that drops its batch


class Records(list[dict[str, Any]]):
    pass


def test_a_list_of_mappings_and_a_list_subclass_are_batches() -> None:
    assert batch_rows([UserDict(id=1)]) == 1
    assert batch_rows(Records([{"id": 1}, {"id": 2}])) == 2
    with pytest.raises(BatchShapeError, match="records are int"):
        batch_rows(Records([1]))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"id": 1}, "transformer 'scale' returned a single record (a dict); return a list"),
        (
            "text",
            "transformer 'scale' returned str; expected a batch (a list of records or a "
            "pyarrow.Table)",
        ),
        (
            42,
            "transformer 'scale' returned int; expected a batch (a list of records or a "
            "pyarrow.Table)",
        ),
        ([1, 2], "transformer 'scale' produced a batch whose records are int, not mappings"),
    ],
)
def test_anything_else_is_an_error_naming_the_stage(value: Any, message: str) -> None:
    with pytest.raises(BatchShapeError) as info:
        batch_rows(value, "transformer 'scale'")
    assert str(info.value).startswith(message)


class Table:
    """A stand-in for a columnar batch: rows counted by ``num_rows``, ``len()`` works too."""

    def __init__(self, num_rows: int) -> None:
        self.num_rows = num_rows

    def __len__(self) -> int:
        return self.num_rows


def test_a_new_kind_of_batch_is_one_registration(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(BatchShapeError):
        batch_rows(Table(5))
    monkeypatch.setattr(batch_module, "_ROW_COUNTERS", dict(batch_module._ROW_COUNTERS))
    batch_module.register_batch_kind(Table, lambda table: table.num_rows)
    assert batch_rows(Table(5)) == 5
    assert batch_rows(Table(0)) == 0


async def test_every_stage_kind_counts_a_registered_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batch_module, "_ROW_COUNTERS", dict(batch_module._ROW_COUNTERS))
    batch_module.register_batch_kind(Table, lambda table: table.num_rows)
    written: list[int] = []

    async def extract(ctx: RunContext) -> AsyncIterator[Any]:
        for rows in (3, 0, 4):  # the empty table is dropped
            yield Table(rows)

    def double(table: Table) -> Table:
        return Table(table.num_rows * 2)

    async def load(table: Table) -> None:
        written.append(table.num_rows)

    for stage in (double, transformer(double, concurrency=2)):
        written.clear()
        result = await create_etl_pipeline(extract, stage, load, logging=False).run()
        extract_stats, transform_stats, load_stats = result.stages
        assert (extract_stats.batches_out, extract_stats.records_out) == (2, 7)
        assert (transform_stats.records_in, transform_stats.records_out) == (7, 14)
        assert (load_stats.records_in, load_stats.records_out) == (14, 14)
        assert written == [6, 8]


async def test_sync_and_async_extractors_drop_empty_batches_and_keep_tuples_as_lists() -> None:
    seen: list[Batch] = []

    def sync_extract(ctx: RunContext) -> Iterator[Any]:
        yield []
        yield None
        yield ({"id": 1}, {"id": 2})

    async def async_extract(ctx: RunContext) -> AsyncIterator[Any]:
        for batch in sync_extract(ctx):
            yield batch

    for extract in (sync_extract, async_extract):
        seen.clear()
        result = await create_el_pipeline(extract, seen.append, logging=False).run()
        assert seen == [[{"id": 1}, {"id": 2}]]
        assert type(seen[0]) is list
        assert (result.stages[0].batches_out, result.records_out) == (1, 2)


async def test_a_shape_error_fails_the_run_at_its_stage_and_is_not_retryable() -> None:
    async def extract(ctx: RunContext) -> AsyncIterator[Batch]:
        yield [{"id": 1}]

    def bad(batch: Batch) -> Any:
        return "not a batch"

    for stage in (bad, transformer(bad, concurrency=3)):
        pipeline = create_etl_pipeline(extract, stage, [].extend, name="p", logging=False)
        with pytest.raises(TransformError) as info:
            await pipeline.run()
        assert (info.value.pipeline, info.value.stage, info.value.retryable) == ("p", "bad", False)
        assert "transformer 'bad' returned str" in str(info.value)

    async def bad_extract(ctx: RunContext) -> AsyncIterator[Any]:
        yield [{"id": 1}]
        yield [[1, 2]]

    with pytest.raises(ExtractError, match="extractor produced a batch whose records are list"):
        await create_el_pipeline(bad_extract, [].extend, logging=False).run()


async def test_debug_logging_logs_every_batch_with_the_same_counts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def extract(ctx: RunContext) -> AsyncIterator[Batch]:
        for start in range(0, 10, 4):
            yield [{"n": n} for n in range(start, min(start + 4, 10))]

    def keep_even(batch: Batch) -> Batch:
        return [r for r in batch if r["n"] % 2 == 0]

    pipeline = create_etl_pipeline(extract, keep_even, [].extend, name="dbg", logging=False)
    quiet = await pipeline.run()
    with caplog.at_level("DEBUG", logger="ductwork"):
        loud = await pipeline.run()
    for a, b in zip(quiet.stages, loud.stages, strict=True):
        assert (a.batches_in, a.records_in, a.batches_out, a.records_out) == (
            b.batches_in,
            b.records_in,
            b.batches_out,
            b.records_out,
        )
    lines = [r.getMessage() for r in caplog.records if r.levelname == "DEBUG"]
    assert "dbg: extract batch 3: 2 records out" in lines
    assert "dbg: keep_even batch 3: 1 records out" in lines
    assert "dbg: extend wrote batch 3: 1 records" in lines


def test_a_pipeline_of_records_never_loads_pyarrow_and_tables_work_once_it_is_loaded() -> None:
    # in a fresh interpreter: the Arrow kinds are found only once pyarrow has been imported
    script = textwrap.dedent(
        """
        import sys
        import anyio
        from ductwork import create_el_pipeline, create_etl_pipeline

        def extract_records():
            yield [{"n": 1}, {"n": 2}]

        got = []
        result = anyio.run(create_el_pipeline(extract_records, got.append, logging=False).run)
        assert result.stages[-1].records_in == 2, result
        assert "pyarrow" not in sys.modules, "a pipeline of records loaded pyarrow"

        import pyarrow as pa

        table = pa.table({"n": [1, 2, 3]})

        def extract_tables():
            yield table
            yield table.to_batches()[0]

        def as_records(batch):  # takes records: each table is converted at its input
            assert type(batch) is list, type(batch)
            return batch

        got.clear()
        run = create_etl_pipeline(extract_tables, as_records, got.append, logging=False).run
        result = anyio.run(run)
        assert [s.records_out for s in result.stages] == [6, 6, 6], result
        assert got == [table.to_pylist()] * 2, got
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ok"]

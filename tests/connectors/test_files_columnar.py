"""The file connector's columnar path: Parquet and Arrow files, and Arrow batches everywhere."""

from __future__ import annotations

import gzip
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

from ductwork import (
    ConfigError,
    FileFormatError,
    LoadError,
    PipelineError,
    RunContext,
    create_el_pipeline,
    create_file_extractor,
    create_file_loader,
    loader,
)


async def _read(path: Path, **options: Any) -> list[Any]:
    return [batch async for batch in create_file_extractor(path, **options).extract(RunContext())]


def _records(count: int) -> list[dict[str, Any]]:
    return [
        {"id": i, "name": f"n{i}" if i % 3 else None, "price": Decimal(i) / 4, "tags": [i, i + 1]}
        for i in range(count)
    ]


async def _load(batches: list[Any], path: Path, **options: Any) -> Any:
    async def extract() -> Any:
        for batch in batches:
            yield batch

    pipeline = create_el_pipeline(
        extract, create_file_loader(path, **options), name="out", logging=False
    )
    return await pipeline.run()


async def test_records_to_parquet_and_back(tmp_path: Path) -> None:
    path = tmp_path / "out.parquet"
    records = _records(2500)
    result = await _load([records[:1000], records[1000:]], path, row_group_size=1000)
    assert result.records_out == 2500
    file = pq.ParquetFile(path)
    assert file.metadata.num_row_groups == 3  # a row group per 1,000 rows buffered
    assert file.metadata.row_group(0).column(0).compression == "ZSTD"
    tables = await _read(path, batch_format="arrow", batch_size=700)
    assert all(isinstance(table, pa.Table) for table in tables)
    assert [table.num_rows for table in tables] == [700, 700, 700, 400]  # re-batched
    back = [record for batch in await _read(path) for record in batch]
    assert back == records  # Decimal exact, nulls kept, lists kept


@pytest.mark.parametrize("compression", ["snappy", "none", "gzip"])
async def test_parquet_page_compression(tmp_path: Path, compression: str) -> None:
    path = tmp_path / "out.parquet"
    await _load([_records(10)], path, compression=compression)
    codec = pq.ParquetFile(path).metadata.row_group(0).column(0).compression
    assert codec == {"snappy": "SNAPPY", "none": "UNCOMPRESSED", "gzip": "GZIP"}[compression]


async def test_arrow_batches_to_parquet_keep_their_schema(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    schema = pa.schema([("id", pa.uint64()), ("at", pa.timestamp("ms", "UTC"))])
    table = pa.table({"id": pa.array([2**64 - 1], pa.uint64()), "at": [0]}, schema=schema)
    await _load([table, table], path)
    read = pq.read_table(path)
    assert read.schema.equals(schema)
    assert read.column("id").to_pylist() == [2**64 - 1] * 2


async def test_a_batch_that_does_not_fit_names_the_column(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    with pytest.raises(PipelineError) as info:
        await _load([[{"id": 1, "name": "a"}], [{"id": "x", "name": "b"}]], path)
    assert isinstance(info.value, LoadError)
    assert "batch 2" in str(info.value)
    assert "'id'" in str(info.value)
    assert not list(tmp_path.iterdir())  # nothing half-written


async def test_an_all_null_first_batch_asks_for_a_schema(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match="schema="):
        await _load([[{"id": 1, "note": None}]], tmp_path / "t.parquet")
    schema = pa.schema([("id", pa.int64()), ("note", pa.string())])
    await _load([[{"id": 1, "note": None}]], tmp_path / "t.parquet", schema=schema)
    assert pq.read_table(tmp_path / "t.parquet").schema.equals(schema)


def test_parquet_append_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be appended to"):
        create_file_loader(tmp_path / "t.parquet", mode="append")
    with pytest.raises(ConfigError, match="no compression"):
        create_file_loader(tmp_path / "t.arrow", compression="gzip")
    with pytest.raises(ConfigError, match="snappy"):
        create_file_loader(tmp_path / "t.csv", compression="snappy")


async def test_arrow_ipc_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "t.arrow"
    records = _records(50)
    await _load([records[:20], records[20:]], path)
    with pa.OSFile(str(path), "rb") as source:
        assert ipc.open_stream(source).read_all().num_rows == 50
    back = await _read(path, batch_format="arrow")
    assert pa.concat_tables(back).to_pylist() == records


async def test_csv_read_by_pyarrow(tmp_path: Path) -> None:
    path = tmp_path / "t.csv.gz"
    path.write_bytes(gzip.compress(b'id,name,x\n1,ada,1.5\n2,,\n3,"g,h\nx",2\n'))
    (table,) = await _read(path, batch_format="arrow")
    assert table.schema.field("id").type == pa.int64()
    assert table.to_pylist() == [
        {"id": 1, "name": "ada", "x": 1.5},
        {"id": 2, "name": "", "x": None},
        {"id": 3, "name": "g,h\nx", "x": 2.0},
    ]


async def test_csv_error_on_the_arrow_path_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("id,name\n1,a\n2,b,c\n3,d\n")
    with pytest.raises(FileFormatError) as info:
        await _read(path, batch_format="arrow")
    assert info.value.file == str(path)
    assert info.value.line == 3


async def test_csv_skip_on_the_arrow_path_counts_the_rows(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("id,name\n1,a\n2,b,c\n3,d\n")
    seen: list[Any] = []
    extractor = create_file_extractor(path, batch_format="arrow", error_handling="skip")
    pipeline = create_el_pipeline(extractor, loader(seen.append, batch_format="any"))
    result = await pipeline.run()
    assert pa.concat_tables(seen).column("id").to_pylist() == [1, 3]
    assert result.stages[0].metrics["records_skipped"] == 1


async def test_jsonl_read_by_pyarrow(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"id": 1, "v": [1, 2]}\n{"id": 2, "v": null}\n')
    (table,) = await _read(path, batch_format="arrow")
    assert table.to_pylist() == [{"id": 1, "v": [1, 2]}, {"id": 2, "v": None}]


async def test_a_json_array_read_as_arrow(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text(json.dumps([{"id": 1}, {"id": 2}]))
    (table,) = await _read(path, batch_format="arrow")
    assert isinstance(table, pa.Table)
    assert table.to_pylist() == [{"id": 1}, {"id": 2}]


@pytest.mark.parametrize("name", ["out.csv", "out.jsonl", "out.json"])
async def test_arrow_batches_to_text_formats(tmp_path: Path, name: str) -> None:
    table = pa.table({"id": [1, 2], "name": ["a", None]})
    await _load([table, table], tmp_path / name)
    back = [record for batch in await _read(tmp_path / name) for record in batch]
    if name.endswith(".csv"):
        assert back == [{"id": "1", "name": "a"}, {"id": "2", "name": ""}] * 2
    else:
        assert back == [{"id": 1, "name": "a"}, {"id": 2, "name": None}] * 2


async def test_a_failed_parquet_run_leaves_the_previous_file(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    await _load([[{"id": 1}]], path)

    async def extract() -> Any:
        yield [{"id": 2}]
        raise RuntimeError("source broke")

    pipeline = create_el_pipeline(extract, create_file_loader(path), logging=False)
    with pytest.raises(PipelineError, match="source broke"):
        await pipeline.run()
    assert pq.read_table(path).to_pylist() == [{"id": 1}]
    assert [p.name for p in tmp_path.iterdir()] == ["t.parquet"]


@pytest.mark.parametrize(("chunk_size", "block"), [(None, 256 * 1024), (1024 * 1024, 1024 * 1024)])
async def test_pyarrow_parses_text_in_256_kib_blocks_unless_chunk_size_is_given(
    tmp_path: Path, chunk_size: int | None, block: int
) -> None:
    path = tmp_path / "wide.csv"
    line = len("99999,name-0000099999\n")  # every line is as long
    path.write_text("id,name\n" + "".join(f"{i:05d},name-{i:010d}\n" for i in range(100_000)))
    options = {} if chunk_size is None else {"chunk_size": chunk_size}
    (table,) = await _read(path, batch_format="arrow", batch_size=1_000_000, **options)
    assert table.num_rows == 100_000
    rows_per_chunk = [len(chunk) for chunk in table.column("id").chunks]
    # Each chunk is one pyarrow block: `block` bytes, give or take the line it ends in.
    assert block - line < max(rows_per_chunk) * line <= block + line
    assert len(rows_per_chunk) == -(-path.stat().st_size // block)

"""The HTTP extractor's Arrow batches, against the local test server: JSON Lines and CSV bodies
parsed by pyarrow as they stream, JSON bodies converted per batch, errors naming the line."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest
from tests.connectors.http_testserver import TestServer, record

from ductwork import ExtractError, create_el_pipeline, create_http_extractor, loader


@pytest.fixture(scope="module")
def server() -> Iterator[TestServer]:
    srv = TestServer().start()
    yield srv
    srv.stop()


async def _tables(url: str, **options: Any) -> list[pa.Table]:
    seen: list[pa.Table] = []
    extractor = create_http_extractor(url, batch_format="arrow", **options)
    stage = loader(seen.append, batch_format="arrow")
    await create_el_pipeline(extractor, stage, logging=False).run()
    return seen


async def test_ndjson_streams_as_tables(server: TestServer) -> None:
    tables = await _tables(
        server.url + "/ndjson?records=25000&chunk=700", response_format="ndjson", batch_size=10_000
    )
    assert all(isinstance(table, pa.Table) for table in tables)
    assert [table.num_rows for table in tables] == [10_000, 10_000, 5_000]
    whole = pa.concat_tables(tables)
    assert whole.schema.field("id").type == pa.int64()
    assert whole.to_pylist() == [record(i) for i in range(25_000)]


async def test_csv_with_quoted_line_breaks_in_tiny_chunks(server: TestServer) -> None:
    tables = await _tables(server.url + "/csv?records=50&chunk_bytes=7", response_format="csv")
    rows = pa.concat_tables(tables).to_pylist()
    assert len(rows) == 50
    assert rows[3] == {"id": 3, "name": "item, 3", "note": 'line one\nline "two" 3'}


async def test_a_json_body_is_converted_per_batch(server: TestServer) -> None:
    tables = await _tables(
        server.url + "/pages?total=30&per_page=30", records_path="data", batch_size=8
    )
    assert [table.num_rows for table in tables] == [8, 8, 8, 6]
    assert pa.concat_tables(tables).column("id").to_pylist() == list(range(30))


async def test_a_malformed_line_is_named(server: TestServer) -> None:
    with pytest.raises(ExtractError, match="line 4"):
        await _tables(server.url + "/ndjson?records=10&bad_line=4", response_format="ndjson")

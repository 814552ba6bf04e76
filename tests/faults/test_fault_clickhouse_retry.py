"""Defect: a ClickHouse insert that failed after earlier inserts were committed, into a table that
does not deduplicate, was retryable, so a retry composition inserted everything again and
reported success; the loader's ``records_out`` counted rows buffered, not rows committed.

The fault is real: a proxy before the suite's ClickHouse (both legs) lets the server commit the
fourth insert and loses its answer, so the client cannot know whether those rows were written.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pyarrow as pa
import pytest
from cutting_proxy import cutting_proxy

from clickhouse_legs import count, sql
from ductwork import (
    Batch,
    ClickHouseConfig,
    ClickHouseLoadError,
    CompositionError,
    create_clickhouse_loader,
    create_el_pipeline,
    create_retry_pipeline,
)
from ductwork.connectors.clickhouse import capabilities

pytestmark = pytest.mark.clickhouse

BATCHES, ROWS = 10, 100


@pytest.fixture
def table() -> str:
    return f"f_{uuid.uuid4().hex[:10]}"


def batches(kind: str) -> Any:
    async def extract() -> AsyncIterator[Batch]:
        for n in range(BATCHES):
            ids = range(n * ROWS, (n + 1) * ROWS)
            if kind == "arrow":
                yield pa.table(
                    {
                        "id": pa.array(ids, pa.uint64()),
                        "name": pa.array([f"row {i}" for i in ids]),
                    }
                )
            else:
                yield [{"id": i, "name": f"row {i}"} for i in ids]

    return extract


def retrying(config: ClickHouseConfig, table: str, kind: str, **options: Any) -> Any:
    load = create_clickhouse_loader(
        table, batch_size=ROWS, retries=3, retry_backoff=0.0, connection_config=config, **options
    )
    pipeline = create_el_pipeline(batches(kind), load, name="load", logging=False)
    return create_retry_pipeline(pipeline, max_retries=3, backoff_factor=0.0, logging=False)


@pytest.mark.parametrize("kind", ["records", "arrow"])
async def test_a_lost_answer_after_committed_inserts_is_not_run_again(
    clickhouse: ClickHouseConfig, table: str, kind: str
) -> None:
    await sql(
        clickhouse, f"CREATE TABLE {table} (id UInt64, name String) ENGINE = MergeTree ORDER BY id"
    )
    capabilities.clear_cache()
    with cutting_proxy(clickhouse.url, cut={4}) as proxy:
        config = clickhouse.model_copy(update={"url": proxy.url})
        with pytest.raises(CompositionError) as info:
            await retrying(config, table, kind, create_table=None).run()
    assert proxy.cut_done == [4]
    assert proxy.inserts == 4  # the lost insert was not sent again, nor anything after it
    result = info.value.result
    assert result is not None
    assert result.attempts == 1  # a second attempt would insert the first 300 rows twice
    assert info.value.retryable is False
    error = info.value.__cause__
    assert isinstance(error, ClickHouseLoadError)
    assert error.retryable is False
    assert error.batch == 4
    assert error.rows_committed == 300
    assert "300 rows were inserted before it" in str(error)
    assert result.records_out == 300  # committed, not handed to the loader
    # The lost insert did land: which is why it may not be sent again.
    assert await count(clickhouse, table) == 400
    assert int(await sql(clickhouse, f"SELECT uniqExact(id) FROM {table}")) == 400


@pytest.mark.clickhouse_legs("chdb")
@pytest.mark.parametrize("kind", ["records", "arrow"])
async def test_where_the_table_deduplicates_the_lost_insert_is_sent_again_once(
    clickhouse: ClickHouseConfig, table: str, kind: str
) -> None:
    # create_table makes a table that deduplicates inserts: each carries a token.
    capabilities.clear_cache()
    with cutting_proxy(clickhouse.url, cut={4}) as proxy:
        config = clickhouse.model_copy(update={"url": proxy.url})
        result = await retrying(
            config, table, kind, create_table={"id": "UInt64", "name": "String"}
        ).run()
    assert proxy.cut_done == [4]
    assert proxy.inserts == BATCHES + 1  # the fourth twice, with the same token
    assert result.attempts == 1
    assert result.records_out == BATCHES * ROWS
    assert await count(clickhouse, table) == BATCHES * ROWS

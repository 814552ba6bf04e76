"""Once the ClickHouse loader committed inserts into a table that does not deduplicate them, the
run's error is not retryable, whichever stage failed: a retry composition would otherwise run the
pipeline again and insert those rows twice. Where the table deduplicates (tokens, on the modern
leg), the error stays retryable and the retries insert nothing twice."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from typing import Any

import anyio
import httpx
import pytest
from test_clickhouse import count, sql

from ductwork import (
    Batch,
    ClickHouseConfig,
    CompositionError,
    ExtractError,
    RunContext,
    TimeWindow,
    TransformError,
    create_clickhouse_loader,
    create_etl_pipeline,
    create_retry_pipeline,
)
from ductwork.connectors.clickhouse.client import Connection

pytestmark = pytest.mark.clickhouse

DAY = TimeWindow(datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 3, 2, tzinfo=UTC))
BATCH = 100


@pytest.fixture
def table() -> str:
    return f"r_{uuid.uuid4().hex[:10]}"


class Flaky(Exception):
    """A failure that a retry might cure, by its own account."""

    retryable = True


class Inserts:
    """Counts the inserts of the current run that the server answered; ``four`` is set after the
    fourth (made afresh when each run's extractor starts, before the loader sees a batch)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.done = 0
        self.four = anyio.Event()
        insert = Connection.insert
        inserts = self

        async def counting(
            self: Connection, query: str, body: bytes, params: Mapping[str, Any]
        ) -> None:
            await insert(self, query, body, params)
            inserts.done += 1
            if inserts.done == 4:
                inserts.four.set()

        monkeypatch.setattr(Connection, "insert", counting)

    def new_run(self) -> None:
        self.done = 0
        self.four = anyio.Event()


def pipeline(clickhouse: ClickHouseConfig, table: str, inserts: Inserts, failing: str) -> Any:
    """Six batches of ``BATCH`` rows; batch 5 fails (in the extractor, or in the transformer)
    once the loader committed batches 1 to 4, each an insert of its own."""

    async def extract(ctx: RunContext) -> AsyncIterator[Batch]:
        inserts.new_run()
        for n in range(6):
            if n == 4:
                await inserts.four.wait()
                if failing == "extract":
                    raise httpx.ReadTimeout("the source stopped answering")
            yield [{"id": n * BATCH + i, "name": f"row {n}"} for i in range(BATCH)]

    async def transform(batch: Batch) -> Batch:
        if failing == "transform" and batch[0]["id"] == 4 * BATCH:
            await inserts.four.wait()
            raise Flaky("the lookup service is overloaded")
        return batch

    loader = create_clickhouse_loader(
        table,
        batch_size=BATCH,
        retry_backoff=0.0,
        connection_config=clickhouse,
        create_table={"id": "UInt64", "name": "String"},
    )
    return create_etl_pipeline(extract, transform, loader, name="p", logging=False)


@pytest.mark.parametrize(
    ("failing", "error_class"), [("extract", ExtractError), ("transform", TransformError)]
)
async def test_a_retry_after_another_stage_failed_does_not_insert_committed_rows_twice(
    clickhouse: ClickHouseConfig,
    table: str,
    monkeypatch: pytest.MonkeyPatch,
    failing: str,
    error_class: type[Exception],
) -> None:
    # A plain MergeTree table: no deduplication on either leg (and 18.16 has no tokens).
    await sql(
        clickhouse, f"CREATE TABLE {table} (id UInt64, name String) ENGINE = MergeTree ORDER BY id"
    )
    inserts = Inserts(monkeypatch)
    retrying = create_retry_pipeline(
        pipeline(clickhouse, table, inserts, failing),
        max_retries=3,
        backoff_factor=0.0,
        logging=False,
    )
    with pytest.raises(CompositionError) as info:
        await retrying.run(window=DAY)
    result = info.value.result
    assert result is not None
    assert result.attempts == 1  # not run again: that would insert 400 rows twice
    assert info.value.retryable is False
    error = info.value.__cause__
    assert isinstance(error, error_class)
    assert error.retryable is False
    notes = getattr(error, "__notes__", [])
    assert len(notes) == 1
    assert "loader 'clickhouse' committed 400 rows" in notes[0]
    assert "does not deduplicate them" in notes[0]
    assert "not retryable" in notes[0]
    assert result.children[0].stage("clickhouse").records_out == 400
    assert await count(clickhouse, table) == 400
    assert int(await sql(clickhouse, f"SELECT uniqExact(id) FROM {table}")) == 400


@pytest.mark.clickhouse_legs("chdb")
async def test_with_deduplication_the_error_stays_retryable_and_retries_insert_nothing_twice(
    clickhouse: ClickHouseConfig, table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # create_table sets non_replicated_deduplication_window: inserts carry tokens.
    inserts = Inserts(monkeypatch)
    retrying = create_retry_pipeline(
        pipeline(clickhouse, table, inserts, "extract"),
        max_retries=2,
        backoff_factor=0.0,
        logging=False,
    )
    with pytest.raises(CompositionError) as info:
        await retrying.run(window=DAY)
    result = info.value.result
    assert result is not None
    assert result.attempts == 3  # every attempt ran: a rerun cannot duplicate
    error = info.value.__cause__
    assert isinstance(error, ExtractError)
    assert error.retryable is True
    assert not getattr(error, "__notes__", [])
    assert await count(clickhouse, table) == 400

"""A backfill into ClickHouse on a Dask cluster whose worker is killed mid-window.

The modern leg only (chdb): its tables deduplicate inserts by token, and the loader's tokens are
deterministic for a window, so the window's re-run on another worker loads every row once. The
killed attempt's first insert is committed before the kill (the test waits for its rows).
"""

from __future__ import annotations

import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from test_clickhouse import sql

distributed = pytest.importorskip("distributed")
cloudpickle = pytest.importorskip("cloudpickle")

from ductwork import (  # noqa: E402
    ClickHouseConfig,
    DaskExecutor,
    MemoryStateStore,
    PipelineRegistry,
    RunContext,
    create_clickhouse_loader,
    create_el_pipeline,
)

pytestmark = [pytest.mark.clickhouse, pytest.mark.clickhouse_legs("chdb")]

# The workers import ductwork, but not this test module: ship its functions by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

ROWS = 250  # per window: inserts of 100, 100 and 50 rows
KILLED_DAY = 3


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    with distributed.LocalCluster(
        processes=True,
        n_workers=2,
        threads_per_worker=1,
        dashboard_address=None,
        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
        host="127.0.0.1",
    ) as local:
        yield local


async def wait_until(done: Any, timeout: float = 60) -> None:
    with anyio.fail_after(timeout):
        while not await done():
            await anyio.sleep(0.05)


def daily_rows(folder: Path, config: ClickHouseConfig, table: str) -> Any:
    async def extract(ctx: RunContext) -> AsyncIterator[list[dict[str, Any]]]:
        assert ctx.window is not None
        day = ctx.window.start.day
        rows = [{"id": day * 1000 + n, "day": day} for n in range(ROWS)]
        yield rows[:100]
        if day == KILLED_DAY:
            attempt = len(list(folder.glob("attempt-*")))
            (folder / f"attempt-{attempt}").write_text(str(os.getpid()))
            with anyio.fail_after(60):
                while not (folder / "go").exists():
                    await anyio.sleep(0.02)
        yield rows[100:]

    loader = create_clickhouse_loader(
        table,
        batch_size=100,
        retries=0,
        connection_config=config,
        create_table={"id": "UInt64", "day": "UInt8"},
    )
    return create_el_pipeline(extract, loader, "rows", logging=False)


async def test_a_killed_worker_rerun_loads_every_row_once(
    cluster: Any, clickhouse: ClickHouseConfig, tmp_path: Path
) -> None:
    table = f"cluster_{uuid.uuid4().hex[:10]}"
    registry = PipelineRegistry(state=MemoryStateStore())
    registry.register_pipeline("rows", daily_rows(tmp_path, clickhouse, table), timescope="daily")

    async def rows_of(day: int) -> int:
        exists = await sql(clickhouse, f"EXISTS TABLE {table}")
        if exists.strip() != "1":
            return 0
        return int(await sql(clickhouse, f"SELECT count() FROM {table} WHERE day = {day}"))

    async def first_insert_committed() -> bool:
        return await rows_of(KILLED_DAY) >= 100

    async def kill_then_go() -> None:
        await wait_until(lambda: anyio.Path(tmp_path / "attempt-0").exists())
        await wait_until(first_insert_committed)
        os.kill(int((tmp_path / "attempt-0").read_text()), signal.SIGKILL)
        await wait_until(lambda: anyio.Path(tmp_path / "attempt-1").exists())
        (tmp_path / "go").write_text("")

    async with (
        DaskExecutor(cluster.scheduler_address) as executor,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(kill_then_go)
        outcome = await registry.backfill(
            "rows", "2024-01-01", "2024-01-06", executor=executor, max_workers=2
        )
    assert len(outcome.succeeded) == 5
    first, second = ((tmp_path / f"attempt-{n}").read_text() for n in range(2))
    assert first != second  # the window ran again, on the other worker
    counts = await sql(
        clickhouse,
        f"SELECT day, count(), uniqExact(id) FROM {table} GROUP BY day ORDER BY day FORMAT CSV",
    )
    assert counts.split() == [f"{day},{ROWS},{ROWS}" for day in range(1, 6)]
    assert all(w.result is not None and w.result.records_out == ROWS for w in outcome.windows)

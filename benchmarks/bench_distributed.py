"""Backfills on a Dask cluster: CPU-bound windows on 2 worker processes vs the local executor.

A backfill of W daily windows, each transforming R records in Python (a CPU-bound transformer),
runs with the local executor (every window in this process's event loop, ``max_workers=2``) and
with a ``DaskExecutor`` on a LocalCluster of 2 worker processes (one thread each), in the same
run; the speed-up is the ratio of the two (median of several repetitions). Then the per-window
overhead of the Dask path: a backfill of empty windows, one at a time, on the cluster against the
same locally. First, this machine's own ceiling for the speed-up: the same work in two plain
processes against one (below 2x when other work runs, or the cores are shared or virtual).
The cluster starts once, before the timings, and is warmed up by one window.

    python -m benchmarks.bench_distributed [--windows W] [--records R] [--repeats N] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
from collections.abc import AsyncIterator
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from time import perf_counter
from typing import Any

import anyio

from benchmarks._util import Timing, machine, peak_rss_mb, table
from ductwork import (
    Batch,
    Executor,
    LocalExecutor,
    MemoryStateStore,
    Pipeline,
    PipelineRegistry,
    RunContext,
    create_etl_pipeline,
)
from ductwork.core.dask_executor import open_local_cluster, ship_by_value

ship_by_value(__name__)

START = datetime(2024, 1, 1, tzinfo=UTC)
BATCH = 10_000


def work(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The CPU-bound transformer of every window."""
    out = []
    for row in batch:
        h = row["v"]
        for _ in range(4):
            h = (h * 1_103_515_245 + 12_345) % 2_147_483_648
        out.append({"id": row["id"], "h": h})
    return out


def rows(start: int, end: int) -> list[dict[str, Any]]:
    return [{"id": i, "v": i * 7} for i in range(start, end)]


def build(records: int) -> Pipeline:
    async def extract(ctx: RunContext) -> AsyncIterator[Batch]:
        for start in range(0, records, BATCH):
            yield rows(start, min(start + BATCH, records))

    return create_etl_pipeline(extract, work, lambda batch: None, "cpu", logging=False)


def bare_window(records: int) -> None:
    """One window's work without ductwork: the rows made and transformed."""
    for start in range(0, records, BATCH):
        work(rows(start, min(start + BATCH, records)))


def machine_ceiling(records: int) -> float:
    """How much faster two plain processes do two windows' work than one: this machine's
    own limit for the speed-up (other load, shared or virtual cores)."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(2, mp_context=context) as pool:
        list(pool.map(bare_window, [1, 1]))  # started and warm
        t0 = perf_counter()
        bare_window(records)
        bare_window(records)
        one = perf_counter() - t0
        t0 = perf_counter()
        list(pool.map(bare_window, [records, records]))
        two = perf_counter() - t0
    return one / two


async def backfill(executor: Executor, windows: int, records: int, workers: int) -> float:
    registry = PipelineRegistry(state=MemoryStateStore())
    registry.register_pipeline("cpu", build(records), timescope="daily")
    t0 = perf_counter()
    outcome = await registry.backfill(
        "cpu", START, START + timedelta(days=windows), executor=executor, max_workers=workers
    )
    seconds = perf_counter() - t0
    assert len(outcome.succeeded) == windows
    return seconds


async def measure(windows: int, records: int, repeats: int, empty: int) -> list[dict[str, Any]]:
    ceiling = Timing.of([machine_ceiling(records) for _ in range(repeats)])
    async with open_local_cluster(2) as dask:
        local = LocalExecutor()
        await backfill(dask, 2, 1, 2)  # warm-up: the workers import ductwork
        local_times, dask_times = [], []
        for _ in range(repeats):
            local_times.append(await backfill(local, windows, records, 2))
            dask_times.append(await backfill(dask, windows, records, 2))
        empty_local = Timing.of([await backfill(local, empty, 0, 1) for _ in range(repeats)])
        empty_dask = Timing.of([await backfill(dask, empty, 0, 1) for _ in range(repeats)])
    local_t, dask_t = Timing.of(local_times), Timing.of(dask_times)
    rss = peak_rss_mb()
    return [
        {
            "case": "this machine's ceiling: 2 windows' work in 2 plain processes vs 1",
            "seconds": None,
            "ratio": ceiling.median,
            "per_window_ms": None,
            "peak_rss_mb": rss,
        },
        {
            "case": f"{windows} windows of {records:,} records, local executor",
            "seconds": local_t.median,
            "ratio": 1.0,
            "per_window_ms": None,
            "peak_rss_mb": rss,
        },
        {
            "case": f"{windows} windows of {records:,} records, Dask, 2 worker processes",
            "seconds": dask_t.median,
            "ratio": local_t.median / dask_t.median,
            "per_window_ms": None,
            "peak_rss_mb": rss,
        },
        {
            "case": f"{empty} empty windows one at a time, Dask: overhead per window",
            "seconds": empty_dask.median,
            "ratio": empty_local.median / empty_dask.median,
            "per_window_ms": (empty_dask.median - empty_local.median) / empty * 1000,
            "peak_rss_mb": rss,
        },
    ]


def render(rows: list[dict[str, Any]]) -> str:
    return table(
        ["case", "seconds", "speed-up vs local", "overhead per window", "RSS MiB"],
        [
            [
                r["case"],
                "-" if r["seconds"] is None else f"{r['seconds']:.2f}",
                f"{r['ratio']:.2f}x",
                "-" if r["per_window_ms"] is None else f"{r['per_window_ms']:.1f} ms",
                f"{r['peak_rss_mb']:.0f}",
            ]
            for r in rows
        ],
    )


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=8)
    parser.add_argument("--records", type=int, default=500_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--empty", type=int, default=100, help="empty windows for the overhead")
    parser.add_argument("--json", help="write the rows to this JSON file")
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)
    print(
        f"distributed: {args.windows} daily windows of {args.records:,} CPU-bound records, "
        f"2 worker processes vs the local executor; {machine()}; median of {args.repeats}"
    )
    rows = anyio.run(measure, args.windows, args.records, args.repeats, args.empty)
    print(render(rows))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": machine(), "rows": rows}, fh, indent=2)
    return rows


if __name__ == "__main__":
    main()

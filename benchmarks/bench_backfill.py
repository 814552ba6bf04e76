"""Backfill overhead: what the registry, the run history and the state file add to each window.

Runs a small pipeline (one batch of 100 records per window) for N hourly windows: as a baseline,
``await pipeline.run(window=...)`` in a plain loop; then ``registry.backfill`` with the in-memory
store, the SQLite store (one WAL transaction per run) and the JSON file store (every run appends
its record and marks its window in one atomic, fsync'ed rewrite of the file), with 1 and 8
workers; and finally a second backfill over
the same range, where every window is skipped. Prints windows/s, the ratio to the baseline
(median of several repetitions, min-max in brackets), the state file's size and peak RSS.

    python -m benchmarks.bench_backfill [--windows N] [--repeats R] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from time import perf_counter
from typing import Any

import anyio

from benchmarks._util import Timing, machine, peak_rss_mb, repeat, table
from ductwork import (
    Batch,
    JsonFileStateStore,
    MemoryStateStore,
    Pipeline,
    PipelineRegistry,
    RunContext,
    SqliteStateStore,
    StateStore,
    create_el_pipeline,
    hourly,
)

START = datetime(2024, 1, 1, tzinfo=UTC)


async def extract(ctx: RunContext) -> AsyncIterator[Batch]:
    yield [{"id": i, "hour": ctx.window.start.hour if ctx.window else 0} for i in range(100)]


def build() -> Pipeline:
    return create_el_pipeline(extract, lambda batch: None, name="hours", logging=False)


def run_baseline(windows: int) -> None:
    async def main() -> None:
        pipeline = build()
        scope = hourly()
        for window in scope.windows(START, START + timedelta(hours=windows)):
            result = await pipeline.run(window=window)
            assert result.records_out == 100

    anyio.run(main)


def run_backfill(
    windows: int, store: Callable[[], StateStore], workers: int, timed: str = "first"
) -> float:
    """Backfill ``windows`` hours; return the seconds of the first pass, or of a second pass
    over the same range (every window skipped) when ``timed`` is ``"second"``."""

    async def main() -> float:
        registry = PipelineRegistry(state=store())
        registry.register_pipeline("hours", build, timescope="hourly")
        end = START + timedelta(hours=windows)
        t0 = perf_counter()
        result = await registry.backfill("hours", START, end, max_workers=workers)
        first = perf_counter() - t0
        assert len(result.succeeded) == windows
        if timed == "first":
            return first
        t0 = perf_counter()
        again = await registry.backfill("hours", START, end, max_workers=workers)
        assert len(again.skipped) == windows
        return perf_counter() - t0

    return anyio.run(main)


def measure(windows: int, repeats: int) -> list[dict[str, Any]]:
    baseline = repeat(lambda: run_baseline(windows), repeats)
    rows = [_row("pipeline.run() in a loop", windows, baseline, baseline, None)]
    with tempfile.TemporaryDirectory() as tmp:
        counter = iter(range(1_000_000))

        def json_store() -> StateStore:
            return JsonFileStateStore(Path(tmp) / f"state-{next(counter)}.json")

        def sqlite_store() -> StateStore:
            return SqliteStateStore(Path(tmp) / f"state-{next(counter)}.db")

        cases: list[tuple[str, Callable[[], StateStore], int]] = [
            ("backfill, memory store, 1 worker", MemoryStateStore, 1),
            ("backfill, memory store, 8 workers", MemoryStateStore, 8),
            ("backfill, SQLite store, 1 worker", sqlite_store, 1),
            ("backfill, SQLite store, 8 workers", sqlite_store, 8),
            ("backfill, JSON file store, 1 worker", json_store, 1),
            ("backfill, JSON file store, 8 workers", json_store, 8),
        ]
        for label, store, workers in cases:
            timing = Timing.of([run_backfill(windows, store, workers) for _ in range(repeats)])
            size = None
            if store is json_store or store is sqlite_store:
                suffix = "json" if store is json_store else "db"
                files = sorted(Path(tmp).glob(f"state-*.{suffix}"), key=os.path.getmtime)
                size = files[-1].stat().st_size
            rows.append(_row(label, windows, timing, baseline, size))
        skip = Timing.of(
            [run_backfill(windows, MemoryStateStore, 8, "second") for _ in range(repeats)]
        )
        rows.append(_row("second backfill, every window skipped", windows, skip, baseline, None))
    return rows


def _row(
    label: str, windows: int, timing: Timing, base: Timing, size: int | None
) -> dict[str, Any]:
    return {
        "case": label,
        "windows": windows,
        "seconds": timing.median,
        "windows_per_s": windows / timing.median,
        "ratio": base.median / timing.median,
        "ratio_min": base.low / timing.high,
        "ratio_max": base.high / timing.low,
        "state_bytes": size,
        "peak_rss_mb": peak_rss_mb(),
    }


def render(rows: list[dict[str, Any]]) -> str:
    return table(
        ["case", "windows", "windows/s", "ratio to baseline (min-max)", "state file", "RSS MiB"],
        [
            [
                r["case"],
                f"{r['windows']:,}",
                f"{r['windows_per_s']:,.0f}",
                f"{r['ratio']:.2f} ({r['ratio_min']:.2f}-{r['ratio_max']:.2f})",
                "-" if r["state_bytes"] is None else f"{r['state_bytes'] / 1024:,.0f} KiB",
                f"{r['peak_rss_mb']:.0f}",
            ]
            for r in rows
        ],
    )


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="write the rows to this JSON file")
    args = parser.parse_args(argv)
    logging.disable(logging.CRITICAL)
    print(
        f"backfill: {args.windows:,} hourly windows of 100 records; {machine()}; "
        f"median of {args.repeats}"
    )
    rows = measure(args.windows, args.repeats)
    print(render(rows))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": machine(), "rows": rows}, fh, indent=2)
    return rows


if __name__ == "__main__":
    main()

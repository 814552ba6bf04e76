"""Peak RSS against input size: the core pipeline at 1x and 5x the records.

Runs the 3-stage in-memory workload (extract → one trivial transform → counting sink, batch size
1000) through a ductwork pipeline and, as the baseline, through a hand-written ``async for`` loop,
each at N and 5N records. Every run is a fresh process, so its peak RSS is its own; the runs are
interleaved round by round. Prints the peak RSS (median, min-max), the RSS before the run (the
interpreter and the imports) and the growth from 1x to 5x (median of the per-round ratios).
Streaming holds a bounded number of batches in memory whatever the input size, so the growth
should stay near 1.0.

    python -m benchmarks.bench_memory [--quick] [--records N] [--repeats R]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from typing import Any

from benchmarks._util import emit, machine, paired_ratio, rss_mb, run_child, span, spread, table
from benchmarks._workload import Runner, hand_written_loop, timed

SUBJECTS = ("loop", "ductwork")
LABELS = {"loop": "hand-written loop", "ductwork": "ductwork"}
MULTIPLIERS = (1, 5)
BATCH_SIZE = 1000


def _runner(subject: str) -> Runner:
    if subject == "loop":
        return hand_written_loop
    from benchmarks.bench_core import ductwork_pipeline

    return ductwork_pipeline


def child(subject: str, records: int, batch_size: int) -> None:
    """Run ``subject`` once in this (fresh) process and emit its seconds and peak RSS."""
    runner = _runner(subject)
    before = rss_mb()
    seconds = asyncio.run(timed(runner, records, batch_size))
    emit(subject=subject, records=records, seconds=seconds, rss_before_mb=before)


def measure(records: int, repeats: int) -> list[dict[str, Any]]:
    peaks: dict[tuple[str, int], list[float]] = {}
    before: dict[tuple[str, int], list[float]] = {}
    for _ in range(repeats):
        for subject in SUBJECTS:
            for mult in MULTIPLIERS:
                out = run_child(
                    "benchmarks.bench_memory",
                    "--child",
                    subject,
                    "--records",
                    str(records * mult),
                )
                peaks.setdefault((subject, mult), []).append(out["peak_rss_mb"])
                before.setdefault((subject, mult), []).append(out["rss_before_mb"])
    rows = []
    for subject in SUBJECTS:
        small, large = peaks[(subject, 1)], peaks[(subject, 5)]
        # growth per round: peak at 5x over peak at 1x (paired_ratio divides its first argument)
        growth = paired_ratio(large, small)
        p1, p5 = spread(small), spread(large)
        rows.append(
            {
                "subject": subject,
                "label": LABELS[subject],
                "batch_size": BATCH_SIZE,
                "records": records,
                "records_5x": records * 5,
                "repeats": repeats,
                "rss_before_mb": spread(before[(subject, 1)]).median,
                "peak_rss_mb": p1.median,
                "peak_rss_mb_min": p1.low,
                "peak_rss_mb_max": p1.high,
                "peak_rss_5x_mb": p5.median,
                "peak_rss_5x_mb_min": p5.low,
                "peak_rss_5x_mb_max": p5.high,
                "growth": growth.median,
                "growth_min": growth.low,
                "growth_max": growth.high,
            }
        )
    return rows


def render(rows: list[dict[str, Any]]) -> str:
    return table(
        [
            "pipeline",
            "records 1x / 5x",
            "RSS before the run MiB",
            "peak RSS 1x MiB (min-max)",
            "peak RSS 5x MiB (min-max)",
            "growth 5x / 1x (min-max)",
        ],
        [
            [
                r["label"],
                f"{r['records']:,} / {r['records_5x']:,}",
                f"{r['rss_before_mb']:.1f}",
                span(r, "peak_rss_mb", ".1f"),
                span(r, "peak_rss_5x_mb", ".1f"),
                span(r, "growth", ".3f"),
            ]
            for r in rows
        ],
    )


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200,000 records, 3 repetitions")
    parser.add_argument("--records", type=int, default=None, help="at 1x; default 1,000,000")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="write the rows to this JSON file")
    parser.add_argument("--child", choices=SUBJECTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.disable(logging.CRITICAL)
    if args.child:
        child(args.child, args.records, BATCH_SIZE)
        return []
    records = args.records or (200_000 if args.quick else 1_000_000)
    print(
        f"memory: 3 stages, batch {BATCH_SIZE}, {records:,} and {records * 5:,} records, "
        f"a fresh process per run; {machine()}; median of {args.repeats} interleaved rounds\n",
        flush=True,
    )
    rows = measure(records, args.repeats)
    print(render(rows))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": machine(), "rows": rows}, fh, indent=2)
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])

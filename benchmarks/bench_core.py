"""Core engine throughput: extract → one trivial transform → counting sink.

Runs N records of three fields through a 3-stage ductwork pipeline at batch sizes 1000, 100, 10 and
1, and beside each the same work as a hand-written ``async for`` loop in one task and the same
pipeline with the Prometheus metrics of ``ductwork.ops`` observing it, the three interleaved round
by round after one warm-up round. Prints records/s (median, min-max), the ratio to the loop and
that of the pipeline with metrics to the one without (medians of the per-round ratios, min-max)
and the peak RSS of the process so far.

    python -m benchmarks.bench_core [--quick] [--records N] [--repeats R] [--sizes 1000,1]
                                    [--clock wall|cpu]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from typing import Any

from benchmarks._util import interleave, machine, paired_ratio, peak_rss_mb, span, spread, table
from benchmarks._workload import CLOCKS, Counter, hand_written_loop, make_source, timed, transform
from ductwork import create_etl_pipeline
from ductwork.ops.metrics import RunMetrics


async def ductwork_pipeline(total: int, batch_size: int, sink: Counter) -> None:
    """The workload as a 3-stage ductwork pipeline (default queue size)."""
    pipeline = create_etl_pipeline(
        make_source(total, batch_size), transform, sink, name="bench", logging=False
    )
    result = await pipeline.run()
    assert result.records_out == total


def run_loop(total: int, batch_size: int, clock: str = "wall") -> float:
    """Seconds the hand-written loop takes, in a fresh event loop."""
    return asyncio.run(timed(hand_written_loop, total, batch_size, clock))


def run_pipeline(total: int, batch_size: int, clock: str = "wall") -> float:
    """Seconds the ductwork pipeline takes, in a fresh event loop."""
    return asyncio.run(timed(ductwork_pipeline, total, batch_size, clock))


def run_pipeline_with_metrics(total: int, batch_size: int, clock: str = "wall") -> float:
    """Seconds the ductwork pipeline takes with metrics observing it, in a fresh event loop."""
    remove = RunMetrics().install()
    try:
        return asyncio.run(timed(ductwork_pipeline, total, batch_size, clock))
    finally:
        remove()


def measure(
    total: int, repeats: int, sizes: list[int], clock: str = "wall"
) -> list[dict[str, Any]]:
    rows = []
    for size in sizes:
        samples = interleave(
            {
                "loop": lambda: run_loop(total, size, clock),  # noqa: B023
                "pipeline": lambda: run_pipeline(total, size, clock),  # noqa: B023
                "metrics": lambda: run_pipeline_with_metrics(total, size, clock),  # noqa: B023
            },
            rounds=repeats,
        )
        loop, pipe = spread(samples["loop"]), spread(samples["pipeline"])
        ratio = paired_ratio(samples["loop"], samples["pipeline"])
        with_metrics = paired_ratio(samples["pipeline"], samples["metrics"])
        rows.append(
            {
                "batch_size": size,
                "records": total,
                "repeats": repeats,
                "clock": clock,
                "loop_records_per_s": total / loop.median,
                "loop_records_per_s_min": total / loop.high,
                "loop_records_per_s_max": total / loop.low,
                "pipeline_records_per_s": total / pipe.median,
                "pipeline_records_per_s_min": total / pipe.high,
                "pipeline_records_per_s_max": total / pipe.low,
                "ratio": ratio.median,
                "ratio_min": ratio.low,
                "ratio_max": ratio.high,
                "metrics_records_per_s": total / spread(samples["metrics"]).median,
                "metrics_ratio": with_metrics.median,
                "metrics_ratio_min": with_metrics.low,
                "metrics_ratio_max": with_metrics.high,
                "peak_rss_mb": peak_rss_mb(),
            }
        )
    return rows


def render(rows: list[dict[str, Any]]) -> str:
    return table(
        [
            "batch",
            "records",
            "hand-written loop rec/s (min-max)",
            "ductwork rec/s (min-max)",
            "ductwork / loop (min-max)",
            "with metrics / without (min-max)",
            "peak RSS MiB",
        ],
        [
            [
                r["batch_size"],
                f"{r['records']:,}",
                span(r, "loop_records_per_s"),
                span(r, "pipeline_records_per_s"),
                span(r, "ratio", ".2f"),
                span(r, "metrics_ratio", ".2f"),
                f"{r['peak_rss_mb']:.0f}",
            ]
            for r in rows
        ],
    )


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="300,000 records, 3 repetitions")
    parser.add_argument("--records", type=int, default=None, help="default 2,000,000")
    parser.add_argument("--repeats", type=int, default=None, help="default 5")
    parser.add_argument("--sizes", default="1000,100,10,1")
    parser.add_argument(
        "--clock",
        choices=list(CLOCKS),
        default="wall",
        help="time runs by the wall clock (default) or by the CPU time of the process",
    )
    parser.add_argument("--json", help="write the rows to this JSON file")
    args = parser.parse_args(argv)
    records = args.records or (300_000 if args.quick else 2_000_000)
    repeats = args.repeats or (3 if args.quick else 5)
    logging.disable(logging.CRITICAL)
    sizes = [int(s) for s in args.sizes.split(",")]
    print(
        f"core: {records:,} records, 3 stages; {machine()}; "
        f"median of {repeats} interleaved rounds after 1 warm-up; {args.clock} clock\n"
    )
    rows = measure(records, repeats, sizes, args.clock)
    print(render(rows))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": machine(), "rows": rows}, fh, indent=2)
    return rows


if __name__ == "__main__":
    main()

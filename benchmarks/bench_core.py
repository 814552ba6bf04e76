"""Core engine throughput: extract → one trivial transform → counting sink.

Runs N records of three fields through a 3-stage ductwork pipeline at batch sizes 1000, 100, 10 and
1, and beside each the same work as a hand-written ``async for`` loop in one task. Prints records/s,
the ratio to the loop (median of several repetitions, min-max in brackets) and peak RSS.

    python -m benchmarks.bench_core [--records N] [--repeats R] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio

from benchmarks._util import Timing, machine, peak_rss_mb, repeat, table
from ductwork import Batch, create_etl_pipeline


def make_source(total: int, batch_size: int) -> Any:
    async def extract() -> AsyncIterator[Batch]:
        for start in range(0, total, batch_size):
            stop = min(start + batch_size, total)
            yield [{"id": i, "name": "x", "value": 1.5} for i in range(start, stop)]

    return extract


def transform(batch: Batch) -> Batch:
    for record in batch:
        record["value"] = record["value"] * 2
    return batch


class Counter:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self, batch: Batch) -> None:
        self.count += len(batch)


def run_loop(total: int, batch_size: int) -> int:
    async def main() -> int:
        sink = Counter()
        async for batch in make_source(total, batch_size)():
            sink(transform(batch))
        return sink.count

    return anyio.run(main)


def run_pipeline(total: int, batch_size: int) -> int:
    sink = Counter()
    pipeline = create_etl_pipeline(
        make_source(total, batch_size), transform, sink, name="bench", logging=False
    )
    result = anyio.run(pipeline.run)
    assert result.records_out == total == sink.count
    return sink.count


def measure(total: int, repeats: int, sizes: list[int]) -> list[dict[str, Any]]:
    rows = []
    for size in sizes:
        loop = repeat(lambda: run_loop(total, size), repeats)  # noqa: B023
        pipe = repeat(lambda: run_pipeline(total, size), repeats)  # noqa: B023
        rows.append(
            {
                "batch_size": size,
                "records": total,
                "loop_records_per_s": total / loop.median,
                "pipeline_records_per_s": total / pipe.median,
                "ratio": loop.median / pipe.median,
                "ratio_min": loop.low / pipe.high,
                "ratio_max": loop.high / pipe.low,
                "peak_rss_mb": peak_rss_mb(),
            }
        )
    return rows


def render(rows: list[dict[str, Any]]) -> str:
    return table(
        [
            "batch",
            "records",
            "hand-written loop rec/s",
            "ductwork rec/s",
            "ratio (min-max)",
            "peak RSS MiB",
        ],
        [
            [
                r["batch_size"],
                f"{r['records']:,}",
                f"{r['loop_records_per_s']:,.0f}",
                f"{r['pipeline_records_per_s']:,.0f}",
                f"{r['ratio']:.2f} ({r['ratio_min']:.2f}-{r['ratio_max']:.2f})",
                f"{r['peak_rss_mb']:.0f}",
            ]
            for r in rows
        ],
    )


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", default="1000,100,10,1")
    parser.add_argument("--json", help="write the rows to this JSON file")
    args = parser.parse_args(argv)
    logging.disable(logging.CRITICAL)
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"core: {args.records:,} records, 3 stages; {machine()}; median of {args.repeats}")
    rows = measure(args.records, args.repeats, sizes)
    print(render(rows))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": machine(), "rows": rows}, fh, indent=2)
    return rows


_ = Timing  # re-exported for other benchmarks' type hints

if __name__ == "__main__":
    main()

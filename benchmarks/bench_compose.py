"""Composition overhead: parallel, sequential and retry compositions against hand-written code.

Each scenario runs the same pipelines twice in the same process: once through a composition and
once through the hand-written anyio code a user would otherwise write (a task group with a
capacity limiter, a ``for`` loop, a bare ``run()``). Prints the median wall time of each, the
ratio (hand-written / composition: 1.00 means no overhead; min-max in brackets), the overhead
per child run, and the peak RSS of the process after the scenario.

    python -m benchmarks.bench_compose [--children N] [--records N] [--repeats R] [--json PATH]
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio

from benchmarks._util import Timing, machine, peak_rss_mb, repeat, table
from ductwork import (
    Batch,
    Pipeline,
    RunContext,
    create_el_pipeline,
    create_parallel_pipeline,
    create_retry_pipeline,
    create_sequential_pipeline,
)


def make_source(total: int, batch_size: int) -> Callable[[RunContext], AsyncIterator[Batch]]:
    async def extract(ctx: RunContext) -> AsyncIterator[Batch]:
        for start in range(0, total, batch_size):
            stop = min(start + batch_size, total)
            yield [{"id": i, "value": 1.5} for i in range(start, stop)]

    return extract


def small_pipelines(n: int, records: int) -> list[Pipeline]:
    """``n`` pipelines of ``records`` records each, in batches of 100, with a counting sink."""
    return [
        create_el_pipeline(make_source(records, 100), lambda b: None, f"p{i}", logging=False)
        for i in range(n)
    ]


def parallel_scenario(n: int, records: int, workers: int) -> tuple[Any, Any]:
    pipelines = small_pipelines(n, records)
    composite = create_parallel_pipeline(pipelines, workers, logging=False)

    async def by_hand() -> None:
        limiter = anyio.CapacityLimiter(workers)

        async def one(pipeline: Pipeline) -> None:
            async with limiter:
                await pipeline.run()

        async with anyio.create_task_group() as tg:
            for pipeline in pipelines:
                tg.start_soon(one, pipeline)

    async def composed() -> None:
        result = await composite.run()
        assert result.records_out == n * records

    return by_hand, composed


def sequential_scenario(n: int, records: int) -> tuple[Any, Any]:
    pipelines = small_pipelines(n, records)
    composite = create_sequential_pipeline(pipelines, logging=False)

    async def by_hand() -> None:
        for pipeline in pipelines:
            await pipeline.run()

    async def composed() -> None:
        result = await composite.run()
        assert result.records_out == n * records

    return by_hand, composed


def retry_scenario(records: int) -> tuple[Any, Any]:
    pipeline = create_el_pipeline(make_source(records, 1000), lambda b: None, logging=False)
    composite = create_retry_pipeline(pipeline, logging=False)

    async def by_hand() -> None:
        await pipeline.run()

    async def composed() -> None:
        result = await composite.run()
        assert result.records_out == records

    return by_hand, composed


def measure(name: str, children: int, scenario: tuple[Any, Any], repeats: int) -> dict[str, Any]:
    by_hand, composed = scenario
    hand_samples: list[float] = []
    comp_samples: list[float] = []
    for _ in range(repeats):  # interleaved, so drift in machine load hits both alike
        gc.collect()
        hand_samples.append(repeat(lambda: anyio.run(by_hand), 1).median)
        gc.collect()
        comp_samples.append(repeat(lambda: anyio.run(composed), 1).median)
    hand, comp = Timing.of(hand_samples), Timing.of(comp_samples)
    return {
        "scenario": name,
        "children": children,
        "hand_written_s": hand.median,
        "composition_s": comp.median,
        "ratio": hand.median / comp.median,
        "ratio_min": hand.low / comp.high,
        "ratio_max": hand.high / comp.low,
        "overhead_per_child_us": (comp.median - hand.median) / children * 1e6,
        "peak_rss_mb": peak_rss_mb(),
    }


def render(rows: list[dict[str, Any]]) -> str:
    return table(
        [
            "scenario",
            "child runs",
            "hand-written s",
            "composition s",
            "ratio (min-max)",
            "overhead per child µs",
            "peak RSS MiB",
        ],
        [
            [
                r["scenario"],
                f"{r['children']:,}",
                f"{r['hand_written_s']:.4f}",
                f"{r['composition_s']:.4f}",
                f"{r['ratio']:.2f} ({r['ratio_min']:.2f}-{r['ratio_max']:.2f})",
                f"{r['overhead_per_child_us']:,.0f}",
                f"{r['peak_rss_mb']:.0f}",
            ]
            for r in rows
        ],
    )


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--children", type=int, default=500, help="child pipelines per scenario")
    parser.add_argument("--records", type=int, default=1000, help="records per child pipeline")
    parser.add_argument("--big", type=int, default=1_000_000, help="records through the retry")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--json", help="write the rows to this JSON file")
    args = parser.parse_args(argv)
    logging.disable(logging.CRITICAL)
    n, records = args.children, args.records
    print(
        f"compositions: {n} child pipelines of {records:,} records (batches of 100), "
        f"{args.big:,} records through a retry; {machine()}; median of {args.repeats}"
    )
    rows = [
        measure("parallel, max_workers=8", n, parallel_scenario(n, records, 8), args.repeats),
        measure("parallel, all at once", n, parallel_scenario(n, records, n), args.repeats),
        measure("sequential", n, sequential_scenario(n, records), args.repeats),
        measure("retry of one pipeline", 1, retry_scenario(args.big), args.repeats),
    ]
    print(render(rows))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": machine(), "rows": rows}, fh, indent=2)
    return rows


if __name__ == "__main__":
    main()

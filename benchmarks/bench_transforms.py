"""Transformer throughput: convert_types and transform_columns beside hand-written loops.

Each scenario transforms N records in batches, once with a ductwork transformer (opened for a run
and called per batch, as a pipeline does) and once with a hand-written per-batch function doing the
same work, on identical fresh input built outside the timed section; the two take turns chunk by
chunk. Prints records/s, the ratio of the hand-written time to the ductwork time (above 1:
ductwork is faster; the median of the repetitions' ratios, min-max in brackets) and peak RSS.

* ``convert_types``: five typed columns (int, float, ISO 8601 datetime with offset, bool words,
  UUID) and one untouched column.
* ``convert_types, 1% empty``: the same with one value in a hundred an empty string, which
  becomes ``None`` (``empty_as_none``; the hand-written loop checks each value).
* ``transform_columns``: two renames, one computed column, select four columns.

Then ``convert_types`` on records beside the same transformer on Arrow tables of the same data
(built from the same records outside the timed section, ``Table.from_pylist``), at the batch size
given and at ten times it: the ratio is the records time over the Arrow time (above 1: the Arrow
path is faster), and both outputs are checked to hold the same values.

    python -m benchmarks.bench_transforms [--records N] [--batch B] [--repeats R] [--json PATH]
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
from collections.abc import Callable
from datetime import datetime
from time import perf_counter
from typing import Any
from uuid import UUID

import anyio
import pyarrow as pa

from benchmarks._util import Timing, machine, peak_rss_mb, table
from ductwork import Batch, RunContext, convert_types, transform_columns

CHUNK = 50  # batches built (outside the timed section) and transformed at a time

UUIDS = [str(UUID(int=i * 7919 + 12345)) for i in range(1000)]
BOOLS = {"true": True, "false": False}


def make_batch(start: int, size: int, empty_every: int = 0) -> Batch:
    batch = [
        {
            "id": str(i),
            "price": f"{(i % 100_000) / 100:.2f}",
            "created_at": f"2024-05-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:00+02:00",
            "active": "true" if i % 3 else "false",
            "user_id": UUIDS[i % 1000],
            "name": "widget",
        }
        for i in range(start, start + size)
    ]
    if empty_every:
        for i, record in enumerate(batch):
            if (start + i) % empty_every == 0:
                record["price"] = ""
    return batch


def hand_convert(batch: Batch) -> Batch:
    for r in batch:
        r["id"] = int(r["id"])
        r["price"] = float(r["price"])
        r["created_at"] = datetime.fromisoformat(r["created_at"])
        r["active"] = BOOLS[r["active"]]
        r["user_id"] = UUID(r["user_id"])
    return batch


def hand_convert_empty(batch: Batch) -> Batch:
    for r in batch:
        r["id"] = int(r["id"]) if r["id"] != "" else None
        r["price"] = float(r["price"]) if r["price"] != "" else None
        value = r["created_at"]
        r["created_at"] = datetime.fromisoformat(value) if value != "" else None
        r["active"] = BOOLS[r["active"]] if r["active"] != "" else None
        r["user_id"] = UUID(r["user_id"]) if r["user_id"] != "" else None
    return batch


def hand_columns(batch: Batch) -> Batch:
    return [
        {
            "id": r["id"],
            "uid": r["user_id"],
            "price": r["price"],
            "label": r["name"] + "/" + r["active"],
        }
        for r in batch
    ]


TYPES = {
    "id": int,
    "price": float,
    "created_at": datetime,
    "active": bool,
    "user_id": UUID,
}


def scenarios() -> list[tuple[str, Any, Callable[[Batch], Batch], int]]:
    return [
        ("convert_types", convert_types(TYPES), hand_convert, 0),
        (
            "convert_types, 1% empty",
            convert_types(TYPES, empty_as_none=True),
            hand_convert_empty,
            100,
        ),
        (
            "transform_columns",
            transform_columns(
                {"user_id": "uid"},
                {"label": lambda r: r["name"] + "/" + r["active"]},
                select=["id", "uid", "price", "label"],
            ),
            hand_columns,
            0,
        ),
    ]


def time_pair(
    stage: Any, fn: Callable[[Batch], Batch], total: int, size: int, empty_every: int
) -> tuple[float, float]:
    """Seconds spent by the hand-written function and by the ductwork stage on the same input.

    The two take turns chunk by chunk (each on its own fresh copy), so a change in machine load
    during the run affects both alike.
    """

    def build(start: int, stop: int) -> list[Batch]:
        return [make_batch(s, min(size, stop - s), empty_every) for s in range(start, stop, size)]

    async def main() -> tuple[float, float]:
        ctx = RunContext(pipeline="bench")
        hand = ours = 0.0
        async with stage.open(ctx) as run:
            for k, start in enumerate(range(0, total, size * CHUNK)):
                stop = min(start + size * CHUNK, total)
                for side in (0, 1) if k % 2 == 0 else (1, 0):
                    batches = build(start, stop)
                    gc.collect()
                    t0 = perf_counter()
                    if side == 0:
                        for batch in batches:
                            fn(batch)
                        hand += perf_counter() - t0
                    else:
                        for batch in batches:
                            await run.transform(batch, ctx)
                        ours += perf_counter() - t0
                    del batches
        return hand, ours

    return anyio.run(main)


def check_same_output(stage: Any, fn: Callable[[Batch], Batch], empty_every: int) -> None:
    """Both sides must do the same work: compare their output on one batch."""
    expected = fn(make_batch(0, 500, empty_every))
    got = anyio.run(stage.transform, make_batch(0, 500, empty_every), RunContext())
    assert got == expected, "the ductwork and hand-written transforms disagree"


def measure(total: int, size: int, repeats: int) -> list[dict[str, Any]]:
    rows = []
    for name, stage, fn, empty_every in scenarios():
        check_same_output(stage, fn, empty_every)
        pairs = [time_pair(stage, fn, total, size, empty_every) for _ in range(repeats)]
        hand = Timing.of([h for h, _ in pairs])
        ours = Timing.of([o for _, o in pairs])
        ratios = Timing.of([h / o for h, o in pairs])
        rows.append(
            {
                "scenario": name,
                "records": total,
                "batch_size": size,
                "hand_records_per_s": total / hand.median,
                "ductwork_records_per_s": total / ours.median,
                "ratio": ratios.median,
                "ratio_min": ratios.low,
                "ratio_max": ratios.high,
                "peak_rss_mb": peak_rss_mb(),
            }
        )
    return rows


def time_kinds(stage: Any, total: int, size: int, empty_every: int) -> tuple[float, float]:
    """Seconds spent by ``stage`` on records and on Arrow tables of the same data, taking turns
    chunk by chunk as :func:`time_pair` does."""

    async def main() -> tuple[float, float]:
        ctx = RunContext(pipeline="bench")
        records = arrow = 0.0
        async with stage.open(ctx) as run:
            for k, start in enumerate(range(0, total, size * CHUNK)):
                stop = min(start + size * CHUNK, total)
                for side in (0, 1) if k % 2 == 0 else (1, 0):
                    batches: list[Any] = [
                        make_batch(s, min(size, stop - s), empty_every)
                        for s in range(start, stop, size)
                    ]
                    if side == 1:
                        batches = [pa.Table.from_pylist(batch) for batch in batches]
                    gc.collect()
                    t0 = perf_counter()
                    for batch in batches:
                        await run.transform(batch, ctx)
                    if side == 0:
                        records += perf_counter() - t0
                    else:
                        arrow += perf_counter() - t0
                    del batches
        return records, arrow

    return anyio.run(main)


def measure_kinds(total: int, size: int, repeats: int) -> list[dict[str, Any]]:
    """``convert_types`` on records beside the same stage on Arrow tables."""
    rows = []
    for name, empty_every, options in (
        ("convert_types", 0, {}),
        ("convert_types, 1% empty", 100, {"empty_as_none": True}),
    ):
        stage = convert_types(TYPES, **options)
        expected = anyio.run(stage.transform, make_batch(0, 500, empty_every), RunContext())
        table = pa.Table.from_pylist(make_batch(0, 500, empty_every))
        got = anyio.run(stage.transform, table, RunContext()).to_pylist()
        assert got == expected, "convert_types disagrees on records and on Arrow"
        for batch_size in (size, size * 10):
            pairs = [time_kinds(stage, total, batch_size, empty_every) for _ in range(repeats)]
            on_records = Timing.of([r for r, _ in pairs])
            on_arrow = Timing.of([a for _, a in pairs])
            ratios = Timing.of([r / a for r, a in pairs])
            rows.append(
                {
                    "scenario": name,
                    "records": total,
                    "batch_size": batch_size,
                    "records_per_s_on_records": total / on_records.median,
                    "records_per_s_on_arrow": total / on_arrow.median,
                    "ratio": ratios.median,
                    "ratio_min": ratios.low,
                    "ratio_max": ratios.high,
                    "peak_rss_mb": peak_rss_mb(),
                }
            )
    return rows


def render_kinds(rows: list[dict[str, Any]]) -> str:
    return table(
        [
            "scenario",
            "batch",
            "records: rec/s",
            "Arrow: rec/s",
            "records / Arrow time (min-max)",
            "peak RSS MiB",
        ],
        [
            [
                r["scenario"],
                f"{r['batch_size']:,}",
                f"{r['records_per_s_on_records']:,.0f}",
                f"{r['records_per_s_on_arrow']:,.0f}",
                f"{r['ratio']:.2f} ({r['ratio_min']:.2f}-{r['ratio_max']:.2f})",
                f"{r['peak_rss_mb']:.0f}",
            ]
            for r in rows
        ],
    )


def render(rows: list[dict[str, Any]]) -> str:
    return table(
        [
            "scenario",
            "records",
            "hand-written rec/s",
            "ductwork rec/s",
            "ratio (min-max)",
            "peak RSS MiB",
        ],
        [
            [
                r["scenario"],
                f"{r['records']:,}",
                f"{r['hand_records_per_s']:,.0f}",
                f"{r['ductwork_records_per_s']:,.0f}",
                f"{r['ratio']:.2f} ({r['ratio_min']:.2f}-{r['ratio_max']:.2f})",
                f"{r['peak_rss_mb']:.0f}",
            ]
            for r in rows
        ],
    )


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", help="write the rows to this JSON file")
    args = parser.parse_args(argv)
    logging.disable(logging.CRITICAL)
    print(
        f"transforms: {args.records:,} records in batches of {args.batch}; {machine()}; "
        f"median of {args.repeats}"
    )
    rows = measure(args.records, args.batch, args.repeats)
    print(render(rows))
    kinds = measure_kinds(args.records, args.batch, args.repeats)
    print("convert_types on records beside Arrow tables of the same data:")
    print(render_kinds(kinds))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": machine(), "rows": rows, "kinds": kinds}, fh, indent=2)
    return rows + kinds


if __name__ == "__main__":
    main()

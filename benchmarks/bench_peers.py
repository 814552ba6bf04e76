"""ductwork beside its peers: the same 3-stage in-memory pipeline, library by library.

extract (an async generator of batches) → one trivial transform → a counting sink, with the same
records, batches and functions for every library, at batch size 1000 and batch size 1:

* ``hand-written loop`` — the baseline: ``async for batch in source: sink(transform(batch))``, one
  task, no queues.
* ``hand-written loop, 2 x 8 batches held`` — the same loop with a FIFO of 8 batches before the
  transform and one before the sink: one task, but as many batches alive as in a 3-stage pipeline
  with full queues. It shows what holding the batches costs by itself, apart from scheduling.
* ``ductwork`` — ``create_etl_pipeline(source, transform, sink)``: three tasks, bounded channels.
* ``asyncio.Queue chain`` — three tasks of one ``asyncio.TaskGroup`` joined by two
  ``asyncio.Queue(maxsize=8)``, a sentinel to end.
* ``anyio streams (naive)`` — three tasks of one anyio task group joined by two
  ``anyio.create_memory_object_stream(8)``, with ``await send()`` and ``async for``.
* ``aiostream`` — ``stream.iterate(source) | pipe.map(transform)`` consumed by ``async for``:
  pull-based operators, all in the consumer's task.
* ``pypeln`` — ``pypeln.task.map(transform, source, maxsize=8)`` then
  ``pypeln.task.each(sink, ..., maxsize=8)``, awaited: one worker task per stage.

Every bounded queue holds 8 batches (ductwork's default ``queue_size``). The timings run in one
process, interleaved round by round after one warm-up round, each run in a fresh event loop; the
peak RSS of each library is measured apart, in a fresh process per library and batch size that runs
the workload once and imports only what that library needs.

    python -m benchmarks.bench_peers [--quick] [--records N] [--repeats R] [--peers a,b]
                                     [--clock wall|cpu]

``--records`` is the count at batch size 1000; batch size 1 runs a tenth of it.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from benchmarks._util import (
    emit,
    interleave,
    machine,
    paired_ratio,
    rss_mb,
    run_child,
    span,
    spread,
    table,
)
from benchmarks._workload import (
    CLOCKS,
    QUEUE_SIZE,
    Counter,
    Runner,
    buffered_loop,
    hand_written_loop,
    make_source,
    timed,
    transform,
)

BATCH_SIZES = (1000, 1)
BASELINE = "loop"


async def ductwork_pipeline(total: int, batch_size: int, sink: Counter) -> None:
    from ductwork import create_etl_pipeline

    pipeline = create_etl_pipeline(
        make_source(total, batch_size), transform, sink, name="bench", logging=False
    )
    result = await pipeline.run()
    assert result.records_out == total


async def asyncio_queue_chain(total: int, batch_size: int, sink: Counter) -> None:
    first: asyncio.Queue[Any] = asyncio.Queue(QUEUE_SIZE)
    second: asyncio.Queue[Any] = asyncio.Queue(QUEUE_SIZE)

    async def extract() -> None:
        async for batch in make_source(total, batch_size)():
            await first.put(batch)
        await first.put(None)

    async def transform_stage() -> None:
        while (batch := await first.get()) is not None:
            await second.put(transform(batch))
        await second.put(None)

    async def load() -> None:
        while (batch := await second.get()) is not None:
            sink(batch)

    async with asyncio.TaskGroup() as tg:
        tg.create_task(extract())
        tg.create_task(transform_stage())
        tg.create_task(load())


async def anyio_naive_chain(total: int, batch_size: int, sink: Counter) -> None:
    import anyio

    send1, recv1 = anyio.create_memory_object_stream[Any](QUEUE_SIZE)
    send2, recv2 = anyio.create_memory_object_stream[Any](QUEUE_SIZE)

    async def extract() -> None:
        async with send1:
            async for batch in make_source(total, batch_size)():
                await send1.send(batch)

    async def transform_stage() -> None:
        async with recv1, send2:
            async for batch in recv1:
                await send2.send(transform(batch))

    async def load() -> None:
        async with recv2:
            async for batch in recv2:
                sink(batch)

    async with anyio.create_task_group() as tg:
        tg.start_soon(extract)
        tg.start_soon(transform_stage)
        tg.start_soon(load)


async def aiostream_chain(total: int, batch_size: int, sink: Counter) -> None:
    from aiostream import pipe, stream

    xs = stream.iterate(make_source(total, batch_size)()) | pipe.map(transform)
    async with xs.stream() as streamer:
        async for batch in streamer:
            sink(batch)


async def pypeln_chain(total: int, batch_size: int, sink: Counter) -> None:
    import pypeln

    stage = pypeln.task.map(
        transform, make_source(total, batch_size)(), workers=1, maxsize=QUEUE_SIZE
    )
    await pypeln.task.each(sink, stage, workers=1, maxsize=QUEUE_SIZE)


@dataclass(frozen=True)
class Peer:
    label: str
    runner: Runner
    requires: tuple[str, ...] = ()


PEERS: dict[str, Peer] = {
    "loop": Peer("hand-written loop", hand_written_loop),
    "loop-buffered": Peer("hand-written loop, 2 x 8 batches held", buffered_loop),
    "ductwork": Peer("ductwork", ductwork_pipeline, ("ductwork",)),
    "asyncio-queue": Peer("asyncio.Queue chain", asyncio_queue_chain),
    "anyio-naive": Peer("anyio streams (naive)", anyio_naive_chain, ("anyio",)),
    "aiostream": Peer("aiostream", aiostream_chain, ("aiostream",)),
    "pypeln": Peer("pypeln (task)", pypeln_chain, ("pypeln",)),
}


def _import(peer: Peer) -> None:
    for name in peer.requires:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise SystemExit(
                f"{peer.label} needs {name!r}: install the benchmark extra, "
                f"pip install -e '.[bench]'"
            ) from exc


def _case(peer: Peer, total: int, batch_size: int, clock: str) -> Callable[[], float]:
    return lambda: asyncio.run(timed(peer.runner, total, batch_size, clock))


def _version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "stdlib"


def measure(
    records: int,
    repeats: int,
    names: list[str],
    sizes: tuple[int, ...] = BATCH_SIZES,
    clock: str = "wall",
) -> list[dict[str, Any]]:
    peers = {name: PEERS[name] for name in names}
    for peer in peers.values():
        _import(peer)
    rows: list[dict[str, Any]] = []
    for size in sizes:
        total = records if size >= 1000 else max(records // 10, 1)
        samples = interleave(
            {name: _case(peer, total, size, clock) for name, peer in peers.items()},
            rounds=repeats,
        )
        for name, peer in peers.items():
            child = run_child(
                "benchmarks.bench_peers",
                "--child",
                name,
                "--batch",
                str(size),
                "--records",
                str(total),
            )
            secs = spread(samples[name])
            row: dict[str, Any] = {
                "batch_size": size,
                "records": total,
                "repeats": repeats,
                "clock": clock,
                "peer": name,
                "label": peer.label,
                "version": _version(peer.requires[0]) if peer.requires else "stdlib",
                "records_per_s": total / secs.median,
                "records_per_s_min": total / secs.high,
                "records_per_s_max": total / secs.low,
                "peak_rss_mb": child["peak_rss_mb"],
                "rss_before_mb": child["rss_before_mb"],
            }
            if BASELINE in samples:
                vs_loop = paired_ratio(samples[BASELINE], samples[name])
                row |= {
                    "ratio": vs_loop.median,
                    "ratio_min": vs_loop.low,
                    "ratio_max": vs_loop.high,
                }
            if "ductwork" in samples and name != "ductwork":
                # How many times faster ductwork is than this library, per round.
                speedup = paired_ratio(samples[name], samples["ductwork"])
                row |= {
                    "ductwork_speedup": speedup.median,
                    "ductwork_speedup_min": speedup.low,
                    "ductwork_speedup_max": speedup.high,
                }
            rows.append(row)
    return rows


def render(rows: list[dict[str, Any]]) -> str:
    return table(
        [
            "batch",
            "library",
            "records",
            "rec/s (min-max)",
            "vs hand-written loop",
            "ductwork is N x as fast",
            "peak RSS MiB (before the run)",
        ],
        [
            [
                r["batch_size"],
                r["label"] if r["version"] == "stdlib" else f"{r['label']} {r['version']}",
                f"{r['records']:,}",
                span(r, "records_per_s"),
                span(r, "ratio", ".2f"),
                span(r, "ductwork_speedup", ".1f"),
                f"{r['peak_rss_mb']:.0f} ({r['rss_before_mb']:.0f})",
            ]
            for r in rows
        ],
    )


def child(name: str, batch_size: int, records: int) -> None:
    """Run one peer once in this (fresh) process and emit its seconds and peak RSS."""
    peer = PEERS[name]
    _import(peer)
    before = rss_mb()
    emit(
        peer=name,
        rss_before_mb=before,
        seconds=asyncio.run(timed(peer.runner, records, batch_size)),
    )


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="300,000 records, 3 repetitions")
    parser.add_argument("--records", type=int, default=None, help="at batch 1000; default 2M")
    parser.add_argument("--repeats", type=int, default=None, help="default 5")
    parser.add_argument("--peers", default=",".join(PEERS), help="comma-separated subset")
    parser.add_argument(
        "--clock",
        choices=list(CLOCKS),
        default="wall",
        help="time runs by the wall clock (default) or by the CPU time of the process",
    )
    parser.add_argument("--json", help="write the rows to this JSON file")
    parser.add_argument("--child", choices=list(PEERS), help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=1000, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.disable(logging.CRITICAL)
    if args.child:
        child(args.child, args.batch, args.records)
        return []
    records = args.records or (300_000 if args.quick else 2_000_000)
    repeats = args.repeats or (3 if args.quick else 5)
    names = [n.strip() for n in args.peers.split(",") if n.strip()]
    unknown = sorted(set(names) - set(PEERS))
    if unknown:
        parser.error(f"unknown peers {unknown}; choose from {list(PEERS)}")
    print(
        f"peers: 3 stages, {records:,} records at batch 1000 and {max(records // 10, 1):,} at "
        f"batch 1, queues of {QUEUE_SIZE} batches; {machine()}; "
        f"median of {repeats} interleaved rounds after 1 warm-up; {args.clock} clock\n",
        flush=True,
    )
    rows = measure(records, repeats, names, clock=args.clock)
    print(render(rows))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": machine(), "rows": rows}, fh, indent=2)
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])

"""The in-memory workload shared by the core, peer and memory benchmarks.

Records of three fields, made in batches by an async generator; one trivial transform that
rewrites a field in place; a sink that counts records. This module imports nothing but the
standard library, so a child process measuring a peer's peak RSS does not pay for ductwork's
imports.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from time import perf_counter, process_time
from typing import Any

Batch = list[dict[str, Any]]

#: Bound of every queue between two stages, for every library that has one (ductwork's default).
QUEUE_SIZE = 8


def make_source(total: int, batch_size: int) -> Callable[..., AsyncIterator[Batch]]:
    """An extractor: an async generator function yielding ``total`` records in batches."""

    async def extract(*_: Any) -> AsyncIterator[Batch]:
        for start in range(0, total, batch_size):
            stop = min(start + batch_size, total)
            yield [{"id": i, "name": "x", "value": 1.5} for i in range(start, stop)]

    return extract


def transform(batch: Batch) -> Batch:
    """The trivial transform: double one field of every record, in place."""
    for record in batch:
        record["value"] = record["value"] * 2
    return batch


class Counter:
    """The sink: counts the records it is given."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, batch: Batch) -> None:
        self.count += len(batch)


async def hand_written_loop(total: int, batch_size: int, sink: Counter) -> None:
    """The baseline: the same three steps as a plain ``async for`` loop in one task."""
    async for batch in make_source(total, batch_size)():
        sink(transform(batch))


async def buffered_loop(total: int, batch_size: int, sink: Counter) -> None:
    """The loop of one task, holding as many batches in flight as a 3-stage pipeline can.

    Two FIFOs of ``QUEUE_SIZE`` batches sit between extract and transform and between transform
    and sink, as the queues of a pipeline do, but nothing runs concurrently. Beside the plain loop
    it shows what holding those batches costs by itself (memory traffic, not scheduling).
    """
    to_transform: deque[Batch] = deque()
    to_sink: deque[Batch] = deque()
    async for batch in make_source(total, batch_size)():
        to_transform.append(batch)
        if len(to_transform) > QUEUE_SIZE:
            to_sink.append(transform(to_transform.popleft()))
            if len(to_sink) > QUEUE_SIZE:
                sink(to_sink.popleft())
    while to_transform:
        to_sink.append(transform(to_transform.popleft()))
    while to_sink:
        sink(to_sink.popleft())


Runner = Callable[[int, int, Counter], Awaitable[None]]


#: The clocks a run can be timed with: wall-clock time, or CPU time of this process (all threads),
#: which leaves out the time other processes on a busy machine take the CPU away.
CLOCKS: dict[str, Callable[[], float]] = {"wall": perf_counter, "cpu": process_time}


async def timed(runner: Runner, total: int, batch_size: int, clock: str = "wall") -> float:
    """Run ``runner`` on the workload inside the event loop; return its seconds on ``clock``.

    Raises:
        AssertionError: the sink did not count exactly ``total`` records.
    """
    now = CLOCKS[clock]
    sink = Counter()
    t0 = now()
    await runner(total, batch_size, sink)
    seconds = now() - t0
    if sink.count != total:
        raise AssertionError(f"sink counted {sink.count:,} records, expected {total:,}")
    return seconds

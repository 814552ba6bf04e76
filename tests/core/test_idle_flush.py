"""A buffering sink can flush on time while its input pauses (``idle_after``/``on_idle``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from time import monotonic

import anyio

from ductwork import Batch, Loader, RunContext, create_el_pipeline


class TimedBuffer(Loader):
    name = "timed_buffer"

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.flushed: list[tuple[float, list[int]]] = []
        self.started = 0.0

    @asynccontextmanager
    async def open(self, ctx: RunContext) -> AsyncIterator[TimedBuffer._Sink]:
        self.started = monotonic()
        sink = self._Sink(self)
        yield sink
        await sink.flush()

    class _Sink:
        def __init__(self, loader: TimedBuffer) -> None:
            self.loader = loader
            self.buffer: list[int] = []
            self.since: float | None = None

        @property
        def idle_after(self) -> float | None:
            if self.since is None:
                return None
            return max(0.0, self.since + self.loader.interval - monotonic())

        async def on_idle(self) -> None:
            if self.idle_after == 0.0:
                await self.flush()

        async def write(self, batch: Batch) -> None:
            if self.since is None:
                self.since = monotonic()
            self.buffer.extend(r["n"] for r in batch)

        async def flush(self) -> None:
            if self.buffer:
                self.loader.flushed.append((monotonic() - self.loader.started, self.buffer))
            self.buffer = []
            self.since = None


async def test_buffer_is_flushed_while_the_input_pauses() -> None:
    async def extract() -> AsyncIterator[Batch]:
        yield [{"n": 1}, {"n": 2}]
        await anyio.sleep(0.5)  # the source pauses; the buffered records must not wait for it
        yield [{"n": 3}]

    loader = TimedBuffer(interval=0.1)
    result = await create_el_pipeline(extract, loader, logging=False).run()
    assert result.records_out == 3
    assert [records for _, records in loader.flushed] == [[1, 2], [3]]
    first_flush_at = loader.flushed[0][0]
    assert first_flush_at < 0.45  # during the pause, not when the next batch came
    assert result.stages[-1].wait_input_seconds > 0.3  # the pause is still counted as waiting


async def test_no_batch_is_lost_when_the_idle_timer_fires_repeatedly() -> None:
    async def extract() -> AsyncIterator[Batch]:
        for i in range(20):
            yield [{"n": i}]
            await anyio.sleep(0.01)

    loader = TimedBuffer(interval=0.005)
    result = await create_el_pipeline(extract, loader, logging=False, queue_size=1).run()
    assert result.records_out == 20
    assert [n for _, records in loader.flushed for n in records] == list(range(20))
    assert len(loader.flushed) > 1

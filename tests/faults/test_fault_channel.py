"""Several senders on one channel: a push extractor's ``emit`` called from many tasks of its task
group never hangs, loses nothing and keeps each producer's order (property tests over producer
counts, delays and queue sizes)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from anyio import EndOfStream
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ductwork import Batch, Extractor, RunContext, create_el_pipeline
from ductwork.core.channel import Channel

Emit = Callable[[Batch], Awaitable[None]]

delays = st.sampled_from([0.0, 0.0, 0.0005, 0.001])
producers = st.lists(st.tuples(st.integers(1, 40), delays), min_size=1, max_size=6)


def check(received: list[tuple[int, int]], plan: list[tuple[int, float]]) -> None:
    for producer, (count, _) in enumerate(plan):
        assert [n for p, n in received if p == producer] == list(range(count))
    assert len(received) == sum(count for count, _ in plan)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=producers, queue_size=st.integers(1, 8), consumer_delay=st.sampled_from([0, 0.0005]))
def test_channel_with_several_senders(
    plan: list[tuple[int, float]], queue_size: int, consumer_delay: float
) -> None:
    async def main() -> list[tuple[int, int]]:
        channel = Channel[tuple[int, int]](queue_size)
        received: list[tuple[int, int]] = []

        async def produce(producer: int, count: int, delay: float) -> None:
            for n in range(count):
                await channel.send((producer, n))
                if delay:
                    await anyio.sleep(delay)

        async def senders() -> None:
            async with anyio.create_task_group() as tg:
                for producer, (count, delay) in enumerate(plan):
                    tg.start_soon(produce, producer, count, delay)
            channel.close_send()

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(senders)
                while True:
                    try:
                        received.append(await channel.receive())
                    except EndOfStream:
                        break
                    if consumer_delay:
                        await anyio.sleep(consumer_delay)
        return received

    check(anyio.run(main), plan)


class FanIn(Extractor):
    """Emits from one task per producer, all at once."""

    name = "fan_in"

    def __init__(self, plan: list[tuple[int, float]]) -> None:
        self.plan = plan

    def extract(self, ctx: RunContext) -> Any:
        raise AssertionError("produce() is used")

    async def produce(self, ctx: RunContext, emit: Emit) -> None:
        async def one(producer: int, count: int, delay: float) -> None:
            for n in range(count):
                await emit([{"p": producer, "n": n}])
                if delay:
                    await anyio.sleep(delay)

        async with anyio.create_task_group() as tg:
            for producer, (count, delay) in enumerate(self.plan):
                tg.start_soon(one, producer, count, delay)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=producers, queue_size=st.integers(1, 8))
def test_push_extractor_emitting_from_a_task_group(
    plan: list[tuple[int, float]], queue_size: int
) -> None:
    async def main() -> list[tuple[int, int]]:
        rows: list[dict[str, int]] = []

        async def load(batch: Batch) -> None:
            rows.extend(batch)
            await anyio.sleep(0)

        pipeline = create_el_pipeline(FanIn(plan), load, queue_size=queue_size, logging=False)
        with anyio.fail_after(20):
            result = await pipeline.run()
        assert result.records_out == len(rows)
        return [(r["p"], r["n"]) for r in rows]

    check(anyio.run(main), plan)


async def test_two_emitting_tasks_finish() -> None:
    """The case that hung: two tasks emitting 1000 batches each through a queue of 2."""
    rows: list[dict[str, int]] = []
    pipeline = create_el_pipeline(FanIn([(1000, 0.0), (1000, 0.0)]), rows.extend, queue_size=2)
    with anyio.fail_after(20):
        await pipeline.run()
    assert len(rows) == 2000

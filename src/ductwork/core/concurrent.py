"""A transformer stage with ``concurrency > 1``: several batches at once, passed on in order."""

from __future__ import annotations

import inspect
from typing import Any

import anyio

from .context import RunContext
from .errors import INTERRUPTS
from .port import Port
from .types import Batch

__all__ = ["transform_concurrent"]


class _Slot:
    """One batch in flight in a concurrent transformer: filled by a worker, read in order."""

    __slots__ = ("batch", "error", "event", "number", "out")

    def __init__(self, batch: Batch, number: int) -> None:
        self.batch = batch
        self.number = number  # the batch's 1-based number in the stage's input
        self.event = anyio.Event()
        self.out: Any = None
        self.error: BaseException | None = None


async def transform_concurrent(
    n: int, call: tuple[Any, bool, bool], ctx: RunContext, port: Port, skip: bool
) -> None:
    """Transform up to ``n`` batches at once with ``call`` (``(fn, pass_ctx, is_async)``),
    passing results on in input order; with ``skip``, a batch whose call raised is dropped.

    Blocked time is the dispatcher's wait for input plus the collector's wait to pass output
    on; the two can overlap, so for a concurrent stage busy time is an approximation.
    """
    fn, pass_ctx, is_async = call
    slots_send, slots_recv = anyio.create_memory_object_stream[_Slot](max_buffer_size=n)
    workers = anyio.Semaphore(n)

    async def work(slot: _Slot) -> None:
        try:
            out = fn(slot.batch, ctx) if pass_ctx else fn(slot.batch)
            if is_async or inspect.isawaitable(out):
                out = await out
            slot.out = out
        except (Exception, *INTERRUPTS) as exc:
            slot.error = exc
        finally:
            workers.release()
            slot.event.set()

    # The first failure, with its batch number. The collector records it and cancels the
    # stage's tasks, so the stage raises that error alone: raised inside the task group it
    # would be wrapped in a group beside the dispatcher's errors, at the dispatcher's batch.
    failure: list[tuple[BaseException, int]] = []

    async def collect() -> None:
        number = 0
        try:
            async for slot in slots_recv:
                number = slot.number
                if not slot.event.is_set():
                    await slot.event.wait()  # the stage is working: not counted as blocked
                if slot.error is not None:
                    if not skip or not isinstance(slot.error, Exception):
                        raise slot.error
                    port.skip_batch(slot.batch, slot.error)
                elif (held := port.put(slot.out)) is not None:
                    await port.send_held(held)
        except (Exception, *INTERRUPTS) as exc:
            failure.append((exc, number))
            tg.cancel_scope.cancel()

    async with slots_recv, anyio.create_task_group() as tg:
        tg.start_soon(collect)
        with slots_send:
            while (batch := await port.wait_input()) is not None:
                port.stats.batches_in += 1
                port.stats.records_in += len(batch)
                slot = _Slot(batch, port.stats.batches_in)
                await slots_send.send(slot)  # waits while `concurrency` results are pending
                await workers.acquire()
                tg.start_soon(work, slot)
    if failure:
        error, port.failed_at = failure[0]
        raise error

"""SIGINT and SIGTERM during a command: they cancel its work, which ends as :class:`Interrupted`."""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

from ..core.errors import unwrap_group

T = TypeVar("T")


class Interrupted(Exception):
    """SIGINT or SIGTERM cancelled the command's work."""

    def __init__(self, signum: signal.Signals) -> None:
        super().__init__(signum.name)
        self.signum = signum


async def interruptible(fn: Callable[[], Awaitable[T]]) -> T:
    """Await ``fn()``; SIGINT or SIGTERM cancel it and raise :class:`Interrupted`."""
    received: list[signal.Signals] = []
    value: list[T] = []
    try:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with anyio.create_task_group() as tg:

                async def watch() -> None:
                    async for signum in signals:
                        received.append(signal.Signals(signum))
                        work.cancel()

                tg.start_soon(watch)
                try:
                    with anyio.CancelScope() as work:
                        value.append(await fn())
                finally:
                    tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        raise unwrap_group(group) from None
    if received:
        raise Interrupted(received[0])
    return value[0]

"""A bounded multi-producer, single-consumer channel for batches between two stages.

It has the semantics of an anyio memory object stream of ``max_buffer_size`` items (a full
channel blocks the sender, an empty one the receiver; closing the send side ends the stream with
``EndOfStream`` once drained; closing the receive side makes sends raise
``BrokenResourceError``), with two differences that matter at small batch sizes:

* ``send_nowait``/``receive_nowait`` are the hot path, and the awaiting calls are used only when a
  stage really has to wait. Waiting is a cancellation point. On asyncio a waiter is a bare future
  of the running loop (a fifth of the cost of an ``anyio.Event``); on other anyio backends it is an
  ``anyio.Event``.
* A blocked sender is woken when the buffer has drained to its low-water mark (half full), not after
  every item, so the two stages trade the event loop once per ``max_buffer_size / 2`` batches
  instead of once per batch.

Several tasks may send at once (a push extractor's ``emit`` called from a task group): each
blocked sender waits on its own waiter, all of them are woken at the low-water mark (and when
the receive side closes), and those that find the buffer full again wait again. Items of one
sender keep their order; items of different senders interleave.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Generator
from typing import Any, Generic, TypeVar

import anyio
from anyio import BrokenResourceError, ClosedResourceError, EndOfStream, WouldBlock

__all__ = ["Channel"]

T = TypeVar("T")


class _EventWaiter:
    """A one-shot waiter with the future interface the channel uses, over ``anyio.Event``."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = anyio.Event()

    def done(self) -> bool:
        return self._event.is_set()

    def set_result(self, _: None) -> None:
        self._event.set()

    def __await__(self) -> Generator[Any, None, None]:
        return self._event.wait().__await__()


def _waiter_factory() -> Callable[[], Any]:
    """Return a function making one-shot waiters for the running event loop."""
    try:
        return asyncio.get_running_loop().create_future
    except RuntimeError:  # not running on asyncio (e.g. trio)
        return _EventWaiter


class Channel(Generic[T]):
    """A bounded channel, several senders and one receiver; see the module docstring."""

    __slots__ = (
        "_buffer",
        "_low_water",
        "_max",
        "_new_waiter",
        "_receive_closed",
        "_receiver_waiting",
        "_send_closed",
        "_senders_waiting",
    )

    def __init__(self, max_buffer_size: int) -> None:
        """Create a channel; call it from inside the event loop that will use it."""
        if max_buffer_size < 1:
            raise ValueError("max_buffer_size must be at least 1")
        self._new_waiter = _waiter_factory()
        self._buffer: deque[T] = deque()
        self._max = max_buffer_size
        self._low_water = max_buffer_size // 2
        self._send_closed = False
        self._receive_closed = False
        self._senders_waiting: list[Any] = []
        self._receiver_waiting: Any = None

    def __len__(self) -> int:
        return len(self._buffer)

    # ------------------------------------------------------------------ send side

    def send_nowait(self, item: T) -> None:
        """Append ``item`` or raise ``WouldBlock`` when the buffer is full."""
        if self._send_closed:
            raise ClosedResourceError
        if self._receive_closed:
            raise BrokenResourceError
        buffer = self._buffer
        if len(buffer) >= self._max:
            raise WouldBlock
        buffer.append(item)
        waiter = self._receiver_waiting
        if waiter is not None:
            self._receiver_waiting = None
            if not waiter.done():
                waiter.set_result(None)

    async def send(self, item: T) -> None:
        """Append ``item``, waiting while the buffer is full."""
        while True:
            try:
                self.send_nowait(item)
                return
            except WouldBlock:
                pass
            waiter = self._new_waiter()
            self._senders_waiting.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._senders_waiting:  # cancelled before it was woken
                    self._senders_waiting.remove(waiter)

    def close_send(self) -> None:
        """Close the send side: the receiver gets ``EndOfStream`` once the buffer is drained."""
        self._send_closed = True
        waiter = self._receiver_waiting
        if waiter is not None:
            self._receiver_waiting = None
            if not waiter.done():
                waiter.set_result(None)

    # ------------------------------------------------------------------ receive side

    def receive_nowait(self) -> T:
        """Pop the oldest item; raise ``WouldBlock`` when empty, ``EndOfStream`` when done."""
        buffer = self._buffer
        if buffer:
            item = buffer.popleft()
            if self._senders_waiting and len(buffer) <= self._low_water:
                self._wake_senders()
            return item
        if self._receive_closed:
            raise ClosedResourceError
        if self._send_closed:
            raise EndOfStream
        raise WouldBlock

    async def receive(self) -> T:
        """Pop the oldest item, waiting while the buffer is empty."""
        while True:
            try:
                return self.receive_nowait()
            except WouldBlock:
                pass
            waiter = self._receiver_waiting = self._new_waiter()
            try:
                await waiter
            finally:
                if self._receiver_waiting is waiter:
                    self._receiver_waiting = None

    def close_receive(self) -> None:
        """Close the receive side: pending and later sends raise ``BrokenResourceError``."""
        self._receive_closed = True
        self._buffer.clear()
        self._wake_senders()

    def _wake_senders(self) -> None:
        waiting, self._senders_waiting = self._senders_waiting, []
        for waiter in waiting:
            if not waiter.done():
                waiter.set_result(None)

"""The bounded SPSC channel between stages."""

from __future__ import annotations

import anyio
import pytest
from anyio import BrokenResourceError, ClosedResourceError, EndOfStream, WouldBlock

from ductwork.core.channel import Channel


async def test_fifo_and_bound() -> None:
    ch = Channel[int](3)
    for i in range(3):
        ch.send_nowait(i)
    with pytest.raises(WouldBlock):
        ch.send_nowait(3)
    assert [ch.receive_nowait() for _ in range(3)] == [0, 1, 2]
    with pytest.raises(WouldBlock):
        ch.receive_nowait()


async def test_end_of_stream_after_drain() -> None:
    ch = Channel[int](2)
    ch.send_nowait(1)
    ch.close_send()
    assert await ch.receive() == 1
    with pytest.raises(EndOfStream):
        await ch.receive()
    with pytest.raises(ClosedResourceError):
        ch.send_nowait(2)


async def test_closing_the_receive_side_breaks_a_blocked_sender() -> None:
    ch = Channel[int](1)
    ch.send_nowait(1)
    errors: list[BaseException] = []

    async def sender() -> None:
        try:
            await ch.send(2)
        except BrokenResourceError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(sender)
        await anyio.wait_all_tasks_blocked()
        ch.close_receive()
    assert len(errors) == 1


async def test_blocked_sender_wakes_at_low_water_mark() -> None:
    ch = Channel[int](4)
    sent: list[int] = []

    async def sender() -> None:
        for i in range(8):
            await ch.send(i)
            sent.append(i)
        ch.close_send()

    received: list[int] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(sender)
        await anyio.wait_all_tasks_blocked()
        assert len(ch) == 4  # full; the sender waits
        received.append(ch.receive_nowait())
        await anyio.wait_all_tasks_blocked()
        assert len(ch) == 3  # above the low-water mark: sender still waiting
        received.append(ch.receive_nowait())
        await anyio.wait_all_tasks_blocked()
        assert len(ch) == 4  # at the mark it was woken and refilled
        while True:
            try:
                received.append(await ch.receive())
            except EndOfStream:
                break
    assert received == list(range(8))


async def test_waiting_receiver_is_cancellable_and_channel_stays_usable() -> None:
    ch = Channel[int](2)
    with anyio.move_on_after(0.01) as scope:
        await ch.receive()
    assert scope.cancelled_caught
    ch.send_nowait(5)
    assert await ch.receive() == 5


async def test_waiting_sender_is_cancellable() -> None:
    ch = Channel[int](1)
    ch.send_nowait(1)
    with anyio.move_on_after(0.01) as scope:
        await ch.send(2)
    assert scope.cancelled_caught
    assert ch.receive_nowait() == 1
    with pytest.raises(WouldBlock):
        ch.receive_nowait()


def test_invalid_size() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Channel[int](0)


async def test_event_waiters_used_off_asyncio_work_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Off asyncio the channel waits on anyio Events; exercise that path here."""
    from ductwork.core import channel as channel_module

    monkeypatch.setattr(channel_module, "_waiter_factory", lambda: channel_module._EventWaiter)
    ch = Channel[int](2)
    received: list[int] = []

    async def sender() -> None:
        for i in range(10):
            await ch.send(i)
        ch.close_send()

    async with anyio.create_task_group() as tg:
        tg.start_soon(sender)
        while True:
            try:
                received.append(await ch.receive())
            except EndOfStream:
                break
    assert received == list(range(10))
    with anyio.move_on_after(0.01) as scope:
        await Channel[int](1).receive()
    assert scope.cancelled_caught

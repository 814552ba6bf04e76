"""One stage's end of a run, and the loop that moves its batches.

Hand-off between stages goes through a :class:`~ductwork.core.channel.Channel`, using the
non-blocking ``send_nowait``/``receive_nowait`` fast path while a
stream has room or items, and falls back to the awaiting call (which checkpoints) only when it must
wait. A stage therefore yields to the event loop at least once every ``queue_size + 1`` batches,
which bounds both its share of the loop and the time it takes to notice cancellation, while a
pipeline of cheap stages no longer pays one event-loop round trip per batch.
"""

from __future__ import annotations

import inspect
import logging
from functools import partial
from time import perf_counter
from typing import Any

import anyio
from anyio import EndOfStream, WouldBlock

from .batch import batch_rows, normalize
from .channel import Channel
from .context import RunContext
from .result import StageStats
from .types import Batch

__all__ = ["Port", "stream"]


class Port:
    """One stage's end of the run: its channels, its counters, the batch it is working on.

    Every stage moves batches a batch at a time, nothing per record: :func:`stream` is the loop
    of most stages and counts and sends a plain list of dicts itself; anything else goes through
    :meth:`put`, which checks it with :func:`~ductwork.core.batch.batch_rows` (the one place
    that knows what a batch is), drops it when it has no rows, counts it out, logs it at DEBUG
    and sends it, or hands it back for :meth:`send_held` when the channel is full. Push
    extractors and concurrent transformers use these methods directly. Time spent waiting on a
    channel is the stage's blocked time.
    """

    __slots__ = (
        "_logger",
        "_pipeline",
        "_recv",
        "_send",
        "debug",
        "failed_at",
        "finished",
        "idle_seconds",
        "produced",
        "receive_nowait",
        "send",
        "send_nowait",
        "stats",
        "wait",
        "what",
    )

    def __init__(
        self,
        stats: StageStats,
        send: Channel[Batch] | None,
        recv: Channel[Batch] | None,
        *,
        pipeline: str,
        logger: logging.Logger,
        debug: bool,
    ) -> None:
        self.stats = stats
        self.what = "extractor" if stats.kind == "extract" else f"transformer {stats.name!r}"
        self.produced = 0  # batches an extractor's source gave, empty ones included
        self.finished = False
        self.failed_at: int | None = None  # a concurrent transformer's failed batch
        self.idle_seconds = 0.0  # time a loader's sink spent in on_idle() while input paused
        self.debug = debug
        self._pipeline = pipeline
        self._logger = logger
        self._send = send
        self._recv = recv
        self.send_nowait: Any = send.send_nowait if send is not None else None
        self.send: Any = send.send if send is not None else None
        self.receive_nowait: Any = recv.receive_nowait if recv is not None else None
        self.wait: Any = recv.receive if recv is not None else None

    def close(self) -> None:
        """Close the stage's ends of its channels (once the stage has ended, however it ended)."""
        if self._send is not None:
            self._send.close_send()
        if self._recv is not None:
            self._recv.close_receive()

    def idle_with(self, sink: Any) -> None:
        """Make waiting for input call ``sink.on_idle()`` whenever the sink's ``idle_after``
        seconds pass without a batch (a loader's timed flush while the input pauses)."""
        assert self._recv is not None
        self.wait = partial(_receive_or_idle, self._recv, sink, self)

    def position(self) -> int:
        """The batch the stage is working on, for error messages (0 once it has finished)."""
        if self.finished:
            return 0
        if self.failed_at is not None:
            return self.failed_at
        return self.produced if self.stats.kind == "extract" else self.stats.batches_in

    # ------------------------------------------------------------------ input

    async def wait_input(self) -> Batch | None:
        """Wait for the next input batch (not yet counted in); ``None`` at the end of the input."""
        t0, idle = perf_counter(), self.idle_seconds
        try:
            batch: Batch = await self.wait()
        except EndOfStream:
            return None
        finally:
            self.stats.wait_input_seconds += perf_counter() - t0 - (self.idle_seconds - idle)
        return batch

    def skip_batch(self, batch: Batch, exc: BaseException) -> None:
        """Count and log, as a warning, an input batch the stage failed on and drops."""
        stats = self.stats
        stats.metrics["batches_failed"] = stats.metrics.get("batches_failed", 0) + 1
        stats.metrics["records_skipped"] = stats.metrics.get("records_skipped", 0) + len(batch)
        self._logger.warning(
            "%s: %s skipped batch %d (%d records) after %s: %s",
            self._pipeline,
            stats.name,
            stats.batches_in,
            len(batch),
            type(exc).__name__,
            exc,
        )

    # ------------------------------------------------------------------ output

    def put(self, batch: Any) -> Batch | None:
        """Pass ``batch`` on without waiting; when the channel is full, return it (as it is to be
        sent) for the stage to await :meth:`send_held` with.

        Raises:
            BatchShapeError: ``batch`` is not a batch (the message names the stage).
        """
        if type(batch) is tuple:  # a tuple of records travels on as a list
            batch = list(batch)
        rows = batch_rows(batch, self.what)
        if not rows:
            return None
        batch = normalize(batch)
        stats = self.stats
        stats.batches_out += 1
        stats.records_out += rows
        if self.debug:
            self._logger.debug(
                "%s: %s batch %d: %d records out", self._pipeline, stats.name, self.position(), rows
            )
        try:
            self.send_nowait(batch)
        except WouldBlock:
            return batch
        return None

    async def send_held(self, batch: Batch) -> None:
        """Send a batch :meth:`put` counted out and handed back, waiting while the channel is
        full."""
        t0 = perf_counter()
        await self.send(batch)
        self.stats.wait_output_seconds += perf_counter() - t0

    def log_written(self, batch: Batch) -> None:
        """Log, at DEBUG, a batch the loader wrote."""
        self._logger.debug(
            "%s: %s wrote batch %d: %d records",
            self._pipeline,
            self.stats.name,
            self.stats.batches_in,
            len(batch),
        )


async def _receive_or_idle(recv: Channel[Batch], sink: Any, port: Port) -> Batch:
    """Wait for the next batch, calling ``sink.on_idle()`` whenever ``sink.idle_after`` seconds
    pass without one. ``on_idle`` is the stage working, not blocked: its time is added to
    ``port.idle_seconds``, which the caller takes off the wait.

    Waiting on the channel is cancellation-safe: a timeout never loses a batch.
    """
    while True:
        wait = sink.idle_after
        if wait is None:
            return await recv.receive()
        if wait > 0:
            with anyio.move_on_after(wait):
                return await recv.receive()
        t0 = perf_counter()
        await sink.on_idle()
        port.idle_seconds += perf_counter() - t0


async def stream(
    port: Port,
    ctx: RunContext,
    *,
    source: Any = None,
    sync: bool = False,
    call: tuple[Any, bool, bool] | None = None,
    sink: Any = None,
    skip_failed_batches: bool = False,
) -> None:
    """The loop of every stage but a concurrent transformer or a push extractor.

    Each turn gets a batch and passes on what the stage made of it. An extractor's batches
    come from ``source`` (the ``__anext__`` of its async iterator, or with ``sync`` the
    ``__next__`` of its iterator). A transformer or loader takes them from its input channel
    (without waiting while there are some), counts them in and calls ``call``, which is
    ``(fn, pass_ctx, is_async)``; a transformer's failed batch is skipped with
    ``skip_failed_batches``. A loader (given its ``sink``) then counts the batch out; any
    other stage passes its result on: a list of dicts is counted out and sent right here,
    anything else goes through :meth:`Port.put`, which checks it.
    """
    stats = port.stats
    if getattr(sink, "on_idle", None) is not None:
        port.idle_with(sink)
    receive_nowait, wait, put = port.receive_nowait, port.wait, port.put
    send_nowait, send = port.send_nowait, port.send
    fn: Any
    fn, pass_ctx, is_async = call if call is not None else (None, False, False)
    load = sink is not None
    skip = skip_failed_batches and call is not None and not load
    fast = not port.debug
    held: Any
    while True:
        if source is not None:
            try:
                out = source() if sync else await source()
            except (StopIteration, StopAsyncIteration):
                break
            port.produced += 1
        else:
            try:
                batch = receive_nowait()
            except WouldBlock:
                t0, idle = perf_counter(), port.idle_seconds
                try:
                    batch = await wait()
                except EndOfStream:
                    break
                finally:
                    waited = perf_counter() - t0 - (port.idle_seconds - idle)
                    stats.wait_input_seconds += waited
            except EndOfStream:
                break
            stats.batches_in += 1
            rows = len(batch)
            stats.records_in += rows
            try:
                out = fn(batch, ctx) if pass_ctx else fn(batch)
                if is_async or (
                    out is not None and type(out) is not list and inspect.isawaitable(out)
                ):
                    out = await out
            except Exception as exc:
                if not skip:
                    raise
                port.skip_batch(batch, exc)
                continue
            if load:
                stats.batches_out += 1
                stats.records_out += rows
                if not fast:
                    port.log_written(batch)
                continue
        if fast and type(out) is list and out and type(out[0]) is dict:
            stats.batches_out += 1
            stats.records_out += len(out)
            try:
                send_nowait(out)
                continue
            except WouldBlock:
                held = out
        else:
            held = put(out)
            if held is None:
                continue
        t0 = perf_counter()
        await send(held)
        stats.wait_output_seconds += perf_counter() - t0

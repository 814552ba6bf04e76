"""The stage runner: one anyio task group per run, stages joined by bounded memory streams.

Hand-off between stages goes through a :class:`~ductwork.core.channel.Channel`, using the
non-blocking ``send_nowait``/``receive_nowait`` fast path while a
stream has room or items, and falls back to the awaiting call (which checkpoints) only when it must
wait. A stage therefore yields to the event loop at least once every ``queue_size + 1`` batches,
which bounds both its share of the loop and the time it takes to notice cancellation, while a
pipeline of cheap stages no longer pays one event-loop round trip per batch.

Push extractors: an extractor object may define ``async def produce(ctx, emit)`` instead of
being iterated. The runner then awaits ``produce`` in the extract task and hands it ``emit``, an
async function that checks, counts and sends one batch (waiting while the stream is full). Such an
extractor may run its own task group (for example to fetch pages concurrently) and await ``emit``
from inside it, which an async generator must not do: it must never ``yield`` inside a task group
or cancel scope. ``produce`` may return an async callable taking no arguments; the runner awaits it
once every stage has finished without error (used to commit state such as incremental cursors only
after the loader committed).

Errors: each stage catches its own exception, records it (the first error wins: later ones are
consequences of the cancellation it triggers) and cancels the task group, so ``run`` raises one
:class:`~ductwork.PipelineError` naming the stage rather than an exception group. Cancellation is
never caught here; it propagates to the caller.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping, Sequence
from functools import partial
from time import perf_counter
from typing import Any

import anyio
from anyio import EndOfStream, WouldBlock
from anyio.abc import TaskGroup

from .._exceptions import ExtractError, LoadError, PipelineError, TransformError
from .arrow import at_boundary
from .batch import BatchShapeError, batch_rows, normalize
from .channel import Channel
from .context import RunContext
from .errors import unwrap_group
from .instrument import observe_stage
from .result import StageStats
from .stages import Extractor, Loader, Transformer, is_async_callable
from .types import Batch

__all__ = ["StageRunner"]

_ERROR_CLASSES: dict[str, type[PipelineError]] = {
    "extract": ExtractError,
    "transform": TransformError,
    "load": LoadError,
}


_INTERRUPTS = (KeyboardInterrupt, SystemExit)
"""Caught in the stage's task and raised again in the caller's: escaping a task, asyncio would
raise them out of the event loop, past the code awaiting the run."""


class _Port:
    """One stage's end of the run: its channels, its counters, the batch it is working on.

    Every stage moves batches a batch at a time, nothing per record: ``StageRunner._stream`` is
    the loop of most stages and counts and sends a plain list of dicts itself; anything else goes
    through :meth:`put`, which checks it with :func:`~ductwork.core.batch.batch_rows` (the one
    place that knows what a batch is), drops it when it has no rows, counts it out, logs it at
    DEBUG and sends it, or hands it back for :meth:`send_held` when the channel is full. Push
    extractors and concurrent transformers use these methods directly. Time spent waiting on a
    channel is the stage's blocked time.
    """

    __slots__ = (
        "_logger",
        "_pipeline",
        "_recv",
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
        runner: StageRunner,
        stats: StageStats,
        send: Channel[Batch] | None,
        recv: Channel[Batch] | None,
    ) -> None:
        self.stats = stats
        self.what = "extractor" if stats.kind == "extract" else f"transformer {stats.name!r}"
        self.produced = 0  # batches an extractor's source gave, empty ones included
        self.finished = False
        self.failed_at: int | None = None  # a concurrent transformer's failed batch
        self.idle_seconds = 0.0  # time a loader's sink spent in on_idle() while input paused
        self.debug = runner.debug
        self._pipeline = runner.pipeline
        self._logger = runner.logger
        self._recv = recv
        self.send_nowait: Any = send.send_nowait if send is not None else None
        self.send: Any = send.send if send is not None else None
        self.receive_nowait: Any = recv.receive_nowait if recv is not None else None
        self.wait: Any = recv.receive if recv is not None else None

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


async def _receive_or_idle(recv: Channel[Batch], sink: Any, port: _Port) -> Batch:
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


class _Slot:
    """One batch in flight in a concurrent transformer: filled by a worker, read in order."""

    __slots__ = ("batch", "error", "event", "number", "out")

    def __init__(self, batch: Batch, number: int) -> None:
        self.batch = batch
        self.number = number  # the batch's 1-based number in the stage's input
        self.event = anyio.Event()
        self.out: Any = None
        self.error: BaseException | None = None


class StageRunner:
    """Runs the stages of one pipeline run. Made afresh for every run."""

    def __init__(
        self,
        *,
        pipeline: str,
        ctx: RunContext,
        extractor: Extractor,
        transformers: Sequence[Transformer],
        loader: Loader,
        stats: Sequence[StageStats],
        queue_size: int,
        skip_failed_batches: bool,
        cleanup_timeout: float,
    ) -> None:
        self.pipeline = pipeline
        self.ctx = ctx
        self.extractor = extractor
        self.transformers = list(transformers)
        self.loader = loader
        self.stats = list(stats)
        self.queue_size = queue_size
        self.skip_failed_batches = skip_failed_batches
        self.cleanup_timeout = cleanup_timeout
        self.logger = ctx.logger
        self.debug = ctx.logger.isEnabledFor(logging.DEBUG)
        self.error: PipelineError | None = None
        self.interrupt: BaseException | None = None
        self._tg: TaskGroup | None = None
        self._on_success: list[Any] = []

    # ------------------------------------------------------------------ orchestration

    async def run(self) -> None:
        """Run every stage to completion; raise the first stage error as a PipelineError."""
        n_streams = len(self.transformers) + 1
        channels = [Channel[Batch](self.queue_size) for _ in range(n_streams)]
        async with anyio.create_task_group() as tg:
            self._tg = tg
            tg.start_soon(self._guard, self._extract, 0, channels[0], None)
            for i, _ in enumerate(self.transformers):
                tg.start_soon(self._guard, self._transform, i + 1, channels[i + 1], channels[i])
            tg.start_soon(self._guard, self._load, n_streams, None, channels[-1])
        if self.interrupt is not None:
            raise self.interrupt
        if self.error is not None:
            raise self.error
        for on_success in self._on_success:
            try:
                await on_success()
            except Exception as exc:
                raise self._wrap(self.stats[0], unwrap_group(exc), 0) from exc

    async def _guard(
        self,
        body: Any,
        index: int,
        send: Channel[Batch] | None,
        recv: Channel[Batch] | None,
    ) -> None:
        """Run one stage; record its error, cancel the others, close its streams, time it."""
        stats = self.stats[index]
        port = _Port(self, stats, send, recv)
        started = perf_counter()
        try:
            # A stage started after another already failed must not touch any batch.
            await anyio.lowlevel.checkpoint_if_cancelled()
            with observe_stage(self.ctx, port.stats):
                await body(index, port)
        except Exception as exc:
            self._fail(stats, exc, port.position())
        except _INTERRUPTS as exc:
            self.interrupt = self.interrupt or exc
            if self._tg is not None:
                self._tg.cancel_scope.cancel()
        finally:
            if send is not None:
                send.close_send()
            if recv is not None:
                recv.close_receive()
            stats.busy_seconds = max(0.0, perf_counter() - started - stats.blocked_seconds)

    def _fail(self, stats: StageStats, exc: BaseException, batch_no: int) -> None:
        if self.error is None:
            self.error = self._wrap(stats, unwrap_group(exc), batch_no)
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    def _wrap(self, stats: StageStats, exc: BaseException, batch_no: int) -> PipelineError:
        if isinstance(exc, PipelineError):
            if exc.pipeline is None:
                exc.pipeline = self.pipeline
            if exc.stage is None:
                exc.stage = stats.name
            return exc
        if isinstance(exc, BatchShapeError):  # its message names the stage and what it got
            return self._contract_error(stats, str(exc))
        cls = _ERROR_CLASSES[stats.kind]
        where = f" at batch {batch_no}" if batch_no else ""
        err = cls(
            f"{stats.kind} stage failed{where}: {type(exc).__name__}: {exc}",
            pipeline=self.pipeline,
            stage=stats.name,
            retryable=getattr(exc, "retryable", None),  # a ConfigError stays non-retryable
        )
        err.__cause__ = exc
        return err

    async def _await_cancellation_if_failed(self) -> None:
        """Called when a stage's input ended: if another stage failed, or the run was cancelled,
        the input may have ended early. Wait for (or raise) that cancellation, so the stage
        closes with it (cleaning up) instead of as if the run succeeded."""
        if self.error is not None:
            await anyio.sleep_forever()
        # The caller may have cancelled the run (or its timeout fired) while this stage ran on
        # the fast path: upstream stages then closed their streams as they unwound, and the end
        # of input must not be taken for a finished run.
        await anyio.lowlevel.checkpoint_if_cancelled()

    async def _exit_failed(self, cm: Any, exc: BaseException, what: str) -> None:
        """Exit a stage's per-run context manager with ``exc``, shielded from cancellation and
        bounded by ``cleanup_timeout``; an error while cleaning up becomes a note on ``exc``."""
        with anyio.move_on_after(self.cleanup_timeout, shield=True):
            try:
                await cm.__aexit__(type(exc), exc, exc.__traceback__)
            except BaseException as cleanup_exc:
                if cleanup_exc is not exc:
                    exc.add_note(
                        f"while cleaning up, {what} also raised "
                        f"{type(cleanup_exc).__name__}: {cleanup_exc}"
                    )

    def _contract_error(self, stats: StageStats, message: str) -> PipelineError:
        cls = _ERROR_CLASSES[stats.kind]
        return cls(message, pipeline=self.pipeline, stage=stats.name, retryable=False)

    # ------------------------------------------------------------------ extract

    async def _extract(self, index: int, port: _Port) -> None:
        stats = port.stats
        ctx = self.ctx.for_stage(stats.name, stats)
        produce = getattr(self.extractor, "produce", None)
        if produce is not None and callable(produce):
            await self._extract_push(produce, ctx, port)
            return
        source: Any = self.extractor.extract(ctx)
        if inspect.isawaitable(source) and not hasattr(source, "__aiter__"):
            source = await source
        if hasattr(source, "__aiter__"):
            agen = source.__aiter__()
            try:
                await self._stream(port, ctx, source=agen.__anext__)
            finally:
                aclose = getattr(agen, "aclose", None)
                if aclose is not None:
                    with anyio.move_on_after(self.cleanup_timeout, shield=True):
                        await aclose()
        elif isinstance(source, (str, bytes, Mapping)) or not hasattr(source, "__iter__"):
            raise self._contract_error(
                stats,
                f"extractor returned {type(source).__name__}; expected an async iterator of "
                f"batches (write it as an async generator function that yields lists of records)",
            )
        else:
            iterator = iter(source)
            try:
                await self._stream(port, ctx, source=iterator.__next__, sync=True)
            finally:
                close = getattr(iterator, "close", None)
                if close is not None:
                    close()

    async def _extract_push(self, produce: Any, ctx: RunContext, port: _Port) -> None:
        """Run an extractor that pushes its batches through ``emit`` (see the module docstring)."""
        put = port.put

        async def emit(batch: Batch) -> None:
            port.produced += 1
            held = put(batch)
            if held is not None:
                await port.send_held(held)

        on_success = await produce(ctx, emit)
        if on_success is not None:
            if not callable(on_success):
                raise self._contract_error(
                    port.stats,
                    f"extractor produce() returned {type(on_success).__name__}; expected None "
                    f"or an async callable to run once the run succeeded",
                )
            self._on_success.append(on_success)

    # ------------------------------------------------------------------ transform

    async def _transform(self, index: int, port: _Port) -> None:
        stage = self.transformers[index - 1]
        stats = port.stats
        ctx = self.ctx.for_stage(stats.name, stats)
        cm = stage.open(ctx)
        if not hasattr(cm, "__aenter__"):
            raise self._contract_error(
                stats,
                f"transformer.open() returned {type(cm).__name__}, not an async context manager",
            )
        bound = await cm.__aenter__()
        try:
            if not callable(getattr(bound, "bind", None)):
                raise self._contract_error(
                    stats,
                    f"transformer.open() yielded {type(bound).__name__}, not a transformer",
                )
            if stage.concurrency > 1:
                await self._transform_concurrent(bound, stage.concurrency, ctx, port)
            else:
                await self._stream(port, ctx, call=self._bind(bound, stats.name))
            await self._await_cancellation_if_failed()
        except BaseException as exc:
            await self._exit_failed(cm, exc, f"transformer {stats.name!r}")
            raise
        port.finished = True
        await cm.__aexit__(None, None, None)

    async def _stream(
        self,
        port: _Port,
        ctx: RunContext,
        *,
        source: Any = None,
        sync: bool = False,
        call: tuple[Any, bool, bool] | None = None,
        sink: Any = None,
    ) -> None:
        """The loop of every stage but a concurrent transformer or a push extractor.

        Each turn gets a batch and passes on what the stage made of it. An extractor's batches
        come from ``source`` (the ``__anext__`` of its async iterator, or with ``sync`` the
        ``__next__`` of its iterator). A transformer or loader takes them from its input channel
        (without waiting while there are some), counts them in and calls ``call``, which is
        ``(fn, pass_ctx, is_async)``; a transformer's failed batch is skipped with
        ``skip_failed_batches``. A loader (given its ``sink``) then counts the batch out; any
        other stage passes its result on: a list of dicts is counted out and sent right here,
        anything else goes through :meth:`_Port.put`, which checks it.
        """
        stats = port.stats
        if getattr(sink, "on_idle", None) is not None:
            port.idle_with(sink)
        receive_nowait, wait, put = port.receive_nowait, port.wait, port.put
        send_nowait, send = port.send_nowait, port.send
        fn: Any
        fn, pass_ctx, is_async = call if call is not None else (None, False, False)
        load = sink is not None
        skip = self.skip_failed_batches and call is not None and not load
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
                    self._skip_batch(stats, batch, exc)
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

    def _bind(self, stage: Transformer, name: str) -> tuple[Any, bool, bool]:
        """What the runner calls per batch of a transformer, behind the conversion of the batch
        kind it takes (see :func:`~ductwork.core.arrow.at_boundary`)."""
        fn, pass_ctx, is_async = stage.bind()
        accepts = getattr(stage, "batch_format", "records")
        return at_boundary(fn, accepts, name, self.pipeline, self.logger), pass_ctx, is_async

    def _skip_batch(self, stats: StageStats, batch: Batch, exc: BaseException) -> None:
        stats.metrics["batches_failed"] = stats.metrics.get("batches_failed", 0) + 1
        stats.metrics["records_skipped"] = stats.metrics.get("records_skipped", 0) + len(batch)
        self.logger.warning(
            "%s: %s skipped batch %d (%d records) after %s: %s",
            self.pipeline,
            stats.name,
            stats.batches_in,
            len(batch),
            type(exc).__name__,
            exc,
        )

    async def _transform_concurrent(
        self, stage: Transformer, n: int, ctx: RunContext, port: _Port
    ) -> None:
        """Transform up to ``n`` batches at once, passing results on in input order.

        Blocked time is the dispatcher's wait for input plus the collector's wait to pass output
        on; the two can overlap, so for a concurrent stage busy time is an approximation.
        """
        fn, pass_ctx, is_async = self._bind(stage, port.stats.name)
        slots_send, slots_recv = anyio.create_memory_object_stream[_Slot](max_buffer_size=n)
        workers = anyio.Semaphore(n)
        skip = self.skip_failed_batches

        async def work(slot: _Slot) -> None:
            try:
                out = fn(slot.batch, ctx) if pass_ctx else fn(slot.batch)
                if is_async or inspect.isawaitable(out):
                    out = await out
                slot.out = out
            except (Exception, *_INTERRUPTS) as exc:
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
                        self._skip_batch(port.stats, slot.batch, slot.error)
                    elif (held := port.put(slot.out)) is not None:
                        await port.send_held(held)
            except (Exception, *_INTERRUPTS) as exc:
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

    # ------------------------------------------------------------------ load

    async def _load(self, index: int, port: _Port) -> None:
        stats = port.stats
        ctx = self.ctx.for_stage(stats.name, stats)
        cm = self.loader.open(ctx)
        if not hasattr(cm, "__aenter__"):
            raise self._contract_error(
                stats, f"loader.open() returned {type(cm).__name__}, not an async context manager"
            )
        sink = await cm.__aenter__()
        try:
            write = getattr(sink, "write", None)
            if write is None or not callable(write):
                raise self._contract_error(
                    stats, f"loader sink {type(sink).__name__} has no write(batch) method"
                )
            accepts = getattr(self.loader, "batch_format", "records")
            write_in = at_boundary(write, accepts, stats.name, self.pipeline, self.logger)
            await self._stream(
                port, ctx, call=(write_in, False, is_async_callable(write)), sink=sink
            )
            await self._await_cancellation_if_failed()
        except BaseException as exc:
            # Tell the loader the run did not succeed, so it cleans up instead of committing.
            await self._exit_failed(cm, exc, f"loader {stats.name!r}")
            _count_committed(stats, sink)
            raise
        port.finished = True
        try:
            await cm.__aexit__(None, None, None)
        finally:
            _count_committed(stats, sink)


def _count_committed(stats: StageStats, sink: Any) -> None:
    """A sink that knows what it committed (``records_committed``) has that as its records out,
    rather than what it was handed (see :class:`~ductwork.core.stages.Loader`)."""
    committed = getattr(sink, "records_committed", None)
    if isinstance(committed, int) and not isinstance(committed, bool):
        stats.records_out = committed

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
from time import perf_counter
from typing import Any

import anyio
from anyio import EndOfStream, WouldBlock
from anyio.abc import TaskGroup

from .._exceptions import ExtractError, LoadError, PipelineError, TransformError
from .channel import Channel
from .context import RunContext
from .result import StageStats
from .stages import Extractor, Loader, Transformer, is_async_callable
from .types import Batch

__all__ = ["StageRunner", "unwrap_group"]

_ERROR_CLASSES: dict[str, type[PipelineError]] = {
    "extract": ExtractError,
    "transform": TransformError,
    "load": LoadError,
}


_INTERRUPTS = (KeyboardInterrupt, SystemExit)
"""Caught in the stage's task and raised again in the caller's: escaping a task, asyncio would
raise them out of the event loop, past the code awaiting the run."""


def unwrap_group(exc: BaseException) -> BaseException:
    """Unwrap exception groups that hold exactly one exception, recursively."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


class _Slot:
    """One batch in flight in a concurrent transformer: filled by a worker, read in order."""

    __slots__ = ("batch", "error", "event", "number", "out", "skipped")

    def __init__(self, batch: Batch, number: int) -> None:
        self.batch = batch
        self.number = number  # the batch's 1-based number in the stage's input
        self.event = anyio.Event()
        self.out: Any = None
        self.error: BaseException | None = None
        self.skipped = False


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
        started = perf_counter()
        position = [0]  # the batch the stage is working on, for error messages
        try:
            # A stage started after another already failed must not touch any batch.
            await anyio.lowlevel.checkpoint_if_cancelled()
            await body(index, send, recv, stats, position)
        except Exception as exc:
            self._fail(stats, exc, position[0])
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

    # ------------------------------------------------------------------ shape checks

    def _check_batch(self, stats: StageStats, value: Any, what: str) -> Batch | None:
        """Slow path for a stage output that is not a plain list: accept or explain."""
        if value is None:
            return None
        if isinstance(value, list):
            return value
        if isinstance(value, Mapping):
            raise self._contract_error(
                stats,
                f"{what} returned a single record (a {type(value).__name__}); "
                f"return a list of records (a batch)",
            )
        if isinstance(value, tuple):
            return list(value)
        raise self._contract_error(
            stats, f"{what} returned {type(value).__name__}; expected a list of records (a batch)"
        )

    def _check_records(self, stats: StageStats, batch: Batch, what: str) -> None:
        first = batch[0]
        if not isinstance(first, Mapping):
            raise self._contract_error(
                stats,
                f"{what} produced a batch whose records are {type(first).__name__}, "
                f"not mappings; a batch is a list of dicts",
            )

    # ------------------------------------------------------------------ extract

    async def _extract(
        self,
        index: int,
        send: Channel[Batch],
        recv: None,
        stats: StageStats,
        position: list[int],
    ) -> None:
        ctx = self.ctx.for_stage(stats.name, stats)
        produce = getattr(self.extractor, "produce", None)
        if produce is not None and callable(produce):
            await self._extract_push(produce, ctx, send, stats, position)
            return
        source: Any = self.extractor.extract(ctx)
        if inspect.isawaitable(source) and not hasattr(source, "__aiter__"):
            source = await source
        send_nowait = send.send_nowait
        debug = self.debug
        batches = 0
        if hasattr(source, "__aiter__"):
            agen = source.__aiter__()
            try:
                async for batch in agen:
                    batches += 1
                    position[0] = batches
                    if type(batch) is not list:
                        batch = self._check_batch(stats, batch, "extractor")
                        if batch is None:
                            continue
                    if not batch:
                        continue
                    if type(batch[0]) is not dict:
                        self._check_records(stats, batch, "extractor")
                    stats.batches_out += 1
                    stats.records_out += len(batch)
                    if debug:
                        self.logger.debug(
                            "%s: %s batch %d: %d records",
                            self.pipeline,
                            stats.name,
                            batches,
                            len(batch),
                        )
                    try:
                        send_nowait(batch)
                    except WouldBlock:
                        t0 = perf_counter()
                        await send.send(batch)
                        stats.wait_output_seconds += perf_counter() - t0
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
                for batch in iterator:
                    batches += 1
                    position[0] = batches
                    if type(batch) is not list:
                        batch = self._check_batch(stats, batch, "extractor")
                        if batch is None:
                            continue
                    if not batch:
                        continue
                    if type(batch[0]) is not dict:
                        self._check_records(stats, batch, "extractor")
                    stats.batches_out += 1
                    stats.records_out += len(batch)
                    try:
                        send_nowait(batch)
                    except WouldBlock:
                        t0 = perf_counter()
                        await send.send(batch)
                        stats.wait_output_seconds += perf_counter() - t0
            finally:
                close = getattr(iterator, "close", None)
                if close is not None:
                    close()

    async def _extract_push(
        self,
        produce: Any,
        ctx: RunContext,
        send: Channel[Batch],
        stats: StageStats,
        position: list[int],
    ) -> None:
        """Run an extractor that pushes its batches through ``emit`` (see the module docstring)."""
        send_nowait = send.send_nowait

        async def emit(batch: Batch) -> None:
            position[0] += 1
            if type(batch) is not list:
                checked = self._check_batch(stats, batch, "extractor")
                if checked is None:
                    return
                batch = checked
            if not batch:
                return
            if type(batch[0]) is not dict:
                self._check_records(stats, batch, "extractor")
            stats.batches_out += 1
            stats.records_out += len(batch)
            try:
                send_nowait(batch)
            except WouldBlock:
                t0 = perf_counter()
                await send.send(batch)
                stats.wait_output_seconds += perf_counter() - t0

        on_success = await produce(ctx, emit)
        if on_success is not None:
            if not callable(on_success):
                raise self._contract_error(
                    stats,
                    f"extractor produce() returned {type(on_success).__name__}; expected None "
                    f"or an async callable to run once the run succeeded",
                )
            self._on_success.append(on_success)

    # ------------------------------------------------------------------ transform

    async def _transform(
        self,
        index: int,
        send: Channel[Batch],
        recv: Channel[Batch],
        stats: StageStats,
        position: list[int],
    ) -> None:
        stage = self.transformers[index - 1]
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
                await self._transform_concurrent(
                    bound, stage.concurrency, ctx, send, recv, stats, position
                )
            else:
                await self._transform_serial(bound, ctx, send, recv, stats, position)
            await self._await_cancellation_if_failed()
        except BaseException as exc:
            await self._exit_failed(cm, exc, f"transformer {stats.name!r}")
            raise
        position[0] = 0
        await cm.__aexit__(None, None, None)

    async def _transform_serial(
        self,
        stage: Transformer,
        ctx: RunContext,
        send: Channel[Batch],
        recv: Channel[Batch],
        stats: StageStats,
        position: list[int],
    ) -> None:
        fn, pass_ctx, is_async = stage.bind()
        receive_nowait = recv.receive_nowait
        send_nowait = send.send_nowait
        skip = self.skip_failed_batches
        debug = self.debug
        while True:
            try:
                batch = receive_nowait()
            except WouldBlock:
                t0 = perf_counter()
                try:
                    batch = await recv.receive()
                except EndOfStream:
                    break
                finally:
                    stats.wait_input_seconds += perf_counter() - t0
            except EndOfStream:
                break
            stats.batches_in += 1
            stats.records_in += len(batch)
            position[0] = stats.batches_in
            try:
                out = fn(batch, ctx) if pass_ctx else fn(batch)
                if is_async or (type(out) is not list and inspect.isawaitable(out)):
                    out = await out
            except Exception as exc:
                if not skip:
                    raise
                self._skip_batch(stats, batch, exc)
                continue
            if type(out) is not list:
                out = self._check_batch(stats, out, f"transformer {stats.name!r}")
                if out is None:
                    continue
            if not out:
                continue
            if type(out[0]) is not dict:
                self._check_records(stats, out, f"transformer {stats.name!r}")
            stats.batches_out += 1
            stats.records_out += len(out)
            if debug:
                self.logger.debug(
                    "%s: %s batch %d: %d -> %d records",
                    self.pipeline,
                    stats.name,
                    stats.batches_in,
                    len(batch),
                    len(out),
                )
            try:
                send_nowait(out)
            except WouldBlock:
                t0 = perf_counter()
                await send.send(out)
                stats.wait_output_seconds += perf_counter() - t0

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
        self,
        stage: Transformer,
        n: int,
        ctx: RunContext,
        send: Channel[Batch],
        recv: Channel[Batch],
        stats: StageStats,
        position: list[int],
    ) -> None:
        """Transform up to ``n`` batches at once, passing results on in input order.

        Blocked time is the dispatcher's wait for input plus the collector's wait to pass output
        on; the two can overlap, so for a concurrent stage busy time is an approximation.
        """
        fn, pass_ctx, is_async = stage.bind()
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
        # stage's tasks, so the stage raises that error alone: raising it inside the task group
        # would wrap it in a group beside the dispatcher's errors, at the dispatcher's batch.
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
                        self._skip_batch(stats, slot.batch, slot.error)
                        continue
                    out = slot.out
                    if type(out) is not list:
                        out = self._check_batch(stats, out, f"transformer {stats.name!r}")
                        if out is None:
                            continue
                    if not out:
                        continue
                    if type(out[0]) is not dict:
                        self._check_records(stats, out, f"transformer {stats.name!r}")
                    stats.batches_out += 1
                    stats.records_out += len(out)
                    t0 = perf_counter()
                    await send.send(out)
                    stats.wait_output_seconds += perf_counter() - t0
            except (Exception, *_INTERRUPTS) as exc:
                failure.append((exc, number))
                tg.cancel_scope.cancel()

        async with slots_recv, anyio.create_task_group() as tg:
            tg.start_soon(collect)
            with slots_send:
                while True:
                    t0 = perf_counter()
                    try:
                        batch = await recv.receive()
                    except EndOfStream:
                        break
                    finally:
                        stats.wait_input_seconds += perf_counter() - t0
                    stats.batches_in += 1
                    stats.records_in += len(batch)
                    position[0] = stats.batches_in
                    slot = _Slot(batch, stats.batches_in)
                    await slots_send.send(slot)  # waits while `concurrency` results are pending
                    await workers.acquire()
                    tg.start_soon(work, slot)
        if failure:
            error, position[0] = failure[0]
            raise error

    # ------------------------------------------------------------------ load

    @staticmethod
    async def _receive_or_idle(
        recv: Channel[Batch], sink: Any, on_idle: Any, idle_work: list[float]
    ) -> Batch:
        """Wait for the next batch, calling ``sink.on_idle()`` whenever the sink's
        ``idle_after`` seconds pass without one (a timed flush while the input pauses).

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
            await on_idle()
            idle_work[0] += perf_counter() - t0

    async def _load(
        self,
        index: int,
        send: None,
        recv: Channel[Batch],
        stats: StageStats,
        position: list[int],
    ) -> None:
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
            is_async = is_async_callable(write)
            on_idle = getattr(sink, "on_idle", None)
            receive_nowait = recv.receive_nowait
            debug = self.debug
            while True:
                try:
                    batch = receive_nowait()
                except WouldBlock:
                    t0 = perf_counter()
                    idle_work = [0.0]
                    try:
                        if on_idle is None:
                            batch = await recv.receive()
                        else:
                            batch = await self._receive_or_idle(recv, sink, on_idle, idle_work)
                    except EndOfStream:
                        break
                    finally:
                        stats.wait_input_seconds += perf_counter() - t0 - idle_work[0]
                except EndOfStream:
                    break
                stats.batches_in += 1
                position[0] = stats.batches_in
                stats.records_in += len(batch)
                if is_async:
                    await write(batch)
                else:
                    out = write(batch)
                    if out is not None and inspect.isawaitable(out):
                        await out
                stats.batches_out += 1
                stats.records_out += len(batch)
                if debug:
                    self.logger.debug(
                        "%s: %s wrote batch %d: %d records",
                        self.pipeline,
                        stats.name,
                        stats.batches_in,
                        len(batch),
                    )
            await self._await_cancellation_if_failed()
        except BaseException as exc:
            # Tell the loader the run did not succeed, so it cleans up instead of committing.
            await self._exit_failed(cm, exc, f"loader {stats.name!r}")
            raise
        position[0] = 0
        await cm.__aexit__(None, None, None)

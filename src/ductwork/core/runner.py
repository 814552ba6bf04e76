"""The stage runner: one anyio task group per run, stages joined by bounded memory streams.

Every stage is one task. Its batches go through its :class:`~ductwork.core.port.Port` (its
channels and counters); most stages run the loop :func:`~ductwork.core.port.stream`, a transformer
with ``concurrency > 1`` runs :func:`~ductwork.core.concurrent.transform_concurrent`.

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
from anyio.abc import TaskGroup

from .._exceptions import ExtractError, LoadError, PipelineError, TransformError
from .arrow import at_boundary
from .batch import BatchShapeError
from .channel import Channel
from .concurrent import transform_concurrent
from .context import RunContext
from .errors import INTERRUPTS, unwrap_group
from .instrument import observe_stage
from .port import Port, stream
from .result import StageStats
from .stages import Extractor, Loader, Transformer, is_async_callable
from .types import Batch

__all__ = ["StageRunner"]

_ERROR_CLASSES: dict[str, type[PipelineError]] = {
    "extract": ExtractError,
    "transform": TransformError,
    "load": LoadError,
}


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
        port = partial(Port, pipeline=self.pipeline, logger=self.logger, debug=self.debug)
        stats = self.stats
        async with anyio.create_task_group() as tg:
            self._tg = tg
            tg.start_soon(self._guard, self._extract, 0, port(stats[0], channels[0], None))
            for i, _ in enumerate(self.transformers):
                ends = port(stats[i + 1], channels[i + 1], channels[i])
                tg.start_soon(self._guard, self._transform, i + 1, ends)
            tg.start_soon(
                self._guard, self._load, n_streams, port(stats[n_streams], None, channels[-1])
            )
        if self.interrupt is not None:
            raise self.interrupt
        if self.error is not None:
            raise self.error
        for on_success in self._on_success:
            try:
                await on_success()
            except Exception as exc:
                raise self._wrap(self.stats[0], unwrap_group(exc), 0) from exc

    async def _guard(self, body: Any, index: int, port: Port) -> None:
        """Run one stage; record its error, cancel the others, close its streams, time it."""
        stats = port.stats
        started = perf_counter()
        try:
            # A stage started after another already failed must not touch any batch.
            await anyio.lowlevel.checkpoint_if_cancelled()
            with observe_stage(self.ctx, port.stats):
                await body(index, port)
        except Exception as exc:
            self._fail(stats, exc, port.position())
        except INTERRUPTS as exc:
            self.interrupt = self.interrupt or exc
            if self._tg is not None:
                self._tg.cancel_scope.cancel()
        finally:
            port.close()
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

    async def _extract(self, index: int, port: Port) -> None:
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
                await stream(port, ctx, source=agen.__anext__)
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
                await stream(port, ctx, source=iterator.__next__, sync=True)
            finally:
                close = getattr(iterator, "close", None)
                if close is not None:
                    close()

    async def _extract_push(self, produce: Any, ctx: RunContext, port: Port) -> None:
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

    async def _transform(self, index: int, port: Port) -> None:
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
            concurrency, skip = stage.concurrency, self.skip_failed_batches
            call = self._bind(bound, stats.name)
            if concurrency > 1:
                await transform_concurrent(concurrency, call, ctx, port, skip)
            else:
                await stream(port, ctx, call=call, skip_failed_batches=skip)
            await self._await_cancellation_if_failed()
        except BaseException as exc:
            await self._exit_failed(cm, exc, f"transformer {stats.name!r}")
            raise
        port.finished = True
        await cm.__aexit__(None, None, None)

    def _bind(self, stage: Transformer, name: str) -> tuple[Any, bool, bool]:
        """What the runner calls per batch of a transformer, behind the conversion of the batch
        kind it takes (see :func:`~ductwork.core.arrow.at_boundary`)."""
        fn, pass_ctx, is_async = stage.bind()
        accepts = getattr(stage, "batch_format", "records")
        return at_boundary(fn, accepts, name, self.pipeline, self.logger), pass_ctx, is_async

    async def _load(self, index: int, port: Port) -> None:
        stats = port.stats
        ctx = self.ctx.for_stage(stats.name, stats, self._tg)
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
            await stream(port, ctx, call=(write_in, False, is_async_callable(write)), sink=sink)
            await self._await_cancellation_if_failed()
        except BaseException as exc:
            # Tell the loader the run did not succeed, so it cleans up instead of committing.
            await self._exit_failed(cm, exc, f"loader {stats.name!r}")
            self._committed(stats, sink)
            raise
        port.finished = True
        try:
            await cm.__aexit__(None, None, None)
        finally:
            self._committed(stats, sink)

    def _committed(self, stats: StageStats, sink: Any) -> None:
        """Count what the closed sink committed; note whether a rerun would write it again (the
        run's error is then not retryable, whichever stage failed: see Runnable.execute)."""
        _count_committed(stats, sink)
        if getattr(sink, "rerun_safe", None) is False and stats.records_out > 0:
            stats.rerun_unsafe = (
                f"loader {stats.name!r} committed {stats.records_out} rows in this run to a "
                f"target that does not deduplicate them, so running again would write them "
                f"twice: not retryable"
            )


def _count_committed(stats: StageStats, sink: Any) -> None:
    """A sink that knows what it committed (``records_committed``) has that as its records out,
    rather than what it was handed (see :class:`~ductwork.core.stages.Loader`)."""
    committed = getattr(sink, "records_committed", None)
    if isinstance(committed, int) and not isinstance(committed, bool):
        stats.records_out = committed

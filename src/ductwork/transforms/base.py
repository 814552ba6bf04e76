"""What the transformers of this package share: the error policy, dead letters and per-run state.

Every transformer here takes ``error_handling``, for the records it cannot transform:

* ``"raise"`` (default) or ``"skip"``, as everywhere (see
  :data:`~ductwork.core.types.ErrorHandling`): the first bad record fails the run with a
  :class:`~ductwork.TransformError` (or a subclass such as :class:`~ductwork.TypeConversionError`)
  whose message names the record's position in the run, or bad records are dropped and counted in
  the stage's ``records_skipped`` metric;
* ``"dead_letter"``: bad records are dropped, counted in the ``dead_letters`` metric and written to
  ``dead_letter_sink`` (any loader, or a function ``(batch)``), one dead letter per record::

      {"record": {...}, "error": "column 'id', record 7: cannot convert 'x': expected an integer",
       "error_type": "TypeConversionError", "stage": "convert_types", "pipeline": "orders",
       "run_id": "5f0c...", "position": 7}

  ``record`` is the record as the stage received it and ``position`` its 0-based position among
  the records that reached the stage in the run.

The dead-letter sink is opened with the stage's run context the first time a run meets a bad record
(at stage start when the stage runs batches concurrently), gets one ``write`` per batch that had bad
records, and is closed when the stage has passed on its last batch, before the loader commits; so a
failing dead-letter sink fails the run before its output is committed. When the stage fails or the
run is cancelled before then, the sink is closed with the exception, so a file loader discards its
partial output.

A transformer object may be used by several runs at once: per-run state (the position counter, the
open sink) lives in the :class:`TransformRun` that :meth:`RecordTransformer.open` yields.

Every transformer here takes both kinds of batch (its ``batch_format`` is ``"any"``): lists of
records and Arrow tables (a ``pyarrow.RecordBatch`` is taken as a table of one chunk). Positions
count rows alike, and a bad row of an Arrow batch is made into a record for its dead letter (only
the bad rows are converted).
"""

from __future__ import annotations

import inspect
import logging
from abc import abstractmethod
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Annotated, Any, Literal, NamedTuple

import anyio
from pydantic import ConfigDict, Field, ValidationInfo, field_validator

from ..core.arrow import BatchFormat
from ..core.config import Options
from ..core.context import RunContext
from ..core.stages import Loader, Sink, Transformer, as_loader
from ..core.types import ErrorHandling, Record
from ._arrow import AnyBatch, num_rows

__all__ = [
    "Failure",
    "PolicyConfig",
    "RecordTransformer",
    "TransformErrorHandling",
    "TransformRun",
]

TransformErrorHandling = Literal[ErrorHandling, "dead_letter"]
"""What a transformer does with a record it cannot transform (see the module docs)."""


class PolicyConfig(Options):
    """The options every transformer of this package takes."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    name: Annotated[str, Field(min_length=1, max_length=200)]
    """The stage name shown in results and logs."""
    error_handling: TransformErrorHandling = "raise"
    """``"raise"``, ``"skip"`` or ``"dead_letter"`` for the records the transformer cannot
    transform (see :mod:`ductwork.transforms.base`)."""
    dead_letter_sink: Annotated[Any, Field(validate_default=True)] = None
    """Where dead letters go; required with ``"dead_letter"`` and only allowed with it. A loader
    (``open(ctx)`` → sink) or a function ``(batch[, ctx])``."""

    @field_validator("dead_letter_sink")
    @classmethod
    def _check_sink(cls, value: Any, info: ValidationInfo) -> Loader | None:
        policy = info.data.get("error_handling")
        if value is None:
            if policy == "dead_letter":
                raise ValueError('error_handling="dead_letter" needs a dead_letter_sink')
            return None
        if policy is not None and policy != "dead_letter":
            raise ValueError(
                f'a dead_letter_sink is only used with error_handling="dead_letter", not {policy!r}'
            )
        if not (callable(getattr(value, "open", None)) or callable(value)):
            raise ValueError(
                f"expected a loader (an object with open(ctx)) or a function (batch), "
                f"got {type(value).__name__}"
            )
        return as_loader(value, name="dead_letters")


class Failure(NamedTuple):
    """A record a transformer could not transform.

    Attributes:
        position: 0-based position of the record among those that reached the stage in the run.
        record: the record as the stage received it.
        error: the error, whose message names the position (raised as is under ``"raise"``).
    """

    position: int
    record: Record
    error: Exception


class RecordTransformer(Transformer):
    """Base class of the transformers in this package: per-run state and the error policy.

    Subclasses implement :meth:`apply`, which transforms one batch and reports the records it
    could not transform to :meth:`TransformRun.reject` (or raises at once when
    :attr:`TransformRun.raise_errors` is set).

    A pipeline opens the transformer once per run (:meth:`open`); called directly,
    :meth:`transform` treats each call as a run of its own.

    Attributes:
        batch_format: ``"any"``: the transformer takes records and Arrow tables as they come.
    """

    batch_format: BatchFormat = "any"
    error_handling: TransformErrorHandling = "raise"
    dead_letter_sink: Loader | None = None

    def __init__(self, config: PolicyConfig, *, concurrency: int = 1) -> None:
        self.name = config.name
        self.error_handling = config.error_handling
        self.dead_letter_sink = config.dead_letter_sink
        self.concurrency = concurrency

    def open(self, ctx: RunContext) -> AbstractAsyncContextManager[Transformer]:
        """Open the transformer for one run; yields the run's :class:`TransformRun`."""
        return _RunScope(self, ctx)

    async def transform(self, batch: AnyBatch, ctx: RunContext) -> AnyBatch | None:
        """Transform one batch as a run of its own (pipelines use :meth:`open` instead)."""
        async with _RunScope(self, ctx) as run:
            return await run.transform(batch, ctx)

    @abstractmethod
    async def apply(self, batch: AnyBatch, start: int, run: TransformRun) -> AnyBatch | None:
        """Transform one batch of a run.

        Args:
            batch: the records, or an Arrow table or record batch.
            start: the position in the run of the batch's first record.
            run: the run, for :meth:`TransformRun.reject` and its context.
        """


class TransformRun(Transformer):
    """One run of a :class:`RecordTransformer`: its position counter and dead-letter sink.

    Attributes:
        owner: the transformer.
        ctx: the stage's run context.
        records_seen: how many records reached the stage so far in this run.
        raise_errors: whether the error policy is ``"raise"`` (then a bad record's error is
            raised at once, without finishing the batch).
        batch_format: that of the transformer.
    """

    def __init__(self, owner: RecordTransformer, ctx: RunContext) -> None:
        self.owner = owner
        self.ctx = ctx
        self.batch_format = owner.batch_format
        self.name = owner.name
        self.concurrency = owner.concurrency
        self.records_seen = 0
        self.raise_errors = owner.error_handling == "raise"
        self._closed = False
        self._warned = False
        self._sink_cm: AbstractAsyncContextManager[Sink] | None = None
        self._sink: Any = None
        self._sink_lock = anyio.Lock()

    async def transform(self, batch: AnyBatch, ctx: RunContext) -> AnyBatch | None:
        """Transform one batch of this run."""
        if self._closed:
            raise RuntimeError(f"run of transformer {self.name!r} is closed")
        start = self.records_seen
        self.records_seen = start + num_rows(batch)
        return await self.owner.apply(batch, start, self)

    async def reject(self, failures: Sequence[Failure]) -> None:
        """Apply the error policy to the records of one batch that could not be transformed.

        ``failures`` should be in position order: under ``"raise"`` the first one is raised.
        """
        if not failures:
            return
        policy = self.owner.error_handling
        if policy == "raise":
            raise failures[0].error
        ctx = self.ctx
        stage = ctx.stage or self.name
        if policy == "skip":
            ctx.add_metric("records_skipped", len(failures))
            self._log(failures, "skipped a record")
            return
        letters = [
            {
                "record": failure.record,
                "error": str(failure.error),
                "error_type": type(failure.error).__name__,
                "stage": stage,
                "pipeline": ctx.pipeline,
                "run_id": ctx.run_id,
                "position": failure.position,
            }
            for failure in failures
        ]
        async with self._sink_lock:
            if self._sink is None:
                await self._open_sink()
            out = self._sink.write(letters)
            if inspect.isawaitable(out):
                await out
        ctx.add_metric("dead_letters", len(letters))
        self._log(failures, "sent a record to the dead-letter sink")

    def _log(self, failures: Sequence[Failure], what: str) -> None:
        logger = self.ctx.logger
        stage = self.ctx.stage or self.name
        rest = failures
        if not self._warned:
            self._warned = True
            rest = failures[1:]
            logger.warning(
                "%s: %s %s: %s (later ones are only counted, in the stage's metrics)",
                self.ctx.pipeline,
                stage,
                what,
                failures[0].error,
            )
        if rest and logger.isEnabledFor(logging.DEBUG):
            for failure in rest:
                logger.debug("%s: %s %s: %s", self.ctx.pipeline, stage, what, failure.error)

    async def _open_sink(self) -> None:
        loader = self.owner.dead_letter_sink
        assert loader is not None
        cm = loader.open(self.ctx)
        if not hasattr(cm, "__aenter__"):
            raise TypeError(
                f"dead-letter loader.open() returned {type(cm).__name__}, "
                f"not an async context manager"
            )
        sink = await cm.__aenter__()
        self._sink_cm = cm
        if not callable(getattr(sink, "write", None)):
            self._sink = None
            self._sink_cm = None
            err = TypeError(f"dead-letter sink {type(sink).__name__} has no write(batch) method")
            await cm.__aexit__(TypeError, err, None)
            raise err
        self._sink = sink

    async def close(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> None:
        """End the run: close the dead-letter sink (committing it unless ``exc`` is given)."""
        self._closed = True
        cm = self._sink_cm
        self._sink_cm = None
        self._sink = None
        if cm is not None:
            await cm.__aexit__(exc_type, exc, tb)


class _RunScope:
    """The async context manager :meth:`RecordTransformer.open` returns."""

    __slots__ = ("ctx", "owner", "run")

    def __init__(self, owner: RecordTransformer, ctx: RunContext) -> None:
        self.owner = owner
        self.ctx = ctx
        self.run: TransformRun | None = None

    async def __aenter__(self) -> TransformRun:
        if self.run is not None:
            raise RuntimeError("a transformer run can be opened only once")
        run = self.run = TransformRun(self.owner, self.ctx)
        if self.owner.dead_letter_sink is not None and self.owner.concurrency > 1:
            # Batches are transformed in worker tasks; open the sink here, in the stage's own
            # task, which is also where it is closed.
            await run._open_sink()
        return run

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self.run is not None
        await self.run.close(exc_type, exc, tb)

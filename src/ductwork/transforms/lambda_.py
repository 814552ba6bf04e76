"""Function transformers: :func:`create_lambda_transformer` applies a function to records.

On an Arrow batch (a :class:`pyarrow.Table`, or a ``RecordBatch``): with ``per="batch"`` the
function gets the batch as it is, and returns a batch of either kind; with ``per="record"`` the
batch is converted to records once (``Table.to_pylist``), the function gets each record, and the
stage passes on the records it returned.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import anyio
from pydantic import Field, field_validator

from .._exceptions import ConfigError, TransformError
from ..core.config import validate_config
from ..core.stages import (
    accepts_positional,
    callable_name,
    is_async_callable,
    positional_arity,
)
from ..core.types import Batch
from ._arrow import AnyBatch, is_arrow, num_rows, to_records
from .base import Failure, PolicyConfig, RecordTransformer, TransformErrorHandling, TransformRun

__all__ = ["LambdaConfig", "LambdaTransformer", "create_lambda_transformer"]


class LambdaConfig(PolicyConfig):
    """Validated options of :func:`create_lambda_transformer`."""

    function: Any
    """``(record[, ctx]) -> record | None`` or ``(batch[, ctx]) -> batch | None``, sync or
    async."""
    per: Literal["record", "batch"] = "record"
    """``"record"`` or ``"batch"``: what the function is called with. With ``"batch"`` an
    Arrow batch is passed as it is; with ``"record"`` it is converted to records once."""
    concurrency: Annotated[int, Field(ge=1, le=100_000, strict=True)] = 1
    """For async functions, how many calls may be in flight at once (I/O-bound work such as
    enrichment calls); output order is the input order. With ``per="record"`` the records of
    a batch are processed that many at a time; with ``per="batch"`` that many batches are."""

    @field_validator("function")
    @classmethod
    def _check_function(cls, value: Any) -> Any:
        if not callable(value):
            raise ValueError(f"expected a callable, got {type(value).__name__}")
        if not accepts_positional(value, 1):
            raise ValueError(
                f"{callable_name(value, 'the function')} must accept a record (or a batch) "
                f"as its first argument"
            )
        return value


class LambdaTransformer(RecordTransformer):
    """The transformer :func:`create_lambda_transformer` makes."""

    def __init__(self, config: LambdaConfig) -> None:
        function = config.function
        self.is_async = is_async_callable(function)
        if config.concurrency > 1 and not self.is_async:
            raise ConfigError.for_field(
                "concurrency",
                "concurrency > 1 needs an async function (a sync one would block the others)",
            )
        # per="batch": the runner transforms up to `concurrency` batches at once, in order.
        # per="record": records of a batch are processed `concurrency` at a time, in order.
        super().__init__(config, concurrency=config.concurrency if config.per == "batch" else 1)
        self.config = config
        self.function = function
        self.per = config.per
        self.record_concurrency = config.concurrency if config.per == "record" else 1
        self.pass_ctx = positional_arity(function) >= 2

    def __repr__(self) -> str:
        return (
            f"LambdaTransformer(name={self.name!r}, per={self.per!r}, "
            f"concurrency={self.config.concurrency})"
        )

    async def apply(self, batch: AnyBatch, start: int, run: TransformRun) -> AnyBatch | None:
        """Apply the function to one batch (records: an Arrow batch is converted once)."""
        if self.per == "batch":
            return await self._apply_batch(batch, start, run)
        if is_arrow(batch):
            batch = to_records(batch)
        if not self.is_async:
            return await self._apply_sync(batch, start, run)
        if self.record_concurrency > 1 and len(batch) > 1:
            return await self._apply_concurrent(batch, start, run)
        return await self._apply_async(batch, start, run)

    @staticmethod
    def _record_error(exc: Exception, position: int) -> TransformError:
        error = TransformError(f"record {position}: {type(exc).__name__}: {exc}")
        error.__cause__ = exc
        return error

    def _failed(
        self, exc: Exception, position: int, record: Any, run: TransformRun, failures: list[Failure]
    ) -> None:
        """A call raised for the record at ``position``: raise its error, or keep its failure."""
        error = self._record_error(exc, position)
        if run.raise_errors:
            raise error from exc
        failures.append(Failure(position, record, error))

    async def _finish(
        self, batch: Batch, out: Batch, failures: list[Failure], run: TransformRun
    ) -> Batch:
        """Count the dropped records, hand the failures to the policy and give the output."""
        dropped = len(batch) - len(out) - len(failures)
        if dropped:
            run.ctx.add_metric("records_dropped", dropped)
        await run.reject(failures)
        return out

    async def _apply_sync(self, batch: Batch, start: int, run: TransformRun) -> Batch:
        fn = self.function
        ctx = run.ctx
        pass_ctx = self.pass_ctx
        out: Batch = []
        append = out.append
        failures: list[Failure] = []
        items = enumerate(batch)
        i = 0
        record: Any = None
        while True:
            try:
                if pass_ctx:
                    for i, record in items:  # noqa: B007 - the except clause reads i
                        result = fn(record, ctx)
                        if result is not None:
                            append(result)
                else:
                    for i, record in items:  # noqa: B007 - the except clause reads i
                        result = fn(record)
                        if result is not None:
                            append(result)
                break
            except Exception as exc:
                self._failed(exc, start + i, record, run, failures)
        return await self._finish(batch, out, failures, run)

    async def _apply_async(self, batch: Batch, start: int, run: TransformRun) -> Batch:
        fn = self.function
        ctx = run.ctx
        pass_ctx = self.pass_ctx
        out: Batch = []
        failures: list[Failure] = []
        for i, record in enumerate(batch):
            try:
                result = await (fn(record, ctx) if pass_ctx else fn(record))
            except Exception as exc:
                self._failed(exc, start + i, record, run, failures)
                continue
            if result is not None:
                out.append(result)
        return await self._finish(batch, out, failures, run)

    async def _apply_concurrent(self, batch: Batch, start: int, run: TransformRun) -> Batch:
        """Up to ``concurrency`` calls at once; results are placed back in input order."""
        fn = self.function
        ctx = run.ctx
        pass_ctx = self.pass_ctx
        raise_errors = run.raise_errors
        results: list[Any] = [None] * len(batch)
        errors: list[tuple[int, Exception]] = []
        items = enumerate(batch)

        async def worker(scope: anyio.CancelScope) -> None:
            for i, record in items:
                try:
                    results[i] = await (fn(record, ctx) if pass_ctx else fn(record))
                except Exception as exc:
                    errors.append((i, exc))
                    if raise_errors:
                        scope.cancel()
                        return

        async with anyio.create_task_group() as tg:
            for _ in range(min(self.record_concurrency, len(batch))):
                tg.start_soon(worker, tg.cancel_scope)
        errors.sort(key=lambda item: item[0])
        if errors and raise_errors:
            i, exc = errors[0]
            raise self._record_error(exc, start + i) from exc
        failures = [
            Failure(start + i, batch[i], self._record_error(exc, start + i)) for i, exc in errors
        ]
        out = [result for result in results if result is not None]
        return await self._finish(batch, out, failures, run)

    async def _apply_batch(self, batch: AnyBatch, start: int, run: TransformRun) -> AnyBatch | None:
        fn = self.function
        try:
            result = fn(batch, run.ctx) if self.pass_ctx else fn(batch)
            if self.is_async:
                result = await result
        except Exception as exc:
            rows = num_rows(batch)
            where = f"record {start}" if rows == 1 else f"records {start}-{start + rows - 1}"
            error = TransformError(f"{where}: {type(exc).__name__}: {exc}")
            if run.raise_errors:
                raise error from exc
            error.__cause__ = exc
            records = to_records(batch)
            await run.reject(
                [Failure(start + i, record, error) for i, record in enumerate(records)]
            )
            return None
        return result


def create_lambda_transformer(
    function: Any,
    name: str | None = None,
    error_handling: TransformErrorHandling | bool = "raise",
    **options: Any,
) -> LambdaTransformer:
    """Make a transformer from a function applied to each record, or to each batch.

    Args:
        function: with ``per="record"`` (default), ``(record[, ctx]) -> record | None``:
            return the new record, or ``None`` to drop it (counted in the stage's
            ``records_dropped`` metric); an Arrow batch is converted to records once, and the
            stage passes on records. With ``per="batch"``, ``(batch[, ctx]) -> batch | None``,
            called with the batch as it is (a list of records or a ``pyarrow.Table``). Sync or
            async; the run context is passed when the function takes two arguments.
        name: the stage name (default: the function's name, or ``"lambda"``).
        error_handling: what to do when the function raises: ``"raise"`` (or ``True``),
            ``"skip"`` (or ``False``: the record, or with ``per="batch"`` the batch's records)
            or ``"dead_letter"``.
        **options: any other field of :class:`LambdaConfig` (``per``, ``concurrency``,
            ``dead_letter_sink``), where every option is documented.

    Raises:
        ConfigError: an option is invalid; the message names it.

    Example:
        >>> import anyio
        >>> from ductwork import RunContext
        >>> def tax(record):
        ...     return None if record["price"] < 0 else {**record, "tax": record["price"] * 0.2}
        >>> stage = create_lambda_transformer(tax)
        >>> anyio.run(stage.transform, [{"price": 10}, {"price": -1}], RunContext())
        [{'price': 10, 'tax': 2.0}]
    """
    config = validate_config(
        LambdaConfig,
        "lambda transformer",
        function=function,
        name=name if name is not None else callable_name(function, "lambda"),
        error_handling=error_handling,
        **options,
    )
    return LambdaTransformer(config)

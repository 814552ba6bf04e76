"""Stage contracts (extractor, transformer, loader) and adapters for plain functions.

* An **extractor** produces batches. It is an async generator function
  ``(ctx) -> AsyncIterator[Batch]`` (a sync generator function, a zero-argument function, or an
  object with an ``extract(ctx)`` method work too). It is called afresh for every run.
* A **transformer** maps a batch to a batch: ``(batch, ctx) -> Batch | None`` or
  ``(batch) -> Batch``, sync or async. ``None`` or an empty list drops the batch. Wrap a function
  in :func:`transformer` to give it a name or ``concurrency=N`` (I/O-bound work; output order is
  preserved).
* A **loader** is opened once per run as an async context manager yielding a sink:
  ``async with loader.open(ctx) as sink: await sink.write(batch)``. It commits on a clean exit and
  cleans up when the block exits with an exception (including cancellation). A plain function
  ``(batch)`` or ``(batch, ctx)``, sync or async, is accepted as a loader too.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol, runtime_checkable

from .._exceptions import ConfigError
from .arrow import BatchFormat
from .config import checked_keywords
from .context import RunContext
from .types import Batch

__all__ = [
    "Extractor",
    "FunctionExtractor",
    "FunctionLoader",
    "FunctionTransformer",
    "Loader",
    "Sink",
    "Transformer",
    "as_extractor",
    "as_loader",
    "as_transformer",
    "transformer",
]


def positional_arity(fn: Callable[..., Any]) -> int:
    """How many positional arguments to give ``fn``.

    Its positional parameters without a default, plus one with a default if it is named ``ctx``
    (so ``def scale(batch, factor=10)`` is called as ``scale(batch)`` and
    ``def load(batch, ctx=None)`` as ``load(batch, ctx)``); one when it takes only ``*args`` (so
    ``print`` is called as ``print(batch)``).
    """
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return 1
    count = 0
    for param in sig.parameters.values():
        if param.kind is param.VAR_POSITIONAL:
            return max(count, 1)
        if param.kind not in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
            break
        if param.default is not param.empty and param.name != "ctx":
            break
        count += 1
    return count


def accepts_positional(fn: Callable[..., Any], count: int) -> bool:
    """Whether ``fn`` can be called with ``count`` positional arguments."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return True
    capacity = 0
    for param in sig.parameters.values():
        if param.kind is param.VAR_POSITIONAL:
            return True
        if param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
            capacity += 1
    return capacity >= count


def is_async_callable(fn: Callable[..., Any]) -> bool:
    """Whether calling ``fn`` returns a coroutine (functions, partials and async ``__call__``)."""
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 - we need the bound method itself
    return call is not None and inspect.iscoroutinefunction(call)


def callable_name(fn: Any, default: str) -> str:
    """A readable name for a stage callable or object."""
    name = getattr(fn, "name", None)
    if isinstance(name, str) and name:
        return name
    name = getattr(fn, "__name__", None)
    if isinstance(name, str) and name and name != "<lambda>":
        return name
    return default


# --------------------------------------------------------------------------- extractors


class Extractor(ABC):
    """Base class for extractor objects.

    Subclasses implement :meth:`extract` as an async generator yielding batches.

    A subclass may also define ``async def produce(ctx, emit)``; a pipeline then awaits it
    instead of iterating :meth:`extract`, and ``produce`` awaits ``emit(batch)`` for each batch
    in order (from one task at a time). Unlike an async generator, ``produce`` may await ``emit``
    inside its own task group, so it can fetch concurrently. It may return an async callable
    that the pipeline awaits once every stage finished without error (to commit state).
    """

    name: str = "extract"

    @abstractmethod
    def extract(self, ctx: RunContext) -> AsyncIterator[Batch] | Iterable[Batch]:
        """Return the batches of one run (called afresh for every run)."""


class FunctionExtractor(Extractor):
    """An extractor made from a function: async/sync generator function, or a function returning
    an (async) iterable of batches. The function may take the run context as its only argument."""

    def __init__(self, fn: Callable[..., Any], name: str | None = None) -> None:
        if not callable(fn):
            raise ConfigError.for_field(
                "extractor", f"expected a callable, got {type(fn).__name__}"
            )
        arity = positional_arity(fn)
        self.fn = fn
        self.pass_ctx = arity >= 1
        self.name = name or callable_name(fn, "extract")

    def extract(self, ctx: RunContext) -> Any:
        """Call the function for one run."""
        return self.fn(ctx) if self.pass_ctx else self.fn()


class _ObjectExtractor(Extractor):
    """Adapts a duck-typed object with an ``extract(ctx)`` method."""

    def __init__(self, obj: Any, name: str | None) -> None:
        self.obj = obj
        self.name = name or callable_name(obj, type(obj).__name__)
        self.batch_format = _check_batch_format(getattr(obj, "batch_format", "records"))

    def extract(self, ctx: RunContext) -> Any:
        return self.obj.extract(ctx)


def as_extractor(obj: Any, name: str | None = None) -> Extractor:
    """Adapt ``obj`` to an :class:`Extractor`, or raise :class:`ConfigError` saying why not."""
    if isinstance(obj, Extractor):
        return obj
    if callable(getattr(obj, "extract", None)):
        return _ObjectExtractor(obj, name)
    if inspect.isasyncgen(obj) or inspect.isgenerator(obj):
        raise ConfigError.for_field(
            "extractor",
            "got a generator object; pass the generator function itself "
            "(a pipeline calls it afresh for every run)",
        )
    if callable(obj):
        return FunctionExtractor(obj, name)
    raise _not_a_stage(
        "extractor", "an async generator function or an object with an extract(ctx) method", obj
    )


# --------------------------------------------------------------------------- transformers


class Transformer(ABC):
    """Base class for transformer objects.

    Attributes:
        name: the stage name shown in results and logs.
        concurrency: how many batches may be transformed at once (output order is preserved).
    """

    name: str = "transform"
    concurrency: int = 1
    batch_format: BatchFormat = "records"
    """The kind of batch :meth:`transform` takes (see :data:`~ductwork.core.arrow.BatchFormat`);
    the runner converts a batch of the other kind once, at the stage's input."""

    @abstractmethod
    async def transform(self, batch: Batch, ctx: RunContext) -> Batch | None:
        """Transform one batch; return ``None`` or ``[]`` to drop it."""

    def bind(self) -> tuple[Callable[..., Any], bool, bool]:
        """Return ``(fn, pass_ctx, is_async)`` that the runner calls per batch."""
        return self.transform, True, True

    def open(self, ctx: RunContext) -> AbstractAsyncContextManager[Transformer]:
        """Open the transformer for one run, for a stage that holds per-run state or resources.

        The runner enters the returned async context manager when the stage starts and
        transforms that run's batches with the transformer it yields (through its
        :meth:`bind`); ``concurrency`` is read from this object. The exit is awaited in the
        stage's own task: after the stage passed on its last batch and before the downstream
        stage sees the end of the stream (so an error raised there fails the run before the
        loader commits), or with the exception when the stage fails or is cancelled (then
        shielded from cancellation and bounded by the pipeline's ``cleanup_timeout``).

        The default yields ``self`` and holds nothing. A transformer object may be shared by
        several runs at once, so per-run state belongs to what ``open`` yields, not to ``self``.
        """
        return _Unopened(self)


class _Unopened:
    """The default per-run context of a transformer: yields the transformer, holds nothing."""

    __slots__ = ("stage",)

    def __init__(self, stage: Transformer) -> None:
        self.stage = stage

    async def __aenter__(self) -> Transformer:
        return self.stage

    async def __aexit__(self, *exc_info: object) -> None:
        return None


class FunctionTransformer(Transformer):
    """A transformer made from a function ``(batch[, ctx]) -> Batch | None``, sync or async."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        concurrency: int = 1,
        batch_format: BatchFormat = "records",
    ) -> None:
        if not callable(fn):
            raise ConfigError.for_field(
                "transformer", f"expected a callable, got {type(fn).__name__}"
            )
        self.batch_format = _check_batch_format(batch_format)
        if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
            raise ConfigError.for_field(
                "concurrency", f"must be an integer >= 1, got {concurrency!r}"
            )
        arity = positional_arity(fn)
        if not accepts_positional(fn, 1):
            raise ConfigError.for_field(
                "transformer",
                f"{callable_name(fn, 'transform')} must accept the batch as an argument",
            )
        self.fn = fn
        self.pass_ctx = arity >= 2
        self.is_async = is_async_callable(fn)
        self.name = name or callable_name(fn, "transform")
        self.concurrency = concurrency

    async def transform(self, batch: Batch, ctx: RunContext) -> Batch | None:
        """Apply the function to one batch."""
        out = self.fn(batch, ctx) if self.pass_ctx else self.fn(batch)
        if inspect.isawaitable(out):
            out = await out
        return out

    def bind(self) -> tuple[Callable[..., Any], bool, bool]:
        """Return the function itself, so the runner calls it without an extra layer."""
        return self.fn, self.pass_ctx, self.is_async


@checked_keywords
def transformer(
    fn: Callable[..., Any],
    *,
    name: str | None = None,
    concurrency: int = 1,
    batch_format: BatchFormat = "records",
) -> FunctionTransformer:
    """Make a transformer stage from a function, with a name and optional concurrency.

    A function takes lists of records unless ``batch_format`` says ``"arrow"`` (it takes
    ``pyarrow.Table`` batches) or ``"any"`` (it takes both as they come); a batch of the other
    kind is converted once, at the stage's input.

    Example:
        >>> async def enrich(batch, ctx):
        ...     return batch
        >>> stage = transformer(enrich, concurrency=4)
        >>> stage.name, stage.concurrency
        ('enrich', 4)
    """
    return FunctionTransformer(fn, name=name, concurrency=concurrency, batch_format=batch_format)


def as_transformer(obj: Any) -> Transformer:
    """Adapt ``obj`` to a :class:`Transformer`, or raise :class:`ConfigError` saying why not."""
    if isinstance(obj, Transformer):
        return obj
    transform = getattr(obj, "transform", None)
    if callable(transform) and not callable(obj):
        return FunctionTransformer(
            transform,
            name=callable_name(obj, type(obj).__name__),
            concurrency=getattr(obj, "concurrency", 1),
        )
    if callable(obj):
        return FunctionTransformer(obj)
    raise _not_a_stage("transformer", "a function (batch[, ctx]) -> batch", obj)


# --------------------------------------------------------------------------- loaders


@runtime_checkable
class Sink(Protocol):
    """What a loader's ``open`` yields: something batches are written to."""

    async def write(self, batch: Batch) -> None:
        """Write (or buffer) one batch."""
        ...


class Loader(ABC):
    """Base class for loader objects.

    :meth:`open` is called once per run and returns an async context manager yielding a
    :class:`Sink`. The loader commits when the block exits cleanly and must clean up (discard
    temporary output) when it exits with an exception. The runner shields that exit from
    cancellation, so cleanup code may await.

    A sink that buffers may also flush on time while its input pauses: give it an
    ``idle_after`` attribute or property (seconds until it wants to be called, or ``None`` for
    "not now") and an ``async def on_idle()`` method; the runner calls ``on_idle()`` when that
    long has passed without a batch arriving.

    The stage's ``records_out`` counts the records written to the sink, or, when the sink has a
    ``records_committed`` attribute or property (an ``int``), what that says once the sink is
    closed: the records it committed, also after a failure.

    A sink whose committed rows a rerun would write again (its target does not deduplicate) may
    say so with a ``rerun_safe`` attribute or property (a ``bool``): when it is ``False`` once the
    sink is closed and the sink committed rows, the run's error is not retryable, whichever stage
    failed, and carries a note naming the rows committed. A sink without it (or one that commits
    nothing on a failed run, as the file loader does) leaves the error's ``retryable`` as it is.
    """

    name: str = "load"
    batch_format: BatchFormat = "records"
    """The kind of batch the sink's ``write`` takes (see
    :data:`~ductwork.core.arrow.BatchFormat`); the runner converts a batch of the other kind."""

    @abstractmethod
    def open(self, ctx: RunContext) -> AbstractAsyncContextManager[Sink]:
        """Open the loader for one run."""


class FunctionLoader(Loader):
    """A loader made from a function ``(batch[, ctx])``, sync or async, called once per batch."""

    def __init__(
        self,
        fn: Callable[..., Any],
        name: str | None = None,
        *,
        batch_format: BatchFormat = "records",
    ) -> None:
        if not callable(fn):
            raise ConfigError.for_field("loader", f"expected a callable, got {type(fn).__name__}")
        self.batch_format = _check_batch_format(batch_format)
        arity = positional_arity(fn)
        if not accepts_positional(fn, 1):
            raise ConfigError.for_field(
                "loader", f"{callable_name(fn, 'load')} must accept the batch as an argument"
            )
        self.fn = fn
        self.pass_ctx = arity >= 2
        self.is_async = is_async_callable(fn)
        self.name = name or callable_name(fn, "load")

    @asynccontextmanager
    async def open(self, ctx: RunContext) -> AsyncIterator[Sink]:
        """Yield a sink that calls the function for every batch."""
        yield _FunctionSink(self.fn, ctx if self.pass_ctx else None, self.is_async)


class _FunctionSink:
    """Calls the function per batch. ``write`` is the function itself when it needs no context,
    so the runner calls it without an extra layer (a sync ``write`` is accepted by the runner)."""

    __slots__ = ("ctx", "fn", "write")

    def __init__(self, fn: Callable[..., Any], ctx: RunContext | None, is_async: bool) -> None:
        self.fn = fn
        self.ctx = ctx
        self.write: Callable[[Batch], Any] = fn if ctx is None else self._write_with_ctx

    def _write_with_ctx(self, batch: Batch) -> Any:
        return self.fn(batch, self.ctx)


class _ObjectLoader(Loader):
    """Adapts a duck-typed object with an ``open(ctx)`` method."""

    def __init__(self, obj: Any, name: str | None) -> None:
        self.obj = obj
        self.name = name or callable_name(obj, type(obj).__name__)

    def open(self, ctx: RunContext) -> AbstractAsyncContextManager[Sink]:
        return self.obj.open(ctx)  # type: ignore[no-any-return]


@checked_keywords
def loader(
    fn: Callable[..., Any], *, name: str | None = None, batch_format: BatchFormat = "records"
) -> FunctionLoader:
    """Make a loader stage from a function ``(batch[, ctx])``, with a name and the kind of
    batch it takes (``"records"``, ``"arrow"`` or ``"any"``; see :func:`transformer`).

    Example:
        >>> def count(table):
        ...     print(table.num_rows)
        >>> loader(count, batch_format="arrow").batch_format
        'arrow'
    """
    return FunctionLoader(fn, name, batch_format=batch_format)


def _check_batch_format(value: Any) -> BatchFormat:
    if value not in ("records", "arrow", "any"):
        raise ConfigError.for_field(
            "batch_format", f"expected 'records', 'arrow' or 'any', got {value!r}"
        )
    return value  # type: ignore[no-any-return]


def as_loader(obj: Any, name: str | None = None) -> Loader:
    """Adapt ``obj`` to a :class:`Loader`, or raise :class:`ConfigError` saying why not."""
    if isinstance(obj, Loader):
        return obj
    if callable(getattr(obj, "open", None)):
        return _ObjectLoader(obj, name)
    if callable(obj):
        return FunctionLoader(obj, name)
    raise _not_a_stage(
        "loader", "a function (batch[, ctx]) or an object with an open(ctx) method", obj
    )


def _not_a_stage(field: str, expected: str, obj: Any) -> ConfigError:
    """The error for ``obj`` given as a ``field`` stage when it is none of what one may be."""
    return ConfigError.for_field(field, f"expected {expected}, got {type(obj).__name__}")

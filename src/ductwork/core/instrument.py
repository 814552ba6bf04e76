"""Instrumentation points: where metrics and tracing observe runs, at no cost when unused.

Three points, none of them per record or per batch:

* :func:`observe_run` around every run of a :class:`~ductwork.Runnable` (a pipeline, a
  composition, each child of a composition), entered before the run starts and left once its
  :class:`~ductwork.RunResult` is final (status, duration, error);
* :func:`observe_stage` around the task of each stage of a pipeline run, inside that task, so a
  tracing span opened there is the parent of whatever the stage does;
* :func:`operation` around one operation of a stage that is worth a span of its own (an HTTP
  request): connectors call it, and set attributes on what it yields.

An :class:`Instrument` implements any of them (``ductwork.ops`` has the metrics and the
OpenTelemetry tracing) and is installed process-wide with :func:`install`. With nothing
installed each point costs one check of an empty tuple; connectors report their counters
through ``ctx.add_metric`` and never import ``ductwork.ops``.

Example:
    >>> import anyio
    >>> from contextlib import contextmanager
    >>> from ductwork import create_el_pipeline
    >>> class Finished(Instrument):
    ...     def __init__(self):
    ...         self.seen = []
    ...     @contextmanager
    ...     def run(self, runnable, ctx, result):
    ...         yield
    ...         self.seen.append((result.name, str(result.status), result.records_out))
    >>> async def extract(ctx):
    ...     yield [{"n": 1}, {"n": 2}]
    >>> finished = Finished()
    >>> remove = install(finished)
    >>> _ = anyio.run(create_el_pipeline(extract, lambda batch: None, "two", logging=False).run)
    >>> remove()
    >>> finished.seen
    [('two', 'succeeded', 2)]
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from .context import RunContext
    from .result import RunResult, StageStats

__all__ = [
    "Instrument",
    "Operation",
    "OperationKind",
    "install",
    "installed",
    "observe_run",
    "observe_stage",
    "operation",
]

#: ``internal`` for work done here, ``client`` for a request to another service.
OperationKind = Literal["internal", "client"]


class Operation:
    """What :func:`operation` yields: attributes and the error of one operation.

    This base class records nothing; instruments yield their own (a tracing span).
    """

    __slots__ = ()

    def set_attribute(self, key: str, value: str | int | float | bool) -> None:
        """Attach ``key=value`` to the operation (``http.response.status_code``, ...)."""

    def record_error(self, error: BaseException) -> None:
        """Mark the operation as failed with ``error``."""


class Instrument:
    """Base class of instruments: override the points you need.

    Each method returns a context manager wrapping the point, or ``None`` to skip it. The
    context managers see exceptions (a failed stage, a cancellation) and must re-raise them.
    """

    def run(
        self, runnable: Any, ctx: RunContext, result: RunResult
    ) -> AbstractContextManager[object] | None:
        """Wrap one run; ``result`` is final when the context manager is left."""
        return None

    def stage(self, ctx: RunContext, stats: StageStats) -> AbstractContextManager[object] | None:
        """Wrap the task of one stage of a pipeline run (``ctx`` is the run's context)."""
        return None

    def operation(
        self, name: str, attributes: Mapping[str, str | int | float | bool], kind: OperationKind
    ) -> AbstractContextManager[Operation] | None:
        """Wrap one operation of a stage; what it yields gets the operation's attributes."""
        return None


_installed: tuple[Instrument, ...] = ()
_NOTHING: AbstractContextManager[Any] = nullcontext()
_NO_OPERATION = Operation()


def install(instrument: Instrument) -> Callable[[], None]:
    """Install ``instrument`` for every run in the process; returns a function removing it.

    Installing the same instrument twice installs it once.
    """
    global _installed
    if instrument not in _installed:
        _installed = (*_installed, instrument)

    def remove() -> None:
        global _installed
        _installed = tuple(i for i in _installed if i is not instrument)

    return remove


def installed() -> tuple[Instrument, ...]:
    """The instruments installed now, in the order they were installed."""
    return _installed


def _combine(
    managers: list[AbstractContextManager[Any]], fanout: bool = False
) -> AbstractContextManager[Any]:
    """One context manager entering ``managers``; what it yields is the last one's, or with
    ``fanout`` an :class:`Operation` passing attributes on to what each of them yielded."""
    if not managers:
        return nullcontext(_NO_OPERATION) if fanout else _NOTHING
    if len(managers) == 1:
        return managers[0]
    return _stacked(managers, fanout)


@contextmanager
def _stacked(managers: list[AbstractContextManager[Any]], fanout: bool) -> Iterator[Any]:
    with ExitStack() as stack:
        entered = [stack.enter_context(manager) for manager in managers]
        yield _Fanout(entered) if fanout else entered[-1]


def observe_run(
    runnable: Any, ctx: RunContext, result: RunResult
) -> AbstractContextManager[object]:
    """The context manager wrapping one run (see :meth:`Instrument.run`)."""
    if not _installed:
        return _NOTHING
    return _combine([m for i in _installed if (m := i.run(runnable, ctx, result)) is not None])


def observe_stage(ctx: RunContext, stats: StageStats) -> AbstractContextManager[object]:
    """The context manager wrapping one stage's task (see :meth:`Instrument.stage`)."""
    if not _installed:
        return _NOTHING
    return _combine([m for i in _installed if (m := i.stage(ctx, stats)) is not None])


def operation(
    name: str,
    attributes: Mapping[str, str | int | float | bool],
    kind: OperationKind = "internal",
) -> AbstractContextManager[Operation]:
    """The context manager wrapping one operation of a stage, yielding its :class:`Operation`.

    Example:
        >>> with operation("GET", {"url.full": "https://example.com/"}, "client") as op:
        ...     op.set_attribute("http.response.status_code", 200)
    """
    if not _installed:
        return nullcontext(_NO_OPERATION)
    return _combine(
        [m for i in _installed if (m := i.operation(name, attributes, kind)) is not None],
        fanout=True,
    )


class _Fanout(Operation):
    """An operation observed by several instruments at once."""

    __slots__ = ("_operations",)

    def __init__(self, operations: list[Operation]) -> None:
        self._operations = operations

    def set_attribute(self, key: str, value: str | int | float | bool) -> None:
        for op in self._operations:
            op.set_attribute(key, value)

    def record_error(self, error: BaseException) -> None:
        for op in self._operations:
            op.record_error(error)

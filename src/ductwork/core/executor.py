"""Executors: where the children of a composition and the windows of a backfill run.

An :class:`Executor` runs one child run, ``await executor.execute(runnable, ctx, result)``, with
the meaning of :meth:`~ductwork.Runnable.execute`: it fills in ``result`` and returns it, a failed
run is returned with status ``failed`` (not raised), and cancellation is recorded and re-raised.

:class:`LocalExecutor`, the default, runs the child in the caller's event loop. The Dask
executor (:class:`ductwork.DaskExecutor`, behind the ``ductwork[dask]`` extra) runs it on a
worker of a Dask distributed cluster and brings its result back; the caller keeps its state
store.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .context import RunContext
    from .result import RunResult
    from .runnable import Runnable

__all__ = ["Executor", "LocalExecutor"]


class Executor(ABC):
    """Where child runs run. Subclasses implement :meth:`execute`."""

    @abstractmethod
    async def execute(self, runnable: Runnable, ctx: RunContext, result: RunResult) -> RunResult:
        """Run ``runnable`` with context ``ctx``, filling in and returning ``result``.

        A failed run is returned with status ``failed`` and its error; cancellation of the
        caller is recorded (status ``cancelled``) and re-raised.
        """


class LocalExecutor(Executor):
    """Runs every child in the caller's event loop, as tasks of the caller (the default).

    Example:
        >>> import anyio
        >>> from ductwork import create_el_pipeline, create_parallel_pipeline
        >>> async def extract(ctx):
        ...     yield [{"id": 1}]
        >>> both = create_parallel_pipeline(
        ...     [create_el_pipeline(extract, lambda b: None, n, logging=False) for n in "ab"],
        ...     executor=LocalExecutor(),
        ...     logging=False,
        ... )
        >>> anyio.run(both.run).records_out
        2
    """

    def __repr__(self) -> str:
        return "LocalExecutor()"

    async def execute(self, runnable: Runnable, ctx: RunContext, result: RunResult) -> RunResult:
        """Run ``runnable`` here: ``await runnable.execute(ctx, result)``."""
        return await runnable.execute(ctx, result)


LOCAL = LocalExecutor()
"""The executor used when none is given."""

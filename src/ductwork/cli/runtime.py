"""What a run goes on with: the executor ``--cluster`` asks for, the metrics and the spans."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from typing import TYPE_CHECKING

from ..core.executor import Executor
from .errors import EXIT_USAGE, CommandError
from .project import Project

if TYPE_CHECKING:
    from ..ops.metrics import RunMetrics


@asynccontextmanager
async def open_executor(cluster: str | None, project: Project) -> AsyncIterator[Executor | None]:
    """The executor ``--cluster`` asks for (``None``: run here), open for the command."""
    if cluster is None:
        yield None
        return
    try:
        from ..core.dask_executor import DaskExecutor, open_local_cluster, ship_by_value
    except ImportError as exc:
        raise CommandError(
            f"--cluster needs the dask extra (pip install 'ductwork[dask]'): {exc}", EXIT_USAGE
        ) from None
    # Discovered modules cannot be imported by name on a worker: they travel by value.
    ship_by_value(*(module.name for report in project.reports for module in report.modules))
    if not cluster.startswith("local:"):
        async with DaskExecutor(cluster) as executor:
            yield executor
        return
    async with open_local_cluster(int(cluster.removeprefix("local:"))) as executor:
        yield executor


@contextmanager
def observed(metrics: RunMetrics | None, otel: bool) -> Iterator[None]:
    """Count the runs into ``metrics`` and, with ``otel``, export their spans, in the block."""
    with ExitStack() as stack:
        if metrics is not None:
            stack.callback(metrics.install())
        if otel:
            from ..ops.tracing import exporting_spans

            stack.enter_context(exporting_spans())
        yield

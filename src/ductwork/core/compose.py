"""Compositions: parallel, sequential and conditional runs of other runnables.

Every composition is a :class:`~ductwork.Runnable`, so compositions nest freely: a retry of a
parallel of sequences of pipelines is just another runnable, with ``await x.run()`` returning one
:class:`~ductwork.RunResult` tree.

A composition runs each child with ``child.execute(child_ctx, child_result)``:

* every child run gets its own :class:`~ductwork.RunContext` (a new ``run_id``, ``parent_run_id``
  set to the composition's run, the same window and parameters), so a pipeline calls its
  extractor afresh and opens its loader anew for every child run, even when the same pipeline
  object appears twice. A child uses its own state store when it was given one, otherwise the
  composition's;
* the child's result is created before the child starts and added to the composition's
  ``children`` in declaration order, so the tree also shows children that failed, were cancelled
  or never started.

A composition whose children failed fails with :class:`~ductwork.CompositionError` naming the
composition, with ``__cause__`` the first failed child's error and ``.result`` the composition's
result. Cancellation is never caught: a cancelled composition cancels its running children,
records them (and the children it had not started yet) as ``cancelled``, and re-raises.

The retry composition lives in :mod:`ductwork.core.retry`.
"""

from __future__ import annotations

import dataclasses
import inspect
from abc import abstractmethod
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

import anyio
from anyio.abc import TaskGroup
from pydantic import BaseModel, ConfigDict, Field

from .._exceptions import CompositionError, PipelineError
from .config import validate_config
from .context import RunContext
from .pipeline import LogSetting
from .result import RunResult
from .runnable import Runnable, resolve_log_level
from .types import RunStatus

if TYPE_CHECKING:
    from .store import StateStore

__all__ = [
    "Composition",
    "CompositionConfig",
    "ConditionalConfig",
    "ConditionalPipeline",
    "ParallelConfig",
    "ParallelPipeline",
    "SequentialConfig",
    "SequentialPipeline",
]

NOT_STARTED = "not started"
"""The ``detail`` of a child that was cancelled before it started."""

_STATUS_ORDER = (
    RunStatus.SUCCEEDED,
    RunStatus.FAILED,
    RunStatus.CANCELLED,
    RunStatus.SKIPPED,
    RunStatus.PENDING,
)


class CompositionConfig(BaseModel):
    """Options shared by every composition.

    Attributes:
        name: the composition's name, used in logs, results, errors and the registry.
        logging: ``True`` logs one line when a run starts and one when it ends at INFO, ``False``
            logs nothing per run, a level name logs those lines at that level.
        timeout: seconds after which a run of the whole composition is cancelled and fails with
            :class:`~ductwork.RunTimeoutError`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    name: Annotated[str, Field(min_length=1, max_length=200)]
    logging: LogSetting = True
    timeout: Annotated[float, Field(gt=0)] | None = None


class ParallelConfig(CompositionConfig):
    """Validated options of a :class:`ParallelPipeline`.

    Attributes:
        pipelines: the runnables to run side by side (at least one).
        max_workers: how many of them run at once; ``None`` runs them all at once.
        error_handling: ``"fail_fast"``, ``"continue"`` or ``"ignore"`` (see
            :class:`ParallelPipeline`).
    """

    name: Annotated[str, Field(min_length=1, max_length=200)] = "parallel_pipeline"
    pipelines: Annotated[list[Runnable], Field(min_length=1)]
    max_workers: Annotated[int, Field(ge=1, le=100_000, strict=True)] | None = 4
    error_handling: Literal["fail_fast", "continue", "ignore"] = "fail_fast"


class SequentialConfig(CompositionConfig):
    """Validated options of a :class:`SequentialPipeline`.

    Attributes:
        pipelines: the runnables to run one after another (at least one).
        stop_on_error: stop at the first failure (``True``) or run every child and report every
            failure at the end (``False``).
    """

    name: Annotated[str, Field(min_length=1, max_length=200)] = "sequential_pipeline"
    pipelines: Annotated[list[Runnable], Field(min_length=1)]
    stop_on_error: Annotated[bool, Field(strict=True)] = True


class ConditionalConfig(CompositionConfig):
    """Validated options of a :class:`ConditionalPipeline`.

    Attributes:
        condition: a sync or async callable receiving the RunContext; its truth picks the branch.
        true_pipeline: the runnable run when the condition is true.
        false_pipeline: the runnable run when it is false; ``None`` skips the run.
    """

    name: Annotated[str, Field(min_length=1, max_length=200)] = "conditional_pipeline"
    condition: Callable[..., Any]
    true_pipeline: Runnable
    false_pipeline: Runnable | None = None


class Composition(Runnable):
    """Base class of compositions: a Runnable that runs other runnables as its children."""

    kind = "composition"

    def _configure(self, config: CompositionConfig, state: StateStore | None) -> None:
        self.name = config.name
        self.timeout = config.timeout
        self.log_level = resolve_log_level(config.logging)
        self.state = state

    @property
    @abstractmethod
    def children(self) -> tuple[Runnable, ...]:
        """The runnables this composition may run, in declaration order."""

    def __repr__(self) -> str:
        names = ", ".join(repr(child.name) for child in self.children)
        return f"{type(self).__name__}(name={self.name!r}, children=[{names}])"

    def plan_child(
        self, ctx: RunContext, result: RunResult, child: Runnable
    ) -> tuple[RunContext, RunResult]:
        """Make the context and the (pending) result of one child run and record the result.

        The child's context is ``ctx.child(child.name)``; a child with a state store of its own
        keeps it. The result is appended to ``result.children``.
        """
        child_ctx = ctx.child(child.name)
        if child.state is not None and child.state is not child_ctx.state:
            child_ctx = dataclasses.replace(child_ctx, state=child.state)
        child_result = child.new_result(child_ctx)
        result.children.append(child_result)
        return child_ctx, child_result

    def children_failed(
        self, failed: Sequence[RunResult], total: int, note: str = "", head: str | None = None
    ) -> CompositionError:
        """The error of this composition when the child runs ``failed`` (of ``total``) failed.

        The message starts with ``head`` (by default ``"<n> of <total> pipelines failed"`` and
        ``note``), then gives every child's error; ``brief`` names the failed children only.
        """
        errors: list[BaseException] = [r.error for r in failed if r.error is not None]
        if head is None:
            head = f"{len(failed)} of {total} pipelines failed{note}"
        names = ", ".join(repr(r.name) for r in failed)
        details = "; ".join(str(e) for e in errors)
        error = CompositionError(
            f"{head}: {details}" if details else head,
            pipeline=self.name,
            errors=errors,
            brief=f"{head}: {names}",
        )
        if errors:
            error.__cause__ = errors[0]
        return error


def mark_not_started(results: Sequence[RunResult]) -> None:
    """Record children still pending (never started) as cancelled."""
    for child in results:
        if child.status is RunStatus.PENDING:
            child.status = RunStatus.CANCELLED
            child.detail = NOT_STARTED


def status_counts(results: Sequence[RunResult]) -> str:
    """E.g. ``"2 succeeded, 1 failed"``."""
    counts = Counter(r.status for r in results)
    return ", ".join(f"{counts[s]} {s}" for s in _STATUS_ORDER if counts[s])


class ParallelPipeline(Composition):
    """Runs its children side by side, at most ``max_workers`` at once.

    The children run as tasks of one anyio task group; a capacity limiter lets ``max_workers`` of
    them run at a time and starts the others, in declaration order, as places free up.

    ``error_handling`` decides what a failed child does:

    * ``"fail_fast"`` (default): the first failure cancels the running children (each stops
      within one batch) and the queued ones, which are recorded as ``cancelled`` with detail
      ``"not started"``; the composition fails with a CompositionError naming the failure.
    * ``"continue"``: every child runs to its end; if any failed, the composition then fails
      with a CompositionError reporting every failure.
    * ``"ignore"``: failures are recorded in the children's results and the composition
      succeeds (its ``detail`` counts them).

    Build one with :func:`~ductwork.create_parallel_pipeline`.

    Example:
        >>> import anyio
        >>> from ductwork import create_el_pipeline
        >>> rows = []
        >>> def source(n):
        ...     async def extract(ctx):
        ...         yield [{"source": n}]
        ...     return extract
        >>> pipelines = [
        ...     create_el_pipeline(source(n), rows.extend, f"s{n}", logging=False) for n in (1, 2)
        ... ]
        >>> both = ParallelPipeline(pipelines, logging=False)
        >>> result = anyio.run(both.run)
        >>> result.status, result.records_out, sorted(r["source"] for r in rows)
        (<RunStatus.SUCCEEDED: 'succeeded'>, 2, [1, 2])
    """

    kind = "parallel"

    def __init__(
        self,
        pipelines: Sequence[Runnable],
        max_workers: int | None = 4,
        error_handling: Literal["fail_fast", "continue", "ignore"] = "fail_fast",
        *,
        name: str = "parallel_pipeline",
        logging: LogSetting = True,
        timeout: float | None = None,
        state: StateStore | None = None,
    ) -> None:
        config: ParallelConfig = validate_config(
            ParallelConfig,
            "parallel pipeline",
            name=name,
            pipelines=pipelines,
            max_workers=max_workers,
            error_handling=error_handling,
            logging=logging,
            timeout=timeout,
        )
        self._configure(config, state)
        self.config = config
        self.pipelines: tuple[Runnable, ...] = tuple(config.pipelines)
        self.max_workers = config.max_workers
        self.error_handling = config.error_handling

    @property
    def children(self) -> tuple[Runnable, ...]:
        """The runnables run side by side."""
        return self.pipelines

    async def _execute(self, ctx: RunContext, result: RunResult) -> None:
        planned = [(child, *self.plan_child(ctx, result, child)) for child in self.pipelines]
        limiter = anyio.CapacityLimiter(self.max_workers or len(planned))
        fail_fast = self.error_handling == "fail_fast"
        try:
            async with anyio.create_task_group() as tg:
                for child, child_ctx, child_result in planned:
                    tg.start_soon(
                        self._run_child,
                        tg,
                        limiter,
                        fail_fast,
                        child,
                        child_ctx,
                        child_result,
                        name=f"ductwork:{self.name}/{child.name}",
                    )
        finally:
            mark_not_started(result.children)
        failed = [r for r in result.children if r.status is RunStatus.FAILED]
        if not failed:
            return
        counts = status_counts(result.children)
        if self.error_handling == "ignore":
            result.detail = f"{counts}; failures ignored"
            return
        result.detail = counts
        cancelled = sum(r.status is RunStatus.CANCELLED for r in result.children)
        note = f", {cancelled} cancelled" if cancelled else ""
        raise self.children_failed(failed, len(planned), note)

    @staticmethod
    async def _run_child(
        tg: TaskGroup,
        limiter: anyio.CapacityLimiter,
        fail_fast: bool,
        child: Runnable,
        child_ctx: RunContext,
        child_result: RunResult,
    ) -> None:
        async with limiter:
            await child.execute(child_ctx, child_result)
            if fail_fast and child_result.status is RunStatus.FAILED:
                # Cancel while still holding the place, so no queued child starts first.
                tg.cancel_scope.cancel()


class SequentialPipeline(Composition):
    """Runs its children one after another, in declaration order.

    With ``stop_on_error=True`` (default) the first failure ends the run: the children after it
    are not run (recorded as ``skipped``) and the composition fails with a CompositionError
    naming the failure. With ``stop_on_error=False`` every child runs and, if any failed, the
    composition fails at the end with a CompositionError reporting every failure.

    Build one with :func:`~ductwork.create_sequential_pipeline`.

    Example:
        >>> import anyio
        >>> from ductwork import create_el_pipeline
        >>> order = []
        >>> def step(n):
        ...     async def extract(ctx):
        ...         order.append(n)
        ...         yield [{"step": n}]
        ...     return create_el_pipeline(extract, lambda batch: None, f"step{n}", logging=False)
        >>> steps = SequentialPipeline([step(1), step(2), step(3)], logging=False)
        >>> result = anyio.run(steps.run)
        >>> order, [child.name for child in result.children]
        ([1, 2, 3], ['step1', 'step2', 'step3'])
    """

    kind = "sequential"

    def __init__(
        self,
        pipelines: Sequence[Runnable],
        stop_on_error: bool = True,
        *,
        name: str = "sequential_pipeline",
        logging: LogSetting = True,
        timeout: float | None = None,
        state: StateStore | None = None,
    ) -> None:
        config: SequentialConfig = validate_config(
            SequentialConfig,
            "sequential pipeline",
            name=name,
            pipelines=pipelines,
            stop_on_error=stop_on_error,
            logging=logging,
            timeout=timeout,
        )
        self._configure(config, state)
        self.config = config
        self.pipelines: tuple[Runnable, ...] = tuple(config.pipelines)
        self.stop_on_error = config.stop_on_error

    @property
    def children(self) -> tuple[Runnable, ...]:
        """The runnables run one after another."""
        return self.pipelines

    async def _execute(self, ctx: RunContext, result: RunResult) -> None:
        planned = [(child, *self.plan_child(ctx, result, child)) for child in self.pipelines]
        stopped = False
        try:
            for child, child_ctx, child_result in planned:
                if stopped:
                    child_result.status = RunStatus.SKIPPED
                    child_result.detail = "not run: an earlier pipeline failed"
                    continue
                await child.execute(child_ctx, child_result)
                if child_result.status is RunStatus.FAILED and self.stop_on_error:
                    stopped = True
        finally:
            mark_not_started(result.children)
        failed = [r for r in result.children if r.status is RunStatus.FAILED]
        if not failed:
            return
        result.detail = status_counts(result.children)
        not_run = sum(r.status is RunStatus.SKIPPED for r in result.children) if stopped else 0
        note = f", stopped with {not_run} not run" if not_run else ""
        raise self.children_failed(failed, len(planned), note)


class ConditionalPipeline(Composition):
    """Runs one of two runnables, chosen by a condition evaluated at the start of every run.

    ``condition`` is a sync or async callable receiving the run's
    :class:`~ductwork.RunContext` (so it can look at ``ctx.params``, ``ctx.window`` or
    ``ctx.state``). When it is true ``true_pipeline`` runs; otherwise ``false_pipeline`` runs, or,
    if there is none, the run ends with status ``skipped``. The chosen child's result is the only
    child of the composition's result; a failed child fails the composition with a
    CompositionError. A condition that raises fails the run with a PipelineError whose stage is
    ``"condition"``.

    Build one with :func:`~ductwork.create_conditional_pipeline`.

    Example:
        >>> import anyio
        >>> from ductwork import create_el_pipeline
        >>> async def extract(ctx):
        ...     yield [{"id": 1}]
        >>> only_full = ConditionalPipeline(
        ...     lambda ctx: ctx.params.get("mode") == "full",
        ...     create_el_pipeline(extract, lambda batch: None, "full_load", logging=False),
        ...     logging=False,
        ... )
        >>> anyio.run(only_full.run).status
        <RunStatus.SKIPPED: 'skipped'>
        >>> result = anyio.run(lambda: only_full.run(params={"mode": "full"}))
        >>> result.status, result.children[0].name
        (<RunStatus.SUCCEEDED: 'succeeded'>, 'full_load')
    """

    kind = "conditional"

    def __init__(
        self,
        condition: Callable[[RunContext], Any],
        true_pipeline: Runnable,
        false_pipeline: Runnable | None = None,
        *,
        name: str = "conditional_pipeline",
        logging: LogSetting = True,
        timeout: float | None = None,
        state: StateStore | None = None,
    ) -> None:
        config: ConditionalConfig = validate_config(
            ConditionalConfig,
            "conditional pipeline",
            name=name,
            condition=condition,
            true_pipeline=true_pipeline,
            false_pipeline=false_pipeline,
            logging=logging,
            timeout=timeout,
        )
        self._configure(config, state)
        self.config = config
        self.condition: Callable[[RunContext], Any] = config.condition
        self.true_pipeline: Runnable = config.true_pipeline
        self.false_pipeline: Runnable | None = config.false_pipeline

    @property
    def children(self) -> tuple[Runnable, ...]:
        """The true branch and, when there is one, the false branch."""
        if self.false_pipeline is None:
            return (self.true_pipeline,)
        return (self.true_pipeline, self.false_pipeline)

    async def evaluate(self, ctx: RunContext) -> bool:
        """Evaluate the condition for the run with context ``ctx``.

        Raises:
            PipelineError: the condition raised (stage ``"condition"``, ``__cause__`` the error).
        """
        try:
            value = self.condition(ctx)
            if inspect.isawaitable(value):
                value = await value
            return bool(value)
        except Exception as exc:
            raise PipelineError(
                f"condition raised {type(exc).__name__}: {exc}",
                pipeline=self.name,
                stage="condition",
            ) from exc

    async def _execute(self, ctx: RunContext, result: RunResult) -> None:
        chosen = await self.evaluate(ctx)
        branch = self.true_pipeline if chosen else self.false_pipeline
        outcome = "true" if chosen else "false"
        if branch is None:
            result.status = RunStatus.SKIPPED
            result.detail = f"condition {outcome}: nothing to run"
            return
        result.detail = f"condition {outcome}: ran {branch.name!r}"
        child_ctx, child_result = self.plan_child(ctx, result, branch)
        await branch.execute(child_ctx, child_result)
        if child_result.status is RunStatus.FAILED:
            raise self.children_failed([child_result], 1, head=f"{outcome} branch failed")
        if child_result.status is RunStatus.SKIPPED:
            result.status = RunStatus.SKIPPED

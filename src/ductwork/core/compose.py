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
from typing import (
    TYPE_CHECKING,
    Annotated,
    Any,
    ClassVar,
    Generic,
    Literal,
    TypeVar,
    cast,
    overload,
)

import anyio
from anyio.abc import TaskGroup
from pydantic import ConfigDict, Field

from .._exceptions import CompositionError, PipelineError
from .config import Options, configure
from .context import RunContext
from .executor import LOCAL, Executor
from .pipeline import LogSetting
from .result import RunResult
from .runnable import Runnable, resolve_log_level
from .stages import accepts_positional
from .types import RunStatus

if TYPE_CHECKING:
    from .store import StateStore

__all__ = [
    "Composition",
    "CompositionConfig",
    "ConditionalConfig",
    "ConditionalPipeline",
    "FromConfig",
    "ParallelConfig",
    "ParallelErrorHandling",
    "ParallelPipeline",
    "SequentialConfig",
    "SequentialPipeline",
]

NOT_STARTED = "not started"
"""The ``detail`` of a child that was cancelled before it started."""

ParallelErrorHandling = Literal["fail_fast", "continue", "ignore"]
"""What a failed child of a parallel composition does (see ``ParallelConfig.error_handling``)."""

_STATUS_ORDER = (
    RunStatus.SUCCEEDED,
    RunStatus.FAILED,
    RunStatus.CANCELLED,
    RunStatus.SKIPPED,
    RunStatus.PENDING,
)


class CompositionConfig(Options):
    """Options shared by every composition."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    name: Annotated[str, Field(min_length=1, max_length=200)]
    """The composition's name, used in logs, results, errors and the registry."""
    logging: LogSetting = True
    """``True`` logs one line when a run starts and one when it ends at INFO, ``False`` logs
    nothing per run, a level name logs those lines at that level."""
    timeout: Annotated[float, Field(gt=0)] | None = None
    """Seconds after which a run of the whole composition, children included, is cancelled and
    fails with :class:`~ductwork.RunTimeoutError`."""


class ParallelConfig(CompositionConfig):
    """Validated options of a :class:`ParallelPipeline`."""

    name: Annotated[str, Field(min_length=1, max_length=200)] = "parallel_pipeline"
    """The composition's name."""
    pipelines: Annotated[list[Runnable], Field(min_length=1)]
    """The runnables (pipelines or other compositions) to run side by side; at least one."""
    max_workers: Annotated[int, Field(ge=1, le=100_000, strict=True)] | None = 4
    """How many of them run at once (``None``: all of them); the others wait their turn."""
    error_handling: ParallelErrorHandling = "fail_fast"
    """What a failed child does. Not the :data:`~ductwork.core.types.ErrorHandling` of
    pipelines and stages, which decides about bad input: here a whole child run has failed.

    * ``"fail_fast"``: the first failure cancels the running children (each stops within one
      batch) and the queued ones, which are recorded as ``cancelled`` with detail
      ``"not started"``; the composition fails with a CompositionError naming the failure.
    * ``"continue"``: every child runs to its end; if any failed, the composition then fails
      with a CompositionError reporting every failure.
    * ``"ignore"``: failures are recorded in the children's results and the composition
      succeeds (its ``detail`` counts them).
    """
    executor: Executor | None = None
    """Where the children run: :class:`~ductwork.LocalExecutor` (``None``, the default: in this
    event loop) or :class:`~ductwork.DaskExecutor` (on the workers of a Dask cluster)."""


class SequentialConfig(CompositionConfig):
    """Validated options of a :class:`SequentialPipeline`."""

    name: Annotated[str, Field(min_length=1, max_length=200)] = "sequential_pipeline"
    """The composition's name."""
    pipelines: Annotated[list[Runnable], Field(min_length=1)]
    """The runnables to run one after another, in order; at least one."""
    stop_on_error: Annotated[bool, Field(strict=True)] = True
    """``True`` stops at the first failure (the children after it are recorded as
    ``skipped``); ``False`` runs every child and then fails reporting every failure."""


class ConditionalConfig(CompositionConfig):
    """Validated options of a :class:`ConditionalPipeline`."""

    name: Annotated[str, Field(min_length=1, max_length=200)] = "conditional_pipeline"
    """The composition's name."""
    condition: Callable[..., Any]
    """A sync or async callable receiving the run's RunContext, or taking no argument; its
    truth picks the branch."""
    true_pipeline: Runnable
    """The runnable run when the condition is true."""
    false_pipeline: Runnable | None = None
    """The runnable run when it is false; without one, the run ends with status ``skipped``."""


ConfigT = TypeVar("ConfigT", bound=CompositionConfig)
ListConfigT = TypeVar("ListConfigT", ParallelConfig, SequentialConfig)
T = TypeVar("T")

Planned = list[tuple[Runnable, RunContext, RunResult]]
"""Each child of a run with the context and the result of its run (see ``plan_child``)."""


class FromConfig(Generic[T]):
    """A read-only attribute of a composition: the field of the same name of its ``config``.

    Declared in the class body as ``max_workers: FromConfig[int | None] = FromConfig("...")``,
    with the attribute's docstring as the argument; like a property, it refuses assignment.
    """

    def __init__(self, doc: str) -> None:
        self.__doc__ = doc
        self.name = ""

    def __set_name__(self, owner: type[Any], name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type[Any] | None = None) -> FromConfig[T]: ...

    @overload
    def __get__(self, obj: Composition[Any], owner: type[Any] | None = None) -> T: ...

    def __get__(
        self, obj: Composition[Any] | None, owner: type[Any] | None = None
    ) -> T | FromConfig[T]:
        if obj is None:
            return self
        return cast(T, getattr(obj.config, self.name))

    def __set__(self, obj: Composition[Any], value: T) -> None:
        raise AttributeError(
            f"property {self.name!r} of {type(obj).__name__!r} object has no setter"
        )

    def __delete__(self, obj: Composition[Any]) -> None:
        raise AttributeError(
            f"property {self.name!r} of {type(obj).__name__!r} object has no deleter"
        )


class Composition(Runnable, Generic[ConfigT]):
    """Base class of compositions: a Runnable that runs other runnables as its children.

    A composition is made from its configuration model (``config_model``, e.g.
    :class:`ParallelConfig`), or from the model's fields as keyword arguments, which are
    validated into one (and on top of ``config`` when both are given). ``state`` is the state
    store handed to children that have none of their own.
    """

    kind = "composition"
    config_model: type[ConfigT]
    """The configuration model of this kind of composition."""
    positional: ClassVar[tuple[str, ...]] = ()
    """The fields that may also be passed by position, in order (``ParallelPipeline([a, b])``)."""

    def __init__(
        self,
        *args: Any,
        state: StateStore | None = None,
        **options: Any,
    ) -> None:
        config: ConfigT | None = None
        if args and isinstance(args[0], self.config_model):
            config, args = args[0], args[1:]
        if len(args) > len(self.positional):
            raise TypeError(
                f"{type(self).__name__} takes at most {len(self.positional)} positional "
                f"arguments ({', '.join(self.positional)}), got {len(args)}"
            )
        for field, value in zip(self.positional, args, strict=False):
            if field in options:
                raise TypeError(f"{type(self).__name__} got {field!r} twice")
            options[field] = value
        self.config: ConfigT = configure(
            self.config_model, f"{self.kind} pipeline", config, options
        )
        self.name = self.config.name
        self.timeout = self.config.timeout
        self.log_level = resolve_log_level(self.config.logging)
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


class _ListComposition(Composition[ListConfigT]):
    """A composition of the list of runnables ``pipelines``: plans a child run for each, runs
    them with :meth:`_run_all`, records those that never started and reports the failures."""

    positional = ("pipelines",)

    @property
    def pipelines(self) -> tuple[Runnable, ...]:
        """The runnables, in declaration order."""
        return tuple(self.config.pipelines)

    @property
    def children(self) -> tuple[Runnable, ...]:
        """The runnables of ``pipelines``."""
        return self.pipelines

    async def _execute(self, ctx: RunContext, result: RunResult) -> None:
        planned: Planned = []
        for child in self.pipelines:
            child_ctx, child_result = self.plan_child(ctx, result, child)
            planned.append((child, child_ctx, child_result))
        try:
            await self._run_all(planned)
        finally:
            mark_not_started(result.children)
        failed = [r for r in result.children if r.status is RunStatus.FAILED]
        if failed:
            self._report(result, failed, len(planned))

    @abstractmethod
    async def _run_all(self, planned: Planned) -> None:
        """Run the planned children."""

    @abstractmethod
    def _report(self, result: RunResult, failed: list[RunResult], total: int) -> None:
        """Record that the children ``failed`` (of ``total``) and raise, unless that is ignored."""


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


class ParallelPipeline(_ListComposition[ParallelConfig]):
    """Runs its children side by side, at most ``max_workers`` at once.

    The children run as tasks of one anyio task group; a capacity limiter lets ``max_workers`` of
    them run at a time and starts the others, in declaration order, as places free up.
    ``error_handling`` decides what a failed child does (``"fail_fast"``, ``"continue"`` or
    ``"ignore"``; see :attr:`ParallelConfig.error_handling`).

    Build one with :func:`~ductwork.create_parallel_pipeline` or from a :class:`ParallelConfig`
    (see :class:`Composition`).

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
        >>> both = ParallelPipeline(ParallelConfig(pipelines=pipelines, logging=False))
        >>> result = anyio.run(both.run)
        >>> result.status, result.records_out, sorted(r["source"] for r in rows)
        (<RunStatus.SUCCEEDED: 'succeeded'>, 2, [1, 2])
    """

    kind = "parallel"
    config_model = ParallelConfig
    max_workers: FromConfig[int | None] = FromConfig(
        """How many children run at once (``None``: all)."""
    )
    error_handling: FromConfig[ParallelErrorHandling] = FromConfig("What a failed child does.")

    async def _run_all(self, planned: Planned) -> None:
        limiter = anyio.CapacityLimiter(self.max_workers or len(planned))
        fail_fast = self.error_handling == "fail_fast"
        executor = self.config.executor or LOCAL
        async with anyio.create_task_group() as tg:
            for child, child_ctx, child_result in planned:
                tg.start_soon(
                    self._run_child,
                    executor,
                    tg,
                    limiter,
                    fail_fast,
                    child,
                    child_ctx,
                    child_result,
                    name=f"ductwork:{self.name}/{child.name}",
                )

    def _report(self, result: RunResult, failed: list[RunResult], total: int) -> None:
        counts = status_counts(result.children)
        if self.error_handling == "ignore":
            result.detail = f"{counts}; failures ignored"
            return
        result.detail = counts
        cancelled = sum(r.status is RunStatus.CANCELLED for r in result.children)
        note = f", {cancelled} cancelled" if cancelled else ""
        raise self.children_failed(failed, total, note)

    @staticmethod
    async def _run_child(
        executor: Executor,
        tg: TaskGroup,
        limiter: anyio.CapacityLimiter,
        fail_fast: bool,
        child: Runnable,
        child_ctx: RunContext,
        child_result: RunResult,
    ) -> None:
        async with limiter:
            await executor.execute(child, child_ctx, child_result)
            if fail_fast and child_result.status is RunStatus.FAILED:
                # Cancel while still holding the place, so no queued child starts first.
                tg.cancel_scope.cancel()


class SequentialPipeline(_ListComposition[SequentialConfig]):
    """Runs its children one after another, in declaration order.

    With ``stop_on_error=True`` (default) the first failure ends the run: the children after it
    are not run (recorded as ``skipped``) and the composition fails with a CompositionError
    naming the failure. With ``stop_on_error=False`` every child runs and, if any failed, the
    composition fails at the end with a CompositionError reporting every failure.

    Build one with :func:`~ductwork.create_sequential_pipeline` or from a :class:`SequentialConfig`
    (see :class:`Composition`).

    Example:
        >>> from ductwork import create_el_pipeline
        >>> import anyio
        >>> order = []
        >>> def step(n):
        ...     async def extract(ctx):
        ...         order.append(n)
        ...         yield [{"step": n}]
        ...     return create_el_pipeline(extract, lambda batch: None, f"step{n}", logging=False)
        >>> steps = SequentialPipeline(pipelines=[step(1), step(2), step(3)], logging=False)
        >>> result = anyio.run(steps.run)
        >>> order, [child.name for child in result.children]
        ([1, 2, 3], ['step1', 'step2', 'step3'])
    """

    kind = "sequential"
    config_model = SequentialConfig
    stop_on_error: FromConfig[bool] = FromConfig("Whether the first failure ends the run.")

    async def _run_all(self, planned: Planned) -> None:
        stopped = False
        for child, child_ctx, child_result in planned:
            if stopped:
                child_result.status = RunStatus.SKIPPED
                child_result.detail = "not run: an earlier pipeline failed"
                continue
            await child.execute(child_ctx, child_result)
            if child_result.status is RunStatus.FAILED and self.stop_on_error:
                stopped = True

    def _report(self, result: RunResult, failed: list[RunResult], total: int) -> None:
        result.detail = status_counts(result.children)
        # A failure stopped the run when the first one ends it: the children after it are skipped.
        stopped = self.stop_on_error
        not_run = sum(r.status is RunStatus.SKIPPED for r in result.children) if stopped else 0
        note = f", stopped with {not_run} not run" if not_run else ""
        raise self.children_failed(failed, total, note)


class ConditionalPipeline(Composition[ConditionalConfig]):
    """Runs one of two runnables, chosen by a condition evaluated at the start of every run.

    ``condition`` is a sync or async callable receiving the run's
    :class:`~ductwork.RunContext` (so it can look at ``ctx.params``, ``ctx.window`` or
    ``ctx.state``), or one taking no argument (``lambda: date.today().day == 1``). When it is
    true ``true_pipeline`` runs; otherwise ``false_pipeline`` runs, or, if there is none, the
    run ends with status ``skipped``. The chosen child's result is the only
    child of the composition's result; a failed child fails the composition with a
    CompositionError. A condition that raises fails the run with a PipelineError whose stage is
    ``"condition"``.

    Build one with :func:`~ductwork.create_conditional_pipeline` or from a
    :class:`ConditionalConfig` (see :class:`Composition`).

    Example:
        >>> import anyio
        >>> from ductwork import create_el_pipeline
        >>> async def extract(ctx):
        ...     yield [{"id": 1}]
        >>> full_load = create_el_pipeline(extract, lambda b: None, "full_load", logging=False)
        >>> only_full = ConditionalPipeline(
        ...     condition=lambda ctx: ctx.params.get("mode") == "full",
        ...     true_pipeline=full_load,
        ...     logging=False,
        ... )
        >>> anyio.run(only_full.run).status
        <RunStatus.SKIPPED: 'skipped'>
        >>> result = anyio.run(lambda: only_full.run(params={"mode": "full"}))
        >>> result.status, result.children[0].name
        (<RunStatus.SUCCEEDED: 'succeeded'>, 'full_load')
    """

    kind = "conditional"
    config_model = ConditionalConfig
    positional = ("condition", "true_pipeline", "false_pipeline")

    condition: FromConfig[Callable[..., Any]] = FromConfig("The callable that picks the branch.")
    true_pipeline: FromConfig[Runnable] = FromConfig("The runnable run when the condition is true.")
    false_pipeline: FromConfig[Runnable | None] = FromConfig(
        "The runnable run when it is false, if any."
    )

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
        condition = self.condition
        try:
            value = condition(ctx) if accepts_positional(condition, 1) else condition()
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

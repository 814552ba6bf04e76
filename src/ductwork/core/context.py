"""The per-run context handed to every stage."""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from .result import StageStats
    from .store import StateStore

__all__ = ["RunContext", "TimeWindow", "new_run_id"]

_EMPTY: Mapping[str, Any] = MappingProxyType({})

#: The fields of a run's context that a child run of a composition shares with it; the child has
#: its own run id, start time and stage.
_SHARED_WITH_CHILDREN = ("logger", "window", "params", "state")


def new_run_id() -> str:
    """Return a new, unique run id (32 hex characters)."""
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """A half-open interval of time ``[start, end)`` that a run covers.

    Templates can format it: ``"{window.start:%Y-%m-%d}"``.
    """

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        # Compare instants, not wall clocks: Python compares two datetimes that share one tzinfo
        # by their wall-clock fields, which is wrong across a DST change.
        if self.end.timestamp() <= self.start.timestamp():
            raise ValueError(f"time window end {self.end} is not after its start {self.start}")

    @property
    def duration_seconds(self) -> float:
        """Length of the window in seconds (elapsed time, correct across DST changes)."""
        return self.end.timestamp() - self.start.timestamp()

    def __str__(self) -> str:
        return f"[{self.start.isoformat()}, {self.end.isoformat()})"


@dataclass(frozen=True, slots=True)
class RunContext:
    """Everything a stage may need to know about the run it is part of.

    A new context is made for every run (and for every child of a composition); stages receive
    it as ``ctx``.

    Attributes:
        run_id: unique id of this run.
        pipeline: name of the pipeline (or composition) being run.
        logger: the logger to use for this run (``ductwork`` or a child of it).
        window: the time window the run covers, when the pipeline has a timescope.
        params: run parameters (from the caller, the command line or the scheduler).
        state: the state store for cursors and run history, when one is configured.
        started_at: when the run started (UTC).
        parent_run_id: run id of the composition that started this run, if any.
        stage: name of the stage this context was handed to (``None`` outside stages).
    """

    run_id: str = field(default_factory=new_run_id)
    pipeline: str = "pipeline"
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("ductwork"))
    window: TimeWindow | None = None
    params: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    state: StateStore | None = None
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    parent_run_id: str | None = None
    stage: str | None = None
    _stats: StageStats | None = field(default=None, repr=False, compare=False)
    _tasks: TaskGroup | None = field(default=None, repr=False, compare=False)

    def child(self, pipeline: str) -> RunContext:
        """A fresh context for a child run of a composition: new run id, same window and params."""
        shared = {name: getattr(self, name) for name in _SHARED_WITH_CHILDREN}
        return RunContext(pipeline=pipeline, parent_run_id=self.run_id, **shared)

    def for_stage(
        self, stage: str, stats: StageStats, tasks: TaskGroup | None = None
    ) -> RunContext:
        """The view of this context handed to one stage; metrics recorded through it land there."""
        return dataclasses.replace(self, stage=stage, _stats=stats, _tasks=tasks)

    @property
    def run_tasks(self) -> TaskGroup | None:
        """The task group of the run's stages, for work a loader leaves in flight (an insert
        sent while the next batch is encoded): such a task is cancelled if the run fails, and
        the loader waits for it before it closes. ``None`` outside a run's loader."""
        return self._tasks

    def add_metric(self, name: str, value: int | float = 1) -> None:
        """Add ``value`` to the counter ``name`` of the current stage (e.g. ``records_skipped``).

        The counters appear in the run's :class:`~ductwork.RunResult` under the stage's
        ``metrics``. Outside a stage this is a no-op.
        """
        stats = self._stats
        if stats is not None:
            stats.metrics[name] = stats.metrics.get(name, 0) + value

    def template_values(self) -> dict[str, Any]:
        """Values for filling templates (paths, URLs, queries) from this run.

        Keys: ``pipeline``, ``run_id``, ``window`` (or ``None``), ``date`` (the window's start
        date, or today's UTC date), ``params``, and each parameter by name.
        """
        date = (self.window.start if self.window else self.started_at).date()
        values: dict[str, Any] = dict(self.params)
        values.update(
            pipeline=self.pipeline,
            run_id=self.run_id,
            window=self.window,
            date=date.isoformat(),
            params=self.params,
        )
        return values

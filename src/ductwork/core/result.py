"""Run results: per-stage statistics and the result tree of compositions."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .types import RunStatus

__all__ = ["RunResult", "StageStats"]

# Composition kinds whose children are attempts at the same work: their records are the last's.
_LAST_CHILD_COUNTS = frozenset({"retry"})


@dataclass(slots=True)
class StageStats:
    """Counters and timings of one stage in one run.

    Attributes:
        name: the stage's name.
        kind: ``extract``, ``transform`` or ``load``.
        records_in / batches_in: what the stage received (the extractor receives nothing).
        records_out / batches_out: what the stage passed on (for the loader: what it wrote).
        busy_seconds: time the stage spent working (including its own I/O).
        wait_input_seconds: time blocked on an empty input stream (upstream too slow).
        wait_output_seconds: time blocked on a full output stream (downstream too slow).
        metrics: extra counters a stage records through ``ctx.add_metric`` (skipped records, ...).
        rerun_unsafe: for a loader that committed rows to a target that does not deduplicate
            them, why running again would write them twice (``None`` otherwise).
    """

    name: str
    kind: str
    records_in: int = 0
    records_out: int = 0
    batches_in: int = 0
    batches_out: int = 0
    busy_seconds: float = 0.0
    wait_input_seconds: float = 0.0
    wait_output_seconds: float = 0.0
    metrics: dict[str, int | float] = field(default_factory=dict)
    rerun_unsafe: str | None = None

    @property
    def blocked_seconds(self) -> float:
        """Total time blocked on a stream, empty input or full output."""
        return self.wait_input_seconds + self.wait_output_seconds

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict of the statistics."""
        return {
            "name": self.name,
            "kind": self.kind,
            "records_in": self.records_in,
            "records_out": self.records_out,
            "batches_in": self.batches_in,
            "batches_out": self.batches_out,
            "busy_seconds": round(self.busy_seconds, 6),
            "wait_input_seconds": round(self.wait_input_seconds, 6),
            "wait_output_seconds": round(self.wait_output_seconds, 6),
            "metrics": dict(self.metrics),
        }


@dataclass(slots=True)
class RunResult:
    """The outcome of one run of a pipeline or composition.

    Attributes:
        name: the pipeline's (or composition's) name.
        run_id: the run's id.
        kind: ``pipeline``, or the composition kind (``parallel``, ``sequential``, ...).
        status: the :class:`~ductwork.RunStatus`.
        started_at / ended_at: wall-clock start and end (UTC).
        duration_seconds: monotonic duration of the run.
        stages: per-stage statistics, in pipeline order (empty for compositions).
        children: results of child runs, for compositions.
        error: the exception that failed the run, if any.
        error_stage: the stage that raised it, if any.
        attempts: how many times the run was attempted (retry compositions).
        retries: how many of those attempts were retries.
    """

    name: str
    run_id: str
    kind: str = "pipeline"
    status: RunStatus = RunStatus.PENDING
    started_at: datetime | None = None
    ended_at: datetime | None = None
    duration_seconds: float = 0.0
    stages: list[StageStats] = field(default_factory=list)
    children: list[RunResult] = field(default_factory=list)
    error: BaseException | None = None
    error_stage: str | None = None
    attempts: int = 1
    retries: int = 0
    detail: str | None = None

    @property
    def succeeded(self) -> bool:
        """Whether the run succeeded."""
        return self.status is RunStatus.SUCCEEDED

    @property
    def records_in(self) -> int:
        """Records read by the extractor.

        For compositions: summed over the children, except for a retry composition, whose
        records are those of its last attempt.
        """
        if self.stages:
            return self.stages[0].records_out
        if self.kind in _LAST_CHILD_COUNTS:
            return self.children[-1].records_in if self.children else 0
        return sum(child.records_in for child in self.children)

    @property
    def records_out(self) -> int:
        """Records written by the loader (for compositions: as for :attr:`records_in`)."""
        if self.stages:
            return self.stages[-1].records_out
        if self.kind in _LAST_CHILD_COUNTS:
            return self.children[-1].records_out if self.children else 0
        return sum(child.records_out for child in self.children)

    def stage(self, name: str) -> StageStats:
        """The statistics of the stage called ``name``."""
        for stats in self.stages:
            if stats.name == name:
                return stats
        raise KeyError(name)

    @property
    def bottleneck(self) -> StageStats | None:
        """The stage that spent the most time busy: the one that set the pace."""
        if not self.stages:
            return None
        return max(self.stages, key=lambda s: s.busy_seconds)

    def failures(self) -> list[RunResult]:
        """Every failed run in this tree that has no failed child (the root causes)."""
        failed_children = [f for child in self.children for f in child.failures()]
        if failed_children:
            return failed_children
        return [self] if self.status is RunStatus.FAILED else []

    def rerun_unsafe(self) -> str | None:
        """Why running this again would write rows twice, or ``None`` when it would not.

        Set when a loader anywhere in this tree (this pipeline's own, a child's, an earlier
        attempt's) committed rows to a target that does not deduplicate them.
        """
        for stats in self.stages:
            if stats.rerun_unsafe is not None:
                return stats.rerun_unsafe
        for child in self.children:
            reason = child.rerun_unsafe()
            if reason is not None:
                return reason if child.name == self.name else f"{child.name}: {reason}"
        return None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict of the whole result tree."""
        return {
            "name": self.name,
            "run_id": self.run_id,
            "kind": self.kind,
            "status": str(self.status),
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "ended_at": self.ended_at.isoformat() if self.ended_at else None,
            "duration_seconds": round(self.duration_seconds, 6),
            "records_in": self.records_in,
            "records_out": self.records_out,
            "attempts": self.attempts,
            "retries": self.retries,
            "error": _error_text(self.error),
            "error_stage": self.error_stage,
            "detail": self.detail,
            "stages": [s.to_dict() for s in self.stages],
            "children": [c.to_dict() for c in self.children],
        }

    def summary(self) -> str:
        """A readable, multi-line rendering of the result tree.

        Each run shows its name, kind, status, duration, records and (where relevant) attempts and
        error; pipelines list their stages with records, busy and blocked time, and mark the
        bottleneck.
        """
        lines: list[str] = []
        self._render(lines, "", "", True)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def _headline(self) -> str:
        parts = [f"{self.name} ({self.kind})", str(self.status)]
        if self.started_at is not None:  # runs that never started have no timings or records
            parts.append(f"{self.duration_seconds:.3f}s")
            parts.append(f"{self.records_in} in / {self.records_out} out")
            if self.duration_seconds > 0 and self.records_out:
                parts.append(f"{self.records_out / self.duration_seconds:,.0f} rec/s")
        if self.attempts > 1:
            parts.append(f"attempts {self.attempts}")
        if self.detail:
            parts.append(self.detail)
        text = " · ".join(parts)
        if self.error is not None:
            # A composition's own error repeats its children's, which are shown below it.
            brief = getattr(self.error, "brief", None) if self.children else None
            error = f"{type(self.error).__name__}: {brief}" if brief else _error_text(self.error)
            text += f"\n  error: {error}"
        return text

    def _render(self, lines: list[str], first: str, rest: str, root: bool) -> None:
        head, *more = self._headline().split("\n")
        lines.append(first + head)
        for extra in more:
            lines.append(rest + extra)
        bottleneck = self.bottleneck if len(self.stages) > 1 else None
        for stats in self.stages if self.started_at is not None else ():
            mark = "  <- bottleneck" if stats is bottleneck and stats.busy_seconds > 0 else ""
            metrics = "".join(f", {k} {v}" for k, v in sorted(stats.metrics.items()))
            lines.append(
                f"{rest}  - {stats.kind:<9} {stats.name}: {stats.records_in} in / "
                f"{stats.records_out} out, busy {stats.busy_seconds:.3f}s, "
                f"blocked {stats.blocked_seconds:.3f}s{metrics}{mark}"
            )
        for i, child in enumerate(self.children):
            last = i == len(self.children) - 1
            child._render(
                lines,
                rest + ("└─ " if last else "├─ "),
                rest + ("   " if last else "│  "),
                False,
            )


def _error_text(error: BaseException | None) -> str | None:
    if error is None:
        return None
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__

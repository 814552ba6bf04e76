"""Prometheus metrics, read from the counters runs already keep.

Nothing here runs per record or per batch. :class:`RunMetrics` is an
:class:`~ductwork.core.instrument.Instrument`: when a run starts it holds on to the run's
:class:`~ductwork.RunResult`, whose per-stage counters the stages fill in as they go, and when
the run ends it adds the result's figures to its totals, once. A scrape (:meth:`RunMetrics.collect`)
reports the totals plus the live counters of the runs in flight, so the counters move while a long
run goes on and never go back when it ends. Runs executed elsewhere (on the workers of a cluster)
are added from the results they return: by the run of the composition that started them when
it ends, or with :meth:`RunMetrics.observe`.

The metrics (every name starts with ``ductwork_``; labels are ``pipeline``, ``stage`` and
``status``, none of which grows without bound):

=========================================  =========  ========================================
name                                       type       what
=========================================  =========  ========================================
``runs_total``                             counter    finished runs, by pipeline and status
``runs_in_progress``                       gauge      runs going on now
``run_duration_seconds``                   histogram  duration of finished runs
``stage_records_in_total``                 counter    records a stage received
``stage_records_out_total``                counter    records a stage passed on (or wrote)
``stage_batches_in_total`` / ``_out``      counter    the same in batches
``stage_busy_seconds_total``               counter    time a stage spent working
``stage_blocked_seconds_total``            counter    time a stage waited on its streams
``stage_errors_total``                     counter    errors raised in a stage: the one that
                                                      failed a run, and batches skipped after
                                                      their transformer raised
``stage_records_skipped_total``            counter    bad records dropped (``skip``)
``stage_dead_letters_total``               counter    records sent to a dead-letter sink
``stage_records_dropped_total``            counter    records a transformer filtered out
``stage_queue_depth``                      gauge      batches waiting in a stage's input stream
``clickhouse_rows_inserted_total``         counter    rows the ClickHouse loader committed
``http_requests_total``                    counter    HTTP requests, by response status
                                                      (``error``: no response)
``http_retries_total``                     counter    HTTP retries, by the status retried
=========================================  =========  ========================================

Example:
    >>> import anyio
    >>> from ductwork import create_el_pipeline
    >>> async def extract(ctx):
    ...     yield [{"n": 1}, {"n": 2}]
    >>> metrics = RunMetrics()
    >>> remove = metrics.install()
    >>> _ = anyio.run(create_el_pipeline(extract, lambda batch: None, "two", logging=False).run)
    >>> remove()
    >>> print(metrics.text(prefix="ductwork_runs_total"), end="")
    ductwork_runs_total{pipeline="two",status="succeeded"} 1.0
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from os import PathLike, fspath
from typing import TYPE_CHECKING, Any

from ..core.context import RunContext
from ..core.instrument import Instrument, install
from ..core.result import RunResult, StageStats
from ..core.runnable import Runnable
from ..core.types import RunStatus

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import Collector, CollectorRegistry

__all__ = ["DURATION_BUCKETS", "RunMetrics", "collector_registry", "metrics_text"]

#: Upper bounds of the run duration histogram, in seconds.
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)

_STAGE_COUNTERS = (
    ("records_in", "stage_records_in", "Records a stage received."),
    ("records_out", "stage_records_out", "Records a stage passed on (a loader: wrote)."),
    ("batches_in", "stage_batches_in", "Batches a stage received."),
    ("batches_out", "stage_batches_out", "Batches a stage passed on (a loader: wrote)."),
    ("busy", "stage_busy_seconds", "Seconds a stage spent working, its own I/O included."),
    ("blocked", "stage_blocked_seconds", "Seconds a stage waited on its input or output."),
    ("errors", "stage_errors", "Errors raised in a stage (failed runs, skipped batches)."),
    ("records_skipped", "stage_records_skipped", "Bad records a stage dropped."),
    ("dead_letters", "stage_dead_letters", "Records a stage sent to its dead-letter sink."),
    ("records_dropped", "stage_records_dropped", "Records a transformer filtered out."),
    ("rows_inserted", "clickhouse_rows_inserted", "Rows the ClickHouse loader committed."),
)


@dataclass(slots=True)
class _StageTotals:
    """The figures of one stage of one pipeline, summed over runs."""

    records_in: int = 0
    records_out: int = 0
    batches_in: int = 0
    batches_out: int = 0
    busy: float = 0.0
    blocked: float = 0.0
    errors: int = 0
    records_skipped: float = 0
    dead_letters: float = 0
    records_dropped: float = 0
    rows_inserted: float = 0
    inserts_rows: bool = False
    http_requests: Counter[str] = field(default_factory=Counter)
    http_retries: Counter[str] = field(default_factory=Counter)

    def add(self, stats: StageStats, failed_here: bool) -> None:
        metrics = stats.metrics
        self.records_in += stats.records_in
        self.records_out += stats.records_out
        self.batches_in += stats.batches_in
        self.batches_out += stats.batches_out
        self.busy += stats.busy_seconds
        self.blocked += stats.blocked_seconds
        self.errors += int(failed_here) + int(metrics.get("batches_failed", 0))
        self.records_skipped += metrics.get("records_skipped", 0)
        self.dead_letters += metrics.get("dead_letters", 0) + metrics.get("rows_dead_lettered", 0)
        self.records_dropped += metrics.get("records_dropped", 0)
        if "rows_inserted" in metrics:
            self.rows_inserted += metrics["rows_inserted"]
            self.inserts_rows = True
        if metrics:
            for key, value in metrics.items():
                if key.startswith("http_status_"):
                    self.http_requests[key[12:]] += int(value)
                elif key.startswith("http_retries_"):
                    self.http_retries[key[13:]] += int(value)

    def copy(self) -> _StageTotals:
        return _StageTotals(
            **{name: getattr(self, name) for name, _, _ in _STAGE_COUNTERS},
            inserts_rows=self.inserts_rows,
            http_requests=Counter(self.http_requests),
            http_retries=Counter(self.http_retries),
        )


@dataclass(slots=True)
class _Durations:
    """A histogram of run durations: counts per bucket (the last is +Inf), sum and count."""

    buckets: list[int] = field(default_factory=lambda: [0] * (len(DURATION_BUCKETS) + 1))
    total: float = 0.0
    count: int = 0

    def add(self, seconds: float) -> None:
        for i, bound in enumerate(DURATION_BUCKETS):
            if seconds <= bound:
                self.buckets[i] += 1
                break
        else:
            self.buckets[-1] += 1
        self.total += seconds
        self.count += 1

    def cumulative(self) -> list[tuple[str, float]]:
        out, running = [], 0
        for bound, n in zip((*DURATION_BUCKETS, math.inf), self.buckets, strict=True):
            running += n
            out.append(("+Inf" if bound == math.inf else repr(bound), float(running)))
        return out


class RunMetrics(Instrument):
    """Counts runs, records and stage time for Prometheus, from the runs' own counters.

    :meth:`install` makes it observe every run in the process (until the returned function is
    called); :meth:`observe` adds a finished result run elsewhere; :meth:`collect` is a
    prometheus-client collector (``registry.register(metrics)``). It is safe to use from
    several threads.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stages: dict[tuple[str, str], _StageTotals] = {}
        self._runs: Counter[tuple[str, str]] = Counter()
        self._durations: dict[str, _Durations] = {}
        self._in_flight: dict[int, RunResult] = {}
        # the results this process observed whose parent, observed too, has not ended yet
        self._here: set[int] = set()

    def __repr__(self) -> str:
        return f"RunMetrics(runs={sum(self._runs.values())}, in_flight={len(self._in_flight)})"

    def install(self) -> Callable[[], None]:
        """Observe every run in this process from now on; returns a function that stops it."""
        return install(self)

    # --- the instrument --------------------------------------------------------------------

    def run(
        self, runnable: Runnable, ctx: RunContext, result: RunResult
    ) -> AbstractContextManager[None]:
        """Hold on to ``result`` while the run goes on; add its figures when it ends, and those
        of its children that ran elsewhere (on a cluster's workers), from their results."""
        return self._observing(result, ctx.parent_run_id)

    @contextmanager
    def _observing(self, result: RunResult, parent_run_id: str | None) -> Iterator[None]:
        key = id(result)
        with self._lock:
            parent_here = parent_run_id is not None and any(
                run.run_id == parent_run_id for run in self._in_flight.values()
            )
            self._in_flight[key] = result
            self._here.add(key)
        try:
            yield
        finally:
            with self._lock:
                self._in_flight.pop(key, None)
                self._add(result)
                for child in result.children:
                    if id(child) in self._here:
                        self._here.discard(id(child))
                    else:  # run out of this process's sight: counted from its result
                        self._add_tree(child)
                if not parent_here:
                    self._here.discard(key)

    # --- adding results --------------------------------------------------------------------

    def observe(self, result: RunResult) -> None:
        """Add a finished run's figures, its children's included (runs that never started are
        left out). For results of runs this process did not observe, such as those a cluster's
        workers return; runs observed through :meth:`install` are counted already."""
        with self._lock:
            self._add_tree(result)

    def _add_tree(self, result: RunResult) -> None:
        if result.started_at is None:
            return
        self._add(result)
        for child in result.children:
            self._add_tree(child)

    def _add(self, result: RunResult) -> None:
        name = result.name
        self._runs[(name, str(result.status))] += 1
        durations = self._durations.get(name)
        if durations is None:
            durations = self._durations[name] = _Durations()
        durations.add(result.duration_seconds)
        failed = result.status is RunStatus.FAILED
        for stats in result.stages:
            totals = self._stage(name, stats.name)
            totals.add(stats, failed and result.error_stage == stats.name)

    def _stage(self, pipeline: str, stage: str) -> _StageTotals:
        totals = self._stages.get((pipeline, stage))
        if totals is None:
            totals = self._stages[(pipeline, stage)] = _StageTotals()
        return totals

    # --- reading ---------------------------------------------------------------------------

    def snapshot(
        self,
    ) -> tuple[
        dict[tuple[str, str], _StageTotals],
        dict[tuple[str, str], int],
        dict[str, int],
        dict[str, _Durations],
    ]:
        """Consistent copies of the figures: stage totals (finished runs plus the runs in
        flight), runs by pipeline and status, runs in progress and the duration histograms."""
        with self._lock:
            stages = {key: totals.copy() for key, totals in self._stages.items()}
            runs = dict(self._runs)
            durations = {
                name: _Durations(list(d.buckets), d.total, d.count)
                for name, d in self._durations.items()
            }
            live = list(self._in_flight.values())
        in_progress: Counter[str] = Counter()
        for result in live:
            in_progress[result.name] += 1
            for stats in result.stages:
                key = (result.name, stats.name)
                totals = stages.get(key)
                if totals is None:
                    totals = stages[key] = _StageTotals()
                totals.add(stats, False)
        return stages, runs, dict(in_progress), durations

    def in_flight(self) -> list[RunResult]:
        """The results of the runs going on now (their counters fill in as they go)."""
        with self._lock:
            return list(self._in_flight.values())

    def queue_depths(self) -> dict[tuple[str, str], int]:
        """Batches waiting in each stage's input stream, over the runs in flight, by
        ``(pipeline, stage)``: what the stage before it passed on and it has not taken yet."""
        depth: dict[tuple[str, str], int] = {}
        for result in self.in_flight():
            for before, stats in zip(result.stages, result.stages[1:], strict=False):
                key = (result.name, stats.name)
                depth[key] = depth.get(key, 0) + max(0, before.batches_out - stats.batches_in)
        return depth

    def collect(self) -> Iterable[Metric]:
        """The metric families, for prometheus-client (this object is a collector)."""
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        stages, runs, in_progress, durations = self.snapshot()
        depths = self.queue_depths()

        family = CounterMetricFamily(
            "ductwork_runs", "Finished runs, by pipeline and status.", labels=["pipeline", "status"]
        )
        for (pipeline, status), n in sorted(runs.items()):
            family.add_metric([pipeline, status], n)
        yield family

        gauge = GaugeMetricFamily(
            "ductwork_runs_in_progress", "Runs going on now.", labels=["pipeline"]
        )
        for pipeline in sorted(set(durations) | set(in_progress)):
            gauge.add_metric([pipeline], in_progress.get(pipeline, 0))
        yield gauge

        histogram = HistogramMetricFamily(
            "ductwork_run_duration_seconds",
            "Duration of finished runs, in seconds.",
            labels=["pipeline"],
        )
        for pipeline, d in sorted(durations.items()):
            histogram.add_metric([pipeline], d.cumulative(), d.total)
        yield histogram

        keys = sorted(stages)
        for attribute, name, documentation in _STAGE_COUNTERS:
            family = CounterMetricFamily(
                f"ductwork_{name}", documentation, labels=["pipeline", "stage"]
            )
            for key in keys:
                if attribute != "rows_inserted" or stages[key].inserts_rows:
                    family.add_metric(list(key), getattr(stages[key], attribute))
            yield family

        gauge = GaugeMetricFamily(
            "ductwork_stage_queue_depth",
            "Batches waiting in a stage's input stream (runs in flight).",
            labels=["pipeline", "stage"],
        )
        for key in keys:
            if stages[key].batches_in or key in depths:
                gauge.add_metric(list(key), depths.get(key, 0))
        yield gauge

        for attribute, name, documentation in (
            ("http_requests", "http_requests", "HTTP requests, by response status."),
            ("http_retries", "http_retries", "HTTP retries, by the response status retried."),
        ):
            family = CounterMetricFamily(
                f"ductwork_{name}", documentation, labels=["pipeline", "stage", "status"]
            )
            for key in keys:
                for status, n in sorted(getattr(stages[key], attribute).items()):
                    family.add_metric([*key, status], n)
            yield family

    def text(self, prefix: str = "") -> str:
        """The metrics in the Prometheus text format (only the sample lines starting with
        ``prefix``, when given: handy in tests and doctests)."""
        text = metrics_text(collector_registry(self))
        if not prefix:
            return text
        return "".join(line + "\n" for line in text.splitlines() if line.startswith(prefix))

    def write(self, path: str | PathLike[str]) -> None:
        """Write the metrics to ``path`` in the Prometheus text format, atomically (for
        node-exporter's textfile collector, which reads ``*.prom`` files)."""
        from prometheus_client import write_to_textfile

        write_to_textfile(fspath(path), collector_registry(self))


def collector_registry(*collectors: Collector, process: bool = False) -> CollectorRegistry:
    """A prometheus-client registry of ``collectors`` (and the process's CPU, memory and file
    descriptors with ``process``), apart from prometheus-client's global one."""
    from prometheus_client import CollectorRegistry, ProcessCollector

    registry = CollectorRegistry(auto_describe=False)
    for collector in collectors:
        registry.register(collector)
    if process:
        ProcessCollector(registry=registry)
    return registry


def metrics_text(registry: Any) -> str:
    """The Prometheus text format of everything in ``registry``."""
    from prometheus_client import generate_latest

    return generate_latest(registry).decode()

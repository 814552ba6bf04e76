"""Shared helpers for the benchmarks: timing, peak RSS, the machine, child processes, tables.

Conventions every benchmark module follows:

* ``main(argv: list[str] | None = None) -> list[dict[str, Any]]``: parse ``argv`` with argparse,
  print a one-line header (what is measured, :func:`machine`, the number of repetitions) and a
  Markdown table, and return the rows (JSON-serialisable dicts). ``python -m benchmarks`` runs
  ``main`` in a fresh process per module and collects the rows and the printed table.
* Every figure is the median of several repetitions with its min-max, beside a baseline measured
  in the same run (see :func:`interleave` and :func:`paired_ratio`), with peak RSS.
* Measurements that need their own peak RSS run in a child process: the child calls
  :func:`emit` with its figures, the parent calls :func:`run_child` and gets them back as a dict.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from time import perf_counter
from typing import Any

__all__ = [
    "Timing",
    "emit",
    "interleave",
    "machine",
    "machine_info",
    "paired_ratio",
    "peak_rss_mb",
    "rate",
    "repeat",
    "rss_mb",
    "run_child",
    "run_isolated",
    "span",
    "spread",
    "table",
]

_CHILD_MARK = "@@bench-result "


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB.

    On Linux this is ``VmHWM`` from ``/proc/self/status``: unlike ``getrusage``'s ``ru_maxrss``,
    which survives ``exec`` and so reports at least the parent's peak in a child process, it
    belongs to this process's own address space.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    """Current resident set size of this process, in MiB (Linux; 0.0 where unknown)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine() -> str:
    """One line describing the machine and interpreter."""
    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )


def machine_info() -> dict[str, Any]:
    """The machine, interpreter and load, for a results file."""
    try:
        load = list(os.getloadavg())
    except OSError:
        load = []
    return {
        "summary": machine(),
        "system": platform.system(),
        "arch": platform.machine(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "load_average": load,
    }


@dataclass
class Timing:
    """The median of some samples with their min and max."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, samples: Sequence[float]) -> Timing:
        return cls(statistics.median(samples), min(samples), max(samples))


def spread(samples: Sequence[float]) -> Timing:
    """Median, min and max of ``samples`` (any figure, not only times)."""
    return Timing.of(samples)


def repeat(fn: Callable[[], Any], repeats: int) -> Timing:
    """Run ``fn`` ``repeats`` times and return the median, min and max wall time."""
    samples = []
    for _ in range(repeats):
        t0 = perf_counter()
        fn()
        samples.append(perf_counter() - t0)
    return Timing.of(samples)


def interleave(
    cases: Mapping[str, Callable[[], float]], rounds: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Run every case once per round and return each case's samples, in round order.

    A case is a callable returning the seconds it measured (so it can leave its own set-up out of
    the figure). Interleaving the cases, and rotating which goes first, spreads a drift of the
    machine's speed over all of them instead of penalising whichever ran last; sample ``i`` of two
    cases were taken side by side, which :func:`paired_ratio` uses. The ``warmup`` rounds run first
    and are not counted. The garbage of one case is collected before the next starts.
    """
    names = list(cases)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(warmup + rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            gc.collect()
            seconds = cases[name]()
            if r >= warmup:
                samples[name].append(seconds)
    return samples


def paired_ratio(baseline: Sequence[float], subject: Sequence[float]) -> Timing:
    """Speed of ``subject`` relative to ``baseline`` (times), per round: median, min, max.

    ``> 1`` means the subject is faster than the baseline.
    """
    return Timing.of([b / s for b, s in zip(baseline, subject, strict=True)])


def run_isolated(module: str, *args: str) -> str:
    """Run ``python -m module args`` in a fresh process (for a clean peak RSS) and return stdout."""
    out = subprocess.run(
        [sys.executable, "-m", module, *args], check=True, capture_output=True, text=True
    )
    return out.stdout


def emit(**figures: Any) -> None:
    """In a child process: print ``figures`` plus the peak RSS for :func:`run_child` to read."""
    figures.setdefault("peak_rss_mb", peak_rss_mb())
    print(_CHILD_MARK + json.dumps(figures), flush=True)


def run_child(module: str, *args: str) -> dict[str, Any]:
    """Run ``python -m module args`` in a fresh process; return what it passed to :func:`emit`."""
    proc = subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"{module} {' '.join(args)} exited with {proc.returncode}:\n{proc.stderr[-2000:]}"
        )
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(_CHILD_MARK):
            result: dict[str, Any] = json.loads(line[len(_CHILD_MARK) :])
            return result
    raise RuntimeError(f"{module} {' '.join(args)} printed no result")


def rate(value: float) -> str:
    """A figure such as records/s, with thousands separators."""
    return f"{value:,.0f}"


def span(row: Mapping[str, Any], key: str, fmt: str = ",.0f") -> str:
    """``row[key]`` with its ``key_min``-``key_max`` range, e.g. ``0.95 (0.92-1.05)``."""
    if key not in row:
        return "-"
    return f"{row[key]:{fmt}} ({row[key + '_min']:{fmt}}-{row[key + '_max']:{fmt}})"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)

"""Scheduler overhead: how late runs start after their tick, and what the command costs to start.

Registers N pipelines on an every-second cron (a small pipeline: one batch of 100 records, the
in-memory run history) and lets them tick for S seconds, each run noting how long after its tick
the extractor was called. Two ways, each in a fresh process (for a clean peak RSS):

* baseline: a hand-written scheduler, one task per job sleeping until the next whole second and
  starting ``registry.run`` in a task group;
* ductwork: ``open_scheduler(registry)`` (aiocron ticks, overlap policy, status, history).

Prints the runs started against the ticks expected, the median and 99th percentile lateness,
their ratio to the baseline and peak RSS. Then the start-up time of the ``ductwork`` command
(``python -m ductwork --version``) beside ``python -c "import ductwork"`` and an empty
interpreter (``python -c pass``, the unit of the ratios), median of several starts taken in turns.
``--compare SRC`` measures the same commands with another version's sources (``SRC`` is the
directory that holds its ``ductwork`` package, such as a checkout's ``src``) in the same turns,
and gives each command's ratio to that version; ``--startup-only`` skips the scheduler part.

    python -m benchmarks.bench_scheduler [--jobs N] [--seconds S] [--starts K]
    python -m benchmarks.bench_scheduler --startup-only --starts 15 --compare ../ductwork-0.1/src
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import anyio

from benchmarks._util import interleave, machine, peak_rss_mb, run_isolated, table
from ductwork import Batch, PipelineRegistry, RunContext, create_el_pipeline, open_scheduler


def build_registry(jobs: int, lateness: list[float]) -> PipelineRegistry:
    async def extract(ctx: RunContext) -> AsyncIterator[Batch]:
        assert ctx.window is not None
        lateness.append((datetime.now(UTC) - ctx.window.end).total_seconds())
        yield [{"i": i} for i in range(100)]

    registry = PipelineRegistry()
    for j in range(jobs):
        pipeline = create_el_pipeline(extract, lambda batch: None, name=f"job{j}", logging=False)
        registry.register_pipeline(f"job{j}", pipeline, "* * * * * *", timescope="1s")
    return registry


async def baseline(registry: PipelineRegistry, jobs: int, seconds: float) -> None:
    async def ticks(name: str) -> None:
        async with anyio.create_task_group() as runs:
            while True:
                now = time.time()
                tick = math.floor(now) + 1
                await anyio.sleep(tick - now)
                moment = datetime.fromtimestamp(tick, UTC)
                runs.start_soon(partial(registry.run, name, now=moment, trigger="schedule"))

    with anyio.move_on_after(seconds):
        async with anyio.create_task_group() as tg:
            for j in range(jobs):
                tg.start_soon(ticks, f"job{j}")


async def scheduled(registry: PipelineRegistry, seconds: float) -> None:
    async with open_scheduler(registry, grace_period=5):
        await anyio.sleep(seconds)


def measure(mode: str, jobs: int, seconds: float) -> dict[str, float]:
    """Run one mode in this process; return its figures."""
    lateness: list[float] = []
    registry = build_registry(jobs, lateness)
    start = time.time()
    if mode == "baseline":
        anyio.run(baseline, registry, jobs, seconds)
    else:
        anyio.run(scheduled, registry, seconds)
    expected = jobs * (math.floor(start + seconds) - math.floor(start))
    ordered = sorted(lateness)
    return {
        "runs": len(lateness),
        "expected": expected,
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
        "max_ms": ordered[-1] * 1000,
        "peak_rss_mb": peak_rss_mb(),
    }


#: The commands whose start-up is measured, by label: the arguments given to the interpreter.
STARTUP_COMMANDS = {
    "python -c pass": ["-c", "pass"],
    'python -c "import ductwork"': ["-c", "import ductwork"],
    "python -m ductwork --version": ["-m", "ductwork", "--version"],
}


def start(args: list[str], env: dict[str, str]) -> float:
    """Seconds from starting an interpreter with ``args`` to its exit."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, *args], check=True, capture_output=True, env=env)
    return time.perf_counter() - t0


def startup(starts: int, compare: Path | None = None) -> dict[tuple[str, str], float]:
    """The median start-up of every command (``{(version, command): seconds}``), in turns.

    ``version`` is ``"this"`` for the sources this interpreter imports, and the ``compare``
    directory's name for the sources in it (put first on ``PYTHONPATH``).
    """
    versions = {"this": dict(os.environ)}
    if compare is not None:
        path = os.pathsep.join(filter(None, [str(compare), os.environ.get("PYTHONPATH")]))
        versions[str(compare)] = {**os.environ, "PYTHONPATH": path}
    cases = {
        (version, label): partial(start, args, env)
        for version, env in versions.items()
        for label, args in STARTUP_COMMANDS.items()
        if version == "this" or label != "python -c pass"
    }
    samples = interleave(
        {f"{version}: {label}": case for (version, label), case in cases.items()}, starts
    )
    return {key: statistics.median(samples[f"{key[0]}: {key[1]}"]) for key in cases}


def startup_table(medians: dict[tuple[str, str], float], compare: Path | None) -> str:
    """The start-up rows: wall time, ratio to ``python -c pass`` and, with ``compare``, to it."""
    empty = medians["this", "python -c pass"]
    headers = ["command", "wall time", "ratio"]
    if compare is not None:
        headers.append(f"vs {compare}")
    rows = []
    for (version, label), took in medians.items():
        row = [label if version == "this" else f"{label} ({version})"]
        row += [f"{took * 1000:.0f} ms", f"{took / empty:.2f}"]
        if compare is not None:
            other = medians.get((str(compare), label))
            row.append(f"{took / other:.2f}" if version == "this" and other else "")
        rows.append(row)
    return table(headers, rows)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--starts", type=int, default=7)
    parser.add_argument("--mode", choices=["baseline", "ductwork"])
    parser.add_argument("--startup-only", action="store_true", help="measure the start-up only")
    parser.add_argument(
        "--compare", type=Path, help="also start another version's sources (its src directory)"
    )
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    if args.startup_only:
        print(f"# Start-up ({machine()})")
        print_startup(args.starts, args.compare)
        return
    if args.mode:
        print(json.dumps(measure(args.mode, args.jobs, args.seconds)))
        return

    print(f"# Scheduler: {args.jobs} jobs every second for {args.seconds:g} s ({machine()})\n")
    figures = {}
    for mode in ("baseline", "ductwork"):
        out = run_isolated(
            "benchmarks.bench_scheduler",
            "--mode",
            mode,
            "--jobs",
            str(args.jobs),
            "--seconds",
            str(args.seconds),
        )
        figures[mode] = json.loads(out)
    base = figures["baseline"]
    rows = []
    for mode, f in figures.items():
        rows.append(
            [
                "hand-written loop" if mode == "baseline" else "open_scheduler",
                f"{f['runs']:.0f} / {f['expected']:.0f}",
                f"{f['p50_ms']:.1f} ms",
                f"{f['p99_ms']:.1f} ms",
                f"{f['max_ms']:.1f} ms",
                f"{f['p50_ms'] / base['p50_ms']:.2f}",
                f"{f['peak_rss_mb']:.0f} MiB",
            ]
        )
    headers = ["scheduler", "runs / ticks", "p50 late", "p99 late", "max late", "p50 ratio", "RSS"]
    print(table(headers, rows))

    print_startup(args.starts, args.compare)


def print_startup(starts: int, compare: Path | None) -> None:
    print(f"\n# Start-up, median of {starts} starts\n")
    print(startup_table(startup(starts, compare), compare))


if __name__ == "__main__":
    main()

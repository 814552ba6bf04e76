"""Backfill: every window once, bounded concurrency, skipping done windows, resuming."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path

import anyio
import pytest

from ductwork import (
    BackfillResult,
    Batch,
    ConfigError,
    JsonFileStateStore,
    MemoryStateStore,
    PipelineError,
    PipelineRegistry,
    RunContext,
    RunStatus,
    ScheduleError,
    backfill_pipeline,
    create_el_pipeline,
)

ROOT = Path(__file__).resolve().parent.parent


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


class Days:
    """A daily pipeline that records which days it ran, and can fail or block on some."""

    def __init__(self) -> None:
        self.ran: list[str] = []
        self.failing: set[str] = set()
        self.running = 0
        self.peak = 0
        self.delay = 0.0

    async def extract(self, ctx: RunContext) -> AsyncIterator[Batch]:
        assert ctx.window is not None
        day = f"{ctx.window.start:%Y-%m-%d}"
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await anyio.sleep(self.delay)
            if day in self.failing:
                raise RuntimeError(f"no data for {day}")
            self.ran.append(day)
            yield [{"day": day}]
        finally:
            self.running -= 1

    def build(self) -> object:
        return create_el_pipeline(self.extract, lambda batch: None, name="days", logging=False)


@pytest.fixture
def days() -> Days:
    return Days()


@pytest.fixture
def registry(days: Days) -> PipelineRegistry:
    registry = PipelineRegistry()
    registry.register_pipeline("days", days.build, timescope="daily")  # type: ignore[arg-type]
    return registry


def statuses(result: BackfillResult) -> list[tuple[str, str]]:
    return [(f"{w.window.start:%m-%d}", str(w.status)) for w in result.windows]


async def test_runs_every_window_of_the_range(registry: PipelineRegistry, days: Days) -> None:
    result = await registry.backfill("days", date(2024, 2, 27), date(2024, 3, 3), max_workers=1)
    assert days.ran == ["2024-02-27", "2024-02-28", "2024-02-29", "2024-03-01", "2024-03-02"]
    assert statuses(result) == [
        ("02-27", "succeeded"),
        ("02-28", "succeeded"),
        ("02-29", "succeeded"),
        ("03-01", "succeeded"),
        ("03-02", "succeeded"),
    ]
    assert result.ok
    assert all(w.result is not None and w.result.records_out == 1 for w in result.windows)
    history = await registry.history("days", limit=None)
    assert [r["trigger"] for r in history] == ["backfill"] * 5
    assert result.duration_seconds > 0


async def test_max_workers_bounds_concurrency(registry: PipelineRegistry, days: Days) -> None:
    days.delay = 0.02
    result = await registry.backfill("days", "2024-01-01", "2024-01-13", max_workers=3)
    assert len(result.succeeded) == 12
    assert days.peak == 3
    assert [f"{w.window.start:%d}" for w in result.windows] == [f"{d:02d}" for d in range(1, 13)]


async def test_windows_that_already_succeeded_are_skipped(
    registry: PipelineRegistry, days: Days
) -> None:
    await registry.run("days", window="2024-01-02")  # e.g. a scheduled run
    await registry.backfill("days", "2024-01-04", "2024-01-06")
    days.ran.clear()
    result = await registry.backfill("days", "2024-01-01", "2024-01-07", max_workers=2)
    assert sorted(days.ran) == ["2024-01-01", "2024-01-03", "2024-01-06"]
    assert [f"{w.window.start:%d}" for w in result.skipped] == ["02", "04", "05"]
    assert {w.reason for w in result.skipped} == {"already succeeded"}

    days.ran.clear()
    rerun = await registry.backfill("days", "2024-01-01", "2024-01-03", rerun=True)
    assert days.ran == ["2024-01-01", "2024-01-02"]
    assert len(rerun.succeeded) == 2


async def test_a_failed_window_raises_after_the_others_ran(
    registry: PipelineRegistry, days: Days
) -> None:
    days.failing = {"2024-01-02", "2024-01-04"}
    with pytest.raises(PipelineError, match="backfill failed for 2 of 5 windows") as info:
        await registry.backfill("days", "2024-01-01", "2024-01-06", max_workers=2)
    assert sorted(days.ran) == ["2024-01-01", "2024-01-03", "2024-01-05"]
    assert "no data for 2024-01-02" in str(info.value)
    assert isinstance(info.value.__cause__, PipelineError)
    result = info.value.result
    assert result is not None
    assert result.kind == "backfill"
    assert result.status is RunStatus.FAILED
    assert [str(c.status) for c in result.children] == [
        "succeeded",
        "failed",
        "succeeded",
        "failed",
        "succeeded",
    ]
    assert result.children[1].detail == (
        "window [2024-01-02T00:00:00+00:00, 2024-01-03T00:00:00+00:00)"
    )
    assert "2 failed" in (result.detail or "")

    # fixed: running it again runs only the failed windows
    days.failing.clear()
    days.ran.clear()
    again = await registry.backfill("days", "2024-01-01", "2024-01-06", max_workers=2)
    assert sorted(days.ran) == ["2024-01-02", "2024-01-04"]
    assert len(again.skipped) == 3


async def test_raise_on_failure_false_and_stop_on_failure(
    registry: PipelineRegistry, days: Days
) -> None:
    days.failing = {"2024-01-02"}
    result = await registry.backfill(
        "days", "2024-01-01", "2024-01-06", stop_on_failure=True, raise_on_failure=False
    )
    assert statuses(result) == [
        ("01-01", "succeeded"),
        ("01-02", "failed"),
        ("01-03", "pending"),
        ("01-04", "pending"),
        ("01-05", "pending"),
    ]
    assert not result.ok
    assert {w.reason for w in result.not_run} == {"not run: an earlier window failed"}
    assert isinstance(result.failed[0].error, PipelineError)
    summary = result.summary()
    assert "1 succeeded, 1 failed, 0 skipped, 3 not run" in summary
    assert "not run: an earlier window failed" in summary


async def test_cancelled_backfill_resumes_where_it_stopped(
    registry: PipelineRegistry, days: Days
) -> None:
    days.delay = 0.05
    with anyio.move_on_after(0.12):
        await registry.backfill("days", "2024-01-01", "2024-01-11")
    done = list(days.ran)
    assert 1 <= len(done) < 10
    history = await registry.history("days", limit=None)
    assert history[0]["status"] == "cancelled"  # the run in flight was recorded as cancelled

    days.delay = 0
    days.ran.clear()
    result = await registry.backfill("days", "2024-01-01", "2024-01-11")
    assert len(result.skipped) == len(done)
    assert sorted(done + days.ran) == [f"2024-01-{d:02d}" for d in range(1, 11)]


async def test_windows_not_complete_yet_are_skipped(registry: PipelineRegistry, days: Days) -> None:
    result = await registry.backfill(
        "days", "2024-01-01", "2024-01-05", now=utc(2024, 1, 3, 12), raise_on_failure=False
    )
    assert statuses(result) == [
        ("01-01", "succeeded"),
        ("01-02", "succeeded"),
        ("01-03", "skipped"),
        ("01-04", "skipped"),
    ]
    assert result.windows[2].reason == "window not complete yet"
    assert days.ran == ["2024-01-01", "2024-01-02"]


async def test_all_windows_skipped_is_a_skipped_result(registry: PipelineRegistry) -> None:
    await registry.backfill("days", "2024-01-01", "2024-01-03")
    again = await registry.backfill("days", "2024-01-01", "2024-01-03")
    assert again.to_result().status is RunStatus.SKIPPED


async def test_backfill_errors(registry: PipelineRegistry, days: Days) -> None:
    registry.register_pipeline("plain", days.build)  # type: ignore[arg-type]
    with pytest.raises(ScheduleError, match="has no timescope"):
        await registry.backfill("plain", "2024-01-01", "2024-01-02")
    with pytest.raises(ConfigError, match="max_workers"):
        await registry.backfill("days", "2024-01-01", "2024-01-02", max_workers=0)
    with pytest.raises(ScheduleError, match="not after"):
        await registry.backfill("days", "2024-01-02", "2024-01-01")
    with pytest.raises(ScheduleError, match="expected an ISO date"):
        await registry.backfill("days", "last week", "2024-01-01")
    assert days.ran == []


async def test_module_level_function_and_explicit_state(days: Days) -> None:
    registry = PipelineRegistry()
    registry.register_pipeline("days", days.build, timescope="monthly")  # type: ignore[arg-type]
    store = MemoryStateStore()
    result = await backfill_pipeline(
        "days", "2024-01-01", "2024-04-01", registry=registry, state=store, max_workers=4
    )
    assert [w.window.start.month for w in result.succeeded] == [1, 2, 3]
    assert len(await store.list_runs("days", limit=None)) == 3
    assert await registry.history("days") == []  # the registry's own store was not used


CRASHING_BACKFILL = """
import os, signal, sys
import anyio
from ductwork import JsonFileStateStore, PipelineRegistry, create_el_pipeline

async def extract(ctx):
    day = f"{ctx.window.start:%Y-%m-%d}"
    if day == sys.argv[2]:
        os.kill(os.getpid(), signal.SIGKILL)  # the process dies in the middle of a run
    yield [{"day": day}]

registry = PipelineRegistry(state=JsonFileStateStore(sys.argv[1]))
registry.register_pipeline(
    "days", lambda: create_el_pipeline(extract, lambda b: None, logging=False), timescope="daily"
)
anyio.run(lambda: registry.backfill("days", "2024-01-01", "2024-01-11", max_workers=1))
"""


async def test_backfill_resumes_after_the_process_is_killed(tmp_path: Path, days: Days) -> None:
    state = tmp_path / "state.json"
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CRASHING_BACKFILL), str(state), "2024-01-06"],
        timeout=60,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL

    registry = PipelineRegistry(state=JsonFileStateStore(state))
    registry.register_pipeline("days", days.build, timescope="daily")  # type: ignore[arg-type]
    result = await registry.backfill("days", "2024-01-01", "2024-01-11")
    assert [f"{w.window.start:%d}" for w in result.skipped] == ["01", "02", "03", "04", "05"]
    assert days.ran == [f"2024-01-{d:02d}" for d in range(6, 11)]
    history = await registry.history("days", limit=None)
    assert len(history) == 10  # five before the crash, five after; the killed run left none


async def test_progress_is_reported_as_windows_start_and_end(
    registry: PipelineRegistry, days: Days
) -> None:
    days.failing = {"2024-03-02"}
    seen: list[tuple[int, int, int, int]] = []

    def progress(outcome: BackfillResult) -> None:
        counts = (outcome.succeeded, outcome.running, outcome.failed, outcome.skipped)
        seen.append(tuple(len(windows) for windows in counts))  # type: ignore[arg-type]

    await backfill_pipeline("days", "2024-03-04", "2024-03-05", registry=registry)
    outcome = await backfill_pipeline(
        "days",
        "2024-03-01",
        "2024-03-05",
        registry=registry,
        raise_on_failure=False,
        on_progress=progress,
    )
    assert len(outcome.failed) == 1
    # (succeeded, running, failed, skipped): planned, then each window's start and end.
    assert seen == [
        (0, 0, 0, 1),
        (0, 1, 0, 1),
        (1, 0, 0, 1),
        (1, 1, 0, 1),
        (1, 0, 1, 1),
        (1, 1, 1, 1),
        (2, 0, 1, 1),
    ]
    assert outcome.running == []

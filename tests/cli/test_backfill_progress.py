"""The status line of ``ductwork backfill``: windows done, running and failed as they change."""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import anyio

from ductwork import (
    BackfillResult,
    Batch,
    PipelineRegistry,
    RunContext,
    RunStatus,
    create_el_pipeline,
)
from ductwork.backfill_engine import WindowRun
from ductwork.cli.progress import CLEAR_LINE, ProgressLine, showing_line
from ductwork.core.context import TimeWindow
from ductwork.timescope import daily

DAILY = daily()


def planned(*statuses: RunStatus) -> BackfillResult:
    """A backfill result of consecutive March 2024 days with these statuses."""
    result = BackfillResult(pipeline="daily_sales", timescope=DAILY)
    for day, status in enumerate(statuses, start=1):
        window = TimeWindow(
            datetime(2024, 3, day, tzinfo=UTC), datetime(2024, 3, day + 1, tzinfo=UTC)
        )
        result.windows.append(WindowRun(window, status))
    return result


P, R, S, F, K = (
    RunStatus.PENDING,
    RunStatus.RUNNING,
    RunStatus.SUCCEEDED,
    RunStatus.FAILED,
    RunStatus.SKIPPED,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def drawn(stream: io.StringIO) -> list[str]:
    """The states a live line drew, in order (each one starts by clearing the line)."""
    text = stream.getvalue()
    assert text.startswith(CLEAR_LINE)
    return text.split(CLEAR_LINE)[1:]


def test_on_a_terminal_the_line_is_rewritten_in_place_and_ended_by_finish() -> None:
    stream, clock = io.StringIO(), Clock()
    line = ProgressLine("daily_sales", stream, live=True, clock=clock)
    line(planned(P, P, P))
    clock.now += 0.5
    line(planned(R, P, P))
    clock.now += 0.5
    line(planned(S, R, P))
    assert "\n" not in stream.getvalue()
    assert drawn(stream) == [
        "backfill daily_sales: 0/3 done, 0 running, 0 failed",
        "backfill daily_sales: 0/3 done, 1 running, 0 failed",
        "backfill daily_sales: 1/3 done, 1 running, 0 failed",
    ]
    line.finish()
    assert stream.getvalue().endswith("1/3 done, 1 running, 0 failed\n")
    assert stream.getvalue().count("\n") == 1


def test_on_a_terminal_changes_are_drawn_at_most_once_per_interval() -> None:
    stream, clock = io.StringIO(), Clock()
    line = ProgressLine("daily_sales", stream, live=True, interval=0.1, clock=clock)
    line(planned(P, P, P, P))
    for statuses in [(R, P, P, P), (R, R, P, P), (S, R, R, P)]:
        clock.now += 0.02
        line(planned(*statuses))
    assert drawn(stream) == ["backfill daily_sales: 0/4 done, 0 running, 0 failed"]
    clock.now += 0.02  # 0.08s since the last drawing: still held back
    line.refresh()
    assert len(drawn(stream)) == 1
    clock.now += 0.03
    line.refresh()  # the latest state, not the ones in between
    assert drawn(stream)[1:] == ["backfill daily_sales: 1/4 done, 2 running, 0 failed"]
    clock.now += 1
    line.refresh()  # nothing changed: nothing drawn
    assert len(drawn(stream)) == 2


def test_the_final_state_is_always_shown_even_within_the_interval() -> None:
    stream, clock = io.StringIO(), Clock()
    line = ProgressLine("daily_sales", stream, live=True, clock=clock)
    line(planned(R, R))
    clock.now += 0.01
    line(planned(S, F))
    line.finish()
    assert drawn(stream)[-1] == "backfill daily_sales: 1/2 done, 0 running, 1 failed\n"
    line.finish()  # once
    assert stream.getvalue().count("\n") == 1


def test_without_a_terminal_a_plain_line_per_finished_window() -> None:
    stream = io.StringIO()
    line = ProgressLine("daily_sales", stream, live=False)
    for statuses in [
        (P, P, P),
        (R, P, P),
        (R, R, P),  # starts print nothing
        (S, R, P),
        (S, R, R),
        (S, F, R),
        (S, F, S),
    ]:
        line(planned(*statuses))
    line.finish()  # the final state is already out
    assert "\r" not in stream.getvalue()
    assert "\x1b" not in stream.getvalue()
    assert stream.getvalue().splitlines() == [
        "backfill daily_sales: 1/3 done, 1 running, 0 failed",
        "backfill daily_sales: 1/3 done, 1 running, 1 failed",
        "backfill daily_sales: 2/3 done, 0 running, 1 failed",
    ]


def test_without_a_terminal_finish_prints_the_state_when_no_window_finished() -> None:
    stream = io.StringIO()
    line = ProgressLine("daily_sales", stream, live=False)
    line(planned(K, K, K))
    assert stream.getvalue() == ""
    line.finish()
    assert stream.getvalue() == "backfill daily_sales: 0/0 done, 0 running, 0 failed, 3 skipped\n"


def test_skipped_windows_are_counted_apart() -> None:
    stream = io.StringIO()
    line = ProgressLine("daily_sales", stream, live=True, clock=Clock())
    line(planned(K, S, R, P, K))
    assert drawn(stream) == ["backfill daily_sales: 1/3 done, 1 running, 0 failed, 2 skipped"]


def test_a_log_line_goes_above_the_live_line() -> None:
    stream, clock = io.StringIO(), Clock()
    line = ProgressLine("daily_sales", stream, live=True, clock=clock)
    line(planned(R, P))
    clock.now += 0.01
    line(planned(S, R))  # held back by the interval
    line.write_above("WARNING something\n")
    assert stream.getvalue().endswith(
        f"{CLEAR_LINE}WARNING something\nbackfill daily_sales: 1/2 done, 1 running, 0 failed"
    )
    before = stream.getvalue()
    line.finish()
    assert stream.getvalue() == before + "\n"
    line.write_above("after the end\n")
    assert stream.getvalue().endswith("\nafter the end\n")


def test_log_handlers_made_before_the_line_write_above_it(monkeypatch: Any) -> None:
    """A library set up its stream handler on stderr before the backfill started: its lines go
    above the live line too; it, and a handler made while the line is shown (distributed sets
    up its own when first imported), get stderr back after."""
    stream, clock = io.StringIO(), Clock()
    monkeypatch.setattr(sys, "stderr", stream)
    handler = logging.StreamHandler()  # holds stderr: the stream
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    log = logging.getLogger("test.progress.library")
    log.addHandler(handler)
    log.propagate = False
    try:
        line = ProgressLine("daily_sales", stream, live=True, clock=clock)
        with showing_line(line):
            meanwhile = logging.StreamHandler()  # made in the block: holds what stderr is now
            logging.getLogger("test.progress.imported").addHandler(meanwhile)
            line(planned(S, R))
            log.warning("worker lost")
            assert stream.getvalue().endswith(
                f"{CLEAR_LINE}WARNING worker lost\n"
                "backfill daily_sales: 1/2 done, 1 running, 0 failed"
            )
        assert handler.stream is stream
        assert meanwhile.stream is stream
        assert sys.stderr is stream
        log.warning("after the end")
        assert stream.getvalue().endswith("failed\nWARNING after the end\n")
    finally:
        log.removeHandler(handler)
        for made in logging.getLogger("test.progress.imported").handlers[:]:
            logging.getLogger("test.progress.imported").removeHandler(made)


class Gated:
    """A daily pipeline whose windows each wait for their day's gate to open."""

    def __init__(self, days: list[str]) -> None:
        self.gates = {day: anyio.Event() for day in days}
        self.started = {day: anyio.Event() for day in days}

    async def extract(self, ctx: RunContext) -> AsyncIterator[Batch]:
        assert ctx.window is not None
        day = f"{ctx.window.start:%Y-%m-%d}"
        self.started[day].set()
        await self.gates[day].wait()
        if day == "2024-03-02":
            raise RuntimeError(f"no data for {day}")
        yield [{"day": day}]

    def build(self) -> object:
        return create_el_pipeline(self.extract, lambda batch: None, name="days", logging=False)


async def test_the_running_count_is_live_while_a_backfill_runs() -> None:
    days = ["2024-03-01", "2024-03-02", "2024-03-03"]
    gated = Gated(days)
    registry = PipelineRegistry()
    registry.register_pipeline("days", gated.build, timescope="daily")  # type: ignore[arg-type]
    stream = io.StringIO()
    line = ProgressLine("days", stream, live=True, interval=0)
    outcome: list[BackfillResult] = []

    async def backfill() -> None:
        outcome.append(
            await registry.backfill(
                "days",
                "2024-03-01",
                "2024-03-04",
                max_workers=2,
                raise_on_failure=False,
                on_progress=line,
            )
        )

    async with anyio.create_task_group() as tg:
        tg.start_soon(backfill)
        await gated.started["2024-03-01"].wait()
        await gated.started["2024-03-02"].wait()
        assert drawn(stream)[-1] == "backfill days: 0/3 done, 2 running, 0 failed"
        gated.gates["2024-03-01"].set()
        await gated.started["2024-03-03"].wait()
        assert drawn(stream)[-2:] == [
            "backfill days: 1/3 done, 1 running, 0 failed",  # the first window ended
            "backfill days: 1/3 done, 2 running, 0 failed",  # the third started
        ]
        gated.gates["2024-03-02"].set()
        gated.gates["2024-03-03"].set()
    line.finish()
    assert drawn(stream)[-1] == "backfill days: 2/3 done, 0 running, 1 failed\n"
    assert len(outcome[0].failed) == 1

"""The scheduler: ticks on an every-second cron, overlap policies, registry changes, shutdown."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest

from ductwork import (
    Batch,
    ConfigError,
    MemoryStateStore,
    Pipeline,
    PipelineRegistry,
    RegistryError,
    RunContext,
    RunStatus,
    Scheduler,
    SchedulerConfig,
    create_el_pipeline,
    open_scheduler,
)

EVERY_SECOND = "* * * * * *"


async def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.01)


class Recorder:
    """A pipeline factory whose runs are recorded and can be held until released."""

    def __init__(self, name: str = "job", *, hold: bool = False, fail: bool = False) -> None:
        self.name = name
        self.hold = hold
        self.fail = fail
        self.release = anyio.Event()
        self.started: list[RunContext] = []
        self.finished: list[str] = []
        self.cleaned_up: list[str] = []

    def __call__(self) -> Pipeline:
        async def extract(ctx: RunContext) -> AsyncIterator[Batch]:
            self.started.append(ctx)
            try:
                if self.hold:
                    await self.release.wait()
                if self.fail:
                    raise ValueError("the source is down")
                yield [{"run": ctx.run_id}]
            finally:
                self.cleaned_up.append(ctx.run_id)

        def load(batch: Batch) -> None:
            self.finished.extend(r["run"] for r in batch)

        return create_el_pipeline(extract, load, name=self.name, logging=False)


def registry_with(
    recorder: Recorder, schedule: str = EVERY_SECOND, **options: Any
) -> PipelineRegistry:
    registry = PipelineRegistry(state=MemoryStateStore())
    registry.register_pipeline(recorder.name, recorder, schedule, **options)
    return registry


async def test_jobs_fire_every_second_with_the_window_of_their_tick() -> None:
    recorder = Recorder("ticker")
    registry = registry_with(recorder, timescope="1s")

    async with open_scheduler(registry) as scheduler:
        assert scheduler.state == "running"
        await wait_for(lambda: len(recorder.finished) >= 2)
        status = scheduler.job_status("ticker")
        assert status.next_fire_time is not None
        assert status.next_fire_time > datetime.now(UTC) - timedelta(seconds=0.1)
        assert status.next_fire_time.microsecond == 0

    assert scheduler.state == "closed"
    status = scheduler.job_status("ticker")
    assert status.next_fire_time is None
    assert status.runs == status.succeeded == len(recorder.finished) >= 2
    assert (status.failed, status.cancelled, status.skipped, status.running) == (0, 0, 0, 0)
    assert status.last_status is RunStatus.SUCCEEDED
    assert status.last_fire_time is not None
    assert status.last_fire_time.microsecond == 0
    assert status.last_started_at is not None
    assert status.last_ended_at is not None
    assert status.last_started_at <= status.last_ended_at
    assert status.last_run_id == recorder.started[-1].run_id
    assert (status.pipeline, status.schedule, status.timezone, status.overlap) == (
        "ticker",
        EVERY_SECOND,
        "UTC",
        "skip",
    )

    # Each run covers the one-second window that ended at its tick, even if the loop woke early.
    ticks = []
    for ctx in recorder.started:
        assert ctx.window is not None
        assert ctx.window.end - ctx.window.start == timedelta(seconds=1)
        assert ctx.window.end.microsecond == 0
        ticks.append(ctx.window.end)
    assert ticks == sorted(set(ticks))
    assert ticks[-1] == status.last_fire_time

    history = await registry.history("ticker")
    assert [r["trigger"] for r in history] == ["schedule"] * len(recorder.finished)
    assert {r["status"] for r in history} == {"succeeded"}

    stats = scheduler.statistics()
    assert (stats.state, stats.jobs, stats.jobs_enabled, stats.runs_in_flight) == (
        "closed",
        1,
        1,
        0,
    )
    assert stats.runs_started == stats.runs_succeeded == status.runs
    assert stats.started_at is not None


async def test_a_tick_is_skipped_and_logged_while_the_previous_run_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    recorder = Recorder("slow", hold=True)
    registry = registry_with(recorder)
    caplog.set_level(logging.WARNING, logger="ductwork.scheduler")

    async with open_scheduler(registry) as scheduler:
        await wait_for(lambda: scheduler.job_status("slow").skipped >= 1, timeout=4)
        status = scheduler.job_status("slow")
        assert (status.runs, status.running, status.queued) == (1, 1, 0)
        assert status.last_status is RunStatus.RUNNING
        recorder.release.set()
        await wait_for(lambda: scheduler.job_status("slow").running == 0)

    status = scheduler.job_status("slow")
    assert status.skipped >= 1
    assert status.runs == len(recorder.finished) == status.succeeded
    assert scheduler.statistics().ticks_skipped == status.skipped
    skipped = [r for r in caplog.records if "skipped tick" in r.getMessage()]
    assert len(skipped) == status.skipped
    assert recorder.started[0].run_id in skipped[0].getMessage()


async def test_queue_policy_runs_a_waiting_tick_when_the_run_ends() -> None:
    recorder = Recorder("queued", hold=True)
    registry = registry_with(recorder)

    async with open_scheduler(registry, job_overlap={"queued": "queue"}, max_queued=1) as s:
        assert s.overlap_policy("queued") == "queue"
        # one tick waits, the next is skipped (max_queued=1)
        await wait_for(lambda: s.job_status("queued").skipped >= 1, timeout=4)
        status = s.job_status("queued")
        assert (status.runs, status.running, status.queued) == (1, 1, 1)
        assert s.statistics().runs_queued == 1
        recorder.release.set()
        await wait_for(lambda: len(recorder.finished) >= 2)
        # the queued tick ran right after the first run, in the same slot
        assert s.job_status("queued").queued == 0

    first, second = recorder.started[:2]
    assert first.window is None
    assert second.window is None
    assert s.job_status("queued").runs >= 2


async def test_allow_policy_lets_runs_overlap() -> None:
    recorder = Recorder("overlapping", hold=True)
    registry = registry_with(recorder)

    async with open_scheduler(registry, overlap="allow") as scheduler:
        await wait_for(lambda: scheduler.job_status("overlapping").running >= 2, timeout=4)
        assert scheduler.job_status("overlapping").skipped == 0
        recorder.release.set()

    assert scheduler.job_status("overlapping").succeeded >= 2


async def test_a_job_added_while_running_fires_and_a_removed_one_stops() -> None:
    registry = PipelineRegistry()
    recorder = Recorder("late")

    async with open_scheduler(registry) as scheduler:
        assert scheduler.status() == []
        registry.register_pipeline("late", recorder, EVERY_SECOND)
        assert scheduler.job_status("late").next_fire_time is None  # its task starts soon
        await wait_for(lambda: len(recorder.finished) >= 1)

        # an extra cron job on the same pipeline, with its own parameters
        registry.register_cron_job("late_again", EVERY_SECOND, "late", params={"extra": 1})
        await wait_for(lambda: any(ctx.params.get("extra") == 1 for ctx in recorder.started))

        registry.unregister_pipeline("late")  # removes both jobs
        assert scheduler.status() == []
        with pytest.raises(RegistryError, match="no cron job 'late'"):
            scheduler.job_status("late")
        count = len(recorder.started)
        await anyio.sleep(1.2)
        assert len(recorder.started) == count

    assert scheduler.statistics().runs_started == count


async def test_a_job_removed_while_its_run_goes_on_is_gone_from_the_status() -> None:
    recorder = Recorder("held", hold=True)
    registry = registry_with(recorder)

    async with open_scheduler(registry, grace_period=10) as scheduler:
        assert scheduler.trigger("held")
        await wait_for(lambda: len(recorder.started) == 1)
        registry.unregister_pipeline("held")
        assert scheduler.status() == []
        with pytest.raises(RegistryError, match="no cron job 'held'"):
            scheduler.job_status("held")
        assert scheduler.statistics().runs_in_flight == 1
        recorder.release.set()
        await wait_for(lambda: scheduler.statistics().runs_in_flight == 0)
        assert scheduler.status() == []

    assert recorder.finished == [recorder.started[0].run_id]


async def test_a_changed_schedule_is_picked_up() -> None:
    recorder = Recorder("moving")
    registry = registry_with(recorder, "0 0 1 1 *")  # once a year

    async with open_scheduler(registry) as scheduler:
        await wait_for(lambda: scheduler.job_status("moving").next_fire_time is not None)
        yearly = scheduler.job_status("moving").next_fire_time
        assert yearly is not None
        assert (yearly.month, yearly.day, yearly.second) == (1, 1, 0)
        registry.register_pipeline("moving", recorder, EVERY_SECOND, replace=True)
        await wait_for(lambda: len(recorder.finished) >= 1)
        assert scheduler.job_status("moving").schedule == EVERY_SECOND


async def test_disable_stops_the_ticks_and_enable_restarts_them() -> None:
    recorder = Recorder("toggled")
    registry = PipelineRegistry()
    registry.register_pipeline("toggled", recorder)
    registry.register_cron_job("toggled", EVERY_SECOND, enabled=False)

    async with open_scheduler(registry) as scheduler:
        status = scheduler.job_status("toggled")
        assert (status.enabled, status.next_fire_time) == (False, None)
        scheduler.enable("toggled")
        await wait_for(lambda: len(recorder.finished) >= 1)
        scheduler.disable("toggled")
        status = scheduler.job_status("toggled")
        assert (status.enabled, status.next_fire_time) == (False, None)
        assert scheduler.statistics().jobs_enabled == 0
        count = len(recorder.started)
        await anyio.sleep(1.2)
        assert len(recorder.started) == count
        with pytest.raises(RegistryError):
            scheduler.disable("nope")


async def test_failed_runs_are_counted_recorded_and_do_not_stop_the_scheduler() -> None:
    recorder = Recorder("flaky", fail=True)
    registry = registry_with(recorder)

    async with open_scheduler(registry) as scheduler:
        await wait_for(lambda: scheduler.job_status("flaky").failed >= 2)

    status = scheduler.job_status("flaky")
    assert status.last_status is RunStatus.FAILED
    assert status.last_error is not None
    assert "the source is down" in status.last_error
    assert status.succeeded == 0
    assert status.failed == status.runs
    history = await registry.history("flaky")
    assert {r["status"] for r in history} == {"failed"}
    assert "the source is down" in history[0]["error"]


class UnwritableStore(MemoryStateStore):
    async def _record_run(self, pipeline: str, record: Any, succeeded: Any) -> None:
        raise OSError("disk full")


async def test_a_failure_to_record_is_reported_and_the_scheduler_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    recorder = Recorder("unrecorded")
    registry = PipelineRegistry(state=UnwritableStore())
    registry.register_pipeline("unrecorded", recorder, EVERY_SECOND)
    caplog.set_level(logging.ERROR, logger="ductwork.scheduler")

    async with open_scheduler(registry) as scheduler:
        await wait_for(lambda: scheduler.job_status("unrecorded").failed >= 2)

    status = scheduler.job_status("unrecorded")
    assert status.last_error == "OSError: disk full"
    assert len(recorder.finished) >= 2  # the runs themselves went through
    logged = [r for r in caplog.records if "could not run" in r.getMessage()]
    assert logged
    assert logged[0].exc_info is not None
    assert isinstance(logged[0].exc_info[1], OSError)


async def test_shutdown_waits_for_a_run_in_flight_within_the_grace_period() -> None:
    recorder = Recorder("finishing", hold=True)
    registry = registry_with(recorder)

    async with open_scheduler(registry, grace_period=10) as scheduler:
        await wait_for(lambda: scheduler.job_status("finishing").running == 1)
        # let the run finish a little after the shutdown began
        async with anyio.create_task_group() as tg:

            async def release_later() -> None:
                await anyio.sleep(0.3)
                assert scheduler.state == "stopping"
                assert scheduler.job_status("finishing").next_fire_time is None
                recorder.release.set()

            tg.start_soon(release_later)
            started = anyio.current_time()
            await scheduler.shutdown()
            waited = anyio.current_time() - started

    assert 0.25 <= waited < 5
    status = scheduler.job_status("finishing")
    assert (status.runs, status.succeeded, status.cancelled) == (1, 1, 0)
    (record,) = await registry.history("finishing")
    assert record["status"] == "succeeded"


async def test_shutdown_cancels_runs_still_going_after_the_grace_period() -> None:
    recorder = Recorder("stuck", hold=True)
    registry = registry_with(recorder)

    started = 0.0
    async with open_scheduler(registry, grace_period=0.3) as scheduler:
        await wait_for(lambda: scheduler.job_status("stuck").running == 1)
        started = anyio.current_time()
    waited = anyio.current_time() - started

    assert 0.3 <= waited < 3
    status = scheduler.job_status("stuck")
    assert (status.runs, status.cancelled, status.running) == (1, 1, 0)
    assert status.last_status is RunStatus.CANCELLED
    assert recorder.cleaned_up == [recorder.started[0].run_id]  # the extractor was closed
    (record,) = await registry.history("stuck")
    assert record["status"] == "cancelled"
    assert record["trigger"] == "schedule"
    assert scheduler.statistics().runs_cancelled == 1


async def test_cancelling_the_host_shuts_down_gracefully_too() -> None:
    recorder = Recorder("host", hold=True)
    registry = registry_with(recorder)

    with anyio.move_on_after(30) as outer:
        async with open_scheduler(registry, grace_period=0.2) as scheduler:
            await wait_for(lambda: scheduler.job_status("host").running == 1)
            outer.cancel()
            await anyio.sleep(10)

    assert outer.cancelled_caught
    (record,) = await registry.history("host")
    assert record["status"] == "cancelled"
    assert scheduler.state == "closed"


async def test_serve_returns_after_sigint_and_a_graceful_shutdown() -> None:
    recorder = Recorder("served", hold=True)
    registry = registry_with(recorder)

    async with open_scheduler(registry, grace_period=10) as scheduler:
        async with anyio.create_task_group() as tg:

            async def interrupt() -> None:
                await wait_for(lambda: scheduler.job_status("served").running == 1)
                os.kill(os.getpid(), signal.SIGINT)
                await wait_for(lambda: scheduler.state == "stopping")
                await anyio.sleep(0.2)
                recorder.release.set()

            tg.start_soon(interrupt)
            with anyio.fail_after(10):
                await scheduler.serve()
        assert scheduler.state == "closed"

    assert scheduler.job_status("served").succeeded == 1
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


async def test_a_second_signal_cancels_the_runs_at_once() -> None:
    recorder = Recorder("impatient", hold=True)
    registry = registry_with(recorder)

    async with (
        open_scheduler(registry, grace_period=30) as scheduler,
        anyio.create_task_group() as tg,
    ):

        async def interrupt_twice() -> None:
            await wait_for(lambda: scheduler.job_status("impatient").running == 1)
            os.kill(os.getpid(), signal.SIGTERM)
            await wait_for(lambda: scheduler.state == "stopping")
            os.kill(os.getpid(), signal.SIGINT)

        tg.start_soon(interrupt_twice)
        with anyio.fail_after(10):
            await scheduler.serve()

    assert scheduler.job_status("impatient").cancelled == 1
    (record,) = await registry.history("impatient")
    assert record["status"] == "cancelled"


async def test_trigger_runs_a_job_now() -> None:
    recorder = Recorder("manual")
    registry = registry_with(recorder, "0 0 1 1 *")

    async with open_scheduler(registry) as scheduler:
        assert scheduler.trigger("manual") is True
        await wait_for(lambda: len(recorder.finished) == 1)
        with pytest.raises(RegistryError):
            scheduler.trigger("nope")

    (record,) = await registry.history("manual")
    assert record["trigger"] == "manual"


async def test_options_are_validated_and_a_scheduler_runs_once() -> None:
    with pytest.raises(ConfigError, match="overlap"):
        Scheduler(PipelineRegistry(), overlap="sometimes")
    with pytest.raises(ConfigError, match="grace_period"):
        Scheduler(PipelineRegistry(), grace_period=-1)
    with pytest.raises(ConfigError, match="config"):
        Scheduler(PipelineRegistry(), SchedulerConfig(), overlap="skip")

    scheduler = Scheduler(PipelineRegistry(), SchedulerConfig(overlap="queue"))
    assert scheduler.overlap_policy("anything") == "queue"
    with pytest.raises(RuntimeError, match="not running"):
        scheduler.trigger("anything")
    async with scheduler:
        pass
    with pytest.raises(RuntimeError, match="runs only once"):
        async with scheduler:
            pass
    with pytest.raises(RuntimeError, match="closed"):
        await scheduler.serve()

"""The pipeline registry: CRUD, errors, cron jobs, and running registered pipelines."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime
from typing import Any

import anyio
import pytest

import ductwork
from ductwork import (
    Batch,
    ConfigError,
    CronJob,
    MemoryStateStore,
    Pipeline,
    PipelineError,
    PipelineRegistry,
    RegistryError,
    RunContext,
    RunStatus,
    ScheduleError,
    TimeWindow,
    create_el_pipeline,
    daily,
    validate_schedule,
)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


class Recorder:
    """A pipeline factory that records what each run saw."""

    def __init__(self) -> None:
        self.contexts: list[RunContext] = []
        self.fail = False
        self.block: anyio.Event | None = None

    async def extract(self, ctx: RunContext) -> AsyncIterator[Batch]:
        self.contexts.append(ctx)
        if self.block is not None:
            await self.block.wait()
        if self.fail:
            raise RuntimeError("source unavailable")
        yield [{"n": 1}, {"n": 2}]

    def build(self) -> Pipeline:
        return create_el_pipeline(self.extract, lambda batch: None, name="recorded", logging=False)


def simple(name: str = "simple") -> Pipeline:
    async def extract(ctx: RunContext) -> AsyncIterator[Batch]:
        yield [{"x": 1}]

    return create_el_pipeline(extract, lambda batch: None, name=name, logging=False)


@pytest.fixture
def registry() -> PipelineRegistry:
    return PipelineRegistry()


# --- CRUD ---------------------------------------------------------------------------------------


def test_register_get_list_unregister(registry: PipelineRegistry) -> None:
    pipeline = simple()
    entry = registry.register_pipeline(
        "b_simple", pipeline, description="a simple one", tags=["x", "y"], metadata={"owner": "me"}
    )
    assert entry.source is pipeline
    assert not entry.is_factory
    assert entry.build() is pipeline
    assert (entry.description, entry.tags, dict(entry.metadata)) == (
        "a simple one",
        frozenset({"x", "y"}),
        {"owner": "me"},
    )
    factory_entry = registry.register_pipeline("a_factory", simple, tags="x")
    assert factory_entry.is_factory
    assert factory_entry.description == ""  # simple() has no docstring
    built = [factory_entry.build(), factory_entry.build()]
    assert built[0] is not built[1]  # a fresh Runnable per run

    assert registry.get_pipeline_entry("b_simple") is entry
    assert [e.name for e in registry.list_pipelines()] == ["a_factory", "b_simple"]
    assert [e.name for e in registry.list_pipelines(tag="y")] == ["b_simple"]
    assert [e.name for e in registry.list_pipelines(tag="x")] == ["a_factory", "b_simple"]
    assert "b_simple" in registry
    assert len(registry) == 2

    assert registry.unregister_pipeline("b_simple") is entry
    assert "b_simple" not in registry
    with pytest.raises(RegistryError, match=r"no pipeline named 'b_simple'.*a_factory"):
        registry.get_pipeline("b_simple")
    with pytest.raises(RegistryError):
        registry.unregister_pipeline("b_simple")


def test_factory_docstring_is_the_default_description(registry: PipelineRegistry) -> None:
    def build() -> Pipeline:
        """Orders of the day.

        More text.
        """
        return simple()

    assert registry.register_pipeline("orders", build).description == "Orders of the day."


def test_duplicates_are_refused_unless_replace(registry: PipelineRegistry) -> None:
    first = registry.register_pipeline("p", simple())
    with pytest.raises(RegistryError, match=r"already registered.*replace=True"):
        registry.register_pipeline("p", simple())
    assert registry.get_pipeline_entry("p") is first
    second = registry.register_pipeline("p", simple(), replace=True)
    assert registry.get_pipeline_entry("p") is second


def test_registries_are_independent() -> None:
    one, two = PipelineRegistry(), PipelineRegistry()
    one.register_pipeline("p", simple())
    assert "p" not in two
    two.register_pipeline("p", simple())  # no clash
    assert one.get_pipeline_entry("p") is not two.get_pipeline_entry("p")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"name": "has space"}, ConfigError, "name"),
        ({"name": ""}, ConfigError, "name"),
        ({"name": "-dash"}, ConfigError, "name"),
        ({"name": 3}, ConfigError, "name"),
        ({"pipeline": 42}, ConfigError, "pipeline: expected a Runnable"),
        ({"pipeline": lambda x: x}, ConfigError, "pipeline: a factory must be callable without"),
        ({"schedule": "61 * * * *"}, ScheduleError, "Bad minute"),
        ({"schedule": "* * *"}, ScheduleError, "Wrong number of fields"),
        ({"timescope": "fortnightly"}, ScheduleError, "fortnightly"),
        ({"timezone": "Nowhere/City"}, ScheduleError, "unknown time zone"),
        ({"tags": [""]}, ConfigError, "tags"),
        ({"metadata": ["a"]}, ConfigError, "metadata"),
        ({"description": 5}, ConfigError, "description"),
    ],
)
def test_bad_registrations_raise_naming_the_problem(
    registry: PipelineRegistry, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    args: dict[str, Any] = {"name": "p", "pipeline": simple()} | kwargs
    with pytest.raises(error, match=match):
        registry.register_pipeline(**args)
    assert len(registry) == 0
    assert registry.list_cron_jobs() == []


def test_validate_pipeline(registry: PipelineRegistry) -> None:
    registry.register_pipeline("good", simple)
    assert isinstance(registry.validate_pipeline("good"), Pipeline)

    def raising() -> Pipeline:
        raise KeyError("API_TOKEN")

    registry.register_pipeline("raising", raising)
    with pytest.raises(ConfigError, match="'raising': its factory raised KeyError") as info:
        registry.validate_pipeline("raising")
    assert isinstance(info.value.__cause__, KeyError)

    registry.register_pipeline("wrong_type", lambda: {"not": "a pipeline"})
    with pytest.raises(ConfigError, match="returned dict, not a Runnable"):
        registry.validate_pipeline("wrong_type")
    with pytest.raises(RegistryError):
        registry.validate_pipeline("missing")


# --- schedules, timescopes and cron jobs --------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "normalised"),
    [
        ("*/5  * *  * *", "*/5 * * * *"),
        ("@daily", "0 0 * * *"),
        ("@HOURLY", "0 * * * *"),
        ("@weekly", "0 0 * * 0"),
        ("@monthly", "0 0 1 * *"),
        ("@yearly", "0 0 1 1 *"),
        ("*/10 * * * * *", "*/10 * * * * *"),
        ("0 9 * * MON-FRI", "0 9 * * MON-FRI"),
        ("0 0 L * *", "0 0 L * *"),
    ],
)
def test_validate_schedule_normalises(given: str, normalised: str) -> None:
    assert validate_schedule(given) == normalised


@pytest.mark.parametrize(
    ("schedule", "reason"),
    [
        ("60 * * * *", "Bad minute"),
        ("* 24 * * *", "Bad hour"),
        ("0 0 30 2 *", "Bad day-of-month"),
        ("0 0 * 13 *", "Bad month"),
        ("0 0 * * 8", "Bad day-of-week"),
        ("* * * *", "Wrong number of fields"),
        ("", "Wrong number of fields"),
        ("@sometimes", "Wrong number of fields"),
    ],
)
def test_validate_schedule_rejects(schedule: str, reason: str) -> None:
    with pytest.raises(
        ScheduleError, match=re.escape(f"invalid cron expression {schedule!r}: {reason}")
    ):
        validate_schedule(schedule)


def test_validate_schedule_rejects_non_strings() -> None:
    with pytest.raises(ScheduleError, match="expected a string"):
        validate_schedule(None)  # type: ignore[arg-type]


def test_schedule_creates_a_cron_job_and_unregister_removes_jobs(
    registry: PipelineRegistry,
) -> None:
    registry.register_pipeline("p", simple(), "*/5 * * * *", timezone="Europe/Paris")
    job = registry.get_cron_job("p")
    assert (job.pipeline, job.schedule, job.timezone, job.enabled) == (
        "p",
        "*/5 * * * *",
        "Europe/Paris",
        True,
    )
    extra = registry.register_cron_job("p_noon", "0 12 * * *", "p", params={"full": True})
    assert extra.timezone == "Europe/Paris"  # the pipeline's zone by default
    assert dict(extra.params) == {"full": True}
    assert [j.name for j in registry.list_cron_jobs()] == ["p", "p_noon"]
    assert [j.name for j in registry.list_cron_jobs(pipeline="p")] == ["p", "p_noon"]
    registry.unregister_pipeline("p")
    assert registry.list_cron_jobs() == []


def test_replacing_a_pipeline_keeps_its_other_jobs(registry: PipelineRegistry) -> None:
    registry.register_pipeline("p", simple(), "0 * * * *")
    registry.register_cron_job("p_noon", "0 12 * * *", "p")
    registry.register_pipeline("p", simple(), "30 * * * *", replace=True)
    assert registry.get_cron_job("p").schedule == "30 * * * *"
    assert registry.get_cron_job("p_noon").pipeline == "p"
    registry.register_pipeline("p", simple(), replace=True)  # no schedule any more
    assert [j.name for j in registry.list_cron_jobs()] == ["p_noon"]


def test_cron_job_errors(registry: PipelineRegistry) -> None:
    with pytest.raises(RegistryError, match="no pipeline named 'ghost'"):
        registry.register_cron_job("ghost", "* * * * *")
    registry.register_pipeline("p", simple())
    registry.register_cron_job("j", "* * * * *", "p")
    with pytest.raises(RegistryError, match="cron job named 'j' already exists"):
        registry.register_cron_job("j", "0 * * * *", "p")
    assert registry.register_cron_job("j", "0 * * * *", "p", replace=True).schedule == "0 * * * *"
    with pytest.raises(ScheduleError):
        registry.register_cron_job("k", "not cron", "p")
    with pytest.raises(ScheduleError):
        registry.register_cron_job("k", "* * * * *", "p", timezone="Atlantis")
    with pytest.raises(ConfigError, match="params"):
        registry.register_cron_job("k", "* * * * *", "p", params=[1])  # type: ignore[arg-type]
    assert registry.remove_cron_job("j").name == "j"
    with pytest.raises(RegistryError, match="no cron job named 'j'"):
        registry.remove_cron_job("j")
    with pytest.raises(RegistryError):
        registry.get_cron_job("j")
    assert "p" in registry  # removing a job keeps the pipeline


def test_entries_and_jobs_are_hashable(registry: PipelineRegistry) -> None:
    entry = registry.register_pipeline("p", simple(), "0 * * * *", metadata={"a": 1})
    job = registry.register_cron_job("j", "* * * * *", "p", params={"b": 2})
    assert {entry: 1}[entry] == 1
    assert len({job, registry.get_cron_job("j")}) == 1


def test_cron_job_fire_times_follow_its_zone() -> None:
    job = CronJob("j", "p", "0 0 * * *", timezone="Europe/Berlin")
    after = utc(2024, 3, 30, 12)
    fires = job.fire_times(after, 2)
    assert [f.isoformat() for f in fires] == [
        "2024-03-31T00:00:00+01:00",
        "2024-04-01T00:00:00+02:00",
    ]
    seconds = CronJob("s", "p", "*/20 * * * * *")
    assert seconds.next_fire_time(utc(2024, 1, 1, 0, 0, 5)) == utc(2024, 1, 1, 0, 0, 20)


def test_register_with_timescope(registry: PipelineRegistry) -> None:
    entry = registry.register_pipeline_with_timescope("d", simple(), daily("Asia/Tokyo"))
    assert entry.schedule == "0 0 * * *"
    assert entry.timezone == "Asia/Tokyo"
    assert registry.get_cron_job("d").timezone == "Asia/Tokyo"
    custom = registry.register_pipeline_with_timescope("h", simple(), "hourly", "5 * * * *")
    assert custom.schedule == "5 * * * *"
    assert custom.timescope is not None
    assert custom.timescope.name == "hourly"
    with pytest.raises(ScheduleError, match="no default cron schedule"):
        registry.register_pipeline_with_timescope("odd", simple(), "7m")
    assert "odd" not in registry
    # register_pipeline with a timescope does not schedule by itself
    plain = registry.register_pipeline("plain", simple(), timescope="daily")
    assert plain.schedule is None
    assert registry.list_cron_jobs(pipeline="plain") == []


def test_listeners_see_every_change(registry: PipelineRegistry) -> None:
    events: list[tuple[str, str]] = []
    remove = registry.add_listener(lambda event, name: events.append((event, name)))
    start = registry.revision
    registry.register_pipeline("p", simple(), "* * * * *")
    registry.register_cron_job("j", "0 * * * *", "p")
    registry.remove_cron_job("j")
    registry.unregister_pipeline("p")
    assert events == [
        ("pipeline_registered", "p"),
        ("cron_job_added", "p"),
        ("cron_job_added", "j"),
        ("cron_job_removed", "j"),
        ("cron_job_removed", "p"),
        ("pipeline_unregistered", "p"),
    ]
    assert registry.revision == start + 6
    remove()
    registry.register_pipeline("q", simple())
    assert len(events) == 6


# --- running ------------------------------------------------------------------------------------


async def test_run_uses_the_last_complete_window_and_records_the_run() -> None:
    store = MemoryStateStore()
    registry = PipelineRegistry(state=store)
    recorder = Recorder()
    registry.register_pipeline_with_timescope("daily_recorded", recorder.build, "daily")

    result = await registry.run(
        "daily_recorded", params={"limit": 3}, now=utc(2024, 3, 1, 0, 5), run_id="run-1"
    )
    assert result.status is RunStatus.SUCCEEDED
    assert result.records_out == 2
    ctx = recorder.contexts[-1]
    assert ctx.window == TimeWindow(utc(2024, 2, 29), utc(2024, 3, 1))
    assert dict(ctx.params) == {"limit": 3}
    assert ctx.state is store
    assert ctx.run_id == "run-1"

    (record,) = await registry.history("daily_recorded")
    assert record["run_id"] == "run-1"
    assert record["pipeline"] == "daily_recorded"
    assert record["status"] == "succeeded"
    assert record["records_out"] == 2
    assert record["window"]["start"] == "2024-02-29T00:00:00+00:00"
    assert record["params"] == {"limit": 3}
    assert record["trigger"] == "manual"
    assert record["stages"][0]["records_out"] == 2


async def test_run_resolves_windows_from_dates_and_text(registry: PipelineRegistry) -> None:
    recorder = Recorder()
    registry.register_pipeline("r", recorder.build, timescope="daily")
    await registry.run("r", window=date(2024, 1, 5))
    await registry.run("r", window="2024-01-06")
    given = TimeWindow(utc(2024, 1, 7, 6), utc(2024, 1, 7, 18))
    await registry.run("r", window=given)
    starts = [c.window.start for c in recorder.contexts if c.window is not None]
    assert starts == [utc(2024, 1, 5), utc(2024, 1, 6), utc(2024, 1, 7, 6)]


async def test_pipeline_without_timescope_runs_without_window(registry: PipelineRegistry) -> None:
    recorder = Recorder()
    registry.register_pipeline("r", recorder.build)
    await registry.run("r")
    assert recorder.contexts[-1].window is None
    with pytest.raises(ScheduleError, match="has no timescope"):
        await registry.run("r", window="2024-01-01")
    given = TimeWindow(utc(2024, 1, 1), utc(2024, 1, 2))
    await registry.run("r", window=given)
    assert recorder.contexts[-1].window == given


async def test_failed_run_is_recorded_then_raised(registry: PipelineRegistry) -> None:
    recorder = Recorder()
    recorder.fail = True
    registry.register_pipeline("r", recorder.build)
    with pytest.raises(PipelineError, match="source unavailable") as info:
        await registry.run("r", trigger="schedule")
    assert info.value.result is not None
    assert info.value.result.status is RunStatus.FAILED
    assert isinstance(info.value.__cause__, RuntimeError)
    (record,) = await registry.history("r")
    assert record["status"] == "failed"
    assert "source unavailable" in record["error"]
    assert record["error_stage"] == "extract"
    assert record["trigger"] == "schedule"


async def test_a_factory_that_fails_is_a_recorded_failed_run(registry: PipelineRegistry) -> None:
    def broken() -> Pipeline:
        raise OSError("config file missing")

    registry.register_pipeline("broken", broken)
    with pytest.raises(PipelineError, match="could not build the pipeline") as info:
        await registry.run("broken")
    assert info.value.retryable is False
    assert isinstance(info.value.__cause__, ConfigError)
    (record,) = await registry.history("broken")
    assert record["status"] == "failed"
    assert "config file missing" in record["error"]


async def test_a_cancelled_run_is_recorded_as_cancelled(registry: PipelineRegistry) -> None:
    recorder = Recorder()
    recorder.block = anyio.Event()
    registry.register_pipeline("r", recorder.build)
    with anyio.move_on_after(0.2):
        await registry.run("r")
    (record,) = await registry.history("r")
    assert record["status"] == "cancelled"


async def test_a_pipeline_with_its_own_store_keeps_it_and_history_goes_to_the_registry() -> None:
    own = MemoryStateStore()
    registry_store = MemoryStateStore()
    registry = PipelineRegistry(state=registry_store)
    seen: list[Any] = []

    async def extract(ctx: RunContext) -> AsyncIterator[Batch]:
        seen.append(ctx.state)
        yield [{"a": 1}]

    registry.register_pipeline(
        "own", create_el_pipeline(extract, lambda b: None, logging=False, state=own)
    )
    await registry.run("own")
    assert seen == [own]
    assert len(await registry_store.list_runs("own")) == 1
    assert await own.list_runs("own") == []

    explicit = MemoryStateStore()
    await registry.run("own", state=explicit)
    assert seen[-1] is explicit
    assert len(await explicit.list_runs("own")) == 1


async def test_concurrent_runs_are_all_recorded(registry: PipelineRegistry) -> None:
    registry.register_pipeline("r", Recorder().build, timescope="hourly")

    async with anyio.create_task_group() as tg:
        for hour in range(12):
            tg.start_soon(lambda h=hour: registry.run("r", window=utc(2024, 1, 1, h)))
    runs = await registry.history("r", limit=None)
    assert len(runs) == 12
    assert {r["status"] for r in runs} == {"succeeded"}


async def test_run_unknown_pipeline(registry: PipelineRegistry) -> None:
    with pytest.raises(RegistryError, match="no pipeline named 'nope'"):
        await registry.run("nope")


# --- the default registry and its module-level functions ----------------------------------------


@pytest.fixture
def default_registry() -> Iterator[PipelineRegistry]:
    registry = ductwork.get_default_registry()
    before = {e.name for e in registry.list_pipelines()}
    yield registry
    for entry in registry.list_pipelines():
        if entry.name not in before:
            registry.unregister_pipeline(entry.name)


async def test_module_level_functions_use_the_default_registry(
    default_registry: PipelineRegistry,
) -> None:
    recorder = Recorder()
    entry = ductwork.register_pipeline("module_level_p", recorder.build, "0 * * * *")
    assert ductwork.get_pipeline_entry("module_level_p") is entry
    assert default_registry.get_pipeline_entry("module_level_p") is entry
    assert "module_level_p" in [e.name for e in ductwork.list_pipelines()]
    assert isinstance(ductwork.validate_pipeline("module_level_p"), Pipeline)

    ductwork.register_cron_job("module_level_job", "*/5 * * * *", "module_level_p")
    assert ductwork.get_cron_job("module_level_job").pipeline == "module_level_p"
    assert [j.name for j in ductwork.list_cron_jobs("module_level_p")] == [
        "module_level_job",
        "module_level_p",
    ]
    ductwork.remove_cron_job("module_level_job")

    ductwork.register_pipeline_with_timescope("module_level_d", recorder.build, "daily")
    result = await ductwork.run_pipeline("module_level_d", window="2024-01-01")
    assert result.succeeded
    assert recorder.contexts[-1].window == TimeWindow(utc(2024, 1, 1), utc(2024, 1, 2))

    ductwork.unregister_pipeline("module_level_p")
    with pytest.raises(RegistryError):
        ductwork.get_pipeline("module_level_p")


async def test_a_factory_failing_on_io_is_retryable_and_a_broken_one_is_not() -> None:
    from ductwork import PipelineError, PipelineRegistry

    registry = PipelineRegistry()

    def needs_the_network() -> Any:
        raise ConnectionRefusedError("config service down")

    def broken() -> Any:
        raise KeyError("missing setting")

    registry.register_pipeline("flaky_factory", needs_the_network)
    registry.register_pipeline("broken_factory", broken)
    with pytest.raises(PipelineError) as flaky:
        await registry.run("flaky_factory")
    with pytest.raises(PipelineError) as bad:
        await registry.run("broken_factory")
    assert flaky.value.retryable is True
    assert bad.value.retryable is False

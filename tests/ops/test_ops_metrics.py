"""Prometheus metrics: scraped over HTTP after known runs, they equal the runs' own figures."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import anyio
import pytest
from ops_helpers import pages_api, sample, samples, serving
from prometheus_client.parser import text_string_to_metric_families

from ductwork import (
    Batch,
    MemoryStateStore,
    PageNumberPagination,
    PipelineRegistry,
    RunContext,
    RunResult,
    RunStatus,
    StageStats,
    create_el_pipeline,
    create_etl_pipeline,
    create_http_extractor,
    create_lambda_transformer,
    create_parallel_pipeline,
    create_retry_pipeline,
)
from ductwork.core.instrument import installed
from ductwork.ops import RunMetrics


async def numbers(ctx: RunContext) -> AsyncIterator[Batch]:
    for start in range(0, 50, 10):
        yield [{"n": n} for n in range(start, start + 10)]


def explode_on_twenties(batch: Batch) -> Batch:
    if batch[0]["n"] == 20:
        raise ValueError("bad batch")
    return batch


def registry_of(**pipelines: object) -> PipelineRegistry:
    registry = PipelineRegistry(state=MemoryStateStore())
    for name, build in pipelines.items():
        registry.register_pipeline(name, build)  # type: ignore[arg-type]
    return registry


async def test_scraped_metrics_equal_the_run_result() -> None:
    def build() -> object:
        return create_etl_pipeline(
            numbers,
            [explode_on_twenties, create_lambda_transformer(lambda r: r if r["n"] % 2 else None)],
            lambda batch: None,
            name="evens_out",
            error_handling="skip",
            logging=False,
        )

    registry = registry_of(evens_out=build)
    async with serving(registry) as (_, _, client):
        result = await registry.run("evens_out")
        found = samples((await client.get("/metrics")).text)

    assert result.status is RunStatus.SUCCEEDED
    assert sample(found, "ductwork_runs_total", pipeline="evens_out", status="succeeded") == 1
    assert sample(found, "ductwork_runs_in_progress", pipeline="evens_out") == 0
    assert sample(found, "ductwork_run_duration_seconds_count", pipeline="evens_out") == 1
    assert sample(
        found, "ductwork_run_duration_seconds_sum", pipeline="evens_out"
    ) == pytest.approx(result.duration_seconds)
    for stats in result.stages:
        labels = {"pipeline": "evens_out", "stage": stats.name}
        assert sample(found, "ductwork_stage_records_in_total", **labels) == stats.records_in
        assert sample(found, "ductwork_stage_records_out_total", **labels) == stats.records_out
        assert sample(found, "ductwork_stage_batches_in_total", **labels) == stats.batches_in
        assert sample(found, "ductwork_stage_batches_out_total", **labels) == stats.batches_out
        assert sample(found, "ductwork_stage_busy_seconds_total", **labels) == pytest.approx(
            stats.busy_seconds
        )
        assert sample(found, "ductwork_stage_blocked_seconds_total", **labels) == pytest.approx(
            stats.blocked_seconds
        )
        if stats.kind != "extract":  # the extractor has no input stream
            assert sample(found, "ductwork_stage_queue_depth", **labels) == 0
    skipping, dropping = result.stages[1], result.stages[2]
    labels = {"pipeline": "evens_out", "stage": skipping.name}
    assert sample(found, "ductwork_stage_errors_total", **labels) == 1  # the batch of 20s
    assert sample(found, "ductwork_stage_records_skipped_total", **labels) == 10
    labels = {"pipeline": "evens_out", "stage": dropping.name}
    assert sample(found, "ductwork_stage_records_dropped_total", **labels) == 20
    assert dropping.records_out == result.records_out == 20
    assert not any(name.startswith("ductwork_clickhouse") for name, _ in found)  # no loader


async def test_a_failed_run_counts_an_error_at_its_stage() -> None:
    def build() -> object:
        return create_etl_pipeline(
            numbers, explode_on_twenties, lambda batch: None, name="fails", logging=False
        )

    registry = registry_of(fails=build)
    async with serving(registry) as (_, _, client):
        with pytest.raises(Exception, match="bad batch"):
            await registry.run("fails")
        found = samples((await client.get("/metrics")).text)
    assert sample(found, "ductwork_runs_total", pipeline="fails", status="failed") == 1
    assert (
        sample(found, "ductwork_stage_errors_total", pipeline="fails", stage="explode_on_twenties")
        == 1
    )
    assert sample(found, "ductwork_stage_errors_total", pipeline="fails", stage="numbers") == 0


async def test_counters_move_while_a_run_goes_on_and_the_queue_depth_shows() -> None:
    release = anyio.Event()
    loaded: list[int] = []

    async def slow_load(batch: Batch) -> None:
        await release.wait()
        loaded.append(len(batch))

    registry = registry_of(
        held=lambda: create_el_pipeline(
            numbers, slow_load, name="held", queue_size=2, logging=False
        )
    )
    async with serving(registry) as (_, _, client):
        async with anyio.create_task_group() as tg:
            done: list[RunResult] = []

            async def run() -> None:
                done.append(await registry.run("held"))

            tg.start_soon(run)
            with anyio.fail_after(5):
                while True:  # the loader holds one batch, two wait, the extractor is blocked
                    found = samples((await client.get("/metrics")).text)
                    if (
                        found.get(
                            (
                                "ductwork_stage_queue_depth",
                                frozenset({("pipeline", "held"), ("stage", "slow_load")}),
                            )
                        )
                        == 3
                    ):
                        break
                    await anyio.sleep(0.01)
            assert sample(found, "ductwork_runs_in_progress", pipeline="held") == 1
            assert (
                sample(found, "ductwork_stage_records_out_total", pipeline="held", stage="numbers")
                == 40
            )
            assert (
                "ductwork_runs_total",
                frozenset({("pipeline", "held"), ("status", "succeeded")}),
            ) not in found
            release.set()
        found = samples((await client.get("/metrics")).text)
    assert sample(found, "ductwork_runs_in_progress", pipeline="held") == 0
    assert sample(found, "ductwork_stage_queue_depth", pipeline="held", stage="slow_load") == 0
    assert sample(found, "ductwork_stage_records_out_total", pipeline="held", stage="numbers") == 50
    assert (
        sample(found, "ductwork_stage_records_in_total", pipeline="held", stage="slow_load")
        == done[0].records_out
        == 50
    )


async def test_http_requests_and_retries_by_status() -> None:
    with pages_api() as url:

        def build() -> object:
            return create_el_pipeline(
                create_http_extractor(
                    url + "/pages",
                    records_path="data",
                    pagination=PageNumberPagination(page_size=2),
                    retry_logic={"max_retries": 2, "backoff_factor": 0.01},
                ),
                lambda batch: None,
                name="paged",
                logging=False,
            )

        registry = registry_of(paged=build)
        async with serving(registry) as (_, _, client):
            result = await registry.run("paged")
            found = samples((await client.get("/metrics")).text)
    stage = result.stages[0].name
    assert result.records_out == 6
    assert result.stages[0].metrics["http_status_200"] == 4  # three pages and the empty one
    assert (
        sample(found, "ductwork_http_requests_total", pipeline="paged", stage=stage, status="200")
        == 4
    )
    assert (
        sample(found, "ductwork_http_requests_total", pipeline="paged", stage=stage, status="503")
        == 1
    )
    assert (
        sample(found, "ductwork_http_retries_total", pipeline="paged", stage=stage, status="503")
        == 1
    )


def test_results_from_elsewhere_are_observed_with_their_children() -> None:
    started = datetime.now(UTC)
    loader = StageStats(
        "to_clickhouse",
        "load",
        records_in=7,
        records_out=7,
        batches_in=1,
        batches_out=1,
        metrics={"rows_inserted": 7, "inserts": 1},
    )
    child = RunResult(
        "window",
        "c1",
        status=RunStatus.SUCCEEDED,
        started_at=started,
        duration_seconds=0.2,
        stages=[StageStats("read", "extract", records_out=7), loader],
    )
    never = RunResult("window", "c2", status=RunStatus.CANCELLED, detail="not started")
    parent = RunResult(
        "all",
        "p",
        kind="parallel",
        status=RunStatus.SUCCEEDED,
        started_at=started,
        duration_seconds=0.3,
        children=[child, never],
    )
    metrics = RunMetrics()
    metrics.observe(parent)
    found = samples(metrics.text())
    assert sample(found, "ductwork_runs_total", pipeline="all", status="succeeded") == 1
    assert sample(found, "ductwork_runs_total", pipeline="window", status="succeeded") == 1
    assert (
        "ductwork_runs_total",
        frozenset({("pipeline", "window"), ("status", "cancelled")}),
    ) not in found
    assert (
        sample(
            found,
            "ductwork_clickhouse_rows_inserted_total",
            pipeline="window",
            stage="to_clickhouse",
        )
        == 7
    )
    assert (
        "ductwork_clickhouse_rows_inserted_total",
        frozenset({("pipeline", "window"), ("stage", "read")}),
    ) not in found


async def test_install_observes_every_run_once_compositions_included() -> None:
    both = create_parallel_pipeline(
        [create_el_pipeline(numbers, lambda b: None, name=f"p{i}", logging=False) for i in (1, 2)],
        name="both",
        logging=False,
    )
    metrics = RunMetrics()
    remove = metrics.install()
    try:
        assert metrics in installed()
        result = await both.run()
    finally:
        remove()
    assert metrics not in installed()
    await both.run()  # not counted
    found = samples(metrics.text())
    assert sample(found, "ductwork_runs_total", pipeline="both", status="succeeded") == 1
    for child in result.children:
        assert sample(found, "ductwork_runs_total", pipeline=child.name, status="succeeded") == 1
        assert (
            sample(found, "ductwork_stage_records_out_total", pipeline=child.name, stage="load")
            == 50
        )
    names = {f.name for f in text_string_to_metric_families(metrics.text())}
    assert all(name.startswith("ductwork_") for name in names)


async def test_scheduler_ticks_skipped_ticks_and_lateness_equal_the_job_status() -> None:
    release = anyio.Event()

    async def held(ctx: RunContext) -> AsyncIterator[Batch]:
        await release.wait()
        yield [{"n": 1}]

    registry = PipelineRegistry(state=MemoryStateStore())
    registry.register_pipeline(
        "every_second",
        lambda: create_el_pipeline(held, lambda batch: None, name="every_second", logging=False),
        "* * * * * *",
    )
    async with serving(registry) as (scheduler, _, client):
        with anyio.fail_after(10):  # a first tick starts the held run, the next ones are skipped
            while scheduler.job_status("every_second").skipped < 2:
                await anyio.sleep(0.02)
        scheduler.disable("every_second")  # no more ticks: the figures stand still
        status = scheduler.job_status("every_second")
        found = samples((await client.get("/metrics")).text)
        release.set()
    assert status.ticks >= 3
    assert sample(found, "ductwork_scheduler_ticks_total", pipeline="every_second") == status.ticks
    assert (
        sample(found, "ductwork_scheduler_ticks_skipped_total", pipeline="every_second")
        == status.skipped
    )
    lateness = "ductwork_scheduler_tick_lateness_seconds"
    assert sample(found, f"{lateness}_count", pipeline="every_second") == status.ticks
    assert sample(found, f"{lateness}_sum", pipeline="every_second") == pytest.approx(
        status.tick_lateness_seconds
    )
    assert status.tick_lateness_seconds > 0
    assert sample(found, "ductwork_scheduler_jobs", status="disabled") == 1
    assert sample(found, "ductwork_scheduler_jobs", status="enabled") == 0
    assert sample(found, "ductwork_scheduler_running") == 1


async def test_a_retry_counts_each_attempt_once() -> None:
    attempts: list[str] = []

    async def flaky(ctx: RunContext) -> AsyncIterator[Batch]:
        attempts.append(ctx.run_id)
        if len(attempts) < 3:
            raise ConnectionError("the source is down")
        yield [{"n": 1}]

    again = create_retry_pipeline(
        create_el_pipeline(flaky, lambda batch: None, name="flaky", logging=False),
        backoff_factor=0.01,
        name="again",
        logging=False,
    )
    metrics = RunMetrics()
    remove = metrics.install()
    try:
        result = await again.run()
    finally:
        remove()
    assert [str(child.status) for child in result.children] == ["failed", "failed", "succeeded"]
    found = samples(metrics.text())
    assert sample(found, "ductwork_runs_total", pipeline="again", status="succeeded") == 1
    assert sample(found, "ductwork_runs_total", pipeline="flaky", status="failed") == 2
    assert sample(found, "ductwork_runs_total", pipeline="flaky", status="succeeded") == 1
    assert sample(found, "ductwork_stage_records_out_total", pipeline="flaky", stage="flaky") == 1

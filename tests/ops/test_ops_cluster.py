"""Metrics of runs on a Dask cluster's workers come from the results the workers return."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator

import pytest
from ops_helpers import sample, samples

distributed = pytest.importorskip("distributed")
cloudpickle = pytest.importorskip("cloudpickle")

from ductwork import (  # noqa: E402
    Batch,
    DaskExecutor,
    RunContext,
    create_el_pipeline,
    create_parallel_pipeline,
)
from ductwork.ops import RunMetrics  # noqa: E402

# The workers import ductwork, but not this test module: ship its functions by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


async def numbers(ctx: RunContext) -> AsyncIterator[Batch]:
    for start in range(0, 30, 10):
        yield [{"n": n} for n in range(start, start + 10)]


def drop(batch: Batch) -> None:
    pass


@pytest.mark.timeout(120)
async def test_children_run_on_a_cluster_are_counted_once_from_their_results() -> None:
    metrics = RunMetrics()
    remove = metrics.install()
    try:
        async with (
            distributed.LocalCluster(
                n_workers=1,
                processes=True,
                threads_per_worker=1,
                host="127.0.0.1",
                dashboard_address="127.0.0.1:0",  # not 8787, which may be taken
                asynchronous=True,
            ) as cluster,
            DaskExecutor(cluster.scheduler_address) as executor,
        ):
            both = create_parallel_pipeline(
                [create_el_pipeline(numbers, drop, name=n, logging=False) for n in ("a", "b")],
                name="both",
                executor=executor,
                logging=False,
            )
            result = await both.run()
    finally:
        remove()
    assert [child.status for child in result.children] == ["succeeded", "succeeded"]
    found = samples(metrics.text())
    assert sample(found, "ductwork_runs_total", pipeline="both", status="succeeded") == 1
    for child in result.children:
        assert sample(found, "ductwork_runs_total", pipeline=child.name, status="succeeded") == 1
        for stats in child.stages:
            labels = {"pipeline": child.name, "stage": stats.name}
            assert sample(found, "ductwork_stage_records_in_total", **labels) == stats.records_in
            assert sample(found, "ductwork_stage_records_out_total", **labels) == stats.records_out
            assert sample(found, "ductwork_stage_busy_seconds_total", **labels) == pytest.approx(
                stats.busy_seconds
            )
        assert child.stages[-1].records_in == 30
    assert metrics.in_flight() == []

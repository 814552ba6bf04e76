"""The Dask executor on a LocalCluster of two worker processes on 127.0.0.1.

The cluster starts once for the module. Concurrent steps are ordered by files the windows write
(polled), not by sleeps.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

distributed = pytest.importorskip("distributed")
cloudpickle = pytest.importorskip("cloudpickle")

from ductwork import (  # noqa: E402
    CompositionError,
    DaskExecutor,
    LocalExecutor,
    MemoryStateStore,
    PipelineError,
    PipelineRegistry,
    RunContext,
    RunStatus,
    create_el_pipeline,
    create_file_loader,
    create_parallel_pipeline,
)

# The workers import ductwork, but not this test module: ship its functions by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    with distributed.LocalCluster(
        processes=True,
        n_workers=2,
        threads_per_worker=1,
        dashboard_address=None,
        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},  # no fixed port to collide on
        host="127.0.0.1",
    ) as local:
        yield local


@pytest.fixture
async def executor(cluster: Any) -> AsyncIterator[DaskExecutor]:
    async with DaskExecutor(cluster.scheduler_address) as dask:
        yield dask


async def wait_for(path: Path, timeout: float = 60) -> None:
    with anyio.fail_after(timeout):
        while not path.exists():
            await anyio.sleep(0.02)


def day_pipeline(folder: Path, *, fail_on: str | None = None) -> Any:
    async def extract(ctx: RunContext) -> AsyncIterator[list[dict[str, Any]]]:
        assert ctx.window is not None
        day = f"{ctx.window.start:%Y-%m-%d}"
        if day == fail_on:
            raise ValueError(f"no data for {day}")
        yield [{"day": day, "n": n} for n in range(3)]

    def pid(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        (folder / f"pid-{batch[0]['day']}").write_text(str(os.getpid()))
        return batch

    from ductwork import create_etl_pipeline

    return create_etl_pipeline(
        extract, [pid], create_file_loader(folder / "{date}.jsonl"), "days", logging=False
    )


async def backfill_with(executor: Any, folder: Path, **options: Any) -> Any:
    registry = PipelineRegistry(state=MemoryStateStore())
    registry.register_pipeline("days", day_pipeline(folder, **options), timescope="daily")
    progress: list[tuple[int, int, int]] = []
    outcome = await registry.backfill(
        "days",
        "2024-01-01",
        "2024-01-13",
        executor=executor,
        max_workers=4,
        raise_on_failure=False,
        on_progress=lambda o: progress.append((len(o.succeeded), len(o.running), len(o.failed))),
    )
    # Live progress: every window started and ended once, at most 4 ran at a time.
    assert len(progress) == 1 + 2 * 12
    assert max(running for _, running, _ in progress) <= 4
    assert progress[-1] == (len(outcome.succeeded), 0, len(outcome.failed))
    return registry, outcome


async def test_a_backfill_on_the_cluster_matches_the_local_one(
    executor: DaskExecutor, tmp_path: Path
) -> None:
    local_dir, dask_dir = tmp_path / "local", tmp_path / "dask"
    local_dir.mkdir()
    dask_dir.mkdir()
    local_registry, local = await backfill_with(LocalExecutor(), local_dir)
    dask_registry, remote = await backfill_with(executor, dask_dir)

    assert len(remote.windows) == 12
    assert len(remote.succeeded) == 12
    outputs = sorted(p.name for p in dask_dir.glob("*.jsonl"))
    assert outputs == sorted(p.name for p in local_dir.glob("*.jsonl"))
    for name in outputs:
        assert (dask_dir / name).read_text() == (local_dir / name).read_text()
    for ours, theirs in zip(local.windows, remote.windows, strict=True):
        assert (ours.window, ours.status) == (theirs.window, theirs.status)
        assert (ours.result.records_in, ours.result.records_out) == (
            theirs.result.records_in,
            theirs.result.records_out,
        )
        assert [s.name for s in ours.result.stages] == [s.name for s in theirs.result.stages]
    local_history = await local_registry.history("days", None)
    dask_history = await dask_registry.history("days", None)
    keys = ("status", "window_start", "window_end", "trigger", "records_out")
    assert sorted(tuple(r.get(k) for k in keys) for r in dask_history) == sorted(
        tuple(r.get(k) for k in keys) for r in local_history
    )
    pids = {int(p.read_text()) for p in dask_dir.glob("pid-*")}
    assert os.getpid() not in pids
    assert pids <= set(executor.worker_pids.values())
    assert {int(p.read_text()) for p in local_dir.glob("pid-*")} == {os.getpid()}
    # Resumable as locally: the windows that succeeded are skipped.
    again = await dask_registry.backfill("days", "2024-01-01", "2024-01-13", executor=executor)
    assert len(again.skipped) == 12


async def test_a_failing_window_is_reported_with_its_error(
    executor: DaskExecutor, tmp_path: Path
) -> None:
    registry, outcome = await backfill_with(executor, tmp_path, fail_on="2024-01-05")
    assert len(outcome.succeeded) == 11
    (failed,) = outcome.failed
    assert f"{failed.window.start:%Y-%m-%d}" == "2024-01-05"
    error = failed.error
    assert isinstance(error, PipelineError)
    assert error.stage == "extract"
    assert isinstance(error.__cause__, ValueError)
    assert str(error.__cause__) == "no data for 2024-01-05"
    assert error.result is failed.result
    assert failed.result.error_stage == "extract"
    history = await registry.history("days", None)
    assert sum(r["status"] == "failed" for r in history) == 1
    assert not list(tmp_path.glob("2024-01-05*"))


def one_row(name: str, *, fail: bool = False) -> Any:
    async def extract(ctx: RunContext) -> AsyncIterator[list[dict[str, Any]]]:
        if fail:
            raise KeyError(name)
        yield [{"name": name, "pid": os.getpid()}]

    return create_el_pipeline(extract, lambda batch: None, name, logging=False)


@pytest.mark.parametrize("error_handling", ["continue", "ignore"])
async def test_a_parallel_composition_on_the_cluster(
    executor: DaskExecutor, error_handling: str
) -> None:
    children = [one_row("a"), one_row("b", fail=True), one_row("c")]
    both = create_parallel_pipeline(
        children, max_workers=2, error_handling=error_handling, executor=executor, logging=False
    )
    if error_handling == "continue":
        with pytest.raises(CompositionError) as caught:
            await both.run()
        result = caught.value.result
        assert isinstance(caught.value.__cause__, PipelineError)
        assert isinstance(caught.value.__cause__.__cause__, KeyError)
    else:
        result = await both.run()
        assert result.status is RunStatus.SUCCEEDED
    assert result is not None
    statuses = [child.status for child in result.children]
    assert statuses == [RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.SUCCEEDED]
    assert result.records_out == 2
    assert set(executor.worker_pids.values()).isdisjoint({os.getpid()})


def blocking(folder: Path, name: str) -> Any:
    async def extract(ctx: RunContext) -> AsyncIterator[list[dict[str, Any]]]:
        (folder / f"{name}.started").write_text(str(os.getpid()))
        try:
            while True:
                await anyio.sleep(0.02)
                yield []
        finally:
            (folder / f"{name}.stopped").write_text("")

    return create_el_pipeline(extract, lambda batch: None, name, logging=False)


async def test_cancelling_the_caller_stops_the_run_on_the_worker(
    executor: DaskExecutor, tmp_path: Path
) -> None:
    pipeline = blocking(tmp_path, "forever")
    composition = create_parallel_pipeline([pipeline], executor=executor, logging=False)
    async with anyio.create_task_group() as tg:
        tg.start_soon(composition.run)
        await wait_for(tmp_path / "forever.started")
        tg.cancel_scope.cancel()
    await wait_for(tmp_path / "forever.stopped")
    client = await executor.client()
    with anyio.fail_after(10):
        while client.futures:
            await anyio.sleep(0.02)


async def test_fail_fast_cancels_the_other_children_on_the_cluster(
    executor: DaskExecutor, tmp_path: Path
) -> None:
    async def fail_after_start(ctx: RunContext) -> AsyncIterator[list[dict[str, Any]]]:
        with anyio.fail_after(60):
            while not (tmp_path / "slow.started").exists():
                await anyio.sleep(0.02)
        raise KeyError("boom")
        yield []

    failing = create_el_pipeline(fail_after_start, lambda batch: None, "fails", logging=False)
    composition = create_parallel_pipeline(
        [blocking(tmp_path, "slow"), failing], executor=executor, logging=False
    )
    with pytest.raises(CompositionError) as caught:
        await composition.run()
    assert caught.value.result is not None
    statuses = [child.status for child in caught.value.result.children]
    assert statuses == [RunStatus.CANCELLED, RunStatus.FAILED]
    await wait_for(tmp_path / "slow.stopped")


def killable(folder: Path) -> Any:
    async def extract(ctx: RunContext) -> AsyncIterator[list[dict[str, Any]]]:
        assert ctx.window is not None
        day = f"{ctx.window.start:%Y-%m-%d}"
        yield [{"day": day, "n": n} for n in range(5)]
        if day == "2024-01-03":
            attempt = len(list(folder.glob("attempt-*")))
            (folder / f"attempt-{attempt}").write_text(str(os.getpid()))
            with anyio.fail_after(60):
                while not (folder / "go").exists():
                    await anyio.sleep(0.02)
        yield [{"day": day, "n": 5}]

    return create_el_pipeline(extract, create_file_loader(folder / "{date}.jsonl"), "k")


async def test_a_killed_worker_has_its_window_rerun(executor: DaskExecutor, tmp_path: Path) -> None:
    registry = PipelineRegistry(state=MemoryStateStore())
    registry.register_pipeline("k", killable(tmp_path), timescope="daily")

    async def kill_then_go() -> None:
        await wait_for(tmp_path / "attempt-0")
        with anyio.fail_after(60):  # the attempt's output is open: a temporary file to leave
            while not list(tmp_path.glob(".2024-01-03.jsonl.*.tmp")):
                await anyio.sleep(0.02)
        os.kill(int((tmp_path / "attempt-0").read_text()), signal.SIGKILL)
        await wait_for(tmp_path / "attempt-1")
        (tmp_path / "go").write_text("")

    async with anyio.create_task_group() as tg:
        tg.start_soon(kill_then_go)
        outcome = await registry.backfill(
            "k", "2024-01-01", "2024-01-07", executor=executor, max_workers=2
        )
    assert len(outcome.succeeded) == 6
    # The killed attempt never renamed its temporary file, and the re-run removed it (its
    # writer's lock died with the worker): the outputs and nothing else.
    names = [p.name for p in tmp_path.iterdir() if not p.name.startswith(("attempt", "go"))]
    assert sorted(names) == [f"2024-01-0{d}.jsonl" for d in range(1, 7)]
    for d in range(1, 7):
        text = (tmp_path / f"2024-01-0{d}.jsonl").read_text()
        rows = [json.loads(line) for line in text.splitlines()]
        assert [r["n"] for r in rows] == list(range(6))
    assert int((tmp_path / "attempt-1").read_text()) != int((tmp_path / "attempt-0").read_text())


def counting(*, fail: bool = False) -> Any:
    async def extract(ctx: RunContext) -> AsyncIterator[list[dict[str, Any]]]:
        assert ctx.state is not None
        seen = await ctx.state.get("cursor", 0, pipeline="counter")
        await ctx.state.set("cursor", seen + 1, pipeline="counter")
        if fail:
            raise ValueError("after the write")
        yield [{"seen": seen}]

    return create_el_pipeline(extract, lambda batch: None, "counter", logging=False)


async def test_state_stays_with_the_caller(executor: DaskExecutor) -> None:
    store = MemoryStateStore()
    await store.set("cursor", 41, pipeline="counter")
    registry = PipelineRegistry(state=store)
    registry.register_pipeline("counter", counting())
    registry.register_pipeline("broken", counting(fail=True))
    result = await registry.run("counter", executor=executor)
    assert result.records_out == 1
    assert await store.get("cursor", pipeline="counter") == 42
    with pytest.raises(PipelineError) as caught:
        await registry.run("broken", executor=executor)
    assert isinstance(caught.value.__cause__, ValueError)
    assert await store.get("cursor", pipeline="counter") == 42  # not committed: the run failed
    assert [r["status"] for r in await registry.history("broken")] == ["failed"]


def test_errors_cross_the_wire_with_their_type_attributes_and_chain() -> None:
    import pickle

    from ductwork import RunResult, TypeConversionError
    from ductwork.core.dask_executor import _dumps

    result = RunResult(name="p", run_id="r", status=RunStatus.FAILED)
    try:
        try:
            raise OSError(5, "disk")
        except OSError as low:
            raise TypeConversionError("bad", column="n", value="x", position=3) from low
    except TypeConversionError as exc:
        exc.pipeline, exc.stage, exc.result = "p", "transform", result
        result.error = exc
    back = pickle.loads(_dumps(result))
    error = back.error
    assert type(error) is TypeConversionError
    assert (error.column, error.value, error.position) == ("n", "x", 3)
    assert (error.pipeline, error.stage, error.retryable) == ("p", "transform", False)
    assert str(error) == str(result.error)
    assert error.result is back
    assert type(error.__cause__) is OSError
    assert error.__cause__.errno == 5


async def test_the_worker_state_reads_from_the_caller_and_keeps_its_writes() -> None:
    from ductwork.core.dask_executor import _commit, _WorkerState

    asked: list[tuple[str, str | None]] = []
    caller = {("p", "cursor"): 7}

    def ask(key: str, pipeline: str | None) -> tuple[bool, Any]:
        asked.append((key, pipeline))
        found = (pipeline, key) in caller
        return found, caller.get((pipeline, key))

    state = _WorkerState(ask)
    assert await state.get("cursor", pipeline="p") == 7
    assert await state.get("other", "none") == "none"
    assert await state.update("cursor", lambda v: v + 1, pipeline="p") == 8
    await state.delete("other")
    await state.append_run("p", {"status": "succeeded"})
    assert await state.list_runs("p") == []
    assert asked == [("cursor", "p"), ("other", None)]  # each key asked once
    store = MemoryStateStore()
    await store.set("other", 1)
    await _commit(store, state.writes)
    assert await store.get("cursor", pipeline="p") == 8
    assert await store.get("other") is None
    assert [r["status"] for r in await store.list_runs("p")] == ["succeeded"]


async def test_the_executor_checks_what_it_is_given(cluster: Any) -> None:
    with pytest.raises(TypeError, match=r"scheduler address or a distributed\.Client"):
        DaskExecutor(8786)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="retries"):
        DaskExecutor("tcp://127.0.0.1:1", retries=-1)
    async with distributed.Client(
        cluster.scheduler_address, asynchronous=True, set_as_default=False
    ) as client:
        executor = DaskExecutor(client)
        assert "DaskExecutor(" in repr(executor)
        await executor.aclose()
        assert client.status != "closed"  # a client passed in is left open
    assert repr(LocalExecutor()) == "LocalExecutor()"


def flaky(folder: Path) -> Any:
    async def extract(ctx: RunContext) -> AsyncIterator[list[dict[str, Any]]]:
        attempts = len(list(folder.glob("try-*")))
        (folder / f"try-{attempts}").write_text(str(os.getpid()))
        if attempts == 0:
            raise PipelineError("the source is not ready", retryable=True)
        if attempts == 1:
            raise PipelineError("the source is broken", retryable=False)
        yield [{"n": 1}]

    return create_el_pipeline(extract, lambda batch: None, "flaky", logging=False)


async def test_retryable_failures_are_submitted_again_with_backoff(
    cluster: Any, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="factor"):
        DaskExecutor(cluster.scheduler_address, backoff_factor=-1)
    async with DaskExecutor(
        cluster.scheduler_address, retries=3, backoff_factor=0.0, max_backoff=0.0
    ) as dask:
        registry = PipelineRegistry(state=MemoryStateStore())
        registry.register_pipeline("flaky", flaky(tmp_path))
        with pytest.raises(PipelineError) as caught:
            await registry.run("flaky", executor=dask)
    # The retryable failure was submitted again; the second one is not retryable: it stays.
    assert sorted(p.name for p in tmp_path.glob("try-*")) == ["try-0", "try-1"]
    assert str(caught.value.__cause__ or caught.value).endswith("the source is broken")
    assert [r["status"] for r in await registry.history("flaky")] == ["failed"]


def overlapping(folder: Path, name: str) -> Any:
    async def extract(ctx: RunContext) -> AsyncIterator[list[dict[str, Any]]]:
        mark = folder / f"running-{name}"
        mark.write_text("")
        try:
            peak = 0
            for _ in range(10):  # long enough for a second child to start, if one may
                peak = max(peak, len(list(folder.glob("running-*"))))
                await anyio.sleep(0.05)
            (folder / f"seen-{name}").write_text(str(peak))
            yield [{"name": name}]
        finally:
            mark.unlink()

    return create_el_pipeline(extract, lambda batch: None, name, logging=False)


async def test_max_workers_bounds_the_children_on_the_cluster(
    executor: DaskExecutor, tmp_path: Path
) -> None:
    children = [overlapping(tmp_path, name) for name in "abc"]
    both = create_parallel_pipeline(children, max_workers=1, executor=executor, logging=False)
    result = await both.run()
    assert result.records_out == 3
    assert {int((tmp_path / f"seen-{name}").read_text()) for name in "abc"} == {1}

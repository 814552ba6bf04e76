"""State stores: scoped values, atomic updates, run history, crash safety of the JSON file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest

from ductwork import (
    ConfigError,
    JsonFileStateStore,
    MemoryStateStore,
    RunResult,
    RunStatus,
    SqliteStateStore,
    StateStore,
    TimeWindow,
)
from ductwork.state import SUCCEEDED_WINDOWS_KEY, record_run, run_record, succeeded_windows

StoreFactory = Callable[[], StateStore]


@pytest.fixture(params=["memory", "json", "sqlite"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    if request.param == "memory":
        store = MemoryStateStore(max_runs=5)
        return lambda: store
    if request.param == "sqlite":
        return lambda: SqliteStateStore(tmp_path / "state" / "state.db", max_runs=5)
    return lambda: JsonFileStateStore(tmp_path / "state" / "state.json", max_runs=5)


async def test_both_stores_satisfy_the_protocol(tmp_path: Path) -> None:
    assert isinstance(MemoryStateStore(), StateStore)
    assert isinstance(JsonFileStateStore(tmp_path / "s.json"), StateStore)
    assert isinstance(SqliteStateStore(tmp_path / "s.db"), StateStore)


async def test_values_are_scoped_per_pipeline(make_store: StoreFactory) -> None:
    store = make_store()
    await store.set("cursor", 1)
    await store.set("cursor", 2, pipeline="orders")
    await store.set("cursor", 3, pipeline="users")
    assert await store.get("cursor") == 1
    assert await store.get("cursor", pipeline="orders") == 2
    assert await store.get("cursor", pipeline="users") == 3
    assert await store.get("missing", "dflt", pipeline="orders") == "dflt"

    await store.delete("cursor", pipeline="orders")
    assert await store.get("cursor", pipeline="orders") is None
    assert await store.get("cursor", pipeline="users") == 3
    await store.delete("never-set", pipeline="orders")  # no error


async def test_values_are_json_copies(make_store: StoreFactory) -> None:
    store = make_store()
    value = {"ids": [1, 2], "when": "2024-01-01"}
    await store.set("v", value)
    value["ids"].append(3)
    read = await store.get("v")
    assert read == {"ids": [1, 2], "when": "2024-01-01"}
    read["ids"].append(4)
    assert await store.get("v") == {"ids": [1, 2], "when": "2024-01-01"}


async def test_unserialisable_value_is_refused_and_nothing_changes(
    make_store: StoreFactory,
) -> None:
    store = make_store()
    await store.set("v", 1)
    with pytest.raises(TypeError):
        await store.set("v", object())
    assert await store.get("v") == 1


async def test_update_is_atomic_under_concurrent_runs(make_store: StoreFactory) -> None:
    store = make_store()

    async def bump() -> None:
        for _ in range(10):
            await store.update("count", lambda n: n + 1, default=0, pipeline="p")
            await anyio.sleep(0)

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(bump)
    assert await store.get("count", pipeline="p") == 200


async def test_update_returns_the_new_value(make_store: StoreFactory) -> None:
    store = make_store()
    assert await store.update("xs", lambda xs: [*xs, "a"], default=[]) == ["a"]
    assert await store.update("xs", lambda xs: [*xs, "b"], default=[]) == ["a", "b"]


async def test_run_history_is_newest_first_limited_and_bounded(make_store: StoreFactory) -> None:
    store = make_store()
    for i in range(8):
        await store.append_run("orders", {"run_id": f"r{i}", "status": "succeeded"})
    await store.append_run("other", {"run_id": "x"})
    runs = await store.list_runs("orders")
    assert [r["run_id"] for r in runs] == ["r7", "r6", "r5", "r4", "r3"]  # max_runs=5
    assert [r["run_id"] for r in await store.list_runs("orders", limit=2)] == ["r7", "r6"]
    assert await store.list_runs("orders", limit=0) == []
    assert await store.list_runs("nobody") == []
    with pytest.raises(ConfigError, match="limit"):
        await store.list_runs("orders", limit=-1)


def test_max_runs_is_validated(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="max_runs"):
        MemoryStateStore(max_runs=0)
    with pytest.raises(ConfigError, match="max_runs"):
        JsonFileStateStore(tmp_path / "s.json", max_runs=-3)


async def test_json_file_persists_and_is_readable(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "state.json"
    store = JsonFileStateStore(path)
    await store.set("cursor", "2024-05-01", pipeline="orders")
    await store.append_run("orders", {"run_id": "r1"})
    doc = orjson.loads(path.read_bytes())
    assert doc == {
        "format": 1,
        "values": {"orders": {"cursor": "2024-05-01"}},
        "runs": {"orders": [{"run_id": "r1"}]},
    }
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]  # no temp files left


async def test_json_file_sees_changes_made_by_another_process(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    store = JsonFileStateStore(path)
    await store.set("cursor", 1)
    code = (
        "import anyio, sys\n"
        "from ductwork import JsonFileStateStore\n"
        "anyio.run(JsonFileStateStore(sys.argv[1]).set, 'cursor', 2)\n"
    )
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, timeout=30)
    assert await store.get("cursor") == 2
    await store.update("cursor", lambda n: n + 1)
    assert orjson.loads(path.read_bytes())["values"][""]["cursor"] == 3


async def test_two_instances_on_one_path_lose_no_updates(tmp_path: Path) -> None:
    first = JsonFileStateStore(tmp_path / "state.json")
    second = JsonFileStateStore(tmp_path / "." / "state.json")

    async def bump(store: JsonFileStateStore) -> None:
        for _ in range(25):
            await store.update("n", lambda n: n + 1, default=0)

    async with anyio.create_task_group() as tg:
        tg.start_soon(bump, first)
        tg.start_soon(bump, second)
    assert await first.get("n") == 50
    assert await JsonFileStateStore(tmp_path / "state.json").get("n") == 50


def test_json_file_is_safe_across_event_loops_in_threads(tmp_path: Path) -> None:
    path = tmp_path / "state.json"

    def worker() -> None:
        async def bump() -> None:
            store = JsonFileStateStore(path)
            for _ in range(20):
                await store.update("n", lambda n: n + 1, default=0)

        anyio.run(bump)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert orjson.loads(path.read_bytes())["values"][""]["n"] == 80


async def test_failed_write_keeps_the_previous_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "state.json"
    store = JsonFileStateStore(path)
    await store.set("cursor", "old")
    before = path.read_bytes()

    def crash(src: Any, dst: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        await store.set("cursor", "new")
    monkeypatch.undo()

    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]
    assert await store.get("cursor") == "old"  # the copy in memory was not left ahead of the file
    await store.set("cursor", "newer")
    assert await JsonFileStateStore(path).get("cursor") == "newer"


_WRITER = """
import anyio, sys
from ductwork import JsonFileStateStore

async def main():
    store = JsonFileStateStore(sys.argv[1])
    i = 0
    while True:
        i += 1
        # a payload large enough that each write takes a while
        await store.set("counter", {"i": i, "pad": [i] * 20000}, pipeline="p")
        if i == 3:
            print("ready", flush=True)

anyio.run(main)
"""


@pytest.mark.parametrize("delay", [0.05, 0.15, 0.25, 0.35])
def test_state_file_survives_a_kill_in_the_middle_of_writes(tmp_path: Path, delay: float) -> None:
    path = tmp_path / "state.json"
    with subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, text=True
    ) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
            time.sleep(delay)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    value = anyio.run(lambda: JsonFileStateStore(path).get("counter", pipeline="p"))
    assert value["i"] >= 3
    assert value["pad"] == [value["i"]] * 20000  # a whole, consistent value, never a torn one


async def test_corrupt_state_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"format": 1, "values": {')
    with pytest.raises(ValueError, match=r"broken\.json is not valid JSON"):
        await JsonFileStateStore(path).get("x")
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="does not hold a JSON object"):
        await JsonFileStateStore(path).get("x")


async def test_flat_legacy_file_is_read_as_global_values(tmp_path: Path) -> None:
    path = tmp_path / "flat.json"
    path.write_text('{"cursor": 41}')
    store = JsonFileStateStore(path)
    assert await store.get("cursor") == 41
    await store.update("cursor", lambda n: n + 1)
    assert orjson.loads(path.read_bytes())["values"] == {"": {"cursor": 42}}


def _result(status: RunStatus, name: str = "orders") -> RunResult:
    now = datetime(2024, 1, 1, tzinfo=UTC)
    return RunResult(name=name, run_id="r1", status=status, started_at=now, ended_at=now)


def test_run_record_holds_the_result_window_and_params() -> None:
    window = TimeWindow(datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 2, tzinfo=UTC))
    record = run_record(
        "orders_daily",
        _result(RunStatus.SUCCEEDED),
        window=window,
        params={"limit": 5, "since": datetime(2024, 1, 1, tzinfo=UTC)},
        trigger="schedule",
    )
    assert record["pipeline"] == "orders_daily"
    assert record["name"] == "orders"
    assert record["status"] == "succeeded"
    assert record["window"] == {
        "start": "2024-01-01T00:00:00+00:00",
        "end": "2024-01-02T00:00:00+00:00",
    }
    assert record["params"] == {"limit": 5, "since": "2024-01-01T00:00:00+00:00"}
    assert record["trigger"] == "schedule"
    assert orjson.loads(orjson.dumps(record)) == record


async def test_record_run_merges_succeeded_windows(make_store: StoreFactory) -> None:
    store = make_store()
    day = timedelta(days=1)
    base = datetime(2024, 1, 1, tzinfo=UTC)

    def window(i: int) -> TimeWindow:
        return TimeWindow(base + i * day, base + (i + 1) * day)

    for i in (3, 0, 1, 5):
        await record_run(store, "p", _result(RunStatus.SUCCEEDED), window=window(i))
    await record_run(store, "p", _result(RunStatus.FAILED), window=window(4))
    await record_run(store, "p", _result(RunStatus.SUCCEEDED))  # no window: nothing to merge

    spans = await succeeded_windows(store, "p")
    assert spans == [
        TimeWindow(base, base + 2 * day),
        TimeWindow(base + 3 * day, base + 4 * day),
        TimeWindow(base + 5 * day, base + 6 * day),
    ]
    await record_run(store, "p", _result(RunStatus.SUCCEEDED), window=window(2))
    await record_run(store, "p", _result(RunStatus.SUCCEEDED), window=window(4))
    assert await succeeded_windows(store, "p") == [TimeWindow(base, base + 6 * day)]
    assert len(await store.get(SUCCEEDED_WINDOWS_KEY, pipeline="p")) == 1
    assert len(await store.list_runs("p", limit=None)) == 5  # max_runs=5 of the 8 records


class ForwardingStore:
    """A third-party store: implements the protocol without being one of the shipped classes."""

    def __init__(self) -> None:
        self.inner = MemoryStateStore()
        self.calls: list[str] = []

    async def get(self, key: str, default: Any = None, *, pipeline: str | None = None) -> Any:
        return await self.inner.get(key, default, pipeline=pipeline)

    async def set(self, key: str, value: Any, *, pipeline: str | None = None) -> None:
        await self.inner.set(key, value, pipeline=pipeline)

    async def delete(self, key: str, *, pipeline: str | None = None) -> None:
        await self.inner.delete(key, pipeline=pipeline)

    async def update(
        self, key: str, fn: Any, *, default: Any = None, pipeline: str | None = None
    ) -> Any:
        self.calls.append("update")
        return await self.inner.update(key, fn, default=default, pipeline=pipeline)

    async def append_run(self, pipeline: str, record: Any) -> None:
        self.calls.append("append_run")
        await self.inner.append_run(pipeline, record)

    async def list_runs(self, pipeline: str, limit: int | None = 20) -> list[dict[str, Any]]:
        return await self.inner.list_runs(pipeline, limit)


async def test_record_run_works_with_any_store() -> None:
    store = ForwardingStore()
    assert isinstance(store, StateStore)
    base = datetime(2024, 1, 1, tzinfo=UTC)
    first = TimeWindow(base, base + timedelta(hours=1))
    second = TimeWindow(base + timedelta(hours=1), base + timedelta(hours=2))
    await record_run(store, "p", _result(RunStatus.SUCCEEDED), window=first)
    await record_run(store, "p", _result(RunStatus.FAILED), window=second)
    await record_run(store, "p", _result(RunStatus.SUCCEEDED), window=second)
    assert store.calls == ["append_run", "update", "append_run", "append_run", "update"]
    assert await succeeded_windows(store, "p") == [TimeWindow(base, base + timedelta(hours=2))]
    assert [r["status"] for r in await store.list_runs("p")] == ["succeeded", "failed", "succeeded"]

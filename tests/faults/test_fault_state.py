"""Concurrent writers of the state: processes running side by side on one store never lose an
update or a history record; a corrupt state file is a ConfigError naming it before any run; a
killed writer's temporary files are cleaned up; the command line defaults to SQLite and takes
over an older JSON file."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import anyio
import orjson
import pytest

from ductwork import ConfigError, JsonFileStateStore, SqliteStateStore

WRITER = """
import sys, anyio
from ductwork import JsonFileStateStore, PipelineRegistry, SqliteStateStore, create_el_pipeline

path, runs, tag = sys.argv[1], int(sys.argv[2]), sys.argv[3]
kind = JsonFileStateStore if path.endswith(".json") else SqliteStateStore
store = kind(path, max_runs=10_000)

async def extract(ctx):
    await ctx.state.update("counter", lambda n: n + 1, default=0)
    yield [{"tag": tag}]

async def main():
    registry = PipelineRegistry(state=store)
    registry.register_pipeline("p", lambda: create_el_pipeline(extract, lambda b: None))
    sys.stdin.readline()  # both writers start together
    for _ in range(runs):
        await registry.run("p", params={"tag": tag})

anyio.run(main)
"""


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}


def run_writers(path: Path, runs: int) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), str(runs), tag],
            stdin=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env(),
        )
        for tag in ("a", "b")
    ]
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()[-3000:]


@pytest.mark.parametrize(("name", "runs"), [("state.db", 200), ("state.json", 60)])
async def test_two_processes_lose_no_update(tmp_path: Path, name: str, runs: int) -> None:
    path = tmp_path / name
    await anyio.to_thread.run_sync(run_writers, path, runs)
    store = SqliteStateStore(path) if name.endswith(".db") else JsonFileStateStore(path)
    assert await store.get("counter") == 2 * runs
    history = await store.list_runs("p", limit=None)
    assert len(history) == 2 * runs
    assert sorted(r["params"]["tag"] for r in history) == ["a"] * runs + ["b"] * runs


async def test_corrupt_files_are_config_errors_naming_them(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    db.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ConfigError, match=r"state\.db"):
        SqliteStateStore(db)
    js = tmp_path / "state.json"
    js.write_text('{"format": 1, "values": {')
    with pytest.raises(ConfigError, match=r"state\.json is not valid JSON"):
        JsonFileStateStore(js)


async def test_temp_files_of_a_killed_writer_are_removed_on_open(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    await JsonFileStateStore(path).set("x", 1)
    left = tmp_path / ".state.json.abc123.tmp"
    left.write_text('{"half": ')
    other = tmp_path / "unrelated.tmp"
    other.write_text("keep")
    # A fresh process opens the store: simulate by a new path spelling (a new backing).
    code = "import sys; from ductwork import JsonFileStateStore; JsonFileStateStore(sys.argv[1])"
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, env=env(), timeout=60)
    assert not left.exists()
    assert other.exists()
    assert orjson.loads(path.read_bytes())["values"][""]["x"] == 1


PIPELINES = textwrap.dedent(
    """
    from pathlib import Path
    from ductwork import create_el_pipeline

    async def rows(ctx):
        Path("ran").write_text("yes")
        yield [{"id": 1}]

    PIPELINE_REGISTRY = {"p": {"pipeline": lambda: create_el_pipeline(rows, lambda b: None)}}
    """
)


def ductwork(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    variables = {k: v for k, v in env().items() if k != "DUCTWORK_STATE"}
    return subprocess.run(
        [sys.executable, "-m", "ductwork", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env=variables,
        check=False,
    )


def project(tmp_path: Path) -> Path:
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "p_pipeline.py").write_text(PIPELINES)
    (tmp_path / ".ductwork").mkdir()
    return tmp_path


@pytest.mark.parametrize("name", ["state.db", "state.json"])
def test_a_corrupt_state_file_stops_the_command_before_the_run(tmp_path: Path, name: str) -> None:
    root = project(tmp_path)
    (root / ".ductwork" / name).write_bytes(b"\x00garbage{")
    done = ductwork(root, "run", "p", "--state", str(root / ".ductwork" / name))
    assert done.returncode == 2, done.stderr
    assert name in done.stderr
    assert not (root / "ran").exists()


def test_the_command_line_defaults_to_sqlite_and_migrates_json(tmp_path: Path) -> None:
    root = project(tmp_path)
    old = {
        "format": 1,
        "values": {"p": {"cursor": 41}},
        "runs": {"p": [{"run_id": "old", "status": "succeeded", "pipeline": "p"}]},
    }
    (root / ".ductwork" / "state.json").write_bytes(orjson.dumps(old))
    done = ductwork(root, "run", "p")
    assert done.returncode == 0, done.stderr
    assert (root / ".ductwork" / "state.db").exists()
    assert (root / ".ductwork" / "state.json.migrated").exists()
    assert not (root / ".ductwork" / "state.json").exists()

    async def read() -> tuple[object, list[str]]:
        store = SqliteStateStore(root / ".ductwork" / "state.db")
        runs = await store.list_runs("p")
        return await store.get("cursor", pipeline="p"), [r["run_id"] for r in runs]

    cursor, runs = anyio.run(read)
    assert cursor == 41
    assert len(runs) == 2
    assert runs[-1] == "old"
    history = ductwork(root, "history", "p")
    assert history.returncode == 0, history.stderr


SERVED = textwrap.dedent(
    """
    from ductwork import create_el_pipeline

    async def rows(ctx):
        await ctx.state.update("runs", lambda n: n + 1, default=0, pipeline="p")
        yield [{"id": 1}]

    def register_pipelines(registry):
        registry.register_pipeline("p", lambda: create_el_pipeline(rows, lambda b: None))
        registry.register_cron_job("p", "* * * * * *")
    """
)


def test_ductwork_run_beside_serve_shares_the_default_state(tmp_path: Path) -> None:
    import signal

    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "p_pipeline.py").write_text(SERVED)
    variables = {k: v for k, v in env().items() if k != "DUCTWORK_STATE"}
    serve = subprocess.Popen(
        [sys.executable, "-m", "ductwork", "serve", "--grace", "5"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=variables,
    )
    try:
        assert serve.stdout is not None
        for line in serve.stdout:  # the scheduler is up
            if line.startswith("serving"):
                break
        for _ in range(4):
            done = ductwork(tmp_path, "run", "p")
            assert done.returncode == 0, done.stderr
    finally:
        serve.send_signal(signal.SIGTERM)
        _, err = serve.communicate(timeout=30)
    assert serve.returncode in (0, 143), err

    async def read() -> tuple[object, int]:
        store = SqliteStateStore(tmp_path / ".ductwork" / "state.db")
        return await store.get("runs", pipeline="p"), len(await store.list_runs("p", None))

    counted, recorded = anyio.run(read)
    assert recorded >= 4  # four manual runs, and the scheduled ones that ran beside them
    assert counted == recorded


async def test_migrating_a_json_file_in_process(tmp_path: Path) -> None:
    from ductwork.state_sqlite import migrate_json_state

    legacy = tmp_path / "state.json"
    json_store = JsonFileStateStore(legacy)
    await json_store.set("cursor", {"at": 7}, pipeline="p")
    await json_store.append_run("p", {"run_id": "r1"})
    store = SqliteStateStore(tmp_path / "state.db")
    assert migrate_json_state(legacy, store) is True
    assert migrate_json_state(legacy, store) is False  # renamed: nothing left to migrate
    assert await store.get("cursor", pipeline="p") == {"at": 7}
    assert [r["run_id"] for r in await store.list_runs("p", limit=None)] == ["r1"]
    with pytest.raises(ConfigError, match="limit"):
        await store.list_runs("p", limit=-1)
    store.close()


def test_a_corrupt_json_file_is_not_hidden_by_a_half_made_database(tmp_path: Path) -> None:
    from ductwork.cli import open_state

    (tmp_path / "state.json").write_text("{broken")
    with pytest.raises(ConfigError, match=r"state\.json"):
        open_state(tmp_path / "state.db")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]
    assert isinstance(open_state(tmp_path / "other.json"), JsonFileStateStore)

"""``ductwork run`` and ``ductwork backfill --cluster``: discovered pipelines run on workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

distributed = pytest.importorskip("distributed")

MODULE = textwrap.dedent(
    '''
    """Pipelines that note the process they ran in."""
    import os
    from pathlib import Path

    from ductwork import create_el_pipeline

    async def one_day(ctx):
        day = f"{ctx.window.start:%Y-%m-%d}"
        if day == ctx.params.get("fail_day"):
            raise RuntimeError(f"no data for {day}")
        Path(ctx.params["out"], day).write_text(str(os.getpid()))
        yield [{"day": day}]

    async def discard(batch):
        pass

    def register_pipelines(registry):
        registry.register_pipeline(
            "days", lambda: create_el_pipeline(one_day, discard, name="days"), timescope="daily"
        )
    '''
)


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
def project(tmp_path: Path) -> Path:
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "days_pipeline.py").write_text(MODULE)
    (tmp_path / "out").mkdir()
    return tmp_path


def ductwork(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUCTWORK_")}
    env["DUCTWORK_PATH"] = str(project / "pipelines")
    env["DUCTWORK_STATE"] = str(project / "state.db")
    if args[0] in ("run", "backfill"):
        args = (*args, "--param", f"out={project / 'out'}")
    return subprocess.run(
        [sys.executable, "-m", "ductwork", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=project,
        timeout=60,
        check=False,
    )


def test_a_backfill_on_a_cluster_by_address(cluster: Any, project: Path) -> None:
    address = cluster.scheduler_address
    args = ("backfill", "days", "--start", "2024-03-01", "--end", "2024-03-07", "--workers", "3")
    done = ductwork(project, *args, "--cluster", address, "--progress")
    assert done.returncode == 0, done.stderr
    assert "6 daily windows: 6 succeeded, 0 failed, 0 skipped" in done.stdout
    status = [line for line in done.stderr.splitlines() if line.startswith("backfill days:")]
    assert len(status) == 6  # a line per finished window
    assert status[-1] == "backfill days: 6/6 done, 0 running, 0 failed"
    pids = {int(p.read_text()) for p in (project / "out").iterdir()}
    with distributed.Client(cluster) as client:
        workers = set(client.run(os.getpid).values())
    assert len(list((project / "out").iterdir())) == 6
    assert pids <= workers
    again = ductwork(project, *args, "--cluster", address)
    assert "6 daily windows: 0 succeeded, 0 failed, 6 skipped" in again.stdout
    history = ductwork(project, "history", "days", "--json")
    assert [r["trigger"] for r in json.loads(history.stdout)] == ["backfill"] * 6


def test_a_failed_window_on_a_cluster_exits_1(cluster: Any, project: Path) -> None:
    args = ("backfill", "days", "--start", "2024-03-01", "--end", "2024-03-04")
    done = ductwork(
        project, *args, "--cluster", cluster.scheduler_address, "--param", "fail_day=2024-03-02"
    )
    assert done.returncode == 1
    assert "3 daily windows: 2 succeeded, 1 failed, 0 skipped" in done.stdout
    assert "RuntimeError: no data for 2024-03-02" in done.stdout


def test_run_on_a_local_cluster_started_for_the_command(project: Path) -> None:
    done = ductwork(
        project, "run", "days", "--window", "2024-03-05", "--cluster", "local:2", "--json"
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "succeeded"
    (written,) = (project / "out").iterdir()
    assert written.name == "2024-03-05"
    assert int(written.read_text()) != os.getpid()


def test_a_bad_cluster_option_is_a_usage_error(project: Path) -> None:
    done = ductwork(project, "run", "days", "--cluster", "somewhere")
    assert done.returncode == 2
    assert "tcp://HOST:8786" in done.stderr

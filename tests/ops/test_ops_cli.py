"""``ductwork serve --http``: its options, its warning, the server stopping with the command."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from ops_helpers import sample, samples

from ductwork import cli
from ductwork.cli.serve import http_server

ROOT = Path(__file__).resolve().parents[2]

MODULE = textwrap.dedent(
    """
    from ductwork import create_el_pipeline

    async def extract(ctx):
        yield [{"n": n} for n in range(5)]

    async def load(batch):
        pass

    def register_pipelines(registry):
        registry.register_pipeline(
            "five", lambda: create_el_pipeline(extract, load, name="five"), "0 0 1 1 *"
        )
    """
)


def arguments(tmp_path: Path, *args: str) -> list[str]:
    """``args``, then ``--path`` and ``--state`` for a project of one pipeline, ``five``."""
    (tmp_path / "pipelines").mkdir(exist_ok=True)
    (tmp_path / "pipelines" / "five_pipeline.py").write_text(MODULE)
    return [*args, "--path", str(tmp_path / "pipelines"), "--state", str(tmp_path / "state.json")]


def command(tmp_path: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "ductwork", "serve", *arguments(tmp_path, *args)]


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUCTWORK_")}
    return {**env, "PYTHONPATH": str(ROOT / "src"), "PYTHONUNBUFFERED": "1", **extra}


def test_a_bad_address_is_a_usage_error(tmp_path: Path) -> None:
    done = subprocess.run(
        command(tmp_path, "--http", "localhost:web"),
        capture_output=True,
        text=True,
        env=environment(),
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert "expected HOST:PORT or a port number" in done.stderr


def test_serve_http_on_any_address_warns_and_stops_on_sigterm(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        command(tmp_path, "--http", "0.0.0.0:0", "--no-metrics", "--token", "cli-token-1234"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(),
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    try:
        line = ""
        deadline = time.monotonic() + 20
        while "dashboard on" not in line:
            assert time.monotonic() < deadline
            assert proc.poll() is None
            line = proc.stdout.readline()
        found = re.search(r"dashboard on http://0\.0\.0\.0:(\d+)/", line)
        assert found is not None, line
        assert "POST endpoints on" in line
        url = f"http://127.0.0.1:{found.group(1)}"
        auth = {"Authorization": "Bearer cli-token-1234"}
        with httpx.Client(base_url=url) as client:
            assert client.post("/api/jobs/five/trigger", headers=auth).status_code == 202
            while client.get("/api/jobs/five").json()["running"]:
                time.sleep(0.05)
            metrics = client.get("/metrics").text
        assert "ductwork_scheduler_running 1.0" in metrics
        assert "ductwork_runs_total{" not in metrics  # --no-metrics: runs are not counted
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "listening on 0.0.0.0: the dashboard and the read endpoints need no token" in err
    assert "stopped: 1 run(s): 1 succeeded" in out
    assert "cli-token-1234" not in out + err


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """The command configures the ``ductwork`` logger; put it back as it was."""
    logger = logging.getLogger("ductwork")
    handlers, level, propagate = logger.handlers[:], logger.level, logger.propagate
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)
    logger.propagate = propagate


def test_run_writes_a_metrics_file_and_exports_spans(
    tmp_path: Path, restore_logging: None, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    out = tmp_path / "metrics" / "five.prom"
    out.parent.mkdir()
    code = cli.main(
        arguments(tmp_path, "run", "five", "--metrics-file", str(out), "--otel", "--no-progress")
    )
    assert code == 0
    found = samples(out.read_text())
    assert sample(found, "ductwork_runs_total", pipeline="five", status="succeeded") == 1
    assert sample(found, "ductwork_stage_records_out_total", pipeline="five", stage="load") == 5
    assert list(out.parent.iterdir()) == [out]  # written atomically: no temporary file left
    captured = capsys.readouterr()
    assert "five (pipeline) · succeeded" in captured.out
    assert '"name": "pipeline five"' in captured.err  # the span, on stderr


def test_a_metrics_file_that_cannot_be_written_is_a_warning(
    tmp_path: Path, restore_logging: None, capsys: Any
) -> None:
    missing = str(tmp_path / "missing" / "x.prom")
    assert cli.main(arguments(tmp_path, "run", "five", "--metrics-file", missing)) == 0
    assert "could not write the metrics to" in capsys.readouterr().err


def test_the_server_serve_asks_for(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    parse = cli.build_parser().parse_args
    assert http_server(parse(["serve"])) is None
    monkeypatch.setenv("DUCTWORK_TOKEN", "from-the-environment")
    server = http_server(parse(["serve", "--http", "9000"]))
    assert server is not None
    assert server.url == "http://127.0.0.1:9000"
    assert server.config.token is not None
    assert server.config.token.get_secret_value() == "from-the-environment"
    assert server.config.metrics is True
    assert capsys.readouterr().err == ""
    given = http_server(parse(["serve", "--http", "[::]:0", "--token", "t", "--no-metrics"]))
    assert given is not None
    assert given.config.token is not None
    assert given.config.token.get_secret_value() == "t"
    assert given.config.metrics is False
    assert "listening on ::" in capsys.readouterr().err

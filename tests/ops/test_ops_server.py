"""The HTTP API, against the real uvicorn server on a free loopback port."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from ops_helpers import AUTH, TOKEN, serving

from ductwork import (
    Batch,
    ConfigError,
    MemoryStateStore,
    PipelineRegistry,
    RunContext,
    Scheduler,
    create_el_pipeline,
    open_scheduler,
)
from ductwork.ops import HttpServer

EVERY_SECOND = "* * * * * *"


async def wait_for(predicate: Callable[[], Any], timeout: float = 10.0) -> None:
    with anyio.fail_after(timeout):
        while not await predicate():
            await anyio.sleep(0.02)


async def numbers(ctx: RunContext) -> AsyncIterator[Batch]:
    for start in range(0, 30, 10):
        yield [{"n": n} for n in range(start, start + 10)]


def make_registry() -> PipelineRegistry:
    registry = PipelineRegistry(state=MemoryStateStore())
    registry.register_pipeline(
        "numbers",
        lambda: create_el_pipeline(numbers, lambda batch: None, name="numbers", logging=False),
        "0 0 1 1 *",  # once a year: runs come from the API
        timescope="daily",
        description="thirty numbers",
    )
    registry.register_cron_job(
        "numbers_hourly", "0 * * * *", "numbers", params={"region": "eu", "api_token": "s3cret"}
    )
    return registry


async def seeded(client: httpx.AsyncClient, job: str = "numbers", runs: int = 1) -> None:
    for _ in range(runs):
        response = await client.post(f"/api/jobs/{job}/trigger", headers=AUTH)
        assert response.status_code == 202, response.text

        async def idle() -> bool:
            body = (await client.get(f"/api/jobs/{job}")).json()
            return body["running"] == 0 and body["last_run"]["status"] == "succeeded"

        await wait_for(idle)


JOB_KEYS = {
    "name",
    "pipeline",
    "description",
    "schedule",
    "timezone",
    "timescope",
    "params",
    "enabled",
    "overlap",
    "state",
    "next_fire_time",
    "running",
    "queued",
    "last_run",
    "counts",
    "tick_lateness_seconds",
}
RUN_KEYS = {
    "name",
    "run_id",
    "kind",
    "status",
    "started_at",
    "ended_at",
    "duration_seconds",
    "records_in",
    "records_out",
    "attempts",
    "retries",
    "error",
    "error_stage",
    "detail",
    "stages",
    "children",
    "pipeline",
    "window",
    "params",
    "trigger",
    "recorded_at",
}
STAGE_KEYS = {
    "name",
    "kind",
    "records_in",
    "records_out",
    "batches_in",
    "batches_out",
    "busy_seconds",
    "wait_input_seconds",
    "wait_output_seconds",
    "metrics",
}


async def test_every_endpoint_and_its_json() -> None:
    async with serving(make_registry()) as (_scheduler, server, client):
        assert server.url.startswith("http://127.0.0.1:")
        assert server.port != 0
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {
            "status": "ready",
            "checks": {"scheduler": "running", "state_store": "ok"},
        }
        await seeded(client, runs=2)

        jobs = (await client.get("/api/jobs")).json()
        assert set(jobs) == {"scheduler", "jobs"}
        assert jobs["scheduler"]["state"] == "running"
        assert jobs["scheduler"]["runs_succeeded"] == 2
        assert [job["name"] for job in jobs["jobs"]] == ["numbers", "numbers_hourly"]
        for job in jobs["jobs"]:
            assert set(job) == JOB_KEYS
        job, hourly = jobs["jobs"]
        assert (job["schedule"], job["timezone"], job["timescope"]) == ("0 0 1 1 *", "UTC", "daily")
        assert job["state"] == "succeeded"
        assert job["enabled"] is True
        assert job["next_fire_time"].endswith("+00:00")
        assert job["counts"] == {
            "runs": 2,
            "succeeded": 2,
            "failed": 0,
            "cancelled": 0,
            "skipped_ticks": 0,
            "ticks": 0,
        }
        assert set(job["last_run"]) == {
            "run_id",
            "status",
            "fire_time",
            "started_at",
            "ended_at",
            "error",
        }
        assert hourly["params"] == {"region": "eu", "api_token": "***"}  # secret-looking: masked
        assert hourly["state"] == "idle"
        assert hourly["last_run"] is None

        one = (await client.get("/api/jobs/numbers")).json()
        assert set(one) == JOB_KEYS | {"recent_runs"}
        assert next(r["run_id"] for r in one["recent_runs"]) == job["last_run"]["run_id"]

        runs = (await client.get("/api/runs", params={"pipeline": "numbers", "limit": 1})).json()
        (run,) = runs["runs"]
        assert set(run) == RUN_KEYS
        assert (run["status"], run["trigger"], run["records_out"]) == ("succeeded", "manual", 30)
        assert [set(stage) for stage in run["stages"]] == [STAGE_KEYS, STAGE_KEYS]
        assert run["window"] is not None
        every = (await client.get("/api/runs")).json()["runs"]
        assert len(every) == 2
        assert every[0]["started_at"] >= every[1]["started_at"]

        single = (await client.get(f"/api/runs/numbers/{run['run_id']}")).json()
        assert single["run_id"] == run["run_id"]
        assert single["live"] is False

        metrics = await client.get("/metrics")
        assert metrics.headers["content-type"].startswith("text/plain")
        assert 'ductwork_runs_total{pipeline="numbers",status="succeeded"} 2.0' in metrics.text
        assert "ductwork_scheduler_running 1.0" in metrics.text
        assert "process_cpu_seconds_total" in metrics.text

        for path in ("/api/jobs/nope", "/api/runs?pipeline=nope", "/api/runs/numbers/nope"):
            response = await client.get(path)
            assert response.status_code == 404, path
            assert "error" in response.json()
        for limit in ("0", "x", "5000"):
            response = await client.get("/api/runs", params={"limit": limit})
            assert response.status_code == 400
        assert (await client.get("/no/such/page")).status_code == 404
        assert (await client.get("/api/jobs/numbers/trigger")).status_code == 405


async def test_trigger_needs_the_token() -> None:
    async with serving(make_registry()) as (scheduler, _, client):
        missing = await client.post("/api/jobs/numbers/trigger")
        wrong = await client.post(
            "/api/jobs/numbers/trigger", headers={"Authorization": "Bearer not-it"}
        )
        basic = await client.post(
            "/api/jobs/numbers/trigger", headers={"Authorization": f"Basic {TOKEN}"}
        )
        assert [r.status_code for r in (missing, wrong, basic)] == [401, 401, 401]
        assert missing.headers["www-authenticate"].startswith("Bearer")
        assert scheduler.job_status("numbers").runs == 0
        right = await client.post("/api/jobs/numbers/trigger", headers=AUTH)
        assert right.status_code == 202
        assert right.json()["triggered"] is True
        assert scheduler.job_status("numbers").runs == 1


async def test_enable_disable_and_overlap() -> None:
    release = anyio.Event()

    async def held(ctx: RunContext) -> AsyncIterator[Batch]:
        await release.wait()
        yield [{"n": 1}]

    registry = PipelineRegistry(state=MemoryStateStore())
    registry.register_pipeline(
        "held",
        lambda: create_el_pipeline(held, lambda b: None, name="held", logging=False),
        "0 0 1 1 *",
    )
    async with serving(registry) as (scheduler, _, client):
        off = await client.post("/api/jobs/held/disable", headers=AUTH)
        assert off.status_code == 200
        assert off.json()["job"]["enabled"] is False
        assert off.json()["job"]["state"] == "disabled"
        assert scheduler.job_status("held").next_fire_time is None
        on = await client.post("/api/jobs/held/enable", headers=AUTH)
        assert on.json()["job"]["enabled"] is True
        assert (await client.post("/api/jobs/held/trigger", headers=AUTH)).status_code == 202
        again = await client.post("/api/jobs/held/trigger", headers=AUTH)
        assert again.status_code == 409  # the default overlap policy skips it
        assert again.json()["job"]["counts"]["skipped_ticks"] == 1
        run_id = scheduler.job_status("held").last_run_id
        live = (await client.get(f"/api/runs/held/{run_id}")).json()
        assert live["live"] is True
        assert live["status"] == "running"
        assert (await client.post("/api/jobs/nope/trigger", headers=AUTH)).status_code == 404
        assert (await client.post("/api/jobs/held/explode", headers=AUTH)).status_code == 404
        release.set()


async def test_post_endpoints_are_off_without_a_token() -> None:
    async with serving(make_registry(), token=None) as (scheduler, _, client):
        for action in ("trigger", "enable", "disable"):
            response = await client.post(f"/api/jobs/numbers/{action}", headers=AUTH)
            assert response.status_code == 403
            assert "no token" in response.json()["error"]
        assert scheduler.job_status("numbers").runs == 0


async def test_no_secret_in_any_response() -> None:
    secret = "s3cret"  # the cron job's api_token parameter
    async with serving(make_registry()) as (_, _, client):
        await seeded(client, "numbers_hourly")
        run_id = (await client.get("/api/jobs/numbers_hourly")).json()["last_run"]["run_id"]
        paths = [
            "/",
            "/jobs/numbers_hourly",
            f"/runs/numbers/{run_id}",
            "/healthz",
            "/readyz",
            "/metrics",
            "/api/jobs",
            "/api/jobs/numbers_hourly",
            "/api/runs",
            f"/api/runs/numbers/{run_id}",
        ]
        responses = [await client.get(path) for path in paths]
        responses.append(
            await client.post("/api/jobs/numbers/trigger", headers={"Authorization": "Bearer x"})
        )
        responses.append(await client.post("/api/jobs/numbers/disable", headers=AUTH))
    for response in responses:
        assert response.status_code < 500
        everything = response.text + str(response.headers)
        assert TOKEN not in everything
        assert secret not in everything
    run = (responses[-3]).json()
    assert run["params"] == {"region": "eu", "api_token": "***"}


async def test_requests_must_name_a_loopback_host() -> None:
    async with serving(make_registry()) as (_, server, client):
        evil = await client.get("/api/jobs", headers={"Host": "evil.example"})
        assert evil.status_code == 400
        assert (
            await client.get("/api/jobs", headers={"Host": f"localhost:{server.port}"})
        ).status_code == 200


async def test_readyz_when_the_state_store_fails() -> None:
    class Broken(MemoryStateStore):
        async def list_runs(self, pipeline: str, limit: int | None = 20) -> list[dict[str, Any]]:
            raise OSError("disk gone")

    registry = make_registry()
    registry.state = Broken()
    async with serving(registry) as (_, _, client):
        response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["state_store"] == "unreachable: OSError: disk gone"


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


async def test_the_server_stops_with_the_scheduler() -> None:
    before = asyncio.all_tasks()
    async with httpx.AsyncClient() as outside:  # keeps its connection open across the shutdown
        async with serving(make_registry()) as (scheduler, server, client):
            await seeded(client)
            port = server.port
            assert listening(port)
            assert (await outside.get(f"{server.url}/api/jobs")).status_code == 200
        with pytest.raises(httpx.TransportError):
            await outside.get(f"{server.url}/api/jobs")
    assert scheduler.state == "closed"
    assert repr(server) == f"HttpServer('http://127.0.0.1:{port}', state='closed')"
    assert not listening(port)
    await anyio.sleep(0)
    assert asyncio.all_tasks() == before  # no task left behind
    with socket.create_server(("127.0.0.1", port)):  # the port is free again
        pass
    with pytest.raises(RuntimeError, match="serves once"):
        async with open_scheduler(make_registry(), http=server):
            pass


async def test_a_port_in_use_fails_the_scheduler_at_once() -> None:
    before = asyncio.all_tasks()
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        scheduler_block = open_scheduler(make_registry(), http=HttpServer(port))
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}"):
            async with scheduler_block:
                pytest.fail("the scheduler started")
    await anyio.sleep(0)
    assert asyncio.all_tasks() == before


def test_options_are_validated() -> None:
    assert HttpServer(9000).url == "http://127.0.0.1:9000"
    assert HttpServer("[::1]:9000").url == "http://[::1]:9000"
    with pytest.raises(ConfigError, match="listen"):
        HttpServer("localhost:http")
    with pytest.raises(ConfigError, match="did you mean 'token'"):
        HttpServer(8080, tokne="x")
    with pytest.raises(ConfigError, match="token"):
        HttpServer(8080, token="  ")
    with pytest.raises(ConfigError, match="http"):
        Scheduler(make_registry(), http="127.0.0.1:8080")  # a server object, not an address
    assert "s3cret" not in repr(HttpServer(8080, token="s3cret").config)


def test_the_extras_are_imported_only_when_used() -> None:
    code = """
import sys
import ductwork, ductwork.cli, ductwork.scheduler
from ductwork.ops import HttpServer, RunMetrics, enable_tracing
from ductwork.ops import auth, dashboard, metrics, routes, server, tracing, views
HttpServer("127.0.0.1:0", token="t0ken")
RunMetrics().install()()
loaded = sorted(
    name for name in sys.modules
    if name.split(".")[0] in ("prometheus_client", "starlette", "uvicorn", "opentelemetry")
)
print(loaded)
"""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout


def logging_setup() -> list[tuple[str, int, list[logging.Handler], bool, bool]]:
    names = ["", "uvicorn", "uvicorn.error", "uvicorn.access", "ductwork"]
    loggers = [logging.getLogger(name) for name in names]
    return [
        (name, lg.level, list(lg.handlers), lg.propagate, lg.disabled)
        for name, lg in zip(names, loggers, strict=True)
    ]


async def test_the_server_leaves_the_hosts_logging_and_signals_alone() -> None:
    before = logging_setup()
    handlers = [signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)]
    async with serving(make_registry()) as (_, _, client):
        assert (await client.get("/healthz")).status_code == 200
        during = logging_setup()
        assert [signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)] == handlers
    assert during == before
    assert logging_setup() == before

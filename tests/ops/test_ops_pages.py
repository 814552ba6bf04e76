"""The dashboard's pages as HTML: what they show, and every value escaped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
from ops_helpers import AUTH, serving

from ductwork import (
    MemoryStateStore,
    PipelineRegistry,
    RunContext,
    create_el_pipeline,
    create_retry_pipeline,
)
from ductwork.ops import dashboard

NOW = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)
SCHEDULER = {
    "state": "running",
    "started_at": (NOW - timedelta(hours=2)).isoformat(),
    "runs_in_flight": 0,
}
EVIL = "<script>alert(1)</script>"


def stage(name: str, busy: float, wait_in: float, wait_out: float) -> dict[str, Any]:
    return {
        "name": name,
        "kind": "extract",
        "records_in": 0,
        "records_out": 1200,
        "busy_seconds": busy,
        "wait_input_seconds": wait_in,
        "wait_output_seconds": wait_out,
        "metrics": {"http_requests": 3},
    }


def test_a_composition_run_page_shows_children_stages_and_errors() -> None:
    child = {
        "name": EVIL,
        "run_id": "c1",
        "kind": "pipeline",
        "status": "failed",
        "duration_seconds": 2.5,
        "records_in": 1200,
        "records_out": 0,
        "error": f"ExtractError: {EVIL}",
        "error_stage": "fetch",
        "attempts": 1,
        "stages": [stage("fetch", 2.0, 0.0, 0.5), stage("load", 0.1, 2.3, 0.0)],
        "children": [],
        "started_at": (NOW - timedelta(minutes=3)).isoformat(),
    }
    run = {
        "name": "nightly",
        "pipeline": "nightly",
        "run_id": "r1",
        "kind": "retry",
        "status": "failed",
        "duration_seconds": 3700.0,
        "records_in": 1200,
        "records_out": 0,
        "attempts": 2,
        "detail": "attempt 2 of 2",
        "error": "CompositionError: gave up",
        "window": {"start": "2026-11-09T00:00:00+00:00", "end": "2026-11-10T00:00:00+00:00"},
        "trigger": "schedule",
        "params": {"region": "eu"},
        "stages": [],
        "children": [child],
        "started_at": (NOW - timedelta(days=2)).isoformat(),
    }
    page = dashboard.run_page(run, SCHEDULER, live=False, refresh=5, now=NOW)
    assert EVIL not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert 'data-refresh="0"' in page  # a finished run does not refresh
    assert "attempt 2 of 2" in page
    assert "region=eu" in page
    assert "2d 0h ago" in page
    assert page.count('class="stage"') == 2
    assert page.count('class="bottleneck"') == 1
    assert "(stage fetch)" in page
    assert "http_requests 3" in page
    live = dashboard.run_page({**run, "status": "running"}, SCHEDULER, live=True, refresh=5)
    assert "in progress" in live
    assert 'data-refresh="5"' in live


def test_a_job_page_and_the_index_escape_everything() -> None:
    job = {
        "name": "j",
        "pipeline": EVIL,
        "description": EVIL,
        "schedule": "* * * * *",
        "timezone": "UTC",
        "timescope": None,
        "params": {"q": EVIL},
        "overlap": "skip",
        "state": "failed",
        "next_fire_time": (NOW + timedelta(seconds=30)).isoformat(),
        "running": 0,
        "queued": 0,
        "last_run": {
            "run_id": "r",
            "status": "failed",
            "started_at": NOW.isoformat(),
            "error": EVIL,
        },
        "counts": {"runs": 1, "succeeded": 0, "failed": 1, "cancelled": 0, "skipped_ticks": 0},
    }
    runs = [
        {
            "run_id": "r",
            "pipeline": EVIL,
            "status": "failed",
            "duration_seconds": 0.2,
            "records_in": 5,
            "records_out": 0,
            "error": EVIL,
            "trigger": "manual",
            "window": None,
            "started_at": NOW.isoformat(),
        }
    ]
    for page in (
        dashboard.job_page(job, runs, SCHEDULER, 5, now=NOW),
        dashboard.index_page([job], {EVIL: runs}, SCHEDULER, 5, now=NOW),
        dashboard.job_page({**job, "params": {}, "last_run": None}, [], SCHEDULER, 5, now=NOW),
        dashboard.not_found_page(EVIL, SCHEDULER),
    ):
        assert EVIL not in page
        assert '<script src="/static/dashboard.js" defer></script>' in page
    assert "in 30s" in dashboard.index_page([job], {}, SCHEDULER, 5, now=NOW)
    assert "no cron jobs" in dashboard.index_page([], {}, SCHEDULER, 5, now=NOW)


async def test_the_pages_over_http() -> None:
    async def numbers(ctx: RunContext) -> Any:
        yield [{"n": n} for n in range(3)]

    async def broken(ctx: RunContext) -> Any:
        raise ConnectionError("reset")
        yield []

    registry = PipelineRegistry(state=MemoryStateStore())
    registry.register_pipeline(
        "retried",
        lambda: create_retry_pipeline(
            create_el_pipeline(broken, lambda b: None, name="inner", logging=False),
            max_retries=1,
            backoff_factor=0.01,
            name="retried",
            logging=False,
        ),
        "0 0 1 1 *",
        description="always fails",
    )
    registry.register_pipeline(
        "numbers",
        lambda: create_el_pipeline(numbers, lambda b: None, name="numbers", logging=False),
        "0 0 1 1 *",
    )
    async with serving(registry) as (scheduler, _, client):
        assert (await client.post("/api/jobs/retried/trigger", headers=AUTH)).status_code == 202
        with anyio.fail_after(10):
            while scheduler.job_status("retried").running:
                await anyio.sleep(0.02)
        run_id = scheduler.job_status("retried").last_run_id
        pages = {
            path: await client.get(path)
            for path in (
                "/",
                "/jobs/retried",
                f"/runs/retried/{run_id}",
                "/jobs/nope",
                "/runs/retried/nope",
                "/runs/nope/x",
                "/static/dashboard.css",
                "/static/dashboard.js",
                "/favicon.ico",
            )
        }
    assert {path: r.status_code for path, r in pages.items()} == {
        "/": 200,
        "/jobs/retried": 200,
        f"/runs/retried/{run_id}": 200,
        "/jobs/nope": 404,
        "/runs/retried/nope": 404,
        "/runs/nope/x": 404,
        "/static/dashboard.css": 200,
        "/static/dashboard.js": 200,
        "/favicon.ico": 200,
    }
    index = pages["/"]
    assert index.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in index.headers["content-security-policy"]
    assert index.headers["x-content-type-options"] == "nosniff"
    run_page = pages[f"/runs/retried/{run_id}"].text
    assert run_page.count('class="child"') == 2  # the two attempts
    assert "ConnectionError: reset" in run_page
    assert pages["/static/dashboard.js"].headers["content-type"].startswith("text/javascript")

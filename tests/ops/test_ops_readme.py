"""The README's "Operating ductwork" section is true to the code: its metric table names every
metric ``/metrics`` serves (with its type and labels) and no other, its API table every endpoint
the server routes and no other, and its screenshots are committed under ``docs/``."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from ductwork import (
    MemoryStateStore,
    PipelineRegistry,
    RunResult,
    RunStatus,
    Scheduler,
    StageStats,
    create_el_pipeline,
    open_scheduler,
)
from ductwork.ops import RunMetrics, SchedulerMetrics
from ductwork.ops.auth import BearerToken
from ductwork.ops.metrics import collector_registry, metrics_text
from ductwork.ops.routes import ACTIONS, Routes

ROOT = Path(__file__).resolve().parents[2]
ASSETS = {"/static/dashboard.css", "/static/dashboard.js", "/static/icon.svg", "/favicon.ico"}


def section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("\n## Operating ductwork\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def table_rows(text: str, first_cell: str) -> list[list[str]]:
    """The cells of the table rows whose first cell starts with ``first_cell``."""
    rows = []
    for line in text.splitlines():
        if line.startswith(f"| {first_cell}"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def documented_metrics() -> set[tuple[str, str, frozenset[str]]]:
    found = set()
    for cells in table_rows(section(), "`ductwork_"):
        for name in re.findall(r"`([^`]+)`", cells[0]):
            metric, _, labels = name.partition("{")
            found.add((metric, cells[1], frozenset(filter(None, labels.rstrip("}").split(",")))))
    return found


def served_metrics(text: str) -> set[tuple[str, str, frozenset[str]]]:
    found = set()
    for family in text_string_to_metric_families(text):
        name = family.name + ("_total" if family.type == "counter" else "")
        labels = {key for sample in family.samples for key in sample.labels} - {"le", "quantile"}
        assert family.samples, f"{name} has no sample: the test does not exercise it"
        found.add((name, family.type, frozenset(labels)))
    return found


def a_result_with_every_counter() -> RunResult:
    started = datetime.now(UTC)
    return RunResult(
        "orders",
        "r1",
        status=RunStatus.FAILED,
        started_at=started,
        duration_seconds=0.5,
        error_stage="load",
        stages=[
            StageStats(
                "fetch",
                "extract",
                records_out=10,
                batches_out=1,
                metrics={"http_status_200": 2, "http_status_503": 1, "http_retries_503": 1},
            ),
            StageStats(
                "clean",
                "transform",
                records_in=10,
                records_out=8,
                batches_in=1,
                batches_out=1,
                metrics={"records_skipped": 1, "records_dropped": 1, "dead_letters": 1},
            ),
            StageStats(
                "load",
                "load",
                records_in=8,
                batches_in=1,
                metrics={"rows_inserted": 0},
            ),
        ],
    )


async def test_the_metric_table_names_every_metric_served() -> None:
    registry = PipelineRegistry(state=MemoryStateStore())
    registry.register_pipeline(
        "orders",
        lambda: create_el_pipeline(lambda ctx: iter([]), lambda batch: None, name="orders"),
        "0 0 1 1 *",
    )
    metrics = RunMetrics()
    metrics.observe(a_result_with_every_counter())
    async with open_scheduler(registry) as scheduler:
        text = metrics_text(collector_registry(metrics, SchedulerMetrics(scheduler)))
    served = served_metrics(text)
    documented = documented_metrics()
    assert len(documented) == len(table_rows(section(), "`ductwork_")) + 1  # batches in, out
    assert sorted(documented - served) == [], "in the README, not served"
    assert sorted(served - documented) == [], "served, not in the README"


def routed_endpoints() -> set[tuple[str, str]]:
    routes = Routes(
        Scheduler(PipelineRegistry(state=MemoryStateStore())),
        RunMetrics(),
        [],
        BearerToken(None),
        runs_shown=20,
        refresh_seconds=5,
    )
    found = set()
    for route in routes.app(["*"]).routes:
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)  # type: ignore[attr-defined]
        if path in ASSETS:
            continue
        for method in route.methods - {"HEAD"}:  # type: ignore[attr-defined]
            if path.endswith("/{action}"):
                found.update((method, path.replace("{action}", a)) for a in ACTIONS)
            else:
                found.add((method, path))
    return found


def documented_endpoints() -> set[tuple[str, str]]:
    found = set()
    for cells in table_rows(section(), "`GET ") + table_rows(section(), "`POST "):
        for endpoint in re.findall(r"`([^`]+)`", cells[0]):
            method, _, path = endpoint.partition(" ")
            found.add((method, path.split("?")[0]))
    return found


def test_the_api_table_names_every_endpoint_routed() -> None:
    documented, routed = documented_endpoints(), routed_endpoints()
    assert sorted(documented - routed) == [], "in the README, not routed"
    assert sorted(routed - documented) == [], "routed, not in the README"


def test_the_screenshots_are_committed_under_docs() -> None:
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", section())
    assert images == ["docs/dashboard.png", "docs/dashboard-run.png"]
    for image in images:
        assert (ROOT / image).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")

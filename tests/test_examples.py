"""Every example pipeline runs end to end and succeeds.

An example whose ``main`` takes ``clickhouse_url`` runs on the session's embedded ClickHouse
engine (chDB runs one data path per process; ``tests/connectors/test_clickhouse_embedded.py``
uses the same one) instead of its own under ``examples/output``.
"""

from __future__ import annotations

import csv
import inspect
import json
import sys
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from examples.__main__ import (  # noqa: E402
    describe,
    example_paths,
    load_example,
    logging_to,
    run_examples,
)

from ductwork import RunResult  # noqa: E402

PATHS = example_paths()


@pytest.fixture(scope="session")
def chdb_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The session's embedded engine: one data path for the whole process."""
    return f"chdb://{tmp_path_factory.getbasetemp() / 'chdb'}"


def test_there_are_examples() -> None:
    assert len(PATHS) >= 1


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
async def test_example_runs(path: Path, chdb_url: str) -> None:
    module = load_example(path)
    options: dict[str, Any] = {}
    if "clickhouse_url" in inspect.signature(module.main).parameters:
        options["clickhouse_url"] = chdb_url
    result = await module.main(**options)
    assert isinstance(result, RunResult)
    assert result.succeeded, result.summary()
    assert result.records_out > 0


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_every_example_says_in_one_line_what_it_shows(path: Path) -> None:
    shows, *expected = describe(load_example(path))
    assert shows.startswith("what it shows: ")
    assert len(shows) > len("what it shows: ") + 20
    assert shows.endswith(".")
    assert all(line.startswith("expected: ") for line in expected)


def test_the_demo_announces_expected_failures_and_keeps_log_lines_apart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "demo.log"
    with logging_to(log):
        failures = sum(run_examples(name) for name in ("big_orders", "composed", "http_pipeline"))
    out = capsys.readouterr().out
    assert failures == 0, out
    http = out[out.index("=== http_pipeline.py ===") :]
    assert http.splitlines()[1:3] == [
        "what it shows: Extract a paginated HTTP API, with retries and a rate limit, and load "
        "the records.",
        "expected: the API answers the first request with 503 Service Unavailable on purpose; "
        "the extractor retries it (the run summary counts http_status_503 1, http_retries 1)",
    ]
    gross = sum(round((10 + i * 2.5) * 1.2, 2) for i in range(45))
    assert f"  gross total (amount + 20% VAT): {gross:,.2f}\n" in http
    assert "  requests: 6 for 5 pages (1 answered 503 and retried)\n" in http
    assert "expected: the orders source fails once on purpose" in out
    assert "  revenue per country (paid orders):\n" in out
    assert "│ 216.00 │" in out  # money with two decimals
    assert "216.0 " not in out
    assert out.count("run summary:\n") == 3
    # the log lines went to the log file, none to the results
    logged = log.read_text()
    assert "run started: orders" in logged
    assert "failed (HTTP 503 Service Unavailable); retry 1 of 3" in logged
    assert "load_sources: attempt 1 of 4 failed" in logged
    for line in ("run started", "run succeeded", "retry 1 of 3", " INFO ", " ERROR "):
        assert line not in out


async def test_orders_example_totals_match_a_direct_computation() -> None:
    module = load_example(ROOT / "examples" / "orders_pipeline.py")
    revenue = module.RevenueByRegion()
    result = await module.main(revenue)

    expected: dict[str, float] = {}
    small = 0
    with open(ROOT / "examples" / "data" / "orders.jsonl") as fh:
        for line in fh:
            order = json.loads(line)
            total = round(order["quantity"] * order["unit_price"], 2)
            if total >= 20:
                expected[order["region"]] = expected.get(order["region"], 0) + total
            else:
                small += 1
    assert small > 0
    assert result.stage("only_large").metrics["small_orders"] == small
    assert result.records_in == 2000
    assert result.records_out == 2000 - small
    assert revenue.totals == {k: round(v, 2) for k, v in sorted(expected.items())}


async def test_embedded_clickhouse_report_matches_a_direct_computation(chdb_url: str) -> None:
    module = load_example(ROOT / "examples" / "embedded_clickhouse_pipeline.py")
    for _ in range(2):  # a second run replaces the orders: the report stays the same
        result = await module.main(clickhouse_url=chdb_url)
    assert result.children[0].records_out == 2000

    expected: dict[tuple[str, str], list[Any]] = defaultdict(lambda: [0, 0, Decimal(0)])
    with open(ROOT / "examples" / "data" / "orders.jsonl") as fh:
        for line in fh:
            order = json.loads(line)
            totals = expected[order["region"], order["product"]]
            totals[0] += 1
            totals[1] += order["quantity"]
            totals[2] += order["quantity"] * Decimal(str(order["unit_price"]))
    with open(module.REPORT, newline="") as fh:
        rows = list(csv.DictReader(fh))
    got = {
        (r["region"], r["product"]): [int(r["orders"]), int(r["units"]), Decimal(r["revenue"])]
        for r in rows
    }
    assert got == dict(expected)
    assert all(len(r["revenue"].partition(".")[2]) == 2 for r in rows)

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

from examples.__main__ import example_paths, load_example  # noqa: E402

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

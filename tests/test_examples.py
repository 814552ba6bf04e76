"""Every example pipeline runs end to end and succeeds."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from examples.__main__ import example_paths, load_example  # noqa: E402

from ductwork import RunResult  # noqa: E402

PATHS = example_paths()


def test_there_are_examples() -> None:
    assert len(PATHS) >= 1


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
async def test_example_runs(path: Path) -> None:
    module = load_example(path)
    result = await module.main()
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

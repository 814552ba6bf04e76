"""The runnable HTTP example works end to end (it serves its own API on 127.0.0.1)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from ductwork import RunStatus

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "http_pipeline.py"


async def test_http_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("http_pipeline_example", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = await module.main()
    assert result.status == RunStatus.SUCCEEDED
    assert result.records_out == 45
    assert result.stages[0].metrics["http_retries"] == 1
    out = capsys.readouterr().out
    assert "loaded 45 orders, ids 0..44 in order" in out
    assert "  requests: 6 for 5 pages (1 answered 503 and retried)\n" in out
    gross = sum(round((10 + i * 2.5) * 1.2, 2) for i in range(45))
    assert f"  gross total (amount + 20% VAT): {gross:,.2f}\n" in out
    assert "{'http_" not in out  # the metrics are labelled, not a raw dict

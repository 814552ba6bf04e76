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
    assert "loaded 45 orders, ids 0..44 in order" in capsys.readouterr().out

"""The benchmark suite runs, measures the same workload for every library and writes its results.

These check the machinery on tiny inputs (counts, rows, files, failure reporting); the figures
themselves are produced by ``python -m benchmarks``, never asserted here.
"""

from __future__ import annotations

import asyncio
import gzip
import importlib.util
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import __main__ as suite  # noqa: E402
from benchmarks import bench_arrow, bench_core, bench_dlt, bench_memory, bench_peers  # noqa: E402
from benchmarks._util import interleave, paired_ratio, peak_rss_mb, run_child, span  # noqa: E402
from benchmarks._workload import Counter, timed  # noqa: E402

CORE_PEERS = ["loop", "loop-buffered", "ductwork", "asyncio-queue", "anyio-naive"]


def test_interleave_rotates_the_order_and_drops_the_warmup() -> None:
    calls: list[str] = []

    def case(name: str, seconds: float) -> Callable[[], float]:
        def run() -> float:
            calls.append(name)
            return seconds

        return run

    samples = interleave({"a": case("a", 1.0), "b": case("b", 2.0)}, rounds=3, warmup=1)
    assert samples == {"a": [1.0, 1.0, 1.0], "b": [2.0, 2.0, 2.0]}
    # 4 rounds in all, the first (warm-up) not counted; who goes first alternates.
    assert calls == ["a", "b", "b", "a", "a", "b", "b", "a"]


def test_paired_ratio_is_per_round() -> None:
    ratio = paired_ratio([1.0, 2.0, 3.0], [2.0, 2.0, 1.0])
    assert (ratio.median, ratio.low, ratio.high) == (1.0, 0.5, 3.0)
    assert span({"r": 1.0, "r_min": 0.5, "r_max": 3.0}, "r", ".2f") == "1.00 (0.50-3.00)"
    assert span({}, "r") == "-"


@pytest.mark.parametrize("name", CORE_PEERS)
@pytest.mark.parametrize("batch_size", [1, 7, 1000])
def test_every_peer_delivers_every_record(name: str, batch_size: int) -> None:
    # ``timed`` raises unless the sink counted every record; the peers from the bench extra
    # (aiostream, pypeln) go through the same check on every benchmark run.
    seconds = asyncio.run(timed(bench_peers.PEERS[name].runner, 2_503, batch_size))
    assert seconds > 0


def test_timed_rejects_a_lost_record() -> None:
    async def loses_one(total: int, batch_size: int, sink: Counter) -> None:
        sink([{}] * (total - 1))

    with pytest.raises(AssertionError, match="counted 9 records, expected 10"):
        asyncio.run(timed(loses_one, 10, 1))


def test_a_missing_peer_names_the_extra() -> None:
    peer = bench_peers.Peer("nothing", bench_peers.hand_written_loop, ("no_such_peer_library",))
    with pytest.raises(SystemExit, match=r"pip install -e '\.\[bench\]'"):
        bench_peers._import(peer)


def test_core_benchmark_rows(capsys: pytest.CaptureFixture[str]) -> None:
    rows = bench_core.main(
        ["--records", "3000", "--repeats", "2", "--sizes", "100,1", "--clock", "cpu"]
    )
    assert [r["batch_size"] for r in rows] == [100, 1]
    assert {r["clock"] for r in rows} == {"cpu"}
    for r in rows:
        assert r["records"] == 3000
        assert r["pipeline_records_per_s_min"] <= r["pipeline_records_per_s"]
        assert r["pipeline_records_per_s"] <= r["pipeline_records_per_s_max"]
        assert r["ratio_min"] <= r["ratio"] <= r["ratio_max"]
        assert r["metrics_ratio_min"] <= r["metrics_ratio"] <= r["metrics_ratio_max"]
    out = capsys.readouterr().out
    assert "| 100 | 3,000 |" in out


def test_peer_benchmark_rows_and_per_process_rss(capsys: pytest.CaptureFixture[str]) -> None:
    rows = bench_peers.main(
        ["--records", "2000", "--repeats", "1", "--peers", ",".join(CORE_PEERS)]
    )
    assert [(r["batch_size"], r["peer"]) for r in rows] == [
        (size, name) for size in (1000, 1) for name in CORE_PEERS
    ]
    assert {r["records"] for r in rows if r["batch_size"] == 1} == {200}
    by_peer = {(r["batch_size"], r["peer"]): r for r in rows}
    assert by_peer[(1000, "loop")]["ratio"] == 1.0
    assert "ductwork_speedup" not in by_peer[(1000, "ductwork")]
    assert by_peer[(1, "anyio-naive")]["ductwork_speedup"] > 0
    # Each library's RSS comes from its own fresh process: the loop does not import ductwork.
    assert by_peer[(1000, "ductwork")]["rss_before_mb"] > by_peer[(1000, "loop")]["rss_before_mb"]
    assert "| 1 | ductwork 0.1.0 | 200 |" in capsys.readouterr().out


def test_child_rss_is_its_own_not_the_parents() -> None:
    ballast = bytearray(200 * 1024 * 1024)  # make this process's peak RSS large
    ballast[::4096] = b"x" * len(ballast[::4096])
    assert peak_rss_mb() > 200
    out = run_child("benchmarks.bench_memory", "--child", "loop", "--records", "100")
    assert out["subject"] == "loop"
    assert 0 < out["peak_rss_mb"] < 150
    del ballast


def test_memory_benchmark_rows() -> None:
    rows = bench_memory.main(["--records", "2000", "--repeats", "1"])
    assert [r["subject"] for r in rows] == ["loop", "ductwork"]
    for r in rows:
        assert r["records_5x"] == 10_000
        assert r["peak_rss_mb"] >= r["rss_before_mb"] > 0
        assert 0.5 < r["growth"] < 2.0


def test_suite_writes_results_and_reports_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(
        suite,
        "BENCHMARKS",
        (
            suite.Benchmark("memory", "benchmarks.bench_memory", quick_args=("--records", "1000")),
            suite.Benchmark("broken", "benchmarks.no_such_benchmark"),
        ),
    )
    assert suite.main(["--quick", "--out", str(tmp_path)]) == 1
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["quick"] is True
    assert results["machine"]["cores"] >= 1
    memory, broken = results["benchmarks"]
    assert memory["status"] == "succeeded"
    assert memory["title"].startswith("Peak RSS against input size")
    assert [r["subject"] for r in memory["rows"]] == ["loop", "ductwork"]
    assert memory["peak_rss_mb"] > 0
    assert broken["status"] == "failed"
    assert "no_such_benchmark" in broken["stderr"]
    markdown = (tmp_path / "results.md").read_text()
    assert "## memory: Peak RSS against input size" in markdown
    assert "| hand-written loop | 1,000 / 5,000 |" in markdown
    assert "**Failed**" in markdown
    assert "failed: broken" in markdown
    printed = capsys.readouterr().out
    assert "## memory: Peak RSS against input size" in printed
    assert "| hand-written loop | 1,000 / 5,000 |" in printed


def test_suite_runs_a_main_that_parses_sys_argv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = tmp_path / "argv_style_benchmark.py"
    module.write_text(
        "import sys\n"
        "def main():\n"
        "    print('# Heading')\n"
        "    print('args', sys.argv[1:])\n"
        "    print('| a |')\n"
        "    print('|---|')\n"
    )
    bench = suite.Benchmark("argv", "argv_style_benchmark", quick_args=("--x", "1"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), str(ROOT)]))
    record = suite.run_one(bench, quick=True)
    assert record["status"] == "succeeded", record.get("stderr")
    assert "args ['--x', '1']" in record["output"]
    assert record["rows"] == []
    assert "### Heading\nargs ['--x', '1']\n\n| a |" in suite.section(record)


def test_suite_only_selects_and_rejects_unknown_names() -> None:
    assert [b.name for b in suite._select(["peers,core"])] == ["peers", "core"]
    assert [b.name for b in suite._select([])] == [b.name for b in suite.BENCHMARKS]
    with pytest.raises(SystemExit, match="unknown benchmark"):
        suite._select(["nope"])


def test_dlt_benchmark_rows_for_ductwork_and_the_loop(capsys: pytest.CaptureFixture[str]) -> None:
    # Every run's output is read back and checked against the input inside ``main``.
    rows = bench_dlt.main(["--records", "3000", "--repeats", "2", "--tools", "ductwork"])
    assert [r["tool"] for r in rows] == ["loop", "ductwork"]
    by_tool = {r["tool"]: r for r in rows}
    assert by_tool["loop"]["ratio"] == 1.0
    for r in rows:
        assert r["records"] == 3000
        assert r["level"] == 9
        assert r["extra_fields"] == []
        assert r["records_per_s_min"] <= r["records_per_s"] <= r["records_per_s_max"]
        assert "vs_dlt" not in r
        assert r["peak_rss_mb"] >= r["rss_before_mb"] > 0
    # Each tool runs in its own fresh process: the loop does not import ductwork.
    assert by_tool["ductwork"]["rss_before_mb"] > by_tool["loop"]["rss_before_mb"]
    out = capsys.readouterr().out
    assert "| hand-written loop | 3,000 |" in out
    assert "| ductwork 0.1.0 | 3,000 |" in out


def test_dlt_benchmark_rejects_an_output_that_differs(tmp_path: Path) -> None:
    src = str(tmp_path / "in.jsonl.gz")
    expected = bench_dlt.generate(src, 500)
    assert expected.id_sum == sum(range(500))
    assert bench_dlt.loop(src, str(tmp_path), 1) == 500
    good = bench_dlt.digest(bench_dlt.output_files("loop", str(tmp_path)))
    bench_dlt.check("loop", good, expected)
    assert good.fields == expected.fields
    with gzip.open(tmp_path / "out.jsonl.gz", "rb") as fh:
        lines = fh.read().splitlines(keepends=True)
    short = tmp_path / "short.jsonl.gz"
    short.write_bytes(gzip.compress(b"".join(lines[:-1])))
    with pytest.raises(AssertionError, match="short: output records is 499, expected 500"):
        bench_dlt.check("short", bench_dlt.digest([str(short)]), expected)
    changed = tmp_path / "changed.jsonl.gz"
    changed.write_bytes(gzip.compress(b"".join(lines).replace(b'"total":', b'"total":1', 1)))
    with pytest.raises(AssertionError, match="changed: output total_sum"):
        bench_dlt.check("changed", bench_dlt.digest([str(changed)]), expected)


def test_dlt_benchmark_runs_dlt_offline_or_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # dlt is in the bench extra, not the test extra: both cases are checked, whichever holds.
    env = bench_dlt.dlt_environment(str(tmp_path))
    assert env["RUNTIME__DLTHUB_TELEMETRY"] == "false"
    assert all(env[k].startswith(str(tmp_path)) for k in ("DLT_PROJECT_DIR", "DLT_DATA_DIR"))
    argv = ["--records", "2000", "--repeats", "1", "--tools", "dlt", "--dir", str(tmp_path)]
    if importlib.util.find_spec("dlt") is None:
        with pytest.raises(SystemExit, match=r"pip install -e '\.\[bench\]'"):
            bench_dlt.main(argv)
        return
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))  # dlt's default global folder is ~/.dlt
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    rows = bench_dlt.main(argv)
    assert [r["tool"] for r in rows] == ["loop", "dlt"]
    dlt_row = rows[1]
    assert dlt_row["records"] == 2000
    assert dlt_row["extra_fields"] == ["_dlt_load_id", "_dlt_id"]
    assert dlt_row["vs_dlt"] == 1.0
    assert dlt_row["normalize_seconds"] > 0
    # Nothing was left behind: not in HOME, not in the working directory, not in --dir.
    assert list(home.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]


def test_dlt_benchmark_without_dlt_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "dlt" else real(name, *a)
    )
    with pytest.raises(SystemExit, match=r"dlt is not installed: .*pip install -e '\.\[bench\]'"):
        bench_dlt.main(["--records", "10", "--tools", "dlt"])
    with pytest.raises(SystemExit, match="unknown tool"):
        bench_dlt.main(["--tools", "pandas"])


def test_flights_generator_has_the_nycflights13_shape() -> None:
    chunk = bench_arrow.flights_chunk(0, 20_000)
    assert chunk.column_names == [
        "year", "month", "day", "dep_time", "sched_dep_time", "dep_delay", "arr_time",
        "sched_arr_time", "arr_delay", "carrier", "flight", "tailnum", "origin", "dest",
        "air_time", "distance", "hour", "minute", "time_hour",
    ]  # fmt: skip
    assert chunk.schema == bench_arrow.FLIGHTS_SCHEMA
    share = {name: chunk[name].null_count / chunk.num_rows for name in chunk.column_names}
    # nycflights13: 2.5% without a departure, 2.8% without an arrival delay, 0.7% no tail number
    assert 0.02 < share["dep_time"] == share["dep_delay"] < 0.03
    assert share["dep_time"] < share["arr_time"] < share["arr_delay"] == share["air_time"] < 0.035
    assert 0.004 < share["tailnum"] < 0.011
    assert {k for k, v in share.items() if v} == {
        "dep_time", "dep_delay", "arr_time", "arr_delay", "tailnum", "air_time",
    }  # fmt: skip
    assert set(chunk["origin"].to_pylist()) == {"EWR", "JFK", "LGA"}
    assert chunk.equals(bench_arrow.flights_chunk(0, 20_000))  # deterministic
    assert not chunk.equals(bench_arrow.flights_chunk(20_000, 20_000))


def test_flights_files_hold_the_same_rows(tmp_path: Path) -> None:
    import pyarrow.csv as pacsv

    rows = bench_arrow.ARROW_BATCH + 1000  # two chunks
    paths, digest = bench_arrow.write_flights(str(tmp_path), rows, {"arrows", "csv", "parquet"})
    assert digest.rows == rows
    assert bench_arrow.parquet_digest([paths["parquet"]]) == digest
    assert bench_arrow.Digest.of(list(bench_arrow.read_stream(paths["arrows"]))) == digest
    assert bench_arrow.Digest.of([pacsv.read_csv(paths["csv"])]) == digest
    with pytest.raises(AssertionError, match="got 1, expected 2"):
        bench_arrow.check("rows", 1, 2)


ARROW_SIZES = ["--rows", "20000", "--flights", "3000", "--dlt-rows", "3000", "--rss-rows", "2000"]


def _arrow_groups(rows: list[dict[str, Any]]) -> dict[tuple[str, str], list[str]]:
    groups: dict[tuple[str, str], list[str]] = {}
    for r in rows:
        groups.setdefault((r["case"], r["job"]), []).append(r["tool"])
        assert r["rows_per_s_min"] <= r["rows_per_s"] <= r["rows_per_s_max"]
        assert r["ratio"] > 0
        assert r["peak_rss_mb"] > 0
        assert r["met"] in (True, False, None)
    return groups


def test_arrow_benchmark_clickhouse_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Every output is read back and checked inside ``main``: rows, the sum of a column, NULLs.
    argv = [*ARROW_SIZES, "--repeats", "1", "--dir", str(tmp_path), "--cases", "clickhouse,flights"]
    rows = bench_arrow.main(argv)
    assert list(_arrow_groups(rows).values()) == [
        ["client", "arrow", "records"],
        ["client", "arrow", "records"],
        ["records", "arrow"],
        ["records", "arrow"],
    ]
    by_tool = {(r["case"], r["job"][:4], r["tool"]): r for r in rows}
    assert by_tool[("clickhouse", "extr", "arrow")]["rows"] == 20_000
    assert by_tool[("clickhouse", "load", "client")]["ratio"] == 1.0
    assert by_tool[("flights", "CSV ", "arrow")]["rows"] == 3000
    assert by_tool[("flights", "CSV ", "arrow")]["rss_target_mb"] == 150
    out = capsys.readouterr().out
    assert "| flights | CSV file → ClickHouse | ductwork arrow | 3,000 |" in out
    assert list(tmp_path.iterdir()) == []  # the data files are gone


def test_arrow_benchmark_file_and_rss_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with_dlt = importlib.util.find_spec("dlt") is not None
    argv = [*ARROW_SIZES, "--repeats", "1", "--dir", str(tmp_path), "--cases", "parquet,dlt,rss"]
    rows = bench_arrow.main(argv)
    speed = [r for r in rows if r["case"] != "rss"]
    assert list(_arrow_groups(speed).values()) == [
        ["pyarrow", "ductwork"],
        ["pyarrow", "ductwork"],
        *([["dlt", "ductwork"]] if with_dlt else []),
    ]
    by_tool = {(r["case"], r["job"][:4], r["tool"]): r for r in speed}
    hand, ours = by_tool[("parquet", "read", "pyarrow")], by_tool[("parquet", "read", "ductwork")]
    assert hand["ratio"] == 1.0
    # a baseline by hand imports no ductwork: its process is the smaller
    assert hand["rss_before_mb"] < ours["rss_before_mb"]
    rss = [r for r in rows if r["case"] == "rss"]
    assert [r["source"] for r in rss] == [
        "ClickHouse (UInt64, String, Float64)",
        "Parquet file (flights)",
        "HTTP NDJSON body",
    ]
    for r in rss:
        assert (r["rows"], r["rows_10x"]) == (2000, 20_000)
        assert r["peak_rss_10x_mb"] > 0
        assert r["growth"] > 0
    out = capsys.readouterr().out
    assert "| Parquet file (flights) | 2,000 |" in out
    assert "MiB in a process of pyarrow alone" in out
    if not with_dlt:
        assert bench_arrow.NO_DLT in out
    assert list(tmp_path.iterdir()) == []


def test_arrow_benchmark_rejects_an_unknown_case() -> None:
    with pytest.raises(SystemExit, match="unknown case"):
        bench_arrow.main(["--cases", "parquet,pandas"])

"""Run the benchmark suite: every registered benchmark, each in a fresh process.

    python -m benchmarks [--quick] [--only NAME[,NAME]] [--list] [--out DIR]

Each benchmark module prints a header and a Markdown table and returns its rows from
``main(argv)``. The suite runs each module in its own process (so the peak RSS it reports is its
own), prints its table as it finishes, and writes every row to ``results.json`` and the tables to
``results.md`` in ``benchmarks/results/`` (or ``--out``). ``--quick`` runs smaller inputs and fewer
repetitions. The exit status is 1 if any benchmark failed; the others still run.

To add a benchmark, add one ``Benchmark`` line to ``BENCHMARKS``: its name, its module, and the
arguments of a full and of a quick run. The whole ``--quick`` suite must finish in under two
minutes on 2 cores, so give each module quick arguments that run in about 15 seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from time import perf_counter
from typing import Any

from benchmarks._util import machine_info

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Benchmark:
    """One benchmark module and the arguments it runs with, in full and in ``--quick`` mode."""

    name: str
    module: str
    args: tuple[str, ...] = ()
    quick_args: tuple[str, ...] = ("--quick",)

    def argv(self, quick: bool) -> list[str]:
        return list(self.quick_args if quick else self.args)


BENCHMARKS: tuple[Benchmark, ...] = (
    # In-memory, single-threaded and CPU-bound: timed by the CPU time of the process, which equals
    # the wall time on an idle machine and stays right on a busy one.
    Benchmark(
        "core",
        "benchmarks.bench_core",
        ("--clock", "cpu"),
        ("--clock", "cpu", "--records", "200000", "--repeats", "3"),
    ),
    Benchmark(
        "peers",
        "benchmarks.bench_peers",
        ("--clock", "cpu"),
        ("--clock", "cpu", "--records", "200000", "--repeats", "3"),
    ),
    Benchmark("memory", "benchmarks.bench_memory"),
    Benchmark(
        "files",
        "benchmarks.bench_files",
        quick_args=("--records", "50000,250000", "--repeats", "2"),
    ),
    Benchmark(
        "dlt",
        "benchmarks.bench_dlt",
        quick_args=("--records", "50000", "--repeats", "2"),
    ),
    Benchmark(
        "clickhouse",
        "benchmarks.bench_clickhouse",
        quick_args=(
            "--rows",
            "50000",
            "--rss-rows",
            "50000,250000",
            "--repeats",
            "3",
            "--data",
            "mixed",
        ),
    ),
    Benchmark(
        "arrow",
        "benchmarks.bench_arrow",
        quick_args=(
            "--rows",
            "200000",
            "--flights",
            "50000",
            "--dlt-rows",
            "100000",
            "--rss-rows",
            "50000",
            "--repeats",
            "1",
        ),
    ),
    Benchmark(
        "http",
        "benchmarks.bench_http",
        quick_args=("--pages", "40", "--records", "50000", "--repeats", "3"),
    ),
    Benchmark(
        "transforms",
        "benchmarks.bench_transforms",
        quick_args=("--records", "50000", "--repeats", "3"),
    ),
    Benchmark(
        "compose",
        "benchmarks.bench_compose",
        quick_args=("--children", "200", "--big", "300000", "--repeats", "5"),
    ),
    Benchmark(
        "backfill", "benchmarks.bench_backfill", quick_args=("--windows", "200", "--repeats", "3")
    ),
    Benchmark(
        "distributed",
        "benchmarks.bench_distributed",
        quick_args=("--windows", "4", "--records", "100000", "--repeats", "1", "--empty", "20"),
    ),
    Benchmark(
        "scheduler",
        "benchmarks.bench_scheduler",
        quick_args=("--jobs", "100", "--seconds", "2", "--starts", "3"),
    ),
)


def _select(only: Sequence[str]) -> list[Benchmark]:
    if not only:
        return list(BENCHMARKS)
    wanted = [n.strip() for item in only for n in item.split(",") if n.strip()]
    known = {b.name: b for b in BENCHMARKS}
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {unknown}; choose from {list(known)}")
    return [known[n] for n in wanted]


def _markdown_block(text: str) -> str:
    """The module's printed output, fitted into its section of the Markdown document.

    A blank line goes before each table so Markdown renders it, and the module's own headings move
    below the section's.
    """
    out: list[str] = []
    for line in text.rstrip().splitlines():
        if line.startswith("|") and out and out[-1].strip() and not out[-1].startswith("|"):
            out.append("")
        if line.startswith("#"):
            line = "##" + line
        out.append(line)
    return "\n".join(out)


def run_one(bench: Benchmark, quick: bool) -> dict[str, Any]:
    """Run one benchmark module in a fresh process and return its record for the results file."""
    argv = bench.argv(quick)
    with tempfile.TemporaryDirectory(prefix="ductwork-bench-") as tmp:
        result_path = os.path.join(tmp, "result.json")
        t0 = perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks._run", bench.module, result_path, *argv],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        wall = perf_counter() - t0
        result: dict[str, Any] = {}
        if proc.returncode == 0 and os.path.exists(result_path):
            with open(result_path) as fh:
                result = json.load(fh)
    record: dict[str, Any] = {
        "name": bench.name,
        "module": bench.module,
        "command": shlex.join(["python", "-m", bench.module, *argv]),
        "title": result.get("title", ""),
        "status": "succeeded" if result else "failed",
        "returncode": proc.returncode,
        "seconds": round(wall, 2),
        "peak_rss_mb": result.get("peak_rss_mb"),
        "rows": result.get("rows", []),
        "output": proc.stdout,
    }
    if not result:
        record["stderr"] = proc.stderr[-4000:]
    return record


def section(record: dict[str, Any]) -> str:
    """The Markdown section of one benchmark."""
    title = f"## {record['name']}"
    if record["title"]:
        title += f": {record['title']}"
    lines = [title, ""]
    facts = f"`{record['command']}` · {record['seconds']:.1f} s"
    if record["peak_rss_mb"] is not None:
        facts += f" · peak RSS of the process {record['peak_rss_mb']:.0f} MiB"
    lines += [facts, ""]
    if record["output"].strip():
        lines += [_markdown_block(record["output"]), ""]
    if record["status"] != "succeeded":
        lines += [
            f"**Failed** (exit status {record['returncode']}):",
            "",
            "```",
            record.get("stderr", "").rstrip(),
            "```",
            "",
        ]
    return "\n".join(lines)


def _commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() or None


def header(info: dict[str, Any]) -> str:
    """The Markdown header: the machine, the command, the time."""
    m = info["machine"]
    load = ", ".join(f"{x:.2f}" for x in m["load_average"]) or "unknown"
    lines = [
        "# ductwork benchmarks",
        "",
        f"- machine: {m['system']} {m['arch']}, {m['cores']} cores ({m['cpu']}), "
        f"{m['implementation']} {m['python']}",
        f"- load average at the start (1, 5, 15 min): {load}",
        f"- command: `{info['command']}`"
        + (f" at commit {info['commit']}" if info["commit"] else ""),
        f"- started: {info['started']}",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument(
        "--quick", action="store_true", help="smaller inputs, fewer repetitions (< 2 minutes)"
    )
    parser.add_argument(
        "--only", action="append", default=[], metavar="NAME", help="run only these benchmarks"
    )
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results", help="results directory"
    )
    args = parser.parse_args(argv)
    if args.list:
        for b in BENCHMARKS:
            print(f"{b.name:12} {b.module}")
        return 0
    selected = _select(args.only)
    command = shlex.join(["python", "-m", "benchmarks", *(argv if argv is not None else [])])
    info: dict[str, Any] = {
        "command": command,
        "quick": args.quick,
        "commit": _commit(),
        "started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "machine": machine_info(),
    }
    print(header(info), flush=True)
    t0 = perf_counter()
    records = []
    for i, bench in enumerate(selected, 1):
        print(f"[{i}/{len(selected)}] running {bench.name} ...", file=sys.stderr, flush=True)
        record = run_one(bench, args.quick)
        records.append(record)
        print(section(record), flush=True)
    info["seconds"] = round(perf_counter() - t0, 1)
    info["benchmarks"] = records
    failed = [r["name"] for r in records if r["status"] != "succeeded"]
    footer = f"Total {info['seconds']:.0f} s" + (f"; failed: {', '.join(failed)}" if failed else "")
    print(footer)
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "results.json", "w") as fh:
        json.dump(info, fh, indent=2, default=str)
    markdown = "\n".join([header(info), *(section(r) for r in records), footer, ""])
    (args.out / "results.md").write_text(markdown)
    print(f"\nwrote {args.out / 'results.json'} and {args.out / 'results.md'}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Files beside dlt: JSON Lines, gzip → one transform → JSON Lines, gzip, with three tools.

The same job as the ``jsonl.gz`` case of ``bench_files``: N records of JSON Lines, gzip-compressed
→ add a field (``total = amount * 1.2``) to every record → JSON Lines, gzip-compressed, on the
local disk, done by

* **hand-written loop** (the baseline): ``gzip`` + ``orjson`` line by line, written through a
  1 MiB buffer, fsynced;
* **ductwork**: ``create_file_extractor`` → a batch transformer → ``create_file_loader``;
* **dlt**: its ``filesystem`` source piped into its ``read_jsonl`` reader (which opens the gzip file
  through fsspec and parses it line by line with orjson, 1,000 lines to a chunk), ``add_map`` for
  the transform, and a pipeline into its ``filesystem`` destination with ``bucket_url`` a local
  folder and ``loader_file_format="jsonl"``. dlt's extract step writes the items to intermediate
  files in its pipelines folder, its normalize step reads them back, infers and checks the schema
  and writes the load files, and its load step copies them to the destination folder.

dlt runs fully offline here: telemetry is off (``RUNTIME__DLTHUB_TELEMETRY=false``), and its
project folder (so no ``.dlt`` config of the working directory is read), data folder and
pipelines folder are inside the benchmark's temporary folder. Checked by running it in a network
namespace with no network (``unshare -n``): it behaves the same.

dlt does the same job with these differences, all its defaults, which this benchmark keeps:

* Every output record gains two columns, ``_dlt_load_id`` and ``_dlt_id`` (a random key per
  record), and ``ts`` is recognised as a timestamp and written as ``2024-01-01T00:00:00+00:00``
  where the input had ``...Z``. The list column ``tags`` stays a JSON list only with
  ``max_table_nesting=0`` (otherwise dlt moves lists to a child table); that setting is used.
* dlt compresses with ``gzip.open``'s default level 9 and has no setting for the level, so the
  other two sides compress at level 9 as well (``--level``; ``bench_files`` uses level 6).
* dlt writes its load files without fsync; the other two sides fsync their output.
* The output is a folder (``<bucket_url>/<dataset>/records/<load id>.<file id>.jsonl.gz``, beside
  dlt's own ``_dlt_loads``, ``_dlt_version`` and ``_dlt_pipeline_state`` tables), not one file.

Every measurement is a fresh process, so its peak RSS (``VmHWM``) is its own; the time is the job
alone, from after the imports to the output in place. Runs of the tools take turns, the order
rotating each round, and the median of ``--repeats`` is reported, with ratios as the median of the
per-round ratios. After every run the parent reads the output back and checks it: the number of
records, the sum of ``id`` and the exact sum of ``total`` must equal those of the input, or the
benchmark fails.

    python -m benchmarks.bench_dlt [--records 1000000] [--repeats 3] [--tools ductwork,dlt]
"""

from __future__ import annotations

import argparse
import glob
import gzip
import importlib.util
import io
import json
import logging
import math
import os
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter
from typing import Any

import orjson

from benchmarks._util import (
    emit,
    machine,
    paired_ratio,
    rss_mb,
    run_child,
    span,
    spread,
    table,
)

BASELINE = "loop"
TOOLS = ("loop", "ductwork", "dlt")
LABELS = {"loop": "hand-written loop", "ductwork": "ductwork", "dlt": "dlt"}
DATASET = "bench"
TABLE = "records"
#: dlt compresses with gzip.open's default, level 9, and cannot be told otherwise.
LEVEL = 9


# --------------------------------------------------------------------------- input and output


@dataclass(frozen=True)
class Digest:
    """What the parent checks in an output: record count, ``id`` sum, exact ``total`` sum."""

    records: int
    id_sum: int
    total_sum: float
    fields: tuple[str, ...]
    bytes: int


def generate(path: str, records: int) -> Digest:
    """Write the input (the records of ``bench_files``) and return what a right output holds."""
    from benchmarks.bench_files import make_record  # the parent only: children skip ductwork

    id_sum = 0
    totals: list[float] = []
    fields: tuple[str, ...] = ()
    with gzip.open(path, "wb", compresslevel=6) as gz:
        step = 10_000
        for start in range(0, records, step):
            batch = [make_record(i) for i in range(start, min(start + step, records))]
            gz.write(b"\n".join(map(orjson.dumps, batch)) + b"\n")
            id_sum += sum(r["id"] for r in batch)
            totals += [r["amount"] * 1.2 for r in batch]
            fields = fields or (*batch[0], "total")
    return Digest(records, id_sum, math.fsum(totals), fields, os.path.getsize(path))


def digest(paths: list[str]) -> Digest:
    """Read JSON Lines, gzip files back and sum them up."""
    count = id_sum = size = 0
    totals: list[float] = []
    fields: tuple[str, ...] = ()
    loads = orjson.loads
    for path in sorted(paths):
        size += os.path.getsize(path)
        with gzip.open(path, "rb") as fh:
            for line in fh:
                record = loads(line)
                count += 1
                id_sum += record["id"]
                totals.append(record["total"])
                fields = fields or tuple(record)
    return Digest(count, id_sum, math.fsum(totals), fields, size)


def output_files(tool: str, folder: str) -> list[str]:
    """The files holding the records a tool wrote into ``folder``."""
    if tool == "dlt":
        return glob.glob(os.path.join(folder, "out", DATASET, TABLE, "*.jsonl*"))
    return [os.path.join(folder, "out.jsonl.gz")]


def check(tool: str, got: Digest, expected: Digest) -> None:
    """Fail unless ``got`` holds exactly the transformed input records.

    Raises:
        AssertionError: naming the tool and the figure that differs.
    """
    for name in ("records", "id_sum", "total_sum"):
        if getattr(got, name) != getattr(expected, name):
            raise AssertionError(
                f"{tool}: output {name} is {getattr(got, name)!r}, "
                f"expected {getattr(expected, name)!r}"
            )
    missing = set(expected.fields) - set(got.fields)
    if missing:
        raise AssertionError(f"{tool}: output records lack {sorted(missing)}")


# --------------------------------------------------------------------------- the three tools


def loop(src: str, folder: str, level: int) -> int:
    """The baseline: gzip in, orjson per line, gzip out through a 1 MiB buffer, fsync."""
    count = 0
    loads, dumps = orjson.loads, orjson.dumps
    with (
        gzip.open(src, "rb") as fin,
        open(os.path.join(folder, "out.jsonl.gz"), "wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=level, mtime=0) as gz,
        io.BufferedWriter(gz, 1 << 20) as out,
    ):
        for line in fin:
            record = loads(line)
            record["total"] = record["amount"] * 1.2
            out.write(dumps(record))
            out.write(b"\n")
            count += 1
        out.flush()
        gz.close()
        raw.flush()
        os.fsync(raw.fileno())
    return count


def add_total_batch(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The transform, per batch (ductwork)."""
    for record in batch:
        record["total"] = record["amount"] * 1.2
    return batch


def add_total(record: dict[str, Any]) -> dict[str, Any]:
    """The transform, per record (dlt's ``add_map`` calls it for each)."""
    record["total"] = record["amount"] * 1.2
    return record


def dlt_environment(folder: str) -> dict[str, str]:
    """The environment that keeps dlt offline and inside ``folder``."""
    return {
        "RUNTIME__DLTHUB_TELEMETRY": "false",
        # dlt reads .dlt/config.toml and secrets.toml from the project folder: an empty one here.
        "DLT_PROJECT_DIR": os.path.join(folder, "dlt-project"),
        # Its global folder (~/.dlt by default): default pipelines folder, global config.
        "DLT_DATA_DIR": os.path.join(folder, "dlt-data"),
    }


def _require_dlt() -> None:
    if importlib.util.find_spec("dlt") is None:
        raise SystemExit(
            "dlt is not installed: install the benchmark extra, pip install -e '.[bench]'"
        )


#: One run of a tool: ``(input path, work folder, gzip level) -> (records, extra figures)``.
Job = Callable[[str, str, int], tuple[int, dict[str, Any]]]


def prepare(tool: str) -> Job:
    """Import what ``tool`` needs (outside the timed part) and return its job."""
    if tool == "loop":
        return lambda src, folder, level: (loop(src, folder, level), {})
    if tool == "ductwork":
        import anyio

        from ductwork import create_etl_pipeline, create_file_extractor, create_file_loader

        def run_ductwork(src: str, folder: str, level: int) -> tuple[int, dict[str, Any]]:
            pipeline = create_etl_pipeline(
                create_file_extractor(src),
                [add_total_batch],
                create_file_loader(
                    os.path.join(folder, "out.jsonl.gz"), "jsonl", compression_level=level
                ),
                name="bench-dlt",
                logging=False,
            )
            return anyio.run(pipeline.run).records_out, {}

        return run_ductwork
    _require_dlt()
    import dlt
    from dlt.sources.filesystem import filesystem, read_jsonl

    def run_dlt(src: str, folder: str, level: int) -> tuple[int, dict[str, Any]]:
        del level  # dlt has no setting for it: always 9
        records = (
            filesystem(bucket_url=os.path.dirname(src), file_glob=os.path.basename(src))
            | read_jsonl()
        )
        records = records.with_name(TABLE)
        records.add_map(add_total)
        records.max_table_nesting = 0  # keep ``tags`` a list in the same table
        pipeline = dlt.pipeline(
            pipeline_name="bench",
            pipelines_dir=os.path.join(folder, "dlt-pipelines"),
            destination=dlt.destinations.filesystem(bucket_url=os.path.join(folder, "out")),
            dataset_name=DATASET,
        )
        info = pipeline.run(records, loader_file_format="jsonl")
        info.raise_on_failed_jobs()
        trace = pipeline.last_trace
        normalized = trace.last_normalize_info if trace else None
        if trace is None or normalized is None:
            raise RuntimeError("dlt recorded no trace of the run")
        steps = {
            s.step: (s.finished_at - s.started_at).total_seconds()
            for s in trace.steps
            if s.step in ("extract", "normalize", "load") and s.finished_at
        }
        count = normalized.row_counts.get(TABLE, 0)
        return count, {"steps": steps}

    return run_dlt


def child(tool: str, src: str, folder: str, level: int) -> None:
    """One measurement, in its own process: emit seconds, records, extras and peak RSS."""
    if tool == "dlt":
        os.environ.update(dlt_environment(folder))
        os.makedirs(os.environ["DLT_PROJECT_DIR"], exist_ok=True)
    logging.disable(logging.CRITICAL)
    t0 = perf_counter()
    run = prepare(tool)
    import_seconds = perf_counter() - t0
    before = rss_mb()
    t0 = perf_counter()
    records, extra = run(src, folder, level)
    seconds = perf_counter() - t0
    emit(
        tool=tool,
        seconds=seconds,
        records=records,
        import_seconds=import_seconds,
        rss_before_mb=before,
        **extra,
    )


# --------------------------------------------------------------------------- driver


def _version(tool: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    if tool == "loop":
        return ""
    try:
        return version(tool)
    except PackageNotFoundError:
        return "?"


def measure(
    folder: str, records: int, repeats: int, tools: list[str], level: int
) -> list[dict[str, Any]]:
    src = os.path.join(folder, f"in-{records}.jsonl.gz")
    expected = generate(src, records)
    samples: dict[str, list[dict[str, Any]]] = {tool: [] for tool in tools}
    outputs: dict[str, Digest] = {}
    for r in range(repeats):
        shift = r % len(tools)
        for tool in tools[shift:] + tools[:shift]:
            work = os.path.join(folder, f"{tool}-{r}")
            os.mkdir(work)
            sample = run_child("benchmarks.bench_dlt", "--child", tool, src, work, str(level))
            if sample["records"] != records:
                raise AssertionError(
                    f"{tool}: reported {sample['records']:,} records, not {records:,}"
                )
            got = digest(output_files(tool, work))
            check(tool, got, expected)
            outputs[tool] = got
            samples[tool].append(sample)
            shutil.rmtree(work)
    os.unlink(src)
    seconds = {tool: [s["seconds"] for s in samples[tool]] for tool in tools}
    rows = []
    for tool in tools:
        secs = spread(seconds[tool])
        row: dict[str, Any] = {
            "tool": tool,
            "label": LABELS[tool],
            "version": _version(tool),
            "records": records,
            "repeats": repeats,
            "level": level,
            "records_per_s": records / secs.median,
            "records_per_s_min": records / secs.high,
            "records_per_s_max": records / secs.low,
            "peak_rss_mb": max(s["peak_rss_mb"] for s in samples[tool]),
            "rss_before_mb": statistics.median(s["rss_before_mb"] for s in samples[tool]),
            "import_seconds": statistics.median(s["import_seconds"] for s in samples[tool]),
            "input_mb": expected.bytes / 2**20,
            "output_mb": outputs[tool].bytes / 2**20,
            "extra_fields": [f for f in outputs[tool].fields if f not in expected.fields],
        }
        vs_loop = paired_ratio(seconds[BASELINE], seconds[tool])
        row |= {"ratio": vs_loop.median, "ratio_min": vs_loop.low, "ratio_max": vs_loop.high}
        if "dlt" in seconds:
            # How many times as fast as dlt, per round.
            vs_dlt = paired_ratio(seconds["dlt"], seconds[tool])
            row |= {"vs_dlt": vs_dlt.median, "vs_dlt_min": vs_dlt.low, "vs_dlt_max": vs_dlt.high}
        if tool == "dlt":
            for step in ("extract", "normalize", "load"):
                row[f"{step}_seconds"] = statistics.median(
                    s["steps"].get(step, 0.0) for s in samples[tool]
                )
        rows.append(row)
    return rows


def render(rows: list[dict[str, Any]]) -> str:
    return table(
        [
            "tool",
            "records",
            "rec/s (min-max)",
            "vs hand-written loop",
            "vs dlt",
            "peak RSS MiB (before the run)",
            "output MiB",
        ],
        [
            [
                f"{r['label']} {r['version']}".strip(),
                f"{r['records']:,}",
                span(r, "records_per_s"),
                span(r, "ratio", ".2f"),
                span(r, "vs_dlt", ".2f"),
                f"{r['peak_rss_mb']:.0f} ({r['rss_before_mb']:.0f})",
                f"{r['output_mb']:.1f}",
            ]
            for r in rows
        ],
    )


def notes(rows: list[dict[str, Any]]) -> list[str]:
    """Lines under the table: dlt's steps and the columns it added."""
    lines = []
    for r in rows:
        if r["tool"] == "dlt":
            lines.append(
                f"dlt steps, median seconds: extract {r['extract_seconds']:.2f}, "
                f"normalize {r['normalize_seconds']:.2f}, load {r['load_seconds']:.2f}"
            )
        if r["extra_fields"]:
            lines.append(f"{r['label']} added the columns {', '.join(r['extra_fields'])}")
    return lines


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--tools",
        default="ductwork,dlt",
        help="comma-separated subset of ductwork,dlt (the hand-written loop always runs)",
    )
    parser.add_argument("--level", type=int, default=LEVEL, help="gzip level of loop and ductwork")
    parser.add_argument("--json", help="write the rows to this JSON file")
    parser.add_argument("--dir", help="folder for the data files (default: a temporary one)")
    parser.add_argument("--child", nargs=4, metavar=("TOOL", "SRC", "FOLDER", "LEVEL"))
    args = parser.parse_args(argv)
    if args.child:
        tool, src, folder, level = args.child
        child(tool, src, folder, int(level))
        return []
    wanted = [t.strip() for t in args.tools.split(",") if t.strip()]
    unknown = [t for t in wanted if t not in TOOLS]
    if unknown:
        raise SystemExit(f"unknown tool(s) {unknown}; choose from {list(TOOLS[1:])}")
    tools = [BASELINE, *(t for t in TOOLS[1:] if t in wanted)]
    if "dlt" in tools:
        _require_dlt()
    print(
        f"dlt: {args.records:,} records, jsonl.gz → add a field → jsonl.gz at gzip level "
        f"{args.level}; {machine()}; median of {args.repeats}, each run in a fresh process\n",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="ductwork-bench-dlt-", dir=args.dir) as folder:
        rows = measure(folder, args.records, args.repeats, tools, args.level)
    print(render(rows))
    for line in notes(rows):
        print(f"\n{line}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": machine(), "rows": rows}, fh, indent=2)
    sys.stdout.flush()
    return rows


if __name__ == "__main__":
    main()

"""File connector throughput and memory, beside a hand-written synchronous loop.

Two conversions, each run by ductwork (file extractor → transformer → file loader) and by a
hand-written loop doing the same work with the same libraries (gzip + orjson, csv + orjson):

* ``jsonl.gz``: N records of JSON Lines, gzip-compressed → add a field → JSON Lines, gzip level 6;
* ``csv``: N records of CSV → JSON Lines (uncompressed).

Every measurement runs in a fresh process, so its peak RSS is its own; runs of the two sides
alternate, and the median of ``--repeats`` is reported. Both sides fsync the output before
finishing (the loader does so by default before its atomic rename).

    python -m benchmarks.bench_files [--records 1000000,5000000] [--repeats 3] [--json PATH]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import logging
import os
import statistics
import sys
import tempfile
from time import perf_counter
from typing import Any

import anyio
import orjson

from benchmarks._util import machine, peak_rss_mb, run_isolated, table
from ductwork import Batch, create_etl_pipeline, create_file_extractor, create_file_loader

CASES = ("jsonl.gz", "csv")
LEVEL = 6


# --------------------------------------------------------------------------- data


def make_record(i: int) -> dict[str, Any]:
    return {
        "id": i,
        "user": f"user{i % 9973}",
        "amount": round((i % 10007) * 0.37, 2),
        "currency": "EUR" if i % 3 else "USD",
        "ts": f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:00Z",
        "tags": ["a", "b"] if i % 2 else ["c"],
    }


def generate(folder: str, records: int) -> dict[str, str]:
    """Write the inputs of both cases; return their paths."""
    jsonl_gz = os.path.join(folder, f"in-{records}.jsonl.gz")
    csv_path = os.path.join(folder, f"in-{records}.csv")
    columns = ["id", "user", "amount", "currency", "ts"]
    with (
        gzip.open(jsonl_gz, "wb", compresslevel=LEVEL) as gz,
        open(csv_path, "w", newline="", encoding="utf-8") as text,
    ):
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(columns)
        step = 10_000
        for start in range(0, records, step):
            batch = [make_record(i) for i in range(start, min(start + step, records))]
            gz.write(b"\n".join(map(orjson.dumps, batch)) + b"\n")
            writer.writerows([r[c] for c in columns] for r in batch)
    return {"jsonl.gz": jsonl_gz, "csv": csv_path}


# --------------------------------------------------------------------------- the two sides


def own_peak_rss_mb() -> float:
    """Peak RSS of this process image in MiB.

    ``ru_maxrss`` survives ``exec``, so a child would report its parent's peak when that is
    higher; the kernel's ``VmHWM`` belongs to the current image only.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return peak_rss_mb()


def add_total(batch: Batch) -> Batch:
    for record in batch:
        record["total"] = record["amount"] * 1.2
    return batch


def loop_jsonl_gz(src: str, dst: str) -> int:
    """The hand-written loop: gzip in, orjson per line, gzip out (buffered), fsync."""
    count = 0
    loads, dumps = orjson.loads, orjson.dumps
    with (
        gzip.open(src, "rb") as fin,
        open(dst, "wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=LEVEL, mtime=0) as gz,
        io.BufferedWriter(gz, 1 << 20) as out,  # type: ignore[arg-type]
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


def loop_csv(src: str, dst: str) -> int:
    """The hand-written loop: csv.DictReader, orjson per row, buffered write, fsync."""
    count = 0
    dumps = orjson.dumps
    with open(src, newline="", encoding="utf-8") as fin, open(dst, "wb", buffering=1 << 20) as out:
        for row in csv.DictReader(fin):
            out.write(dumps(row))
            out.write(b"\n")
            count += 1
        out.flush()
        os.fsync(out.fileno())
    return count


def pipeline_run(case: str, src: str, dst: str) -> int:
    transformers = [add_total] if case == "jsonl.gz" else []
    pipeline = create_etl_pipeline(
        create_file_extractor(src),
        transformers,
        create_file_loader(dst, "jsonl", compression_level=LEVEL if case == "jsonl.gz" else None),
        name=f"bench-{case}",
        logging=False,
    )
    result = anyio.run(pipeline.run)
    return result.records_out


def child(case: str, side: str, src: str, dst: str) -> None:
    """One measurement, in its own process: print seconds, records and peak RSS as JSON."""
    logging.disable(logging.CRITICAL)
    t0 = perf_counter()
    if side == "loop":
        count = loop_jsonl_gz(src, dst) if case == "jsonl.gz" else loop_csv(src, dst)
    else:
        count = pipeline_run(case, src, dst)
    seconds = perf_counter() - t0
    print(json.dumps({"seconds": seconds, "records": count, "peak_rss_mb": own_peak_rss_mb()}))


# --------------------------------------------------------------------------- driver


def measure(folder: str, records: int, repeats: int) -> list[dict[str, Any]]:
    inputs = generate(folder, records)
    rows = []
    for case in CASES:
        dst = {"jsonl.gz": "out.jsonl.gz", "csv": "out.jsonl"}[case]
        samples: dict[str, list[dict[str, Any]]] = {"loop": [], "ductwork": []}
        for _ in range(repeats):
            for side in samples:
                out = os.path.join(folder, f"{side}-{dst}")
                stdout = run_isolated(
                    "benchmarks.bench_files", "--child", case, side, inputs[case], out
                )
                sample = json.loads(stdout.strip().splitlines()[-1])
                if sample["records"] != records:
                    raise SystemExit(f"{case}/{side}: {sample['records']} records, not {records}")
                samples[side].append(sample)
                os.unlink(out)
        loop_s = [s["seconds"] for s in samples["loop"]]
        duct_s = [s["seconds"] for s in samples["ductwork"]]
        rows.append(
            {
                "case": case,
                "records": records,
                "loop_records_per_s": records / statistics.median(loop_s),
                "ductwork_records_per_s": records / statistics.median(duct_s),
                "ratio": statistics.median(loop_s) / statistics.median(duct_s),
                "ratio_min": min(loop_s) / max(duct_s),
                "ratio_max": max(loop_s) / min(duct_s),
                "loop_peak_rss_mb": max(s["peak_rss_mb"] for s in samples["loop"]),
                "ductwork_peak_rss_mb": max(s["peak_rss_mb"] for s in samples["ductwork"]),
            }
        )
    for path in inputs.values():
        os.unlink(path)
    return rows


def render(rows: list[dict[str, Any]]) -> str:
    return table(
        [
            "conversion",
            "records",
            "hand-written loop rec/s",
            "ductwork rec/s",
            "ratio (min-max)",
            "peak RSS MiB loop / ductwork",
        ],
        [
            [
                r["case"] + " → jsonl" + (".gz" if r["case"] == "jsonl.gz" else ""),
                f"{r['records']:,}",
                f"{r['loop_records_per_s']:,.0f}",
                f"{r['ductwork_records_per_s']:,.0f}",
                f"{r['ratio']:.2f} ({r['ratio_min']:.2f}-{r['ratio_max']:.2f})",
                f"{r['loop_peak_rss_mb']:.0f} / {r['ductwork_peak_rss_mb']:.0f}",
            ]
            for r in rows
        ],
    )


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--records", default="1000000,5000000")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="write the rows to this JSON file")
    parser.add_argument("--dir", help="folder for the data files (default: a temporary one)")
    parser.add_argument("--child", nargs=4, metavar=("CASE", "SIDE", "SRC", "DST"))
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child)
        return []
    sizes = [int(n) for n in args.records.split(",")]
    print(f"files: {', '.join(f'{n:,}' for n in sizes)} records; {machine()}; ", end="")
    print(f"median of {args.repeats}, each run in a fresh process")
    sys.stdout.flush()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        for records in sizes:
            rows += measure(folder, records, args.repeats)
    print(render(rows))
    by_case: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_case.setdefault(row["case"], []).append(row)
    for case, case_rows in by_case.items():
        if len(case_rows) > 1:
            small, large = case_rows[0], case_rows[-1]
            growth = large["ductwork_peak_rss_mb"] / small["ductwork_peak_rss_mb"]
            print(
                f"{case}: ductwork peak RSS for {large['records']:,} records is {growth:.2f}x "
                f"that for {small['records']:,}"
            )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": machine(), "rows": rows}, fh, indent=2)
    return rows


if __name__ == "__main__":
    main()

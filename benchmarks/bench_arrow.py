"""Columnar batches: Arrow tables through ClickHouse, Parquet and dlt, beside the tools' own paths.

Five cases; every measured run is a fresh process (so its peak RSS, ``VmHWM``, is its own), the
tools of a case take turns with the order rotating each round, and the time is the job alone,
after the imports. A ratio is the median of the per-round ratios (min-max in brackets): ``> 1``
means faster than the baseline of its case.

1. **clickhouse** (``--rows``, 10,000,000 by default; UInt64, String, Float64 made by the server):
   extract every row with ``create_clickhouse_extractor(..., batch_format="arrow")`` into a
   counting loader, beside ``clickhouse-client --query "SELECT ... FORMAT TSV" > /dev/null`` (the
   native client over its native TCP protocol); load the same rows with ``create_clickhouse_loader``
   from an Arrow IPC file read by ``create_file_extractor(..., batch_format="arrow")``, beside
   ``clickhouse-client --query "INSERT ... FORMAT TSV" < rows.tsv``. The records path of the same
   connectors is shown beside them (extract into a counting loader; load of the batches of
   ``bench_clickhouse``: 100,000 distinct dicts of the same rows, cycled, built before the clock
   starts).
2. **flights** (``--flights`` rows of the nycflights13 ``flights`` shape: 19 columns, NULLs where
   flights were cancelled or diverted; generated, nothing is downloaded): a CSV file into a
   ClickHouse table, and that table into a Parquet file, each with ductwork's arrow path beside
   its records path (CSV records need ``convert_types`` to become typed values; the Parquet file
   gets the schema).
3. **parquet**: the same table from an Arrow IPC stream into a Parquet file (zstd, row groups of
   131,072 rows, fsync) with ``create_file_loader("x.parquet")`` beside ``pq.ParquetWriter`` used
   by hand, and read back with ``create_file_extractor("x.parquet", batch_format="arrow")`` beside
   ``pq.ParquetFile(...).iter_batches()``; both read 65,536-row batches.
4. **dlt** (``--dlt-rows`` flights rows): the same Arrow tables into Parquet with a
   ``@dlt.resource`` yielding them into dlt's ``filesystem`` destination
   (``loader_file_format="parquet"``, dlt's default snappy pages), fully offline, beside
   ``create_file_loader(..., compression="snappy")``. dlt writes without fsync; ductwork fsyncs.
5. **rss**: the peak RSS of extracting ``--rss-rows`` and 10x as many rows with the arrow path:
   from ClickHouse, from a Parquet file, and from an NDJSON body served by a local server
   (``benchmarks/_http_server.py``) to ``create_http_extractor(..., response_format="ndjson",
   batch_format="arrow")``. Streaming should keep the growth near 1.0.

Every output is checked (row counts; for tables and files also the sum of a column and the NULL
counts), or the benchmark fails.

    python -m benchmarks.bench_arrow [--rows 10000000] [--flights 1010328] [--dlt-rows 2000000]
        [--rss-rows 1000000] [--repeats 3] [--cases clickhouse,flights,parquet,dlt,rss]
        [--json PATH] [--dir DIR]

Uses the ClickHouse server at ``CLICKHOUSE_URL``, or starts a local clickhouse-server.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc

from benchmarks._util import (
    emit,
    interleave,
    machine,
    paired_ratio,
    rss_mb,
    run_child,
    span,
    spread,
    table,
)

CASES = ("clickhouse", "flights", "parquet", "dlt", "rss")
#: Rows per Arrow batch wherever a source or an extractor makes them.
ARROW_BATCH = 65_536
#: Records per batch on the records path (as in bench_clickhouse).
RECORDS_BATCH = 10_000
#: Rows per insert, both paths (the loader's default).
INSERT_BATCH = 100_000
#: Rows per insert of the arrow load beside ``clickhouse-client``: the client's own block size
#: (``max_insert_block_size``), so both make parts of the same size.
CLIENT_BLOCK = 1_048_576
#: Parquet row groups, both sides (the file loader's default).
ROW_GROUP = 131_072
NYCFLIGHTS_ROWS = 336_776
NO_DLT = "dlt is not installed (the benchmark extra: pip install -e '.[bench]')"

SIMPLE_TABLE = "bench_arrow_rows"
SIMPLE_COLUMNS = "id UInt64, name String, value Float64"
SIMPLE_SELECT = "SELECT number, concat('name-', toString(number)), number / 7 FROM numbers({rows})"

FLIGHTS_DDL = (
    "year Int32, month Int32, day Int32, dep_time Nullable(Int32), sched_dep_time Int32, "
    "dep_delay Nullable(Float64), arr_time Nullable(Int32), sched_arr_time Int32, "
    "arr_delay Nullable(Float64), carrier String, flight Int32, tailnum Nullable(String), "
    "origin String, dest String, air_time Nullable(Float64), distance Float64, hour Float64, "
    "minute Float64, time_hour DateTime"
)
FLIGHTS_SCHEMA = pa.schema(
    [
        ("year", pa.int32()),
        ("month", pa.int32()),
        ("day", pa.int32()),
        ("dep_time", pa.int32()),
        ("sched_dep_time", pa.int32()),
        ("dep_delay", pa.float64()),
        ("arr_time", pa.int32()),
        ("sched_arr_time", pa.int32()),
        ("arr_delay", pa.float64()),
        ("carrier", pa.string()),
        ("flight", pa.int32()),
        ("tailnum", pa.string()),
        ("origin", pa.string()),
        ("dest", pa.string()),
        ("air_time", pa.float64()),
        ("distance", pa.float64()),
        ("hour", pa.float64()),
        ("minute", pa.float64()),
        ("time_hour", pa.timestamp("s")),
    ]
)
#: What the records path's ``convert_types`` makes of the CSV strings (empty → None).
FLIGHTS_TYPES = {
    "year": int,
    "month": int,
    "day": int,
    "dep_time": int,
    "sched_dep_time": int,
    "dep_delay": float,
    "arr_time": int,
    "sched_arr_time": int,
    "arr_delay": float,
    "flight": int,
    "tailnum": str,
    "air_time": float,
    "distance": float,
    "hour": float,
    "minute": float,
    "time_hour": "datetime",
}
#: Share of each carrier and origin in nycflights13.
CARRIERS = {
    "UA": 58665, "B6": 54635, "EV": 54173, "DL": 48110, "AA": 32729, "MQ": 26397, "US": 20536,
    "9E": 18460, "WN": 12275, "VX": 5162, "FL": 3260, "AS": 714, "F9": 685, "YV": 601,
    "HA": 342, "OO": 32,
}  # fmt: skip
ORIGINS = {"EWR": 120835, "JFK": 111279, "LGA": 104662}
#: Shares of nycflights13: cancelled (no departure), also no arrival, also no delay/air time,
#: no tail number.
CANCELLED, NO_ARRIVAL, NO_DELAY, NO_TAILNUM = 0.0245, 0.0014, 0.0021, 0.0075


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Digest:
    """What a correct copy of the flights holds: rows, the exact sum of ``distance`` (whole
    miles), and the NULL counts of ``dep_time`` and ``arr_delay``."""

    rows: int
    distance_sum: int
    dep_time_nulls: int
    arr_delay_nulls: int

    @classmethod
    def of(cls, tables: list[pa.Table]) -> Digest:
        import pyarrow.compute as pc

        rows = distance = dep = arr = 0
        for t in tables:
            rows += t.num_rows
            distance += int(pc.sum(t["distance"]).as_py() or 0)
            dep += t["dep_time"].null_count
            arr += t["arr_delay"].null_count
        return cls(rows, distance, dep, arr)

    def __add__(self, other: Digest) -> Digest:
        return Digest(
            self.rows + other.rows,
            self.distance_sum + other.distance_sum,
            self.dep_time_nulls + other.dep_time_nulls,
            self.arr_delay_nulls + other.arr_delay_nulls,
        )


class _Pools:
    """The value pools of the flights generator, made once with a fixed seed."""

    def __init__(self) -> None:
        import numpy as np

        rng = np.random.default_rng(1)
        letters = np.array(list("ABCDEFGHJKLMNPRSTUVWXYZ"))
        self.tailnums = pa.array(
            sorted(
                {
                    f"N{rng.integers(100, 1000)}{''.join(rng.choice(letters, 2))}"
                    for _ in range(4100)
                }
            )[:4043]
        )
        self.dests = pa.array(
            sorted({"".join(rng.choice(letters, 3)) for _ in range(200)} - {"EWR", "JFK", "LGA"})[
                :105
            ]
        )
        # a distance per destination, whole miles; a few long-haul
        self.dest_miles = np.concatenate(
            [rng.integers(80, 2600, 102), np.array([2586, 4963, 4983])]
        ).astype(np.float64)
        weights = rng.zipf(1.6, 105).astype(np.float64)
        self.dest_p = weights / weights.sum()
        self.carriers = pa.array(list(CARRIERS))
        self.carrier_p = np.array(list(CARRIERS.values()), dtype=np.float64)
        self.carrier_p /= self.carrier_p.sum()
        self.origins = pa.array(list(ORIGINS))
        self.origin_p = np.array(list(ORIGINS.values()), dtype=np.float64)
        self.origin_p /= self.origin_p.sum()
        hours = np.arange(5, 24)
        hour_w = np.array([4, 22, 25, 24, 19, 16, 16, 17, 21, 17, 20, 21, 23, 21, 18, 15, 10, 6, 2])
        self.hours = hours
        self.hour_p = hour_w / hour_w.sum()


_POOLS: _Pools | None = None


def flights_chunk(start: int, rows: int) -> pa.Table:
    """``rows`` flights in the nycflights13 shape, deterministic for ``start``."""
    import numpy as np
    import pyarrow.compute as pc

    global _POOLS
    if _POOLS is None:
        _POOLS = _Pools()
    p = _POOLS
    rng = np.random.default_rng([13, start])
    n = rows
    day_of_year = np.sort(rng.integers(0, 365, n))
    dates = np.datetime64("2013-01-01", "D") + day_of_year.astype("timedelta64[D]")
    months = dates.astype("datetime64[M]")
    month = (months.astype(np.int64) % 12 + 1).astype(np.int32)
    day = ((dates - months.astype("datetime64[D]")).astype(np.int64) + 1).astype(np.int32)
    sched_hour = rng.choice(p.hours, n, p=p.hour_p)
    sched_minute = rng.integers(0, 60, n)
    sched_dep_min = sched_hour * 60 + sched_minute
    dep_delay = np.round(rng.gamma(0.45, 35.0, n) - 6.0)
    dest = rng.choice(len(p.dest_p), n, p=p.dest_p)
    distance = p.dest_miles[dest]
    air_time = np.maximum(np.round(distance / 7.8 + 18 + rng.normal(0, 6, n)), 20)
    block = air_time + 25
    arr_delay = np.round(dep_delay + rng.normal(-6, 12, n))

    def hhmm(minutes: Any) -> Any:
        m = np.mod(minutes, 1440).astype(np.int32)
        return (m // 60 * 100 + m % 60).astype(np.int32)

    cancelled = rng.random(n) < CANCELLED
    no_arrival = cancelled | (rng.random(n) < NO_ARRIVAL)
    no_delay = no_arrival | (rng.random(n) < NO_DELAY)
    no_tail = rng.random(n) < NO_TAILNUM
    time_hour = dates.astype("datetime64[s]") + (sched_hour * 3600).astype("timedelta64[s]")
    arrays = [
        pa.array(np.full(n, 2013, np.int32)),
        pa.array(month),
        pa.array(day),
        pa.array(hhmm(sched_dep_min + dep_delay), mask=cancelled),
        pa.array(hhmm(sched_dep_min)),
        pa.array(dep_delay, mask=cancelled),
        pa.array(hhmm(sched_dep_min + dep_delay + block), mask=no_arrival),
        pa.array(hhmm(sched_dep_min + block)),
        pa.array(arr_delay, mask=no_delay),
        pc.take(p.carriers, pa.array(rng.choice(len(p.carrier_p), n, p=p.carrier_p))),
        pa.array(rng.integers(1, 8500, n).astype(np.int32)),
        pc.if_else(
            pa.array(no_tail),
            pa.scalar(None, pa.string()),
            pc.take(p.tailnums, pa.array(rng.integers(0, len(p.tailnums), n))),
        ),
        pc.take(p.origins, pa.array(rng.choice(3, n, p=p.origin_p))),
        pc.take(p.dests, pa.array(dest)),
        pa.array(air_time, mask=no_delay),
        pa.array(distance),
        pa.array(sched_hour.astype(np.float64)),
        pa.array(sched_minute.astype(np.float64)),
        pa.array(time_hour, type=pa.timestamp("s")),
    ]
    return pa.Table.from_arrays(arrays, schema=FLIGHTS_SCHEMA)


def flights(rows: int) -> Iterator[pa.Table]:
    """The flights in tables of ``ARROW_BATCH`` rows."""
    for start in range(0, rows, ARROW_BATCH):
        yield flights_chunk(start, min(ARROW_BATCH, rows - start))


def write_flights(folder: str, rows: int, kinds: set[str]) -> tuple[dict[str, str], Digest]:
    """Write ``rows`` flights as the files named by ``kinds`` (``arrows``: an Arrow IPC stream;
    ``csv``; ``tsv``: for ClickHouse, ``\\N`` for NULL; ``parquet``: zstd, row groups of
    ``ROW_GROUP``) in one pass; return their paths and the digest of the rows."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    paths = {kind: os.path.join(folder, f"flights-{rows}.{kind}") for kind in kinds}
    with contextlib.ExitStack() as stack:
        writers: list[Callable[[pa.Table], None]] = []
        if "arrows" in kinds:
            writers.append(
                stack.enter_context(ipc.new_stream(paths["arrows"], FLIGHTS_SCHEMA)).write_table
            )
        if "csv" in kinds:
            writers.append(
                stack.enter_context(pacsv.CSVWriter(paths["csv"], FLIGHTS_SCHEMA)).write_table
            )
        if "tsv" in kinds:
            options = pacsv.WriteOptions(
                include_header=False, delimiter="\t", quoting_style="none", null_string="\\N"
            )
            tsv = pacsv.CSVWriter(paths["tsv"], FLIGHTS_SCHEMA, write_options=options)
            writers.append(stack.enter_context(tsv).write_table)
        pending: list[pa.Table] = []
        parquet = None
        if "parquet" in kinds:
            parquet = stack.enter_context(
                pq.ParquetWriter(paths["parquet"], FLIGHTS_SCHEMA, compression="zstd")
            )
        digest = Digest(0, 0, 0, 0)
        for chunk in flights(rows):
            for write in writers:
                write(chunk)
            digest += Digest.of([chunk])
            if parquet is not None:
                pending.append(chunk)
                if sum(t.num_rows for t in pending) >= ROW_GROUP:
                    parquet.write_table(pa.concat_tables(pending), row_group_size=ROW_GROUP)
                    pending = []
        if parquet is not None and pending:
            parquet.write_table(pa.concat_tables(pending), row_group_size=ROW_GROUP)
    return paths, digest


def simple_chunk(start: int, stop: int) -> pa.Table:
    """Rows ``start..stop`` of the simple data set, the values the server makes for them."""
    import numpy as np
    import pyarrow.compute as pc

    ids = np.arange(start, stop, dtype=np.uint64)
    return pa.table(
        {
            "id": ids,
            "name": pc.binary_join_element_wise("name-", pc.cast(pa.array(ids), pa.string()), ""),
            "value": ids.astype(np.float64) / 7,
        }
    )


def write_simple(path: str, rows: int) -> None:
    """The simple rows as an Arrow IPC stream of ``INSERT_BATCH``-row batches."""
    schema = simple_chunk(0, 1).schema
    with ipc.new_stream(path, schema) as writer:
        for start in range(0, rows, INSERT_BATCH):
            writer.write_table(simple_chunk(start, min(rows, start + INSERT_BATCH)))


def read_stream(path: str) -> Iterator[pa.Table]:
    """The record batches of an Arrow IPC stream file, one table each (the shared source)."""
    with pa.OSFile(path, "rb") as source, ipc.open_stream(source) as reader:
        for batch in reader:
            yield pa.Table.from_batches([batch])


def parquet_digest(paths: list[str]) -> Digest:
    import pyarrow.parquet as pq

    columns = ["distance", "dep_time", "arr_delay"]
    return Digest.of([pq.read_table(p, columns=columns) for p in sorted(paths)])


# --------------------------------------------------------------------------- child jobs
#
# A job is prepared (imports, objects) outside the clock and returns the callable that is
# timed; that returns the figures to check (``rows`` at least).

Job = Callable[[dict[str, Any]], Callable[[], dict[str, Any]]]


def _run(pipeline: Any) -> Any:
    import anyio

    return anyio.run(pipeline.run)


def job_ch_extract(p: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    import pyarrow.compute as pc

    from ductwork import create_clickhouse_extractor, create_el_pipeline, loader

    arrow = p["batch_format"] == "arrow"
    seen = {"rows": 0, "id_sum": 0}

    def count_tables(batch: pa.Table) -> None:
        if not isinstance(batch, pa.Table):
            raise AssertionError(f"expected a pyarrow.Table, got {type(batch).__name__}")
        seen["rows"] += batch.num_rows
        seen["id_sum"] += int(pc.sum(batch["id"]).as_py() or 0)

    def count_records(batch: list[dict[str, Any]]) -> None:
        seen["rows"] += len(batch)

    def run() -> dict[str, Any]:
        if arrow:
            extractor = create_clickhouse_extractor(
                p["query"], p["url"], batch_size=ARROW_BATCH, batch_format="arrow"
            )
            sink = loader(count_tables, batch_format="arrow")
        else:
            extractor = create_clickhouse_extractor(p["query"], p["url"], batch_size=RECORDS_BATCH)
            sink = loader(count_records)
        _run(create_el_pipeline(extractor, sink, logging=False))
        return dict(seen) if arrow else {"rows": seen["rows"]}

    return run


def job_ch_load(p: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    from ductwork import create_clickhouse_loader, create_el_pipeline, create_file_extractor

    per_insert = CLIENT_BLOCK if p["batch_format"] == "arrow" else INSERT_BATCH
    target = create_clickhouse_loader(p["table"], batch_size=per_insert, connection_config=p["url"])
    if p["batch_format"] == "arrow":
        source: Any = create_file_extractor(p["src"], batch_format="arrow", batch_size=per_insert)
        id_sum = None
    else:
        from benchmarks.bench_clickhouse import insert_batches

        batches = insert_batches("simple", p["rows"])
        id_sum = sum(r["id"] for b in batches for r in b)

        async def source() -> AsyncIterator[list[dict[str, Any]]]:
            for batch in batches:
                yield batch

    def run() -> dict[str, Any]:
        result = _run(create_el_pipeline(source, target, logging=False))
        rows = int(result.stage("clickhouse").metrics["rows_inserted"])
        return {"rows": rows, "id_sum": id_sum}

    return run


def job_csv_to_ch(p: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    from ductwork import (
        convert_types,
        create_clickhouse_loader,
        create_el_pipeline,
        create_etl_pipeline,
        create_file_extractor,
    )

    target = create_clickhouse_loader(
        p["table"], batch_size=INSERT_BATCH, connection_config=p["url"]
    )
    if p["batch_format"] == "arrow":
        pipeline = create_el_pipeline(
            create_file_extractor(p["src"], batch_format="arrow", batch_size=ARROW_BATCH),
            target,
            logging=False,
        )
    else:
        pipeline = create_etl_pipeline(
            create_file_extractor(p["src"], batch_size=RECORDS_BATCH),
            [convert_types(FLIGHTS_TYPES, empty_as_none=True)],
            target,
            logging=False,
        )

    def run() -> dict[str, Any]:
        result = _run(pipeline)
        return {"rows": int(result.stage("clickhouse").metrics["rows_inserted"])}

    return run


def job_ch_to_parquet(p: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    from ductwork import create_clickhouse_extractor, create_el_pipeline, create_file_loader

    if p["batch_format"] == "arrow":
        extractor = create_clickhouse_extractor(
            p["query"], p["url"], batch_size=ARROW_BATCH, batch_format="arrow"
        )
        target = create_file_loader(p["dst"])
    else:
        extractor = create_clickhouse_extractor(p["query"], p["url"], batch_size=RECORDS_BATCH)
        target = create_file_loader(p["dst"], schema=FLIGHTS_SCHEMA)
    pipeline = create_el_pipeline(extractor, target, logging=False)

    def run() -> dict[str, Any]:
        return {"rows": _run(pipeline).records_out}

    return run


def job_parquet_write(p: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    src, dst = p["src"], p["dst"]
    if p["tool"] == "pyarrow":
        import pyarrow.parquet as pq

        def by_hand() -> dict[str, Any]:
            rows = 0
            pending: list[pa.Table] = []
            with pq.ParquetWriter(dst, FLIGHTS_SCHEMA, compression="zstd") as writer:
                for t in read_stream(src):
                    rows += t.num_rows
                    pending.append(t)
                    if sum(x.num_rows for x in pending) >= ROW_GROUP:
                        whole = pa.concat_tables(pending)
                        cut = whole.num_rows // ROW_GROUP * ROW_GROUP
                        writer.write_table(whole.slice(0, cut), row_group_size=ROW_GROUP)
                        pending = [whole.slice(cut)]
                if pending:
                    writer.write_table(pa.concat_tables(pending), row_group_size=ROW_GROUP)
            with open(dst, "rb+") as fh:
                os.fsync(fh.fileno())
            return {"rows": rows}

        return by_hand
    from ductwork import create_el_pipeline, create_file_loader

    async def source() -> AsyncIterator[pa.Table]:
        for t in read_stream(src):
            yield t

    compression = p.get("compression", "infer")
    pipeline = create_el_pipeline(
        source, create_file_loader(dst, compression=compression), logging=False
    )

    def run() -> dict[str, Any]:
        return {"rows": _run(pipeline).records_out}

    return run


def job_parquet_read(p: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    src = p["src"]
    if p["tool"] == "pyarrow":
        import pyarrow.parquet as pq

        def by_hand() -> dict[str, Any]:
            rows = 0
            with pq.ParquetFile(src) as file:
                for batch in file.iter_batches(batch_size=ARROW_BATCH):
                    rows += batch.num_rows
            return {"rows": rows}

        return by_hand
    from ductwork import create_file_extractor

    return _count_rows(create_file_extractor(src, batch_format="arrow", batch_size=ARROW_BATCH))


def job_dlt(p: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    src, folder = p["src"], p["folder"]
    if p["tool"] == "ductwork":
        dst = dlt_output(folder, "ductwork")[0]
        return job_parquet_write(
            {"tool": "ductwork", "src": src, "dst": dst, "compression": "snappy"}
        )
    from benchmarks.bench_dlt import dlt_environment

    os.environ.update(dlt_environment(folder))
    os.makedirs(os.environ["DLT_PROJECT_DIR"], exist_ok=True)
    import dlt

    @dlt.resource(name="flights")
    def rows() -> Iterator[pa.Table]:
        yield from read_stream(src)

    def run() -> dict[str, Any]:
        pipeline = dlt.pipeline(
            pipeline_name="bench_arrow",
            pipelines_dir=os.path.join(folder, "dlt-pipelines"),
            destination=dlt.destinations.filesystem(bucket_url=os.path.join(folder, "out")),
            dataset_name="bench",
        )
        info = pipeline.run(rows(), loader_file_format="parquet")
        info.raise_on_failed_jobs()
        trace = pipeline.last_trace
        steps = {
            s.step: (s.finished_at - s.started_at).total_seconds()
            for s in (trace.steps if trace else [])
            if s.step in ("extract", "normalize", "load") and s.finished_at
        }
        normalized = trace.last_normalize_info if trace else None
        count = normalized.row_counts.get("flights", 0) if normalized else 0
        return {"rows": count, "steps": steps}

    return run


def dlt_output(folder: str, tool: str) -> list[str]:
    """Where a tool of the dlt case writes (dlt: its load files; ductwork: one file)."""
    if tool == "dlt":
        return glob.glob(os.path.join(folder, "out", "bench", "flights", "*.parquet"))
    return [os.path.join(folder, "ductwork.parquet")]


def job_http_extract(p: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    from ductwork import create_http_extractor

    return _count_rows(
        create_http_extractor(
            p["url"],
            response_format="ndjson",
            batch_format="arrow",
            batch_size=ARROW_BATCH,
            timeout=60,
        )
    )


def _count_rows(extractor: Any) -> Callable[[], dict[str, Any]]:
    """The timed run of ``extractor`` into a loader counting the rows of its Arrow batches."""
    from ductwork import create_el_pipeline, loader

    seen = [0]

    def count(batch: pa.Table) -> None:
        seen[0] += batch.num_rows

    pipeline = create_el_pipeline(extractor, loader(count, batch_format="arrow"), logging=False)

    def run() -> dict[str, Any]:
        _run(pipeline)
        return {"rows": seen[0]}

    return run


JOBS: dict[str, Job] = {
    "ch-extract": job_ch_extract,
    "ch-load": job_ch_load,
    "csv-to-ch": job_csv_to_ch,
    "ch-to-parquet": job_ch_to_parquet,
    "parquet-write": job_parquet_write,
    "parquet-read": job_parquet_read,
    "dlt": job_dlt,
    "http-extract": job_http_extract,
}


def child(job: str, params: dict[str, Any]) -> None:
    """One measurement, in its own process: emit seconds, figures and peak RSS."""
    logging.disable(logging.CRITICAL)
    t0 = perf_counter()
    run = JOBS[job](params)
    _start_event_loop_once()
    import_seconds = perf_counter() - t0
    before = rss_mb()
    t0 = perf_counter()
    figures = run()
    seconds = perf_counter() - t0
    emit(job=job, seconds=seconds, import_seconds=import_seconds, rss_before_mb=before, **figures)


def _start_event_loop_once() -> None:
    """Start (and end) an event loop and its worker thread once, before the clock: the first
    ``anyio.run`` of a process imports its backend and takes about 60 ms here, a start-up cost
    like the imports, which a by-hand baseline does not pay."""
    import anyio

    async def touch() -> None:
        await anyio.to_thread.run_sync(lambda: None)

    anyio.run(touch)


def in_child(job: str, **params: Any) -> dict[str, Any]:
    return run_child("benchmarks.bench_arrow", "--child", job, json.dumps(params))


# --------------------------------------------------------------------------- the cases


@dataclass
class Tool:
    """One side of a comparison: how to run it once, and what it must reach against the
    baseline of its group (a speed ratio, a peak RSS)."""

    name: str
    label: str
    run: Callable[[], dict[str, Any]]
    target: float | None = None
    aim: float | None = None
    rss_target_mb: float | None = None


@dataclass
class Group:
    case: str
    job: str
    rows: int
    tools: list[Tool]
    samples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def measure(self, repeats: int) -> None:
        self.samples = {tool.name: [] for tool in self.tools}

        def case(tool: Tool) -> Callable[[], float]:
            def one() -> float:
                sample = tool.run()
                if sample["rows"] != self.rows:
                    raise AssertionError(
                        f"{self.case} {self.job}: {tool.label} reported {sample['rows']:,} "
                        f"rows, not {self.rows:,}"
                    )
                self.samples[tool.name].append(sample)
                return float(sample["seconds"])

            return one

        interleave({tool.name: case(tool) for tool in self.tools}, rounds=repeats, warmup=0)

    def rows_out(self) -> list[dict[str, Any]]:
        seconds = {name: [s["seconds"] for s in got] for name, got in self.samples.items()}
        base = self.tools[0]
        out = []
        for tool in self.tools:
            got = self.samples[tool.name]
            secs = spread(seconds[tool.name])
            ratio = paired_ratio(seconds[base.name], seconds[tool.name])
            peaks = [s.get("peak_rss_mb") for s in got]
            befores = [s.get("rss_before_mb") for s in got]
            row: dict[str, Any] = {
                "case": self.case,
                "job": self.job,
                "tool": tool.name,
                "label": tool.label,
                "baseline": base.label,
                "rows": self.rows,
                "repeats": len(got),
                "rows_per_s": self.rows / secs.median,
                "rows_per_s_min": self.rows / secs.high,
                "rows_per_s_max": self.rows / secs.low,
                "ratio": ratio.median,
                "ratio_min": ratio.low,
                "ratio_max": ratio.high,
                "target": tool.target,
                "aim": tool.aim,
                "rss_target_mb": tool.rss_target_mb,
                "peak_rss_mb": max(peaks) if None not in peaks else None,
                "rss_before_mb": spread(befores).median if None not in befores else None,
            }
            steps = [s["steps"] for s in got if s.get("steps")]
            if steps:
                row["steps"] = {k: spread([s.get(k, 0.0) for s in steps]).median for k in steps[0]}
            met = []
            if tool.target is not None:
                met.append(ratio.median >= tool.target)
            if tool.rss_target_mb is not None and row["peak_rss_mb"] is not None:
                met.append(row["peak_rss_mb"] <= tool.rss_target_mb)
            row["met"] = all(met) if met else None
            out.append(row)
        return out


def native_run(cmd: list[str], stdin: str | None = None) -> dict[str, Any]:
    """Run a native command with stdout to /dev/null: its wall time and peak RSS (``wait4``)."""
    with contextlib.ExitStack() as stack:
        null = stack.enter_context(open(os.devnull, "wb"))
        data = stack.enter_context(open(stdin, "rb")) if stdin else subprocess.DEVNULL
        t0 = perf_counter()
        proc = subprocess.Popen(cmd, stdin=data, stdout=null)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} exited with {proc.returncode}")
    return {"seconds": seconds, "peak_rss_mb": usage.ru_maxrss / 1024, "rss_before_mb": None}


@dataclass
class Env:
    """What the cases share: the work folder, the server, the sizes."""

    folder: str
    args: argparse.Namespace
    url: str = ""
    client: list[str] | None = None
    simple_rows: int = 0
    files: dict[tuple[str, int], str] = field(default_factory=dict)
    digests: dict[int, Digest] = field(default_factory=dict)

    def flights_files(self, rows: int, kinds: set[str]) -> dict[str, str]:
        missing = {k for k in kinds if (k, rows) not in self.files}
        if missing:
            paths, digest = write_flights(self.folder, rows, missing)
            self.digests[rows] = digest
            for kind, path in paths.items():
                self.files[(kind, rows)] = path
        return {k: self.files[(k, rows)] for k in kinds}


def sql(env: Env, statement: str) -> str:
    from benchmarks._clickhouse import run_sql

    return run_sql(env.url, statement)


def post_file(env: Env, statement: str, path: str) -> None:
    """``statement`` with the file as its data, streamed over HTTP."""
    import httpx

    def chunks() -> Iterator[bytes]:
        with open(path, "rb") as fh:
            while block := fh.read(1 << 20):
                yield block

    response = httpx.post(env.url, params={"query": statement}, content=chunks(), timeout=None)
    if response.status_code != 200:
        raise RuntimeError(response.text)


def dump_query(env: Env, query: str, path: str) -> None:
    import httpx

    with (
        open(path, "wb") as fh,
        httpx.stream("POST", env.url, content=query.encode(), timeout=None) as response,
    ):
        if response.status_code != 200:
            raise RuntimeError(response.read().decode())
        for block in response.iter_bytes(1 << 20):
            fh.write(block)


def ch_digest(env: Env, target: str) -> Digest:
    out = sql(
        env,
        f"SELECT count(), toInt64(sum(distance)), countIf(isNull(dep_time)), "
        f"countIf(isNull(arr_delay)) FROM {target} FORMAT TSV",
    )
    rows, distance, dep, arr = (int(x) for x in out.split())
    return Digest(rows, distance, dep, arr)


def check(what: str, got: Any, expected: Any) -> None:
    if got != expected:
        raise AssertionError(f"{what}: got {got!r}, expected {expected!r}")


def ensure_simple(env: Env, rows: int) -> None:
    """The simple table with at least ``rows`` rows (made by the server)."""
    if env.simple_rows >= rows:
        return
    sql(env, f"DROP TABLE IF EXISTS {SIMPLE_TABLE}")
    sql(env, f"CREATE TABLE {SIMPLE_TABLE} ({SIMPLE_COLUMNS}) ENGINE = MergeTree ORDER BY id")
    sql(env, f"INSERT INTO {SIMPLE_TABLE} {SIMPLE_SELECT.format(rows=rows)}")
    env.simple_rows = rows


def case_clickhouse(env: Env, repeats: int) -> list[Group]:
    rows = env.args.rows
    ensure_simple(env, rows)
    query = f"SELECT id, name, value FROM {SIMPLE_TABLE} LIMIT {rows}"
    id_sum = rows * (rows - 1) // 2

    def extract(fmt: str) -> Callable[[], dict[str, Any]]:
        def run() -> dict[str, Any]:
            out = in_child("ch-extract", url=env.url, query=query, batch_format=fmt)
            if fmt == "arrow":
                check("arrow extract: sum of id", out["id_sum"], id_sum)
            return out

        return run

    tools = [Tool("arrow", "ductwork arrow", extract("arrow"), target=0.8, aim=1.0)]
    tools.append(Tool("records", "ductwork records", extract("records")))
    if env.client:
        client = env.client

        def native_extract() -> dict[str, Any]:
            return native_run([*client, "--query", f"{query} FORMAT TSV"]) | {"rows": rows}

        tools.insert(0, Tool("client", "clickhouse-client, TSV > /dev/null", native_extract))
    groups = [Group("clickhouse", "extract (UInt64, String, Float64)", rows, tools)]

    target = "bench_arrow_dst"
    sql(env, f"DROP TABLE IF EXISTS {target}")
    sql(env, f"CREATE TABLE {target} ({SIMPLE_COLUMNS}) ENGINE = MergeTree ORDER BY id")
    tsv = os.path.join(env.folder, f"rows-{rows}.tsv")
    dump_query(env, f"{query} FORMAT TSV", tsv)
    arrows = os.path.join(env.folder, f"rows-{rows}.arrows")
    write_simple(arrows, rows)

    def loaded(out: dict[str, Any], expected_sum: int) -> dict[str, Any]:
        got = sql(env, f"SELECT count(), sum(id) FROM {target} FORMAT TSV").split()
        check("rows loaded, sum of id", (int(got[0]), int(got[1])), (rows, expected_sum))
        return out

    def load(fmt: str) -> Callable[[], dict[str, Any]]:
        def run() -> dict[str, Any]:
            sql(env, f"TRUNCATE TABLE {target}")
            out = in_child(
                "ch-load", url=env.url, table=target, batch_format=fmt, src=arrows, rows=rows
            )
            return loaded(out, id_sum if fmt == "arrow" else out["id_sum"])

        return run

    tools = [Tool("arrow", "ductwork arrow, 1,048,576 rows/insert", load("arrow"), target=0.8)]
    tools.append(Tool("records", "ductwork records, 100,000 rows/insert", load("records")))
    if env.client:
        client = env.client

        def native_load() -> dict[str, Any]:
            sql(env, f"TRUNCATE TABLE {target}")
            out = native_run([*client, "--query", f"INSERT INTO {target} FORMAT TSV"], tsv)
            return loaded(out | {"rows": rows}, id_sum)

        tools.insert(0, Tool("client", "clickhouse-client, TSV file", native_load))
    groups.append(Group("clickhouse", "load (UInt64, String, Float64)", rows, tools))
    for g in groups:
        g.measure(repeats)
    sql(env, f"DROP TABLE {target}")
    os.unlink(tsv)
    os.unlink(arrows)
    return groups


def case_flights(env: Env, repeats: int) -> list[Group]:
    rows = env.args.flights
    files = env.flights_files(rows, {"csv", "tsv"})
    expected = env.digests[rows]
    source, target = "bench_arrow_flights", "bench_arrow_flights_dst"
    for name in (source, target):
        sql(env, f"DROP TABLE IF EXISTS {name}")
        sql(env, f"CREATE TABLE {name} ({FLIGHTS_DDL}) ENGINE = MergeTree ORDER BY time_hour")
    post_file(env, f"INSERT INTO {source} FORMAT TabSeparated", files["tsv"])
    check("flights in ClickHouse", ch_digest(env, source), expected)

    def csv_to_ch(fmt: str) -> Callable[[], dict[str, Any]]:
        def run() -> dict[str, Any]:
            sql(env, f"TRUNCATE TABLE {target}")
            out = in_child(
                "csv-to-ch", url=env.url, table=target, src=files["csv"], batch_format=fmt
            )
            check(f"CSV → ClickHouse ({fmt})", ch_digest(env, target), expected)
            return out

        return run

    dst = os.path.join(env.folder, "flights-out.parquet")

    def ch_to_parquet(fmt: str) -> Callable[[], dict[str, Any]]:
        def run() -> dict[str, Any]:
            query = f"SELECT * FROM {source}"
            out = in_child("ch-to-parquet", url=env.url, query=query, dst=dst, batch_format=fmt)
            check(f"ClickHouse → Parquet ({fmt})", parquet_digest([dst]), expected)
            os.unlink(dst)
            return out

        return run

    groups = [
        Group(
            "flights",
            "CSV file → ClickHouse",
            rows,
            [
                Tool("records", "ductwork records (+ convert_types)", csv_to_ch("records")),
                Tool("arrow", "ductwork arrow", csv_to_ch("arrow"), 5.0, 10.0, 150.0),
            ],
        ),
        Group(
            "flights",
            "ClickHouse → Parquet file",
            rows,
            [
                Tool("records", "ductwork records", ch_to_parquet("records")),
                Tool("arrow", "ductwork arrow", ch_to_parquet("arrow"), 5.0, 10.0, 150.0),
            ],
        ),
    ]
    for g in groups:
        g.measure(repeats)
    for name in (source, target):
        sql(env, f"DROP TABLE {name}")
    return groups


def case_parquet(env: Env, repeats: int) -> list[Group]:
    rows = env.args.flights
    files = env.flights_files(rows, {"arrows", "parquet"})
    expected = env.digests[rows]
    dst = os.path.join(env.folder, "written.parquet")

    def write(tool: str) -> Callable[[], dict[str, Any]]:
        def run() -> dict[str, Any]:
            out = in_child("parquet-write", tool=tool, src=files["arrows"], dst=dst)
            check(f"Parquet written by {tool}", parquet_digest([dst]), expected)
            os.unlink(dst)
            return out

        return run

    def read(tool: str) -> Callable[[], dict[str, Any]]:
        return lambda: in_child("parquet-read", tool=tool, src=files["parquet"])

    groups = [
        Group(
            "parquet",
            "Arrow IPC → Parquet file (zstd)",
            rows,
            [
                Tool("pyarrow", "pq.ParquetWriter by hand", write("pyarrow")),
                Tool("ductwork", "ductwork create_file_loader", write("ductwork"), 0.9),
            ],
        ),
        Group(
            "parquet",
            "read a Parquet file",
            rows,
            [
                Tool("pyarrow", "ParquetFile.iter_batches by hand", read("pyarrow")),
                Tool("ductwork", "ductwork create_file_extractor", read("ductwork"), 0.9),
            ],
        ),
    ]
    for g in groups:
        g.measure(repeats)
    return groups


def case_dlt(env: Env, repeats: int) -> list[Group]:
    if importlib.util.find_spec("dlt") is None:
        print(f"{NO_DLT}: the dlt case is skipped\n", flush=True)
        return []
    rows = env.args.dlt_rows
    src = env.flights_files(rows, {"arrows"})["arrows"]
    expected = env.digests[rows]
    counter = [0]

    def run(tool: str) -> Callable[[], dict[str, Any]]:
        def one() -> dict[str, Any]:
            counter[0] += 1
            work = os.path.join(env.folder, f"dlt-{tool}-{counter[0]}")
            os.mkdir(work)
            out = in_child("dlt", tool=tool, src=src, folder=work)
            check(f"Parquet written by {tool}", parquet_digest(dlt_output(work, tool)), expected)
            shutil.rmtree(work)
            return out

        return one

    group = Group(
        "dlt",
        "Arrow tables → Parquet (snappy)",
        rows,
        [
            Tool("dlt", f"dlt {_version('dlt')} filesystem destination", run("dlt")),
            Tool("ductwork", "ductwork create_file_loader", run("ductwork"), 1.1),
        ],
    )
    group.measure(repeats)
    return [group]


def case_rss(env: Env, repeats: int) -> list[dict[str, Any]]:
    small = env.args.rss_rows
    sizes = (small, small * 10)
    sources: dict[str, Callable[[int], dict[str, Any]]] = {}
    if env.url:
        ensure_simple(env, sizes[1])

        def clickhouse(n: int) -> dict[str, Any]:
            query = f"SELECT id, name, value FROM {SIMPLE_TABLE} LIMIT {n}"
            return in_child("ch-extract", url=env.url, query=query, batch_format="arrow")

        sources["ClickHouse (UInt64, String, Float64)"] = clickhouse
    parquet = {n: env.flights_files(n, {"parquet"})["parquet"] for n in sizes}

    def parquet_read(n: int) -> dict[str, Any]:
        return in_child("parquet-read", tool="ductwork", src=parquet[n])

    sources["Parquet file (flights)"] = parquet_read
    from benchmarks.bench_http import local_server

    stack = contextlib.ExitStack()
    base = stack.enter_context(local_server())

    def http(n: int) -> dict[str, Any]:
        return in_child("http-extract", url=f"{base}/ndjson?records={n}")

    sources["HTTP NDJSON body"] = http
    out = []
    with stack:
        for label, fn in sources.items():
            peaks: dict[int, list[float]] = {n: [] for n in sizes}
            befores: list[float] = []
            for _ in range(repeats):
                for n in sizes:
                    got = fn(n)
                    check(f"{label}: rows extracted", got["rows"], n)
                    peaks[n].append(got["peak_rss_mb"])
                    befores.append(got["rss_before_mb"])
            growth = spread([b / a for a, b in zip(peaks[sizes[0]], peaks[sizes[1]], strict=True)])
            out.append(
                {
                    "source": label,
                    "rows": sizes[0],
                    "rows_10x": sizes[1],
                    "peak_rss_mb": spread(peaks[sizes[0]]).median,
                    "peak_rss_10x_mb": spread(peaks[sizes[1]]).median,
                    "rss_before_mb": spread(befores).median,
                    "growth": growth.median,
                    "growth_min": growth.low,
                    "growth_max": growth.high,
                    "target": 1.1,
                    "met": growth.median <= 1.1,
                }
            )
    return out


def _version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "?"


# --------------------------------------------------------------------------- report


def _target(r: dict[str, Any]) -> str:
    parts = []
    if r["target"] is not None:
        parts.append(f"≥ {r['target']:g}x" + (f" (aim {r['aim']:g}x)" if r["aim"] else ""))
    if r["rss_target_mb"] is not None:
        parts.append(f"≤ {r['rss_target_mb']:g} MiB")
    return ", ".join(parts) or "-"


def _met(value: bool | None) -> str:
    return "-" if value is None else "yes" if value else "**no**"


SPEED_HEADERS = [
    "case",
    "job",
    "tool",
    "rows",
    "rows/s (min-max)",
    "vs the first tool (min-max)",
    "target",
    "met",
    "peak RSS MiB (after imports)",
]
RSS_HEADERS = [
    "arrow extract",
    "rows",
    "peak RSS MiB",
    "10x rows",
    "peak RSS MiB",
    "growth (min-max)",
    "target",
    "met",
]


def _speed_cells(r: dict[str, Any]) -> list[str]:
    rss = "-"
    if r["peak_rss_mb"] is not None:
        rss = f"{r['peak_rss_mb']:.0f}"
        if r["rss_before_mb"] is not None:
            rss += f" ({r['rss_before_mb']:.0f})"
    return [
        r["case"],
        r["job"],
        r["label"],
        f"{r['rows']:,}",
        span(r, "rows_per_s"),
        "1.00" if r["label"] == r["baseline"] else span(r, "ratio", ".2f"),
        _target(r),
        _met(r["met"]),
        rss,
    ]


def _rss_cells(r: dict[str, Any]) -> list[str]:
    return [
        r["source"],
        f"{r['rows']:,}",
        f"{r['peak_rss_mb']:.0f}",
        f"{r['rows_10x']:,}",
        f"{r['peak_rss_10x_mb']:.0f}",
        span(r, "growth", ".2f"),
        f"≤ {r['target']:g}x",
        _met(r["met"]),
    ]


def render(rows: list[dict[str, Any]], rss: list[dict[str, Any]]) -> str:
    parts = []
    if rows:
        parts.append(table(SPEED_HEADERS, [_speed_cells(r) for r in rows]))
    if rss:
        parts.append(table(RSS_HEADERS, [_rss_cells(r) for r in rss]))
    return "\n\n".join(parts)


def notes(rows: list[dict[str, Any]], rss: list[dict[str, Any]]) -> list[str]:
    lines = []
    for r in rows:
        if r.get("steps"):
            steps = ", ".join(f"{k} {v:.2f}" for k, v in r["steps"].items())
            lines.append(f"{r['label']} steps, median seconds: {steps}")
    before: dict[str, list[float]] = {"ductwork": [], "pyarrow": []}
    for r in [*rows, *rss]:
        if r.get("rss_before_mb") is not None:
            side = "pyarrow" if r.get("tool") == "pyarrow" else "ductwork"
            if r.get("tool") != "dlt":
                before[side].append(r["rss_before_mb"])
    if before["ductwork"]:
        line = (
            "RSS before the run (the interpreter and the imports): "
            f"{spread(before['ductwork']).median:.0f} MiB in a ductwork process"
        )
        if before["pyarrow"]:
            line += f", {spread(before['pyarrow']).median:.0f} MiB in a process of pyarrow alone"
        lines.append(line + ".")
    return lines


# --------------------------------------------------------------------------- driver


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="clickhouse case rows")
    parser.add_argument(
        "--flights", type=int, default=3 * NYCFLIGHTS_ROWS, help="flights and parquet case rows"
    )
    parser.add_argument("--dlt-rows", type=int, default=2_000_000)
    parser.add_argument(
        "--rss-rows", type=int, default=1_000_000, help="rss case: this many rows and 10x"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cases", default=",".join(CASES), help=f"subset of {','.join(CASES)}")
    parser.add_argument("--json", help="write the rows to this JSON file")
    parser.add_argument("--dir", help="folder for the data files (default: a temporary one)")
    parser.add_argument("--child", nargs=2, metavar=("JOB", "PARAMS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child[0], json.loads(args.child[1]))
        return []
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        raise SystemExit(f"unknown case(s) {unknown}; choose from {list(CASES)}")
    logging.disable(logging.CRITICAL)
    rows: list[dict[str, Any]] = []
    rss: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        folder = stack.enter_context(
            tempfile.TemporaryDirectory(prefix="ductwork-bench-arrow-", dir=args.dir)
        )
        env = Env(folder, args)
        version = "-"
        if {"clickhouse", "flights", "rss"} & set(cases):
            from benchmarks._clickhouse import server
            from benchmarks.bench_clickhouse import native_client

            srv = stack.enter_context(server())
            env.url, env.client = srv.url, native_client(srv)
            version = sql(env, "SELECT version()").strip()
        print(
            f"arrow: cases {', '.join(cases)}; clickhouse {args.rows:,} rows, flights "
            f"{args.flights:,}, dlt {args.dlt_rows:,}, rss {args.rss_rows:,} and 10x; ClickHouse "
            f"{version}; pyarrow {pa.__version__}; {machine()}; median of {args.repeats}, each "
            f"run in a fresh process\n",
            flush=True,
        )
        runners = {
            "clickhouse": case_clickhouse,
            "flights": case_flights,
            "parquet": case_parquet,
            "dlt": case_dlt,
        }
        for name in cases:
            if name == "rss":
                rss = case_rss(env, args.repeats)
            else:
                for group in runners[name](env, args.repeats):
                    rows.extend(group.rows_out())
    print(render(rows, rss))
    for line in notes(rows, rss):
        print(f"\n{line}")
    everything = [*rows, *({"case": "rss", **r} for r in rss)]
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": machine(), "rows": everything}, fh, indent=2)
    sys.stdout.flush()
    return everything


if __name__ == "__main__":
    main()

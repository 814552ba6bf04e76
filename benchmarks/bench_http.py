"""HTTP extractor: paginated JSON with latency, and a streamed JSON Lines body.

A local server runs in its own process (benchmarks/_http_server.py). Two measurements, each
beside a hand-written httpx loop doing the same work in the same run:

1. Paged JSON: ``--pages`` pages of ``--per-page`` records, each answered after ``--latency``
   seconds. A hand-written sequential httpx loop and a hand-written concurrent one (a task per
   page behind a semaphore of 8), beside the ductwork extractor fetching one page at a time and
   with ``concurrency=8``; records/s and ratios.
2. Streamed JSON Lines: ``--records`` records in one body. A hand-written loop over
   ``response.aiter_lines()`` with ``orjson.loads`` against the extractor; records/s, and the
   peak RSS of extracting ``--records`` and ``--scale`` times as many in fresh processes
   (constant memory shows as a growth ratio near 1.0).

    python -m benchmarks.bench_http [--pages 200] [--per-page 1000] [--latency 0.02]
                                    [--records 1000000] [--scale 5] [--repeats 3] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
from contextlib import contextmanager
from typing import Any

import anyio
import httpx
import orjson

from benchmarks._util import Timing, machine, peak_rss_mb, run_isolated, table
from ductwork import Batch, PageNumberPagination, create_el_pipeline, create_http_extractor


@contextmanager
def local_server() -> Any:
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks._http_server"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"benchmark server did not start: {line!r}")
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


class Counter:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self, batch: Batch) -> None:
        self.count += len(batch)


def timed(fn: Any, repeats: int) -> Timing:
    samples = []
    for _ in range(repeats):
        samples.append(anyio.run(fn))
    return Timing.of(samples)


# --------------------------------------------------------------------------- paged JSON


def paged(base: str, pages: int, per_page: int, latency: float, repeats: int) -> dict[str, Any]:
    total = pages * per_page
    url = f"{base}/pages?pages={pages}&latency={latency}"

    async def loop() -> float:
        t0 = anyio.current_time()
        count = 0
        async with httpx.AsyncClient() as client:
            page = 1
            while True:
                query = {"pages": pages, "latency": latency, "page": page, "per_page": per_page}
                response = await client.get(f"{base}/pages", params=query)
                response.raise_for_status()
                records = orjson.loads(response.content)["data"]
                if not records:
                    break
                count += len(records)
                page += 1
        assert count == total
        return anyio.current_time() - t0

    async def gather8() -> float:
        # the usual hand-written concurrent version: one task per page behind a semaphore
        t0 = anyio.current_time()
        limit = anyio.Semaphore(8)
        results: dict[int, list[Any]] = {}

        async def one(client: httpx.AsyncClient, page: int) -> None:
            async with limit:
                query = {"pages": pages, "latency": latency, "page": page, "per_page": per_page}
                response = await client.get(f"{base}/pages", params=query)
                response.raise_for_status()
                results[page] = orjson.loads(response.content)["data"]

        async with httpx.AsyncClient() as client, anyio.create_task_group() as tg:
            for page in range(1, pages + 1):  # it must know the page count in advance
                tg.start_soon(one, client, page)
        assert sum(len(results[p]) for p in sorted(results)) == total
        return anyio.current_time() - t0

    def extractor(concurrency: int) -> Any:
        return create_http_extractor(
            url,
            records_path="data",
            pagination=PageNumberPagination(page_size=per_page),
            concurrency=concurrency,
        )

    def ductwork_run(concurrency: int) -> Any:
        async def go() -> float:
            sink = Counter()
            pipeline = create_el_pipeline(extractor(concurrency), sink, logging=False)
            result = await pipeline.run()
            assert sink.count == total == result.records_out
            return result.duration_seconds

        return go

    async def warm_up() -> None:
        # the server builds each page body once; do that before anything is timed
        async with httpx.AsyncClient() as client:
            for page in range(1, pages + 2):
                query = {"pages": pages, "latency": 0, "page": page, "per_page": per_page}
                (await client.get(f"{base}/pages", params=query)).raise_for_status()

    anyio.run(warm_up)
    loop_t = timed(loop, repeats)
    seq_t = timed(ductwork_run(1), repeats)
    conc_t = timed(ductwork_run(8), repeats)
    gather_t = timed(gather8, repeats)
    return {
        "pages": pages,
        "per_page": per_page,
        "latency_s": latency,
        "loop_records_per_s": total / loop_t.median,
        "sequential_records_per_s": total / seq_t.median,
        "concurrent8_records_per_s": total / conc_t.median,
        "gather8_records_per_s": total / gather_t.median,
        "concurrent8_vs_gather8": gather_t.median / conc_t.median,
        "sequential_vs_loop": loop_t.median / seq_t.median,
        "concurrent8_vs_sequential": seq_t.median / conc_t.median,
        "concurrent8_vs_loop": loop_t.median / conc_t.median,
        "seconds": {
            "loop": loop_t.median,
            "seq": seq_t.median,
            "c8": conc_t.median,
            "gather8": gather_t.median,
        },
    }


# --------------------------------------------------------------------------- streamed NDJSON


async def ndjson_loop(url: str, batch_size: int = 1000) -> int:
    count = 0
    loads = orjson.loads
    async with httpx.AsyncClient(timeout=60) as client, client.stream("GET", url) as response:
        response.raise_for_status()
        batch: list[Any] = []
        async for line in response.aiter_lines():
            if line:
                batch.append(loads(line))
                if len(batch) >= batch_size:
                    count += len(batch)
                    batch = []
        count += len(batch)
    return count


async def ndjson_ductwork(url: str) -> int:
    sink = Counter()
    extractor = create_http_extractor(url, response_format="ndjson", batch_size=1000, timeout=60)
    result = await create_el_pipeline(extractor, sink, logging=False).run()
    assert result.records_out == sink.count
    return sink.count


def streamed(base: str, records: int, scale: int, repeats: int) -> dict[str, Any]:
    url = f"{base}/ndjson?records={records}"

    async def loop() -> float:
        t0 = anyio.current_time()
        assert await ndjson_loop(url) == records
        return anyio.current_time() - t0

    async def ours() -> float:
        t0 = anyio.current_time()
        assert await ndjson_ductwork(url) == records
        return anyio.current_time() - t0

    loop_t = timed(loop, repeats)
    ours_t = timed(ours, repeats)
    rss = {}
    for n in (records, records * scale):
        out = run_isolated("benchmarks.bench_http", "--child", f"{base}/ndjson?records={n}")
        rss[n] = json.loads(out.strip().splitlines()[-1])
    small, large = rss[records], rss[records * scale]
    return {
        "records": records,
        "loop_records_per_s": records / loop_t.median,
        "ductwork_records_per_s": records / ours_t.median,
        "ratio": loop_t.median / ours_t.median,
        "rss_small_mb": small["peak_rss_mb"],
        "rss_large_mb": large["peak_rss_mb"],
        "rss_growth": large["peak_rss_mb"] / small["peak_rss_mb"],
        "large_records": records * scale,
        "large_records_per_s": large["records"] / large["seconds"],
    }


def own_peak_rss_mb() -> float:
    """Peak RSS of this process since it started, in MiB.

    ``ru_maxrss`` survives ``fork`` + ``exec``: a child started from a large parent reports the
    parent's size. ``VmHWM`` belongs to the process's own address space, so it is used when the
    system has it.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return peak_rss_mb()


def child(url: str) -> None:
    """Extract ``url`` in this fresh process; print records, seconds and peak RSS as JSON."""

    async def go() -> tuple[int, float]:
        t0 = anyio.current_time()
        count = await ndjson_ductwork(url)
        return count, anyio.current_time() - t0

    count, seconds = anyio.run(go)
    print(json.dumps({"records": count, "seconds": seconds, "peak_rss_mb": own_peak_rss_mb()}))


# --------------------------------------------------------------------------- report


def render(p: dict[str, Any], s: dict[str, Any]) -> str:
    paged_table = table(
        ["paged JSON", "records/s", "vs hand-written loop", "vs ductwork sequential"],
        [
            ["hand-written httpx loop (sequential)", f"{p['loop_records_per_s']:,.0f}", "1.00", ""],
            [
                "ductwork, concurrency=1",
                f"{p['sequential_records_per_s']:,.0f}",
                f"{p['sequential_vs_loop']:.2f}",
                "1.00",
            ],
            [
                "hand-written httpx gather, 8 at a time",
                f"{p['gather8_records_per_s']:,.0f}",
                f"{p['gather8_records_per_s'] / p['loop_records_per_s']:.2f}",
                "",
            ],
            [
                "ductwork, concurrency=8",
                f"{p['concurrent8_records_per_s']:,.0f}",
                f"{p['concurrent8_vs_loop']:.2f}",
                f"{p['concurrent8_vs_sequential']:.2f}",
            ],
        ],
    )
    stream_table = table(
        ["streamed JSON Lines", "records/s", "ratio", "peak RSS MiB"],
        [
            [
                f"hand-written aiter_lines loop, {s['records']:,}",
                f"{s['loop_records_per_s']:,.0f}",
                "1.00",
                "",
            ],
            [
                f"ductwork, {s['records']:,}",
                f"{s['ductwork_records_per_s']:,.0f}",
                f"{s['ratio']:.2f}",
                f"{s['rss_small_mb']:.0f}",
            ],
            [
                f"ductwork, {s['large_records']:,} (fresh process)",
                f"{s['large_records_per_s']:,.0f}",
                "",
                f"{s['rss_large_mb']:.0f} ({s['rss_growth']:.2f}x)",
            ],
        ],
    )
    return paged_table + "\n\n" + stream_table


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--per-page", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--scale", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="write the results to this JSON file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.disable(logging.CRITICAL)
    if args.child:
        child(args.child)
        return {}
    print(
        f"http: {args.pages} pages x {args.per_page} records at {args.latency * 1000:g} ms "
        f"latency; {args.records:,} JSON Lines records; {machine()}; median of {args.repeats}"
    )
    with local_server() as base:
        p = paged(base, args.pages, args.per_page, args.latency, args.repeats)
        s = streamed(base, args.records, args.scale, args.repeats)
    print(render(p, s))
    results = {"machine": machine(), "paged": p, "streamed": s}
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
    return results


if __name__ == "__main__":
    main()

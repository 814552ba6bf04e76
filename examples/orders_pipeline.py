"""Orders: read a bundled JSON Lines file, price each order, and total revenue per region.

The extractor is a plain async generator reading the file in batches; the transformers are plain
functions; the loader is an object whose ``open(ctx)`` yields a sink and reports on commit.

    python examples/orders_pipeline.py
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import orjson

from ductwork import Batch, Loader, RunContext, RunResult, create_etl_pipeline, transformer

DATA = Path(__file__).parent / "data" / "orders.jsonl"


async def read_orders(ctx: RunContext) -> AsyncIterator[Batch]:
    """Yield the orders in batches, reading the file 64 KiB at a time."""
    tail = b""
    async with await anyio.open_file(DATA, "rb") as fh:
        while chunk := await fh.read(65536):
            lines = (tail + chunk).split(b"\n")
            tail = lines.pop()
            yield [orjson.loads(line) for line in lines if line.strip()]
    if tail.strip():
        yield [orjson.loads(tail)]


def price(batch: Batch) -> Batch:
    """Add the order total."""
    return [
        {**order, "total": round(order["quantity"] * order["unit_price"], 2)} for order in batch
    ]


async def only_large(batch: Batch, ctx: RunContext) -> Batch:
    """Keep orders of 20.00 or more; count the rest in the run's metrics."""
    kept = [order for order in batch if order["total"] >= 20]
    ctx.add_metric("small_orders", len(batch) - len(kept))
    await anyio.sleep(0)  # stands in for an I/O-bound check that runs concurrently
    return kept


class RevenueByRegion(Loader):
    """Sums revenue per region; commits (prints and keeps the totals) only if the run succeeds."""

    name = "revenue_by_region"

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}

    @asynccontextmanager
    async def open(self, ctx: RunContext) -> AsyncIterator[RevenueByRegion._Sink]:
        sink = self._Sink()
        yield sink
        self.totals = {region: round(total, 2) for region, total in sorted(sink.totals.items())}
        print("  revenue per region (orders of 20.00 or more):")
        for region, total in self.totals.items():
            print(f"  {region:>5}: {total:>10,.2f}")

    class _Sink:
        def __init__(self) -> None:
            self.totals: dict[str, float] = defaultdict(float)

        async def write(self, batch: Batch) -> None:
            for order in batch:
                self.totals[order["region"]] += order["total"]


async def main(revenue: RevenueByRegion | None = None) -> RunResult:
    """Run the pipeline once and return its result."""
    pipeline = create_etl_pipeline(
        read_orders,
        [price, transformer(only_large, concurrency=4)],
        revenue or RevenueByRegion(),
        name="orders",
    )
    return await pipeline.run()


if __name__ == "__main__":
    print(anyio.run(main).summary())

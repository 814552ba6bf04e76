"""A composed pipeline: a retry of a parallel of two ETL pipelines, then a conditional report.

    nightly (sequential)
    ├─ load_sources (retry)             runs the sources again after a transient failure
    │  └─ sources (parallel)            orders and customers at the same time
    │     ├─ orders                     extract → clean → warehouse["orders"]
    │     └─ customers                  extract → normalise → warehouse["customers"]
    └─ report_if_orders (conditional)   only when there are orders
       └─ revenue_by_country            orders joined with customers → revenue per country

Everything runs in memory: no network, no server. The orders source fails on its first call
(a simulated connection reset), so the retry composition makes a second attempt; the run's
summary shows both.

    python examples/composed_pipeline.py
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio

from ductwork import (
    Batch,
    Loader,
    RunContext,
    Runnable,
    RunResult,
    create_conditional_pipeline,
    create_etl_pipeline,
    create_parallel_pipeline,
    create_retry_pipeline,
    create_sequential_pipeline,
)

EXPECTED = (
    "the orders source fails once on purpose (a simulated connection reset): attempt 1 of "
    "'sources' shows as failed, and the retry's attempt 2 succeeds"
)
BATCH_SIZE = 500
COUNTRIES = ["DE", "FR", "NL", "SE", "US"]
Warehouse = dict[str, list[dict[str, Any]]]


class TableLoader(Loader):
    """Loads into one table of the in-memory warehouse, replacing it only when the run succeeds."""

    def __init__(self, warehouse: Warehouse, table: str) -> None:
        self.warehouse = warehouse
        self.table = table
        self.name = f"warehouse.{table}"

    @asynccontextmanager
    async def open(self, ctx: RunContext) -> AsyncIterator[Any]:
        rows: list[dict[str, Any]] = []

        class Sink:
            async def write(self, batch: Batch) -> None:
                rows.extend(batch)

        yield Sink()  # an exception (failure or cancellation) skips the publish below
        self.warehouse[self.table] = rows


class RevenueLoader(Loader):
    """Sums ``amount`` per country and publishes the totals when the run succeeds."""

    name = "warehouse.revenue_by_country"

    def __init__(self, warehouse: Warehouse) -> None:
        self.warehouse = warehouse

    @asynccontextmanager
    async def open(self, ctx: RunContext) -> AsyncIterator[Any]:
        totals: dict[str, float] = defaultdict(float)

        class Sink:
            async def write(self, batch: Batch) -> None:
                for row in batch:
                    totals[row["country"]] += row["amount"]

        yield Sink()
        self.warehouse["revenue_by_country"] = [
            {"country": country, "revenue": round(total, 2)}
            for country, total in sorted(totals.items())
        ]


class FlakyOrderSource:
    """2,000 orders as an upstream API would send them; the first call fails mid-stream."""

    name = "orders_api"

    def __init__(self) -> None:
        self.calls = 0

    async def extract(self, ctx: RunContext) -> AsyncIterator[Batch]:
        self.calls += 1
        for start in range(0, 2_000, BATCH_SIZE):
            if self.calls == 1 and start >= 1_000:
                raise ConnectionError("connection reset by peer (simulated)")
            await anyio.sleep(0)  # where a real source would wait for the network
            yield [
                {
                    "order_id": i,
                    "customer_id": i % 50,
                    "amount": f"{(i * 37) % 200 + 0.99:.2f}",  # APIs send numbers as text
                    "status": "cancelled" if i % 10 == 0 else "paid",
                }
                for i in range(start, start + BATCH_SIZE)
            ]


async def customer_source(ctx: RunContext) -> AsyncIterator[Batch]:
    yield [
        {"id": i, "name": f"customer {i}", "country": f" {COUNTRIES[i % 5].lower()} "}
        for i in range(50)
    ]


def clean_orders(batch: Batch) -> Batch:
    """Drop cancelled orders and turn amounts into numbers."""
    return [
        {"order_id": r["order_id"], "customer_id": r["customer_id"], "amount": float(r["amount"])}
        for r in batch
        if r["status"] == "paid"
    ]


def normalise_customers(batch: Batch) -> Batch:
    return [{"customer_id": r["id"], "country": r["country"].strip().upper()} for r in batch]


def build_nightly(warehouse: Warehouse) -> Runnable:
    """The whole composition, writing into ``warehouse``."""
    orders = create_etl_pipeline(
        FlakyOrderSource(), clean_orders, TableLoader(warehouse, "orders"), "orders"
    )
    customers = create_etl_pipeline(
        customer_source, normalise_customers, TableLoader(warehouse, "customers"), "customers"
    )
    load_sources = create_retry_pipeline(
        create_parallel_pipeline([orders, customers], max_workers=2, name="sources"),
        max_retries=3,
        backoff_factor=0.2,
        name="load_sources",
    )

    async def orders_with_country(ctx: RunContext) -> AsyncIterator[Batch]:
        country = {c["customer_id"]: c["country"] for c in warehouse["customers"]}
        rows = warehouse["orders"]
        for start in range(0, len(rows), BATCH_SIZE):
            yield [
                {**row, "country": country[row["customer_id"]]}
                for row in rows[start : start + BATCH_SIZE]
            ]

    report = create_etl_pipeline(
        orders_with_country, None, RevenueLoader(warehouse), "revenue_by_country"
    )
    report_if_orders = create_conditional_pipeline(
        lambda ctx: bool(warehouse.get("orders")), report, name="report_if_orders"
    )
    return create_sequential_pipeline([load_sources, report_if_orders], name="nightly")


async def main() -> RunResult:
    """Run the composition once, print the revenue per country and return the result tree."""
    warehouse: Warehouse = {}
    result = await build_nightly(warehouse).run()
    print("  revenue per country (paid orders):")
    for row in warehouse["revenue_by_country"]:
        print(f"  {row['country']:>5}: {row['revenue']:>10,.2f}")
    return result


if __name__ == "__main__":
    print(anyio.run(main).summary())

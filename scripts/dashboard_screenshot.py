"""Take the README's screenshots of the dashboard: docs/dashboard.png and docs/dashboard-run.png.

Runs a scheduler with an HTTP server in this process, on a few made-up pipelines scheduled every
few seconds (an API extract with a slow loader, a rollup whose transform is the bottleneck, a sync
that fails now and then, a disabled job) for about 25 seconds, then photographs the jobs page and
a run's page in Debian's headless chromium, driven by Playwright:

    PYTHONPATH=src .venv/bin/python scripts/dashboard_screenshot.py
"""

from __future__ import annotations

import logging
import random
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
from playwright.async_api import async_playwright

from ductwork import (
    Batch,
    MemoryStateStore,
    PipelineRegistry,
    RunContext,
    create_etl_pipeline,
    open_scheduler,
)
from ductwork.ops import HttpServer

DOCS = Path(__file__).resolve().parent.parent / "docs"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
rng = random.Random(7)


def source(pages: int, delay: float) -> object:
    async def extract(ctx: RunContext) -> AsyncIterator[Batch]:
        for page in range(rng.randint(pages // 2, pages)):
            await anyio.sleep(delay)
            yield [{"id": page * 500 + i, "amount": i * 0.25} for i in range(500)]

    extract.__name__ = "fetch_pages"
    return extract


def stocked(batch: Batch) -> Batch:
    return [{**r, "in_stock": r["sku"] % 5 != 0} for r in batch]


def priced(batch: Batch) -> Batch:
    return [{**r, "total": round(r["amount"] * 1.2, 2)} for r in batch]


async def rollup(batch: Batch) -> Batch:
    await anyio.sleep(0.03)  # the slow stage of this pipeline
    return batch


async def warehouse(batch: Batch) -> None:
    await anyio.sleep(0.01)


calls = {"inventory_sync": 0}


async def flaky_inventory(ctx: RunContext) -> AsyncIterator[Batch]:
    calls["inventory_sync"] += 1
    yield [{"sku": i} for i in range(200)]
    if calls["inventory_sync"] % 3 == 0:
        raise ConnectionError("inventory API: connection reset by peer")


def build_registry() -> PipelineRegistry:
    registry = PipelineRegistry(state=MemoryStateStore())
    registry.register_pipeline(
        "orders_api",
        lambda: create_etl_pipeline(
            source(12, 0.02), priced, warehouse, name="orders_api", logging=False
        ),
        "*/3 * * * * *",
        timescope="1m",
        description="orders from the shop API, priced, into the warehouse",
    )
    registry.register_pipeline(
        "daily_rollup",
        lambda: create_etl_pipeline(
            source(8, 0.005), rollup, warehouse, name="daily_rollup", logging=False
        ),
        "*/4 * * * * *",
        description="totals per customer and day",
    )
    registry.register_pipeline(
        "inventory_sync",
        lambda: create_etl_pipeline(
            flaky_inventory, stocked, warehouse, name="inventory_sync", logging=False
        ),
        "*/2 * * * * *",
        description="stock levels from the inventory service",
    )
    registry.register_pipeline(
        "archive_exports",
        lambda: create_etl_pipeline(
            source(2, 0.01), priced, warehouse, name="archive_exports", logging=False
        ),
        "0 3 * * *",
        description="last month's exports to cold storage",
    )
    return registry


async def main() -> None:
    logging.getLogger("ductwork").setLevel(logging.ERROR)
    server = HttpServer("127.0.0.1:0", token="screenshot-token", refresh_seconds=0)
    async with open_scheduler(build_registry(), http=server, grace_period=5) as scheduler:
        scheduler.disable("archive_exports")
        await anyio.sleep(25)
        run_id = scheduler.job_status("orders_api").last_run_id
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
            )
            page = await browser.new_page(viewport={"width": 1360, "height": 540})
            await page.goto(server.url + "/")
            await page.screenshot(path=str(DOCS / "dashboard.png"))
            await page.set_viewport_size({"width": 1360, "height": 600})
            await page.goto(f"{server.url}/runs/orders_api/{run_id}")
            await page.screenshot(path=str(DOCS / "dashboard-run.png"), full_page=True)
            await browser.close()
    print(f"wrote {DOCS / 'dashboard.png'} and {DOCS / 'dashboard-run.png'}", file=sys.stderr)


if __name__ == "__main__":
    anyio.run(main)

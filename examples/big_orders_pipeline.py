"""Big orders: every order of 200.00 or more, printed as a table by the console loader.

The console loader shows at most ``max_rows`` rows and counts the rest; with ``show_progress`` it
draws a live progress line on stderr when that is a terminal.

    python examples/big_orders_pipeline.py
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import orjson

from ductwork import Batch, RunContext, RunResult, create_console_loader, create_etl_pipeline

DATA = Path(__file__).parent / "data" / "orders.jsonl"


async def read_orders(ctx: RunContext) -> AsyncIterator[Batch]:
    """Yield the orders in batches, reading the file 16 KiB at a time."""
    tail = b""
    async with await anyio.open_file(DATA, "rb") as fh:
        while chunk := await fh.read(16384):
            lines = (tail + chunk).split(b"\n")
            tail = lines.pop()
            yield [orjson.loads(line) for line in lines if line.strip()]
    if tail.strip():
        yield [orjson.loads(tail)]


def price(batch: Batch) -> Batch:
    """Add the order total."""
    return [{**o, "total": round(o["quantity"] * o["unit_price"], 2)} for o in batch]


def only_big(batch: Batch) -> Batch:
    """Keep orders of 200.00 or more."""
    return [o for o in batch if o["total"] >= 200]


def as_money(batch: Batch) -> Batch:
    """Show the total with two decimals, as money is written (216.00, not 216.0)."""
    return [{**o, "total": f"{o['total']:.2f}"} for o in batch]


async def main() -> RunResult:
    """Run the pipeline once and return its result."""
    pipeline = create_etl_pipeline(
        read_orders,
        [price, only_big, as_money],
        create_console_loader(
            "table", columns=["order_id", "day", "region", "product", "total"], max_rows=8
        ),
        name="big_orders",
    )
    return await pipeline.run()


if __name__ == "__main__":
    print(anyio.run(main).summary())

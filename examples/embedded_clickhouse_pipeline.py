"""An HTTP API into an embedded ClickHouse, queried back into a report file: nothing to install.

The example starts a small shop API of its own on 127.0.0.1, serving the 2,000 orders of
``data/orders.jsonl`` as NDJSON pages of 250, each linking the next in a ``Link: <...>;
rel="next"`` header. Two pipelines run in sequence:

1. ``orders_to_clickhouse`` streams the pages, types the records and upserts them, keyed by
   ``order_id``, into ClickHouse running inside this process (``chdb://`` on
   ``output/clickhouse``: chDB, the ``chdb`` extra), creating the table the first time; a line
   per page shows the progress.
2. ``revenue_report`` has ClickHouse total the revenue per region and product and writes the
   result to ``output/revenue_by_region_and_product.csv``.

Running it again replaces the orders instead of adding them (the upsert), so the report stays the
same.

    python examples/embedded_clickhouse_pipeline.py
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import anyio

from ductwork import (
    Batch,
    ClickHouseConfig,
    RunResult,
    convert_types,
    create_clickhouse_extractor,
    create_clickhouse_loader,
    create_el_pipeline,
    create_etl_pipeline,
    create_file_loader,
    create_http_extractor,
    create_sequential_pipeline,
)

HERE = Path(__file__).parent
DATA = HERE / "data" / "orders.jsonl"
OUTPUT = HERE / "output"
CLICKHOUSE_URL = f"chdb://{(OUTPUT / 'clickhouse').resolve()}"
REPORT = OUTPUT / "revenue_by_region_and_product.csv"
PAGE_SIZE = 250

ORDERS_TABLE = {
    "order_id": "UInt32",
    "day": "Date",
    "region": "LowCardinality(String)",
    "product": "LowCardinality(String)",
    "quantity": "UInt32",
    "unit_price": "Decimal(10, 2)",
}
REVENUE = """
SELECT region, product, count() AS orders, sum(quantity) AS units,
       sum(quantity * unit_price) AS revenue
FROM orders FINAL
GROUP BY region, product
ORDER BY region, revenue DESC
"""


class ShopApi(BaseHTTPRequestHandler):
    """``GET /orders?after=ID&limit=N``: the next N orders after ID as NDJSON, with a ``Link``
    header to the page after them while there is one."""

    protocol_version = "HTTP/1.1"
    orders: ClassVar[list[dict[str, Any]]] = []

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:
        query = {k: v[-1] for k, v in parse_qs(urlsplit(self.path).query).items()}
        after, limit = int(query.get("after", 0)), int(query.get("limit", 100))
        page = [order for order in self.orders if order["order_id"] > after][:limit]
        body = b"".join(json.dumps(order).encode() + b"\n" for order in page)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Content-Length", str(len(body)))
        if page and page[-1]["order_id"] < self.orders[-1]["order_id"]:
            next_page = f"/orders?after={page[-1]['order_id']}&limit={limit}"
            self.send_header("Link", f'<{next_page}>; rel="next"')
        self.end_headers()
        self.wfile.write(body)


@contextmanager
def shop_api() -> Iterator[str]:
    """Serve the bundled orders on a free port of 127.0.0.1; yield the base URL."""
    with DATA.open() as lines:
        ShopApi.orders = sorted(
            (json.loads(line) for line in lines if line.strip()), key=lambda o: o["order_id"]
        )
    server = ThreadingHTTPServer(("127.0.0.1", 0), ShopApi)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def progress(total: int) -> Callable[[Batch], Batch]:
    """A transformer passing batches on unchanged, printing how far the load has come."""
    seen = 0

    def received(batch: Batch) -> Batch:
        nonlocal seen
        seen += len(batch)
        print(f"  orders received: {seen:>5,} of {total:,}", flush=True)
        return batch

    return received


async def main(clickhouse_url: str = CLICKHOUSE_URL) -> RunResult:
    """Run the load and the report once; return the sequence's result."""
    OUTPUT.mkdir(exist_ok=True)
    clickhouse = ClickHouseConfig(url=clickhouse_url)
    print(f"  embedded ClickHouse: {clickhouse.url}", flush=True)
    with shop_api() as base:
        load = create_etl_pipeline(
            create_http_extractor(
                f"{base}/orders",
                params={"limit": PAGE_SIZE},
                response_format="ndjson",  # parsed as it streams
                pagination="link_header",
                batch_size=PAGE_SIZE,
                name="shop_api",
            ),
            [
                convert_types({"day": date, "unit_price": Decimal}),
                progress(len(ShopApi.orders)),
            ],
            create_clickhouse_loader(
                "orders",
                list(ORDERS_TABLE),
                "upsert",
                batch_size=1000,
                connection_config=clickhouse,
                upsert_key=["order_id"],
                create_table=ORDERS_TABLE,
                name="clickhouse.orders",
            ),
            name="orders_to_clickhouse",
        )
        report = create_el_pipeline(
            create_clickhouse_extractor(
                REVENUE,
                clickhouse,
                settings={"output_format_decimal_trailing_zeros": 1},  # 17292.00, not 17292
                name="clickhouse.revenue",
            ),
            create_file_loader(REPORT),
            name="revenue_report",
        )
        result = await create_sequential_pipeline([load, report], name="api_to_clickhouse").run()
    lines = REPORT.read_text().splitlines()
    print(f"  {len(lines) - 1} rows written to {REPORT.relative_to(HERE)}; the first ones:")
    for line in lines[:4]:
        print(f"    {line}")
    return result


if __name__ == "__main__":
    print(anyio.run(main).summary())

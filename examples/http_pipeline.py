"""Extract a paginated HTTP API, with retries and a rate limit, and load the records.

The example starts a small API of its own on 127.0.0.1 (no network needed). Its first answer
is a ``503 Service Unavailable`` with ``Retry-After: 0``, which the extractor retries; then it
serves 45 orders in pages of 10. Four pages are fetched at once, and the batches still arrive
in page order.

    python examples/http_pipeline.py
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio

from ductwork import (
    Batch,
    HttpRetryConfig,
    PageNumberPagination,
    RateLimitConfig,
    RunResult,
    create_etl_pipeline,
    create_http_extractor,
)

EXPECTED = (
    "the API answers the first request with 503 Service Unavailable on purpose; the extractor "
    "retries it (the run summary counts http_status_503 1, http_retries 1)"
)
ORDERS = [
    {"id": i, "customer": f"customer-{i % 7}", "amount": round(10 + i * 2.5, 2)} for i in range(45)
]


class OrdersApi(BaseHTTPRequestHandler):
    """``GET /orders?page=N&per_page=M`` -> ``{"data": [...], "meta": {"pages": P}}``."""

    protocol_version = "HTTP/1.1"
    unavailable_once = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        # headers and body go out in separate writes: don't let Nagle hold the body back
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:
        query = {k: v[-1] for k, v in parse_qs(urlsplit(self.path).query).items()}
        if OrdersApi.unavailable_once:  # a transient failure, to show a retry
            OrdersApi.unavailable_once = False
            self.reply(503, {"error": "warming up"}, {"Retry-After": "0"})
            return
        page, per_page = int(query.get("page", 1)), int(query.get("per_page", 10))
        pages = -(-len(ORDERS) // per_page)
        data = ORDERS[(page - 1) * per_page : page * per_page]
        self.reply(200, {"data": data, "meta": {"pages": pages}})

    def reply(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)


@contextmanager
def local_api() -> Iterator[str]:
    """Serve :class:`OrdersApi` on a free port of 127.0.0.1; yield its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), OrdersApi)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def add_vat(batch: Batch) -> Batch:
    """A transformer: add the amount with 20% VAT."""
    return [{**order, "gross": round(order["amount"] * 1.2, 2)} for order in batch]


async def main() -> RunResult:
    """Serve the API, run the pipeline once, print what it loaded; return the result."""
    loaded: list[dict[str, Any]] = []
    OrdersApi.unavailable_once = True
    with local_api() as base:
        orders = create_http_extractor(
            f"{base}/orders",
            records_path="data",
            pagination=PageNumberPagination(page_size=10, total_pages_path="meta.pages"),
            concurrency=4,
            retry_logic=HttpRetryConfig(max_retries=3, backoff_factor=0.1),
            rate_limiting=RateLimitConfig(requests_per_second=50, burst=4),
            name="orders_api",
        )
        pipeline = create_etl_pipeline(orders, add_vat, loaded.extend, name="orders")
        result = await pipeline.run()
    metrics = result.stages[0].metrics
    gross = sum(order["gross"] for order in loaded)
    print(f"  loaded {len(loaded)} orders, ids {loaded[0]['id']}..{loaded[-1]['id']} in order")
    print(f"  gross total (amount + 20% VAT): {gross:,.2f}")
    print(
        f"  requests: {metrics['http_requests']} for {metrics['http_pages']} pages "
        f"({metrics.get('http_retries_503', 0)} answered 503 and retried)"
    )
    return result


if __name__ == "__main__":
    print(anyio.run(main).summary())

"""Helpers of the operations tests: a scheduler serving HTTP on a free port, a small HTTP API."""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from prometheus_client.parser import text_string_to_metric_families

from ductwork import PipelineRegistry, Scheduler, open_scheduler
from ductwork.ops import HttpServer

TOKEN = "test-token-8e1f0c2b"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@asynccontextmanager
async def serving(
    registry: PipelineRegistry, **options: Any
) -> AsyncIterator[tuple[Scheduler, HttpServer, httpx.AsyncClient]]:
    """A running scheduler of ``registry`` with an HTTP server on a free loopback port, and an
    httpx client for it."""
    options.setdefault("token", TOKEN)
    server = HttpServer("127.0.0.1:0", **options)
    async with (
        open_scheduler(registry, http=server) as scheduler,
        httpx.AsyncClient(base_url=server.url, timeout=10) as client,
    ):
        yield scheduler, server, client


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """The samples of a Prometheus text exposition, by name and labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def sample(
    found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    """One sample of :func:`samples` (KeyError when it is not there)."""
    return found[(name, frozenset(labels.items()))]


class _Api(BaseHTTPRequestHandler):
    """``/pages?page=N``: three pages of two records; the first request of page 2 gets a 503."""

    failed: set[str]

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        page = int(query.get("page", ["1"])[0])
        if page == 2 and "2" not in self.server.failed:  # type: ignore[attr-defined]
            self.server.failed.add("2")  # type: ignore[attr-defined]
            self._send(503, {"error": "busy"})
            return
        records = [{"id": (page - 1) * 2 + i} for i in range(2)] if page <= 3 else []
        self._send(200, {"data": records})

    def _send(self, status: int, body: Any) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@contextmanager
def pages_api() -> Iterator[str]:
    """A local HTTP API of paged records (see :class:`_Api`); yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    server.failed = set()  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)

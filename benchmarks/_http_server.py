"""A local HTTP server for the HTTP benchmarks, run in a process of its own.

    python -m benchmarks._http_server      # prints "PORT <n>", serves until stdin closes

Endpoints:
    /pages?page=N&per_page=M&pages=P&latency=S   JSON pages {"data": [...], "meta": {"pages": P}}
                                                 answered after S seconds (per request)
    /ndjson?records=N                            N JSON Lines records, chunked transfer encoding
"""

from __future__ import annotations

import functools
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

_LINES_PER_CHUNK = 1000


def make_record(i: int) -> dict[str, Any]:
    return {
        "id": i,
        "name": f"customer-{i}",
        "email": f"customer{i}@example.com",
        "amount": round(i * 0.37, 2),
        "active": i % 3 == 0,
    }


@functools.lru_cache(maxsize=4096)
def page_body(page: int, per: int, pages: int) -> bytes:
    """A page's body, built once: the benchmark measures the client, not this server."""
    start = (page - 1) * per
    ids = range(start, start + per) if 1 <= page <= pages else range(0)
    return orjson.dumps({"data": [make_record(i) for i in ids], "meta": {"pages": pages}})


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def handle(self) -> None:
        try:
            super().handle()
        except (ConnectionError, OSError):
            pass

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        q = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        if parts.path == "/pages":
            self.pages(q)
        elif parts.path == "/ndjson":
            self.ndjson(q)
        else:
            self.send_error(404)

    def pages(self, q: dict[str, str]) -> None:
        page = int(q.get("page", 1))
        per = int(q.get("per_page", 1000))
        pages = int(q.get("pages", 200))
        time.sleep(float(q.get("latency", 0.02)))
        body = page_body(page, per, pages)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def ndjson(self, q: dict[str, str]) -> None:
        total = int(q.get("records", 1_000_000))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        # one chunk of distinct records, repeated: the client does the same work per record
        chunk = b"".join(orjson.dumps(make_record(i)) + b"\n" for i in range(_LINES_PER_CHUNK))
        framed = b"%x\r\n%s\r\n" % (len(chunk), chunk)
        full, rest = divmod(total, _LINES_PER_CHUNK)
        write = self.wfile.write
        for _ in range(full):
            write(framed)
        if rest:
            tail = b"".join(orjson.dumps(make_record(i)) + b"\n" for i in range(rest))
            write(b"%x\r\n%s\r\n" % (len(tail), tail))
        write(b"0\r\n\r\n")


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    print(f"PORT {server.server_address[1]}", flush=True)
    sys.stdin.read()  # until the parent closes our stdin (or exits)
    server.shutdown()
    server.server_close()


if __name__ == "__main__":
    main()

"""A real HTTP/1.1 server on 127.0.0.1 for the HTTP extractor tests.

Built on the standard library's ``ThreadingHTTPServer`` (one thread per connection, keep-alive),
started in a background thread on a free port. Its endpoints serve paginated JSON in every
pagination style, streamed JSON Lines and CSV (chunked transfer encoding), slow responses,
faults (any status, with ``Retry-After``), connections dropped mid-body and malformed bodies.
Every request is recorded (arrival time, path, query, headers, body) for assertions, and the
server tracks how many requests it handles at once and how many connections are open.
"""

from __future__ import annotations

import math
import socket
import threading
import time
from dataclasses import dataclass
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import orjson


def record(i: int) -> dict[str, Any]:
    """The record with id ``i`` served by every endpoint."""
    return {"id": i, "name": f"item-{i}", "updated_at": i}


@dataclass
class Seen:
    """One request as the server saw it."""

    at: float
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


class TestServer:
    """The server and what it has seen. ``url`` is its base URL."""

    __test__ = False  # not a test class

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[Seen] = []
        self.counters: dict[str, int] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        self.open_connections = 0
        self.stopping = threading.Event()
        server = self

        class Handler(_Handler):
            owner = server

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> TestServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.counters.clear()
            self.in_flight = 0
            self.max_in_flight = 0

    def seen(self, path: str) -> list[Seen]:
        with self.lock:
            return [r for r in self.requests if r.path == path]

    def count(self, key: str) -> int:
        """Increment and return a named counter (per test)."""
        with self.lock:
            self.counters[key] = self.counters.get(key, 0) + 1
            return self.counters[key]

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until no connection is open; return whether that happened."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if self.open_connections == 0:
                    return True
            time.sleep(0.01)
        return False


class _Handler(BaseHTTPRequestHandler):
    owner: TestServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        # headers and body go out in separate writes: don't let Nagle hold the body back
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.owner.lock:
            self.owner.open_connections += 1

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.owner.lock:
                self.owner.open_connections -= 1

    def handle(self) -> None:
        try:
            super().handle()
        except (ConnectionError, OSError):
            pass  # the client went away (a timeout or an early close): nothing to answer

    # ------------------------------------------------------------------ plumbing

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        owner = self.owner
        with owner.lock:
            owner.requests.append(
                Seen(
                    time.monotonic(),
                    self.command,
                    parts.path,
                    query,
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
            )
            owner.in_flight += 1
            owner.max_in_flight = max(owner.max_in_flight, owner.in_flight)
        try:
            handler = getattr(self, "ep_" + parts.path.strip("/").replace("-", "_"), None)
            if handler is None:
                self._json({"error": "not found"}, 404)
            else:
                handler(query, body)
        finally:
            with owner.lock:
                owner.in_flight -= 1

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.owner.stopping.wait(seconds)

    def _send(
        self,
        payload: bytes,
        status: int = 200,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def _json(self, data: Any, status: int = 200, headers: dict[str, str] | None = None) -> None:
        self._send(orjson.dumps(data), status, headers=headers)

    def _start_chunked(self, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()

    def _chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _end_chunked(self) -> None:
        self.wfile.write(b"0\r\n\r\n")

    def _drop(self) -> None:
        """Close the connection abruptly, mid-response."""
        self.wfile.flush()
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # ------------------------------------------------------------------ pagination

    def _page_delay(self, q: dict[str, str], page: int, pages: int) -> None:
        if "delay_desc" in q:
            # later pages answer sooner, so they arrive out of order
            self._sleep(float(q["delay_desc"]) * max(0, pages - page))
        else:
            self._sleep(float(q.get("delay", 0)))

    def ep_pages(self, q: dict[str, str], body: bytes) -> None:
        """Page-number pagination: ``?page=N&per_page=M``; ``total`` records."""
        total = int(q.get("total", 35))
        per = int(q.get("per_page", 10))
        page = int(q.get("page", 1))
        pages = math.ceil(total / per)
        self._page_delay(q, page, pages)
        if "beyond404" in q and page > pages + 1:
            self._json({"error": "no such page"}, 404)
            return
        start = (page - 1) * per
        ids = range(start, min(start + per, total)) if page >= 1 else range(0)
        self._json({"data": [record(i) for i in ids], "meta": {"total": total, "pages": pages}})

    def ep_offset(self, q: dict[str, str], body: bytes) -> None:
        """Offset pagination: ``?offset=N&limit=M``; ``total`` records."""
        total = int(q.get("total", 35))
        offset = int(q.get("offset", 0))
        limit = int(q.get("limit", 10))
        ids = range(offset, min(offset + limit, total))
        self._json({"items": [record(i) for i in ids], "total": total})

    def ep_cursor(self, q: dict[str, str], body: bytes) -> None:
        """Cursor pagination: cursors ``c<page>``; ``loop=1`` always returns the same cursor."""
        total = int(q.get("total", 25))
        per = int(q.get("per", 10))
        if "loop" in q:
            self._json({"results": [record(i) for i in range(per)], "paging": {"next": "same"}})
            return
        page = int(q.get("cursor", "c0")[1:])
        ids = range(page * per, min(page * per + per, total))
        more = (page + 1) * per < total
        cursor = f"c{page + 1}" if more else None
        self._json({"results": [record(i) for i in ids], "paging": {"next": cursor}})

    def ep_next(self, q: dict[str, str], body: bytes) -> None:
        """Next-URL pagination with relative URLs; ``loop=1`` points back at page 2."""
        total = int(q.get("total", 25))
        per = 10
        page = int(q.get("page", 1))
        start = (page - 1) * per
        ids = range(start, min(start + per, total))
        nxt: str | None = None
        if "loop" in q:
            nxt = "next?page=2&loop=1"
        elif start + per < total:
            nxt = "next?" + urlencode({"page": page + 1, "total": total})
        self._json({"results": [record(i) for i in ids], "next": nxt})

    def ep_link(self, q: dict[str, str], body: bytes) -> None:
        """RFC 8288 Link header pagination; ``fmt=ndjson`` streams the page as JSON Lines."""
        total = int(q.get("total", 25))
        per = 10
        page = int(q.get("page", 1))
        start = (page - 1) * per
        ids = range(start, min(start + per, total))
        headers = {}
        if start + per < total:
            target = f"{self.owner.url}/link?" + urlencode(
                {"page": page + 1, "total": total, "fmt": q.get("fmt", "json")}
            )
            headers["Link"] = f'<{target}>; rel="next", <{self.owner.url}/link>; rel="first"'
        if q.get("fmt") == "ndjson":
            payload = b"".join(orjson.dumps(record(i)) + b"\n" for i in ids)
            self._send(payload, content_type="application/x-ndjson", headers=headers)
        else:
            self._json([record(i) for i in ids], headers=headers)

    def ep_since(self, q: dict[str, str], body: bytes) -> None:
        """Incremental: records with ``updated_at`` greater than ``since``."""
        total = int(q.get("total", 10))
        since = int(q["since"]) if "since" in q else -1
        self._json([record(i) for i in range(total) if i > since])

    # ------------------------------------------------------------------ streamed bodies

    def ep_ndjson(self, q: dict[str, str], body: bytes) -> None:
        """``records`` JSON Lines in chunks of ``chunk`` records; ``drop_after`` drops the
        connection after that many records; ``bad_line`` makes that line malformed;
        ``blank=1`` puts blank lines between records."""
        total = int(q.get("records", 100))
        chunk = int(q.get("chunk", 1000))
        drop_after = int(q["drop_after"]) if "drop_after" in q else None
        bad = int(q["bad_line"]) if "bad_line" in q else None
        blank = b"\n" if "blank" in q else b""
        self._start_chunked("application/x-ndjson")
        line = 0
        for start in range(0, total, chunk):
            if drop_after is not None and start >= drop_after:
                self._drop()
                return
            lines = []
            for i in range(start, min(start + chunk, total)):
                line += 1
                lines.append(b'{"id": oops' if line == bad else orjson.dumps(record(i)))
            self._chunk(b"\n".join(lines) + b"\n" + blank)
        self._end_chunked()

    def ep_csv(self, q: dict[str, str], body: bytes) -> None:
        """CSV with quoted commas, quotes and line breaks, sent in tiny chunks."""
        total = int(q.get("records", 20))
        size = int(q.get("chunk_bytes", 7))
        rows = ["id,name,note"]
        for i in range(total):
            rows.append(f'{i},"item, {i}","line one\nline ""two"" {i}"')
        data = ("\r\n".join(rows) + "\r\n").encode()
        self._start_chunked("text/csv; charset=utf-8")
        for start in range(0, len(data), size):
            self._chunk(data[start : start + size])
        self._end_chunked()

    # ------------------------------------------------------------------ faults

    def ep_flaky(self, q: dict[str, str], body: bytes) -> None:
        """The first ``fail`` requests for ``key`` get ``status`` (with ``retry_after``, or an
        HTTP-date ``retry_after_date`` seconds ahead); later ones succeed."""
        attempt = self.owner.count("flaky:" + q.get("key", ""))
        if attempt <= int(q.get("fail", 1)):
            headers = {}
            if "retry_after" in q:
                headers["Retry-After"] = q["retry_after"]
            if "retry_after_date" in q:
                when = time.time() + float(q["retry_after_date"])
                headers["Retry-After"] = formatdate(when, usegmt=True)
            self._json({"error": "try again"}, int(q.get("status", 500)), headers)
            return
        self._json([{"ok": True, "attempt": attempt}])

    def ep_status(self, q: dict[str, str], body: bytes) -> None:
        """Always answers ``code`` with an error body (echoing ``echo`` when given)."""
        text = q.get("echo", "something went wrong")
        self._json({"error": text}, int(q.get("code", 500)))

    def ep_slow(self, q: dict[str, str], body: bytes) -> None:
        """Answers after ``delay`` seconds."""
        self._sleep(float(q.get("delay", 1)))
        self._json([{"slow": True}])

    def ep_drop(self, q: dict[str, str], body: bytes) -> None:
        """Announces a JSON body, sends part of it and drops the connection; the first
        ``times`` requests for ``key`` (default: all) are dropped."""
        attempt = self.owner.count("drop:" + q.get("key", ""))
        payload = orjson.dumps([record(i) for i in range(20)])
        if "times" in q and attempt > int(q["times"]):
            self._send(payload)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload[: len(payload) // 3])
        self._drop()

    def ep_malformed(self, q: dict[str, str], body: bytes) -> None:
        """A 200 response whose JSON body is cut short."""
        self._send(b'{"data": [{"id": 1}, {"id": 2')

    def ep_echo(self, q: dict[str, str], body: bytes) -> None:
        """One record describing the request."""
        self._json(
            [
                {
                    "method": self.command,
                    "query": q,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "json": orjson.loads(body) if body else None,
                }
            ]
        )

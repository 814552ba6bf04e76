"""An HTTP/1.1 fault server on 127.0.0.1 for the fault suite.

Each test routes paths to small handler functions (``server.route("/x", fn)``); a handler gets
the request (method, path, query, headers) and answers through the :class:`Reply` it is given:
a whole body, a redirect, or a chunked body written piece by piece (to stream large or hostile
bodies, trickle bytes, or drop the connection). Every request is recorded for assertions. Runs on
the standard library's ``ThreadingHTTPServer`` in a daemon thread; ``stop()`` wakes handlers that
are waiting on ``server.stopping``.

With ``tls=True`` one port speaks both plain HTTP and HTTPS (a connection opening with a TLS
handshake is wrapped, with the certificate in ``tls/`` for 127.0.0.1 and localhost, signed by
``tls/ca.pem``), so two URLs may differ in their scheme alone: ``url`` and ``https_url``.
"""

from __future__ import annotations

import socket
import ssl
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

TLS = Path(__file__).parent / "tls"
CA_FILE = str(TLS / "ca.pem")
"""The certificate authority that signed the server certificate (``verify=CA_FILE``)."""
_TLS_HANDSHAKE = 0x16


@dataclass
class Request:
    """One request as the server saw it (header names lower-cased)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    raw_path: str
    scheme: str = "http"


class Reply:
    """How a handler answers."""

    def __init__(self, handler: BaseHTTPRequestHandler, stopping: threading.Event) -> None:
        self._h = handler
        self.stopping = stopping

    def send(
        self,
        body: bytes | str | Any = b"",
        status: int = 200,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        """A complete response; a body that is not bytes or str is sent as JSON."""
        if isinstance(body, str):
            body = body.encode()
        elif not isinstance(body, bytes):
            body = orjson.dumps(body)
        h = self._h
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            h.send_header(name, value)
        h.end_headers()
        h.wfile.write(body)

    def redirect(self, location: str, status: int = 302) -> None:
        self.send(b"", status, headers={"Location": location})

    def start_chunked(
        self, content_type: str = "application/x-ndjson", headers: dict[str, str] | None = None
    ) -> None:
        h = self._h
        h.send_response(200)
        h.send_header("Content-Type", content_type)
        h.send_header("Transfer-Encoding", "chunked")
        for name, value in (headers or {}).items():
            h.send_header(name, value)
        h.end_headers()
        h.wfile.flush()

    def chunk(self, data: bytes) -> None:
        if data:
            self._h.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self._h.wfile.flush()

    def end_chunked(self) -> None:
        self._h.wfile.write(b"0\r\n\r\n")
        self._h.wfile.flush()


Handler = Callable[[Request, Reply], None]


class FaultServer:
    """The server, its routes and the requests it has seen. ``url`` is its base URL."""

    __test__ = False

    def __init__(self, tls: bool = False) -> None:
        self.lock = threading.Lock()
        self.requests: list[Request] = []
        self.routes: dict[str, Handler] = {}
        self.stopping = threading.Event()
        self.tls: ssl.SSLContext | None = None
        if tls:
            self.tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self.tls.load_cert_chain(TLS / "server.pem", TLS / "server.key")
        owner = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def setup(self) -> None:
                self.scheme = "http"
                if owner.tls is not None:
                    self.request.settimeout(10)
                    first = self.request.recv(1, socket.MSG_PEEK)
                    if first and first[0] == _TLS_HANDSHAKE:
                        self.request = owner.tls.wrap_socket(self.request, server_side=True)
                        self.scheme = "https"
                    self.request.settimeout(None)
                super().setup()
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def finish(self) -> None:
                try:
                    super().finish()
                finally:
                    if self.scheme == "https":
                        self.request.close()  # the server closes only the socket it accepted

            def handle(self) -> None:
                try:
                    super().handle()
                except (ConnectionError, OSError, ssl.SSLError):
                    pass  # the client went away

            def do_GET(self) -> None:
                owner._dispatch(self)

            do_POST = do_GET

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.handle_error = self._handle_error  # type: ignore[method-assign]
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.https_url = f"https://127.0.0.1:{self.port}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def _handle_error(self, request: Any, client_address: Any) -> None:
        """A client that breaks off its TLS handshake is not an error of the server."""
        if not isinstance(sys.exc_info()[1], (ssl.SSLError, ConnectionError, TimeoutError)):
            ThreadingHTTPServer.handle_error(self.httpd, request, client_address)

    def route(self, path: str, handler: Handler) -> str:
        """Serve ``path`` with ``handler``; return its absolute URL."""
        self.routes[path] = handler
        return self.url + path

    def seen(self, path: str | None = None) -> list[Request]:
        with self.lock:
            return [r for r in self.requests if path is None or r.path == path]

    def _dispatch(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        length = int(h.headers.get("Content-Length") or 0)
        if length:
            h.rfile.read(length)
        headers = {k.lower(): v for k, v in h.headers.items()}
        scheme = getattr(h, "scheme", "http")
        request = Request(h.command, parts.path, query, headers, h.path, scheme)
        with self.lock:
            self.requests.append(request)
        handler = self.routes.get(parts.path)
        reply = Reply(h, self.stopping)
        if handler is None:
            reply.send({"error": "not found"}, 404)
        else:
            handler(request, reply)


@contextmanager
def fault_server(tls: bool = False) -> Iterator[FaultServer]:
    server = FaultServer(tls)
    server.thread.start()
    try:
        yield server
    finally:
        server.stopping.set()
        server.httpd.shutdown()
        server.httpd.server_close()
        server.thread.join(5)

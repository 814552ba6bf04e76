"""A TCP proxy on 127.0.0.1 before a ClickHouse server that loses the answer to chosen inserts.

Each request is forwarded whole to the server on a connection of its own; the server's answer is
passed back, except for the inserts whose numbers (1-based, counting inserts only) are in
``cut``: the server runs those to the end (the rows are committed) and the proxy closes the
client's connection without a byte of the answer. That is the fault after which a client cannot
know whether its insert was written: the case where a retry may duplicate rows.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import parse_qs, urlsplit


def _read_head(conn: socket.socket, pending: bytearray) -> bytes | None:
    while b"\r\n\r\n" not in pending:
        data = conn.recv(65536)
        if not data:
            return None
        pending += data
    end = pending.index(b"\r\n\r\n") + 4
    head = bytes(pending[:end])
    del pending[:end]
    return head


def _with_close(head: bytes) -> bytes:
    """``head`` with its ``Connection`` header set to ``close``."""
    lines = [
        line for line in head[:-4].split(b"\r\n") if not line.lower().startswith(b"connection:")
    ]
    return b"\r\n".join([*lines, b"Connection: close"]) + b"\r\n\r\n"


class CuttingProxy:
    """See the module docstring; ``url`` is the address to give the client."""

    def __init__(self, upstream: tuple[str, int], cut: set[int]) -> None:
        self.upstream = upstream
        self.cut = cut
        self.inserts = 0
        self.cut_done: list[int] = []
        self.errors: list[BaseException] = []  # a fault of the proxy itself, not an injected one
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve_logged, args=(conn,), daemon=True).start()

    def _serve_logged(self, conn: socket.socket) -> None:
        try:
            self._serve(conn)
        except BaseException as exc:
            self.errors.append(exc)

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            pending = bytearray()
            head = _read_head(conn, pending)
            if head is None:
                return
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
                if name.strip().lower() == b"transfer-encoding":
                    raise AssertionError("the proxy reads bodies sent with Content-Length only")
            while len(pending) < length:
                data = conn.recv(65536)
                if not data:
                    return
                pending += data
            body = bytes(pending[:length])
            target = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")[1]
            query = parse_qs(urlsplit(target).query).get("query", [""])[0]
            is_insert = query.lstrip().upper().startswith("INSERT")
            with self._lock:
                if is_insert:
                    self.inserts += 1
                number = self.inserts if is_insert else 0
            answer = self._forward(_with_close(head) + body)
            if number in self.cut:
                self.cut_done.append(number)
                conn.shutdown(socket.SHUT_RDWR)  # committed on the server; the answer is lost
                return
            if b"\r\n\r\n" not in answer:
                raise AssertionError(f"the server sent no whole answer: {answer[:200]!r}")
            end = answer.index(b"\r\n\r\n") + 4
            conn.sendall(_with_close(answer[:end]) + answer[end:])

    def _forward(self, request: bytes) -> bytes:
        with socket.create_connection(self.upstream, timeout=30) as up:
            up.sendall(request)
            parts = []
            while data := up.recv(65536):
                parts.append(data)
        return b"".join(parts)

    def close(self) -> None:
        """Stop accepting (closing alone does not wake a blocked ``accept``) and end the thread."""
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        self._thread.join(timeout=10)


@contextmanager
def cutting_proxy(url: str, cut: set[int]) -> Iterator[CuttingProxy]:
    """A :class:`CuttingProxy` before the server at ``url`` (``http://host:port``)."""
    host, _, port = url.split("://", 1)[1].rsplit("@", 1)[-1].partition(":")
    proxy = CuttingProxy((host, int(port.split("/")[0])), cut)
    try:
        yield proxy
    finally:
        proxy.close()
    assert not proxy.errors, f"the proxy itself failed: {proxy.errors!r}"

r"""ClickHouse's HTTP interface over chDB (``chdb-core``: the ClickHouse 26.x engine in-process).

A subprocess, as chDB binds one engine to one data path per process: ``python tests/chdb_front.py
--path DIR [--port 0] [--host H] [--watch-stdin]``; stdout's first line is ``LISTENING <port>``.
Tests: ``start_front(path) -> (process, base_url)``, ``stop_front(process)``.

It answers as a stock 26.x server does (stdlib HTTP/1.1 server, keep-alive, chunked responses):

- GET/POST ``/`` with ``query=`` and/or the query in the body; GET runs with ``readonly=2``;
  ``/ping`` says ``Ok.``. The body of ``POST ?query=INSERT INTO ... FORMAT X`` (or ``VALUES``;
  sized or chunked; plain, gzip, deflate or zstd) streams into ``Connection.send_insert``.
- ``database``, ``default_format`` (or their X-ClickHouse- headers); credentials and ``session_id``
  are ignored (a fresh engine connection per request: SET, USE, temporary tables end with it);
  ``query_id`` is echoed; any other parameter is a setting, applied by ``SET k = 'v'`` (unknown:
  UNKNOWN_SETTING); ``param_X`` go to chDB's native query parameters (the server's semantics).
- Results stream block by block (``Connection.send_query``); chDB formats each block as a whole
  output, so the ``*WithNames[AndTypes]`` header and ArrowStream's schema and end marker are kept
  once, Values blocks joined by commas; other formats (JSON, XML, Pretty, Parquet...) run whole.
  With ``enable_http_compression`` (default 1 in 26.x) the body is zstd, gzip or deflate, the first
  in ``Accept-Encoding`` in the server's order. As on the server an uncompressed body goes out block
  by block, a compressed one from 1 MiB on (``wait_end_of_query=1``: at the end; ``buffer_size``).
- An error before the body: the server's HTTP status, ``X-ClickHouse-Exception-Code`` and ``Code:
  N. DB::Exception: ... (NAME) (version V (official build))\n``. After it, as 25.11+ does
  (``cancelWithException``, src/Server/HTTP/HTTP1/HTTP1ServerResponse.cpp), one more chunk (through
  the compressor if any) and the connection closes without the last empty chunk. The chunk is
  ``\r\n__exception__\r\n<TAG>\r\n<message>\n<N> <TAG>\r\n__exception__\r\n``: TAG is the response's
  ``X-ClickHouse-Exception-Tag`` (16 random a-z), N the bytes of ``<message>\n`` (message cut at
  16307 bytes). Before 25.11 it was ``__exception__\r\n<message>\n``. To get one (uncompressed):
  ``SELECT throwIf(number = 100000) FROM numbers(200000) SETTINGS max_block_size = 1000``.
- Fault hooks, parameter ``x_front_drop`` or header ``X-Front-Drop``: ``body`` resets the connection
  after the first piece of the body, executing nothing; ``response`` executes the request (an
  insert commits) and closes the connection without responding.
- Pinned to the server's defaults: allow_introspection_functions=0, implicit_select=0,
  storage_file_read_method=pread (chDB's differ).

Limits: one process and data path; no native compress/decompress, sessions, progress headers,
HEAD, external data; URLs up to 64 KiB. chDB runs ``;``-separated statements and inserts
synchronously even with async_insert=1. A query in the body is read whole (UTF-8); FORMAT is found
by a regex at the end of the query; an empty result of a format with a header re-runs the SELECT.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from contextlib import suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

BUFFER_SIZE = 1 << 20  # DBMS_DEFAULT_BUFFER_SIZE, the server's response buffer
PINNED = {"allow_introspection_functions": "0", "implicit_select": "0"}
PINNED["storage_file_read_method"] = "pread"
RESERVED = str.split(
    "query database default_format user password quota_key query_id session_id session_timeout"
    " session_check close_session buffer_size wait_end_of_query stacktrace role compress"
    " decompress client_protocol_version x_front_drop"
)
STATUS = {  # exceptionCodeToHTTPStatus.cpp by error code (names in system.errors); others 500
    int(code): int(status)
    for group in str.split(
        "400: 36 427 6 25 26 38 41 72 441 675 676 376 27 15 44 37 123 8 167 168 62 223 117 53 321;"
        " 404: 60 46 47 50 56 81 115 152 63 73 336 78 511; 401: 194; 403: 192 193 516 512 497;"
        " 408: 159; 411: 381; 413: 229; 415: 779; 501: 48; 503: 209 76 439",
        ";",
    )
    for status, codes in [group.split(":")]
    for code in codes.split()
}
CONCAT = str.split(  # formats whose per-block outputs concatenate into the whole output
    "tabseparated tsv tabseparatedraw tsvraw raw csv jsoneachrow jsonlines ndjson rowbinary native"
    " jsonstringseachrow jsoncompacteachrow jsoncompactstringseachrow lineasstring tskv rawblob"
    " customseparated msgpack bsoneachrow"
)
MAX_MESSAGE = 16 * 1024 - 77  # MAX_EXCEPTION_SIZE minus the framing of the block
ARROW_EOS = b"\xff\xff\xff\xff\x00\x00\x00\x00"
INSERT_DATA = re.compile(r"\s*(INSERT\s+INTO\s.*?)\s+(?:FORMAT\s+(\w+)|VALUES)\s*", re.I | re.S)
FORMAT = re.compile(r"\bFORMAT\s+(\w+)(?:\s+SETTINGS\s[^;]*)?\s*;?\s*$", re.I | re.S)
SELECT = re.compile(r"\s*(\(|SELECT\b|WITH\b)", re.I)
Codec = tuple[Callable[[bytes], bytes], Callable[[bool], bytes]]


def _exc(code: int, message: str) -> Exception:
    return RuntimeError(f"Code: {code}. DB::Exception: {message}")


def _kind(fmt: str) -> str:
    """How blocks are stitched: concat, lines<N>, rowbinary<N>, arrowstream, values or whole."""
    f = fmt.lower()
    for suffix, n in (("withnamesandtypes", 2), ("withnames", 1)):
        if f.endswith(suffix) and f[: -len(suffix)] in CONCAT:
            return f"rowbinary{n}" if f.startswith("rowbinary") else f"lines{n}"
    return "concat" if f in CONCAT else f if f in ("arrowstream", "values") else "whole"


def _stitch(kind: str, data: bytes, first: bool) -> bytes:
    """A block's output minus what the first block's output already had."""
    if kind == "arrowstream":
        data = data.removesuffix(ARROW_EOS)
        if not first and data[:4] == b"\xff\xff\xff\xff":  # skip the schema message
            data = data[8 + int.from_bytes(data[4:8], "little") :]
        return data
    if first or kind == "concat":
        return data
    if kind == "values":
        return b"," + data
    pos, sections = 0, int(kind[-1])
    if kind.startswith("lines"):
        for _ in range(sections):
            pos = data.index(b"\n", pos) + 1
        return data[pos:]

    def varint() -> int:
        nonlocal pos
        value = shift = 0
        while True:
            value, pos, shift = value | (data[pos] & 0x7F) << shift, pos + 1, shift + 7
            if data[pos - 1] < 0x80:
                return value

    for _ in range(varint() * sections):  # RowBinaryWithNames[AndTypes]: count, names[, types]
        size = varint()  # (not "pos += varint()": that adds to the old pos)
        pos += size
    return data[pos:]


def _content_type(fmt: str) -> str:
    f = fmt.lower()
    if f.startswith(("native", "rowbinary", "parquet", "arrow", "orc", "avro", "msgpack", "bson")):
        return "application/octet-stream"
    if f.startswith("csv"):
        return f"text/csv; charset=UTF-8; header={'present' if 'withnames' in f else 'absent'}"
    tsv, json_ = f.startswith(("tabseparated", "tsv")), f.startswith(("json", "ndjson"))
    kind = "text/tab-separated-values" if tsv else "application/json" if json_ else "text/plain"
    return ("application/xml" if f == "xml" else kind) + "; charset=UTF-8"


def _quote(value: str, q: str = "'") -> str:
    return q + value.replace("\\", "\\\\").replace(q, "\\" + q) + q


def _codec(enc: str, compress: bool) -> Codec | None:
    """(data -> data, flush(final) -> data) for a Content-Encoding; level 3, as the server's."""
    if enc in ("", "identity"):
        return None
    if enc == "zstd":
        import zstandard

        if not compress:
            return zstandard.ZstdDecompressor().decompressobj().decompress, lambda final: b""
        zc = zstandard.ZstdCompressor(level=3).compressobj()
        modes = (zstandard.COMPRESSOBJ_FLUSH_BLOCK, zstandard.COMPRESSOBJ_FLUSH_FINISH)
        return zc.compress, lambda final: zc.flush(modes[final])
    if enc not in ("gzip", "x-gzip", "deflate"):
        raise _exc(48, f"Unsupported Content-Encoding {enc!r}. (NOT_IMPLEMENTED)")
    if not compress:
        zd = zlib.decompressobj(15 if enc == "deflate" else 47)
        return zd.decompress, lambda final: zd.flush()
    z = zlib.compressobj(3, zlib.DEFLATED, 15 if enc == "deflate" else 31)
    return z.compress, lambda final: z.flush(zlib.Z_FINISH if final else zlib.Z_SYNC_FLUSH)


def _error(exc: BaseException) -> tuple[int, str]:
    """The code and the server's text of an error."""
    text = str(exc).strip()
    if match := re.search(r"Code: (\d+)\. DB::Exception: ", text):
        code, text = int(match.group(1)), text[match.start() :]
    else:
        code, text = 1001, f"Code: 1001. DB::Exception: {text}. (STD_EXCEPTION)"
    text = re.sub(r"\s*\(version [\d.]+\)$", "", text)
    return code, f"{text} (version {_Handler.version} (official build))"


class _Body:
    """The request body, read lazily (sized or chunked) and decompressed."""

    def __init__(self, h: BaseHTTPRequestHandler) -> None:
        self.rfile = h.rfile
        self.chunked = "chunked" in h.headers.get("Transfer-Encoding", "").lower()
        self.left = 0 if self.chunked else int(h.headers.get("Content-Length") or 0)
        self.done = not self.chunked and self.left == 0
        self.codec = _codec(h.headers.get("Content-Encoding", "").strip().lower(), False)

    def raw(self) -> Iterator[bytes]:
        while not self.done:
            if not self.chunked:
                data = self.rfile.read(min(self.left, BUFFER_SIZE))
                self.left -= len(data)
                self.done = self.left == 0
            elif size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                data, _ = self.rfile.read(size), self.rfile.readline()
            else:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                self.done = True
                return
            if not data:
                raise ConnectionError("the request body ended early")
            yield data

    def __iter__(self) -> Iterator[bytes]:
        for data in self.raw():
            if out := self.codec[0](data) if self.codec else data:
                yield out
        if self.codec and (tail := self.codec[1](True)):
            yield tail


class _Out:
    """The response: held until ``threshold`` (compressed) bytes are ready, then chunk by chunk."""

    def __init__(self, h: _Handler, fmt: str, enc: str, threshold: float, drop: bool) -> None:
        self.h, self.fmt, self.enc, self.threshold, self.drop = h, fmt, enc, threshold, drop
        self.codec = _codec(enc, True)
        self.pending: list[bytes] = []
        self.size, self.started, self.chunked = 0, False, h.request_version == "HTTP/1.1"
        self.tag = bytes(random.choices(range(97, 123), k=16)).decode()  # a-z
        self.stats = dict.fromkeys(("read_rows", "read_bytes", "written_rows", "written_bytes"), 0)
        self.stats.update(total_rows_to_read=0, result_rows=0, result_bytes=0)
        self.t0 = time.monotonic_ns()

    def add(self, res: Any) -> None:
        for key, value in (("result_rows", res.rows_read()), ("result_bytes", res.bytes_read())):
            self.stats[key] += value
        self.stats["read_rows"] += res.storage_rows_read()
        self.stats["read_bytes"] += res.storage_bytes_read()

    def headers(self, status: int, extra: dict[str, str]) -> None:
        h = self.h
        h.send_response(status)
        extra |= {"X-ClickHouse-Server-Display-Name": "chdb-front", "X-ClickHouse-Query-Id": h.qid}
        extra |= {"X-ClickHouse-Timezone": h.tz, "X-ClickHouse-Exception-Tag": self.tag}
        for name, value in extra.items():
            h.send_header(name, value)
        if not h.close_connection:
            h.send_header("Keep-Alive", "timeout=30")
        h.end_headers()

    def send(self, data: bytes) -> None:
        if data:  # an empty chunk would end the body
            self.h.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if self.chunked else data)

    def write(self, data: bytes, final: bool = False) -> None:
        if self.drop or not (data or final):
            return
        data = self.codec[0](data) if self.codec else data
        self.pending.append(data)
        self.size += len(data)
        if final or self.started or self.size >= self.threshold:
            if self.codec:
                self.pending.append(self.codec[1](final))
            if not self.started:
                summary = {k: str(v) for k, v in self.stats.items()}
                summary.update(elapsed_ns=str(time.monotonic_ns() - self.t0), memory_usage="0")
                extra = {"X-ClickHouse-Summary": json.dumps(summary, separators=(",", ":"))}
                extra |= {"Content-Type": _content_type(self.fmt), "X-ClickHouse-Format": self.fmt}
                extra |= {"Content-Encoding": self.enc} if self.enc else {}
                extra |= (
                    {"Transfer-Encoding": "chunked"} if self.chunked else {"Connection": "close"}
                )
                self.h.close_connection |= not self.chunked
                self.headers(200, extra)
                self.started = True
            self.send(b"".join(self.pending))
            self.pending.clear()
            self.size = 0

    def finish(self) -> None:
        if self.drop:
            self.h.abort(reset=False)
            return
        self.write(b"", final=True)
        if self.chunked:
            self.h.wfile.write(b"0\r\n\r\n")

    def fail(self, code: int, message: str) -> None:
        if self.drop:
            self.h.abort(reset=False)
        elif not self.started:
            body = (message.removesuffix("\n") + "\n").encode()
            extra = {"X-ClickHouse-Exception-Code": str(code), "Content-Length": str(len(body))}
            self.headers(
                STATUS.get(code, 500), extra | {"Content-Type": "text/plain; charset=UTF-8"}
            )
            self.h.wfile.write(body)
        else:
            text = message.encode()[:MAX_MESSAGE].removesuffix(b"\n") + b"\n"
            tag, mark = self.tag.encode(), b"__exception__"
            block = b"\r\n%s\r\n%s\r\n%s%d %s\r\n%s\r\n" % (mark, tag, text, len(text), tag, mark)
            self.send(self.codec[0](block) + self.codec[1](False) if self.codec else block)
            self.h.abort(reset=False)  # and no last chunk: the client sees a broken body


class _Handler(BaseHTTPRequestHandler):
    protocol_version, server_version, sys_version = "HTTP/1.1", "chdb-front", ""
    timeout = 30  # idle keep-alive connections are closed after this
    chdb: Any = None  # set by main(): the module, the data path, engine version and time zone
    data_path = version = tz = qid = ""
    lock = threading.Lock()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def abort(self, reset: bool) -> None:
        """Close the connection after this request, with RST if ``reset`` (else FIN)."""
        self.close_connection = True
        with suppress(OSError):
            self.wfile.flush()
            if reset:
                linger = (1).to_bytes(4, sys.byteorder) + bytes(4)  # struct linger {1, 0}
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)

    def do_GET(self) -> None:
        try:
            self.handle_query()
        except OSError:  # the client went away
            self.close_connection = True

    do_POST = do_GET

    def handle_query(self) -> None:
        url = urlsplit(self.path)
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        self.qid, get = params.get("query_id") or str(uuid.uuid4()), self.command == "GET"
        if url.path in ("/ping", "/replicas_status") or (url.path == "/" and get and not params):
            self.send_response(200)
            self.send_header("Content-Length", "4")
            self.end_headers()
            self.wfile.write(b"Ok.\n")
            return
        drop = (params.get("x_front_drop") or self.headers.get("X-Front-Drop") or "").lower()
        fmt = params.get("default_format") or self.headers.get("X-ClickHouse-Format", "")
        settings = {k: v for k, v in params.items() if k not in RESERVED and k[:6] != "param_"}
        on = settings.get("enable_http_compression", "1").lower() in ("1", "true")
        accept = self.headers.get("Accept-Encoding", "").lower() if on else ""
        encs = ("zstd",) if importlib.util.find_spec("zstandard") else ()
        enc = next((e for e in (*encs, "gzip", "deflate") if e in accept), "")
        threshold = float(params.get("buffer_size") or (BUFFER_SIZE if enc else 0))
        if "1" in (params.get("wait_end_of_query"), settings.get("http_wait_end_of_query")):
            threshold = float("inf")
        out = _Out(self, fmt or "TabSeparated", enc, threshold, drop == "response")
        body: _Body | None = None
        conn: Any = None
        try:
            body = _Body(self)
            if url.path != "/":
                raise _exc(1001, f"There is no handle {url.path}. (STD_EXCEPTION)")
            if drop == "body":
                next(body.raw(), None)
                self.abort(reset=True)
                return
            if "1" in (params.get("compress"), params.get("decompress")):
                raise _exc(48, "compress=1/decompress=1 are not supported. (NOT_IMPLEMENTED)")
            if get:
                settings.setdefault("readonly", "2")
            with self.lock:
                conn = self.chdb.connect(self.data_path)
            if database := params.get("database") or self.headers.get("X-ClickHouse-Database"):
                conn.query(f"USE {_quote(database, '`')}")
            pairs = PINNED | settings
            if bad := [name for name in pairs if not re.fullmatch(r"\w+", name)]:
                raise _exc(115, f"Unknown setting '{bad[0]}'. (UNKNOWN_SETTING)")
            conn.query("SET " + ", ".join(f"{k} = {_quote(v)}" for k, v in pairs.items()))
            self.execute(conn, params, body, out)
        except Exception as exc:
            with suppress(Exception):
                for _ in body.raw() if body else ():
                    pass  # drain, so that the connection can take the next request
            out.fail(*_error(exc))
        finally:
            if conn is not None:
                conn.close()
            self.close_connection |= body is None or not body.done

    def execute(self, conn: Any, params: dict[str, str], body: _Body, out: _Out) -> None:
        query = params.get("query", "")
        qparams = {k[6:]: v for k, v in params.items() if k[:6] == "param_"}
        if self.command == "POST" and (insert := INSERT_DATA.fullmatch(query)):
            inserter = conn.send_insert(insert.group(1), insert.group(2) or "Values")
            try:
                for data in body:
                    inserter.append(data)
                result = inserter.finish()
            except BaseException:
                with suppress(Exception):
                    inserter.cancel()
                raise
            out.stats.update(written_rows=result.rows_written, written_bytes=result.bytes_written)
            out.finish()
            return
        text = b"".join(body).decode("utf-8", errors="replace")
        sql = f"{query}\n{text}" if query and text else query or text
        if not sql.strip():
            raise _exc(62, "Empty query. (SYNTAX_ERROR)")
        out.fmt = match.group(1) if (match := FORMAT.search(sql)) else out.fmt
        stream, first, kind = None, True, _kind(out.fmt)
        try:
            if kind != "whole":
                stream = conn.send_query(sql, out.fmt, params=qparams)
            for chunk in stream or ():
                out.add(chunk)
                out.write(_stitch(kind, chunk.bytes(), first))
                first = False
        except Exception as exc:  # DDL, INSERT ... SELECT, SHOW...: they run whole
            if stream or "Streaming query is not supported" not in str(exc):
                raise
        finally:
            with suppress(Exception):
                getattr(stream, "close", lambda: None)()
        if not stream or (first and kind != "concat" and SELECT.match(sql)):
            result = conn.query(sql, out.fmt, params=qparams)
            out.add(result)
            out.write(result.bytes())
        elif kind == "arrowstream" and not first:
            out.write(ARROW_EOS)
        out.finish()


def start_front(path: str, timeout: float = 30.0) -> tuple[subprocess.Popen[bytes], str]:
    """Start the front on the data directory ``path``; return the process and its base URL.

    The process exits when stdin closes, so also when the caller dies."""
    if importlib.util.find_spec("chdb") is None:
        raise RuntimeError("the chDB front needs the chdb-core package: pip install chdb-core")
    cmd = [sys.executable, os.path.abspath(__file__), "--watch-stdin", "--path", path]
    with tempfile.TemporaryFile() as log:
        pipe = subprocess.PIPE
        proc = subprocess.Popen(cmd, stdin=pipe, stdout=pipe, stderr=log)
        stdout, lines = proc.stdout, list[bytes]()
        assert stdout is not None
        reader = threading.Thread(target=lambda: lines.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)  # on a timeout it ends with the process, in stop_front
        line = lines[0] if lines else b""
        if line.startswith(b"LISTENING "):
            return proc, f"http://127.0.0.1:{int(line.split()[1])}"
        stop_front(proc)
        log.seek(0)
        err = log.read().decode(errors="replace").strip()[-4000:] or line.decode(errors="replace")
    raise RuntimeError(
        f"the chDB front did not start in {timeout:.0f} s ({proc.returncode}): {err}"
    )


def stop_front(proc: subprocess.Popen[bytes]) -> None:
    """Stop a front started by ``start_front``."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            pipe.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="ClickHouse HTTP interface over chDB")
    parser.add_argument("--path", required=True, help="chDB data directory (or :memory:)")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--watch-stdin", action="store_true", help="exit when stdin closes")
    args = parser.parse_args(argv)
    import chdb

    base = chdb.connect(args.path)  # held open: the engine stops with its last connection
    _Handler.chdb, _Handler.data_path, _Handler.version = chdb, args.path, chdb.engine_version
    _Handler.tz = base.query("SELECT timezone()", "TSV").bytes().decode().strip()
    server = ThreadingHTTPServer((args.host, args.port), _Handler)
    print(f"LISTENING {server.server_address[1]}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

    def watch() -> None:  # os.read: a daemon thread in sys.stdin.read would block the exit
        while os.read(0, 1 << 16):
            pass
        server.shutdown()

    if args.watch_stdin:
        threading.Thread(target=watch, daemon=True).start()
    try:
        server.serve_forever()
    finally:
        server.server_close()
        base.close()


if __name__ == "__main__":
    main()

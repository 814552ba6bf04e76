"""The embedded ClickHouse engine: chDB in this process, and the calls of one request to it.

``chdb:///abs/path`` URLs name a data directory, ``chdb://`` an engine in memory. chDB runs one
engine per process, on one data path: the first request starts it (importing chDB takes about
0.2 s; the engine some 260-400 MB of memory) and one connection stays open until the process
exits, since chDB stops the engine when its last connection closes; another path is refused with
an error naming both. :mod:`.embedded` answers HTTP requests with it.

Each request gets a connection of its own (``USE`` its database, ``SET`` its settings, then the
query), and every blocking call runs in a worker thread. A cancelled call (a cancelled run, a read
timeout) kills the request's query (``KILL QUERY``, found by its ``log_comment``) and waits for
the thread; a result closed early stops its query: nothing keeps running.
"""

from __future__ import annotations

import atexit
import importlib
import importlib.util
import os
import re
import threading
import uuid
from collections.abc import Callable
from contextlib import suppress
from typing import Any, Generic, TypeVar

import anyio
import httpx

__all__ = [
    "SCHEME",
    "Call",
    "Engine",
    "EngineError",
    "embedded_path",
    "embedded_url",
    "engine_error",
    "engine_path",
    "open_engine",
    "started_engine",
]

T = TypeVar("T")

SCHEME = "chdb://"
_INSTALL_HINT = "pip install 'ductwork[chdb]'"

# chDB's defaults differ from the server's here.
_SERVER_DEFAULTS = {
    "allow_introspection_functions": "0",
    "implicit_select": "0",
    "storage_file_read_method": "pread",
}
_SETTING_NAME = re.compile(r"\w+")
_CODE = re.compile(r"Code: (\d+)\. ")
_NOT_STREAMED = "Streaming query is not supported"


# --------------------------------------------------------------------------- URLs and the engine


def embedded_path(url: str) -> str | None:
    """The data path of a ``chdb://`` URL: ``""`` for ``chdb://`` (in memory), the normalised
    absolute path for ``chdb:///abs/path``; ``None`` for any other URL.

    Raises:
        ValueError: a ``chdb:`` URL that is neither.

    Example:
        >>> embedded_path("chdb:///var/lib/etl/"), embedded_path("chdb://")
        ('/var/lib/etl', '')
        >>> embedded_path("http://localhost:8123") is None
        True
    """
    if url[:5].lower() != "chdb:":
        return None
    rest = url[len(SCHEME) :] if url[: len(SCHEME)].lower() == SCHEME else None
    if rest is None or (rest and not rest.startswith("/")) or "?" in rest or "#" in rest:
        raise ValueError(
            f"{url!r} is not an embedded ClickHouse URL: chdb:///absolute/path for a data "
            f"directory, or chdb:// for an engine in memory"
        )
    if not rest:
        return ""
    path = os.path.normpath(rest)
    if path in ("/", "//"):
        raise ValueError(f"{url!r}: the data directory cannot be the root directory")
    return path


def _describe(path: str) -> str:
    return SCHEME + path if path else f"{SCHEME} (in memory)"


def embedded_url(url: str) -> str:
    """Check a ``chdb://`` URL and return it normalised (the check of ``ClickHouseConfig.url``).

    Raises:
        ValueError: a malformed URL; chDB is not installed; or this process's engine already
            runs on another data path (chDB runs one per process).
    """
    path = embedded_path(url)
    if path is None:
        raise ValueError(f"{url!r} is not a chdb:// URL")
    if importlib.util.find_spec("chdb") is None:
        raise ValueError(f"chdb:// needs chDB, the embedded ClickHouse engine: {_INSTALL_HINT}")
    running = engine_path()
    if running is not None and running != path:
        raise ValueError(_one_path(running, path))
    return SCHEME + path


def _one_path(running: str, wanted: str) -> str:
    return (
        f"this process's embedded ClickHouse runs on {_describe(running)}, so it cannot open "
        f"{_describe(wanted)}: chDB runs one data path per process"
    )


def started_engine(path: str) -> Engine | None:
    """This process's engine if it runs on ``path``, else ``None``."""
    engine = _engine
    return engine if engine is not None and engine.path == path else None


def engine_path() -> str | None:
    """The data path of this process's embedded engine (``""``: in memory), ``None`` before one
    was started."""
    engine = _engine
    return None if engine is None else engine.path


class Engine:
    """The process's chDB engine, kept running by one connection held open."""

    def __init__(self, path: str) -> None:
        try:
            self.chdb: Any = importlib.import_module("chdb")
        except ImportError as exc:
            raise ImportError(f"embedded ClickHouse (chdb://) needs chDB: {_INSTALL_HINT}") from exc
        self.path = path
        self.target = path or ":memory:"
        self.lock = threading.Lock()
        try:
            self.base = self.chdb.connect(self.target)
        except RuntimeError as exc:
            error = engine_error(exc)
            raise EngineError(
                error.code,
                f"cannot start embedded ClickHouse on {_describe(path)} (a data directory is open "
                f"in one process at a time): {error.text}",
            ) from exc
        atexit.register(self.base.close)
        version, timezone = self.base.query("SELECT version(), timezone()", "TSV").bytes().split()
        self.version = version.decode()
        self.timezone = timezone.decode()

    def connect(self) -> Any:
        with self.lock:  # chDB's connect is not thread-safe
            return self.chdb.connect(self.target)

    def kill(self, marker: str) -> None:
        """Kill the queries of the request with this marker (its ``log_comment``)."""
        conn = self.connect()
        try:
            conn.query(f"KILL QUERY WHERE Settings['log_comment'] = '{marker}' ASYNC")
        finally:
            conn.close()


_engine: Engine | None = None
_engine_lock = threading.Lock()


def open_engine(path: str) -> Engine:
    """The process's engine, started on ``path`` if there is none yet.

    Raises:
        EngineError: it runs on another path.
    """
    global _engine
    with _engine_lock:
        if _engine is None:
            _engine = Engine(path)
        elif _engine.path != path:
            raise EngineError(36, f"{_one_path(_engine.path, path)}. (BAD_ARGUMENTS)")
        return _engine


# --------------------------------------------------------------------------- errors


class EngineError(Exception):
    """An error to answer with: the code and the server's text."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.text = message if message.startswith("Code: ") else f"Code: {code}. {message}"


def engine_error(exc: BaseException) -> EngineError:
    """The code and text of an error chDB raised (its messages carry the server's text after a
    prefix such as ``Streaming query failed: ``)."""
    if isinstance(exc, EngineError):
        return exc
    text = str(exc).strip()
    if match := _CODE.search(text):
        return EngineError(int(match.group(1)), text[match.start() :])
    return EngineError(1001, f"DB::Exception: {text or type(exc).__name__}. (STD_EXCEPTION)")


# --------------------------------------------------------------------------- one request


class _Work(Generic[T]):
    """A blocking call for a worker thread that can be abandoned before it starts."""

    def __init__(self, fn: Callable[[], T]) -> None:
        self.fn = fn
        self.lock = threading.Lock()
        self.state = "pending"
        self.done = threading.Event()

    def __call__(self) -> T | None:
        with self.lock:
            if self.state == "abandoned":
                return None
            self.state = "running"
        try:
            return self.fn()
        finally:
            self.done.set()

    def abandon(self) -> bool:
        """Whether the call will never run (else it is running, or ran)."""
        with self.lock:
            if self.state == "pending":
                self.state = "abandoned"
            return self.state == "abandoned"


class Call:
    """One request's engine connection. Its blocking calls run in worker threads; a cancelled
    call kills the request's query and waits for its thread."""

    def __init__(self, engine: Engine, settings: dict[str, str], timeout: float | None) -> None:
        self.engine = engine
        # The marker KILL QUERY finds the request's queries by (unless the request sets
        # log_comment itself: then a cancelled call is waited for without being killed).
        self.marker = None if "log_comment" in settings else uuid.uuid4().hex
        self.settings = {**_SERVER_DEFAULTS, **settings}
        if self.marker is not None:
            self.settings["log_comment"] = self.marker
        self.timeout = timeout
        self.conn: Any = None
        self.stream: Any = None  # a streaming result
        self.streaming = False  # whether it has blocks still to come
        self.inserter: Any = None  # an open streaming insert

    def open(self, database: str | None) -> None:
        """Connect, then ``USE`` the database and ``SET`` the settings (in a worker thread)."""
        if bad := [name for name in self.settings if not _SETTING_NAME.fullmatch(name)]:
            raise EngineError(115, f"DB::Exception: Unknown setting '{bad[0]}'. (UNKNOWN_SETTING)")
        self.conn = self.engine.connect()
        if database:
            self.conn.query(f"USE {_quote(database, '`')}")
        pairs = ", ".join(f"{name} = {_quote(value)}" for name, value in self.settings.items())
        self.conn.query(f"SET {pairs}")

    async def run(self, fn: Callable[[], T]) -> T:
        """``fn()`` in a worker thread, within the request's read timeout.

        Raises:
            httpx.ReadTimeout: it took longer.
        """
        try:
            with anyio.fail_after(self.timeout):
                return await self._run(fn)
        except TimeoutError:
            raise httpx.ReadTimeout(
                f"embedded ClickHouse did not answer within {self.timeout:g} s"
            ) from None

    async def _run(self, fn: Callable[[], T]) -> T:
        work = _Work(fn)
        try:
            result = await anyio.to_thread.run_sync(work, abandon_on_cancel=True)
        except anyio.get_cancelled_exc_class():
            if not work.abandon():
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(self._stop, work.done)
            raise
        return result  # type: ignore[return-value]  # None only when abandoned

    def _stop(self, done: threading.Event) -> None:
        while not done.wait(0.05):
            if self.marker is not None:
                self.engine.kill(self.marker)

    def start(self, sql: str, fmt: str, params: dict[str, str]) -> bool:
        """Start streaming the result of ``sql``; ``False`` if chDB does not stream it."""
        try:
            self.stream = self.conn.send_query(sql, fmt, params=params)
        except RuntimeError as exc:
            if _NOT_STREAMED not in str(exc):
                raise
            return False
        self.streaming = True
        return True

    def fetch(self) -> bytes | None:
        """The next block's output (``None``: the result is complete)."""
        try:
            chunk = self.stream.fetch()
        except BaseException:
            self.streaming = False
            raise
        if chunk is None:
            self.streaming = False
            return None
        return bytes(chunk.bytes())

    async def close(self) -> None:
        """End the request: stop a query still running, drop an unfinished insert, disconnect."""
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self._close)

    def _close(self) -> None:
        stream, inserter, conn = self.stream, self.inserter, self.conn
        self.stream = self.inserter = self.conn = None
        with suppress(Exception):
            if stream is not None and self.streaming:
                self.streaming = False
                if self.marker is not None:
                    self.engine.kill(self.marker)  # else cancel() waits for the block in flight
                stream.cancel()
        with suppress(Exception):
            if inserter is not None:
                inserter.cancel()
        if conn is not None:
            conn.close()


def _quote(value: str, mark: str = "'") -> str:
    """``value`` as a SQL string literal (or, with ``mark="`"``, a quoted identifier)."""
    return mark + value.replace("\\", "\\\\").replace(mark, "\\" + mark) + mark

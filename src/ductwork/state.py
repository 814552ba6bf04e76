"""State stores: values that outlive a run (incremental cursors) and the history of runs.

A state store keeps JSON-serialisable values under string keys, either global or scoped to one
pipeline (``pipeline=``), and a bounded history of run records per pipeline, newest last. Stages
reach it through ``ctx.state``; a run of a registered pipeline appends its record (the RunResult
summary) with :func:`record_run`, and marks its time window as succeeded so that a backfill can
skip it.

The protocol every store follows, :class:`~ductwork.StateStore`, is defined in the core
(:mod:`ductwork.core.store`), so that runs can hand a store to stages without the core depending
on this module. Three stores ship with ductwork:

- :class:`MemoryStateStore` keeps everything in memory (tests, processes that need no persistence);
- :class:`~ductwork.SqliteStateStore` (``ductwork.state_sqlite``) keeps everything in an SQLite
  database in WAL mode, one transaction per change: safe for several processes at once, and the
  command line's default;
- :class:`JsonFileStateStore` keeps everything in one JSON file, rewritten atomically (temporary
  file, ``fsync``, rename) on every change, so a crash never leaves a half-written file. Every
  instance for the same path in one process shares one in-memory copy and one lock, so concurrent
  runs (tasks, event loops or threads) never lose each other's updates; across processes each
  write holds a lock on the file's directory, so writers take turns instead of losing data.

Example:
    >>> import anyio
    >>> async def demo():
    ...     store = MemoryStateStore()
    ...     await store.set("cursor", "2024-05-01T00:00:00Z", pipeline="orders")
    ...     await store.update("seen", lambda n: n + 10, default=0, pipeline="orders")
    ...     await store.append_run("orders", {"run_id": "r1", "status": "succeeded"})
    ...     return (
    ...         await store.get("cursor", pipeline="orders"),
    ...         await store.get("cursor"),
    ...         await store.get("seen", pipeline="orders"),
    ...         [run["run_id"] for run in await store.list_runs("orders")],
    ...     )
    >>> anyio.run(demo)
    ('2024-05-01T00:00:00Z', None, 10, ['r1'])
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar, Unpack

import anyio
import orjson

from ._exceptions import ConfigError
from .core.context import TimeWindow
from .core.store import _MISSING, _UNCHANGED, StateStore, StateStoreBase

if TYPE_CHECKING:
    from .core.result import RunResult

__all__ = [
    "SUCCEEDED_WINDOWS_KEY",
    "JsonFileStateStore",
    "MemoryStateStore",
    "StateStore",
    "record_run",
    "run_record",
    "succeeded_windows",
]

#: Key (in each pipeline's scope) under which the windows that ran successfully are kept, as a
#: sorted list of merged ``[start, end]`` ISO-8601 pairs in UTC.
SUCCEEDED_WINDOWS_KEY = "ductwork.succeeded_windows"

_FORMAT = 1
_H = TypeVar("_H")
_T = TypeVar("_T")
_GLOBAL = ""
_LOCK_TIMEOUT = 30.0


def _json_copy(value: Any) -> Any:
    """A JSON round trip of ``value``: checks it is serialisable and detaches it from the caller."""
    return orjson.loads(orjson.dumps(value))


class _StateData:
    """The document both stores keep: ``{"format", "values": {scope: {key: value}}, "runs"}``."""

    def __init__(self, doc: dict[str, Any] | None = None, *, max_runs: int) -> None:
        doc = doc or {}
        self.values: dict[str, dict[str, Any]] = doc.get("values", {})
        self.runs: dict[str, list[dict[str, Any]]] = doc.get("runs", {})
        self.max_runs = max_runs

    @classmethod
    def from_json(cls, raw: bytes, *, source: str, max_runs: int) -> _StateData:
        if not raw.strip():
            return cls(max_runs=max_runs)
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise _corrupt(source, f"is not valid JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise _corrupt(source, "does not hold a JSON object")
        if "format" not in doc:  # a flat mapping of global keys
            return cls({"values": {_GLOBAL: doc}}, max_runs=max_runs)
        if doc["format"] != _FORMAT:
            raise _corrupt(source, f"has unsupported format {doc['format']!r}")
        values, runs = doc.get("values", {}), doc.get("runs", {})
        if not isinstance(values, dict) or not isinstance(runs, dict):
            raise _corrupt(source, "is malformed: 'values' and 'runs' must be objects")
        return cls(doc, max_runs=max_runs)

    def to_json(self) -> bytes:
        doc = {"format": _FORMAT, "values": self.values, "runs": self.runs}
        return orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)


def _corrupt(source: str, problem: str) -> ConfigError:
    """The error for a state file that cannot be read (a ``ConfigError``, so a ``ValueError``)."""
    return ConfigError(f"state file {source} {problem}", [("state", f"{source} {problem}")])


def _check_max_runs(max_runs: int) -> int:
    if isinstance(max_runs, bool) or not isinstance(max_runs, int) or max_runs < 1:
        raise ConfigError.for_field("max_runs", f"must be a positive integer, got {max_runs!r}")
    return max_runs


class _RunRecorder(StateStoreBase[_H]):
    """A store that records a run and its succeeded window in one transaction."""

    async def _record_run(
        self, pipeline: str, record: Mapping[str, Any], succeeded: TimeWindow | None
    ) -> None:
        """A run's record and, when it succeeded, its window: one transaction."""
        copy = self._copy(dict(record))

        def change(handle: _H) -> None:
            self._append(handle, pipeline, copy)
            if succeeded is not None:
                merge = partial(_merge_span, window=succeeded)
                self._change(handle, SUCCEEDED_WINDOWS_KEY, merge, [], pipeline)

        await self._transact(change, write=True)


class _DocumentStore(_RunRecorder[_StateData]):
    """The primitives of the stores that keep the whole document in memory (a ``_StateData``)."""

    def _read(self, handle: _StateData, key: str, pipeline: str | None) -> Any:
        scope = handle.values.get(pipeline or _GLOBAL, {})
        return _json_copy(scope[key]) if key in scope else _MISSING

    def _write(self, handle: _StateData, key: str, value: Any, pipeline: str | None) -> None:
        handle.values.setdefault(pipeline or _GLOBAL, {})[key] = _json_copy(value)

    def _remove(self, handle: _StateData, key: str, pipeline: str | None) -> bool:
        name = pipeline or _GLOBAL
        scope = handle.values.get(name)
        if scope is None or key not in scope:
            return False
        del scope[key]
        if not scope:
            del handle.values[name]
        return True

    def _append(self, handle: _StateData, pipeline: str, record: dict[str, Any]) -> None:
        history = handle.runs.setdefault(pipeline, [])
        history.append(record)
        if len(history) > handle.max_runs:
            del history[: len(history) - handle.max_runs]

    def _history(
        self, handle: _StateData, pipeline: str, limit: int | None
    ) -> list[dict[str, Any]]:
        history = handle.runs.get(pipeline, [])
        newest = history[::-1] if limit is None else history[: -limit - 1 : -1]
        return _json_copy(newest)  # type: ignore[no-any-return]


class MemoryStateStore(_DocumentStore):
    """A state store held in memory, for tests and for processes that need no persistence.

    Args:
        max_runs: run records kept per pipeline; older ones are dropped.
    """

    def __init__(self, *, max_runs: int = 100) -> None:
        self._data = _StateData(max_runs=_check_max_runs(max_runs))

    def __repr__(self) -> str:
        return f"MemoryStateStore(pipelines={sorted(self._data.runs)!r})"

    async def _transact(self, fn: Callable[[_StateData], _T], *, write: bool) -> _T:
        return fn(self._data)


class _FileBacking:
    """The shared in-memory copy of one state file, and the lock serialising access to it.

    The copy is reloaded when the file changed on disk since it was last read or written (by a
    process that does not share this object), so readers see the latest committed state.
    """

    def __init__(self, path: Path, max_runs: int) -> None:
        self.path = path
        self.max_runs = max_runs
        self.lock = threading.Lock()
        self._data: _StateData | None = None
        self._signature: tuple[int, int, int] | None = None
        self._opened = False

    def open(self) -> None:
        """On first use in the process: remove temporary files a killed writer left behind, and
        read the file, so a corrupt one is reported now (ConfigError), not after a run."""
        with self.lock:
            if self._opened:
                return
            if self.path.parent.is_dir():
                with _directory_lock(self.path.parent):
                    for stale in self.path.parent.glob(f".{self.path.name}.*.tmp"):
                        with contextlib.suppress(FileNotFoundError):
                            stale.unlink()
            self.load()
            self._opened = True

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def load(self) -> _StateData:
        """The current document (the caller holds ``lock``)."""
        signature = self._stat()
        if self._data is None or signature != self._signature:
            if signature is None:
                self._data = _StateData(max_runs=self.max_runs)
            else:
                raw = self.path.read_bytes()
                self._data = _StateData.from_json(
                    raw, source=str(self.path), max_runs=self.max_runs
                )
            self._signature = signature
        self._data.max_runs = self.max_runs
        return self._data

    def save(self, data: _StateData) -> None:
        """Write ``data`` atomically (the caller holds ``lock``)."""
        try:
            _atomic_write(self.path, data.to_json())
        except BaseException:
            self._data = None  # the file still holds the previous state: reload it next time
            raise
        self._signature = self._stat()

    def read(self, fn: Callable[[_StateData], Any]) -> Any:
        with self.lock:
            return fn(self.load())

    def write(self, fn: Callable[[_StateData], Any]) -> Any:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.lock, _directory_lock(self.path.parent):
            data = self.load()
            out = fn(data)
            if out is not _UNCHANGED:
                self.save(data)
            return out


@contextlib.contextmanager
def _directory_lock(directory: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``directory`` (the lock file of the state files in it):
    processes writing the same state file take turns. Waits up to 30 s, then fails clearly."""
    try:
        import fcntl
    except ImportError:  # not a POSIX system: writes are coordinated within the process only
        yield
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        deadline = time.monotonic() + _LOCK_TIMEOUT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"the state files in {directory} are locked by another process for "
                        f"more than {_LOCK_TIMEOUT:g}s"
                    ) from None
                time.sleep(0.002)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


_backings: weakref.WeakValueDictionary[Path, _FileBacking] = weakref.WeakValueDictionary()
_backings_lock = threading.Lock()


def _backing_for(path: Path, max_runs: int) -> _FileBacking:
    with _backings_lock:
        backing = _backings.get(path)
        if backing is None:
            backing = _FileBacking(path, max_runs)
            _backings[path] = backing
        else:
            backing.max_runs = max(backing.max_runs, max_runs)
        return backing


class JsonFileStateStore(_DocumentStore):
    """A state store persisted as one JSON file, rewritten atomically on every change.

    Writes go to a temporary file in the same directory, are flushed to disk and renamed into
    place, so a crash (even ``kill -9``) in the middle of a write leaves the previous complete
    file. Instances for the same path in one process share their data and lock; file I/O runs in
    a worker thread and is never abandoned half-way when the caller is cancelled.

    Every change is one ``fsync``'ed rewrite of the whole file (about 10 ms for a file of a
    hundred run records on a virtual machine's disk; see ``benchmarks/bench_backfill.py``), which
    is small beside a run but bounds how many trivial runs per second can be recorded. Instances
    for one path share the largest ``max_runs`` given.

    Meant for one process. Several processes may share the file: each write holds an exclusive
    lock on the file's directory while it reads the latest file, changes it and renames the new
    one into place, so writers take turns and no update is lost (a writer that cannot get the
    lock within 30 s fails with ``TimeoutError``); but every write rewrites the whole file, so
    for several busy processes :class:`~ductwork.SqliteStateStore` is the store to use.

    Every call runs in a worker thread while the file is locked (``update``'s ``fn`` too: keep it
    small and pure).

    Opening the store removes temporary files left by a writer that was killed, and reads the
    file: a corrupt one raises :class:`~ductwork.ConfigError` naming it, before any run.

    Args:
        path: the JSON file; it and its directory are created on the first write.
        max_runs: run records kept per pipeline; older ones are dropped.
    """

    def __init__(self, path: str | os.PathLike[str], *, max_runs: int = 100) -> None:
        self.path = Path(path)
        self._backing = _backing_for(self.path.resolve(), _check_max_runs(max_runs))
        self._backing.open()

    def __repr__(self) -> str:
        return f"JsonFileStateStore({str(self.path)!r})"

    async def _transact(self, fn: Callable[[_StateData], _T], *, write: bool) -> _T:
        run = self._backing.write if write else self._backing.read
        out: _T = await anyio.to_thread.run_sync(run, fn)
        return out


def _atomic_write(path: Path, payload: bytes) -> None:
    """Replace ``path`` by ``payload`` so that readers and crashes only ever see a whole file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (where the platform allows opening directories)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --- run history ------------------------------------------------------------------------------


def run_record(
    pipeline: str,
    result: RunResult,
    *,
    window: TimeWindow | None = None,
    params: Mapping[str, Any] | None = None,
    trigger: str | None = None,
) -> dict[str, Any]:
    """The history record of one run: ``result.to_dict()`` plus what the run was asked to do.

    Args:
        pipeline: the name the pipeline is registered under (the history's key).
        result: the run's result.
        window: the time window the run covered.
        params: the run's parameters (values that are not JSON-serialisable are stored as text).
        trigger: what started the run (``"manual"``, ``"schedule"``, ``"backfill"``, ...).
    """
    record = result.to_dict()
    record["pipeline"] = pipeline
    record["window"] = (
        {"start": window.start.isoformat(), "end": window.end.isoformat()} if window else None
    )
    record["params"] = orjson.loads(orjson.dumps(dict(params or {}), default=str))
    record["trigger"] = trigger
    record["recorded_at"] = datetime.now(UTC).isoformat()
    return record


class _RunDetails(TypedDict, total=False):
    """What a run was asked to do (the keyword arguments of :func:`run_record`)."""

    window: TimeWindow | None
    params: Mapping[str, Any] | None
    trigger: str | None


async def record_run(
    store: StateStore, pipeline: str, result: RunResult, **details: Unpack[_RunDetails]
) -> dict[str, Any]:
    """Append the run's record to ``pipeline``'s history; remember its window if it succeeded.

    Args:
        store: the store holding the history.
        pipeline: the name the pipeline is registered under (the history's key).
        result: the run's result.
        **details: ``window``, ``params`` and ``trigger``, as :func:`run_record` takes them.

    Returns:
        The record that was appended (see :func:`run_record`).
    """
    record = run_record(pipeline, result, **details)
    window = details.get("window")
    succeeded = window if window is not None and result.succeeded else None
    record_both = getattr(store, "_record_run", None)
    if record_both is not None:
        await record_both(pipeline, record, succeeded)  # both at once: one write
        return record
    await store.append_run(pipeline, record)
    if succeeded is not None:
        await store.update(
            SUCCEEDED_WINDOWS_KEY,
            lambda spans: _merge_span(spans, succeeded),
            default=[],
            pipeline=pipeline,
        )
    return record


async def succeeded_windows(store: StateStore, pipeline: str) -> list[TimeWindow]:
    """The time ranges in which ``pipeline`` has run successfully, merged, in UTC, in order."""
    spans = await store.get(SUCCEEDED_WINDOWS_KEY, [], pipeline=pipeline)
    return [
        TimeWindow(datetime.fromisoformat(start), datetime.fromisoformat(end))
        for start, end in spans
    ]


def _merge_span(spans: list[list[str]], window: TimeWindow) -> list[list[str]]:
    """Add ``window`` to a sorted list of disjoint ``[start, end]`` spans, merging touching ones."""
    items = [(datetime.fromisoformat(s), datetime.fromisoformat(e)) for s, e in spans]
    items.append((window.start.astimezone(UTC), window.end.astimezone(UTC)))
    items.sort()
    merged: list[tuple[datetime, datetime]] = []
    for start, end in items:
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return [[s.astimezone(UTC).isoformat(), e.astimezone(UTC).isoformat()] for s, e in merged]

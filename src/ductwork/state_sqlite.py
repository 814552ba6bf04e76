"""A state store in an SQLite database, safe for several processes at once.

Values and run records live in two tables of one database file (stdlib ``sqlite3``, in WAL mode,
so readers never wait for a writer). Every change is one ``BEGIN IMMEDIATE`` transaction: an
:meth:`~SqliteStateStore.update` reads, computes and writes while holding the database's write
lock, so concurrent updates from several tasks, threads or processes are never lost; a writer
that finds the lock taken waits for it (up to ``timeout`` seconds). Calls run in a worker thread.

Commits use ``synchronous=NORMAL``: a committed change survives the process being killed; a
power cut may lose the last few commits, never corrupt the database.

Example:
    >>> import anyio, tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "state.db"
    >>> async def demo():
    ...     store = SqliteStateStore(path)
    ...     await store.update("seen", lambda n: n + 1, default=0, pipeline="orders")
    ...     await store.append_run("orders", {"run_id": "r1", "status": "succeeded"})
    ...     runs = await store.list_runs("orders")
    ...     return await store.get("seen", pipeline="orders"), [r["run_id"] for r in runs]
    >>> anyio.run(demo)
    (1, ['r1'])
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import anyio
import orjson

from ._exceptions import ConfigError
from .core.store import _MISSING
from .state import _GLOBAL, _check_max_runs, _RunRecorder, _StateData

__all__ = ["SqliteStateStore", "migrate_json_state"]

_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS state_values (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (scope, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS state_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    pipeline TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS state_runs_by_pipeline ON state_runs (pipeline, id);
"""


def _enable_wal(db: sqlite3.Connection, timeout: float) -> None:
    """Switch the file to WAL mode, waiting up to ``timeout`` for other openers.

    Changing the journal mode needs an exclusive lock, and SQLite answers "database is locked"
    at once (without its busy handler) while another process opens the same new file.
    """
    deadline = time.monotonic() + timeout
    pause = 0.005
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if time.monotonic() >= deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.1)


class SqliteStateStore(_RunRecorder[sqlite3.Connection]):
    """A state store in an SQLite database file: safe across processes (see the module docs).

    Opening the store creates the file and its tables when missing, and checks that an existing
    file is an SQLite database of this layout: a corrupt one raises
    :class:`~ductwork.ConfigError` naming it, before any run.

    Args:
        path: the database file (conventionally ``*.db``); its directory is created.
        max_runs: run records kept per pipeline; older ones are dropped.
        timeout: seconds a write waits for another writer's transaction to end.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, max_runs: int = 100, timeout: float = 30.0
    ) -> None:
        self.path = Path(path)
        self.max_runs = _check_max_runs(max_runs)
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(
                self.path, timeout=timeout, isolation_level=None, check_same_thread=False
            )
            _enable_wal(self._db, timeout)
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise ConfigError(
                f"state file {self.path} is not a usable SQLite database: {exc}",
                [("state", f"{self.path}: {exc}")],
            ) from exc

    def __repr__(self) -> str:
        return f"SqliteStateStore({str(self.path)!r})"

    def close(self) -> None:
        """Close the database connection (the store refuses use afterwards)."""
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------------ the store's primitives

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: the database's write lock is taken at the start."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _write_sync(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        with self._transaction() as db:
            return fn(db)

    def _read_sync(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        with self._lock:
            return fn(self._db)

    async def _transact(self, fn: Callable[[sqlite3.Connection], _T], *, write: bool) -> _T:
        out: _T = await anyio.to_thread.run_sync(self._write_sync if write else self._read_sync, fn)
        return out

    def _read(self, handle: sqlite3.Connection, key: str, pipeline: str | None) -> Any:
        row = handle.execute(
            "SELECT value FROM state_values WHERE scope = ? AND key = ?",
            (pipeline or _GLOBAL, key),
        ).fetchone()
        return _MISSING if row is None else orjson.loads(row[0])

    def _write(
        self, handle: sqlite3.Connection, key: str, value: Any, pipeline: str | None
    ) -> None:
        handle.execute(
            "INSERT OR REPLACE INTO state_values (scope, key, value) VALUES (?, ?, ?)",
            (pipeline or _GLOBAL, key, orjson.dumps(value).decode()),
        )

    def _remove(self, handle: sqlite3.Connection, key: str, pipeline: str | None) -> bool:
        cursor = handle.execute(
            "DELETE FROM state_values WHERE scope = ? AND key = ?", (pipeline or _GLOBAL, key)
        )
        return cursor.rowcount > 0

    def _append(self, handle: sqlite3.Connection, pipeline: str, record: Mapping[str, Any]) -> None:
        handle.execute(
            "INSERT INTO state_runs (pipeline, record) VALUES (?, ?)",
            (pipeline, orjson.dumps(record).decode()),
        )
        handle.execute(
            "DELETE FROM state_runs WHERE pipeline = ? AND id <= (SELECT id FROM state_runs "
            "WHERE pipeline = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
            (pipeline, pipeline, self.max_runs),
        )

    def _history(
        self, handle: sqlite3.Connection, pipeline: str, limit: int | None
    ) -> list[dict[str, Any]]:
        rows = handle.execute(
            "SELECT record FROM state_runs WHERE pipeline = ? ORDER BY id DESC LIMIT ?",
            (pipeline, -1 if limit is None else limit),
        ).fetchall()
        return [orjson.loads(row[0]) for row in rows]

    def _import(self, data: _StateData) -> None:
        """Copy a JSON store's document into this database (one transaction)."""
        with self._transaction() as db:
            for scope, values in data.values.items():
                for key, value in values.items():
                    self._write(db, key, value, scope)
            for pipeline, history in data.runs.items():
                for record in history:
                    self._append(db, pipeline, record)


def migrate_json_state(json_path: str | os.PathLike[str], store: SqliteStateStore) -> bool:
    """Copy a JSON state file into ``store`` and rename it to ``<name>.migrated``.

    Returns:
        whether there was a file to migrate.

    Raises:
        ConfigError: the JSON file is corrupt.
    """
    source = Path(json_path)
    if not source.is_file():
        return False
    data = _StateData.from_json(source.read_bytes(), source=str(source), max_runs=store.max_runs)
    store._import(data)
    source.rename(source.with_name(source.name + ".migrated"))
    return True

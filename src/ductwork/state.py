"""State stores: where runs keep incremental cursors and other values between runs.

A state store maps string keys to JSON-serialisable values. Stages reach it through
``ctx.state``; keys are conventionally prefixed with the pipeline name.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import anyio
import orjson

__all__ = ["JsonFileStateStore", "MemoryStateStore", "StateStore"]


@runtime_checkable
class StateStore(Protocol):
    """A key-value store for state that outlives a run."""

    async def get(self, key: str, default: Any = None) -> Any:
        """Return the value stored under ``key``, or ``default``."""
        ...

    async def set(self, key: str, value: Any) -> None:
        """Store ``value`` (JSON-serialisable) under ``key``."""
        ...

    async def delete(self, key: str) -> None:
        """Remove ``key`` if present."""
        ...


class MemoryStateStore:
    """A state store held in memory, for tests and for processes that need no persistence."""

    def __init__(self) -> None:
        self._data: dict[str, Any] = {}

    async def get(self, key: str, default: Any = None) -> Any:
        """Return the value stored under ``key``, or ``default``."""
        return self._data.get(key, default)

    async def set(self, key: str, value: Any) -> None:
        """Store ``value`` under ``key`` (a JSON round trip checks it is serialisable)."""
        self._data[key] = orjson.loads(orjson.dumps(value))

    async def delete(self, key: str) -> None:
        """Remove ``key`` if present."""
        self._data.pop(key, None)


class JsonFileStateStore:
    """A state store persisted as one JSON file, rewritten atomically on every change.

    Writes go to a temporary file in the same directory and are renamed into place, so a crash
    never leaves a half-written state file.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = anyio.Lock()
        self._data: dict[str, Any] | None = None

    async def _load(self) -> dict[str, Any]:
        if self._data is None:
            try:
                raw = await anyio.Path(self.path).read_bytes()
            except FileNotFoundError:
                self._data = {}
            else:
                loaded = orjson.loads(raw) if raw.strip() else {}
                if not isinstance(loaded, dict):
                    raise ValueError(f"state file {self.path} does not hold a JSON object")
                self._data = loaded
        return self._data

    async def get(self, key: str, default: Any = None) -> Any:
        """Return the value stored under ``key``, or ``default``."""
        async with self._lock:
            return (await self._load()).get(key, default)

    async def set(self, key: str, value: Any) -> None:
        """Store ``value`` under ``key`` and persist the file."""
        async with self._lock:
            data = await self._load()
            data[key] = orjson.loads(orjson.dumps(value))
            await self._save(data)

    async def delete(self, key: str) -> None:
        """Remove ``key`` if present and persist the file."""
        async with self._lock:
            data = await self._load()
            if key in data:
                del data[key]
                await self._save(data)

    async def _save(self, data: dict[str, Any]) -> None:
        payload = orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
        await anyio.to_thread.run_sync(_atomic_write, self.path, payload)


def _atomic_write(path: Path, payload: bytes) -> None:
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

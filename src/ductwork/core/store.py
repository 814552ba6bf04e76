"""The state store protocol: what stages, runs and the registry ask of a store.

A state store keeps values that outlive a run (incremental cursors) and the history of runs. The
stores that ship with ductwork (memory, JSON file) are in :mod:`ductwork.state`, the SQLite one in
:mod:`ductwork.state_sqlite`; anything with these methods is a store too. The stores that ship
derive from :class:`StateStoreBase`, which implements the methods once on a few primitives.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

import orjson

from .._exceptions import ConfigError

__all__ = ["StateStore", "StateStoreBase"]

_H = TypeVar("_H")
_T = TypeVar("_T")


@runtime_checkable
class StateStore(Protocol):
    """A store for state that outlives a run: values per pipeline and key, and run history.

    ``pipeline=None`` addresses the global scope; any other value a scope of its own, so two
    pipelines may both keep a ``"cursor"``. Values must be JSON-serialisable; what is read back is
    a JSON round trip of what was written.
    """

    async def get(self, key: str, default: Any = None, *, pipeline: str | None = None) -> Any:
        """Return the value stored under ``key`` (in ``pipeline``'s scope), or ``default``."""
        ...

    async def set(self, key: str, value: Any, *, pipeline: str | None = None) -> None:
        """Store ``value`` under ``key`` (in ``pipeline``'s scope)."""
        ...

    async def delete(self, key: str, *, pipeline: str | None = None) -> None:
        """Remove ``key`` (from ``pipeline``'s scope) if present."""
        ...

    async def update(
        self,
        key: str,
        fn: Callable[[Any], Any],
        *,
        default: Any = None,
        pipeline: str | None = None,
    ) -> Any:
        """Atomically replace the value under ``key`` by ``fn(current or default)``; return it.

        No other change to the store happens between the read and the write, so concurrent
        updates (two runs raising a counter) are never lost.
        """
        ...

    async def append_run(self, pipeline: str, record: Mapping[str, Any]) -> None:
        """Append a run record to ``pipeline``'s history (the oldest records are dropped)."""
        ...

    async def list_runs(self, pipeline: str, limit: int | None = 20) -> list[dict[str, Any]]:
        """Return ``pipeline``'s most recent run records, newest first (at most ``limit``)."""
        ...


_MISSING: Any = object()
"""What a store's ``_read`` returns for a key that holds no value."""

_UNCHANGED: Any = object()
"""What a write transaction returns when it changed nothing (a store may then skip saving)."""


class StateStoreBase(abc.ABC, Generic[_H]):
    """The :class:`StateStore` methods, implemented once on a few primitives a store defines.

    A store says how it runs a transaction (:meth:`_transact`: in the event loop, or in a worker
    thread under a lock or inside a database transaction) and how one value or run record is
    read and written inside one (:meth:`_read`, :meth:`_write`, :meth:`_remove`,
    :meth:`_append`, :meth:`_history`), given the handle the transaction passes (the document in
    memory, a database connection). Everything else follows: scopes, defaults, the JSON round
    trips, the checks, and :meth:`update` as one read and one write in a single transaction.
    """

    # ------------------------------------------------------------------ the primitives

    @abc.abstractmethod
    async def _transact(self, fn: Callable[[_H], _T], *, write: bool) -> _T:
        """Run ``fn`` with the store's handle as one transaction (``write``: it may change)."""

    @abc.abstractmethod
    def _read(self, handle: _H, key: str, pipeline: str | None) -> Any:
        """The value under ``key`` (a copy the caller may keep), or ``_MISSING``."""

    @abc.abstractmethod
    def _write(self, handle: _H, key: str, value: Any, pipeline: str | None) -> None:
        """Store ``value`` (a JSON round trip already) under ``key``."""

    @abc.abstractmethod
    def _remove(self, handle: _H, key: str, pipeline: str | None) -> bool:
        """Remove ``key``; whether there was a value to remove."""

    @abc.abstractmethod
    def _append(self, handle: _H, pipeline: str, record: dict[str, Any]) -> None:
        """Append ``record`` (a JSON round trip already) to ``pipeline``'s bounded history."""

    @abc.abstractmethod
    def _history(self, handle: _H, pipeline: str, limit: int | None) -> list[dict[str, Any]]:
        """``pipeline``'s most recent run records, newest first (at most ``limit``)."""

    async def _prefetch(self, key: str, pipeline: str | None) -> None:
        """Make ``key`` readable inside a transaction (a store that reads from afar fetches it)."""

    @staticmethod
    def _copy(value: Any) -> Any:
        """A JSON round trip of ``value``: checks it is serialisable and detaches it."""
        return orjson.loads(orjson.dumps(value))

    def _change(
        self, handle: _H, key: str, fn: Callable[[Any], Any], default: Any, pipeline: str | None
    ) -> Any:
        """Inside a transaction: replace the value under ``key`` by ``fn(current or default)``."""
        current = self._read(handle, key, pipeline)
        new = self._copy(fn(default if current is _MISSING else current))
        self._write(handle, key, new, pipeline)
        return new

    # ------------------------------------------------------------------ the StateStore protocol

    async def get(self, key: str, default: Any = None, *, pipeline: str | None = None) -> Any:
        """Return the value stored under ``key`` (in ``pipeline``'s scope), or ``default``."""
        await self._prefetch(key, pipeline)
        value = await self._transact(lambda h: self._read(h, key, pipeline), write=False)
        return default if value is _MISSING else value

    async def set(self, key: str, value: Any, *, pipeline: str | None = None) -> None:
        """Store ``value`` under ``key`` (in ``pipeline``'s scope), in one transaction.

        The JSON round trip that checks the value is serialisable comes first: an unserialisable
        value fails before the store is touched.
        """
        value = self._copy(value)
        await self._transact(lambda h: self._write(h, key, value, pipeline), write=True)

    async def delete(self, key: str, *, pipeline: str | None = None) -> None:
        """Remove ``key`` (from ``pipeline``'s scope) if present."""
        await self._transact(
            lambda h: None if self._remove(h, key, pipeline) else _UNCHANGED, write=True
        )

    async def update(
        self,
        key: str,
        fn: Callable[[Any], Any],
        *,
        default: Any = None,
        pipeline: str | None = None,
    ) -> Any:
        """Atomically replace the value under ``key`` by ``fn(current or default)``; return it.

        ``fn`` runs inside the transaction (in a worker thread, for the stores that use one):
        keep it small and pure.
        """
        await self._prefetch(key, pipeline)
        return await self._transact(
            lambda h: self._change(h, key, fn, default, pipeline), write=True
        )

    async def append_run(self, pipeline: str, record: Mapping[str, Any]) -> None:
        """Append a run record to ``pipeline``'s history (the oldest records are dropped)."""
        copy = self._copy(dict(record))
        await self._transact(lambda h: self._append(h, pipeline, copy), write=True)

    async def list_runs(self, pipeline: str, limit: int | None = 20) -> list[dict[str, Any]]:
        """Return ``pipeline``'s most recent run records, newest first (at most ``limit``)."""
        if limit is not None and (isinstance(limit, bool) or limit < 0):
            raise ConfigError.for_field("limit", f"must be a non-negative integer, got {limit!r}")
        return await self._transact(lambda h: self._history(h, pipeline, limit), write=False)

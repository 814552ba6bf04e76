"""The state store protocol: what stages, runs and the registry ask of a store.

A state store keeps values that outlive a run (incremental cursors) and the history of runs. The
stores that ship with ductwork (memory, JSON file) are in :mod:`ductwork.state`; anything with
these methods is a store too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

__all__ = ["StateStore"]


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

"""The ClickHouse loader's upsert: the checks of a ``ReplacingMergeTree`` table, and one record per
key within an insert.

See :mod:`ductwork.connectors.clickhouse` for what an upsert into ClickHouse can promise.
"""

from __future__ import annotations

from typing import Any, Protocol

from ..._exceptions import ClickHouseLoadError
from ...core.types import Batch
from .client import short_repr
from .codec import valid_column
from .loader_config import ClickHouseLoaderConfig
from .tables import engine_version, sorting_key_columns

__all__ = ["Refusal", "check_upsert", "latest_per_key"]


class Refusal(Protocol):
    """Makes the error about a loader's table that running again would not cure."""

    def __call__(
        self, message: str, code: int | None = None, *, batch: int | None = None, record: Any = None
    ) -> ClickHouseLoadError:
        """The error with ``message``, the server's ``code``, and where it happened."""
        ...


def check_upsert(
    config: ClickHouseLoaderConfig,
    table: str,
    engine: str,
    engine_full: str,
    sorting_key: str,
    refuse: Refusal,
) -> tuple[tuple[str, ...], str | None]:
    """Check that ``table`` (of ``engine``) can take the upserts of ``config``; return its key
    columns and its version column (``None`` if it has none)."""
    if not engine.endswith("ReplacingMergeTree"):
        raise refuse(
            f"mode='upsert' needs a ReplacingMergeTree table (rows with equal sorting key "
            f"replace each other); {table} is {engine}"
        )
    key = tuple(sorting_key_columns(sorting_key))
    if not key or not all(valid_column(part) for part in key):
        raise refuse(
            f"mode='upsert' needs a sorting key of plain columns; {table} is ordered by "
            f"({sorting_key})"
        )
    if config.upsert_key is not None and set(config.upsert_key) != set(key):
        raise refuse(
            f"upsert_key ({', '.join(config.upsert_key)}) is not the sorting key of "
            f"{table} ({', '.join(key)}): ReplacingMergeTree replaces rows whose sorting "
            f"keys are equal"
        )
    version = engine_version(engine_full)
    if config.version_column is not None and config.version_column != version:
        have = f"version column {version!r}" if version else "no version column"
        raise refuse(
            f"version_column {config.version_column!r} is not the version column of "
            f"{table} ({engine} with {have})"
        )
    return key, version


def latest_per_key(
    records: Batch,
    key: tuple[str, ...],
    version: str | None,
    table: str,
    batch_no: int,
    refuse: Refusal,
) -> Batch:
    """Keep one record per upsert key: the highest version, or the last one."""
    latest: dict[Any, dict[str, Any]] = {}
    for record in records:
        try:
            k = tuple(record[c] for c in key)
            if version is not None:
                old = latest.get(k)
                if old is not None and record[version] < old[version]:
                    continue
        except (KeyError, TypeError) as exc:
            what = f"no column {exc}" if isinstance(exc, KeyError) else str(exc)
            raise refuse(
                f"upsert into {table}, batch {batch_no}: a record has {what} "
                f"(key {', '.join(key)}{', version ' + version if version else ''}): "
                f"{short_repr(record)}",
                batch=batch_no,
                record=record,
            ) from None
        latest[k] = record
    return list(latest.values())

"""The options of the ClickHouse loader, validated before anything is sent to the server.

See :mod:`ductwork.connectors.clickhouse` for the semantics of ``upsert``, retries and duplicates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import pyarrow as pa
from pydantic import Field, field_validator, model_validator

from .arrow import clickhouse_type
from .client import StageOptions
from .codec import type_error, valid_column, valid_identifier

__all__ = ["ClickHouseLoaderConfig"]


class ClickHouseLoaderConfig(StageOptions):
    """Options of a :class:`ClickHouseLoader` (see :func:`create_clickhouse_loader`)."""

    table: str
    """``table`` or ``database.table`` (the default database is the connection's)."""
    columns: tuple[str, ...] | None = None
    """The columns to insert, in order; other keys of the records are ignored, and a column a
    record lacks gets a default value (the type's zero value on old servers such as 18.16,
    which ignore DEFAULT expressions there). ``None`` inserts every key of the records."""
    mode: Literal["insert", "upsert"] = "insert"
    """``insert`` appends; ``upsert`` replaces rows by key in a ``ReplacingMergeTree`` table
    (see :mod:`ductwork.connectors.clickhouse`)."""
    batch_size: Annotated[int, Field(ge=1, le=10_000_000, strict=True)] = 100_000
    """Rows per insert. The loader's memory is about one insert of encoded rows (some 15 bytes
    per numeric or short-string column, plus a copy while it is sent): lower it for wide rows
    (10,000 to 20,000 for some 200 columns), above all with deduplication tokens, which cut inserts
    by rows alone."""
    max_bytes: Annotated[int, Field(ge=1024, strict=True)] = 64 * 1024 * 1024
    """Flush when the buffer reaches this many bytes (not with deduplication tokens: then
    inserts are cut by ``batch_size`` alone, so that a rerun cuts them alike). The buffer holds
    the encoded rows only, not the records (but for ``upsert`` and ``dead_letter``, which need
    them back), so this bounds the memory it takes, not only the size of the insert."""
    flush_interval: Annotated[float, Field(gt=0)] | None = 30.0
    """Flush when the oldest buffered record is this many seconds old, also while the input
    pauses (the rest is flushed when the run ends); ``None`` never. Not with deduplication
    tokens (see ``max_bytes``)."""
    deduplication: bool = True
    """Exactly-once inserts where the server can do them: into a table that deduplicates
    (``Replicated*``, or ``non_replicated_deduplication_window`` above 0) on a server with
    ``insert_deduplication_token`` (22.2 and later), every insert carries a token made of the
    pipeline, the run's window and parameters, the insert's number and a digest of its rows, so
    that a retry, or a rerun of the same window, re-sending a batch the server already committed
    is discarded; and a failure after the data was sent is retried. ``False``: no tokens, and
    inserts cut also by ``max_bytes`` and ``flush_interval``."""
    deduplication_window: Annotated[int, Field(ge=0, strict=True)] = 1000
    """The ``non_replicated_deduplication_window`` (blocks remembered) of a table made by
    ``create_table``, on servers that have the setting (21.x and later) and with
    ``deduplication``; ``0`` leaves it out. It must exceed the number of inserts a rerun can
    re-send (the run's rows / ``batch_size``), or the earliest are not recognised. Like a
    Replicated table, the table then also drops an insert of any client that repeats one of its
    last blocks byte for byte."""
    async_insert: bool = False
    """Insert with ``async_insert=1`` and ``wait_for_async_insert=1``: the server gathers many
    small concurrent inserts into one part (for many small loads at once), and each insert still
    returns once its rows are written. Needs ClickHouse 21.11 or later; exactly-once only where
    the server deduplicates async inserts (23.7 and later)."""
    upsert_key: tuple[str, ...] | None = None
    """For ``upsert``: the key columns; must be the table's sorting key."""
    version_column: str | None = None
    """For ``upsert``: the engine's version column (checked against the table's engine)."""
    create_table: dict[str, str] | None = None
    """``{column: type}``: create the table when it does not exist (a ``MergeTree``, or for
    ``upsert`` a ``ReplacingMergeTree`` on ``upsert_key`` and ``version_column``), deduplicating
    inserts (see ``deduplication_window``). A ``pyarrow.Schema`` works too: its fields become
    columns of the types every server version has (``UInt8`` for booleans, ``Date`` for dates,
    ``Nullable(...)`` for nullable fields; sub-second timestamps need ``DateTime64``, 20.1+)."""
    order_by: tuple[str, ...] | None = None
    """The sorting key of a created table (default: ``upsert_key``, else the first column)."""
    dead_letter: Path | None = None
    """A JSON Lines file for records the server rejects: instead of failing, a rejected insert
    is split to isolate its bad records, which are appended there with the error, and the rest
    is inserted."""
    max_dead_letters: Annotated[int, Field(ge=1)] = 1000
    """Fail anyway once this many records were dead-lettered in a run."""
    retries: Annotated[int, Field(ge=0, le=100)] = 3
    """Attempts after the first for an insert that can be retried without duplicating rows."""
    retry_backoff: Annotated[float, Field(ge=0)] = 0.5
    """Seconds before the first retry; doubled for each next one."""
    optimize_final: bool = False
    """Run ``OPTIMIZE TABLE ... FINAL`` after a successful run."""

    @field_validator("table")
    @classmethod
    def _check_table(cls, value: str) -> str:
        if not all(valid_identifier(part) for part in value.split(".")) or value.count(".") > 1:
            raise ValueError(f"{value!r} is not a table name ('table' or 'database.table')")
        return value

    @field_validator("columns", "upsert_key", "order_by")
    @classmethod
    def _check_columns(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("must name at least one column")
        for name in value:
            if not valid_column(name):
                raise ValueError(f"{name!r} is not a column name")
        if len(set(value)) != len(value):
            raise ValueError("names a column twice")
        return value

    @field_validator("version_column")
    @classmethod
    def _check_version(cls, value: str | None) -> str | None:
        if value is not None and not valid_column(value):
            raise ValueError(f"{value!r} is not a column name")
        return value

    @field_validator("create_table", mode="before")
    @classmethod
    def _schema_columns(cls, value: Any) -> Any:
        if isinstance(value, pa.Schema):
            return {field.name: _portable_type(field) for field in value}
        return value

    @field_validator("create_table")
    @classmethod
    def _check_create(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("must define at least one column")
        for column, spec in value.items():
            if not valid_column(column):
                raise ValueError(f"{column!r} is not a column name")
            reason = type_error(spec.strip())
            if reason is not None:
                raise ValueError(f"{spec!r} (column {column!r}) is not a ClickHouse type: {reason}")
        return {column: spec.strip() for column, spec in value.items()}

    @model_validator(mode="after")
    def _check_combination(self) -> ClickHouseLoaderConfig:
        if self.mode == "insert" and (self.upsert_key or self.version_column):
            raise ValueError("upsert_key and version_column need mode='upsert'")
        if self.columns is not None:
            keys = [
                *(self.upsert_key or ()),
                *([self.version_column] if self.version_column else []),
            ]
            for key in keys:
                if key not in self.columns:
                    raise ValueError(f"column {key!r} of the upsert key must be in columns")
        if self.create_table is not None:
            for name in (*(self.columns or ()), *(self.order_by or ()), *(self.upsert_key or ())):
                if name not in self.create_table:
                    raise ValueError(f"column {name!r} is not in create_table")
            if self.version_column and self.version_column not in self.create_table:
                raise ValueError(f"column {self.version_column!r} is not in create_table")
        elif self.order_by is not None:
            raise ValueError("order_by needs create_table")
        return self


def _portable_type(field: pa.Field) -> str:
    """The ClickHouse type of an Arrow field that every server version has, where one exists."""
    try:
        return clickhouse_type(field, modern=False)
    except ValueError:
        return clickhouse_type(field, modern=True)  # sub-second times: DateTime64

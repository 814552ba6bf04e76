"""The two kinds of batch as the transformers see them: records and Arrow tables.

A batch is a list of records (dicts) or a :class:`pyarrow.Table`; a :class:`pyarrow.RecordBatch`
is taken as a table of one chunk. These helpers convert between the kinds and count rows, and
:data:`BATCH_KINDS` is what every transformer of this package declares it accepts.

:func:`is_arrow`, :func:`num_rows`, :func:`to_arrow` and :func:`to_records` have the names,
signatures and behaviour of the core's batch helpers.
"""

from __future__ import annotations

from typing import Any, Literal, TypeAlias

import pyarrow as pa
import pyarrow.compute as pc

from ..core.types import Batch, Record

__all__ = [
    "BATCH_KINDS",
    "AnyBatch",
    "BatchKind",
    "is_arrow",
    "mask_of",
    "num_rows",
    "rows_of",
    "to_arrow",
    "to_records",
]

BatchKind: TypeAlias = Literal["records", "arrow"]
"""The kinds of batch: a list of records, or an Arrow table (or record batch)."""

BATCH_KINDS: frozenset[BatchKind] = frozenset({"records", "arrow"})
"""What the transformers of this package accept (their ``batch_kinds``)."""

AnyBatch: TypeAlias = Batch | pa.Table | pa.RecordBatch
"""A batch of either kind."""


def is_arrow(batch: Any) -> bool:
    """Whether ``batch`` is an Arrow table or record batch (rather than a list of records)."""
    return isinstance(batch, (pa.Table, pa.RecordBatch))


def num_rows(batch: AnyBatch) -> int:
    """The number of rows of a batch of either kind."""
    if isinstance(batch, (pa.Table, pa.RecordBatch)):
        return int(batch.num_rows)
    return len(batch)


def to_arrow(batch: AnyBatch, schema: pa.Schema | None = None) -> pa.Table:
    """The batch as an Arrow table: records via ``Table.from_pylist`` (with ``schema`` if given,
    else inferred), a record batch as a table of that one chunk, a table as it is."""
    if isinstance(batch, pa.Table):
        return batch
    if isinstance(batch, pa.RecordBatch):
        return pa.Table.from_batches([batch])
    return pa.Table.from_pylist(batch, schema=schema)


def to_records(batch: AnyBatch) -> Batch:
    """The batch as a list of records (``Table.to_pylist`` for Arrow batches)."""
    if isinstance(batch, (pa.Table, pa.RecordBatch)):
        records: Batch = batch.to_pylist()
        return records
    return batch


def rows_of(table: pa.Table, indices: list[int]) -> list[Record]:
    """The rows at ``indices`` of ``table`` as records (only those rows are converted)."""
    if not indices:
        return []
    picked: list[Record] = table.take(pa.array(indices, pa.int64())).to_pylist()
    return picked


def mask_of(n: int, rows: list[int]) -> pa.BooleanArray:
    """A boolean array of length ``n``, true at ``rows`` (made without a loop over ``n``)."""
    flags = bytearray(n)
    for row in rows:
        flags[row] = 1
    return pc.not_equal(pa.Array.from_buffers(pa.uint8(), n, [None, pa.py_buffer(flags)]), 0)

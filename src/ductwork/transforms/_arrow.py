"""The two kinds of batch as the transformers see them: records and Arrow tables.

A batch is a list of records (dicts) or a :class:`pyarrow.Table`; a :class:`pyarrow.RecordBatch`
is taken as a table of one chunk. The conversions and row counts are the
core's (:mod:`ductwork.core.arrow`), re-exported here beside the helpers only the transformers
use.
"""

from __future__ import annotations

from typing import TypeAlias

import pyarrow as pa
import pyarrow.compute as pc

from ..core.arrow import is_arrow, num_rows, to_arrow, to_records
from ..core.types import Batch, Record

__all__ = [
    "AnyBatch",
    "is_arrow",
    "mask_of",
    "num_rows",
    "rows_of",
    "to_arrow",
    "to_records",
]

AnyBatch: TypeAlias = "Batch | pa.RecordBatch"
"""A batch of either kind."""


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

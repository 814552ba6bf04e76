"""The two kinds of batch as the transformers see them: records and Arrow tables.

A batch is a list of records (dicts) or a :class:`pyarrow.Table`; a :class:`pyarrow.RecordBatch`
is taken as a table of one chunk. The conversions and row counts are the
core's (:mod:`ductwork.core.arrow`), re-exported here beside the helpers only the transformers
use.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import pyarrow as pa
import pyarrow.compute as pc

from ..core.arrow import is_arrow, num_rows, to_arrow, to_records
from ..core.types import Batch, Record

__all__ = [
    "AnyBatch",
    "is_arrow",
    "is_binary",
    "is_number",
    "is_string",
    "mask_of",
    "num_rows",
    "or_masks",
    "rows_of",
    "screen",
    "to_arrow",
    "to_records",
    "trimmed",
    "valid_unscreened",
    "where_not",
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


def is_string(t: Any) -> bool:
    """Whether ``t`` is a string type (``string`` or ``large_string``)."""
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t))


def is_binary(t: Any) -> bool:
    """Whether ``t`` is a binary type (``binary`` or ``large_binary``)."""
    return bool(pa.types.is_binary(t) or pa.types.is_large_binary(t))


def is_number(t: Any) -> bool:
    """Whether ``t`` is an integer or floating-point type."""
    return bool(pa.types.is_integer(t) or pa.types.is_floating(t))


def where_not(array: Any, mask: Any) -> Any:
    """``array`` with nulls where ``mask`` is true."""
    return pc.if_else(mask, pa.scalar(None, array.type), array)


def screen(strings: Any, pattern: str, ignore_case: bool = False) -> Any:
    """Where ``strings`` match ``pattern`` (false at nulls)."""
    return pc.match_substring_regex(strings, pattern, ignore_case=ignore_case).fill_null(False)


def trimmed(strings: Any) -> Any:
    """``strings`` without the whitespace around them (the characters ``str.strip`` removes)."""
    return pc.utf8_trim_whitespace(strings)


def or_masks(a: Any, b: Any) -> Any:
    """The union of two boolean masks, either of which may be ``None`` (no rows)."""
    if a is None:
        return b
    if b is None:
        return a
    return pc.or_(a, b)


def valid_unscreened(array: Any, ok: Any) -> Any:
    """The non-null rows of ``array`` the screen ``ok`` did not pass."""
    return pc.and_not(array.is_valid(), ok)

"""The column converters of :func:`~ductwork.transforms.convert_types` for Arrow batches.

An Arrow column is converted with :mod:`pyarrow.compute` as a whole, in three steps:

1. **screen**: a vectorised check picks the values the Arrow kernels convert exactly as the
   records path would (for strings, a regular expression of the plain forms: ``-12``, ``1.5e3``,
   ``2024-05-01T12:00:00+02:00``...; for numbers, the source types whose cast is exact);
2. **cast** those with ``pyarrow.compute`` (``cast``, ``strptime``, ``assume_timezone``...); when
   a cast still fails for some of them (``2024-02-30``, an integer out of range), the failing rows
   are found by casting halves of the column in turn, a binary search;
3. **the rest** — values in rarer forms (``1_000``, ``" +7"`` with exotic spaces, ISO week dates),
   source types without a kernel, and bad values — go one by one through the records path's
   converter (:class:`~ductwork.transforms.converters.ColumnConverter`), which converts them or
   gives the error its records would get.

So both kinds accept the same values, give the same values and the same errors, and only values
outside the plain forms (typically the bad ones) are looked at in Python. Where Arrow's types
cannot hold what the records path gives, the Arrow path says so in its error or its output:

* ``int`` is an ``int64`` column (the records path has no bound): a larger value fails,
  ``expected an integer: out of range for int64``;
* ``decimal`` is ``decimal128(38, s)`` (``decimal256(76, s)`` when 38 digits do not hold the
  values), ``s`` being the largest number of decimal places among the batch's values;
* ``datetime`` is ``timestamp[us]``: naive when the batch's values are naive, in UTC when they
  are aware (with ``timezone``, in that zone); a batch mixing naive and aware values without
  ``timezone`` fails the rows of the other kind than its first value;
* ``uuid`` is Arrow's ``uuid`` extension type; ``json`` is Arrow's ``json`` extension type
  holding the text, each value checked with orjson (Arrow has no type for any JSON value, and
  no vectorised JSON check); Arrow nested, number and bool columns are kept as they are;
* a ``date`` or ``datetime`` ``format`` is parsed with ``pyarrow.compute.strptime`` when it uses
  only ``%Y %y %m %d %b %B %H %M %S`` and names a year, a month and a day; other formats (with
  ``%f``, ``%z``...) convert value by value.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import pyarrow as pa
import pyarrow.compute as pc

from ._arrow import is_string, mask_of, screen, where_not
from .arrow_numeric import INT_TYPES, BoolTarget, DecimalTarget, FloatTarget, IntTarget
from .arrow_target import Target
from .arrow_temporal import DateTarget, DatetimeTarget
from .arrow_text import JsonTarget, StrTarget, UuidTarget
from .converters import ColumnConverter, InvalidValue

if TYPE_CHECKING:
    from .column_type import ColumnType

__all__ = ["ArrowColumnConverter", "ConvertedColumn"]

# A blank string: only whitespace (the characters str.strip removes), or nothing.
_WHITESPACE = "".join(c for c in map(chr, range(0x3001)) if c.isspace())
_BLANK_RE = "^[" + "".join(f"\\x{{{ord(c):x}}}" for c in _WHITESPACE) + "]*$"


class ConvertedColumn(NamedTuple):
    """One column of a batch, converted.

    Attributes:
        array: the converted values; ``None`` at the rows that failed.
        failures: row → ``(value, message)`` for the values that did not convert.
        unchanged: whether ``array`` is the input column itself (nothing to replace).
    """

    array: Any
    failures: dict[int, tuple[Any, str]]
    unchanged: bool = False


_TARGETS: dict[str, type[Target]] = {
    **dict.fromkeys(INT_TYPES, IntTarget),
    "float": FloatTarget,
    "str": StrTarget,
    "bool": BoolTarget,
    "decimal": DecimalTarget,
    "date": DateTarget,
    "datetime": DatetimeTarget,
    "uuid": UuidTarget,
    "json": JsonTarget,
}


class ArrowColumnConverter:
    """The Arrow converter of one column, built once beside its records converter."""

    __slots__ = ("column", "name", "target")

    def __init__(self, column: ColumnConverter, spec: ColumnType) -> None:
        self.column = column
        self.name = column.name
        self.target = _TARGETS[spec.type](spec, column)

    def convert(self, data: Any) -> ConvertedColumn:
        """Convert one column (an Arrow array or chunked array) of a batch."""
        column = self.column
        array = data.combine_chunks() if isinstance(data, pa.ChunkedArray) else data
        if pa.types.is_dictionary(array.type):
            array = array.dictionary_decode()
        if pa.types.is_string_view(array.type):
            array = pc.cast(array, pa.string())
        failures: dict[int, tuple[Any, str]] = {}
        changed = False
        missing = array.is_null()
        if column.empty_as_none and is_string(array.type):
            if column.strict_empty:
                empty = pc.equal(array, "").fill_null(False)
            else:
                empty = screen(array, _BLANK_RE)
            if pc.any(empty).as_py():
                missing = pc.or_(missing, empty)
                if column.nullable:
                    array = where_not(array, empty)
                    changed = True
        if not column.nullable and pc.any(missing).as_py():
            message = f"expected {column.expected}; the column is not nullable"
            rows = pc.indices_nonzero(missing).to_pylist()
            for row, value in zip(rows, array.filter(missing).to_pylist(), strict=True):
                failures[row] = (value, message)
            array = where_not(array, missing)
            changed = True
        target = self.target
        if target.keeps(array.type):
            return ConvertedColumn(array, failures, unchanged=not changed)
        pending = target.fast(array)
        rows = []
        values: list[Any] = []
        unresolved = pending.unresolved
        if unresolved is not None and pc.any(unresolved).as_py():
            originals = array.filter(unresolved).to_pylist()
            at = pc.indices_nonzero(unresolved).to_pylist()
            for row, value in zip(at, originals, strict=True):
                try:
                    converted = column.convert(value)
                except InvalidValue as exc:
                    failures[row] = (value, str(exc))
                else:
                    rows.append(row)
                    values.append(converted)
        out, misfits = target.finish(pending, rows, values)
        if misfits:
            at = sorted(misfits)
            originals = array.take(pa.array(at, pa.int64())).to_pylist()
            for row, value in zip(at, originals, strict=True):
                failures[row] = (value, misfits[row])
            out = where_not(out, mask_of(len(out), at))
        return ConvertedColumn(out, failures)

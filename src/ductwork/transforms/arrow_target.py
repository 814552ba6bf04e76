"""What every Arrow target type of :mod:`~ductwork.transforms.arrow_converters` is made of.

A target (:class:`Target`) converts a column in the steps the converters' module docs describe:
it screens the values for the plain forms (each target's regular expressions), casts those with
``pyarrow.compute`` (:func:`apply_step` finds the rows a cast still fails at) and leaves the rest
to the records path's converter, then puts that converter's values back in (``finish``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from ._arrow import is_binary, is_string, mask_of, or_masks, where_not

if TYPE_CHECKING:
    from .column_type import ColumnType
    from .converters import ColumnConverter

__all__ = ["Pending", "Step", "Target", "TypedTarget", "apply_step", "cast_to"]

Step = Callable[[Any], Any]


def _failing(step: Step, array: Any, offset: int = 0) -> list[int]:
    """The rows of ``array`` (known to fail ``step`` as a whole) that fail it: binary search."""
    if len(array) == 1:
        return [offset]
    half = len(array) // 2
    rows = []
    for start, part in ((0, array.slice(0, half)), (half, array.slice(half))):
        try:
            step(part)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OverflowError):
            rows += _failing(step, part, offset + start)
    return rows


def apply_step(step: Step, array: Any) -> tuple[Any, Any]:
    """``step(array)``, or when some rows make it fail, ``step`` of the others (nulls at the
    failing rows) and the mask of the failing rows (else ``None``)."""
    try:
        return step(array), None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OverflowError):
        mask = mask_of(len(array), _failing(step, array))
    return step(where_not(array, mask)), mask


def cast_to(target: Any, safe: bool = True) -> Step:
    """The step that casts an array to ``target`` (``safe``: refusing lossy casts)."""
    return lambda array: pc.cast(array, target, safe=safe)


class Pending:
    """What a fast path converted: ``array`` (nulls elsewhere) and the non-null input rows it
    left to the records converter (``unresolved``, a boolean mask, or ``None`` for none)."""

    __slots__ = ("array", "unresolved")

    def __init__(self, array: Any, unresolved: Any) -> None:
        self.array = array
        self.unresolved = unresolved


class Target:
    """How one target type is made from Arrow columns (subclasses per type)."""

    expected: str

    def __init__(self, spec: ColumnType, column: ColumnConverter) -> None:
        self.spec = spec
        self.expected = column.expected

    def keeps(self, t: Any) -> bool:
        """Whether a column of type ``t`` already holds converted values."""
        return False

    def fast(self, array: Any) -> Pending:
        """Convert what the kernels convert exactly; the default leaves every value to Python."""
        t = array.type
        if is_string(t):
            return self.from_strings(array)
        if is_binary(t):
            strings, failed = apply_step(cast_to(pa.string()), array)
            pending = self.from_strings(strings)
            return Pending(pending.array, or_masks(pending.unresolved, failed))
        for is_kind, convert in (
            (pa.types.is_integer, self.from_integers),
            (pa.types.is_floating, self.from_floats),
            (pa.types.is_boolean, self.from_bools),
            (pa.types.is_decimal, self.from_decimals),
            (pa.types.is_date, self.from_dates),
            (pa.types.is_timestamp, self.from_timestamps),
        ):
            if is_kind(t):
                return convert(array)
        return self.by_value(array)

    def by_value(self, array: Any) -> Pending:
        return Pending(pa.nulls(len(array), self.arrow_type()), array.is_valid())

    from_strings = from_integers = from_floats = from_bools = by_value
    from_decimals = from_dates = from_timestamps = by_value

    def arrow_type(self) -> Any:
        """The output type (for targets whose type does not depend on the values)."""
        raise NotImplementedError

    def finish(
        self, pending: Pending, rows: list[int], values: list[Any]
    ) -> tuple[Any, dict[int, str]]:
        """Put the values the records converter made (at ``rows``) into the fast path's array;
        returns the column and the rows whose value the Arrow type cannot hold (→ message)."""
        failures = {
            row: message
            for row, value in zip(rows, values, strict=True)
            if (message := self.misfit(value))
        }
        if failures:
            kept = [
                (row, value) for row, value in zip(rows, values, strict=True) if row not in failures
            ]
            rows = [row for row, _ in kept]
            values = [value for _, value in kept]
        array = pending.array
        if rows:
            array = pc.replace_with_mask(
                array, mask_of(len(array), rows), pa.array(values, type=array.type)
            )
        return array, failures

    def misfit(self, value: Any) -> str | None:
        """Why the Arrow type cannot hold ``value`` (a value the records path converted)."""
        return None


class TypedTarget(Target):
    """A target of one Arrow type (``type``), which a column of that type already holds."""

    type: Any

    def arrow_type(self) -> Any:
        return self.type

    def keeps(self, t: Any) -> bool:
        return bool(t == self.type)

    def cast_exactly(self, array: Any) -> Pending:
        """Cast to ``type`` where the cast is exact, leaving the failing rows to Python."""
        out, failed = apply_step(cast_to(self.type), array)
        return Pending(out, failed)

"""The Arrow targets of the number and boolean types: ints, ``float``, ``bool``, ``decimal``.

See :mod:`~ductwork.transforms.arrow_converters` for what each gives.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from ._arrow import mask_of, or_masks, screen, trimmed, valid_unscreened, where_not
from .arrow_target import Pending, Target, TypedTarget, apply_step, cast_to
from .converters import _BOOL_WORDS, _BOUNDS

if TYPE_CHECKING:
    from .column_type import ColumnType
    from .converters import ColumnConverter

__all__ = ["FLOAT_RE", "INT_TYPES", "BoolTarget", "DecimalTarget", "FloatTarget", "IntTarget"]

# The plain forms each kernel converts exactly as Python does (after trimming whitespace, which
# pyarrow's utf8_trim_whitespace does for the same characters as str.strip).
_INT_RE = r"^[+-]?[0-9]+$"
FLOAT_RE = r"^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$|^[+-]?(?:inf|infinity|nan)$"
_DECIMAL_RE = r"^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)$"

INT_TYPES = {
    "int": pa.int64(),
    "int8": pa.int8(),
    "int16": pa.int16(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "uint8": pa.uint8(),
    "uint16": pa.uint16(),
    "uint32": pa.uint32(),
    "uint64": pa.uint64(),
}


@functools.cache
def _bool_words(flag: bool) -> pa.Array:
    """The words read as ``flag`` (made on first use: ``pa.array`` of a list imports pandas,
    where it is installed, which ``import ductwork`` need not pay for)."""
    return pa.array([w for w, value in _BOOL_WORDS.items() if value is flag], pa.string())


class IntTarget(TypedTarget):
    """Integers of the column's Arrow integer type (``int`` is ``int64``)."""

    def __init__(self, spec: ColumnType, column: ColumnConverter) -> None:
        super().__init__(spec, column)
        self.type = INT_TYPES[spec.type]
        self.lo, self.hi = _BOUNDS["int64" if spec.type == "int" else spec.type]

    def from_strings(self, array: Any) -> Pending:
        text = trimmed(array)
        ok = screen(text, _INT_RE)
        text = pc.utf8_ltrim(where_not(text, pc.invert(ok)), characters="+")
        out, failed = apply_step(cast_to(self.type), text)
        return Pending(out, or_masks(valid_unscreened(array, ok), failed))

    from_integers = from_floats = from_bools = from_decimals = TypedTarget.cast_exactly

    def misfit(self, value: Any) -> str | None:
        if self.lo <= value <= self.hi:
            return None
        return f"expected {self.expected}: out of range for int64"


class FloatTarget(TypedTarget):
    """Floats, as ``float64``."""

    type = pa.float64()

    def from_strings(self, array: Any) -> Pending:
        text = trimmed(array)
        ok = screen(text, FLOAT_RE, ignore_case=True)
        out, failed = apply_step(cast_to(pa.float64()), where_not(text, pc.invert(ok)))
        return Pending(out, or_masks(valid_unscreened(array, ok), failed))

    def from_integers(self, array: Any) -> Pending:
        # int → float rounds to nearest, ties to even, as float(int) does
        return Pending(pc.cast(array, pa.float64(), safe=False), None)

    def from_floats(self, array: Any) -> Pending:
        return Pending(pc.cast(array, pa.float64()), None)

    from_bools = from_floats

    def from_decimals(self, array: Any) -> Pending:
        # through the exact decimal text: correctly rounded, as float(Decimal) is
        return self.from_strings(pc.cast(array, pa.string()))


class BoolTarget(TypedTarget):
    """Booleans, from the words of the records path and from numbers equal to 1 or 0."""

    type = pa.bool_()

    def from_strings(self, array: Any) -> Pending:
        # Only ASCII letters and digits make a word, so lowering with str.lower() or with
        # utf8_lower picks the same values; the others go to the records converter.
        words = pc.utf8_lower(trimmed(array))
        true = pc.is_in(words, value_set=_bool_words(True))
        false = pc.is_in(words, value_set=_bool_words(False))
        out = pc.if_else(true, True, pc.if_else(false, False, pa.scalar(None, pa.bool_())))
        return Pending(out, valid_unscreened(array, pc.or_(true, false)))

    def from_numbers(self, array: Any) -> Pending:
        one = pc.equal(array, 1).fill_null(False)
        zero = pc.equal(array, 0).fill_null(False)
        out = pc.if_else(one, True, pc.if_else(zero, False, pa.scalar(None, pa.bool_())))
        return Pending(out, valid_unscreened(array, pc.or_(one, zero)))

    from_integers = from_floats = from_numbers


class DecimalTarget(Target):
    """Decimals: the scale is the batch's largest, so that every value fits exactly."""

    def keeps(self, t: Any) -> bool:
        return bool(pa.types.is_decimal(t))

    def from_strings(self, array: Any) -> Pending:
        text = trimmed(array)
        ok = screen(text, _DECIMAL_RE)
        return Pending(where_not(text, pc.invert(ok)), valid_unscreened(array, ok))

    def from_integers(self, array: Any) -> Pending:
        return Pending(pc.cast(array, pa.string()), None)

    def from_floats(self, array: Any) -> Pending:
        # Arrow writes a float with the digits of repr(); the plain forms parse as Decimal(repr)
        return self.from_strings(pc.cast(array, pa.string()))

    def arrow_type(self) -> Any:
        return pa.string()  # what the fast path leaves: the plain decimal strings

    def finish(
        self, pending: Pending, rows: list[int], values: list[Any]
    ) -> tuple[Any, dict[int, str]]:
        text = pending.array
        scale = whole = 0
        if text.null_count < len(text):
            point = pc.find_substring(text, ".")
            point = pc.if_else(pc.less(point, 0), pa.scalar(None, point.type), point)
            frac = pc.subtract(pc.subtract(pc.utf8_length(text), point), 1)
            digits = pc.utf8_length(pc.utf8_ltrim(text, characters="+-"))
            ints = pc.subtract(digits, pc.fill_null(pc.add(frac, 1), 0))
            scale = int(pc.max(frac).as_py() or 0)
            whole = int(pc.max(ints).as_py() or 0)
        for value in values:
            _, digit_tuple, exponent = value.as_tuple()
            scale = max(scale, -int(exponent))
            whole = max(whole, len(digit_tuple) + int(exponent))
        if scale + whole <= 38:
            target = pa.decimal128(38, scale)
        else:
            target = pa.decimal256(76, min(scale, 76))
        array, failed = apply_step(cast_to(target), text)
        failures = {}
        if failed is not None:
            message = f"expected {self.expected}: out of range for {target}"
            failures = dict.fromkeys(pc.indices_nonzero(failed).to_pylist(), message)
        if rows:
            kept = []
            for row, value in zip(rows, values, strict=True):
                _, digit_tuple, exponent = value.as_tuple()
                if -int(exponent) > target.scale or len(digit_tuple) + int(exponent) > (
                    target.precision - target.scale
                ):
                    failures[row] = f"expected {self.expected}: out of range for {target}"
                else:
                    kept.append((row, value))
            if kept:
                array = pc.replace_with_mask(
                    array,
                    mask_of(len(array), [row for row, _ in kept]),
                    pa.array([value for _, value in kept], type=target),
                )
        return array, failures

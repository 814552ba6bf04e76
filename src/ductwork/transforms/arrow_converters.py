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

import functools
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from ._arrow import mask_of as _mask
from .converters import _BOOL_WORDS, _BOUNDS, ColumnConverter, InvalidValue

if TYPE_CHECKING:
    from .column_type import ColumnType

__all__ = ["ArrowColumnConverter", "ConvertedColumn"]

Step = Callable[[Any], Any]

_INT_TYPES = {
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

# The plain forms each kernel converts exactly as Python does (after trimming whitespace, which
# pyarrow's utf8_trim_whitespace does for the same characters as str.strip).
_INT_RE = r"^[+-]?[0-9]+$"
_FLOAT_RE = r"^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$|^[+-]?(?:inf|infinity|nan)$"
_DECIMAL_RE = r"^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)$"
_DATE_RE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
_TIME = r"[T ](?:[01][0-9]|2[0-3])(?::[0-5][0-9](?::[0-5][0-9](?:\.[0-9]{1,6})?)?)?"
_NAIVE_RE = rf"^[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}(?:{_TIME})?$"
_AWARE_RE = rf"^[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}{_TIME}(?:Z|[+-](?:[01][0-9]|2[0-3]):?[0-5][0-9])$"
_UUID_RE = (
    r"^(?:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|[0-9a-fA-F]{32})$"
)
_WHITESPACE = "".join(c for c in map(chr, range(0x3001)) if c.isspace())
_BLANK_RE = "^[" + "".join(f"\\x{{{ord(c):x}}}" for c in _WHITESPACE) + "]*$"


@functools.cache
def _bool_words(flag: bool) -> pa.Array:
    """The words read as ``flag`` (made on first use: ``pa.array`` of a list imports pandas,
    where it is installed, which ``import ductwork`` need not pay for)."""
    return pa.array([w for w, value in _BOOL_WORDS.items() if value is flag], pa.string())


# The range of Python's datetime, in microseconds from the Unix epoch.
_MIN_US = -62_135_596_800 * 10**6
_MAX_US = 253_402_300_800 * 10**6 - 1

# strptime directives the Arrow kernel parses as Python does, as Python's _strptime matches them.
_MONTHS = "january|february|march|april|may|june|july|august|september|october|november|december"
_DIRECTIVES = {
    "Y": r"(?P<Y>\d\d\d\d)",
    "y": r"(?P<y>\d\d)",
    "m": r"(?P<m>1[0-2]|0[1-9]|[1-9])",
    "d": r"(?P<d>3[0-1]|[1-2]\d|0[1-9]|[1-9]| [1-9])",
    "b": r"(?P<b>jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)",
    "B": rf"(?P<B>{_MONTHS})",
    "H": r"(?P<H>2[0-3]|[0-1]\d|\d)",
    "M": r"(?P<M>[0-5]\d|\d)",
    "S": r"(?P<S>6[0-1]|[0-5]\d|\d)",
}


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


def _is_string(t: Any) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t))


def _is_binary(t: Any) -> bool:
    return bool(pa.types.is_binary(t) or pa.types.is_large_binary(t))


def _is_number(t: Any) -> bool:
    return bool(pa.types.is_integer(t) or pa.types.is_floating(t))


def _false(n: int) -> Any:
    return pa.nulls(n, pa.bool_()).fill_null(False)


def _where_not(array: Any, mask: Any) -> Any:
    """``array`` with nulls where ``mask`` is true."""
    return pc.if_else(mask, pa.scalar(None, array.type), array)


def _screen(strings: Any, pattern: str, ignore_case: bool = False) -> Any:
    """Where ``strings`` match ``pattern`` (false at nulls)."""
    return pc.match_substring_regex(strings, pattern, ignore_case=ignore_case).fill_null(False)


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


def _apply(step: Step, array: Any) -> tuple[Any, Any]:
    """``step(array)``, or when some rows make it fail, ``step`` of the others (nulls at the
    failing rows) and the mask of the failing rows (else ``None``)."""
    try:
        return step(array), None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OverflowError):
        mask = _mask(len(array), _failing(step, array))
    return step(_where_not(array, mask)), mask


def _cast(target: Any, safe: bool = True) -> Step:
    return lambda array: pc.cast(array, target, safe=safe)


def _trimmed(strings: Any) -> Any:
    return pc.utf8_trim_whitespace(strings)


class _Pending:
    """What a fast path converted: ``array`` (nulls elsewhere) and the non-null input rows it
    left to the records converter (``unresolved``, a boolean mask, or ``None`` for none)."""

    __slots__ = ("array", "unresolved")

    def __init__(self, array: Any, unresolved: Any) -> None:
        self.array = array
        self.unresolved = unresolved


class _Target:
    """How one target type is made from Arrow columns (subclasses per type)."""

    expected: str

    def __init__(self, spec: ColumnType, column: ColumnConverter) -> None:
        self.spec = spec
        self.expected = column.expected

    def keeps(self, t: Any) -> bool:
        """Whether a column of type ``t`` already holds converted values."""
        return False

    def fast(self, array: Any) -> _Pending:
        """Convert what the kernels convert exactly; the default leaves every value to Python."""
        t = array.type
        if _is_string(t):
            return self.from_strings(array)
        if _is_binary(t):
            strings, failed = _apply(_cast(pa.string()), array)
            pending = self.from_strings(strings)
            return _Pending(pending.array, _or(pending.unresolved, failed))
        if pa.types.is_integer(t):
            return self.from_integers(array)
        if pa.types.is_floating(t):
            return self.from_floats(array)
        if pa.types.is_boolean(t):
            return self.from_bools(array)
        if pa.types.is_decimal(t):
            return self.from_decimals(array)
        if pa.types.is_date(t):
            return self.from_dates(array)
        if pa.types.is_timestamp(t):
            return self.from_timestamps(array)
        return self.by_value(array)

    def by_value(self, array: Any) -> _Pending:
        return _Pending(pa.nulls(len(array), self.arrow_type()), array.is_valid())

    from_strings = from_integers = from_floats = from_bools = by_value
    from_decimals = from_dates = from_timestamps = by_value

    def arrow_type(self) -> Any:
        """The output type (for targets whose type does not depend on the values)."""
        raise NotImplementedError

    def finish(
        self, pending: _Pending, rows: list[int], values: list[Any]
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
                array, _mask(len(array), rows), pa.array(values, type=array.type)
            )
        return array, failures

    def misfit(self, value: Any) -> str | None:
        """Why the Arrow type cannot hold ``value`` (a value the records path converted)."""
        return None


def _or(a: Any, b: Any) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    return pc.or_(a, b)


def _valid_unscreened(array: Any, ok: Any) -> Any:
    """The non-null rows the screen did not pass."""
    return pc.and_not(array.is_valid(), ok)


class _IntTarget(_Target):
    def __init__(self, spec: ColumnType, column: ColumnConverter) -> None:
        super().__init__(spec, column)
        self.type = _INT_TYPES[spec.type]
        self.lo, self.hi = _BOUNDS["int64" if spec.type == "int" else spec.type]

    def arrow_type(self) -> Any:
        return self.type

    def keeps(self, t: Any) -> bool:
        return bool(t == self.type)

    def from_strings(self, array: Any) -> _Pending:
        text = _trimmed(array)
        ok = _screen(text, _INT_RE)
        text = pc.utf8_ltrim(_where_not(text, pc.invert(ok)), characters="+")
        out, failed = _apply(_cast(self.type), text)
        return _Pending(out, _or(_valid_unscreened(array, ok), failed))

    def _cast_numbers(self, array: Any) -> _Pending:
        out, failed = _apply(_cast(self.type), array)
        return _Pending(out, failed)

    from_integers = from_floats = from_bools = from_decimals = _cast_numbers

    def misfit(self, value: Any) -> str | None:
        if self.lo <= value <= self.hi:
            return None
        return f"expected {self.expected}: out of range for int64"


class _FloatTarget(_Target):
    def arrow_type(self) -> Any:
        return pa.float64()

    def keeps(self, t: Any) -> bool:
        return bool(t == pa.float64())

    def from_strings(self, array: Any) -> _Pending:
        text = _trimmed(array)
        ok = _screen(text, _FLOAT_RE, ignore_case=True)
        out, failed = _apply(_cast(pa.float64()), _where_not(text, pc.invert(ok)))
        return _Pending(out, _or(_valid_unscreened(array, ok), failed))

    def from_integers(self, array: Any) -> _Pending:
        # int → float rounds to nearest, ties to even, as float(int) does
        return _Pending(pc.cast(array, pa.float64(), safe=False), None)

    def from_floats(self, array: Any) -> _Pending:
        return _Pending(pc.cast(array, pa.float64()), None)

    from_bools = from_floats

    def from_decimals(self, array: Any) -> _Pending:
        # through the exact decimal text: correctly rounded, as float(Decimal) is
        return self.from_strings(pc.cast(array, pa.string()))


class _StrTarget(_Target):
    def arrow_type(self) -> Any:
        return pa.string()

    def keeps(self, t: Any) -> bool:
        return _is_string(t)

    def fast(self, array: Any) -> _Pending:
        t = array.type
        if _is_binary(t):
            out, failed = _apply(_cast(pa.string()), array)
            return _Pending(out, failed)
        if pa.types.is_integer(t) or pa.types.is_decimal(t) or pa.types.is_date32(t):
            # the same text as str(int), str(Decimal) and date.isoformat()
            return _Pending(pc.cast(array, pa.string()), None)
        if pa.types.is_boolean(t):
            return _Pending(pc.if_else(array, "True", "False"), None)
        return self.by_value(array)


class _BoolTarget(_Target):
    def arrow_type(self) -> Any:
        return pa.bool_()

    def keeps(self, t: Any) -> bool:
        return bool(pa.types.is_boolean(t))

    def from_strings(self, array: Any) -> _Pending:
        # Only ASCII letters and digits make a word, so lowering with str.lower() or with
        # utf8_lower picks the same values; the others go to the records converter.
        words = pc.utf8_lower(_trimmed(array))
        true = pc.is_in(words, value_set=_bool_words(True))
        false = pc.is_in(words, value_set=_bool_words(False))
        out = pc.if_else(true, True, pc.if_else(false, False, pa.scalar(None, pa.bool_())))
        return _Pending(out, _valid_unscreened(array, pc.or_(true, false)))

    def from_numbers(self, array: Any) -> _Pending:
        one = pc.equal(array, 1).fill_null(False)
        zero = pc.equal(array, 0).fill_null(False)
        out = pc.if_else(one, True, pc.if_else(zero, False, pa.scalar(None, pa.bool_())))
        return _Pending(out, _valid_unscreened(array, pc.or_(one, zero)))

    from_integers = from_floats = from_numbers


class _DecimalTarget(_Target):
    """Decimals: the scale is the batch's largest, so that every value fits exactly."""

    def keeps(self, t: Any) -> bool:
        return bool(pa.types.is_decimal(t))

    def from_strings(self, array: Any) -> _Pending:
        text = _trimmed(array)
        ok = _screen(text, _DECIMAL_RE)
        return _Pending(_where_not(text, pc.invert(ok)), _valid_unscreened(array, ok))

    def from_integers(self, array: Any) -> _Pending:
        return _Pending(pc.cast(array, pa.string()), None)

    def from_floats(self, array: Any) -> _Pending:
        # Arrow writes a float with the digits of repr(); the plain forms parse as Decimal(repr)
        return self.from_strings(pc.cast(array, pa.string()))

    def arrow_type(self) -> Any:
        return pa.string()  # what the fast path leaves: the plain decimal strings

    def finish(
        self, pending: _Pending, rows: list[int], values: list[Any]
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
        array, failed = _apply(_cast(target), text)
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
                    _mask(len(array), [row for row, _ in kept]),
                    pa.array([value for _, value in kept], type=target),
                )
        return array, failures


def _datetime_range(micros: Any) -> Any:
    """Where microseconds from the epoch fall outside Python's datetime range."""
    return pc.or_(pc.less(micros, _MIN_US), pc.greater(micros, _MAX_US)).fill_null(False)


class _Strptime:
    """A ``format`` as Python's strptime matches it, for the directives Arrow parses alike."""

    def __init__(self, fmt: str) -> None:
        self.format = fmt
        self.pattern: str | None = None
        names: list[str] = []
        parts: list[str] = []
        i = 0
        while i < len(fmt):
            c = fmt[i]
            if c == "%" and i + 1 < len(fmt):
                d = fmt[i + 1]
                i += 2
                if d == "%":
                    parts.append("%")
                    continue
                if d not in _DIRECTIVES or d in names:
                    return
                names.append(d)
                parts.append(_DIRECTIVES[d])
                continue
            parts.append(r"\s+" if c.isspace() else re.escape(c))
            i += 1
        if not ({"Y", "y"} & set(names) and {"m", "b", "B"} & set(names) and "d" in names):
            return
        self.names = names
        self.pattern = "^" + re.sub(r"(\\s\+)+", r"\\s+", "".join(parts)) + "$"

    def parse(self, text: Any) -> tuple[Any, Any]:
        """Naive timestamps of ``text`` (trimmed strings) and the non-null rows left over."""
        assert self.pattern is not None
        ok = _screen(text, self.pattern, ignore_case=True)
        screened = _where_not(text, pc.invert(ok))
        parsed = pc.strptime(screened, format=self.format, unit="us", error_is_null=True)
        # Arrow rolls an out-of-range day or second over (31/02 → 02/03); Python refuses it.
        fields = pc.extract_regex(screened, self.pattern)
        good = pc.greater_equal(pc.year(parsed), 1)
        for name, part in (("d", pc.day), ("S", pc.second)):
            if name in self.names:
                given = pc.cast(_trimmed(pc.struct_field(fields, name)), pa.int64())
                good = pc.and_(good, pc.equal(part(parsed), given))
        good = good.fill_null(False)
        return _where_not(parsed, pc.invert(good)), pc.and_not(text.is_valid(), good)


class _DateTarget(_Target):
    def __init__(self, spec: ColumnType, column: ColumnConverter) -> None:
        super().__init__(spec, column)
        self.strptime = _Strptime(spec.format) if spec.format is not None else None

    def arrow_type(self) -> Any:
        return pa.date32()

    def keeps(self, t: Any) -> bool:
        return bool(t == pa.date32())

    def from_dates(self, array: Any) -> _Pending:
        out, failed = _apply(_cast(pa.date32()), array)
        return _Pending(out, failed)

    def from_timestamps(self, array: Any) -> _Pending:
        # a zoned timestamp gives its date in its zone, as datetime.date() does
        return _Pending(pc.cast(array, pa.date32()), None)

    def from_strings(self, array: Any) -> _Pending:
        text = _trimmed(array)
        if self.strptime is not None:
            if self.strptime.pattern is None:
                return self.by_value(array)
            parsed, rest = self.strptime.parse(text)
            return _Pending(pc.cast(parsed, pa.date32()), rest)
        day = _screen(text, _DATE_RE)
        out, failed = _apply(_cast(pa.date32()), _where_not(text, pc.invert(day)))
        # datetime strings give their date (the date written, also for aware ones)
        moment = pc.and_(_screen(text, _NAIVE_RE), pc.invert(day))
        aware = _screen(text, _AWARE_RE)
        for mask, zone in ((moment, None), (aware, "UTC")):
            if pc.any(mask).as_py():
                _, bad = _apply(_cast(pa.timestamp("us", zone)), _where_not(text, pc.invert(mask)))
                good = mask if bad is None else pc.and_not(mask, bad)
                dates = pc.cast(
                    pc.utf8_slice_codeunits(_where_not(text, pc.invert(good)), 0, 10), pa.date32()
                )
                out = pc.if_else(good, dates, out)
                day = pc.or_(day, good)
        return _Pending(out, _or(_valid_unscreened(array, day), failed))


class _DatetimeTarget(_Target):
    """Naive, UTC or zoned ``timestamp[us]`` (see the module docs)."""

    def __init__(self, spec: ColumnType, column: ColumnConverter) -> None:
        super().__init__(spec, column)
        self.zone = spec.timezone
        fmt = spec.format
        self.unit = {"unix": 10**6, "unix_ms": 10**3}.get(fmt or "")
        self.strptime = _Strptime(fmt) if fmt is not None and self.unit is None else None

    def arrow_type(self) -> Any:
        return pa.timestamp("us", "UTC" if self.unit is not None else None)

    def keeps(self, t: Any) -> bool:
        return bool(pa.types.is_timestamp(t) and self.zone is None and self.unit is None)

    # Each fast path gives a _Pending whose array is a naive timestamp[us] array (wall clock)
    # or a UTC one (instants); `finish` makes the column's type.

    def from_strings(self, array: Any) -> _Pending:
        text = _trimmed(array)
        if self.unit is not None:
            ok = _screen(text, _FLOAT_RE, ignore_case=True)
            numbers = pc.cast(_where_not(text, pc.invert(ok)), pa.float64())
            pending = self.from_floats(numbers)
            return _Pending(pending.array, _or(_valid_unscreened(array, ok), pending.unresolved))
        if self.strptime is not None:
            if self.strptime.pattern is None:
                return self.by_value(array)
            parsed, rest = self.strptime.parse(text)
            return _Pending(parsed, rest)
        naive = _screen(text, _NAIVE_RE)
        aware = _screen(text, _AWARE_RE)
        if not pc.any(aware).as_py():
            out, failed = _apply(_cast(pa.timestamp("us")), _where_not(text, pc.invert(naive)))
            return _Pending(out, _or(_valid_unscreened(array, naive), failed))
        if not pc.any(naive).as_py():
            out, failed = _apply(
                _cast(pa.timestamp("us", "UTC")), _where_not(text, pc.invert(aware))
            )
            return _Pending(out, _or(_valid_unscreened(array, aware), failed))
        # both kinds: keep them apart until `finish` (naive as wall clock, aware as instants)
        walls, failed = _apply(_cast(pa.timestamp("us")), _where_not(text, pc.invert(naive)))
        moments, failed2 = _apply(
            _cast(pa.timestamp("us", "UTC")), _where_not(text, pc.invert(aware))
        )
        pending = _Pending(
            (walls, moments),
            _or(_valid_unscreened(array, pc.or_(naive, aware)), _or(failed, failed2)),
        )
        return pending

    def from_integers(self, array: Any) -> _Pending:
        if self.unit is None:
            return self.by_value(array)
        micros, failed = _apply(
            lambda a: pc.multiply_checked(pc.cast(a, pa.int64()), self.unit), array
        )
        outside = _datetime_range(micros)
        micros = _where_not(micros, outside)
        return _Pending(pc.cast(micros, pa.timestamp("us", "UTC")), _or(failed, outside))

    def from_floats(self, array: Any) -> _Pending:
        if self.unit is None:
            return self.by_value(array)
        # timedelta(seconds=x): the whole part exactly, the fraction rounded half to even
        # against the parity of the sum, as CPython's timedelta constructor does
        x = pc.cast(array, pa.float64())
        finite = pc.and_(
            pc.is_finite(x), pc.less_equal(pc.abs(x), 1e12 if self.unit == 10**6 else 1e15)
        ).fill_null(False)
        x = _where_not(x, pc.invert(finite))
        whole = pc.trunc(x)
        y = pc.multiply(pc.subtract(x, whole), float(self.unit))
        y_whole = pc.trunc(y)
        left = pc.subtract(y, y_whole)
        total = pc.add(
            pc.multiply(pc.cast(whole, pa.int64()), self.unit), pc.cast(y_whole, pa.int64())
        )
        rounded = pc.round(left, 0, "half_towards_infinity")
        tie = pc.equal(pc.abs(pc.subtract(rounded, left)), 0.5)
        odd = pc.cast(pc.bit_wise_and(total, 1), pa.float64())
        even = pc.subtract(
            pc.multiply(
                pc.round(pc.multiply(pc.add(left, odd), 0.5), 0, "half_towards_infinity"), 2.0
            ),
            odd,
        )
        micros = pc.add(total, pc.cast(pc.if_else(tie, even, rounded), pa.int64()))
        outside = _datetime_range(micros)
        micros = _where_not(micros, outside)
        return _Pending(
            pc.cast(micros, pa.timestamp("us", "UTC")),
            _or(_valid_unscreened(array, finite), outside),
        )

    def from_decimals(self, array: Any) -> _Pending:
        if self.unit is None:
            return self.by_value(array)
        return self.from_strings(pc.cast(array, pa.string()))

    def from_dates(self, array: Any) -> _Pending:
        if self.unit is not None:
            return self.by_value(array)
        return _Pending(pc.cast(array, pa.timestamp("us")), None)

    def from_timestamps(self, array: Any) -> _Pending:
        if self.unit is not None:
            return self.by_value(array)
        return _Pending(pc.cast(array, pa.timestamp("us", array.type.tz), safe=False), None)

    def finish(
        self, pending: _Pending, rows: list[int], values: list[Any]
    ) -> tuple[Any, dict[int, str]]:
        parts = pending.array if isinstance(pending.array, tuple) else (pending.array,)
        walls = [p for p in parts if p.type.tz is None]
        moments = [p for p in parts if p.type.tz is not None]
        failures: dict[int, str] = {}
        if self.zone is not None:
            target = pa.timestamp("us", self.zone)
            pieces = [self._localize(p) for p in walls] + [pc.cast(p, target) for p in moments]
        else:
            # naive or aware: by the first value of the batch
            n = len(parts[0])
            first_fast = [pc.index(p.is_valid(), True).as_py() for p in parts]
            candidates = [
                (i, p.type.tz is not None) for i, p in zip(first_fast, parts, strict=True) if i >= 0
            ]
            candidates += [
                (row, value.tzinfo is not None) for row, value in zip(rows, values, strict=True)
            ]
            aware = min(candidates)[1] if candidates else bool(moments)
            target = pa.timestamp("us", "UTC") if aware else pa.timestamp("us")
            message = (
                f"expected {self.expected}: {'a naive' if aware else 'an aware'} datetime among "
                f"{'aware' if aware else 'naive'} ones (give timezone= to mix them)"
            )
            pieces = []
            for p in parts:
                if (p.type.tz is not None) == aware:
                    pieces.append(pc.cast(p, pa.timestamp("us", p.type.tz)))
                else:
                    for row in pc.indices_nonzero(p.is_valid()).to_pylist():
                        failures[row] = message
            kept = []
            for row, value in zip(rows, values, strict=True):
                if (value.tzinfo is not None) != aware:
                    failures[row] = message
                else:
                    kept.append((row, value))
            rows = [row for row, _ in kept]
            values = [value for _, value in kept]
            if not pieces:
                pieces = [pa.nulls(n, target)]
        array = pc.cast(pieces[0], target)
        for piece in pieces[1:]:
            array = pc.coalesce(array, pc.cast(piece, target))
        if rows:
            array = pc.replace_with_mask(
                array, _mask(len(array), rows), pa.array(values, type=target)
            )
        return array, failures

    def _localize(self, walls: Any) -> Any:
        """Naive wall-clock times taken to be in the zone, as ``replace(tzinfo=zone)`` does:
        an ambiguous time is its first occurrence; a time in a gap keeps the offset before it."""
        zone = self.zone
        early = pc.assume_timezone(
            walls, timezone=zone, ambiguous="earliest", nonexistent="earliest"
        )
        late = pc.assume_timezone(walls, timezone=zone, ambiguous="earliest", nonexistent="latest")
        gap = pc.not_equal(early, late).fill_null(False)
        if not pc.any(gap).as_py():
            return early
        # in a gap: the wall time minus the offset in force just before the gap
        before = pc.cast(pc.local_timestamp(early), pa.int64())
        offset = pc.subtract(before, pc.cast(early, pa.int64()))
        fixed = pc.cast(pc.subtract(pc.cast(walls, pa.int64()), offset), pa.timestamp("us", zone))
        return pc.if_else(gap, fixed, early)


class _UuidTarget(_Target):
    def arrow_type(self) -> Any:
        return pa.uuid()

    def keeps(self, t: Any) -> bool:
        return bool(t == pa.uuid())

    def fast(self, array: Any) -> _Pending:
        t = array.type
        if pa.types.is_fixed_size_binary(t) and t.byte_width == 16:
            return _Pending(array, None)
        if _is_string(t):
            return self.from_strings(array)
        return self.by_value(array)

    def from_strings(self, array: Any) -> _Pending:
        text = _trimmed(array)
        ok = _screen(text, _UUID_RE)
        digits = pc.replace_substring(_where_not(text, pc.invert(ok)), "-", "")
        n = len(digits)
        # every row 32 hex digits: join them into one string and decode it in one call
        digits = pc.cast(digits.fill_null("0" * 32), pa.string())
        whole = pa.ListArray.from_arrays(pa.array([0, n], pa.int32()), digits)
        raw = bytes.fromhex(pc.binary_join(whole, "")[0].as_py())
        storage = pa.Array.from_buffers(pa.binary(16), n, [None, pa.py_buffer(raw)])
        return _Pending(_where_not(storage, pc.invert(ok)), _valid_unscreened(array, ok))

    def finish(
        self, pending: _Pending, rows: list[int], values: list[Any]
    ) -> tuple[Any, dict[int, str]]:
        storage = pending.array
        if isinstance(storage, pa.ExtensionArray):
            storage = storage.storage
        if rows:
            storage = pc.replace_with_mask(
                storage,
                _mask(len(storage), rows),
                pa.array([v.bytes for v in values], pa.binary(16)),
            )
        return pa.ExtensionArray.from_storage(pa.uuid(), storage), {}


class _JsonTarget(_Target):
    """JSON text is checked with orjson and kept, in Arrow's ``json`` extension type."""

    def arrow_type(self) -> Any:
        return pa.string()  # the text, wrapped in the extension type by `finish`

    def keeps(self, t: Any) -> bool:
        return bool(
            t == pa.json_() or pa.types.is_nested(t) or _is_number(t) or pa.types.is_boolean(t)
        )

    def fast(self, array: Any) -> _Pending:
        t = array.type
        if not (_is_string(t) or _is_binary(t)):
            return self.by_value(array)
        text, failed = _apply(_cast(pa.string()), array) if _is_binary(t) else (array, None)
        present = pc.and_not(text.is_valid(), failed) if failed is not None else text.is_valid()
        values = text.filter(present).to_pylist()
        try:
            list(map(orjson.loads, values))
        except orjson.JSONDecodeError:
            bad = []
            rows = pc.indices_nonzero(present).to_pylist()
            for row, value in zip(rows, values, strict=True):
                try:
                    orjson.loads(value)
                except orjson.JSONDecodeError:
                    bad.append(row)
            failed = _or(failed, _mask(len(text), bad))
        out = text if failed is None else _where_not(text, failed)
        return _Pending(pc.cast(out, pa.string()), failed)

    def finish(
        self, pending: _Pending, rows: list[int], values: list[Any]
    ) -> tuple[Any, dict[int, str]]:
        # rows the records converter accepted after all keep their text
        return pa.ExtensionArray.from_storage(pa.json_(), pending.array), {}


_TARGETS: dict[str, type[_Target]] = {
    **dict.fromkeys(_INT_TYPES, _IntTarget),
    "float": _FloatTarget,
    "str": _StrTarget,
    "bool": _BoolTarget,
    "decimal": _DecimalTarget,
    "date": _DateTarget,
    "datetime": _DatetimeTarget,
    "uuid": _UuidTarget,
    "json": _JsonTarget,
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
        if column.empty_as_none and _is_string(array.type):
            if column.strict_empty:
                empty = pc.equal(array, "").fill_null(False)
            else:
                empty = _screen(array, _BLANK_RE)
            if pc.any(empty).as_py():
                missing = pc.or_(missing, empty)
                if column.nullable:
                    array = _where_not(array, empty)
                    changed = True
        if not column.nullable and pc.any(missing).as_py():
            message = f"expected {column.expected}; the column is not nullable"
            rows = pc.indices_nonzero(missing).to_pylist()
            for row, value in zip(rows, array.filter(missing).to_pylist(), strict=True):
                failures[row] = (value, message)
            array = _where_not(array, missing)
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
            out = _where_not(out, _mask(len(out), at))
        return ConvertedColumn(out, failures)

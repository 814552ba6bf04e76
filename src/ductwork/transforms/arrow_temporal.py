"""The Arrow targets of the temporal types: ``date`` and ``datetime``, with their formats.

See :mod:`~ductwork.transforms.arrow_converters` for what each gives.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from ._arrow import mask_of, or_masks, screen, trimmed, valid_unscreened, where_not
from .arrow_numeric import FLOAT_RE
from .arrow_target import Pending, Target, TypedTarget, apply_step, cast_to

if TYPE_CHECKING:
    from .column_type import ColumnType
    from .converters import ColumnConverter

__all__ = ["DateTarget", "DatetimeTarget"]

# The plain forms the kernels converts exactly as Python does (after trimming whitespace, which
# pyarrow's utf8_trim_whitespace does for the same characters as str.strip).
_DATE_RE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
_TIME = r"[T ](?:[01][0-9]|2[0-3])(?::[0-5][0-9](?::[0-5][0-9](?:\.[0-9]{1,6})?)?)?"
_NAIVE_RE = rf"^[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}(?:{_TIME})?$"
_AWARE_RE = rf"^[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}{_TIME}(?:Z|[+-](?:[01][0-9]|2[0-3]):?[0-5][0-9])$"

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
        ok = screen(text, self.pattern, ignore_case=True)
        screened = where_not(text, pc.invert(ok))
        parsed = pc.strptime(screened, format=self.format, unit="us", error_is_null=True)
        # Arrow rolls an out-of-range day or second over (31/02 → 02/03); Python refuses it.
        fields = pc.extract_regex(screened, self.pattern)
        good = pc.greater_equal(pc.year(parsed), 1)
        for name, part in (("d", pc.day), ("S", pc.second)):
            if name in self.names:
                given = pc.cast(trimmed(pc.struct_field(fields, name)), pa.int64())
                good = pc.and_(good, pc.equal(part(parsed), given))
        good = good.fill_null(False)
        return where_not(parsed, pc.invert(good)), pc.and_not(text.is_valid(), good)


class DateTarget(TypedTarget):
    """Dates, as ``date32``."""

    type = pa.date32()

    def __init__(self, spec: ColumnType, column: ColumnConverter) -> None:
        super().__init__(spec, column)
        self.strptime = _Strptime(spec.format) if spec.format is not None else None

    from_dates = TypedTarget.cast_exactly

    def from_timestamps(self, array: Any) -> Pending:
        # a zoned timestamp gives its date in its zone, as datetime.date() does
        return Pending(pc.cast(array, pa.date32()), None)

    def from_strings(self, array: Any) -> Pending:
        text = trimmed(array)
        if self.strptime is not None:
            if self.strptime.pattern is None:
                return self.by_value(array)
            parsed, rest = self.strptime.parse(text)
            return Pending(pc.cast(parsed, pa.date32()), rest)
        day = screen(text, _DATE_RE)
        out, failed = apply_step(cast_to(pa.date32()), where_not(text, pc.invert(day)))
        # datetime strings give their date (the date written, also for aware ones)
        moment = pc.and_(screen(text, _NAIVE_RE), pc.invert(day))
        aware = screen(text, _AWARE_RE)
        for mask, zone in ((moment, None), (aware, "UTC")):
            if pc.any(mask).as_py():
                _, bad = apply_step(
                    cast_to(pa.timestamp("us", zone)), where_not(text, pc.invert(mask))
                )
                good = mask if bad is None else pc.and_not(mask, bad)
                dates = pc.cast(
                    pc.utf8_slice_codeunits(where_not(text, pc.invert(good)), 0, 10), pa.date32()
                )
                out = pc.if_else(good, dates, out)
                day = pc.or_(day, good)
        return Pending(out, or_masks(valid_unscreened(array, day), failed))


class DatetimeTarget(Target):
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

    # Each fast path gives a Pending whose array is a naive timestamp[us] array (wall clock)
    # or a UTC one (instants); `finish` makes the column's type.

    def from_strings(self, array: Any) -> Pending:
        text = trimmed(array)
        if self.unit is not None:
            ok = screen(text, FLOAT_RE, ignore_case=True)
            numbers = pc.cast(where_not(text, pc.invert(ok)), pa.float64())
            pending = self.from_floats(numbers)
            return Pending(pending.array, or_masks(valid_unscreened(array, ok), pending.unresolved))
        if self.strptime is not None:
            if self.strptime.pattern is None:
                return self.by_value(array)
            parsed, rest = self.strptime.parse(text)
            return Pending(parsed, rest)
        naive = screen(text, _NAIVE_RE)
        aware = screen(text, _AWARE_RE)
        if not pc.any(aware).as_py():
            out, failed = apply_step(cast_to(pa.timestamp("us")), where_not(text, pc.invert(naive)))
            return Pending(out, or_masks(valid_unscreened(array, naive), failed))
        if not pc.any(naive).as_py():
            out, failed = apply_step(
                cast_to(pa.timestamp("us", "UTC")), where_not(text, pc.invert(aware))
            )
            return Pending(out, or_masks(valid_unscreened(array, aware), failed))
        # both kinds: keep them apart until `finish` (naive as wall clock, aware as instants)
        walls, failed = apply_step(cast_to(pa.timestamp("us")), where_not(text, pc.invert(naive)))
        moments, failed2 = apply_step(
            cast_to(pa.timestamp("us", "UTC")), where_not(text, pc.invert(aware))
        )
        pending = Pending(
            (walls, moments),
            or_masks(valid_unscreened(array, pc.or_(naive, aware)), or_masks(failed, failed2)),
        )
        return pending

    def from_integers(self, array: Any) -> Pending:
        if self.unit is None:
            return self.by_value(array)
        micros, failed = apply_step(
            lambda a: pc.multiply_checked(pc.cast(a, pa.int64()), self.unit), array
        )
        outside = _datetime_range(micros)
        micros = where_not(micros, outside)
        return Pending(pc.cast(micros, pa.timestamp("us", "UTC")), or_masks(failed, outside))

    def from_floats(self, array: Any) -> Pending:
        if self.unit is None:
            return self.by_value(array)
        # timedelta(seconds=x): the whole part exactly, the fraction rounded half to even
        # against the parity of the sum, as CPython's timedelta constructor does
        x = pc.cast(array, pa.float64())
        finite = pc.and_(
            pc.is_finite(x), pc.less_equal(pc.abs(x), 1e12 if self.unit == 10**6 else 1e15)
        ).fill_null(False)
        x = where_not(x, pc.invert(finite))
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
        micros = where_not(micros, outside)
        return Pending(
            pc.cast(micros, pa.timestamp("us", "UTC")),
            or_masks(valid_unscreened(array, finite), outside),
        )

    def from_decimals(self, array: Any) -> Pending:
        if self.unit is None:
            return self.by_value(array)
        return self.from_strings(pc.cast(array, pa.string()))

    def from_dates(self, array: Any) -> Pending:
        if self.unit is not None:
            return self.by_value(array)
        return Pending(pc.cast(array, pa.timestamp("us")), None)

    def from_timestamps(self, array: Any) -> Pending:
        if self.unit is not None:
            return self.by_value(array)
        return Pending(pc.cast(array, pa.timestamp("us", array.type.tz), safe=False), None)

    def finish(
        self, pending: Pending, rows: list[int], values: list[Any]
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
                array, mask_of(len(array), rows), pa.array(values, type=target)
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

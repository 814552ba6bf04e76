"""The value converters behind :func:`~ductwork.transforms.convert_types`.

For every target type there is a per-value converter (``_to_*``: checks the input's type, then
converts, raising on anything that is not a faithful conversion) and, where one exists, a fast
path (``_fast_*``) that converts a whole column of values with C-level ``map`` calls, or raises
when some value needs the per-value converter. Both give the same result for every value they
accept (a property test checks this). :class:`ColumnConverter` holds the converters of one
column, built once.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, tzinfo
from decimal import Decimal
from itertools import repeat
from operator import itemgetter
from typing import TYPE_CHECKING, Any
from uuid import UUID
from zoneinfo import ZoneInfo

import orjson

if TYPE_CHECKING:
    from .column_type import ColumnType

__all__ = ["MISSING", "ColumnConverter", "InvalidValue"]

_BOUNDS = {
    "int8": (-(2**7), 2**7 - 1),
    "int16": (-(2**15), 2**15 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint8": (0, 2**8 - 1),
    "uint16": (0, 2**16 - 1),
    "uint32": (0, 2**32 - 1),
    "uint64": (0, 2**64 - 1),
}


class InvalidValue(ValueError):
    """A value does not convert; the message, if any, adds a detail to 'expected ...'."""


MISSING: Any = object()
"""Stands for a column a record does not have."""

_TRUE_WORDS = ("true", "t", "yes", "y", "on", "1")
_FALSE_WORDS = ("false", "f", "no", "n", "off", "0")
_BOOL_WORDS: dict[str, bool] = dict.fromkeys(_TRUE_WORDS, True) | dict.fromkeys(_FALSE_WORDS, False)
# The fast path's table: the words in common spellings, and bools/ints/floats equal to 1 or 0
# (``True``, ``1`` and ``1.0`` are the same key).
_BOOL_TABLE: dict[Any, bool] = {True: True, False: False}
for _word, _flag in _BOOL_WORDS.items():
    for _spelling in (_word, _word.upper(), _word.capitalize()):
        _BOOL_TABLE[_spelling] = _flag

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_CONVERSION_ERRORS = (ValueError, TypeError, ArithmeticError)

Converter = Callable[[Any], Any]
FastMap = Callable[[list[Any]], list[Any]]
KeepCheck = Callable[[list[Any]], bool]


def _stripped_text(value: Any) -> str:
    """A ``str`` value, or ``bytes`` decoded as UTF-8, stripped of surrounding whitespace;
    a value of any other type is invalid."""
    kind = type(value)
    if kind is bytes:
        value = value.decode("utf-8")
    elif kind is not str:
        raise InvalidValue
    return value.strip()  # type: ignore[no-any-return]


def _to_int(value: Any) -> int:
    kind = type(value)
    if kind is int:
        return value  # type: ignore[no-any-return]
    if kind is str or kind is bytes:
        return int(value, 10)
    if kind is float:
        if value.is_integer():
            return int(value)
        raise InvalidValue
    if kind is Decimal:
        if value.is_finite() and value == value.to_integral_value():
            return int(value)
        raise InvalidValue
    if isinstance(value, int):
        return int(value)
    raise InvalidValue


def _to_bounded_int(lo: int, hi: int) -> Converter:
    def convert(value: Any) -> int:
        number = _to_int(value)
        if lo <= number <= hi:
            return number
        raise InvalidValue

    return convert


def _to_float(value: Any) -> float:
    kind = type(value)
    if kind is float:
        return value  # type: ignore[no-any-return]
    if kind in (str, bytes, int, bool, Decimal) or isinstance(value, int):
        try:
            return float(value)
        except OverflowError:
            raise InvalidValue("out of range") from None
    raise InvalidValue


def _to_str(value: Any) -> str:
    kind = type(value)
    if kind is str:
        return value  # type: ignore[no-any-return]
    if kind is bytes or kind is bytearray:
        return bytes(value).decode("utf-8")
    if kind is dict or kind is list:
        return orjson.dumps(value).decode("utf-8")
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, (int, float, Decimal, UUID, str)):
        return str(value)
    raise InvalidValue


def _to_bool(value: Any) -> bool:
    kind = type(value)
    if kind is bool:
        return value  # type: ignore[no-any-return]
    if kind is bytes:
        value = value.decode("utf-8")
        kind = str
    if kind is str:
        flag = _BOOL_WORDS.get(value.strip().lower())
        if flag is None:
            raise InvalidValue
        return flag
    if kind in (int, float, Decimal):
        if value == 1:
            return True
        if value == 0:
            return False
    raise InvalidValue


def _to_decimal(value: Any) -> Decimal:
    kind = type(value)
    if kind is Decimal:
        number = value
    elif kind is str:
        number = Decimal(value.strip())
    elif kind is int or kind is bool:
        number = Decimal(int(value))
    elif kind is float:
        number = Decimal(repr(value))
    elif kind is bytes:
        number = Decimal(value.decode("utf-8").strip())
    else:
        raise InvalidValue
    if not number.is_finite():
        raise InvalidValue
    return number  # type: ignore[no-any-return]


def _to_date(fmt: str | None) -> Converter:
    def convert(value: Any) -> date:
        kind = type(value)
        if kind is date:
            return value  # type: ignore[no-any-return]
        if isinstance(value, datetime):
            return value.date()
        text = _stripped_text(value)
        if fmt is not None:
            return datetime.strptime(text, fmt).date()
        try:
            return date.fromisoformat(text)
        except ValueError:
            return datetime.fromisoformat(text).date()

    return convert


def _to_datetime(fmt: str | None, zone: tzinfo | None) -> Converter:
    unit = {"unix": 1, "unix_ms": 1000}.get(fmt or "")

    def parse(value: Any) -> datetime:
        kind = type(value)
        if kind is datetime:
            return value  # type: ignore[no-any-return]
        if kind is date:
            return datetime(value.year, value.month, value.day)
        if kind is bytes:
            value = value.decode("utf-8")
            kind = str
        if unit is not None:
            if kind is str or kind is Decimal:
                value = float(value)
            elif kind is bool or not isinstance(value, (int, float)):
                raise InvalidValue
            if unit == 1:
                return _EPOCH + timedelta(seconds=value)
            return _EPOCH + timedelta(milliseconds=value)
        if kind is not str:
            raise InvalidValue
        text = value.strip()
        if fmt is not None:
            return datetime.strptime(text, fmt)
        return datetime.fromisoformat(text)

    if zone is None:
        return parse

    def convert(value: Any) -> datetime:
        moment = parse(value)
        if moment.tzinfo is None:
            return moment.replace(tzinfo=zone)
        return moment.astimezone(zone)

    return convert


# What UUID strings may hold. ``uuid.UUID()`` itself also takes signs, underscores, "0x" and
# inner spaces (it parses the digits with ``int(hex, 16)``); those are not UUIDs.
_UUID_CHARS = b"0123456789abcdefABCDEF-{}urn:i"


def _to_uuid(value: Any) -> UUID:
    if isinstance(value, UUID):
        return value
    kind = type(value)
    if kind is bytes and len(value) == 16:
        return UUID(bytes=value)
    text = _stripped_text(value)
    if not text.isascii() or text.encode("ascii").translate(None, _UUID_CHARS):
        raise InvalidValue
    return UUID(text)


def _to_json(value: Any) -> Any:
    kind = type(value)
    if kind in (str, bytes, bytearray, memoryview):
        return orjson.loads(value)
    if kind in (dict, list, int, float, bool):
        return value
    raise InvalidValue


# Fast paths: each converts a whole column of values in C-level loops, or raises when some
# value needs the per-value path.


def _fast_int(values: list[Any]) -> list[Any]:
    return list(map(int, values, repeat(10)))


def _fast_bounded_int(lo: int, hi: int) -> FastMap:
    def convert(values: list[Any]) -> list[Any]:
        out = list(map(int, values, repeat(10)))
        if out and (min(out) < lo or max(out) > hi):
            raise InvalidValue
        return out

    return convert


def _fast_float(values: list[Any]) -> list[Any]:
    return list(map(float, values))


def _fast_bool(values: list[Any]) -> list[Any]:
    return list(map(_BOOL_TABLE.__getitem__, values))


def _fast_decimal(values: list[Any]) -> list[Any]:
    if not set(map(type, values)) <= {str, int}:
        raise InvalidValue
    out = list(map(Decimal, values))
    if not all(map(Decimal.is_finite, out)):
        raise InvalidValue
    return out


def _fast_date(values: list[Any]) -> list[Any]:
    return list(map(date.fromisoformat, values))


def _fast_datetime(values: list[Any]) -> list[Any]:
    return list(map(datetime.fromisoformat, values))


def _fast_uuid(values: list[Any]) -> list[Any]:
    if "".join(values).encode("ascii").translate(None, _UUID_CHARS):
        raise InvalidValue
    return list(map(UUID, values))


def _fast_json(values: list[Any]) -> list[Any]:
    return list(map(orjson.loads, values))


def _keeper(types: frozenset[type], check: KeepCheck | None = None) -> KeepCheck:
    """A check that a column already holds converted values (then it is left as it is)."""

    def keep(values: list[Any]) -> bool:
        return set(map(type, values)) <= types and (check is None or check(values))

    return keep


def _no_empty_string(values: list[Any]) -> bool:
    return "" not in values


class ColumnConverter:
    """The converter of one column, built once."""

    __slots__ = (
        "empty_as_none",
        "expected",
        "fast",
        "full",
        "getter",
        "keep",
        "keep_first",
        "name",
        "nullable",
        "strict_empty",
    )

    def __init__(self, name: str, spec: ColumnType, empty_as_none: bool | None) -> None:
        self.name = name
        self.getter = itemgetter(name)
        self.nullable = spec.nullable
        if spec.empty_as_none is not None:
            empty_as_none = spec.empty_as_none
        # by default an empty string is a missing value for every target but a string
        self.empty_as_none = empty_as_none if empty_as_none is not None else spec.type != "str"
        self.strict_empty = spec.type == "str"  # for str columns only "" is empty
        self.keep_first = False
        self.fast: FastMap | None = None
        self.keep: KeepCheck | None = None
        kind = spec.type
        fmt = spec.format
        full: Converter
        if kind == "int":
            self.expected = "an integer"
            full, self.fast = _to_int, _fast_int
            self.keep = _keeper(frozenset({int}))
        elif kind in _BOUNDS:
            lo, hi = _BOUNDS[kind]
            self.expected = f"an integer in [{lo}, {hi}]"
            full, self.fast = _to_bounded_int(lo, hi), _fast_bounded_int(lo, hi)
            self.keep = _keeper(
                frozenset({int}),
                lambda values: not values or lo <= min(values) <= max(values) <= hi,
            )
        elif kind == "float":
            self.expected = "a float"
            full, self.fast = _to_float, _fast_float
        elif kind == "str":
            self.expected = "a string"
            full = _to_str
            self.keep_first = True
            self.keep = _keeper(frozenset({str}), _no_empty_string if self.empty_as_none else None)
        elif kind == "bool":
            self.expected = "a boolean (true/false, yes/no, y/n, t/f, on/off, 1/0)"
            full, self.fast = _to_bool, _fast_bool
        elif kind == "decimal":
            self.expected = "a finite decimal number"
            full, self.fast = _to_decimal, _fast_decimal
            self.keep = _keeper(frozenset({Decimal}), lambda v: all(map(Decimal.is_finite, v)))
        elif kind == "date":
            self.expected = f"a date in format {fmt!r}" if fmt else "an ISO 8601 date"
            full = _to_date(fmt)
            if fmt is None:
                self.fast = _fast_date
            self.keep = _keeper(frozenset({date}))
        elif kind == "datetime":
            if fmt == "unix":
                self.expected = "a Unix timestamp in seconds"
            elif fmt == "unix_ms":
                self.expected = "a Unix timestamp in milliseconds"
            elif fmt is not None:
                self.expected = f"a datetime in format {fmt!r}"
            else:
                self.expected = "an ISO 8601 datetime"
            zone = ZoneInfo(spec.timezone) if spec.timezone is not None else None
            full = _to_datetime(fmt, zone)
            if zone is None:
                if fmt is None:
                    self.fast = _fast_datetime
                self.keep = _keeper(frozenset({datetime}))
        elif kind == "uuid":
            self.expected = "a UUID"
            full, self.fast = _to_uuid, _fast_uuid
            self.keep = _keeper(frozenset({UUID}))
        else:
            self.expected = "JSON text"
            full, self.fast = _to_json, _fast_json
            self.keep = _keeper(frozenset({dict, list}))
        self.full = full

    def convert_column(self, values: list[Any]) -> list[Any] | None:
        """Convert a whole column on the fast path; ``None`` when it needs the per-value path.

        Returns ``values`` itself when the column already holds converted values.
        """
        keep = self.keep
        if self.keep_first and keep is not None and keep(values):
            return values
        fast = self.fast
        if fast is not None:
            try:
                return fast(values)
            except Exception:
                pass  # any failure means: take the per-value path
        if keep is not None and not self.keep_first and keep(values):
            return values
        return None

    def convert(self, value: Any) -> Any:
        """Convert one value; raise ``InvalidValue`` with the message of the error."""
        if value is None:
            if self.nullable:
                return None
            raise InvalidValue(f"expected {self.expected}; the column is not nullable")
        if self.empty_as_none and type(value) is str:
            empty = value == "" if self.strict_empty else not value.strip()
            if empty:
                if self.nullable:
                    return None
                raise InvalidValue(f"expected {self.expected}; the column is not nullable")
        try:
            return self.full(value)
        except InvalidValue as exc:
            detail = str(exc)
            raise InvalidValue(
                f"expected {self.expected}: {detail}" if detail else f"expected {self.expected}"
            ) from None
        except _CONVERSION_ERRORS as exc:
            message = f"expected {self.expected}"
            if isinstance(exc, orjson.JSONDecodeError):
                message += f": {exc}"
            elif isinstance(exc, OverflowError):
                message += ": out of range"
            raise InvalidValue(message) from exc

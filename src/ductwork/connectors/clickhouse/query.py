"""Query templates: ``{name}`` placeholders bound as server-side query parameters or literals.

On servers with query parameters (19.x and later, see :mod:`.capabilities`) a placeholder
``{name}`` becomes ``{name:Type}``, the type taken from the Python value, and the value travels
apart from the SQL text as ``param_name=<text>`` (:func:`query_parameter`): the server parses it
as a value of that type, so it can never become SQL. On older servers, and for values with no
parameter type (a ``dict``, a list mixing strings and numbers), it is replaced by an escaped SQL
literal (:func:`sql_literal`). Write literal braces as ``{{`` and ``}}``.

=====================================  =====================================================
Python value                           parameter type
=====================================  =====================================================
``None``                               ``Nullable(Nothing)``
``bool``                               ``UInt8`` (as the literal ``1``/``0`` would be)
``int``                                ``Int64``, or ``UInt64``/``Int128``/``Int256`` by size
``float``                              ``Float64``
``Decimal``                            ``Decimal(P, S)`` of its digits
``str``                                ``String``
``date``                               ``Date`` (``Date32`` outside 1970-01-01..2149-06-06)
``datetime``                           ``DateTime`` (``DateTime64(6)`` with microseconds or
                                       outside 1970..2105); aware ones in ``'UTC'``
``UUID``, ``IPv4Address``, ...         ``UUID``, ``IPv4``, ``IPv6``
``Enum``                               the type of its value
``list``, ``set``                      ``Array(T)``, ``T`` the elements' common type
                                       (``Nullable(T)`` with ``None`` among them)
``tuple``                              ``Tuple(T1, ..., Tn)``
``dict`` (not empty)                   ``Map(K, V)``
=====================================  =====================================================
"""

from __future__ import annotations

import math
import string
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from ipaddress import IPv4Address, IPv6Address
from typing import Any
from uuid import UUID

from .codec import valid_identifier

try:  # aiochclient's compiled literal encoder, or its pure-Python twin
    from aiochclient._types import py2ch as _py2ch  # type: ignore[import-untyped]
except ImportError:  # pragma: no cover - depends on how aiochclient was built
    from aiochclient.types import py2ch as _py2ch  # type: ignore[import-untyped]

__all__ = ["bind_query", "query_parameter", "render_query", "sql_literal", "template_fields"]

# --------------------------------------------------------------------------- literals


def sql_literal(value: Any) -> str:
    """Render ``value`` as a ClickHouse SQL literal, safely escaped.

    Uses aiochclient's own encoder (strings are quoted with ``\\`` and ``'`` escaped; lists, tuples
    and dicts recursively). An aware datetime becomes ``toDateTime(<unix seconds>)`` so it means the
    same instant whatever the server's time zone; a ``Decimal`` becomes ``toDecimal128('<digits>',
    <scale>)``, exact and comparable with ``Decimal`` columns (a bare number would be a float).

    Raises:
        TypeError: the value has no SQL literal form.
    """
    if isinstance(value, datetime) and value.utcoffset() is not None:
        return f"toDateTime({math.floor(value.timestamp())})"
    if isinstance(value, Decimal) and (kind := _decimal_type(value)) is not None:
        precision, scale = (int(n) for n in kind[len("Decimal(") : -1].split(","))
        if precision <= 38:
            return f"toDecimal128('{format(value, 'f')}', {scale})"
    try:
        encoded: bytes = _py2ch(value)
    except Exception as exc:  # aiochclient raises ChClientError for unsupported types
        raise TypeError(
            f"cannot bind a {type(value).__name__} as a ClickHouse literal: {exc}"
        ) from None
    return encoded.decode()


# --------------------------------------------------------------------------- query parameters

_DATE_MIN, _DATE_MAX = date(1970, 1, 1), date(2149, 6, 6)
# What the server reads back-slash escaped in a top-level String parameter and in quoted strings.
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\0": "\\0"})
_QUOTED = {**_ESCAPES, ord("'"): "\\'"}
_INTS = (
    ("Int64", -(2**63), 2**63),
    ("UInt64", 0, 2**64),
    ("Int128", -(2**127), 2**127),
    ("Int256", -(2**255), 2**255),
)


def _int_type(value: int) -> str | None:
    return next((name for name, low, high in _INTS if low <= value < high), None)


def _decimal_type(value: Decimal) -> str | None:
    if not value.is_finite():
        return None
    text = format(value, "f").lstrip("-")
    whole, _, fraction = text.partition(".")
    scale = len(fraction)
    precision = max(1, len(whole.lstrip("0")) + scale)
    return f"Decimal({precision}, {scale})" if precision <= 76 else None


def _datetime(value: datetime) -> tuple[str, datetime]:
    zone = ""
    if value.utcoffset() is not None:
        value, zone = value.astimezone(UTC).replace(tzinfo=None), "'UTC'"
    if value.microsecond or not 1970 <= value.year < 2106:
        return (f"DateTime64(6, {zone})" if zone else "DateTime64(6)"), value
    return (f"DateTime({zone})" if zone else "DateTime"), value


def _type_of(value: Any) -> str | None:
    """The parameter type of a value, ``None`` when it has none."""
    if value is None:
        return "Nullable(Nothing)"
    if isinstance(value, bool):
        return "UInt8"
    if isinstance(value, Enum):
        return _type_of(value.value)
    if isinstance(value, int):
        return _int_type(value)
    if isinstance(value, float):
        return "Float64"
    if isinstance(value, Decimal):
        return _decimal_type(value)
    if isinstance(value, str):
        return "String"
    if isinstance(value, datetime):
        return _datetime(value)[0]
    if isinstance(value, date):
        return "Date" if _DATE_MIN <= value <= _DATE_MAX else "Date32"
    if isinstance(value, UUID):
        return "UUID"
    if isinstance(value, IPv4Address):
        return "IPv4"
    if isinstance(value, IPv6Address):
        return "IPv6"
    if isinstance(value, tuple):
        items = [_type_of(item) for item in value]
        if not items or None in items:
            return None
        return f"Tuple({', '.join(item for item in items if item is not None)})"
    if isinstance(value, list | set | frozenset):
        element = _common_type([_type_of(item) for item in value])
        return None if element is None else f"Array({element})"
    if isinstance(value, dict) and value:
        key = _common_type([_type_of(item) for item in value])
        element = _common_type([_type_of(item) for item in value.values()])
        if key is None or element is None or key.startswith(("Nullable(", "Nothing")):
            return None
        return f"Map({key}, {element})"
    return None


def _common_type(types: list[str | None]) -> str | None:
    """The element type of an array of values of these types (``Nothing`` when empty)."""
    if None in types:
        return None
    nullable = "Nullable(Nothing)" in types
    kind: str | None = "Nothing"
    for each in types:
        if kind is not None and each is not None and each != "Nullable(Nothing)":
            kind = _unify(kind, each)
    if kind is None or not nullable:
        return kind
    if kind == "Nothing":
        return "Nullable(Nothing)"
    if kind.startswith(("Array(", "Tuple(", "Map(", "Nullable(")):
        return None  # Nullable cannot wrap these
    return f"Nullable({kind})"


def _unify(a: str, b: str) -> str | None:
    """A type holding values of both types, if there is a simple one."""
    if a == b or b == "Nothing":
        return a
    if a == "Nothing":
        return b
    if {a, b} == {"Int64", "Float64"}:
        return "Float64"
    if a.startswith("Array(") and b.startswith("Array("):
        inner = _unify(a[len("Array(") : -1], b[len("Array(") : -1])
        return None if inner is None else f"Array({inner})"
    return None


def _text(value: Any) -> str:
    """A value as the server reads it inside an array or tuple (strings quoted)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, Enum):
        return _text(value.value)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, list | set | frozenset):
        return "[" + ",".join(_text(item) for item in value) + "]"
    if isinstance(value, tuple):
        return "(" + ",".join(_text(item) for item in value) + ")"
    if isinstance(value, dict):
        return "{" + ",".join(f"{_text(k)}:{_text(v)}" for k, v in value.items()) + "}"
    return "'" + _plain(value).translate(_QUOTED) + "'"


def _plain(value: Any) -> str:
    """The unquoted text of a scalar."""
    if isinstance(value, datetime):
        return _datetime(value)[1].isoformat(" ")
    return str(value)


def query_parameter(value: Any) -> tuple[str, str] | None:
    """The type and the ``param_<name>`` text of a value, ``None`` when it has no parameter type
    (it is then bound as a literal).

    Example:
        >>> query_parameter("it's\\tfine"), query_parameter([1, None])
        (('String', "it's\\\\tfine"), ('Array(Nullable(Int64))', '[1,NULL]'))
    """
    kind = _type_of(value)
    if kind is None:
        return None
    if value is None:
        return kind, "\\N"
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, list | set | frozenset | tuple | dict | bool | int | float | Decimal):
        return kind, _text(value)
    return kind, _plain(value).translate(_ESCAPES)


# --------------------------------------------------------------------------- templates


def template_fields(template: str) -> list[str]:
    """The ``{name}`` placeholders of a query template, in order of appearance.

    Raises:
        ValueError: unbalanced braces, a placeholder that is not a plain name, or one inside a
            quoted string or identifier (its bound literal brings its own quotes: ``= {name}``,
            not ``= '{name}'``).
    """
    names: list[str] = []
    scan = _QuoteScan()
    for text, field, spec, conversion in string.Formatter().parse(template):
        scan.feed(text)
        if field is None:
            continue
        if scan.quote:
            raise ValueError(
                f"placeholder {{{field}}} is inside a quoted {scan.what()}: write it bare "
                f"(WHERE name = {{{field}}}, not WHERE name = '{{{field}}}'); the value is bound "
                f"with its own quotes"
            )
        if not valid_identifier(field) or spec or conversion:
            raise ValueError(
                f"placeholder {{{field}{'!' + conversion if conversion else ''}"
                f"{':' + spec if spec else ''}}} is not a plain {{name}}; "
                f"write literal braces as '{{{{' and '}}}}'"
            )
        if field not in names:
            names.append(field)
    return names


class _QuoteScan:
    """Follows the quoting of SQL text fed piece by piece: string literals (``'...'``, with
    ``''`` and backslash escapes), quoted identifiers (``"..."`` and backticks) and comments
    (``--`` to the end of the line, ``/* ... */``), so that a placeholder's place is known."""

    def __init__(self) -> None:
        self.quote = ""  # the open quote character, or "" outside quotes
        self.comment = ""  # "--" or "/*" inside a comment
        self.escaped = False
        self.last = ""

    def what(self) -> str:
        return "string literal" if self.quote == "'" else "identifier"

    def feed(self, text: str) -> None:
        for ch in text:
            last, self.last = self.last, ch
            if self.comment == "--":
                if ch == "\n":
                    self.comment = ""
            elif self.comment == "/*":
                if last == "*" and ch == "/":
                    self.comment = ""
                    self.last = ""
            elif self.quote:
                if self.escaped:
                    self.escaped = False
                elif ch == "\\":
                    self.escaped = True
                elif ch == self.quote:
                    self.quote = ""  # a doubled quote closes and opens again
            elif ch in "'\"`":
                self.quote = ch
            elif last == "-" and ch == "-":
                self.comment = "--"
            elif last == "/" and ch == "*":
                self.comment = "/*"
                self.last = ""


def bind_query(
    template: str, values: Mapping[str, Any], *, server_side: bool
) -> tuple[str, dict[str, str]]:
    """Bind the ``{name}`` placeholders of ``template``: as ``{name:Type}`` with a
    ``param_name`` value when ``server_side`` (and the value has a parameter type), else as
    escaped literals. Returns the SQL and the ``param_*`` request parameters.

    Raises:
        KeyError: a placeholder has no value (the name is the key).
        ValueError: the template is malformed.
        TypeError: a value can be bound neither way.

    Example:
        >>> bind_query("SELECT {n} + 1", {"n": 41}, server_side=True)
        ('SELECT {n:Int64} + 1', {'param_n': '41'})
        >>> bind_query("SELECT {n} + 1", {"n": 41}, server_side=False)
        ('SELECT 41 + 1', {})
    """
    pieces: dict[str, str] = {}
    params: dict[str, str] = {}
    for name in template_fields(template):
        if name not in values:
            raise KeyError(name)
        bound = query_parameter(values[name]) if server_side else None
        if bound is None:
            pieces[name] = sql_literal(values[name])
        else:
            pieces[name] = f"{{{name}:{bound[0]}}}"
            params[f"param_{name}"] = bound[1]
    return template.format_map(pieces), params


def render_query(template: str, values: Mapping[str, Any]) -> str:
    """Fill the ``{name}`` placeholders of ``template`` with escaped SQL literals (for the
    connector's own metadata queries, which run on every server alike).

    Raises:
        KeyError: a placeholder has no value (the name is the key).
        ValueError: the template is malformed.
        TypeError: a value has no SQL literal form.
    """
    return bind_query(template, values, server_side=False)[0]

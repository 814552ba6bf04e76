"""ClickHouse wire helpers: identifiers, server errors, row decoding and encoding (query templates
and literals are in :mod:`.query`).

The bulk data paths use ClickHouse's ``JSONEachRow`` format read and written with orjson:

* **Results** are decoded about 256 KiB at a time: the complete lines are turned into one JSON
  array and parsed in one call, then only the columns whose JSON form is not already the Python
  value (``Date``, ``DateTime``, ``UUID``, ``Decimal``, ``Float`` written as an integer or as
  ``"nan"``) are converted, column by column (see :class:`RowDecoder`). No decimal digit is ever
  rounded through a binary float.
* **Inserts** are encoded by orjson a batch at a time; dates and datetimes go out as ISO 8601 and
  the insert runs with ``date_time_input_format=best_effort``, so an aware datetime lands on the
  right instant whatever the server's time zone; ``Decimal`` goes out as an exact JSON number.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import Enum
from ipaddress import IPv4Address, IPv6Address
from typing import Any
from urllib.parse import quote, quote_plus
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson

from ...core.types import Batch

#: An insert's body: bytes, or pieces of it sent one after the other (not joined in memory).
InsertBody = bytes | list[bytes]

__all__ = [
    "TRANSIENT_CODES",
    "InsertBody",
    "ServerError",
    "decode_error_text",
    "encode_records",
    "mask_secrets",
    "quote_identifier",
    "split_args",
    "split_table",
    "type_error",
    "valid_column",
    "valid_identifier",
    "valid_type",
]

# --------------------------------------------------------------------------- identifiers

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_COLUMN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
# The tokens of a ClickHouse type: a name, a number, a quoted literal (``''`` escapes a quote),
# the punctuation of arguments, and spaces; anything else (``;``, ``--``, ``/*``, backticks,
# backslashes, line breaks) is refused.
_TYPE_TOKEN = re.compile(
    r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<number>-?[0-9]+(?:\.[0-9]+)?)"
    r"|(?P<literal>'(?:[^'\\\r\n]|'')*')|(?P<punct>[(),=])|(?P<space>[ \t]+)"
)


def valid_identifier(name: str) -> bool:
    """Whether ``name`` is a plain database or table name (letters, digits, ``_``)."""
    return bool(_IDENTIFIER.fullmatch(name))


def valid_column(name: str) -> bool:
    """Whether ``name`` is a plain column name; dots are allowed for ``Nested`` sub-columns."""
    return bool(_COLUMN.fullmatch(name))


def valid_type(spec: str) -> bool:
    """Whether ``spec`` is a ClickHouse type (``UInt64``, ``Nullable(String)``, ...); see
    :func:`type_error`."""
    return type_error(spec) is None


def type_error(spec: str) -> str | None:
    """Why ``spec`` is not a ClickHouse type, or ``None`` if it is one.

    A type is a name, optionally followed by parenthesised arguments made of names, numbers,
    quoted literals, ``,``, ``=`` and nested parentheses (``Enum8('a' = 1)``,
    ``DateTime64(3, 'UTC')``, ``Tuple(id UInt64, name String)``), balanced, with nothing after
    the closing parenthesis. Statement separators, comments, backticks, backslashes and line
    breaks are refused, so that a type put into DDL cannot end or extend the statement.

    Example:
        >>> type_error("Array(Nullable(Decimal(9, 2)))") is None
        True
        >>> type_error("Nullable(UInt8) ENGINE = Memory")
        "unexpected 'ENGINE' at 16 after the closing parenthesis"
    """
    tokens: list[tuple[str, int]] = []
    at = 0
    while at < len(spec):
        match = _TYPE_TOKEN.match(spec, at)
        if match is None:
            return f"unexpected {spec[at]!r} at {at}"
        if match.lastgroup != "space":
            tokens.append((match.group(), at))
        at = match.end()
    if not tokens or not tokens[0][0][0].isalpha():  # only a name starts with a letter
        return "does not start with a type name"
    if len(tokens) > 1 and tokens[1][0] != "(":
        text, at = tokens[1]
        return f"unexpected {text!r} at {at} (arguments go in parentheses)"
    depth = 1 if len(tokens) > 1 else 0  # tokens[1] opens the arguments
    for text, at in tokens[2:]:
        if depth == 0:
            if text == ")":
                return f"unbalanced ')' at {at}"
            return f"unexpected {text!r} at {at} after the closing parenthesis"
        if text == "(":
            depth += 1
        elif text == ")":
            depth -= 1
    return "unbalanced '('" if depth else None


def quote_identifier(name: str) -> str:
    """Quote a (validated) identifier with backticks, escaping ``\\`` and `````."""
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def split_table(table: str, default_database: str) -> tuple[str, str]:
    """Split ``"db.table"`` or ``"table"`` into ``(database, table)``."""
    database, dot, name = table.partition(".")
    if not dot:
        return default_database, table
    return database, name


# --------------------------------------------------------------------------- server errors

_CODE = re.compile(r"Code: (\d+)")
_AT_ROW = re.compile(r"\(at row (\d+)\)")
# The end of the exception block 25.11+ servers close a failed result with: "<size> <tag>".
_EXCEPTION_END = re.compile(r"\s\d+ [a-z]{16}\s+__exception__$")

# Server error codes of conditions that pass: a query failing with one may succeed when run again.
TRANSIENT_CODES = frozenset(
    {
        159,  # TIMEOUT_EXCEEDED (a busy server)
        202,  # TOO_MANY_SIMULTANEOUS_QUERIES
        203,  # NO_FREE_CONNECTION
        209,  # SOCKET_TIMEOUT
        210,  # NETWORK_ERROR
        241,  # MEMORY_LIMIT_EXCEEDED
        242,  # TABLE_IS_READ_ONLY (a replica lost its keeper session)
        252,  # TOO_MANY_PARTS
        285,  # TOO_FEW_LIVE_REPLICAS
        319,  # UNKNOWN_STATUS_OF_INSERT
        425,  # SYSTEM_ERROR
        999,  # KEEPER_EXCEPTION
    }
)


class ServerError(Exception):
    """An error reported by the ClickHouse server.

    Attributes:
        code: the server's error code, when it gave one.
        message: the server's message, without the exception-class boilerplate.
        row: 1-based row of the insert body the server rejected, when it said so.
        status_code: the HTTP status of the response.
    """

    def __init__(self, text: str, status_code: int | None = None) -> None:
        code, message = decode_error_text(text)
        super().__init__(message)
        self.code = code
        self.message = message
        self.status_code = status_code
        match = _AT_ROW.search(message)
        self.row = int(match.group(1)) if match else None

    def __str__(self) -> str:
        return f"ClickHouse error {self.code}: {self.message}" if self.code else self.message

    def mask(self, secrets: Iterable[str]) -> ServerError:
        """Replace every secret the message quotes (a server may echo a request's credentials
        back in its error) by ``***``, in place; return the error."""
        self.message = mask_secrets(self.message, secrets)
        self.args = (self.message,)
        return self

    @property
    def transient(self) -> bool:
        """Whether the code says the condition passes (overload, network, keeper), so that
        running the query again may succeed."""
        return self.code in TRANSIENT_CODES


def mask_secrets(text: str, secrets: Iterable[str]) -> str:
    """``text`` with each secret, as given and URL-encoded, replaced by ``***`` (longest first).

    Example:
        >>> mask_secrets("wrong password 'p@ss w0rd' (p%40ss%20w0rd)", ["p@ss w0rd"])
        "wrong password '***' (***)"
    """
    forms = {form for secret in secrets if secret for form in _encodings(secret)}
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, "***")
    return text


def _encodings(secret: str) -> tuple[str, ...]:
    return (secret, quote(secret, safe=""), quote_plus(secret), json.dumps(secret)[1:-1])


def decode_error_text(text: str) -> tuple[int | None, str]:
    """Split a ClickHouse error body into ``(code, message)``.

    Understands both ``Code: 27, e.displayText() = DB::Exception: ..., e.what() = ...`` (old
    servers) and ``Code: 27. DB::Exception: ... (CANNOT_PARSE_INPUT...) (version ...)`` (new ones).
    """
    text = _EXCEPTION_END.sub("", text.strip())
    match = _CODE.search(text)
    code = int(match.group(1)) if match else None
    message = text
    if "e.displayText() = " in message:
        message = message.split("e.displayText() = ", 1)[1].rsplit(", e.what() = ", 1)[0]
    elif match:
        message = message[match.end() :].lstrip(".,: ")
    message = message.removeprefix("DB::Exception: ")
    message = " ".join(message.split())  # one line: the server wraps long messages
    return code, message or text


# --------------------------------------------------------------------------- result decoding

Converter = Callable[[Any], Any]


def split_args(args: str) -> list[str]:
    """Split a type's argument list on top-level commas (respecting parentheses and quotes)."""
    parts: list[str] = []
    depth = 0
    quoted = False
    escaped = False
    start = 0
    for i, char in enumerate(args):
        if quoted:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == "'":
                quoted = False
        elif char == "'":
            quoted = True
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(args[start:i].strip())
            start = i + 1
    tail = args[start:].strip()
    if tail:
        parts.append(tail)
    return parts


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == "'":
        return text[1:-1].replace("\\'", "'").replace("\\\\", "\\")
    return text


def _to_float(value: Any) -> Any:
    # Whole floats arrive as JSON integers, nan/inf as strings, and in decimal mode as Decimal.
    return value if type(value) is float else float(value)


def _to_decimal(value: Any) -> Any:
    return value if type(value) is Decimal else Decimal(value)


def _to_date(value: Any) -> date:
    if isinstance(value, date):
        return value
    if value.startswith("0000"):  # old servers print day 0 (1970-01-01) as 0000-00-00
        return date(1970, 1, 1)
    return date.fromisoformat(value)


def _to_uuid(value: Any) -> UUID:
    return value if isinstance(value, UUID) else UUID(value)


def _datetime_converter(zero: datetime) -> Converter:
    fromisoformat = datetime.fromisoformat

    def convert(value: Any) -> datetime:
        if isinstance(value, datetime):
            return value
        if type(value) is int:  # some servers print DateTime as seconds when asked to
            return zero + timedelta(seconds=value)
        if value.startswith("0000"):  # old servers print second 0 as 0000-00-00 00:00:00
            return zero
        return fromisoformat(value)

    return convert


def _naive_epoch(timezone: str | None) -> datetime:
    """The Unix epoch as a naive wall-clock time in ``timezone`` (UTC when unknown)."""
    epoch = datetime(1970, 1, 1)
    if not timezone:
        return epoch
    try:
        offset = ZoneInfo(timezone).utcoffset(epoch)
    except (ZoneInfoNotFoundError, ValueError):
        return epoch
    return epoch + offset if offset is not None else epoch


def _nullable(inner: Converter) -> Converter:
    def convert(value: Any) -> Any:
        return None if value is None else inner(value)

    return convert


def _array(inner: Converter) -> Converter:
    def convert(value: Any) -> Any:
        return [inner(item) for item in value]

    return convert


def _tuple(inner: list[Converter | None]) -> Converter:
    def convert(value: Any) -> Any:
        if isinstance(value, dict):  # newer servers write named tuples as objects
            value = list(value.values())
        return tuple(
            item if conv is None else conv(item) for conv, item in zip(inner, value, strict=False)
        )

    return convert


def _map(key: Converter | None, val: Converter | None) -> Converter:
    def convert(value: Any) -> Any:
        return {
            (k if key is None else key(k)): (v if val is None else val(v)) for k, v in value.items()
        }

    return convert


def column_converter(type_name: str, server_timezone: str | None = None) -> Converter | None:
    """The function turning a ``JSONEachRow`` value of ``type_name`` into its Python value.

    ``None`` means the JSON value already is the Python value (integers, strings, enums, bools).
    DateTime values come back as naive datetimes, as the server prints them (in the column's time
    zone, or the server's when the column has none).
    """
    name = type_name.strip()
    head, paren, rest = name.partition("(")
    args = split_args(rest[:-1]) if paren else []
    if head in ("Nullable", "LowCardinality", "SimpleAggregateFunction") and args:
        inner = column_converter(args[-1], server_timezone)
        if inner is None or head != "Nullable":
            return inner
        return _nullable(inner)
    if head == "Array" and args:
        inner = column_converter(args[0], server_timezone)
        return None if inner is None else _array(inner)
    if head == "Tuple":
        # Tuple elements may be named: "Tuple(a UInt8, b String)"; the type is the last word.
        elems = [
            column_converter(
                arg.split(" ", 1)[1] if _named(arg) else arg,
                server_timezone,
            )
            for arg in args
        ]
        return _tuple(elems)
    if head == "Map" and len(args) == 2:
        key = column_converter(args[0], server_timezone)
        if key is None and (args[0].startswith(("Int", "UInt"))):
            key = int
        val = column_converter(args[1], server_timezone)
        return None if key is None and val is None else _map(key, val)
    if head in ("Float32", "Float64"):
        return _to_float
    if head.startswith("Decimal"):
        return _to_decimal
    if head == "Date" or head == "Date32":
        return _to_date
    if head in ("DateTime", "DateTime64"):
        timezone = server_timezone
        if head == "DateTime" and args:
            timezone = _unquote(args[0])
        elif head == "DateTime64" and len(args) > 1:
            timezone = _unquote(args[1])
        return _datetime_converter(_naive_epoch(timezone))
    if head == "UUID":
        return _to_uuid
    if head == "IPv4":
        return IPv4Address
    if head == "IPv6":
        return IPv6Address
    return None


def fast_converter(type_name: str) -> Converter | None:
    """A C-implemented converter for the common case of ``type_name``, or ``None``.

    It may raise (``TypeError``, ``ValueError``, ``ArithmeticError``) on an uncommon value (a null,
    a zero date, ``nan``); the caller then converts the column with :func:`column_converter`'s
    function, which handles every value and leaves converted ones as they are.
    """
    name = type_name.strip()
    if name.startswith("Nullable(") and name.endswith(")"):
        name = name[len("Nullable(") : -1].strip()
    head = name.partition("(")[0]
    if head in ("Float32", "Float64"):
        return float
    if head.startswith("Decimal"):
        return Decimal
    if head == "Date":
        return date.fromisoformat
    if head == "DateTime":
        return datetime.fromisoformat
    if head == "UUID":
        return UUID
    return None


def _named(arg: str) -> bool:
    first, _, second = arg.partition(" ")
    return bool(second) and bool(_IDENTIFIER.fullmatch(first)) and not first[0].isupper()


def needs_decimal(type_name: str) -> bool:
    """Whether values of ``type_name`` include decimals (parsed exactly, not through floats)."""
    return "Decimal" in type_name


def has_naive_datetime(type_name: str) -> bool:
    """Whether ``type_name`` holds a DateTime without its own time zone."""
    return bool(re.search(r"DateTime(?!64)(?!\(')|DateTime64(?!\(\d+,\s*')", type_name))


# Column names that the server and orjson write identically in JSON (no escapes).
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_ .,()\[\]{}+\-*<>=!'#%&;?@^|~]+")


def _top_level_decimal(type_name: str) -> bool:
    name = type_name.strip()
    for wrapper in ("Nullable(", "LowCardinality("):
        if name.startswith(wrapper):
            name = name[len(wrapper) : -1].strip()
    return name.startswith("Decimal")


def _exact_decimal(value: Any) -> Any:
    if type(value) is str:
        return None if value == "null" else Decimal(value)
    if value is None or type(value) is Decimal:
        return value
    raise ValueError(f"a decimal arrived as {type(value).__name__} {value!r} (it would be rounded)")


class RowDecoder:
    """Decodes ``JSONEachRow`` lines into dicts with Python values, many lines at a time.

    Each column is converted in one loop over the rows with a C function (``float``,
    ``date.fromisoformat``, ...); if one value of the column needs more care (a null, a zero date),
    the column is converted again with a function that handles every value.

    Decimals are never parsed through a binary float. When every ``Decimal`` column is a top-level
    one (possibly ``Nullable``) with a plain, unique name, a ``"`` is inserted after its key and
    before the next key (the server writes the columns in order; inside a JSON string a ``"`` is
    always escaped, so ``"name":`` only ever occurs as that key), which makes orjson read the
    number as a string, converted with ``Decimal(str)``. Otherwise the standard library's ``json``
    parses the lines with ``parse_float=Decimal``.
    """

    def __init__(self, columns: Iterable[tuple[str, str]], server_timezone: str | None) -> None:
        self.columns = list(columns)
        names = [name for name, _ in self.columns]
        decimals = [i for i, (_, t) in enumerate(self.columns) if needs_decimal(t)]
        quotable = len(set(names)) == len(names) and all(
            _top_level_decimal(self.columns[i][1]) and _PLAIN_NAME.fullmatch(names[i])
            for i in decimals
        )
        self.stdlib_json = bool(decimals) and not quotable
        # (old, new) byte replacements that turn decimal numbers into JSON strings.
        self.quote: list[tuple[bytes, bytes]] = []
        if decimals and quotable:
            for i in decimals:
                key = b'"' + names[i].encode() + b'":'
                self.quote.append((key, key + b'"'))
                if i + 1 < len(names):
                    after = b',"' + names[i + 1].encode() + b'":'
                    self.quote.append((after, b'"' + after))
                else:
                    self.quote.append((b"}\n", b'"}\n'))
        self.converters: list[tuple[str, Converter, Converter]] = []
        for i, (name, type_name) in enumerate(self.columns):
            careful = column_converter(type_name, server_timezone)
            if i in decimals and not self.stdlib_json:
                careful = _exact_decimal
            if careful is None:
                continue
            fast = fast_converter(type_name) or careful
            self.converters.append((name, fast, careful))

    def decode(self, lines: bytes) -> Batch:
        """Decode complete lines (ending with ``\\n``) into records.

        Raises:
            ServerError: the server appended an error to the stream (it failed mid-result).
            ValueError: the lines are not valid ``JSONEachRow``.
        """
        if lines.startswith(b"Code: ") or b"\nCode: " in lines:
            # A row never starts with "Code: " (rows start with "{"; newlines inside strings are
            # escaped), so this is the error the server writes when it fails while streaming.
            start = 0 if lines.startswith(b"Code: ") else lines.index(b"\nCode: ") + 1
            raise ServerError(lines[start:].decode("utf-8", "replace"))
        for old, new in self.quote:
            lines = lines.replace(old, new)
        data = b"[" + lines[:-1].replace(b"\n", b",") + b"]"
        if self.stdlib_json:
            rows: Batch = json.loads(data, parse_float=Decimal)
        else:
            rows = orjson.loads(data)
        for name, fast, careful in self.converters:
            try:
                for row in rows:
                    row[name] = fast(row[name])
            except (TypeError, ValueError, ArithmeticError):
                for row in rows:
                    row[name] = careful(row[name])
        return rows


# --------------------------------------------------------------------------- insert encoding


def _encode_default(value: Any) -> Any:
    """orjson fallback for values it does not serialise natively."""
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise TypeError(f"{value} has no ClickHouse Decimal form")
        return orjson.Fragment(format(value, "f"))
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, set | frozenset):
        return list(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode()
    if isinstance(value, IPv4Address | IPv6Address):
        return str(value)
    raise TypeError(f"cannot insert a value of type {type(value).__name__}")


def encode_records(records: Batch) -> bytes:
    """Encode records as a JSON array with orjson (the insert body drops the brackets).

    Raises:
        TypeError: a value cannot be encoded (``orjson.JSONEncodeError`` is a ``TypeError``).
    """
    return orjson.dumps(records, default=_encode_default)


def encode_for_file(record: Any) -> bytes:
    """Encode anything for a dead-letter file: values with no JSON form become their ``repr``."""
    try:
        return orjson.dumps(record, default=_encode_default)
    except TypeError:
        return orjson.dumps(record, default=repr)

"""ClickHouse column types as Arrow types, and Arrow batches in the server's wire formats.

The columnar path of the connector never makes a Python object per row:

* **Schema.** :func:`arrow_type` maps a ClickHouse type (as ``DESCRIBE`` prints it) to the Arrow
  type a batch carries: ``UInt64`` → ``uint64``, ``Nullable(T)`` → a nullable field of ``T``,
  ``DateTime('Europe/Berlin')`` → ``timestamp[s, tz=Europe/Berlin]`` (a column without a zone
  gets the server's), ``DateTime64(3)`` → ``timestamp[ms]``, ``Decimal(P, S)`` → ``decimal128(P,
  S)`` (exact), ``LowCardinality(String)`` and ``Enum`` → ``string``, ``Array(T)`` → ``list<T>``,
  ``Map(K, V)`` → ``map<K, V>``, ``UUID`` and ``IPv4``/``IPv6`` → ``string``.
  :func:`clickhouse_type` maps back, for ``create_table`` from an Arrow schema.
* **Modern servers** (20.x and later) speak ``ArrowStream`` both ways; :func:`conform` casts what
  the server sends (``DateTime`` arrives as ``uint32``, ``Date`` as ``uint16``) to the schema.
* **Older servers** (such as 18.16) have no Arrow format. Results are read as ``Native``, the
  server's own columnar format, which it writes three times faster than CSV (:mod:`.native`);
  a result with columns that path does not read (``LowCardinality``, 128-bit integers) comes as
  ``CSVWithNames``, parsed by ``pyarrow.csv`` in C++: :func:`csv_select` wraps the query so that
  dates and times arrive as numbers (the zero date prints as ``0000-00-00``, which no parser
  reads), and :class:`CsvSplitter` cuts the streamed body at row boundaries (a quoted string may
  hold a line break). Inserts are written by ``pyarrow.csv.write_csv`` (:func:`encode_csv`)
  with ``\\N`` for nulls. Columns of nested types (arrays, maps, tuples) take the records path
  instead: the batch is converted with ``to_pylist`` and encoded as ``JSONEachRow``, the
  documented slower path.
"""

from __future__ import annotations

import io
import re
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Literal

import anyio
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.ipc as ipc

from ...core.arrow import Rebatcher
from ..arrow_text import CsvSplitter
from .codec import InsertBody, ServerError, quote_identifier, split_args
from .native import NativeDecoder, encode_native_parts, native_select, native_supported

__all__ = [
    "CsvSplitter",
    "arrow_schema",
    "arrow_type",
    "clickhouse_type",
    "conform",
    "csv_select",
    "decode_csv",
    "encode_csv",
    "has_nested",
    "insert_body",
    "records_to_table",
    "result_format",
    "stream_tables",
    "wire_select",
]

_INTEGERS = {
    "UInt8": pa.uint8(),
    "UInt16": pa.uint16(),
    "UInt32": pa.uint32(),
    "UInt64": pa.uint64(),
    "Int8": pa.int8(),
    "Int16": pa.int16(),
    "Int32": pa.int32(),
    "Int64": pa.int64(),
}
_AS_STRING = (
    "String",
    "FixedString",
    "UUID",
    "Enum8",
    "Enum16",
    "IPv4",
    "IPv6",
    "Int128",
    "Int256",
    "UInt128",
    "UInt256",
)
_DECIMAL_PRECISION = {"Decimal32": 9, "Decimal64": 18, "Decimal128": 38, "Decimal256": 76}
_NESTED = re.compile(r"\b(Array|Map|Tuple|Nested)\(")


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == "'":
        return text[1:-1]
    return text


def _unit(precision: int) -> str:
    if precision == 0:
        return "s"
    if precision <= 3:
        return "ms"
    if precision <= 6:
        return "us"
    return "ns"


def _parse(type_name: str) -> tuple[str, list[str]]:
    name = type_name.strip()
    head, paren, rest = name.partition("(")
    return head.strip(), split_args(rest[: rest.rfind(")")]) if paren else []


def is_nullable(type_name: str) -> bool:
    """Whether a column of ``type_name`` can hold NULL (``Nullable``, also in LowCardinality)."""
    head, args = _parse(type_name)
    if head == "LowCardinality" and args:
        return is_nullable(args[0])
    return head == "Nullable"


def arrow_type(type_name: str, server_timezone: str | None = None) -> pa.DataType:
    """The Arrow type of a ClickHouse column type (see the module docs).

    Raises:
        ValueError: a type the columnar path does not support (``AggregateFunction``, ...).
    """
    head, args = _parse(type_name)
    if head in ("Nullable", "LowCardinality", "SimpleAggregateFunction") and args:
        return arrow_type(args[-1], server_timezone)
    if head in _INTEGERS:
        return _INTEGERS[head]
    if head == "Float32":
        return pa.float32()
    if head == "Float64":
        return pa.float64()
    if head == "Bool":
        return pa.bool_()
    if head in _AS_STRING:
        return pa.string()
    if head in ("Date", "Date32"):
        return pa.date32()
    if head == "DateTime":
        return pa.timestamp("s", _unquote(args[0]) if args else server_timezone)
    if head == "DateTime64":
        zone = _unquote(args[1]) if len(args) > 1 else server_timezone
        return pa.timestamp(_unit(int(args[0])), zone)
    if head == "Decimal" and len(args) == 2:
        precision, scale = int(args[0]), int(args[1])
        return (
            pa.decimal128(precision, scale) if precision <= 38 else pa.decimal256(precision, scale)
        )
    if head in _DECIMAL_PRECISION and len(args) == 1:
        precision = _DECIMAL_PRECISION[head]
        make = pa.decimal128 if precision <= 38 else pa.decimal256
        return make(precision, int(args[0]))
    if head == "Array" and args:
        return pa.list_(
            pa.field("item", arrow_type(args[0], server_timezone), is_nullable(args[0]))
        )
    if head == "Map" and len(args) == 2:
        return pa.map_(
            arrow_type(args[0], server_timezone),
            pa.field("value", arrow_type(args[1], server_timezone), is_nullable(args[1])),
        )
    if head == "Tuple" and args:
        fields = []
        for index, arg in enumerate(args, 1):
            first, _, second = arg.strip().partition(" ")
            named = bool(second) and first[:1].islower()
            inner = second if named else arg
            fields.append(
                pa.field(first if named else str(index), arrow_type(inner, server_timezone))
            )
        return pa.struct(fields)
    if head == "Nothing":
        return pa.null()
    raise ValueError(f"the columnar path does not support the ClickHouse type {type_name}")


def arrow_schema(
    columns: Sequence[tuple[str, str]], server_timezone: str | None = None
) -> pa.Schema:
    """The Arrow schema of a result whose ``DESCRIBE`` gave ``columns`` (name, type)."""
    return pa.schema(
        [
            pa.field(name, arrow_type(type_name, server_timezone), is_nullable(type_name))
            for name, type_name in columns
        ]
    )


def clickhouse_type(field: pa.Field, *, modern: bool = True) -> str:
    """The ClickHouse column type for an Arrow field (for ``create_table`` from a schema).

    Args:
        field: the Arrow field; a nullable field becomes ``Nullable(...)`` where ClickHouse
            allows it (not around arrays and maps).
        modern: the server has ``Bool`` and ``DateTime64`` (21.x and later); otherwise booleans
            become ``UInt8`` and sub-second timestamps raise.

    Raises:
        ValueError: an Arrow type with no ClickHouse counterpart.
    """
    kind = field.type
    inner = _base_type(kind, modern, field.name)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_map(kind):
        return inner
    return f"Nullable({inner})" if field.nullable else inner


def _base_type(kind: pa.DataType, modern: bool, name: str) -> str:
    if pa.types.is_dictionary(kind):
        return f"LowCardinality({_base_type(kind.value_type, modern, name)})"
    for ch_name, arrow in _INTEGERS.items():
        if kind == arrow:
            return ch_name
    if pa.types.is_float32(kind):
        return "Float32"
    if pa.types.is_floating(kind):
        return "Float64"
    if pa.types.is_boolean(kind):
        return "Bool" if modern else "UInt8"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind):
        return "String"
    if pa.types.is_large_binary(kind):
        return "String"
    if pa.types.is_fixed_size_binary(kind):
        return f"FixedString({kind.byte_width})"
    if pa.types.is_date(kind):
        return "Date32" if modern else "Date"
    if pa.types.is_timestamp(kind):
        zone = f"'{kind.tz}'" if kind.tz else None
        if kind.unit == "s":
            return f"DateTime({zone})" if zone else "DateTime"
        if not modern:
            raise ValueError(f"column {name!r}: this server has no DateTime64 for {kind}")
        digits = {"ms": 3, "us": 6, "ns": 9}[kind.unit]
        return f"DateTime64({digits}, {zone})" if zone else f"DateTime64({digits})"
    if pa.types.is_decimal(kind):
        return f"Decimal({kind.precision}, {kind.scale})"
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        value = kind.value_field
        return f"Array({clickhouse_type(value, modern=modern)})"
    if pa.types.is_map(kind):
        key = _base_type(kind.key_type, modern, name)
        return f"Map({key}, {clickhouse_type(kind.item_field, modern=modern)})"
    raise ValueError(f"column {name!r}: no ClickHouse type for the Arrow type {kind}")


def has_nested(columns: Sequence[tuple[str, str]]) -> bool:
    """Whether any column is an array, map or tuple (not readable from CSV by pyarrow)."""
    return any(_NESTED.search(type_name) for _, type_name in columns)


# --------------------------------------------------------------------------- modern servers


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Cast a table the server wrote as ``ArrowStream`` to ``schema``, column by column.

    ClickHouse writes ``DateTime`` as ``uint32`` seconds and ``Date`` as ``uint16`` days, and may
    send strings as binary or dictionaries; everything else already has the schema's type.
    """
    if table.schema.equals(schema):
        return table
    arrays = []
    for field in schema:
        column = table.column(field.name)
        arrays.append(_cast(column, field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _cast(column: pa.ChunkedArray, target: pa.DataType) -> pa.ChunkedArray:
    source = column.type
    if source == target:
        return column
    if pa.types.is_dictionary(source):
        column = column.cast(source.value_type)
        source = source.value_type
    if pa.types.is_timestamp(target) and pa.types.is_integer(source):
        return column.cast(pa.int64()).cast(pa.timestamp(target.unit)).cast(target)
    if pa.types.is_date32(target) and pa.types.is_integer(source):
        return column.cast(pa.int32()).cast(pa.date32())
    if pa.types.is_timestamp(target) and pa.types.is_timestamp(source) and source.tz != target.tz:
        return column.cast(pa.timestamp(target.unit, source.tz)).cast(target)
    return column.cast(target)


# --------------------------------------------------------------------------- older servers


def wire_select(sql: str, columns: Sequence[tuple[str, str]], wire: str) -> str:
    """Wrap ``sql`` so that its result reads cleanly in ``wire`` format: on ``CSVWithNames``
    dates and times arrive as numbers; on ``ArrowStream``, types the server writes as raw bytes
    (``UUID``, ``IPv4``/``IPv6``, 128- and 256-bit integers, ``Enum``) arrive as their text; on
    ``Native``, see :func:`.native.native_select`."""
    if wire == "Native":
        return native_select(sql, columns)
    parts = []
    changed = False
    for name, type_name in columns:
        quoted = quote_identifier(name)
        head, _ = _parse(_strip_nullable(type_name))
        expression = quoted
        if wire == "CSVWithNames" and head == "DateTime":
            expression = f"toUnixTimestamp({quoted})"
        elif wire == "CSVWithNames" and head == "Date":
            expression = f"toUInt16({quoted})"
        elif wire == "ArrowStream" and head in _AS_TEXT_ON_ARROW:
            expression = f"toString({quoted})"
        if expression != quoted:
            changed = True
            expression = f"{expression} AS {quoted}"
        parts.append(expression)
    if not changed:
        return sql
    return f"SELECT {', '.join(parts)} FROM ({sql}\n)"


def csv_select(sql: str, columns: Sequence[tuple[str, str]]) -> str:
    """Wrap ``sql`` so that its result reads cleanly as CSV: dates and times as numbers."""
    return wire_select(sql, columns, "CSVWithNames")


_AS_TEXT_ON_ARROW = frozenset(
    {"UUID", "IPv4", "IPv6", "Int128", "Int256", "UInt128", "UInt256", "Enum8", "Enum16"}
)


def _strip_nullable(type_name: str) -> str:
    head, args = _parse(type_name)
    if head in ("Nullable", "LowCardinality") and args:
        return _strip_nullable(args[0])
    return type_name


def _date_like(type_name: str) -> bool:
    return _parse(_strip_nullable(type_name))[0] in ("DateTime", "Date")


def _csv_read_type(type_name: str, target: pa.DataType) -> pa.DataType:
    head = _parse(_strip_nullable(type_name))[0]
    if head == "DateTime":
        return pa.int64()
    if head == "Date":
        return pa.int32()
    return target


def decode_csv(
    header: bytes, piece: bytes, columns: Sequence[tuple[str, str]], schema: pa.Schema
) -> pa.Table:
    """Parse one piece of a ``CSVWithNames`` result (from :func:`csv_select`) into ``schema``."""
    read_types = {
        name: _csv_read_type(type_name, field.type)
        for (name, type_name), field in zip(columns, schema, strict=True)
    }
    table = pacsv.read_csv(
        io.BytesIO(header + piece),
        read_options=pacsv.ReadOptions(use_threads=True, block_size=max(len(piece) + 1, 1 << 20)),
        parse_options=pacsv.ParseOptions(newlines_in_values=True, double_quote=True),
        convert_options=pacsv.ConvertOptions(
            column_types=read_types,
            null_values=["\\N"],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
            true_values=["true", "1"],
            false_values=["false", "0"],
        ),
    )
    return conform(table, schema)


def encode_csv(table: pa.Table) -> bytes:
    """``CSVWithNames`` for an insert on a server without Arrow formats (no nested columns).

    Timestamps are written as Unix seconds (what ``DateTime`` reads on every version), booleans as
    ``0``/``1``, nulls as ``\\N``; strings are always quoted, so an empty string stays one.
    """
    arrays = []
    for column in table.columns:
        kind = column.type
        if pa.types.is_dictionary(kind):
            column = column.cast(kind.value_type)
            kind = kind.value_type
        if pa.types.is_timestamp(kind):
            seconds = pc.divide(
                column.cast(pa.timestamp(kind.unit)).cast(pa.int64()), _per_second(kind.unit)
            )
            # ten digits: what every server version reads as Unix seconds ("0" is not)
            column = pc.utf8_lpad(seconds.cast(pa.string()), width=10, padding="0")
        elif pa.types.is_boolean(kind):
            column = column.cast(pa.uint8())
        arrays.append(column)
    prepared = pa.Table.from_arrays(arrays, names=table.column_names)
    sink = io.BytesIO()
    pacsv.write_csv(
        prepared,
        sink,
        write_options=pacsv.WriteOptions(
            include_header=True, null_string="\\N", quoting_style="needed", batch_size=65536
        ),
    )
    return sink.getvalue()


def _per_second(unit: str) -> int:
    return {"s": 1, "ms": 1000, "us": 1_000_000, "ns": 1_000_000_000}[unit]


# --------------------------------------------------------------------------- streamed results


class ArrowStreamDecoder:
    """Decodes a streamed ``ArrowStream`` body message by message, as its bytes arrive.

    An IPC message whose bytes have not all arrived yet is kept and retried when at least
    ``retry_bytes`` more have come, so a large message is not re-parsed for every network chunk.
    """

    def __init__(self, retry_bytes: int = 1 << 20) -> None:
        self.schema: pa.Schema | None = None
        self._buffer = bytearray()
        self._retry_bytes = retry_bytes
        self._needed = 0

    def feed(self, chunk: bytes) -> list[pa.RecordBatch]:
        """Add bytes of the body; return the record batches now complete."""
        self._buffer += chunk
        if len(self._buffer) < self._needed:
            return []
        batches = []
        view = pa.py_buffer(bytes(self._buffer))
        reader = pa.BufferReader(view)
        consumed = 0
        while consumed < len(view):
            try:
                message = ipc.read_message(reader)
            except (pa.ArrowInvalid, OSError, EOFError):
                break
            consumed = reader.tell()
            if message.type == "schema":
                self.schema = ipc.read_schema(message)
            elif message.type == "record batch":
                assert self.schema is not None, "a record batch before the schema"
                batches.append(ipc.read_record_batch(message, self.schema))
            else:
                raise ValueError(f"unexpected Arrow IPC message {message.type!r}")
        del self._buffer[:consumed]
        self._needed = len(self._buffer) + self._retry_bytes if self._buffer else 0
        return batches

    def finish(self) -> list[pa.RecordBatch]:
        """The last batches; raises ValueError if the stream was cut off."""
        self._needed = 0
        batches = self.feed(b"")
        rest = bytes(self._buffer)
        if rest and rest not in (b"\xff\xff\xff\xff\x00\x00\x00\x00", b"\x00\x00\x00\x00"):
            raise ValueError(f"the Arrow stream ended with an incomplete message ({len(rest)} B)")
        self._buffer.clear()
        return batches


# --------------------------------------------------------------------------- the data paths

WireFormat = Literal["ArrowStream", "Native", "CSVWithNames"]

# Settings for an ArrowStream result: strings as strings, LowCardinality decoded.
ARROW_RESULT_SETTINGS = {
    "output_format_arrow_string_as_string": 1,
    "output_format_arrow_low_cardinality_as_dictionary": 0,
}
# Bytes of CSV parsed at once (pyarrow parses a piece with all cores, in C++).
_CSV_PIECE = 4 << 20


def result_format(arrow_stream: bool, columns: Sequence[tuple[str, str]]) -> WireFormat | None:
    """The wire format of a columnar extract: ``ArrowStream`` where the server writes it;
    ``Native`` on older servers, or CSV for columns ``Native`` is not read for; ``None`` when
    neither can carry the columns (nested types on an old server: the caller reads records and
    converts them)."""
    if arrow_stream:
        return "ArrowStream"
    if native_supported(columns):
        return "Native"
    return None if has_nested(columns) else "CSVWithNames"


async def stream_tables(
    chunks: AsyncIterator[bytes],
    wire: WireFormat,
    columns: Sequence[tuple[str, str]],
    schema: pa.Schema,
    batch_size: int,
) -> AsyncGenerator[pa.Table]:
    """Decode a streamed result into tables of ``batch_size`` rows of ``schema``."""
    rebatcher = Rebatcher(batch_size)
    if wire == "ArrowStream":
        decoder = ArrowStreamDecoder()
        async for chunk in chunks:
            for batch in decoder.feed(chunk):
                for table in rebatcher.add(conform(pa.Table.from_batches([batch]), schema)):
                    yield table
        for batch in decoder.finish():
            for table in rebatcher.add(conform(pa.Table.from_batches([batch]), schema)):
                yield table
    elif wire == "Native":
        native = NativeDecoder(columns, schema)
        try:
            async for chunk in chunks:
                if native.complete(chunk):
                    for table in await anyio.to_thread.run_sync(native.decode):
                        for out in rebatcher.add(table):
                            yield out
            for table in native.finish():
                for out in rebatcher.add(table):
                    yield out
        except ValueError:
            _raise_server_error(native.rest)  # an old server appends its error to the body
            raise
    else:
        splitter = CsvSplitter(_CSV_PIECE)

        async def parse(piece: bytes) -> pa.Table:
            header = splitter.header or b""
            try:
                return await anyio.to_thread.run_sync(decode_csv, header, piece, columns, schema)
            except pa.ArrowInvalid:
                _raise_server_error(piece)  # an old server appends its error to the body
                raise

        async for chunk in chunks:
            for piece in splitter.feed(chunk):
                for table in rebatcher.add(await parse(piece)):
                    yield table
        try:
            rest = splitter.finish()
        except ValueError:
            _raise_server_error(splitter.rest)
            raise
        if rest:
            for table in rebatcher.add(await parse(rest)):
                yield table
    for table in rebatcher.finish():
        yield table


def insert_body(
    table: pa.Table, arrow_stream: bool, types: Sequence[tuple[str, str]] | None = None
) -> tuple[WireFormat, InsertBody] | None:
    """An Arrow batch as an insert body: ``ArrowStream`` where the server reads it; on older
    servers ``Native`` when the table's column ``types`` are known and every column converts
    exactly (:func:`.native.encode_native`), else CSV; ``None`` when the batch has nested
    columns an old server cannot take from CSV (the caller encodes it as records, the
    documented slower path)."""
    if arrow_stream:
        sink = pa.BufferOutputStream()
        with ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        return "ArrowStream", sink.getvalue().to_pybytes()
    if types:
        native = encode_native_parts(table, types)
        if native is not None:
            return "Native", native  # a piece per column: not joined into one more copy
    if any(_is_nested_arrow(field.type) for field in table.schema):
        return None
    return "CSVWithNames", encode_csv(table)


_SERVER_ERROR = re.compile(rb"(?:^|\n)(Code: \d+[.,] .*)\Z", re.S)


def _raise_server_error(data: bytes) -> None:
    """Raise the server's error if ``data`` ends with one (how servers before 25.11 report an
    error in mid-result: its text appended to the rows)."""
    found = _SERVER_ERROR.search(data[-65536:])
    if found:
        raise ServerError(found.group(1).decode("utf-8", "replace").strip())


def _is_nested_arrow(kind: pa.DataType) -> bool:
    return bool(
        pa.types.is_list(kind)
        or pa.types.is_large_list(kind)
        or pa.types.is_map(kind)
        or pa.types.is_struct(kind)
    )


def records_to_table(records: list[dict[str, object]], schema: pa.Schema) -> pa.Table:
    """Records decoded from ``JSONEachRow`` (naive datetimes in their column's zone) as a table
    of ``schema``: the slower path, for nested results on servers without ``ArrowStream``.
    DateTime values nested inside arrays or maps are taken as UTC."""
    naive = pa.schema(
        [
            field.with_type(pa.timestamp(field.type.unit))
            if pa.types.is_timestamp(field.type) and field.type.tz
            else field
            for field in schema
        ]
    )
    texts = [field.name for field in schema if pa.types.is_string(field.type)]
    if texts and records:
        # UUIDs and IP addresses arrive as Python objects; the schema holds them as text
        for record in records:
            for name in texts:
                value = record.get(name)
                if value is not None and type(value) is not str:
                    record[name] = str(value)
    table = pa.Table.from_pylist(records, schema=naive)
    if naive.equals(schema):
        return table
    arrays = []
    for field, column in zip(schema, table.columns, strict=True):
        if pa.types.is_timestamp(field.type) and field.type.tz:
            column = pc.assume_timezone(
                column, field.type.tz, ambiguous="earliest", nonexistent="earliest"
            )
        arrays.append(column)
    return pa.Table.from_arrays(arrays, schema=schema)

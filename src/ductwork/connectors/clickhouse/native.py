"""ClickHouse's ``Native`` format read into Arrow without a Python object per row.

Servers without Arrow formats (before 20.x, such as 18.16) write ``Native`` over HTTP three times
faster than CSV, and it is columnar already: a result is a sequence of blocks, each holding its
row count and, column by column, the name, the type and the values in their binary layout. Fixed
width values (integers, floats, ``Date``, ``DateTime``, decimals) are little-endian arrays and
become Arrow buffers with one copy; ``Nullable(T)`` is a byte per row (1 for NULL) before the
values of ``T``.

A ``String`` is a varint length before each value, which cannot be split without reading every
length in turn. :func:`native_select` therefore asks the server for the byte length of each text
column as an extra ``UInt64`` column placed before it; from the lengths, numpy computes where
every length prefix sits and drops those bytes in one vectorised pass, leaving Arrow's
offsets-and-values layout. Types the server would write in a layout of their own (``Enum``,
``UUID``, ``FixedString``) are converted to text by the query.

:func:`native_supported` says whether a result can take this path; others take the CSV path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from .codec import quote_identifier

__all__ = [
    "NativeDecoder",
    "encode_native",
    "encode_native_parts",
    "native_select",
    "native_supported",
]

# Fixed-width types: (numpy dtype of the wire layout, bytes per value).
_FIXED: dict[str, str] = {
    "UInt8": "<u1",
    "UInt16": "<u2",
    "UInt32": "<u4",
    "UInt64": "<u8",
    "Int8": "<i1",
    "Int16": "<i2",
    "Int32": "<i4",
    "Int64": "<i8",
    "Float32": "<f4",
    "Float64": "<f8",
    "Bool": "<u1",
    "Date": "<u2",
    "DateTime": "<u4",
}
_DECIMAL_BYTES = {"Decimal32": 4, "Decimal64": 8, "Decimal128": 16}
# Types sent as text: the query converts them with toString().
_AS_TEXT = frozenset({"Enum8", "Enum16", "UUID"})
_LENGTH = "__ductwork_length_{}"


def _parse(type_name: str) -> tuple[str, str]:
    name = type_name.strip()
    head, paren, rest = name.partition("(")
    return head.strip(), rest[: rest.rfind(")")] if paren else ""


def _unwrap(type_name: str) -> tuple[bool, str]:
    """``(nullable, inner type)`` of a column type."""
    head, args = _parse(type_name)
    if head == "Nullable":
        return True, args.strip()
    return False, type_name.strip()


def _kind(type_name: str) -> tuple[bool, str]:
    nullable, inner = _unwrap(type_name)
    return nullable, _parse(inner)[0]


def _decimal_bytes(head: str, args: str) -> int | None:
    if head in _DECIMAL_BYTES:
        return _DECIMAL_BYTES[head]
    if head == "Decimal":
        precision = int(args.split(",")[0])
        if precision <= 9:
            return 4
        if precision <= 18:
            return 8
        if precision <= 38:
            return 16
    return None


@dataclass(frozen=True)
class _Column:
    """How one result column arrives in ``Native`` and which Arrow type it becomes."""

    name: str
    wire_type: str  # the type the server writes after native_select's conversions
    nullable: bool
    kind: str  # "fixed", "decimal", "text" or "fixed text"
    dtype: str = ""  # numpy dtype of a fixed-width column
    width: int = 0  # bytes per value of a decimal or FixedString column


def _plan(columns: Sequence[tuple[str, str]]) -> list[_Column] | None:
    plan = []
    for name, type_name in columns:
        nullable, inner = _unwrap(type_name)
        head, args = _parse(inner)
        if head in _FIXED:
            wire = f"Nullable({head})" if nullable else head
            plan.append(_Column(name, wire, nullable, "fixed", dtype=_FIXED[head]))
        elif (width := _decimal_bytes(head, args)) is not None:
            plan.append(_Column(name, type_name.strip(), nullable, "decimal", width=width))
        elif head == "FixedString":
            width = int(args)
            plan.append(
                _Column(
                    name,
                    inner if not nullable else type_name.strip(),
                    nullable,
                    "fixed text",
                    width=width,
                )
            )
        elif head == "String" or head in _AS_TEXT:
            wire = "Nullable(String)" if nullable else "String"
            plan.append(_Column(name, wire, nullable, "text"))
        else:
            return None
    return plan


def native_supported(columns: Sequence[tuple[str, str]]) -> bool:
    """Whether a result with these ``(name, type)`` columns can be read as ``Native``: numbers,
    dates and times, decimals up to 38 digits, text, enums, UUIDs, each also ``Nullable``.
    ``DateTime`` with an explicit zone is written the same way and is included; nested and
    ``LowCardinality`` columns are not."""
    return bool(columns) and _plan(columns) is not None


def native_select(sql: str, columns: Sequence[tuple[str, str]]) -> str:
    """Wrap ``sql`` for :class:`NativeDecoder`: each text column preceded by its byte length,
    enums, UUIDs and fixed strings converted to text."""
    plan = _plan(columns)
    if plan is None:
        raise ValueError("the result has columns the Native path does not read")
    parts = []
    for index, ((name, type_name), column) in enumerate(zip(columns, plan, strict=True)):
        quoted = quote_identifier(name)
        if column.kind != "text":
            parts.append(quoted)
            continue
        head, _ = _parse(_unwrap(type_name)[1])
        value = quoted if head == "String" else f"toString({quoted})"
        parts.append(f"length(assumeNotNull({value})) AS {_LENGTH.format(index)}")
        parts.append(f"{value} AS {quoted}")
    return f"SELECT {', '.join(parts)} FROM ({sql}\n)"


class _Short(Exception):
    """The buffer ends before the block does; ``needed`` bytes in all are required."""

    def __init__(self, needed: int) -> None:
        self.needed = needed


def _varuint(data: memoryview, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(data):
            raise _Short(pos + 1)
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("a malformed length in the Native result")


def _string(data: memoryview, pos: int) -> tuple[str, int]:
    size, pos = _varuint(data, pos)
    if pos + size > len(data):
        raise _Short(pos + size)
    return bytes(data[pos : pos + size]).decode("utf-8", "replace"), pos + size


def _take(data: memoryview, pos: int, size: int) -> memoryview:
    if pos + size > len(data):
        raise _Short(pos + size)
    return data[pos : pos + size]


def _validity(null_map: np.ndarray) -> pa.Buffer | None:
    if not null_map.any():
        return None
    return pa.py_buffer(np.packbits(null_map == 0, bitorder="little"))


def _prefix_sizes(lengths: np.ndarray) -> np.ndarray:
    """Bytes of the varint before each value of the given byte lengths."""
    sizes = np.ones(len(lengths), dtype=np.int64)
    for bits in (7, 14, 21, 28, 35):
        over = lengths >= (1 << bits)
        if not over.any():
            break
        sizes += over
    return sizes


def _text(
    data: memoryview,
    pos: int,
    rows: int,
    lengths: np.ndarray,
    validity: pa.Buffer | None,
    name: str,
) -> tuple[pa.Array, int]:
    prefixes = _prefix_sizes(lengths)
    spans = prefixes + lengths.astype(np.int64)
    total = int(spans.sum())
    raw = np.frombuffer(_take(data, pos, total), dtype=np.uint8)
    keep = np.ones(total, dtype=bool)
    starts = np.cumsum(spans) - spans
    for extra in range(int(prefixes.max()) if rows else 0):
        keep[starts[prefixes > extra] + extra] = False
    values = raw[keep]
    offsets = np.zeros(rows + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if len(values) < 2**31:
        kind, offsets = pa.string(), offsets.astype(np.int32)
    else:
        kind = pa.large_string()
    array = pa.Array.from_buffers(
        kind, rows, [validity, pa.py_buffer(offsets), pa.py_buffer(values)]
    )
    return _utf8(array, name), pos + total


def _utf8(array: pa.Array, name: str) -> pa.Array:
    try:
        array.validate(full=True)  # the server does not promise UTF-8
    except pa.ArrowInvalid:
        raise ValueError(f"column {name!r} holds text that is not UTF-8") from None
    return array


def _fixed_text(
    data: memoryview, pos: int, rows: int, column: _Column, validity: pa.Buffer | None
) -> tuple[pa.Array, int]:
    """``FixedString(N)``: N bytes a value, padded with zero bytes, which stay (as in JSON)."""
    size = rows * column.width
    values = pa.py_buffer(bytes(_take(data, pos, size)))
    offsets = pa.py_buffer(np.arange(0, size + 1, column.width or 1, dtype=np.int64)[: rows + 1])
    array = pa.Array.from_buffers(pa.large_string(), rows, [validity, offsets, values])
    return _utf8(array, column.name).cast(pa.string()), pos + size


def _fixed(
    data: memoryview, pos: int, rows: int, column: _Column, validity: pa.Buffer | None
) -> tuple[pa.Array, int]:
    dtype = np.dtype(column.dtype)
    size = rows * dtype.itemsize
    values = np.frombuffer(_take(data, pos, size), dtype=dtype).copy()
    head = _parse(_unwrap(column.wire_type)[1])[0]
    if head == "Bool":
        bits = pa.py_buffer(np.packbits(values != 0, bitorder="little"))
        return pa.Array.from_buffers(pa.bool_(), rows, [validity, bits]), pos + size
    if head == "Date":
        days = values.astype(np.int32)
        return pa.Array.from_buffers(pa.date32(), rows, [validity, pa.py_buffer(days)]), pos + size
    if head == "DateTime":
        seconds = values.astype(np.int64)
        return pa.Array.from_buffers(
            pa.int64(), rows, [validity, pa.py_buffer(seconds)]
        ), pos + size
    kind = pa.from_numpy_dtype(dtype.newbyteorder("="))
    return pa.Array.from_buffers(kind, rows, [validity, pa.py_buffer(values)]), pos + size


def _decimal(
    data: memoryview, pos: int, rows: int, column: _Column, validity: pa.Buffer | None
) -> tuple[pa.Array, int]:
    size = rows * column.width
    raw = _take(data, pos, size)
    if column.width == 16:
        wide = np.frombuffer(raw, dtype="<i8").copy()
    else:
        narrow = np.frombuffer(raw, dtype=f"<i{column.width}").astype(np.int64)
        wide = np.empty(rows * 2, dtype=np.int64)
        wide[0::2] = narrow
        wide[1::2] = narrow >> 63  # sign extension into the high word
    # unscaled 128-bit integers: the layout of Arrow's decimal128
    array = pa.Array.from_buffers(pa.decimal128(38, 0), rows, [validity, pa.py_buffer(wide)])
    return array, pos + size


class NativeDecoder:
    """Decodes a streamed ``Native`` result of :func:`native_select` block by block.

    ``feed`` takes the body's bytes as they arrive and returns the tables of the blocks now
    complete, with the schema's column names and types (the length columns are dropped);
    a block is decoded once all its bytes are there.
    """

    def __init__(self, columns: Sequence[tuple[str, str]], schema: pa.Schema) -> None:
        plan = _plan(columns)
        if plan is None:
            raise ValueError("the result has columns the Native path does not read")
        self._plan = plan
        self._schema = schema
        self._buffer = bytearray()
        self._needed = 0

    @property
    def rest(self) -> bytes:
        """What is buffered and not yet decoded (an old server appends its error here)."""
        return bytes(self._buffer)

    def feed(self, chunk: bytes) -> list[pa.Table]:
        """Add bytes of the body; return the tables of the blocks now complete."""
        self.complete(chunk)
        return self.decode()

    def complete(self, chunk: bytes) -> bool:
        """Add bytes of the body; say whether a block may now be complete (then call
        :meth:`decode`, in a worker thread if you like: numpy releases the GIL)."""
        self._buffer += chunk
        return bool(self._buffer) and len(self._buffer) >= self._needed

    def decode(self) -> list[pa.Table]:
        """The tables of the blocks complete in the buffer."""
        tables = []
        while self._buffer and len(self._buffer) >= self._needed:
            view = memoryview(self._buffer)
            try:
                table, end = self._block(view)
            except _Short as short:
                self._needed = short.needed
                break
            finally:
                view.release()
            del self._buffer[:end]
            self._needed = 0
            if table.num_rows:
                tables.append(table)
        return tables

    def finish(self) -> list[pa.Table]:
        """The last tables; raises ValueError if the body ended inside a block."""
        self._needed = 0
        tables = self.feed(b"")
        if self._buffer:
            raise ValueError(f"the Native result ended inside a block ({len(self._buffer)} B)")
        return tables

    def _block(self, data: memoryview) -> tuple[pa.Table, int]:
        columns, pos = _varuint(data, 0)
        rows, pos = _varuint(data, pos)
        expected = sum(2 if column.kind == "text" else 1 for column in self._plan)
        if columns != expected:
            raise ValueError(f"a Native block of {columns} columns, expected {expected}")
        arrays: list[pa.Array] = []
        lengths = np.zeros(0, dtype=np.uint64)
        for column in self._plan:
            if column.kind == "text":
                pos = self._header(data, pos, None, "UInt64")
                lengths = np.frombuffer(_take(data, pos, rows * 8), dtype="<u8").copy()
                pos += rows * 8
            pos = self._header(data, pos, column.name, column.wire_type)
            validity = None
            if column.nullable:
                null_map = np.frombuffer(_take(data, pos, rows), dtype=np.uint8)
                validity = _validity(null_map)
                pos += rows
            if column.kind == "text":
                array, pos = _text(data, pos, rows, lengths, validity, column.name)
            elif column.kind == "fixed text":
                array, pos = _fixed_text(data, pos, rows, column, validity)
            elif column.kind == "decimal":
                array, pos = _decimal(data, pos, rows, column, validity)
            else:
                array, pos = _fixed(data, pos, rows, column, validity)
            arrays.append(array)
        return self._conform(arrays), pos

    @staticmethod
    def _header(data: memoryview, pos: int, name: str | None, wire_type: str) -> int:
        found_name, pos = _string(data, pos)
        found_type, pos = _string(data, pos)
        # compare the kinds only: a server may or may not spell out a DateTime's zone
        if (name is not None and found_name != name) or _kind(found_type) != _kind(wire_type):
            raise ValueError(
                f"a Native column {found_name} {found_type}, expected {name} {wire_type}"
            )
        return pos

    def _conform(self, arrays: list[pa.Array]) -> pa.Table:
        out = []
        for field, array in zip(self._schema, arrays, strict=True):
            if array.type.equals(field.type):
                out.append(array)
            elif pa.types.is_timestamp(field.type) or pa.types.is_decimal128(field.type):
                out.append(array.view(field.type))  # the same layout: epoch seconds, unscaled
            else:
                out.append(array.cast(field.type))
        return pa.Table.from_arrays(out, schema=self._schema)


# --------------------------------------------------------------------------- inserts


def _varuint_bytes(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _binary_string(text: str) -> bytes:
    data = text.encode()
    return _varuint_bytes(len(data)) + data


def _prefixed_text(column: pa.Array) -> bytes:
    """A text column as ``Native`` writes it: each value after its varint byte length (a NULL
    as the empty string)."""
    if pa.types.is_string(column.type) or pa.types.is_binary(column.type):
        width: type[np.signedinteger[Any]] = np.int32
    else:
        width = np.int64
    rows = len(column)
    buffers = column.buffers()
    offsets = np.frombuffer(buffers[1], dtype=width)[column.offset : column.offset + rows + 1]
    data = (
        np.frombuffer(buffers[2], dtype=np.uint8)
        if buffers[2] is not None
        else np.zeros(0, np.uint8)
    )
    lengths = np.diff(offsets).astype(np.int64)
    if column.null_count:
        nulls = _numpy(column.is_null()).view(bool)
        if lengths[nulls].any():  # a NULL may cover bytes: write it as ""
            data = data[int(offsets[0]) : int(offsets[-1])][np.repeat(~nulls, lengths)]
            lengths[nulls] = 0
        else:
            data = data[int(offsets[0]) : int(offsets[-1])]
    else:
        data = data[int(offsets[0]) : int(offsets[-1])]
    prefixes = _prefix_sizes(lengths)
    spans = prefixes + lengths
    out = np.empty(int(spans.sum()), dtype=np.uint8)
    starts = np.cumsum(spans) - spans
    keep = np.ones(len(out), dtype=bool)
    for index in range(int(prefixes.max()) if rows else 0):
        chosen = prefixes > index
        more = (prefixes[chosen] > index + 1).astype(np.int64) << 7
        out[starts[chosen] + index] = ((lengths[chosen] >> (7 * index)) & 0x7F) | more
        keep[starts[chosen] + index] = False
    out[keep] = data
    return out.tobytes()


# The numpy dtype of each primitive Arrow type (``DataType.to_pandas_dtype`` imports pandas).
_NUMPY_OF: dict[pa.DataType, np.dtype[Any]] = {
    kind: np.dtype(code)
    for kind, code in (
        (pa.uint8(), "u1"),
        (pa.uint16(), "u2"),
        (pa.uint32(), "u4"),
        (pa.uint64(), "u8"),
        (pa.int8(), "i1"),
        (pa.int16(), "i2"),
        (pa.int32(), "i4"),
        (pa.int64(), "i8"),
        (pa.float16(), "f2"),
        (pa.float32(), "f4"),
        (pa.float64(), "f8"),
    )
}
_ARROW_OF = {dtype: kind for kind, dtype in _NUMPY_OF.items()}


def _numpy(array: pa.Array) -> np.ndarray:
    """The values of a primitive ``array`` without NULLs as a numpy view of its buffer.

    ``Array.to_numpy`` would do the same, but it imports pandas on its first call (about
    55 MiB of memory); this does not. Booleans, packed a bit per value, become a byte each."""
    if pa.types.is_boolean(array.type):
        array = array.cast(pa.uint8())
    dtype = _NUMPY_OF[array.type]
    values = np.frombuffer(array.buffers()[1], dtype=dtype)
    return values[array.offset : array.offset + len(array)]


def _filled(array: pa.Array) -> np.ndarray:
    """The values of a primitive ``array`` as numpy, 0 (or False) where NULL."""
    values = _numpy(array)
    if array.null_count:
        values = values.copy()
        values[_numpy(array.is_null()).view(bool)] = 0
    return values


def _numbers(column: pa.Array, target: pa.DataType) -> pa.Array:
    """``column`` cast safely to ``target`` (raises ArrowInvalid on overflow or loss)."""
    kind = column.type
    if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)):
        raise pa.ArrowInvalid(f"not a number: {kind}")
    return column.cast(target)


def _encode_values(column: pa.Array, type_name: str) -> bytes | None:
    """The values of one column in the ``Native`` layout of ``type_name`` (not Nullable), or
    ``None`` where this encoder does not write that pair of types."""
    head, args = _parse(type_name)
    kind = column.type
    if head in ("String",):
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            return None
        return _prefixed_text(column)
    if head == "Date":
        if not pa.types.is_date32(kind):
            return None
        days = _filled(column.cast(pa.int32()))
        if len(days) and (days.min() < 0 or days.max() > 0xFFFF):
            return None
        return bytes(days.astype("<u2").tobytes())
    if head == "DateTime":
        if not pa.types.is_timestamp(kind):
            return None
        seconds = column.cast(pa.timestamp("s", kind.tz)).cast(pa.int64())
        values = _filled(seconds)
        if len(values) and (values.min() < 0 or values.max() > 0xFFFFFFFF):
            return None
        return bytes(values.astype("<u4").tobytes())
    width = _decimal_bytes(head, args)
    if width is not None:
        if not pa.types.is_decimal128(kind):
            return None
        scale = int(args.split(",")[-1])
        exact = column.cast(pa.decimal128(38, scale))
        unscaled = np.frombuffer(exact.buffers()[1], dtype="<i8")
        unscaled = unscaled[2 * exact.offset : 2 * (exact.offset + len(exact))]
        if exact.null_count:
            pairs = unscaled.reshape(-1, 2).copy()
            pairs[_numpy(exact.is_null()).view(bool)] = 0
            unscaled = pairs.ravel()
        if width == 16:
            return unscaled.tobytes()
        low, high = unscaled[0::2], unscaled[1::2]
        limit = 1 << (8 * width - 1)
        if len(low) and ((high != (low >> 63)).any() or low.min() < -limit or low.max() >= limit):
            return None
        return low.astype(f"<i{width}").tobytes()
    if head in _FIXED and head not in ("Date", "DateTime"):
        dtype = np.dtype(_FIXED[head])
        target = pa.bool_() if head == "Bool" else _ARROW_OF[dtype.newbyteorder("=")]
        return _filled(_numbers(column, target)).astype(dtype, copy=False).tobytes()
    return None


def encode_native(table: pa.Table, types: Sequence[tuple[str, str]]) -> bytes | None:
    """``table`` as one ``Native`` block (see :func:`encode_native_parts`), or ``None``."""
    parts = encode_native_parts(table, types)
    return None if parts is None else b"".join(parts)


def encode_native_parts(table: pa.Table, types: Sequence[tuple[str, str]]) -> list[bytes] | None:
    """``table`` as one ``Native`` block for an insert into columns of the given ClickHouse
    types (``(name, type)`` as the table declares them, in the table's column order), or ``None``
    when a column is of a pair of types this encoder does not write, holds NULL for a column
    that cannot, or does not fit (the caller then sends CSV, whose values the server checks)."""
    declared = dict(types)
    if set(table.column_names) - declared.keys():
        return None
    parts = [_varuint_bytes(table.num_columns), _varuint_bytes(table.num_rows)]
    for name, chunked in zip(table.column_names, table.columns, strict=True):
        column = chunked.combine_chunks() if chunked.num_chunks != 1 else chunked.chunk(0)
        nullable, inner = _unwrap(declared[name])
        if column.null_count and not nullable:
            return None
        try:
            values = _encode_values(column, inner)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None
        if values is None:
            return None
        parts += [_binary_string(name), _binary_string(declared[name])]
        if nullable:
            parts.append(_numpy(column.is_null()).tobytes())
        parts.append(values)
    return parts

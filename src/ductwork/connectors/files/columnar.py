"""Columnar files: Parquet and Arrow IPC streams, read and written by pyarrow in C++.

Writers follow the file connector's batch-writer contract (``encode(batch) -> bytes``,
``finish() -> bytes``): pyarrow writes into an in-memory sink that is drained after every call,
so the loader's temporary-file-and-rename, fsync and metrics apply to these formats unchanged.
A batch of records is converted once with ``pyarrow.Table.from_pylist`` against the file's
schema: the ``schema`` option, or the one inferred from the first batch.

Readers stream: a Parquet file a row group at a time (``ParquetFile.iter_batches``), an Arrow
IPC stream a record batch at a time, each in a worker thread, so memory holds about one row
group, however large the file.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from ..._exceptions import FileFormatError, LoadError
from ...core.arrow import concat
from ...core.types import Batch

__all__ = ["ArrowStreamWriter", "ParquetWriter", "as_table", "iter_arrow_stream", "iter_parquet"]


class _Drain(io.RawIOBase):
    """A write-only sink whose bytes are taken out after each pyarrow call."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        parts, self._parts = self._parts, []
        return b"".join(parts)


def as_table(batch: Batch, schema: pa.Schema | None, batches: int) -> pa.Table:
    """The batch as a table of ``schema`` (records converted; a table cast when it differs).

    Raises:
        LoadError: the batch does not fit the schema; the error names the column.
    """
    if isinstance(batch, pa.Table):
        if schema is None or batch.schema.equals(schema):
            return batch
        try:
            return batch.select(schema.names).cast(schema)
        except (KeyError, pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            raise LoadError(
                f"batch {batches}: does not fit the file's schema: {exc}", retryable=False
            ) from exc
    try:
        return pa.Table.from_pylist(batch, schema=schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
        column = _misfit_column(batch, schema)
        where = f" in column {column!r}" if column else ""
        raise LoadError(
            f"batch {batches}: a record does not fit the file's schema{where}: {exc}",
            retryable=False,
        ) from exc


def _misfit_column(batch: Batch, schema: pa.Schema | None) -> str | None:
    if schema is None or isinstance(batch, pa.Table):
        return None
    for field in schema:
        try:
            pa.array([record.get(field.name) for record in batch], type=field.type)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            return str(field.name)
    return None


def _widened(schema: pa.Schema) -> pa.Schema:
    """A schema inferred from a first batch of records, with room for the later ones: a decimal
    column gets the full precision of its kind (the first values say nothing of the widest)."""
    fields = []
    for field in schema:
        kind = field.type
        if pa.types.is_decimal128(kind):
            field = field.with_type(pa.decimal128(38, kind.scale))
        elif pa.types.is_decimal256(kind):
            field = field.with_type(pa.decimal256(76, kind.scale))
        fields.append(field)
    return pa.schema(fields, metadata=schema.metadata)


class _ColumnarWriter:
    def __init__(self, schema: pa.Schema | None) -> None:
        self.schema = schema
        self.batches = 0
        self._sink = _Drain()

    def _table(self, batch: Batch) -> pa.Table:
        self.batches += 1
        table = as_table(batch, self.schema, self.batches)
        if self.schema is None:
            if any(pa.types.is_null(field.type) for field in table.schema):
                names = [field.name for field in table.schema if pa.types.is_null(field.type)]
                raise LoadError(
                    f"batch {self.batches}: cannot infer the type of column(s) "
                    f"{', '.join(names)} (all null in the first batch); pass schema=",
                    retryable=False,
                )
            self.schema = _widened(table.schema)
            if not self.schema.equals(table.schema):
                table = table.cast(self.schema)
        return table


class ParquetWriter(_ColumnarWriter):
    """A Parquet file; a row group is written each time ``row_group_size`` rows are buffered."""

    def __init__(
        self,
        schema: pa.Schema | None,
        compression: str,
        row_group_size: int,
        compression_level: int | None = None,
    ) -> None:
        super().__init__(schema)
        self.compression = compression
        self.compression_level = compression_level
        self.row_group_size = row_group_size
        self._pending: list[pa.Table] = []
        self._rows = 0
        self._writer: pq.ParquetWriter | None = None

    def encode(self, batch: Batch) -> bytes:
        table = self._table(batch)
        self._pending.append(table)
        self._rows += table.num_rows
        if self._rows >= self.row_group_size:
            self._write_groups(final=False)
        return self._sink.take()

    def _write_groups(self, *, final: bool) -> None:
        """Write the buffered rows as row groups of ``row_group_size``; keep the rest buffered
        unless ``final``."""
        if not self._pending:
            return
        if self._writer is None:
            self._writer = self._open()
        table = concat(self._pending)
        size = self.row_group_size
        whole = table.num_rows if final else table.num_rows // size * size
        self._writer.write_table(table.slice(0, whole), row_group_size=size)
        rest = table.slice(whole)
        self._pending = [rest] if rest.num_rows else []
        self._rows = rest.num_rows

    def _open(self) -> pq.ParquetWriter:
        return pq.ParquetWriter(
            self._sink,
            self.schema,
            compression=self.compression,
            compression_level=self.compression_level,
        )

    def finish(self) -> bytes:
        self._write_groups(final=True)
        if self._writer is None:
            if self.schema is None:
                raise LoadError(
                    "no batch arrived and no schema was given: an empty Parquet file needs schema=",
                    retryable=False,
                )
            self._writer = self._open()
        self._writer.close()
        return self._sink.take()


class ArrowStreamWriter(_ColumnarWriter):
    """An Arrow IPC stream: one record batch message per batch."""

    def __init__(self, schema: pa.Schema | None) -> None:
        super().__init__(schema)
        self._writer: ipc.RecordBatchStreamWriter | None = None

    def encode(self, batch: Batch) -> bytes:
        table = self._table(batch)
        if self._writer is None:
            self._writer = ipc.new_stream(self._sink, self.schema)
        self._writer.write_table(table)
        return self._sink.take()

    def finish(self) -> bytes:
        if self._writer is None:
            if self.schema is None:
                raise LoadError(
                    "no batch arrived and no schema was given: an empty Arrow stream needs schema=",
                    retryable=False,
                )
            self._writer = ipc.new_stream(self._sink, self.schema)
        self._writer.close()
        return self._sink.take()


def iter_parquet(path: str, batch_size: int) -> Iterator[pa.Table]:
    """The rows of a Parquet file in tables of at most ``batch_size`` rows, row group by group."""
    try:
        # without pre-buffering: pyarrow keeps pre-buffered column chunks until the end
        file = pq.ParquetFile(path, pre_buffer=False)
    except (pa.ArrowInvalid, OSError) as exc:
        raise FileFormatError(f"not a Parquet file: {exc}", file=path) from exc
    with file:
        try:
            for batch in file.iter_batches(batch_size=batch_size):
                yield pa.Table.from_batches([batch])
        except (pa.ArrowInvalid, OSError) as exc:
            raise FileFormatError(f"corrupt Parquet data: {exc}", file=path) from exc


def iter_arrow_stream(path: str) -> Iterator[pa.Table]:
    """The record batches of an Arrow IPC stream file, one table each."""
    try:
        with pa.OSFile(path, "rb") as source, ipc.open_stream(source) as reader:
            for batch in reader:
                yield pa.Table.from_batches([batch])
    except pa.ArrowInvalid as exc:
        raise FileFormatError(f"not an Arrow IPC stream: {exc}", file=path) from exc

"""The file loader's sink: a temporary file beside the target, renamed into place on success.

The writer holds an exclusive ``flock`` on its temporary file while it writes. A writer that was
killed (SIGKILL, a lost machine) cannot remove its file, but its lock goes with it: the next sink
opened in that directory removes the temporary files nobody holds.
"""

from __future__ import annotations

import asyncio
import bz2
import contextlib
import csv
import fcntl
import gzip
import io
import os
import re
import secrets
import shutil
from contextlib import AbstractAsyncContextManager
from typing import IO, TYPE_CHECKING, Any, Literal

import aiofiles
import anyio
import anyio.lowlevel
import pyarrow as pa
import zstandard
from aiofiles.threadpool.binary import AsyncBufferedIOBase

from ..._exceptions import LoadError
from ...core.context import RunContext
from ...core.types import Batch, ExcInfo
from ..compression import Codec, Encoder, codec_for, make_encoder
from ..parsers import text_codec
from .columnar import ArrowStreamWriter, ParquetWriter
from .writers import CsvWriter, JsonArrayWriter, JsonlWriter, RecordWriter

if TYPE_CHECKING:
    from .config import FileLoaderConfig

__all__ = ["FileSink"]

_WHITESPACE = b" \t\r\n"
_TEMP_NAME = re.compile(r"\..+\.[0-9a-f]{12}\.tmp")


class _Prepared:
    """What the target looked like when the run started."""

    __slots__ = ("columns", "continuing", "has_items")

    def __init__(self) -> None:
        self.continuing = False  # appending to a non-empty file
        self.columns: tuple[str, ...] | None = None  # CSV header of that file
        self.has_items = False  # JSON: that array is not empty


class FileSink(AbstractAsyncContextManager["FileSink"]):
    """One run's output: ``async with`` it, ``await sink.write(batch)``; committed on a clean exit.

    A sink is used once: writing before entering or after leaving raises RuntimeError.
    """

    def __init__(self, config: FileLoaderConfig, path: str, ctx: RunContext) -> None:
        self.config = config
        self.path = path
        self.ctx = ctx
        self.codec: Codec = "none" if config.columnar else codec_for(config.compression, path)
        self._state: Literal["new", "open", "closed"] = "new"
        self._tmp: str | None = None
        self._lock: int | None = None  # the open descriptor holding the temp file's flock
        self._file: AsyncBufferedIOBase | None = None
        self._writer: RecordWriter | ParquetWriter | ArrowStreamWriter | None = None
        self._encoder: Encoder | None = None
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._compressing: asyncio.Future[bytes] | None = None
        self._written = 0
        self._records = 0

    def __repr__(self) -> str:
        return f"FileSink({self.path!r}, {self._state})"

    @property
    def temp_path(self) -> str | None:
        """The temporary file being written, while the sink is open."""
        return self._tmp

    # ------------------------------------------------------------------ open

    async def __aenter__(self) -> FileSink:
        if self._state != "new":
            raise RuntimeError("a file sink can be opened only once; call loader.open(ctx) again")
        self._state = "open"
        try:
            # Shielded: the thread goes on anyway, and what it opens must be known to close.
            with anyio.CancelScope(shield=True):
                prepared = await anyio.to_thread.run_sync(self._prepare)
                assert self._tmp is not None
                self._file = await aiofiles.open(self._tmp, "ab" if prepared.continuing else "wb")
            await anyio.lowlevel.checkpoint()
        except BaseException:
            self._state = "closed"
            await self._discard()
            raise
        self._writer = self._make_writer(prepared)
        if self.codec != "none":
            self._encoder = make_encoder(self.codec, self.config.compression_level)
        return self

    def _prepare(self) -> _Prepared:
        """Create the temporary file (a copy of the target when appending). Runs in a thread."""
        config = self.config
        directory = os.path.dirname(os.path.abspath(self.path))
        if config.make_dirs:
            os.makedirs(directory, exist_ok=True)
        _remove_dead_temp_files(directory)
        base = os.path.basename(self.path)
        while True:
            tmp = os.path.join(directory, f".{base}.{secrets.token_hex(6)}.tmp")
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
            except FileExistsError:
                continue
            fcntl.flock(fd, fcntl.LOCK_EX)
            if _same_file(fd, tmp):
                break
            os.close(fd)  # another sink took it for a dead writer's between create and lock
        self._tmp, self._lock = tmp, fd
        prepared = _Prepared()
        if not os.path.isfile(self.path):
            return prepared
        shutil.copymode(self.path, tmp)
        if config.mode != "append" or os.path.getsize(self.path) == 0:
            return prepared
        shutil.copyfile(self.path, tmp)
        prepared.continuing = True
        if config.format == "csv" and config.header and config.field_names is None:
            prepared.columns = self._existing_header()
        elif config.format == "json":
            prepared.has_items = self._reopen_json_array(tmp)
        return prepared

    def _open_existing_text(self) -> IO[str]:
        config = self.config
        encoding = "utf-8-sig" if text_codec(config.encoding).utf8 else config.encoding
        if self.codec == "gzip":
            return gzip.open(self.path, "rt", encoding=encoding, newline="")
        if self.codec == "bz2":
            return bz2.open(self.path, "rt", encoding=encoding, newline="")
        if self.codec == "zstd":
            return zstandard.open(self.path, "rt", encoding=encoding, newline="")  # type: ignore[no-any-return]
        return open(self.path, encoding=encoding, newline="")

    def _existing_header(self) -> tuple[str, ...] | None:
        """The header row of the CSV file being appended to."""
        config = self.config
        dialect: dict[str, Any] = {"delimiter": config.delimiter}
        if config.quotechar:
            dialect["quotechar"] = config.quotechar
        else:
            dialect["quoting"] = csv.QUOTE_NONE
        try:
            with self._open_existing_text() as text:
                for row in csv.reader(text, **dialect):
                    if row:
                        return tuple(row)
        except (OSError, EOFError, UnicodeDecodeError, csv.Error, zstandard.ZstdError) as exc:
            raise LoadError(
                f"cannot read the header of {self.path} to append to it: {exc}", retryable=False
            ) from exc
        return None

    def _reopen_json_array(self, tmp: str) -> bool:
        """Cut the closing ``]`` off the copied JSON array; return whether it has items."""
        if text_codec(self.config.encoding).transcode:
            raise LoadError(
                f"cannot append to {self.path}: continuing a JSON array needs an "
                f"ASCII-compatible encoding, not {self.config.encoding}",
                retryable=False,
            )
        with open(tmp, "r+b") as file:
            end = file.seek(0, io.SEEK_END)
            close, char = _last_non_space(file, end)
            if char != b"]":
                raise LoadError(
                    f"cannot append to {self.path}: it does not end with a JSON array",
                    retryable=False,
                )
            _, before = _last_non_space(file, close)
            file.truncate(close)
        return before != b"["

    def _make_writer(self, prepared: _Prepared) -> RecordWriter | ParquetWriter | ArrowStreamWriter:
        config = self.config
        if config.format == "parquet":
            return ParquetWriter(
                config.schema_,
                config.parquet_compression,
                config.row_group_size,
                config.compression_level,
            )
        if config.format == "arrow":
            return ArrowStreamWriter(config.schema_)
        if config.format == "jsonl":
            return JsonlWriter(config.encoding, prepared.continuing, config.json_default)
        if config.format == "json":
            return JsonArrayWriter(
                config.encoding, prepared.continuing, config.json_default, prepared.has_items
            )
        return CsvWriter(
            config.encoding,
            prepared.continuing,
            columns=config.field_names or prepared.columns,
            write_header=config.header and not prepared.continuing,
            delimiter=config.delimiter,
            quotechar=config.quotechar,
            line_terminator=config.line_terminator,
            extra_fields=config.extra_fields,
        )

    # ------------------------------------------------------------------ write

    async def write(self, batch: Batch) -> None:
        """Encode one batch; compress and write once ``flush_size`` bytes are buffered."""
        if self._state != "open" or self._writer is None:
            raise RuntimeError(f"the file sink for {self.path} is not open")
        if isinstance(batch, pa.Table) and self.config.format in ("jsonl", "json"):
            batch = batch.to_pylist()  # the documented slower path: pyarrow writes no JSON
        try:
            if self.config.columnar:
                # pyarrow encodes and compresses with the GIL released: off the event loop
                data = await anyio.to_thread.run_sync(self._writer.encode, batch)
            else:
                data = self._writer.encode(batch)
        except (pa.ArrowException, OverflowError) as exc:
            raise LoadError(
                f"batch {self._writer.batches} cannot be written to {self.path}: {exc}",
                retryable=False,
            ) from exc
        self._records += len(batch)
        if data:
            self._buffer.append(data)
            self._buffered += len(data)
            if self._buffered >= self.config.flush_size:
                await self._flush()

    async def _flush(self) -> None:
        """Hand the buffered output on: written directly, or compressed in a worker thread.

        One chunk is compressed at a time, and the sink does not wait for it: it goes on
        encoding the next batches on the event loop while zlib/bz2/zstd (which release the GIL)
        work in the thread, and collects the result at the next flush.
        """
        buffer = self._buffer
        data = buffer[0] if len(buffer) == 1 else b"".join(buffer)
        buffer.clear()
        self._buffered = 0
        if self._encoder is None:
            await self._write_raw(data)
            return
        await self._collect()
        loop = asyncio.get_running_loop()
        self._compressing = loop.run_in_executor(None, self._encoder.compress, data)

    async def _collect(self) -> None:
        """Wait for the chunk being compressed, if any, and write it."""
        if self._compressing is not None:
            future, self._compressing = self._compressing, None
            await self._write_raw(await future)

    async def _write_raw(self, data: bytes) -> None:
        if data:
            assert self._file is not None
            await self._file.write(data)
            self._written += len(data)

    # ------------------------------------------------------------------ close

    async def __aexit__(self, *exc_info: *ExcInfo) -> None:
        if self._state != "open":
            return
        self._state = "closed"
        if exc_info[0] is not None:
            await self._discard()
            return
        try:
            await self._commit()
        except BaseException:
            await self._discard()
            raise

    async def _commit(self) -> None:
        assert self._writer is not None
        assert self._file is not None
        assert self._tmp is not None
        if self.config.mode == "append" and self._records == 0:
            # Nothing to add: leave the target as it is.
            await self._discard()
            return
        tail = self._writer.finish()
        if tail:
            self._buffer.append(tail)
        if self._buffer:
            await self._flush()
        await self._collect()
        if self._encoder is not None:
            await self._write_raw(await anyio.to_thread.run_sync(self._encoder.flush))
        await self._file.flush()
        if self.config.fsync:
            await anyio.to_thread.run_sync(os.fsync, self._file.fileno())
        await self._file.close()
        self._file = None
        # A metadata operation, done here rather than in a thread so that no cancellation can
        # arrive between the rename and the bookkeeping.
        os.replace(self._tmp, self.path)
        self._tmp = None
        self._unlock()
        self.ctx.add_metric("bytes_written", self._written)

    async def _discard(self) -> None:
        """Close and delete the temporary file; shielded so that cancellation cannot skip it."""
        try:
            if self._compressing is not None:
                # Let the worker thread finish with the encoder before dropping everything.
                future, self._compressing = self._compressing, None
                with anyio.CancelScope(shield=True):
                    await asyncio.wait([future])
                if not future.cancelled():
                    future.exception()  # retrieved: the run's own error is the one to report
            if self._file is not None:
                file, self._file = self._file, None
                with anyio.CancelScope(shield=True):
                    await file.close()
        finally:
            tmp, self._tmp = self._tmp, None
            if tmp is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
            self._unlock()

    def _unlock(self) -> None:
        """Release the temporary file's lock (after its rename or removal)."""
        lock, self._lock = self._lock, None
        if lock is not None:
            os.close(lock)


def _same_file(fd: int, path: str) -> bool:
    """Whether ``path`` still names the file open as ``fd``."""
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)


def _remove_dead_temp_files(directory: str) -> None:
    """Remove the sinks' temporary files in ``directory`` that no live writer holds locked."""
    try:
        names = [name for name in os.listdir(directory) if _TEMP_NAME.fullmatch(name)]
    except OSError:
        return
    for name in names:
        path = os.path.join(directory, name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue  # gone already, or not ours to read
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if _same_file(fd, path):
                os.unlink(path)
        except OSError:
            pass  # locked: its writer is alive
        finally:
            os.close(fd)


def _last_non_space(file: IO[bytes], end: int) -> tuple[int, bytes]:
    """Position and value of the last byte before ``end`` that is not JSON whitespace."""
    position = end
    while position > 0:
        start = max(0, position - 4096)
        file.seek(start)
        block = file.read(position - start)
        stripped = block.rstrip(_WHITESPACE)
        if stripped:
            index = start + len(stripped) - 1
            return index, stripped[-1:]
        position = start
    return -1, b""

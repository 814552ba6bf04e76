"""The file extractor: reads a path or glob a block at a time, decompresses and parses it."""

from __future__ import annotations

import contextlib
import gc
import glob
import logging
import os
import re
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from typing import Any

import aiofiles
import anyio
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson

from ..._exceptions import ExtractError, FileFormatError
from ...core.arrow import Rebatcher, to_arrow
from ...core.config import validate_config
from ...core.context import RunContext
from ...core.stages import Extractor
from ...core.types import Batch, Record
from ..compression import Codec, CorruptDataError, codec_for, make_decoder
from ..parsers import (
    CsvParser,
    JsonArrayParser,
    JsonlParser,
    JsonSyntaxError,
    RecordParser,
    text_codec,
)
from .columnar import iter_arrow_stream, iter_parquet
from .config import COLUMNAR, FileExtractorConfig, FileFormat, fill_path

_GLOB_MAGIC = re.compile(r"[*?[]")
_SKIPS_LOGGED = 10
#: pyarrow block size for CSV and JSON Lines with batch_format="arrow", unless chunk_size is set.
ARROW_TEXT_BLOCK = 256 * 1024


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while one block is parsed.

    A block turns into thousands of records at once, and records holding lists or dicts are
    tracked by the collector. Left on, it would run every 700 new containers and, because the
    pipeline keeps a few thousand records in flight, rescan the survivors again and again: that
    cost 15-20% of the CPU time of a JSON Lines conversion. Paused, it runs once after the
    block. The records are acyclic, and the previous setting is restored.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class FileExtractor(Extractor):
    """Reads records from one file or a glob of files, a batch at a time.

    Made by :func:`create_file_extractor`. Each run reads the files afresh; the stage's metrics
    count ``files_read``, ``bytes_read`` (as stored) and ``records_skipped``.
    """

    def __init__(self, config: FileExtractorConfig) -> None:
        self.config = config
        self.name = config.name
        self.codec = text_codec(config.encoding)
        delimiter = config.delimiter
        if "delimiter" not in config.model_fields_set and config.file_path.lower().endswith(
            (".tsv", ".tsv.gz", ".tsv.bz2", ".tsv.zst")
        ):
            delimiter = "\t"
        self.delimiter = delimiter

    def __repr__(self) -> str:
        return f"FileExtractor({self.config.file_path!r}, {self.config.file_format!r})"

    async def extract(self, ctx: RunContext) -> AsyncIterator[Batch]:
        """Yield batches of ``batch_size`` records from every matching file, in order."""
        config = self.config
        if config.batch_format == "arrow" or config.file_format in COLUMNAR:
            async with contextlib.aclosing(self._extract_tables(ctx)) as tables:
                async for table in tables:
                    yield table if config.batch_format == "arrow" else table.to_pylist()
            return
        batch_size = config.batch_size
        pending: list[Record] = []
        for path in await self._paths(ctx):
            async with contextlib.aclosing(self._read_file(path, ctx)) as blocks:
                async for records in blocks:
                    if pending:
                        records = pending + records
                    count = len(records)
                    start = 0
                    while count - start >= batch_size:
                        yield records[start : start + batch_size]
                        start += batch_size
                    pending = records[start:] if start else records
            ctx.add_metric("files_read")
        if pending:
            yield pending

    async def _extract_tables(self, ctx: RunContext) -> AsyncGenerator[pa.Table]:
        """The columnar path: tables of at most ``batch_size`` rows, file by file."""
        for path in await self._paths(ctx):
            rebatcher = Rebatcher(self.config.batch_size)
            async with contextlib.aclosing(self._read_tables(path, ctx)) as tables:
                async for table in tables:
                    for batch in rebatcher.add(table):
                        yield batch
            for batch in rebatcher.finish():
                yield batch
            ctx.add_metric("files_read")
            ctx.add_metric("bytes_read", await anyio.to_thread.run_sync(os.path.getsize, path))

    async def _read_tables(self, path: str, ctx: RunContext) -> AsyncGenerator[pa.Table]:
        """The tables of one file as pyarrow reads them, each step in a worker thread."""
        config = self.config
        if config.file_format == "json":
            # pyarrow reads no JSON arrays: the incremental records parser, converted per block
            async with contextlib.aclosing(self._read_file(path, ctx)) as blocks:
                async for records in blocks:
                    yield to_arrow(records)
            return
        skipped = _SkipCounter(ctx, self.name) if config.error_handling == "skip" else None
        if config.file_format == "parquet":
            tables: Iterator[pa.Table] = iter_parquet(path, config.batch_size)
        elif config.file_format == "arrow":
            tables = iter_arrow_stream(path)
        else:
            tables = self._pyarrow_text(path, skipped)
        done = object()
        try:
            while True:
                table = await anyio.to_thread.run_sync(next, tables, done)
                if table is done:
                    break
                yield table
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise await self._locate_arrow_error(path, exc) from exc

    def _pyarrow_text(self, path: str, skipped: _SkipCounter | None) -> Iterator[pa.Table]:
        """CSV or JSON Lines read by pyarrow's streaming readers (blocking: run in a thread)."""
        config = self.config
        codec = self._codec(path)
        stream = pa.input_stream(path, compression=None if codec == "none" else codec)
        # pyarrow holds several blocks at once while it parses: 1 MiB blocks cost about 100 MiB
        # more than 256 KiB ones, for no gain in speed. A chunk_size given explicitly is kept.
        block = config.chunk_size if "chunk_size" in config.model_fields_set else ARROW_TEXT_BLOCK
        with stream:
            if config.file_format == "jsonl":
                reader = pajson.open_json(stream, read_options=pajson.ReadOptions(block_size=block))
            else:
                names = list(config.field_names) if config.field_names else None
                reader = pacsv.open_csv(
                    stream,
                    read_options=pacsv.ReadOptions(
                        block_size=block,
                        encoding=config.encoding,
                        column_names=names,
                        skip_rows=1 if names and config.header else 0,
                    ),
                    parse_options=pacsv.ParseOptions(
                        delimiter=self.delimiter,
                        quote_char=config.quotechar or False,
                        newlines_in_values=True,
                        invalid_row_handler=None if skipped is None else skipped.rows_of(path),
                    ),
                )
            for batch in reader:
                yield pa.Table.from_batches([batch])

    async def _locate_arrow_error(self, path: str, exc: Exception) -> FileFormatError:
        """pyarrow rejected a block: the records parser reads the file again to name the line."""
        if isinstance(exc, FileFormatError):
            return exc
        if self.config.file_format in ("csv", "jsonl"):
            try:
                async with contextlib.aclosing(self._read_file(path, None)) as blocks:
                    async for _ in blocks:
                        pass
            except FileFormatError as located:
                return located
        return FileFormatError(f"pyarrow cannot read it: {exc}", file=path)

    async def _paths(self, ctx: RunContext) -> list[str]:
        pattern = fill_path(
            self.config.file_path,
            ctx,
            ExtractError,
            glob=True,
            allow_subpaths=self.config.allow_subpaths,
        )

        def matches() -> list[str]:
            expanded = os.path.expanduser(pattern)
            if not _GLOB_MAGIC.search(expanded):
                if not os.path.isfile(expanded):
                    raise ExtractError(f"file not found: {expanded}", retryable=False)
                return [expanded]
            found = glob.glob(expanded, recursive=True)
            return sorted(path for path in found if os.path.isfile(path))

        paths = await anyio.to_thread.run_sync(matches)
        if not paths and not self.config.allow_no_match:
            raise ExtractError(f"no file matches {pattern!r}", retryable=False)
        ctx.logger.debug("%s: %s matched %d files", ctx.pipeline, self.name, len(paths))
        return paths

    def _parser(
        self, path: str, ctx: RunContext | None, *, locate_block: int | None = None
    ) -> RecordParser:
        config = self.config
        on_bad = None
        if ctx is not None and config.error_handling == "skip":
            on_bad = _SkipCounter(ctx, self.name)
        if config.file_format == "jsonl":
            return JsonlParser(path, self.codec, on_bad, config.max_record_size)
        if config.file_format == "csv":
            return CsvParser(
                path,
                self.codec,
                on_bad,
                config.max_record_size,
                delimiter=self.delimiter,
                quotechar=config.quotechar,
                header=config.header,
                field_names=config.field_names,
            )
        return JsonArrayParser(
            path,
            self.codec,
            on_bad,
            config.max_record_size,
            records_path=config.records_path,
            locate_block=locate_block,
        )

    def _codec(self, path: str) -> Codec:
        return codec_for(self.config.compression, path)

    async def _read_file(self, path: str, ctx: RunContext | None) -> AsyncGenerator[list[Record]]:
        """Yield the records of one file, a block at a time."""
        parser = self._parser(path, ctx)
        try:
            async with contextlib.aclosing(self._blocks(path, ctx)) as blocks:
                async for block in blocks:
                    with _gc_paused():
                        records = parser.feed(block)
                    if records:
                        yield records
            records = parser.finish()
        except JsonSyntaxError as exc:
            raise await self._locate_json_error(path, exc) from None
        if records:
            yield records

    async def _blocks(self, path: str, ctx: RunContext | None) -> AsyncGenerator[bytes]:
        """Yield the decompressed bytes of one file in blocks of at most ``chunk_size``."""
        chunk_size = self.config.chunk_size
        codec = self._codec(path)
        decoder = make_decoder(codec)
        # gzip and zstd inflate a MiB in a few milliseconds: cheaper inline than a round trip to
        # a thread. bz2 takes ten times as long, so it runs in a worker thread (it releases the
        # GIL) while the event loop serves the other stages.
        threaded = codec == "bz2"
        produced = 0
        lines = 0
        try:
            async with aiofiles.open(path, "rb") as file:
                while True:
                    raw = await file.read(chunk_size)
                    if not raw:
                        break
                    if ctx is not None:
                        ctx.add_metric("bytes_read", len(raw))
                    if codec == "none":
                        yield raw
                        continue
                    decoder.feed(raw)
                    while True:
                        if threaded:
                            block = await anyio.to_thread.run_sync(decoder.read, chunk_size)
                        else:
                            block = decoder.read(chunk_size)
                        if not block:
                            break
                        produced += len(block)
                        lines += block.count(b"\n")
                        yield block
            decoder.finish()
        except CorruptDataError as exc:
            raise FileFormatError(str(exc), file=path, line=lines + 1, offset=produced) from exc

    async def _locate_json_error(self, path: str, exc: JsonSyntaxError) -> FileFormatError:
        """Rescan the file, feeding the block that failed a line at a time, to name the line."""
        parser = self._parser(path, None, locate_block=exc.block)
        try:
            async with contextlib.aclosing(self._blocks(path, None)) as blocks:
                async for block in blocks:
                    parser.feed(block)
        except FileFormatError as located:
            return located
        except JsonSyntaxError:
            pass
        return FileFormatError(f"malformed JSON: {exc}", file=path, line=parser.line)


class _SkipCounter:
    """``error_handling="skip"``: count each bad record in the stage metrics, log the first few."""

    def __init__(self, ctx: RunContext, stage: str) -> None:
        self.ctx = ctx
        self.stage = stage
        self.count = 0

    def __call__(self, error: FileFormatError) -> None:
        self.count += 1
        self.ctx.add_metric("records_skipped")
        logger: logging.Logger = self.ctx.logger
        if self.count <= _SKIPS_LOGGED:
            logger.warning("%s: %s skipped a bad record: %s", self.ctx.pipeline, self.stage, error)
            if self.count == _SKIPS_LOGGED:
                logger.warning(
                    "%s: %s: further skipped records in this file are counted, not logged",
                    self.ctx.pipeline,
                    self.stage,
                )

    def rows_of(self, path: str) -> Any:
        """A pyarrow ``invalid_row_handler`` counting and skipping CSV rows of the wrong width."""

        def skip(row: Any) -> str:
            self(
                FileFormatError(
                    f"{row.actual_columns} fields, expected {row.expected_columns}: "
                    f"{row.text[:80]!r}",
                    file=path,
                    line=row.number,
                )
            )
            return "skip"

        return skip


def create_file_extractor(
    file_path: str | os.PathLike[str],
    file_format: FileFormat | None = None,
    encoding: str = "utf-8",
    **options: Any,
) -> FileExtractor:
    """Create an extractor reading records from files.

    Args:
        file_path: a path or a glob (matches are read in sorted order); may hold placeholders
            such as ``{date}`` filled from the run.
        file_format: ``csv``, ``jsonl`` or ``json``; inferred from the extension when omitted.
        encoding: the text encoding.
        **options: any other field of :class:`FileExtractorConfig` (``compression``,
            ``batch_size``, ``delimiter``, ``header``, ``field_names``, ``records_path``,
            ``error_handling``, ...), where every option is documented.

    Raises:
        ConfigError: an option is invalid; the error names it.

    Example:
        >>> import anyio, tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (folder / "people.csv").write_text("id,name\\n1,ada\\n2,grace\\n")
        >>> extractor = create_file_extractor(folder / "people.csv", batch_size=500)
        >>> async def first_batch():
        ...     async for batch in extractor.extract(RunContext()):
        ...         return batch
        >>> anyio.run(first_batch)
        [{'id': '1', 'name': 'ada'}, {'id': '2', 'name': 'grace'}]
    """
    config = validate_config(
        FileExtractorConfig,
        "file extractor",
        file_path=file_path,
        file_format=file_format,
        encoding=encoding,
        **options,
    )
    return FileExtractor(config)

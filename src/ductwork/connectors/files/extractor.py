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

from ..._exceptions import ExtractError, FileFormatError
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
from .config import FileExtractorConfig, FileFormat, fill_path

_GLOB_MAGIC = re.compile(r"[*?[]")
_SKIPS_LOGGED = 10


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

    def _parser(self, path: str, ctx: RunContext) -> RecordParser:
        config = self.config
        on_bad = _SkipCounter(ctx, self.name) if config.error_handling == "skip" else None
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
            path, self.codec, on_bad, config.max_record_size, records_path=config.records_path
        )

    def _codec(self, path: str) -> Codec:
        return codec_for(self.config.compression, path)

    async def _read_file(self, path: str, ctx: RunContext) -> AsyncGenerator[list[Record]]:
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
        config = self.config
        parser = JsonArrayParser(
            path,
            self.codec,
            None,
            config.max_record_size,
            records_path=config.records_path,
            locate_block=exc.block,
        )
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

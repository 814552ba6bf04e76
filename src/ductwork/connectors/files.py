"""File connector: a streaming file extractor and an atomic file loader.

Formats: ``csv``, ``jsonl`` (JSON Lines) and ``json`` (an array of objects, at the top level or
under a dotted ``records_path``). Compression: ``gzip`` and ``bz2`` (stdlib) and ``zstd``
(zstandard), chosen by extension or explicitly.

The extractor reads large chunks through aiofiles, decompresses them with a bounded output size,
and parses a block at a time (orjson for JSON Lines, the csv module for CSV, ijson for JSON
arrays), so memory stays flat however large the file, and the per-record work is the parser's own
where the input is clean.

The loader encodes each batch at once (orjson, csv), buffers up to ``flush_size`` bytes, and
compresses them in a worker thread while it encodes the next ones, writing through aiofiles to a
temporary file in the target directory. The temporary file is renamed over the target only when
the run succeeds; a failed or cancelled run deletes it and leaves the previous file untouched.

aiofiles runs on asyncio, so this connector needs the asyncio backend of anyio (the default).
"""

from __future__ import annotations

import contextlib
import gc
import glob
import logging
import os
import re
import string
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from typing import Annotated, Any, Literal, cast

import aiofiles
import anyio
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from .._exceptions import ExtractError, FileFormatError, LoadError, PipelineError
from ..core.context import RunContext
from ..core.pipeline import validate_config
from ..core.stages import Extractor, Loader
from ..core.types import Batch, Record
from . import _file_output
from ._compression import (
    LEVELS,
    Codec,
    CorruptDataError,
    codec_for,
    infer_compression,
    make_decoder,
    strip_compression_suffix,
)
from ._file_parsers import (
    CsvParser,
    JsonArrayParser,
    JsonlParser,
    JsonSyntaxError,
    RecordParser,
    text_codec,
)

__all__ = [
    "FileExtractor",
    "FileExtractorConfig",
    "FileLoader",
    "FileLoaderConfig",
    "create_file_extractor",
    "create_file_loader",
]

FileFormat = Literal["csv", "jsonl", "json"]
CompressionSetting = Literal["infer", "none", "gzip", "bz2", "zstd"]

_FORMAT_EXTENSIONS: dict[str, FileFormat] = {
    ".csv": "csv",
    ".tsv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
}
_GLOB_MAGIC = re.compile(r"[*?[]")
_MIB = 1024 * 1024
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


def _infer_format(path: str) -> FileFormat | None:
    lower = strip_compression_suffix(path).lower()
    for ext, fmt in _FORMAT_EXTENSIONS.items():
        if lower.endswith(ext):
            return fmt
    return None


def _codec_of(info: ValidationInfo) -> Codec | None:
    """The compression a loader config being validated ends up with (``None``: not known yet)."""
    setting = info.data.get("compression")
    path = info.data.get("file_path")
    if setting == "infer":
        return infer_compression(path) if isinstance(path, str) else None
    return cast(Codec | None, setting)


def _format_or_inferred(value: FileFormat | None, info: ValidationInfo) -> FileFormat:
    """The given format, or the one the file name implies (a validator shared by both configs)."""
    if value is not None:
        return value
    path = info.data.get("file_path")
    inferred = _infer_format(path) if isinstance(path, str) else None
    if inferred is None:
        raise ValueError(
            "cannot infer the format from the file name; pass 'csv', 'jsonl' or 'json'"
        )
    return inferred


def _template_fields(path: str) -> list[str]:
    """The placeholder names in ``path`` (raises ValueError for malformed braces)."""
    return [name for _, name, _, _ in string.Formatter().parse(path) if name is not None]


def fill_path(path: str, ctx: RunContext, what: type[PipelineError]) -> str:
    """Fill ``{placeholders}`` in ``path`` from the run (see ``RunContext.template_values``)."""
    if "{" not in path and "}" not in path:
        return path
    values = ctx.template_values()
    try:
        return path.format_map(values)
    except (KeyError, AttributeError, IndexError, ValueError) as exc:
        known = ", ".join(sorted(key for key in values if isinstance(key, str)))
        raise what(
            f"cannot fill the placeholders of file_path {path!r}: {type(exc).__name__}: {exc} "
            f"(known: {known})",
            retryable=False,
        ) from exc


class _PathOptions(BaseModel):
    """Options shared by the extractor and the loader."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file_path: Annotated[str, Field(min_length=1)]
    encoding: str = "utf-8"
    delimiter: Annotated[str, Field(min_length=1, max_length=1)] = ","
    quotechar: Annotated[str, Field(min_length=1, max_length=1)] | None = '"'
    field_names: tuple[str, ...] | None = None

    @field_validator("file_path", mode="before")
    @classmethod
    def _fspath(cls, value: Any) -> Any:
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        return value

    @field_validator("file_path")
    @classmethod
    def _check_placeholders(cls, value: str) -> str:
        try:
            _template_fields(value)
        except ValueError as exc:
            raise ValueError(f"malformed placeholder: {exc}") from None
        return value

    @field_validator("encoding")
    @classmethod
    def _check_encoding(cls, value: str) -> str:
        try:
            text_codec(value)
        except LookupError:
            raise ValueError(f"unknown encoding {value!r}") from None
        return value

    @field_validator("delimiter")
    @classmethod
    def _check_delimiter(cls, value: str) -> str:
        if value in "\r\n":
            raise ValueError("a line break cannot be the delimiter")
        return value

    @field_validator("quotechar")
    @classmethod
    def _check_quotechar(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and (value in "\r\n" or value == info.data.get("delimiter")):
            raise ValueError("the quote character must differ from the delimiter and line breaks")
        return value

    @field_validator("field_names")
    @classmethod
    def _check_field_names(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None:
            if not value:
                raise ValueError("must name at least one field")
            duplicates = sorted({name for name in value if value.count(name) > 1})
            if duplicates:
                raise ValueError(f"duplicate names: {', '.join(duplicates)}")
        return value


class FileExtractorConfig(_PathOptions):
    """Options of a :class:`FileExtractor`.

    Attributes:
        file_path: a path, or a glob (``data/*.jsonl.gz``, ``**`` recurses) read in sorted order.
            May hold ``{placeholders}`` filled from the run: ``{date}``, ``{pipeline}``,
            ``{run_id}``, ``{window.start:%Y%m%d}``, run parameters by name.
        file_format: ``csv``, ``jsonl`` or ``json``; ``None`` infers it from the extension
            (``.csv``/``.tsv``, ``.jsonl``/``.ndjson``, ``.json``).
        encoding: text encoding; a UTF-8 byte-order mark is always dropped.
        compression: ``infer`` (by extension: ``.gz``, ``.bz2``, ``.zst``), ``none``, ``gzip``,
            ``bz2`` or ``zstd``.
        batch_size: records per batch.
        chunk_size: bytes read (and decompressed) at a time.
        delimiter: CSV field delimiter (``\\t`` for TSV; inferred for ``.tsv`` files).
        quotechar: CSV quote character, or ``None`` for no quoting.
        header: CSV: the first row names the fields.
        field_names: CSV: the field names; with ``header=True`` they replace the header's names.
        records_path: JSON: dotted path of the array inside the top-level object
            (``"data.items"``); ``None`` for a top-level array. A path that is not in the
            document, or does not hold an array, raises FileFormatError.
        on_error: ``raise`` stops at the first malformed record; ``skip`` drops malformed records
            (a bad JSON line, a CSV row of the wrong width, a line that does not decode, an array
            item that is not an object), counts them in the stage's ``records_skipped`` metric and
            logs the first few. Corrupt compressed data and JSON syntax errors always raise.
        allow_no_match: a glob that matches no file yields no records instead of failing.
        max_record_size: the longest line or CSV record accepted, in bytes.
        name: the stage name.
    """

    file_format: FileFormat | None = Field(default=None, validate_default=True)
    compression: CompressionSetting = "infer"
    batch_size: Annotated[int, Field(ge=1, le=10_000_000, strict=True)] = 1000
    chunk_size: Annotated[int, Field(ge=1024, le=1024 * _MIB, strict=True)] = _MIB
    header: bool = True
    records_path: str | None = Field(default=None, validate_default=True)
    on_error: Literal["raise", "skip"] = "raise"
    allow_no_match: bool = False
    max_record_size: Annotated[int, Field(ge=1024, strict=True)] = 64 * _MIB
    name: Annotated[str, Field(min_length=1)] = "read_files"

    @field_validator("file_format")
    @classmethod
    def _infer(cls, value: FileFormat | None, info: ValidationInfo) -> FileFormat:
        return _format_or_inferred(value, info)

    @field_validator("records_path")
    @classmethod
    def _check_records_path(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            if info.data.get("file_format") not in (None, "json"):
                raise ValueError("applies to the json format only")
            if not value or any(not part for part in value.split(".")):
                raise ValueError(f"expected a dotted path such as 'data.items', got {value!r}")
        return value

    @field_validator("header")
    @classmethod
    def _check_header(cls, value: bool, info: ValidationInfo) -> bool:
        if not value and info.data.get("file_format") == "csv" and not info.data.get("field_names"):
            raise ValueError("a CSV file without a header row needs field_names")
        return value


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
        pattern = fill_path(self.config.file_path, ctx, ExtractError)

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
        on_bad = _SkipCounter(ctx, self.name) if config.on_error == "skip" else None
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
    """``on_error="skip"``: count each bad record in the stage metrics, log the first few."""

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
            ``batch_size``, ``delimiter``, ``quotechar``, ``header``, ``field_names``,
            ``records_path``, ``on_error``, ...).

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
    config: FileExtractorConfig = _validate(
        FileExtractorConfig,
        "file extractor",
        file_path=file_path,
        file_format=file_format,
        encoding=encoding,
        **options,
    )
    return FileExtractor(config)


# --------------------------------------------------------------------------- loader


class FileLoaderConfig(_PathOptions):
    """Options of a :class:`FileLoader`.

    Attributes:
        file_path: the output path; may hold ``{placeholders}`` filled from the run
            (``{pipeline}``, ``{run_id}``, ``{date}``, ``{window.start:%Y%m%d}``, parameters).
        format: ``csv``, ``jsonl`` or ``json``; ``None`` infers it from the extension.
        compression: ``infer`` (by extension), ``none``, ``gzip``, ``bz2`` or ``zstd``.
        compression_level: the codec's level (gzip 0-9, default 6; bz2 1-9, default 9; zstd
            -7-22, default 3).
        mode: ``overwrite`` replaces the file; ``append`` adds to it (a CSV header is written
            only to a new file, a JSON array is continued, a compressed file gets a new member).
            Either way the new content is built in a temporary file and renamed into place when
            the run succeeds; appending copies the existing file first.
        encoding: text encoding of the output.
        delimiter, quotechar: CSV dialect.
        header: CSV: write a header row (to a new file).
        field_names: CSV: the columns, in order; default: those of the file being appended to,
            else the first record's keys.
        extra_fields: CSV: ``raise`` on a record with a key that is not a column, or ``ignore``.
        line_terminator: CSV line terminator.
        json_default: JSON: called for values orjson cannot serialise (e.g. ``str`` for Decimal).
        flush_size: bytes buffered before they are compressed and written. Compression runs
            in a worker thread; larger pieces mean fewer hand-overs of the GIL between it and
            the event loop (each can wait for the interpreter's switch interval).
        make_dirs: create missing parent directories.
        fsync: flush the file to disk before renaming it into place.
        name: the stage name.
    """

    format: FileFormat | None = Field(default=None, validate_default=True)
    compression: CompressionSetting = "infer"
    compression_level: Annotated[int, Field(strict=True)] | None = Field(
        default=None, validate_default=True
    )
    mode: Literal["overwrite", "append"] = Field(default="overwrite", validate_default=True)
    header: bool = True
    extra_fields: Literal["raise", "ignore"] = "raise"
    line_terminator: Literal["\n", "\r\n"] = "\n"
    json_default: Callable[[Any], Any] | None = None
    flush_size: Annotated[int, Field(ge=1, le=1024 * _MIB, strict=True)] = 4 * _MIB
    make_dirs: bool = True
    fsync: bool = True
    name: Annotated[str, Field(min_length=1)] = "write_file"

    @field_validator("format")
    @classmethod
    def _infer(cls, value: FileFormat | None, info: ValidationInfo) -> FileFormat:
        return _format_or_inferred(value, info)

    @field_validator("compression_level")
    @classmethod
    def _check_level(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is None:
            return None
        codec = _codec_of(info)
        if codec == "none" or codec is None:
            raise ValueError("there is no compression to set a level for")
        lowest, highest, _ = LEVELS[codec]
        if not lowest <= value <= highest:
            raise ValueError(f"{codec} levels are {lowest} to {highest}, got {value}")
        return value

    @field_validator("mode")
    @classmethod
    def _check_mode(cls, value: str, info: ValidationInfo) -> str:
        if value == "append" and info.data.get("format") == "json" and _codec_of(info) != "none":
            raise ValueError("a compressed JSON array cannot be appended to; use the jsonl format")
        return value

    @property
    def codec(self) -> Codec:
        """The compression in effect for the (unfilled) path."""
        return codec_for(self.compression, self.file_path)


class FileLoader(Loader):
    """Writes records to a file, atomically.

    Made by :func:`create_file_loader`. ``open(ctx)`` returns an async context manager yielding a
    sink; the sink writes to a temporary file beside the target, renamed into place when the block
    exits cleanly and deleted when it exits with an exception (including cancellation). The
    stage's metrics count ``bytes_written`` (as stored).
    """

    def __init__(self, config: FileLoaderConfig) -> None:
        self.config = config
        self.name = config.name

    def __repr__(self) -> str:
        return f"FileLoader({self.config.file_path!r}, {self.config.format!r})"

    def open(self, ctx: RunContext) -> _file_output.FileSink:
        """Open the loader for one run (an async context manager yielding the sink)."""
        path = os.path.expanduser(fill_path(self.config.file_path, ctx, LoadError))
        return _file_output.FileSink(self.config, path, ctx)


def create_file_loader(
    file_path: str | os.PathLike[str],
    format: FileFormat | None = None,
    compression: CompressionSetting = "infer",
    **options: Any,
) -> FileLoader:
    """Create a loader writing records to a file, atomically.

    Args:
        file_path: the output path; may hold placeholders such as ``{pipeline}``, ``{run_id}``
            and ``{date}`` filled from the run.
        format: ``csv``, ``jsonl`` or ``json``; inferred from the extension when omitted.
        compression: ``infer`` (from the extension), ``none``, ``gzip``, ``bz2`` or ``zstd``.
        **options: any other field of :class:`FileLoaderConfig` (``mode``, ``encoding``,
            ``field_names``, ``compression_level``, ...).

    Raises:
        ConfigError: an option is invalid; the error names it.

    Example:
        >>> import anyio, gzip, tempfile, pathlib
        >>> from ductwork import create_el_pipeline
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> async def extract():
        ...     yield [{"id": 1}, {"id": 2}]
        >>> loader = create_file_loader(folder / "{pipeline}-{date}.jsonl.gz")
        >>> pipeline = create_el_pipeline(extract, loader, name="ids", logging=False)
        >>> result = anyio.run(pipeline.run)
        >>> [path.name.startswith("ids-") for path in folder.iterdir()]
        [True]
        >>> gzip.decompress(next(folder.iterdir()).read_bytes())
        b'{"id":1}\\n{"id":2}\\n'
    """
    config: FileLoaderConfig = _validate(
        FileLoaderConfig,
        "file loader",
        file_path=file_path,
        format=format,
        compression=compression,
        **options,
    )
    return FileLoader(config)


def _validate(model: type[BaseModel], what: str, **values: Any) -> Any:
    if isinstance(values.get("field_names"), list):
        values["field_names"] = tuple(values["field_names"])
    return validate_config(model, what, **values)

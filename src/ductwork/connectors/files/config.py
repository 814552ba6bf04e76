"""Options of the file extractor and loader: one pydantic model each, one field per option."""

from __future__ import annotations

import os
import string
from collections.abc import Callable
from typing import Annotated, Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from ..._exceptions import PipelineError
from ...core.config import validate_config
from ...core.context import RunContext
from .compression import LEVELS, Codec, codec_for, infer_compression, strip_compression_suffix
from .parsers import text_codec

FileFormat = Literal["csv", "jsonl", "json"]
CompressionSetting = Literal["infer", "none", "gzip", "bz2", "zstd"]

_FORMAT_EXTENSIONS: dict[str, FileFormat] = {
    ".csv": "csv",
    ".tsv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
}
_MIB = 1024 * 1024


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


def _validate(model: type[BaseModel], what: str, **values: Any) -> Any:
    if isinstance(values.get("field_names"), list):
        values["field_names"] = tuple(values["field_names"])
    return validate_config(model, what, **values)

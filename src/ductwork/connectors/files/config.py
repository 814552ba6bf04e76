"""Options of the file extractor and loader: one pydantic model each, one field per option."""

from __future__ import annotations

import os
import string
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal, cast

import pyarrow as pa
from pydantic import ConfigDict, Field, ValidationInfo, field_validator, model_validator

from ..._exceptions import ConfigError, PipelineError
from ...core.config import ErrorPolicy, Options, check_value, warn_deprecated
from ...core.context import RunContext
from ...core.templates import check_path_value, fill_confined
from ..compression import LEVELS, Codec, codec_for, infer_compression, strip_compression_suffix
from ..parsers import text_codec

FileFormat = Literal["csv", "jsonl", "json", "parquet", "arrow"]
CompressionSetting = Literal["infer", "none", "gzip", "bz2", "zstd", "snappy"]
BatchFormat = Literal["records", "arrow"]
COLUMNAR: frozenset[str] = frozenset({"parquet", "arrow"})
"""The formats whose files carry their own schema and compression (Parquet, Arrow IPC)."""

_FORMAT_EXTENSIONS: dict[str, FileFormat] = {
    ".csv": "csv",
    ".tsv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".arrow": "arrow",
    ".arrows": "arrow",
    ".ipc": "arrow",
}
_MIB = 1024 * 1024
_RUN_VALUES = frozenset({"pipeline", "run_id", "window", "date"})


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
    """The given format, or the one the file name implies."""
    if value is not None:
        return value
    path = info.data.get("file_path")
    inferred = _infer_format(path) if isinstance(path, str) else None
    if inferred is None:
        raise ValueError(
            "cannot infer the format from the file name; pass 'csv', 'jsonl', 'json', "
            "'parquet' or 'arrow'"
        )
    return inferred


def _template_fields(path: str) -> list[str]:
    """The placeholder names in ``path`` (raises ValueError for malformed braces)."""
    return [name for _, name, _, _ in string.Formatter().parse(path) if name is not None]


def fill_path(
    path: str,
    ctx: RunContext,
    what: type[PipelineError],
    *,
    glob: bool = False,
    allow_subpaths: bool = False,
) -> str:
    """Fill ``{placeholders}`` in ``path`` from the run (see ``RunContext.template_values``).

    Run parameters are confined to their placeholder: a value holding a path separator (unless
    ``allow_subpaths``), ``..``, or, in a glob, glob characters fails the run, naming the
    parameter.
    """
    if "{" not in path and "}" not in path:
        return path
    values = ctx.template_values()
    params = ctx.params

    def check(name: str, text: str, before: str) -> str:
        if name == "params" or (name in params and name not in _RUN_VALUES):
            return check_path_value(name, text, glob=glob, subpaths=allow_subpaths)
        return text

    try:
        return fill_confined(path, values, check)
    except (KeyError, AttributeError, IndexError, ValueError) as exc:
        if isinstance(exc, ValueError) and len(exc.args) == 2:
            name, problem = exc.args
            raise what(
                f"run parameter {name!r} cannot fill file_path {path!r}: {problem}",
                retryable=False,
            ) from ConfigError.for_field(f"params.{name}", problem)
        known = ", ".join(sorted(key for key in values if isinstance(key, str)))
        raise what(
            f"cannot fill the placeholders of file_path {path!r}: {type(exc).__name__}: {exc} "
            f"(known: {known})",
            retryable=False,
        ) from exc


class _PathOptions(Options):
    """Options shared by the extractor and the loader."""

    file_path: Annotated[str, Field(min_length=1)]
    """The file to read or write. May hold ``{placeholders}`` filled from the run: ``{date}``
    (the start of the run's window, or today), ``{pipeline}``, ``{run_id}``,
    ``{window.start:%Y%m%d}`` and run parameters by name. The extractor also takes a glob
    (``data/*.jsonl.gz``; ``**`` recurses), whose matches it reads in sorted order. A run
    parameter fills one path component: a value holding ``/``, ``\\``, ``..`` (or, for the
    extractor, ``*?[]``) fails the run with an error naming it."""
    allow_subpaths: bool = False
    """Let run parameters fill relative sub-paths (``region=eu/west``): ``/`` is then allowed in
    their values, still never ``..``, a leading ``/`` or ``~``, so the path stays under the
    template's directory."""
    encoding: str = "utf-8"
    """The text encoding; a UTF-8 byte-order mark is dropped on reading."""
    delimiter: Annotated[str, Field(min_length=1, max_length=1)] = ","
    """CSV: the field delimiter (``\\t`` for TSV; the extractor infers it for ``.tsv`` files)."""
    quotechar: Annotated[str, Field(min_length=1, max_length=1)] | None = '"'
    """CSV: the quote character, or ``None`` for no quoting."""
    field_names: tuple[str, ...] | None = None
    """CSV: the field names, in order. Reading, they replace the header's names
    (``header=True``) or name the columns of a file without one. Writing, they are the
    columns; by default those of the file being appended to, else the first record's keys."""

    @field_validator("file_path", mode="before")
    @classmethod
    def _fspath(cls, value: Any) -> Any:
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        return value

    @field_validator("file_path")
    @classmethod
    def _check_placeholders(cls, value: str) -> str:
        return check_value(_template_fields, value, ValueError, "malformed placeholder: {error}")

    @field_validator("file_format", "format", check_fields=False)
    @classmethod
    def _infer(cls, value: FileFormat | None, info: ValidationInfo) -> FileFormat:
        return _format_or_inferred(value, info)

    @field_validator("encoding")
    @classmethod
    def _check_encoding(cls, value: str) -> str:
        return check_value(text_codec, value, LookupError, "unknown encoding {value!r}")

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
    """Options of a :class:`FileExtractor` (see :func:`create_file_extractor`)."""

    file_format: FileFormat | None = Field(default=None, validate_default=True)
    """``csv``, ``jsonl``, ``json``, ``parquet`` or ``arrow`` (an Arrow IPC stream); ``None``
    infers it from the extension (``.csv``/``.tsv``, ``.jsonl``/``.ndjson``, ``.json``,
    ``.parquet``/``.pq``, ``.arrow``/``.arrows``/``.ipc``)."""
    compression: CompressionSetting = "infer"
    """``infer`` (by extension: ``.gz``, ``.bz2``, ``.zst``), ``none``, ``gzip``, ``bz2`` or
    ``zstd``. Parquet and Arrow files compress inside and take no file compression."""
    batch_format: BatchFormat = "records"
    """``records`` yields lists of dicts; ``arrow`` yields ``pyarrow.Table`` batches with no
    Python object made per row: CSV and JSON Lines are parsed by ``pyarrow.csv`` and
    ``pyarrow.json`` (types inferred from the first block, as pyarrow does: see
    ``chunk_size``), Parquet a row group at a time, Arrow IPC a record batch at a time. A
    ``json`` array is parsed by the records parser and converted per batch. Parquet and Arrow
    files read as records are converted per batch."""
    batch_size: Annotated[int, Field(ge=1, le=10_000_000, strict=True)] = 1000
    """Records per batch (with ``batch_format="arrow"``: rows per table, at most)."""
    chunk_size: Annotated[int, Field(ge=1024, le=1024 * _MIB, strict=True)] = _MIB
    """Bytes read (and decompressed) at a time. With ``batch_format="arrow"``, CSV and JSON Lines
    are parsed by pyarrow in blocks of 256 KiB unless ``chunk_size`` is given (larger blocks take
    more memory: pyarrow holds several at once); column types are inferred from the first
    block."""
    header: bool = True
    """CSV: the first row names the fields."""
    records_path: str | None = Field(default=None, validate_default=True)
    """JSON: the dotted path of the array inside the top-level object (``"data.items"``);
    ``None`` for a top-level array. A path that is not in the document, or does not hold an
    array, raises FileFormatError."""
    error_handling: ErrorPolicy = "raise"
    """What a malformed record does (a bad JSON line, a CSV row of the wrong width, a line that
    does not decode, an array item that is not an object): ``"raise"`` (or ``True``) fails the
    run with a FileFormatError naming the file and line; ``"skip"`` (or ``False``) drops it,
    counts it in the stage's ``records_skipped`` metric and logs the first few (see
    :data:`~ductwork.core.types.ErrorHandling`). Corrupt compressed data and JSON syntax errors
    always raise. ``on_error``, its former name, is still accepted, with a DeprecationWarning."""
    allow_no_match: bool = False
    """A glob that matches no file yields no records instead of failing."""
    max_record_size: Annotated[int, Field(ge=1024, strict=True)] = 64 * _MIB
    """The longest line, CSV record or JSON array item accepted, in bytes."""
    name: Annotated[str, Field(min_length=1)] = "read_files"
    """The stage name."""

    @model_validator(mode="before")
    @classmethod
    def _on_error_is_error_handling(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "on_error" in data:
            warn_deprecated("on_error is deprecated; use error_handling")
            values = dict(data)
            value = values.pop("on_error")
            if "error_handling" in values:
                raise ValueError("on_error is the former name of error_handling: give one")
            values["error_handling"] = value
            return values
        return data

    @field_validator("compression")
    @classmethod
    def _check_compression(cls, value: str, info: ValidationInfo) -> str:
        fmt = info.data.get("file_format")
        if fmt in COLUMNAR and value not in ("infer", "none"):
            raise ValueError(f"a {fmt} file compresses inside; leave compression as 'infer'")
        if value == "snappy":
            raise ValueError("snappy applies to Parquet pages only, not to files read")
        return value

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
    """Options of a :class:`FileLoader` (see :func:`create_file_loader`)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    format: FileFormat | None = Field(default=None, validate_default=True)
    """``csv``, ``jsonl``, ``json``, ``parquet`` or ``arrow`` (an Arrow IPC stream); ``None``
    infers it from the extension. Every format takes batches of both kinds: records and
    ``pyarrow.Table``. Arrow batches are written by pyarrow in C++ to CSV, Parquet and Arrow;
    to JSON Lines and JSON they are converted to records first (the slower path)."""
    compression: CompressionSetting = "infer"
    """``infer`` (by extension), ``none``, ``gzip``, ``bz2`` or ``zstd``. For Parquet, the
    codec of its pages: ``zstd`` (what ``infer`` picks), ``snappy``, ``gzip`` or ``none``."""
    compression_level: Annotated[int, Field(strict=True)] | None = Field(
        default=None, validate_default=True
    )
    """The codec's level (gzip 0-9, default 6; bz2 1-9, default 9; zstd -7-22, default 3)."""
    row_group_size: Annotated[int, Field(ge=1, strict=True)] = 131_072
    """Parquet: rows buffered before a row group is written (one row group per flush); memory
    holds about this many rows."""
    schema_: Any = Field(default=None, alias="schema")
    """Parquet and Arrow: the ``pyarrow.Schema`` of the file. By default the schema of the
    first batch; records cannot always say it (a column that is null throughout the first
    batch has no type), so pass it for records. A later batch that does not fit is a LoadError
    naming the column."""
    mode: Literal["overwrite", "append"] = Field(default="overwrite", validate_default=True)
    """``overwrite`` replaces the file; ``append`` adds to it (a CSV header is written only to a
    new file, a JSON array is continued, a compressed file gets a new member). Either way the
    new content is built in a temporary file and renamed into place when the run succeeds;
    appending copies the existing file first."""
    header: bool = True
    """CSV: write a header row (to a new file)."""
    extra_fields: Literal["raise", "ignore"] = "raise"
    """CSV: ``raise`` on a record with a key that is not a column, or ``ignore`` the key."""
    line_terminator: Literal["\n", "\r\n"] = "\n"
    """CSV: the line terminator."""
    json_default: Callable[[Any], Any] | None = None
    """JSON: called for values orjson cannot serialise (e.g. ``str`` for Decimal)."""
    flush_size: Annotated[int, Field(ge=1, le=1024 * _MIB, strict=True)] = 4 * _MIB
    """Bytes buffered before they are compressed and written. Compression runs in a worker
    thread; larger pieces mean fewer hand-overs of the GIL between it and the event loop (each
    can wait for the interpreter's switch interval)."""
    make_dirs: bool = True
    """Create missing parent directories."""
    fsync: bool = True
    """Flush the file to disk before renaming it into place."""
    name: Annotated[str, Field(min_length=1)] = "write_file"
    """The stage name."""

    @field_validator("compression")
    @classmethod
    def _check_compression(cls, value: str, info: ValidationInfo) -> str:
        fmt = info.data.get("format")
        if fmt == "arrow" and value not in ("infer", "none"):
            raise ValueError("an Arrow IPC stream takes no compression; leave it as 'infer'")
        if fmt == "parquet" and value == "bz2":
            raise ValueError("Parquet pages compress with zstd, snappy, gzip or none, not bz2")
        if fmt not in COLUMNAR and value == "snappy":
            raise ValueError("snappy applies to Parquet files only")
        return value

    @field_validator("schema_")
    @classmethod
    def _check_schema(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, pa.Schema):
            raise ValueError(f"expected a pyarrow.Schema, got {type(value).__name__}")
        return value

    @field_validator("compression_level")
    @classmethod
    def _check_level(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is None or info.data.get("format") == "parquet":
            return value  # Parquet: the page codec's level, checked by pyarrow
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
        fmt = info.data.get("format")
        if value == "append" and fmt == "json" and _codec_of(info) != "none":
            raise ValueError("a compressed JSON array cannot be appended to; use the jsonl format")
        if value == "append" and fmt in COLUMNAR:
            raise ValueError(
                f"a {fmt} file cannot be appended to; write one file per run into a dataset "
                "directory instead, e.g. file_path='out/{run_id}.parquet'"
            )
        return value

    @property
    def columnar(self) -> bool:
        """Whether the file is Parquet or Arrow IPC (schema and compression inside)."""
        return self.format in COLUMNAR

    @property
    def parquet_compression(self) -> str:
        """The codec of a Parquet file's pages."""
        return "zstd" if self.compression == "infer" else self.compression

    @property
    def codec(self) -> Codec:
        """The file compression in effect for the (unfilled) path (none for Parquet, Arrow)."""
        if self.format in COLUMNAR:
            return "none"
        return codec_for(self.compression, self.file_path)

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

from typing import TYPE_CHECKING

from ...core.exports import lazy_names as _lazy_names

__all__ = (
    "FileExtractor",
    "FileExtractorConfig",
    "FileLoader",
    "FileLoaderConfig",
    "create_file_extractor",
    "create_file_loader",
)

#: For each module, the public names it defines (separated by spaces), imported on first use.
_EXPORTS: dict[str, str] = {
    ".config": "FileExtractorConfig FileLoaderConfig",
    ".extractor": "FileExtractor create_file_extractor",
    ".loader": "FileLoader create_file_loader",
}

if TYPE_CHECKING:
    from .config import FileExtractorConfig as FileExtractorConfig
    from .config import FileLoaderConfig as FileLoaderConfig
    from .extractor import FileExtractor as FileExtractor
    from .extractor import create_file_extractor as create_file_extractor
    from .loader import FileLoader as FileLoader
    from .loader import create_file_loader as create_file_loader
else:
    __getattr__, __dir__ = _lazy_names(globals(), _EXPORTS)

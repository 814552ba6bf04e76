"""The file loader: writes batches to a temporary file beside the target, renamed on success."""

from __future__ import annotations

import os
from typing import Any

from ..._exceptions import LoadError
from ...core.config import validate_config
from ...core.context import RunContext
from ...core.stages import Loader
from .config import CompressionSetting, FileFormat, FileLoaderConfig, fill_path
from .output import FileSink


class FileLoader(Loader):
    """Writes batches (records or Arrow tables) to a file, atomically.

    Made by :func:`create_file_loader`. ``open(ctx)`` returns an async context manager yielding a
    sink; the sink writes to a temporary file beside the target, renamed into place when the block
    exits cleanly and deleted when it exits with an exception (including cancellation). The
    stage's metrics count ``bytes_written`` (as stored).
    """

    batch_format = "any"

    def __init__(self, config: FileLoaderConfig) -> None:
        self.config = config
        self.name = config.name

    def __repr__(self) -> str:
        return f"FileLoader({self.config.file_path!r}, {self.config.format!r})"

    def open(self, ctx: RunContext) -> FileSink:
        """Open the loader for one run (an async context manager yielding the sink)."""
        path = os.path.expanduser(
            fill_path(
                self.config.file_path, ctx, LoadError, allow_subpaths=self.config.allow_subpaths
            )
        )
        return FileSink(self.config, path, ctx)


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
            ``field_names``, ``compression_level``, ...), where every option is documented.

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
    config = validate_config(
        FileLoaderConfig,
        "file loader",
        file_path=file_path,
        format=format,
        compression=compression,
        **options,
    )
    return FileLoader(config)

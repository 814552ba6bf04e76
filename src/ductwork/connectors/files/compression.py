"""Streaming compression codecs for the file connector: gzip, bz2 (stdlib) and zstd (zstandard).

Decoders take compressed input a piece at a time and return decompressed output in bounded pieces,
so memory does not grow with the file. They read concatenated members (``cat a.gz b.gz``, or a
file the loader appended to) and tell a truncated stream from a complete one. Encoders turn a run's
output into one member (frame) each, so appending to an existing file is a plain concatenation.

The heavy calls (``decompress``/``compress``) release the GIL, so the file connector runs them in
worker threads while the event loop parses and encodes records.
"""

from __future__ import annotations

import bz2
import zlib
from typing import Literal, Protocol, cast

import zstandard

__all__ = [
    "COMPRESSION_EXTENSIONS",
    "Codec",
    "CorruptDataError",
    "Decoder",
    "Encoder",
    "infer_compression",
    "make_decoder",
    "make_encoder",
    "strip_compression_suffix",
]

Codec = Literal["none", "gzip", "bz2", "zstd"]

COMPRESSION_EXTENSIONS: dict[str, Codec] = {
    ".gz": "gzip",
    ".gzip": "gzip",
    ".bz2": "bz2",
    ".zst": "zstd",
    ".zstd": "zstd",
}

LEVELS: dict[Codec, tuple[int, int, int]] = {
    # codec: (lowest, highest, default)
    "gzip": (0, 9, 6),
    "bz2": (1, 9, 9),
    "zstd": (-7, 22, 3),
}

_ZSTD_PIECE = 64 * 1024
"""zstd decompression has no output bound, so compressed input is fed in pieces of this size."""


class CorruptDataError(Exception):
    """The compressed stream is corrupt or truncated (converted to FileFormatError by callers)."""


def codec_for(setting: str, path: str) -> Codec:
    """The compression in effect: ``setting``, or, for ``"infer"``, what ``path``'s extension
    implies."""
    return infer_compression(path) if setting == "infer" else cast(Codec, setting)


def infer_compression(path: str) -> Codec:
    """The codec implied by a path's extension (``none`` when there is no known extension)."""
    lower = path.lower()
    for ext, codec in COMPRESSION_EXTENSIONS.items():
        if lower.endswith(ext):
            return codec
    return "none"


def strip_compression_suffix(path: str) -> str:
    """``data.jsonl.gz`` -> ``data.jsonl``."""
    lower = path.lower()
    for ext in COMPRESSION_EXTENSIONS:
        if lower.endswith(ext):
            return path[: -len(ext)]
    return path


class Decoder(Protocol):
    """Incremental decompressor with bounded output."""

    def feed(self, data: bytes) -> None:
        """Queue compressed input."""

    def read(self, max_length: int) -> bytes:
        """Return up to about ``max_length`` decompressed bytes; ``b""`` when input is needed."""

    def finish(self) -> None:
        """Check the stream ended at a member boundary; raise CorruptDataError if truncated."""


class Encoder(Protocol):
    """Incremental compressor producing one member (frame) per run."""

    def compress(self, data: bytes) -> bytes:
        """Compress ``data``; return whatever output is ready."""

    def flush(self) -> bytes:
        """End the member and return the remaining output."""


class _NoDecoder:
    """Pass-through for uncompressed files."""

    __slots__ = ("_input",)

    def __init__(self) -> None:
        self._input = b""

    def feed(self, data: bytes) -> None:
        self._input = self._input + data if self._input else data

    def read(self, max_length: int) -> bytes:
        data, self._input = self._input, b""
        return data

    def finish(self) -> None:
        return None


class _GzipDecoder:
    """gzip members, one ``zlib.decompressobj`` each, output bounded by ``max_length``."""

    __slots__ = ("_d", "_input", "_started")

    def __init__(self) -> None:
        self._d = zlib.decompressobj(wbits=31)
        self._input = b""
        self._started = False  # the current member has received input

    def feed(self, data: bytes) -> None:
        self._input = self._input + data if self._input else data

    def read(self, max_length: int) -> bytes:
        while self._input:
            if self._d.eof:
                # Another member follows; zero bytes between or after members are padding (as
                # the gzip module accepts).
                self._input = self._input.lstrip(b"\x00")
                if not self._input:
                    return b""
                self._d = zlib.decompressobj(wbits=31)
            data, self._input = self._input, b""
            self._started = True
            try:
                out = self._d.decompress(data, max_length)
            except zlib.error as exc:
                raise CorruptDataError(f"corrupt gzip data: {exc}") from exc
            if self._d.eof:
                self._input = self._d.unused_data
            else:
                self._input = self._d.unconsumed_tail
            if out:
                return out
        return b""

    def finish(self) -> None:
        if self._started and not self._d.eof:
            raise CorruptDataError("truncated gzip stream (the file ends inside a member)")


class _Bz2Decoder:
    """bz2 streams, one ``BZ2Decompressor`` each, output bounded by ``max_length``."""

    __slots__ = ("_d", "_input", "_started")

    def __init__(self) -> None:
        self._d = bz2.BZ2Decompressor()
        self._input = b""
        self._started = False

    def feed(self, data: bytes) -> None:
        self._input = self._input + data if self._input else data

    def read(self, max_length: int) -> bytes:
        while True:
            d = self._d
            if d.eof:
                if not self._input:
                    return b""
                d = self._d = bz2.BZ2Decompressor()
            if d.needs_input:
                if not self._input:
                    return b""
                data, self._input = self._input, b""
            else:
                data = b""
            self._started = True
            try:
                out = d.decompress(data, max_length)
            except (OSError, EOFError, ValueError) as exc:
                raise CorruptDataError(f"corrupt bz2 data: {exc}") from exc
            if d.eof and d.unused_data:
                self._input = d.unused_data + self._input
            if out:
                return out

    def finish(self) -> None:
        if self._started and not self._d.eof:
            raise CorruptDataError("truncated bz2 stream (the file ends inside a stream)")


class _ZstdDecoder:
    """zstd frames, one decompression object each, fed in bounded pieces."""

    __slots__ = ("_d", "_dctx", "_input", "_started")

    def __init__(self) -> None:
        self._dctx = zstandard.ZstdDecompressor()
        self._d = self._dctx.decompressobj()
        self._input = b""
        self._started = False

    def feed(self, data: bytes) -> None:
        self._input = self._input + data if self._input else data

    def read(self, max_length: int) -> bytes:
        while self._input:
            if self._d.eof:
                self._d = self._dctx.decompressobj()
            data = self._input[:_ZSTD_PIECE]
            self._input = self._input[_ZSTD_PIECE:]
            self._started = True
            try:
                out = self._d.decompress(data)
            except zstandard.ZstdError as exc:
                raise CorruptDataError(f"corrupt zstd data: {exc}") from exc
            if self._d.eof and self._d.unused_data:
                self._input = self._d.unused_data + self._input
            if out:
                return out
        return b""

    def finish(self) -> None:
        if self._started and not self._d.eof:
            raise CorruptDataError("truncated zstd stream (the file ends inside a frame)")


def make_decoder(codec: Codec) -> Decoder:
    """A fresh decoder for one file."""
    if codec == "gzip":
        return _GzipDecoder()
    if codec == "bz2":
        return _Bz2Decoder()
    if codec == "zstd":
        return _ZstdDecoder()
    return _NoDecoder()


class _NoEncoder:
    __slots__ = ()

    def compress(self, data: bytes) -> bytes:
        return data

    def flush(self) -> bytes:
        return b""


class _ZstdEncoder:
    __slots__ = ("_c",)

    def __init__(self, level: int) -> None:
        self._c = zstandard.ZstdCompressor(level=level).compressobj()

    def compress(self, data: bytes) -> bytes:
        return self._c.compress(data)

    def flush(self) -> bytes:
        return self._c.flush()


def make_encoder(codec: Codec, level: int | None) -> Encoder:
    """A fresh encoder for one run's output (``level`` ``None`` means the codec's default)."""
    if codec == "none":
        return _NoEncoder()
    lowest, highest, default = LEVELS[codec]
    level = default if level is None else level
    if not lowest <= level <= highest:
        raise ValueError(f"{codec} compression level must be in {lowest}..{highest}, got {level}")
    if codec == "gzip":
        return zlib.compressobj(level, zlib.DEFLATED, 31)
    if codec == "bz2":
        return bz2.BZ2Compressor(level)
    return _ZstdEncoder(level)

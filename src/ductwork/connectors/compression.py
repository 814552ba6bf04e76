"""Streaming compression codecs: gzip, bz2 (stdlib) and zstd (zstandard), for files and for
HTTP bodies sent with ``Content-Encoding: gzip``, ``deflate`` or ``zstd`` (or several of them,
applied in turn).

Decoders take compressed input a piece at a time and return decompressed output in bounded pieces,
so memory does not grow with the file, however compressible it is. They read concatenated members
(``cat a.gz b.gz``, or a file the loader appended to) and tell a truncated stream from a complete
one. Encoders turn a run's output into one member (frame) each, so appending to an existing file
is a plain concatenation.

The heavy calls (``decompress``/``compress``) release the GIL, so the file connector runs them in
worker threads while the event loop parses and encodes records.
"""

from __future__ import annotations

import bz2
import zlib
from collections.abc import Callable
from typing import ClassVar, Literal, Protocol, cast

import zstandard

__all__ = [
    "COMPRESSION_EXTENSIONS",
    "CONTENT_CODINGS",
    "Codec",
    "CorruptDataError",
    "Decoder",
    "Encoder",
    "infer_compression",
    "make_content_decoder",
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

_ZSTD_MAGIC = 0xFD2FB528
_ZSTD_SKIPPABLE = 0x184D2A50  # 0x184D2A50 .. 0x184D2A5F, the low nibble masked
_ZSTD_BLOCK_MAX = 128 * 1024
"""The most a zstd block decompresses to (``ZSTD_BLOCKSIZE_MAX``; libzstd rejects larger)."""


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
        data = self._input
        if len(data) <= max_length:
            self._input = b""
            return data
        self._input = data[max_length:]
        return data[:max_length]

    def finish(self) -> None:
        return None


class _ZlibDecoder:
    """What the gzip and deflate decoders share: the buffered input and the end-of-stream check."""

    __slots__ = ("_d", "_input", "_started")
    _truncated: ClassVar[str]

    def __init__(self, wbits: int) -> None:
        self._d = zlib.decompressobj(wbits=wbits)
        self._input = b""
        self._started = False  # the current stream has received input

    def feed(self, data: bytes) -> None:
        self._input = self._input + data if self._input else data

    def finish(self) -> None:
        if self._started and not self._d.eof:
            raise CorruptDataError(self._truncated)


class _GzipDecoder(_ZlibDecoder):
    """gzip members, one ``zlib.decompressobj`` each, output bounded by ``max_length``."""

    __slots__ = ()
    _truncated = "truncated gzip stream (the file ends inside a member)"

    def __init__(self) -> None:
        super().__init__(31)

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
    """zstd frames with output bounded by ``max_length``.

    zstandard's decompression objects take no output bound: one call turns all the input it is
    given into output, and a few bytes of compressed input can stand for many MiB. So the
    decoder walks the frame structure itself (frame header, 3-byte block headers, checksum) and
    hands the library at most as many whole blocks per call as fit in ``max_length``: libzstd
    never decompresses a block to more than 128 KiB, which bounds every call's output. Skippable
    frames are passed over; anything else is corrupt data.
    """

    __slots__ = (
        "_checksum",
        "_d",
        "_dctx",
        "_input",
        "_last_block",
        "_left",
        "_pending",
        "_pos",
        "_started",
        "_state",
    )

    def __init__(self) -> None:
        self._dctx = zstandard.ZstdDecompressor()
        self._d = self._dctx.decompressobj()
        self._input = b""
        self._pos = 0  # the walk has reached this index of ``_input``
        self._state = "magic"  # what ``_input[_pos:]`` starts with
        self._left = 0  # bytes left of the current block body, checksum or skippable frame
        self._pending = b""  # output past the last ``max_length``
        self._checksum = False  # the current frame ends with a 4-byte checksum
        self._last_block = False  # the current block is the frame's last
        self._started = False

    def feed(self, data: bytes) -> None:
        rest = self._input[self._pos :]
        self._input = rest + data if rest else data
        self._pos = 0

    def read(self, max_length: int) -> bytes:
        if self._pending:
            out, self._pending = self._pending[:max_length], self._pending[max_length:]
            return out
        budget = max(1, max_length // _ZSTD_BLOCK_MAX)
        while True:
            start = self._pos
            blocks = self._walk(budget)
            if self._pos == start:
                return b""
            self._started = True
            try:
                out = self._d.decompress(self._input[start : self._pos])
            except zstandard.ZstdError as exc:
                raise CorruptDataError(f"corrupt zstd data: {exc}") from exc
            if self._state == "magic" and blocks >= 0:
                self._end_frame()
            if out:
                if len(out) > max_length:
                    out, self._pending = out[:max_length], out[max_length:]
                return out

    def _walk(self, budget: int) -> int:
        """Advance ``_pos`` over frame parts to feed, at most ``budget`` blocks' worth.

        Returns the number of blocks entered, or -1 when the walk stopped inside a frame
        whose end has not been reached."""
        data = self._input
        size = len(data)
        blocks = 0
        while True:
            state = self._state
            pos = self._pos
            if state in ("block", "checksum"):
                step = min(self._left, size - pos)
                self._pos = pos + step
                self._left -= step
                if self._left:
                    return -1
                if state == "checksum" or self._last_block:
                    if state == "block" and self._checksum:
                        self._state, self._left = "checksum", 4
                        continue
                    self._state = "magic"
                    return blocks
                self._state = "block_header"
            elif state == "skip":
                step = min(self._left, size - pos)
                # skippable frames are not fed to the decompressor: drop them from the input
                self._input = data = data[:pos] + data[pos + step :]
                size = len(data)
                self._left -= step
                if self._left:
                    return -1
                self._state = "magic"
            elif state == "magic":
                if blocks or size - pos < 4:
                    return blocks
                magic = int.from_bytes(data[pos : pos + 4], "little")
                if magic & 0xFFFFFFF0 == _ZSTD_SKIPPABLE:
                    if size - pos < 8:
                        return blocks
                    self._left = int.from_bytes(data[pos + 4 : pos + 8], "little")
                    self._input = data = data[:pos] + data[pos + 8 :]
                    size = len(data)
                    self._state = "skip"
                    continue
                if magic != _ZSTD_MAGIC:
                    raise CorruptDataError("corrupt zstd data: not a zstd frame")
                if size - pos < 5:
                    return -1
                descriptor = data[pos + 4]
                single_segment = descriptor & 0x20
                header = 5 + (0 if single_segment else 1)
                header += (0, 1, 2, 4)[descriptor & 0x03]
                header += ((1 if single_segment else 0), 2, 4, 8)[descriptor >> 6]
                if size - pos < header:
                    return -1
                self._checksum = bool(descriptor & 0x04)
                self._pos = pos + header
                self._state = "block_header"
            else:  # block_header
                if blocks >= budget:
                    return -1
                if size - pos < 3:
                    return -1
                head = int.from_bytes(data[pos : pos + 3], "little")
                kind = (head >> 1) & 0x03
                if kind == 3:
                    raise CorruptDataError("corrupt zstd data: reserved block type")
                self._last_block = bool(head & 0x01)
                self._left = 1 if kind == 1 else head >> 3
                self._pos = pos + 3
                self._state = "block"
                blocks += 1

    def _end_frame(self) -> None:
        if not self._d.eof:
            raise CorruptDataError("corrupt zstd data: the frame did not end where it should")
        self._d = self._dctx.decompressobj()

    def finish(self) -> None:
        if self._state != "magic" or self._pos < len(self._input):
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


class _DeflateDecoder(_ZlibDecoder):
    """An HTTP ``deflate`` body, output bounded by ``max_length``: a zlib stream, or (as some
    servers send it, and browsers and httpx accept) a raw deflate stream."""

    __slots__ = ("_zlib",)
    _truncated = "truncated deflate stream (the body ends inside it)"

    def __init__(self) -> None:
        super().__init__(zlib.MAX_WBITS)
        self._zlib = True  # still reading it as a zlib stream

    def read(self, max_length: int) -> bytes:
        while self._input and not self._d.eof:
            data, self._input = self._input, b""
            try:
                out = self._d.decompress(data, max_length)
            except zlib.error as exc:
                if not (self._zlib and not self._started):
                    raise CorruptDataError(f"corrupt deflate data: {exc}") from exc
                self._zlib = False  # not a zlib header: a raw deflate stream
                self._d = zlib.decompressobj(-zlib.MAX_WBITS)
                self._input = data
                continue
            self._started = True
            self._input = b"" if self._d.eof else self._d.unconsumed_tail
            if out:
                return out
        return b""


class _Chain:
    """Several decoders in turn (``Content-Encoding: gzip, zstd``): each stage is fed at most
    ``max_length`` bytes of the previous stage's output at a time, so every stage stays bounded."""

    __slots__ = ("_stages",)

    def __init__(self, stages: list[Decoder]) -> None:
        self._stages = stages

    def feed(self, data: bytes) -> None:
        self._stages[0].feed(data)

    def read(self, max_length: int) -> bytes:
        return self._pull(len(self._stages) - 1, max_length)

    def _pull(self, stage: int, max_length: int) -> bytes:
        decoder = self._stages[stage]
        while True:
            out = decoder.read(max_length)
            if out or stage == 0:
                return out
            piece = self._pull(stage - 1, max_length)
            if not piece:
                return b""
            decoder.feed(piece)

    def finish(self) -> None:
        for decoder in self._stages:
            decoder.finish()


CONTENT_CODINGS: dict[str, Callable[[], Decoder]] = {
    "gzip": _GzipDecoder,
    "x-gzip": _GzipDecoder,
    "deflate": _DeflateDecoder,
    "zstd": _ZstdDecoder,
}
"""The HTTP content codings decoded here (names lower-case), each to a fresh decoder."""


def make_content_decoder(codings: list[str]) -> Decoder:
    """A fresh decoder for an HTTP body whose ``Content-Encoding`` lists ``codings`` (each a key
    of :data:`CONTENT_CODINGS`), in the order they were applied."""
    stages = [CONTENT_CODINGS[name]() for name in reversed(codings)]
    if not stages:
        return _NoDecoder()
    return stages[0] if len(stages) == 1 else _Chain(stages)


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

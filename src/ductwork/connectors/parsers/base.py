"""What every parser shares: text codecs, error snippets, and :class:`RecordParser`."""

from __future__ import annotations

import codecs
import csv
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..._exceptions import FileFormatError
from ...core.types import Record

BOM = codecs.BOM_UTF8
SNIPPET = 80
"""The longest excerpt of bad input an error message quotes."""
_PROBE = '\n\r",;|\t{}[]:'

OnBad = Callable[[FileFormatError], None] | None
"""``None`` to raise every :class:`FileFormatError`; otherwise called with each bad record's
error, which is then skipped."""


@dataclass(frozen=True, slots=True)
class TextCodec:
    """How a file's bytes become text.

    Attributes:
        encoding: the name the user gave.
        name: the Python codec used to decode complete lines.
        utf8: the bytes are UTF-8 (a leading byte-order mark is dropped).
        transcode: the encoding is not ASCII-compatible (UTF-16/32): the bytes are decoded
            incrementally and re-encoded as UTF-8 before framing, and offsets are not reported.
    """

    encoding: str
    name: str
    utf8: bool
    transcode: bool

    @property
    def unit(self) -> str:
        """The codec of the framed bytes the parsers see (UTF-8 once transcoded)."""
        return "utf-8" if self.utf8 or self.transcode else self.name


def text_codec(encoding: str) -> TextCodec:
    """Describe ``encoding`` (raises LookupError for an unknown one)."""
    name = codecs.lookup(encoding).name
    if name in ("utf-8", "utf-8-sig"):
        return TextCodec(encoding, "utf-8", utf8=True, transcode=False)
    try:
        ascii_compatible = _PROBE.encode(name) == _PROBE.encode("ascii")
    except (UnicodeError, LookupError):
        ascii_compatible = False
    return TextCodec(encoding, name, utf8=False, transcode=not ascii_compatible)


def csv_format(delimiter: str, quotechar: str | None, **extra: Any) -> dict[str, Any]:
    """The ``csv`` module's format parameters for a delimiter and a quote character (``None``:
    fields are never quoted), with ``extra`` ones."""
    fmt: dict[str, Any] = {
        "delimiter": delimiter,
        "quoting": csv.QUOTE_MINIMAL if quotechar else csv.QUOTE_NONE,
        **extra,
    }
    if quotechar:
        fmt["quotechar"] = quotechar
    return fmt


def snippet(data: bytes | str, codec: str = "utf-8") -> str:
    """A short, one-line excerpt of bad input for an error message."""
    text = data.decode(codec, "replace") if isinstance(data, bytes) else data
    text = text.strip()
    return text if len(text) <= SNIPPET else text[: SNIPPET - 3] + "..."


class JsonSyntaxError(Exception):
    """ijson rejected a block; the extractor rescans the file to find the exact line."""

    def __init__(self, message: str, block: int) -> None:
        super().__init__(message)
        self.block = block


@dataclass(eq=False, repr=False)
class RecordParser(ABC):
    """Turns the decompressed bytes of one file into records.

    Args:
        file: the path, for error messages.
        codec: the text encoding.
        on_bad: ``None`` to raise every :class:`FileFormatError`; otherwise called with each bad
            record's error, which is then skipped.
        max_record_size: the longest line (or CSV record) accepted, in bytes.

    Attributes:
        line: the line number at the start of the input not yet parsed.
        offset: the byte offset of the start of the input not yet parsed.
    """

    file: str
    codec: TextCodec
    on_bad: OnBad
    max_record_size: int

    def __post_init__(self) -> None:
        self.line = 1
        self.offset = 0
        self._decoder: codecs.IncrementalDecoder | None = None
        if self.codec.transcode:
            self._decoder = codecs.getincrementaldecoder(self.codec.name)("strict")
        self._raw_offset = 0  # bytes of the original encoding consumed by the transcoder

    @property
    def offsets_known(self) -> bool:
        """Whether byte offsets refer to the file (not to transcoded text)."""
        return not self.codec.transcode

    @abstractmethod
    def feed(self, data: bytes) -> list[Record]:
        """Parse the next block of decompressed bytes; return the records it completes."""

    @abstractmethod
    def finish(self) -> list[Record]:
        """The file has ended: parse what is left, or raise if it is incomplete."""

    def error(
        self, message: str, line: int | None, offset: int | None, snippet: str | None
    ) -> FileFormatError:
        """Build a FileFormatError for this file."""
        return FileFormatError(
            message,
            file=self.file,
            line=line,
            offset=offset if self.offsets_known else None,
            snippet=snippet,
        )

    def bad(self, message: str, line: int, offset: int | None, snippet: str | None) -> None:
        """Report a bad record: raise, or hand it to ``on_bad`` and go on."""
        err = self.error(message, line, offset, snippet)
        if self.on_bad is None:
            raise err
        self.on_bad(err)

    def _error_here(self, message: str, line: int, data: bytes, codec: str) -> FileFormatError:
        """An error at the current offset, quoting the start of ``data`` (text in ``codec``)."""
        return self.error(message, line, self.offset, snippet(data[:SNIPPET], codec))

    def _skip_bom(self, data: bytes) -> bytes:
        """``data`` without a leading UTF-8 byte-order mark, which the offset steps over."""
        if not data.startswith(BOM):
            return data
        self.offset += len(BOM)
        return data[len(BOM) :]

    def _advance(self, data: bytes, end: int | None = None) -> None:
        """The first ``end`` bytes of ``data`` (all by default) are parsed: move the line number
        and the offset past them."""
        end = len(data) if end is None else end
        self.line += data.count(b"\n", 0, end)
        self.offset += end

    def _as_utf8(self, data: bytes, pending: Sequence[bytes], final: bool = False) -> bytes:
        """``data`` as the UTF-8 the parser reads: itself, or transcoded when the parser has a
        decoder; ``pending`` is the input before ``data`` not yet parsed (to number lines)."""
        if self._decoder is None:
            return data
        return self._transcode(data, pending, final)

    def _transcode(self, data: bytes, pending: Sequence[bytes], final: bool) -> bytes:
        """Decode ``data`` incrementally and re-encode it as UTF-8 (non-ASCII-compatible text)."""
        assert self._decoder is not None
        try:
            text = self._decoder.decode(data, final)
        except UnicodeDecodeError as exc:
            head = data[: max(exc.start, 0)].decode(self.codec.name, "replace")
            line = self.line + sum(part.count(b"\n") for part in pending) + head.count("\n")
            raise self.error(
                f"cannot decode as {self.codec.encoding}: {exc.reason}",
                line,
                None,
                snippet(data[max(exc.start - 40, 0) : exc.end + 40], self.codec.name),
            ) from None
        self._raw_offset += len(data)
        return text.encode("utf-8")


def json_type(value: Any) -> str:
    """How an error message names the type of a parsed JSON value that is not an object."""
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"

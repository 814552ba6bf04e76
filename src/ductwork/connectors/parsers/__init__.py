"""Incremental record parsers: CSV, JSON Lines and JSON arrays, for files and HTTP bodies.

Parsers are fed decompressed bytes a block at a time (a MiB of a file, a chunk of a response)
and return the records complete in that block, so the work per call is one C-level split, one
``csv.reader`` pass or one ijson ``send`` per block, not one Python call per line. When a fast
pass meets anything unusual (a malformed line, a blank line, a row of the wrong width, a CSV
record split across blocks) the block is parsed again line by line to name the exact line, and
to skip the bad record when ``error_handling="skip"``.

Work is linear in the input: a record that spans many blocks (a long line, a quoted CSV field,
or a quote never closed) is kept as a list of the blocks it spans, each scanned once for a record
end, and joined once when the record is complete; past ``max_record_size`` it is an error.

Line numbers are 1-based and count ``\\n``; byte offsets are positions in the decompressed file.

The modules: :mod:`.base` (text codecs, error snippets and :class:`RecordParser`),
:mod:`.lines` (framing input into whole lines), one per format (:mod:`.jsonl`,
:mod:`.delimited` for CSV, :mod:`.json_array`).
"""

from .base import JsonSyntaxError as JsonSyntaxError
from .base import RecordParser as RecordParser
from .base import TextCodec as TextCodec
from .base import csv_format as csv_format
from .base import snippet as snippet
from .base import text_codec as text_codec
from .delimited import CsvParser as CsvParser
from .json_array import JsonArrayParser as JsonArrayParser
from .jsonl import JsonlParser as JsonlParser

__all__ = [
    "CsvParser",
    "JsonArrayParser",
    "JsonSyntaxError",
    "JsonlParser",
    "RecordParser",
    "TextCodec",
    "csv_format",
    "snippet",
    "text_codec",
]

"""Decompression bombs: every codec hands out decoded bytes in bounded pieces, a highly
compressible ``.jsonl.zst`` costs the extractor no more memory than the same content as gzip,
and an HTTP body sent with ``Content-Encoding: zstd``, ``gzip`` or ``deflate`` (or several of them
in turn) is decoded in bounded pieces."""

from __future__ import annotations

import bz2
import gzip
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import anyio
import pytest
import zstandard
from faultserver import FaultServer, Reply, Request

from ductwork import HttpError, create_el_pipeline, create_http_extractor
from ductwork.connectors.compression import (
    CorruptDataError,
    make_content_decoder,
    make_decoder,
)
from ductwork.connectors.parsers import JsonlParser

# Lines of one repeated record: zstd packs 48 MiB of them into a few KiB.
LINE = b'{"id": 1, "name": "' + b"x" * 180 + b'"}\n'
DECODED = 48 * 1024 * 1024


def bomb(codec: str, size: int = DECODED) -> bytes:
    data = LINE * (size // len(LINE))
    if codec == "gzip":
        return gzip.compress(data, 9)
    if codec == "bz2":
        return bz2.compress(data, 9)
    if codec == "zstd":
        return zstandard.ZstdCompressor(level=19).compress(data)
    return data


def content_encoded(encoding: str, data: bytes) -> bytes:
    """``data`` encoded as an HTTP body with ``Content-Encoding: encoding`` (codings applied in
    the order listed; ``raw-deflate`` is a deflate body without its zlib header)."""
    for name in (part.strip() for part in encoding.split(",")):
        if name == "deflate":
            data = zlib.compress(data, 9)
        elif name == "raw-deflate":
            packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
            data = packer.compress(data) + packer.flush()
        else:
            data = _compress(name, data)
    return data


def _compress(codec: str, data: bytes) -> bytes:
    if codec == "gzip":
        return gzip.compress(data, 9)
    return zstandard.ZstdCompressor(level=19).compress(data)


HTTP_CODINGS = ["deflate", "raw-deflate", "gzip, gzip", "gzip, zstd", "zstd, deflate"]


@pytest.mark.parametrize("encoding", HTTP_CODINGS)
def test_every_content_decoder_returns_at_most_max_length_per_call(encoding: str) -> None:
    data = LINE * (8 * 1024 * 1024 // len(LINE))
    compressed = content_encoded(encoding, data)
    codings = [name.strip().replace("raw-", "") for name in encoding.split(",")]
    decoder = make_content_decoder(codings)
    out = []
    for start in range(0, len(compressed), 64 * 1024):
        decoder.feed(compressed[start : start + 64 * 1024])
        while block := decoder.read(64 * 1024):
            assert len(block) <= 64 * 1024
            out.append(block)
    decoder.finish()
    assert b"".join(out) == data


@pytest.mark.parametrize("encoding", ["deflate", "raw-deflate", "gzip, zstd"])
def test_a_truncated_or_corrupt_content_coding_is_reported(encoding: str) -> None:
    compressed = content_encoded(encoding, LINE * 5000)
    codings = [name.strip().replace("raw-", "") for name in encoding.split(",")]
    decoder = make_content_decoder(codings)
    decoder.feed(compressed[:-20])
    while decoder.read(1 << 20):
        pass
    with pytest.raises(CorruptDataError, match="truncated"):
        decoder.finish()
    decoder = make_content_decoder(codings)
    decoder.feed(b"\xff" * 64)
    with pytest.raises(CorruptDataError, match=r"corrupt|not a zstd"):
        decoder.read(1 << 20)


@pytest.mark.parametrize("codec", ["none", "gzip", "bz2", "zstd"])
@pytest.mark.parametrize("max_length", [1000, 64 * 1024, 1024 * 1024])
def test_every_decoder_returns_at_most_max_length_per_call(codec: str, max_length: int) -> None:
    compressed = bomb(codec, 8 * 1024 * 1024)
    decoder = make_decoder(codec)
    total = calls = 0
    for start in range(0, len(compressed), 64 * 1024):
        decoder.feed(compressed[start : start + 64 * 1024])
        while block := decoder.read(max_length):
            assert len(block) <= max_length
            total += len(block)
            calls += 1
    decoder.finish()
    assert total == 8 * 1024 * 1024 // len(LINE) * len(LINE)
    assert calls >= total // max_length


def test_zstd_decoder_walks_frames_checksums_and_skippable_frames() -> None:
    data = LINE * 5000
    with_checksum = zstandard.ZstdCompressor(write_checksum=True).compress(data)
    streamed = zstandard.ZstdCompressor().compressobj()
    no_size = streamed.compress(data) + streamed.flush()
    skippable = (0x184D2A53).to_bytes(4, "little") + (3).to_bytes(4, "little") + b"abc"
    stream = skippable + with_checksum + no_size + skippable
    for piece in (1, 5, 4096, len(stream)):
        decoder = make_decoder("zstd")
        out = []
        for start in range(0, len(stream), piece):
            decoder.feed(stream[start : start + piece])
            while block := decoder.read(200_000):
                out.append(block)
        decoder.finish()
        assert b"".join(out) == data + data


@pytest.mark.parametrize("cut", [2, 6, 100, -1])
def test_truncated_zstd_is_reported(cut: int) -> None:
    compressed = zstandard.ZstdCompressor().compress(LINE * 5000)
    decoder = make_decoder("zstd")
    decoder.feed(compressed[:cut])
    while decoder.read(1 << 20):
        pass
    with pytest.raises(CorruptDataError, match="truncated"):
        decoder.finish()


EXTRACT = """
import sys, anyio
from ductwork import create_el_pipeline, create_file_extractor

count = 0
def load(batch):
    global count
    count += len(batch)

anyio.run(create_el_pipeline(create_file_extractor(sys.argv[1]), load, logging=False).run)
print(count)
"""

MEASURE = """
import resource, subprocess, sys
done = subprocess.run([sys.executable, "-c", sys.argv[1], sys.argv[2]], capture_output=True)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
sys.stdout.write(done.stdout.decode() + " " + str(peak))
sys.stderr.write(done.stderr.decode())
sys.exit(done.returncode)
"""


def peak_rss_kib(path: Path) -> tuple[int, int]:
    """Run the extractor over ``path`` in a fresh child of a fresh process; (records, peak RSS)."""
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, EXTRACT, str(path)],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    records, rss = done.stdout.split()
    return int(records), int(rss)


def test_peak_memory_for_a_zstd_bomb_matches_gzip(tmp_path: Path) -> None:
    zst = tmp_path / "bomb.jsonl.zst"
    zst.write_bytes(bomb("zstd"))
    gz = tmp_path / "bomb.jsonl.gz"
    gz.write_bytes(bomb("gzip"))
    assert zst.stat().st_size < 100_000
    zst_records, zst_rss = peak_rss_kib(zst)
    gz_records, gz_rss = peak_rss_kib(gz)
    assert zst_records == gz_records == DECODED // len(LINE)
    assert zst_rss <= 1.2 * gz_rss, (zst_rss, gz_rss)


def compressed_body(encoding: str, body: bytes) -> Any:
    def handler(request: Request, reply: Reply) -> None:
        reply.start_chunked(headers={"Content-Encoding": encoding})
        for start in range(0, len(body), 16 * 1024):
            reply.chunk(body[start : start + 16 * 1024])
        reply.end_chunked()

    return handler


@pytest.mark.parametrize("encoding", ["zstd", "gzip", *HTTP_CODINGS])
async def test_a_compressed_http_body_is_decoded_in_bounded_pieces(
    api: FaultServer, encoding: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fed: list[int] = []
    feed = JsonlParser.feed

    def measured(self: JsonlParser, data: bytes) -> list[Any]:
        fed.append(len(data))
        return feed(self, data)

    monkeypatch.setattr(JsonlParser, "feed", measured)
    header = encoding.replace("raw-", "")
    data = LINE * (DECODED // len(LINE))
    url = api.route("/bomb", compressed_body(header, content_encoded(encoding, data)))
    count = 0

    def load(batch: list[Any]) -> None:
        nonlocal count
        count += len(batch)

    extractor = create_http_extractor(url, response_format="ndjson")
    with anyio.fail_after(30):
        await create_el_pipeline(extractor, load, logging=False).run()
    assert count == DECODED // len(LINE)
    assert max(fed) <= 1024 * 1024


async def test_a_truncated_compressed_http_body_is_an_http_error(api: FaultServer) -> None:
    body = zstandard.ZstdCompressor().compress(LINE * 1000)[:-10]
    url = api.route("/bad", compressed_body("zstd", body))
    with pytest.raises(HttpError, match="zstd response body is corrupt") as info:
        await create_el_pipeline(
            create_http_extractor(url, response_format="ndjson"), lambda b: None, logging=False
        ).run()
    assert info.value.url is not None


def test_corrupt_zstd_headers_are_reported() -> None:
    frame = zstandard.ZstdCompressor(write_content_size=False).compress(LINE * 100)
    header = 6  # magic, descriptor, window byte
    reserved = bytearray(frame)
    reserved[header] |= 0b110  # block type 3 is reserved
    for bad, message in ((bytes(reserved), "reserved block type"), (b"GARBAGE!", "not a zstd")):
        decoder = make_decoder("zstd")
        decoder.feed(bad)
        with pytest.raises(CorruptDataError, match=message):
            decoder.read(1 << 20)

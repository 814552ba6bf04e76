"""Hostile bodies: a CSV quote never closed, an endless NDJSON line, huge CSV fields, records
that are not objects and JSON nested a hundred thousand levels deep. Parsing is linear in the
body (each chunk scanned once while a record goes on), bounded by ``max_record_size`` and by
the nesting depth, and shared by files and HTTP."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from faultserver import FaultServer, Reply, Request

from ductwork import (
    FileFormatError,
    HttpError,
    create_el_pipeline,
    create_file_extractor,
    create_http_extractor,
)
from ductwork.connectors.parsers import CsvParser, JsonArrayParser, JsonlParser, text_codec

CHUNK = 64 * 1024
MIB = 1024 * 1024


def csv_parser(max_record_size: int = 64 * MIB) -> CsvParser:
    return CsvParser(
        "body",
        text_codec("utf-8"),
        None,
        max_record_size,
        delimiter=",",
        quotechar='"',
        header=True,
        field_names=None,
    )


def test_an_unclosed_quote_is_scanned_once_per_chunk() -> None:
    parser = csv_parser()
    parser.feed(b'id,note\n1,"opened and never closed\n')
    line = b"more text, with a comma and a line end\n"
    chunk = line * (CHUNK // len(line))
    # The first line end past the quote lets the reader find the record open; from then on
    # each chunk is scanned once, and the pending text is never parsed again.
    assert parser.feed(chunk) == []
    for _ in range(16 * MIB // len(chunk)):
        before = parser.scanned
        assert parser.feed(chunk) == []
        assert parser.scanned - before == len(chunk)
    with pytest.raises(FileFormatError, match="unterminated quoted field"):
        parser.finish()


def test_a_quoted_field_across_many_chunks_is_parsed_once() -> None:
    parser = csv_parser()
    body = b'id,note\n1,"' + b"line\n" * 200_000 + b'"\n2,short\n'
    records = []
    for start in range(0, len(body), CHUNK):
        records += parser.feed(body[start : start + CHUNK])
    records += parser.finish()
    assert [r["id"] for r in records] == ["1", "2"]
    assert records[0]["note"] == "line\n" * 200_000
    assert parser.scanned <= 3 * len(body)


def test_stray_quotes_in_unquoted_fields_stay_linear() -> None:
    parser = csv_parser()
    rows = b"".join(b"%d,5'%d\",x\n" % (i, i) for i in range(100_000))
    body = b"id,height,tag\n" + rows
    records = []
    for start in range(0, len(body), 1000):
        records += parser.feed(body[start : start + 1000])
    records += parser.finish()
    assert len(records) == 100_000
    assert parser.scanned <= 3 * len(body)


def test_an_endless_line_stops_at_max_record_size() -> None:
    parser = JsonlParser("body", text_codec("utf-8"), None, MIB)
    parser.feed(b'{"a": 1}\n{"a": "')
    sizes = []

    def feed_forever() -> None:
        for _ in range(64):
            parser.feed(b"x" * CHUNK)
            sizes.append(parser._size)

    with pytest.raises(FileFormatError, match="max_record_size"):
        feed_forever()
    assert max(sizes) <= MIB


def stream(body: bytes, content_type: str, pieces: int = CHUNK) -> Any:
    def handler(request: Request, reply: Reply) -> None:
        reply.start_chunked(content_type)
        for start in range(0, len(body), pieces):
            reply.chunk(body[start : start + pieces])
        reply.end_chunked()

    return handler


async def run_http(url: str, **options: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with anyio.fail_after(30):
        await create_el_pipeline(
            create_http_extractor(url, **options), rows.extend, logging=False
        ).run()
    return rows


async def test_http_csv_with_an_unclosed_quote_fails_fast(api: FaultServer) -> None:
    body = b'id,note\n1,"never closed\n' + b"filler, text\n" * (8 * MIB // 13)
    url = api.route("/csv", stream(body, "text/csv"))
    with pytest.raises(HttpError, match="max_record_size") as info:
        await run_http(url, response_format="csv", max_record_size=4 * MIB)
    assert info.value.retryable is False


async def test_http_csv_body_of_8_mib_in_one_quoted_field(api: FaultServer) -> None:
    body = b'id,note\n1,"' + b"a, b\n" * (8 * MIB // 5) + b'"\n2,x\n'
    url = api.route("/csv", stream(body, "text/csv"))
    rows = await run_http(url, response_format="csv")
    assert [r["id"] for r in rows] == ["1", "2"]
    assert len(rows[0]["note"]) == 8 * MIB // 5 * 5


async def test_http_ndjson_line_without_end_is_bounded(api: FaultServer) -> None:
    body = b'{"id": 1}\n{"id": "' + b"x" * (8 * MIB)
    url = api.route("/ndjson", stream(body, "application/x-ndjson"))
    with pytest.raises(HttpError, match="max_record_size"):
        await run_http(url, response_format="ndjson", max_record_size=MIB)


@pytest.mark.parametrize(
    ("fmt", "body"),
    [
        ("ndjson", b'{"id": 1}\n[1, 2]\n{"id": 3}\n'),
        ("ndjson", b'{"id": 1}\n"text"\n'),
        ("json", b'[{"id": 1}, 2, {"id": 3}]'),
        ("json", b'[{"id": 1}, null]'),
    ],
)
async def test_http_records_that_are_not_objects_fail_at_the_source(
    api: FaultServer, fmt: str, body: bytes
) -> None:
    url = api.route("/body", lambda request, reply: reply.send(body))
    with pytest.raises(HttpError, match=r"not a JSON object|expected a JSON object") as info:
        await run_http(url, response_format=fmt)
    assert info.value.retryable is False


async def test_csv_fields_longer_than_128_kib(tmp_path: Path, api: FaultServer) -> None:
    big = "z" * (1 * MIB)
    path = tmp_path / "wide.csv"
    path.write_text(f'id,blob\n1,{big}\n2,"{big}"\n')
    rows: list[dict[str, Any]] = []
    await create_el_pipeline(create_file_extractor(path), rows.extend, logging=False).run()
    assert [len(r["blob"]) for r in rows] == [MIB, MIB]
    url = api.route("/csv", stream(path.read_bytes(), "text/csv"))
    assert [len(r["blob"]) for r in await run_http(url, response_format="csv")] == [MIB, MIB]


NESTED = """
import resource, sys, anyio
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
from ductwork import FileFormatError, create_el_pipeline, create_file_extractor

async def main():
    try:
        await create_el_pipeline(create_file_extractor(sys.argv[1]), print, logging=False).run()
    except Exception as exc:
        cause = exc.__cause__ if isinstance(exc.__cause__, FileFormatError) else exc
        print(type(cause).__name__, cause)

anyio.run(main)
"""


def test_a_json_nesting_bomb_fails_before_it_takes_the_memory(tmp_path: Path) -> None:
    # ijson's memory grows with the square of the depth: these 200 KB would take about 25 GB.
    path = tmp_path / "deep.json"
    path.write_bytes(b"[" * 100_000 + b"]" * 100_000)
    done = subprocess.run(
        [sys.executable, "-c", NESTED, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("FileFormatError"), done.stdout
    assert "nested deeper than 1024" in done.stdout


@pytest.mark.parametrize("piece", [1, 7, 4096])
def test_json_nested_to_the_limit_is_read(tmp_path: Path, piece: int) -> None:
    # 1 array, 1022 objects and 1 array: 1024 levels, strings holding brackets and escapes
    inner = b'{"s": "[\\\\\\"{", "v": ' * 1022 + b"[1]" + b"}" * 1022
    body = b'[{"a": "]]]"}, ' + inner + b"]"
    parser = JsonArrayParser("x.json", text_codec("utf-8"), None, MIB, records_path=None)
    records = []
    for start in range(0, len(body), piece):
        records += parser.feed(body[start : start + piece])
    records += parser.finish()
    assert len(records) == 2
    deeper = b"[" + b'{"v": ' * 1024 + b"1" + b"}" * 1024 + b"]"
    parser = JsonArrayParser("x.json", text_codec("utf-8"), None, MIB, records_path=None)

    def feed_all() -> None:
        for start in range(0, len(deeper), piece):
            parser.feed(deeper[start : start + piece])

    with pytest.raises(FileFormatError, match="nested deeper than 1024"):
        feed_all()


def test_a_json_array_item_stops_at_max_record_size(tmp_path: Path) -> None:
    parser = JsonArrayParser("x.json", text_codec("utf-8"), None, MIB, records_path="data")
    assert parser.feed(b'{"meta": "' + b"m" * (2 * MIB) + b'", "data": [{"a": 1}, {"b": "') == [
        {"a": 1}
    ]
    fed = 0

    def feed_forever() -> None:
        nonlocal fed
        for _ in range(64):
            parser.feed(b"x" * CHUNK)
            fed += CHUNK

    with pytest.raises(FileFormatError, match="max_record_size"):
        feed_forever()
    assert fed <= MIB
    path = tmp_path / "items.json"
    path.write_bytes(b'[{"a": "' + b"x" * (MIB // 2) + b'"}, {"b": "' + b"y" * (3 * MIB) + b'"}]')
    rows: list[dict[str, Any]] = []
    extractor = create_file_extractor(path, max_record_size=MIB)
    pipeline = create_el_pipeline(extractor, rows.extend, logging=False)
    with pytest.raises(FileFormatError, match="max_record_size"):
        anyio.run(pipeline.run)
    assert len(rows) <= 1

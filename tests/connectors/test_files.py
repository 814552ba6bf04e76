"""File connector: round trips, globs, encodings, malformed input, atomic writes, append,
placeholders and configuration errors. Everything runs against real files in ``tmp_path``."""

from __future__ import annotations

import bz2
import gc
import gzip
import importlib.util
import os
import stat
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
import zstandard

from ductwork import (
    Batch,
    ConfigError,
    ExtractError,
    FileExtractor,
    FileExtractorConfig,
    FileFormatError,
    FileLoader,
    FileLoaderConfig,
    LoadError,
    PipelineError,
    RunContext,
    RunResult,
    StageStats,
    TimeWindow,
    create_el_pipeline,
    create_etl_pipeline,
    create_file_extractor,
    create_file_loader,
)

COMPRESSIONS = {"none": "", "gzip": ".gz", "bz2": ".bz2", "zstd": ".zst"}
FORMATS = ("csv", "jsonl", "json")

TRICKY = [
    {"id": "1", "name": "Ada Lovelace", "note": "plain"},
    {"id": "2", "name": 'Grace, "Amazing" Hopper', "note": "comma, and quotes"},
    {"id": "3", "name": "Jürgen Groß", "note": "line\nbreak and ünïcödé ✓"},
    {"id": "4", "name": "", "note": "empty name"},
    {"id": "5", "name": "tab\there", "note": "crlf\r\ninside"},
]


def compress(data: bytes, codec: str) -> bytes:
    if codec == "gzip":
        return gzip.compress(data)
    if codec == "bz2":
        return bz2.compress(data)
    if codec == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    return data


def decompress(data: bytes, codec: str) -> bytes:
    if codec == "gzip":
        return gzip.decompress(data)
    if codec == "bz2":
        return bz2.decompress(data)
    if codec == "zstd":
        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    return data


def many(n: int) -> list[dict[str, str]]:
    return [{"id": str(i), "name": f"name {i}", "note": TRICKY[i % 5]["note"]} for i in range(n)]


def source(records: list[dict[str, Any]], batch_size: int = 100) -> Any:
    async def extract() -> AsyncIterator[Batch]:
        for start in range(0, len(records), batch_size):
            yield [dict(r) for r in records[start : start + batch_size]]

    return extract


async def write(path: Path | str, records: list[dict[str, Any]], **options: Any) -> RunResult:
    loader = create_file_loader(path, **options)
    return await create_el_pipeline(source(records), loader, logging=False).run()


async def read(path: Path | str, **options: Any) -> tuple[list[dict[str, Any]], RunResult]:
    rows: list[dict[str, Any]] = []
    extractor = create_file_extractor(path, **options)
    result = await create_el_pipeline(extractor, rows.extend, logging=False).run()
    return rows, result


async def read_error(path: Path | str, **options: Any) -> FileFormatError:
    with pytest.raises(FileFormatError) as info:
        await read(path, **options)
    return info.value


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("codec", COMPRESSIONS)
@pytest.mark.parametrize("fmt", FORMATS)
async def test_round_trip_every_format_and_compression(
    tmp_path: Path, fmt: str, codec: str
) -> None:
    records = TRICKY + many(3000)
    path = tmp_path / f"data.{fmt}{COMPRESSIONS[codec]}"
    result = await write(path, records)
    assert result.records_out == len(records)
    assert result.stages[-1].metrics["bytes_written"] == path.stat().st_size
    raw = decompress(path.read_bytes(), codec)
    if fmt == "jsonl":
        assert raw.count(b"\n") == len(records)
    back, result = await read(path, chunk_size=4096, batch_size=250)
    assert back == records
    assert result.stages[0].batches_out == -(-len(records) // 250)
    assert result.stages[0].metrics["files_read"] == 1
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("codec", ["gzip", "bz2", "zstd"])
async def test_explicit_compression_overrides_the_extension(tmp_path: Path, codec: str) -> None:
    path = tmp_path / "data.bin"
    await write(path, TRICKY, format="jsonl", compression=codec)
    assert decompress(path.read_bytes(), codec).count(b"\n") == len(TRICKY)
    back, _ = await read(path, file_format="jsonl", compression=codec)
    assert back == TRICKY


@pytest.mark.parametrize("codec", ["gzip", "bz2", "zstd"])
async def test_reads_concatenated_members(tmp_path: Path, codec: str) -> None:
    lines = [orjson.dumps({"n": n}) + b"\n" for n in range(10)]
    data = b"".join(compress(b"".join(lines[i : i + 3]), codec) for i in range(0, 10, 3))
    path = tmp_path / f"multi.jsonl{COMPRESSIONS[codec]}"
    path.write_bytes(data)
    back, _ = await read(path)
    assert [r["n"] for r in back] == list(range(10))


async def test_gzip_padding_after_the_last_member_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "padded.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"a": 1}\n') + b"\x00" * 512)
    back, _ = await read(path)
    assert back == [{"a": 1}]


async def test_json_values_keep_their_types(tmp_path: Path) -> None:
    records = [{"i": 1, "f": 1.5, "b": True, "n": None, "l": [1, {"x": "y"}], "d": {"k": 2}}]
    for fmt in ("jsonl", "json"):
        path = tmp_path / f"typed.{fmt}"
        await write(path, records)
        back, _ = await read(path)
        assert back == records
        assert type(back[0]["f"]) is float


async def test_json_records_path_reads_an_array_inside_an_object(tmp_path: Path) -> None:
    payload = {"meta": {"count": 3}, "data": {"items": [{"n": 1}, {"n": 2}, {"n": 3}]}}
    path = tmp_path / "nested.json"
    path.write_bytes(orjson.dumps(payload, option=orjson.OPT_INDENT_2))
    back, _ = await read(path, records_path="data.items", batch_size=2, chunk_size=1024)
    assert back == [{"n": 1}, {"n": 2}, {"n": 3}]


@pytest.mark.parametrize(
    ("records_path", "message"),
    [
        ("data.itemz", "records_path 'data.itemz' is not in the document"),
        ("data", "records_path 'data' is an object, not an array"),
        ("meta.count", "records_path 'meta.count' is a number, not an array"),
    ],
)
async def test_a_wrong_records_path_is_an_error_not_zero_records(
    tmp_path: Path, records_path: str, message: str
) -> None:
    payload = {"meta": {"count": 3}, "data": {"items": [{"n": 1}]}}
    path = tmp_path / "nested.json"
    path.write_bytes(orjson.dumps(payload))
    err = await read_error(path, records_path=records_path, chunk_size=1024)
    assert message in str(err)
    assert err.file == str(path)


async def test_an_empty_array_at_records_path_is_zero_records(tmp_path: Path) -> None:
    path = tmp_path / "empty.json"
    path.write_bytes(orjson.dumps({"data": {"items": []}, "after": [1, 2]}))
    back, result = await read(path, records_path="data.items")
    assert back == []
    assert result.records_in == 0


async def test_records_path_found_late_in_a_large_document(tmp_path: Path) -> None:
    payload = {"padding": ["x" * 100] * 2000, "data": [{"n": i} for i in range(3000)]}
    path = tmp_path / "late.json"
    path.write_bytes(orjson.dumps(payload))
    back, _ = await read(path, records_path="data", chunk_size=4096)
    assert [r["n"] for r in back] == list(range(3000))


async def test_csv_options_delimiter_quotechar_and_field_names(tmp_path: Path) -> None:
    path = tmp_path / "semi.txt"
    path.write_text("1;'a;b';x\n2;'it''s';y\n", encoding="utf-8")
    back, _ = await read(
        path,
        file_format="csv",
        delimiter=";",
        quotechar="'",
        header=False,
        field_names=["id", "text", "tag"],
    )
    assert back == [{"id": "1", "text": "a;b", "tag": "x"}, {"id": "2", "text": "it's", "tag": "y"}]

    path = tmp_path / "renamed.csv"
    path.write_text("a,b\n1,2\n", encoding="utf-8")
    back, _ = await read(path, field_names=["x", "y"])
    assert back == [{"x": "1", "y": "2"}]


async def test_tsv_extension_implies_tab_delimiter(tmp_path: Path) -> None:
    path = tmp_path / "data.tsv"
    path.write_text("a\tb\n1\t2,3\n", encoding="utf-8")
    back, _ = await read(path)
    assert back == [{"a": "1", "b": "2,3"}]


async def test_blank_lines_and_crlf_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "crlf.csv"
    path.write_bytes(b"a,b\r\n1,2\r\n\r\n3,4\r\n")
    back, _ = await read(path)
    assert back == [{"a": "1", "b": "2"}, {"a": "3", "b": "4"}]
    path = tmp_path / "crlf.jsonl"
    path.write_bytes(b'{"a": 1}\r\n\r\n   \n{"a": 2}')
    back, _ = await read(path)
    assert back == [{"a": 1}, {"a": 2}]


async def test_records_and_multibyte_characters_span_read_blocks(tmp_path: Path) -> None:
    long_note = "é" * 3000 + "\n" + "✓" * 1500  # longer than a block, with a line break inside
    records = [{"id": str(i), "note": long_note if i % 7 == 0 else "é✓"} for i in range(60)]
    for fmt in FORMATS:
        path = tmp_path / f"span.{fmt}.gz"
        await write(path, records)
        back, _ = await read(path, chunk_size=1024, batch_size=7)
        assert back == records, fmt


async def test_batches_have_batch_size_records_and_span_files(tmp_path: Path) -> None:
    for index in range(3):
        (tmp_path / f"part-{index}.jsonl").write_text(
            "".join(f'{{"n": {index * 10 + n}}}\n' for n in range(10))
        )
    sizes: list[int] = []

    def sink(batch: Batch) -> None:
        sizes.append(len(batch))

    extractor = create_file_extractor(tmp_path / "part-*.jsonl", batch_size=4)
    await create_el_pipeline(extractor, sink, logging=False).run()
    assert sizes == [4, 4, 4, 4, 4, 4, 4, 2]


async def test_yields_batches_before_reading_the_whole_file(tmp_path: Path) -> None:
    """Streaming: the first batch arrives when only the first chunk has been read."""
    for fmt, name in (("jsonl", "big.jsonl.gz"), ("json", "big.json"), ("csv", "big.csv")):
        path = tmp_path / name
        await write(path, many(20_000))
        ctx = RunContext()
        extractor = create_file_extractor(path, batch_size=10, chunk_size=4096)
        stats = StageStats("read", "extract")
        stage_ctx = ctx.for_stage("read", stats)
        agen = extractor.extract(stage_ctx)
        first = await agen.__anext__()
        await agen.aclose()
        assert len(first) == 10, fmt
        assert 0 < stats.metrics["bytes_read"] <= 2 * 4096 < path.stat().st_size, fmt


# --------------------------------------------------------------------------- globs and paths


async def test_glob_reads_every_match_in_sorted_order(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    paths = [tmp_path / "b.jsonl", tmp_path / "a.jsonl.gz", tmp_path / "sub" / "c.jsonl"]
    for n, path in enumerate(paths):
        data = orjson.dumps({"file": path.name, "n": n}) + b"\n"
        path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    (tmp_path / "ignored.csv").write_text("x\n1\n")
    back, result = await read(tmp_path / "**" / "*.jsonl*", file_format="jsonl")
    assert [r["file"] for r in back] == ["a.jsonl.gz", "b.jsonl", "c.jsonl"]
    assert result.stages[0].metrics["files_read"] == 3


async def test_glob_without_match_fails_unless_allowed(tmp_path: Path) -> None:
    with pytest.raises(ExtractError, match="no file matches"):
        await read(tmp_path / "*.jsonl")
    back, result = await read(tmp_path / "*.jsonl", allow_no_match=True)
    assert back == []
    assert result.succeeded


async def test_missing_file_fails_with_its_path(tmp_path: Path) -> None:
    with pytest.raises(ExtractError, match="file not found") as info:
        await read(tmp_path / "absent.csv")
    assert "absent.csv" in str(info.value)
    assert info.value.stage == "read_files"


async def test_extractor_path_placeholders_come_from_the_run(tmp_path: Path) -> None:
    (tmp_path / "2024-03-01.jsonl").write_text('{"ok": true}\n')
    rows: list[dict[str, Any]] = []
    extractor = create_file_extractor(str(tmp_path / "{date}.jsonl"))
    window = TimeWindow(datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 3, 2, tzinfo=UTC))
    await create_el_pipeline(extractor, rows.extend, logging=False).run(window=window)
    assert rows == [{"ok": True}]


# --------------------------------------------------------------------------- encodings


@pytest.mark.parametrize("encoding", ["utf-8", "latin-1", "utf-8-sig", "cp1252", "utf-16"])
@pytest.mark.parametrize("fmt", FORMATS)
async def test_encodings_round_trip(tmp_path: Path, fmt: str, encoding: str) -> None:
    records = [{"id": "1", "name": "Jürgen Groß", "city": "Zürich"}, {"id": "2", "name": "Zoë"}]
    records[1]["city"] = "Köln"
    path = tmp_path / f"enc.{fmt}"
    await write(path, records, encoding=encoding)
    raw = path.read_bytes()
    assert raw.decode(encoding).count("Zürich") == 1
    if encoding == "utf-8-sig":
        assert raw.startswith(b"\xef\xbb\xbf")
    back, _ = await read(path, encoding=encoding, chunk_size=1024)
    assert back == records


@pytest.mark.parametrize("fmt", FORMATS)
async def test_utf8_byte_order_mark_is_dropped(tmp_path: Path, fmt: str) -> None:
    content = {
        "csv": "name,n\nÅsa,1\n",
        "jsonl": '{"name": "Åsa", "n": "1"}\n',
        "json": '[{"name": "Åsa", "n": "1"}]',
    }[fmt]
    path = tmp_path / f"bom.{fmt}"
    path.write_bytes(b"\xef\xbb\xbf" + content.encode("utf-8"))
    back, _ = await read(path)  # plain utf-8
    assert back == [{"name": "Åsa", "n": "1"}]


async def test_latin1_file_is_read_as_latin1(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes("name\nJosé\n".encode("latin-1"))
    back, _ = await read(path, encoding="latin-1")
    assert back == [{"name": "José"}]
    error = await read_error(path)  # the same bytes are not utf-8
    assert error.line == 2
    assert "cannot decode as utf-8" in str(error)


# --------------------------------------------------------------------------- malformed input


def jsonl_lines(n: int) -> list[bytes]:
    return [orjson.dumps({"n": i, "pad": "x" * 50}) for i in range(n)]


async def test_malformed_json_line_names_file_line_and_snippet(tmp_path: Path) -> None:
    lines = jsonl_lines(500)
    lines[436] = b'{"n": 436, "pad": oops}'
    path = tmp_path / "bad.jsonl.gz"
    path.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    error = await read_error(path, chunk_size=1024)
    assert error.file == str(path)
    assert error.line == 437
    assert error.snippet is not None
    assert "oops" in error.snippet
    assert error.offset is not None
    assert error.offset > 436 * 60
    assert isinstance(error, ExtractError)
    assert f"{path}, line 437" in str(error)
    assert error.result is not None
    assert error.result.status == "failed"


async def test_json_line_that_is_not_an_object_is_malformed(tmp_path: Path) -> None:
    path = tmp_path / "array.jsonl"
    path.write_text('{"a": 1}\n[1, 2]\n')
    error = await read_error(path)
    assert error.line == 2
    assert "expected a JSON object, got an array" in str(error)


async def test_last_line_without_newline_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "tail.jsonl"
    path.write_text('{"a": 1}\n{"a": ')
    error = await read_error(path)
    assert error.line == 2


async def test_csv_row_with_wrong_field_count_names_the_line(tmp_path: Path) -> None:
    rows = ["id,name,note"] + [f'{i},n{i},"multi\nline"' for i in range(300)]
    rows.insert(200, "199x,too,many,fields")  # after 199 two-line records and the header
    path = tmp_path / "bad.csv"
    path.write_text("\n".join(rows) + "\n")
    error = await read_error(path, chunk_size=1024)
    assert error.line == 1 + 199 * 2 + 1
    assert "expected 3 fields, got 4" in str(error)
    assert error.snippet == "199x,too,many,fields"


async def test_csv_short_row_is_malformed(tmp_path: Path) -> None:
    path = tmp_path / "short.csv"
    path.write_text("a,b,c\n1,2,3\n4,5\n")
    error = await read_error(path)
    assert (error.line, "expected 3 fields, got 2" in str(error)) == (3, True)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
async def test_undecodable_bytes_name_line_and_offset(tmp_path: Path, fmt: str) -> None:
    head = b"name\n" if fmt == "csv" else b""
    good = b'"ok"\n' if fmt == "csv" else b'{"name": "ok"}\n'
    bad = b'"caf\xe9"\n' if fmt == "csv" else b'{"name": "caf\xe9"}\n'
    data = head + good * 100 + bad + good * 5
    path = tmp_path / f"bytes.{fmt}"
    path.write_bytes(data)
    error = await read_error(path, chunk_size=1024)
    assert error.line == (102 if fmt == "csv" else 101)
    assert error.offset == data.index(b"\xe9")
    assert "cannot decode as utf-8" in str(error)


async def test_truncated_gzip_stream_is_malformed(tmp_path: Path) -> None:
    data = gzip.compress(b"".join(line + b"\n" for line in jsonl_lines(2000)))
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(data[: len(data) // 2])
    error = await read_error(path)
    assert "truncated gzip stream" in str(error)
    assert error.line is not None
    assert error.line > 1
    assert error.offset is not None
    assert error.offset > 0


@pytest.mark.parametrize("codec", ["bz2", "zstd"])
async def test_truncated_bz2_and_zstd_streams_are_malformed(tmp_path: Path, codec: str) -> None:
    data = compress(b"".join(line + b"\n" for line in jsonl_lines(2000)), codec)
    path = tmp_path / f"cut.jsonl{COMPRESSIONS[codec]}"
    path.write_bytes(data[: len(data) - 20])
    error = await read_error(path)
    assert f"truncated {codec} stream" in str(error)


@pytest.mark.parametrize("codec", ["gzip", "bz2", "zstd"])
async def test_corrupt_compressed_data_is_malformed(tmp_path: Path, codec: str) -> None:
    path = tmp_path / f"garbage.jsonl{COMPRESSIONS[codec]}"
    path.write_bytes(b"this is not compressed at all" * 10)
    error = await read_error(path)
    assert f"corrupt {codec} data" in str(error)
    assert error.file == str(path)


async def test_json_array_syntax_error_names_the_exact_line(tmp_path: Path) -> None:
    items = [orjson.dumps({"n": i, "pad": "y" * 40}).decode() for i in range(400)]
    items[333] = '{"n": 333, "pad": "missing comma" "x": 1}'
    path = tmp_path / "bad.json.gz"
    path.write_bytes(gzip.compress(("[\n" + ",\n".join(items) + "\n]\n").encode()))
    error = await read_error(path, chunk_size=1024)
    assert error.line == 335  # "[" is line 1
    assert error.snippet is not None
    assert "missing comma" in error.snippet
    assert "malformed JSON" in str(error)


async def test_incomplete_json_array_is_malformed(tmp_path: Path) -> None:
    path = tmp_path / "open.json"
    path.write_text('[\n{"a": 1},\n{"a": 2}\n')
    error = await read_error(path)
    assert "incomplete JSON" in str(error)
    assert error.line == 4


async def test_json_that_is_not_an_array_needs_records_path(tmp_path: Path) -> None:
    path = tmp_path / "object.json"
    path.write_text('\n  {"items": []}')
    error = await read_error(path)
    assert "expected a JSON array" in str(error)
    assert error.line == 2


async def test_json_array_item_that_is_not_an_object(tmp_path: Path) -> None:
    path = tmp_path / "mixed.json"
    path.write_text('[{"a": 1}, 2, {"a": 3}]')
    error = await read_error(path)
    assert "array item 2 is a number, not an object" in str(error)
    back, result = await read(path, error_handling="skip")
    assert back == [{"a": 1}, {"a": 3}]
    assert result.stages[0].metrics["records_skipped"] == 1


async def test_csv_unterminated_quote_and_bad_quoting(tmp_path: Path) -> None:
    path = tmp_path / "open.csv"
    path.write_text('a,b\n1,2\n3,"never closed\n4,5\n')
    error = await read_error(path)
    assert error.line == 3
    assert "unterminated quoted field" in str(error)
    path = tmp_path / "after.csv"
    path.write_text('a,b\n1,"x"y\n')
    error = await read_error(path)
    assert error.line == 2
    assert "malformed CSV" in str(error)


async def test_csv_duplicate_header_names(tmp_path: Path) -> None:
    path = tmp_path / "dup.csv"
    path.write_text("id,name,id\n1,2,3\n")
    error = await read_error(path)
    assert "duplicate column name 'id'" in str(error)
    assert error.line == 1


async def test_stray_quote_inside_unquoted_field_is_data(tmp_path: Path) -> None:
    rows = "".join(f"{i},5'{i}\",x\n" for i in range(2000))
    path = tmp_path / "inches.csv"
    path.write_text("id,height,tag\n" + rows)
    back, _ = await read(path, chunk_size=1024)
    assert len(back) == 2000
    assert back[1999] == {"id": "1999", "height": "5'1999\"", "tag": "x"}


async def test_line_longer_than_max_record_size(tmp_path: Path) -> None:
    path = tmp_path / "long.jsonl"
    path.write_text('{"a": 1}\n{"a": "' + "z" * 5000 + '"}\n')
    error = await read_error(path, chunk_size=1024, max_record_size=2048)
    assert error.line == 2
    assert "max_record_size" in str(error)


async def test_skip_counts_bad_records_and_keeps_the_good_ones(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    jsonl = tmp_path / "mixed.jsonl"
    jsonl.write_bytes(b'{"a": 1}\nnot json\n{"a": 2}\n[3]\n{"a": "\xff"}\n{"a": 4}\n')
    back, result = await read(jsonl, error_handling="skip")
    assert back == [{"a": 1}, {"a": 2}, {"a": 4}]
    assert result.stages[0].metrics["records_skipped"] == 3
    assert "line 2" in caplog.text
    assert "line 5" in caplog.text

    csv_path = tmp_path / "mixed.csv"
    csv_path.write_bytes(b"a,b\n1,2\n3\n4,5\n6,7,8\n\xff,9\n10,11\n")
    back, result = await read(csv_path, error_handling="skip", encoding="utf-8")
    assert back == [{"a": "1", "b": "2"}, {"a": "4", "b": "5"}, {"a": "10", "b": "11"}]
    assert result.stages[0].metrics["records_skipped"] == 3


async def test_skip_still_fails_on_corrupt_compression(tmp_path: Path) -> None:
    path = tmp_path / "cut.jsonl.gz"
    data = gzip.compress(b'{"a": 1}\n' * 1000)
    path.write_bytes(data[:-10])
    with pytest.raises(FileFormatError, match="truncated gzip"):
        await read(path, error_handling="skip")


# --------------------------------------------------------------------------- atomic writes


async def test_failed_run_leaves_previous_file_untouched(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl.gz"
    await write(target, [{"v": "old"}])
    before = target.read_bytes()

    async def failing() -> AsyncIterator[Batch]:
        for n in range(50):
            yield [{"v": "new", "n": n, "pad": "p" * 100} for _ in range(1000)]
        raise RuntimeError("source broke")

    loader = create_file_loader(target, flush_size=4096)
    pipeline = create_el_pipeline(failing, loader, logging=False)
    with pytest.raises(PipelineError, match="source broke"):
        await pipeline.run()
    assert target.read_bytes() == before
    assert leftovers(tmp_path) == []


async def test_cancelled_run_leaves_nothing_partial(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    target.write_text("v\nold\n")
    written = anyio.Event()

    async def endless() -> AsyncIterator[Batch]:
        n = 0
        while True:
            yield [{"v": str(n)}] * 1000
            n += 1
            if n == 20:
                written.set()
            await anyio.sleep(0)

    loader = create_file_loader(target, flush_size=1024)
    pipeline = create_el_pipeline(endless, loader, logging=False)
    temp_seen: list[str] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(pipeline.run)
        await written.wait()
        temp_seen = leftovers(tmp_path)
        tg.cancel_scope.cancel()
    assert len(temp_seen) == 1  # the run was writing its temporary file
    assert target.read_text() == "v\nold\n"
    assert leftovers(tmp_path) == []


async def test_cancellation_inside_the_sink_block_discards_the_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "direct.jsonl.zst"
    loader = create_file_loader(target, flush_size=100)
    with anyio.move_on_after(0.05):
        async with loader.open(RunContext()) as sink:
            while True:
                await sink.write([{"a": 1}] * 100)
                await anyio.sleep(0.001)
    assert not target.exists()
    assert leftovers(tmp_path) == []


async def test_error_inside_the_sink_block_discards_the_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "direct.json"
    loader = create_file_loader(target)
    sink = loader.open(RunContext())

    async def fail_inside() -> None:
        async with sink:
            await sink.write([{"a": 1}])
            raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await fail_inside()
    assert not target.exists()
    assert leftovers(tmp_path) == []
    with pytest.raises(RuntimeError, match="not open"):
        await sink.write([{"a": 2}])
    with pytest.raises(RuntimeError, match="only once"):
        async with sink:
            pass


async def test_overwrite_replaces_and_keeps_permissions(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    target.write_text('{"old": 1}\n')
    target.chmod(0o640)
    await write(target, [{"new": 1}])
    assert target.read_text() == '{"new":1}\n'
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


async def test_new_file_gets_default_permissions(tmp_path: Path) -> None:
    target = tmp_path / "fresh.jsonl"
    await write(target, [{"a": 1}])
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask


async def test_empty_run_writes_an_empty_document(tmp_path: Path) -> None:
    for name, expected in (("e.jsonl", b""), ("e.json", b"[]\n"), ("e.csv", b"")):
        await write(tmp_path / name, [])
        assert (tmp_path / name).read_bytes() == expected
    await write(tmp_path / "h.csv", [], field_names=["a", "b"])
    assert (tmp_path / "h.csv").read_bytes() == b"a,b\n"
    await write(tmp_path / "e.jsonl.gz", [])
    assert gzip.decompress((tmp_path / "e.jsonl.gz").read_bytes()) == b""


async def test_missing_directories_are_created(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "out.jsonl"
    await write(target, [{"x": 1}])
    assert target.read_text() == '{"x":1}\n'
    with pytest.raises(LoadError):
        await write(tmp_path / "c" / "out.jsonl", [{"x": 1}], make_dirs=False)


# --------------------------------------------------------------------------- append


@pytest.mark.parametrize("codec", COMPRESSIONS)
async def test_append_jsonl(tmp_path: Path, codec: str) -> None:
    target = tmp_path / f"log.jsonl{COMPRESSIONS[codec]}"
    await write(target, [{"run": 1}], mode="append")
    await write(target, [{"run": 2}, {"run": 3}], mode="append")
    back, _ = await read(target)
    assert back == [{"run": 1}, {"run": 2}, {"run": 3}]
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("codec", ["none", "gzip"])
async def test_append_csv_writes_the_header_once_in_the_file_order(
    tmp_path: Path, codec: str
) -> None:
    target = tmp_path / f"log.csv{COMPRESSIONS[codec]}"
    await write(target, [{"a": "1", "b": "2"}], mode="append")
    await write(target, [{"b": "4", "a": "3"}], mode="append")  # other key order
    text = decompress(target.read_bytes(), codec).decode()
    assert text == "a,b\n1,2\n3,4\n"


async def test_append_json_continues_the_array(tmp_path: Path) -> None:
    target = tmp_path / "log.json"
    target.write_text("[]\n")
    await write(target, [{"n": 1}], mode="append")
    await write(target, [{"n": 2}, {"n": 3}], mode="append")
    assert orjson.loads(target.read_bytes()) == [{"n": 1}, {"n": 2}, {"n": 3}]
    target.write_text('{"not": "an array"}')
    with pytest.raises(LoadError, match="does not end with a JSON array"):
        await write(target, [{"n": 4}], mode="append")
    assert target.read_text() == '{"not": "an array"}'
    assert leftovers(tmp_path) == []


async def test_append_nothing_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    target = tmp_path / "same.jsonl.gz"
    await write(target, [{"n": 1}])
    before = (target.read_bytes(), target.stat().st_mtime_ns)
    await write(target, [], mode="append")
    assert (target.read_bytes(), target.stat().st_mtime_ns) == before


async def test_failed_append_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    target = tmp_path / "keep.jsonl"
    await write(target, [{"n": 1}])

    async def failing() -> AsyncIterator[Batch]:
        yield [{"n": 2}]
        raise RuntimeError("stop")

    loader = create_file_loader(target, mode="append", flush_size=1)
    with pytest.raises(PipelineError):
        await create_el_pipeline(failing, loader, logging=False).run()
    assert target.read_text() == '{"n":1}\n'
    assert leftovers(tmp_path) == []


# --------------------------------------------------------------------------- placeholders


async def test_placeholders_are_filled_from_the_run(tmp_path: Path) -> None:
    loader = create_file_loader(
        str(tmp_path / "{pipeline}" / "{window.start:%Y%m%d}-{region}-{run_id}.jsonl")
    )
    pipeline = create_el_pipeline(source([{"a": 1}]), loader, name="daily", logging=False)
    window = TimeWindow(datetime(2024, 5, 6, tzinfo=UTC), datetime(2024, 5, 7, tzinfo=UTC))
    result = await pipeline.run(params={"region": "eu"}, window=window, run_id="r1")
    assert result.succeeded
    assert (tmp_path / "daily" / "20240506-eu-r1.jsonl").read_text() == '{"a":1}\n'

    loader = create_file_loader(str(tmp_path / "{date}.jsonl"))
    await create_el_pipeline(source([{"a": 1}]), loader, logging=False).run(window=window)
    assert (tmp_path / "2024-05-06.jsonl").exists()


async def test_unknown_placeholder_fails_naming_it(tmp_path: Path) -> None:
    loader = create_file_loader(str(tmp_path / "{nope}.jsonl"))
    with pytest.raises(LoadError, match="nope") as info:
        await create_el_pipeline(source([{"a": 1}]), loader, logging=False).run()
    assert "known:" in str(info.value)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- writer details


async def test_csv_columns_extra_and_missing_fields(tmp_path: Path) -> None:
    target = tmp_path / "cols.csv"
    await write(target, [{"a": 1, "b": None}, {"a": 2}], field_names=["a", "b"])
    assert target.read_text() == "a,b\n1,\n2,\n"
    with pytest.raises(LoadError, match=r"record 2 has fields that are not CSV columns: 'c'"):
        await write(target, [{"a": 1, "b": 2}, {"a": 1, "c": 3}])
    assert target.read_text() == "a,b\n1,\n2,\n"
    await write(target, [{"a": 1, "b": 2}, {"a": 1, "c": 3}], extra_fields="ignore")
    assert target.read_text() == "a,b\n1,2\n1,\n"
    await write(target, [{"only": "x"}, {"only": "y"}])
    assert target.read_text() == "only\nx\ny\n"


async def test_csv_crlf_and_no_header(tmp_path: Path) -> None:
    target = tmp_path / "plain.csv"
    await write(target, [{"a": 1, "b": 2}], line_terminator="\r\n", header=False)
    assert target.read_bytes() == b"1,2\r\n"


async def test_json_encode_error_names_the_record(tmp_path: Path) -> None:
    from decimal import Decimal

    target = tmp_path / "dec.jsonl"
    with pytest.raises(LoadError, match=r"batch 1: record 2 cannot be encoded as JSON"):
        await write(target, [{"v": 1}, {"v": Decimal("1.5")}])
    assert not target.exists()
    await write(target, [{"v": Decimal("1.5")}], json_default=str)
    assert target.read_text() == '{"v":"1.5"}\n'


async def test_unencodable_character_names_the_batch(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match=r"batch 1: cannot encode '✓' as latin-1"):
        await write(tmp_path / "x.csv", [{"a": "✓"}], encoding="latin-1")


async def test_compression_level_is_applied(tmp_path: Path) -> None:
    records = many(3000)
    await write(tmp_path / "fast.jsonl.gz", records, compression_level=1)
    await write(tmp_path / "small.jsonl.gz", records, compression_level=9)
    fast = (tmp_path / "fast.jsonl.gz").stat().st_size
    small = (tmp_path / "small.jsonl.gz").stat().st_size
    assert small < fast


async def test_a_loader_runs_again_with_fresh_output(tmp_path: Path) -> None:
    loader = create_file_loader(tmp_path / "again.jsonl", fsync=False)
    pipeline = create_el_pipeline(source([{"a": 1}]), loader, logging=False)
    await pipeline.run()
    await pipeline.run()
    assert (tmp_path / "again.jsonl").read_text() == '{"a":1}\n'


async def test_file_to_file_etl(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text("id,price\n1,2.5\n2,4\n")

    def to_numbers(batch: Batch) -> Batch:
        return [{"id": int(r["id"]), "price": float(r["price"])} for r in batch]

    pipeline = create_etl_pipeline(
        create_file_extractor(src),
        to_numbers,
        create_file_loader(tmp_path / "out.json"),
        logging=False,
    )
    result = await pipeline.run()
    assert result.records_out == 2
    assert orjson.loads((tmp_path / "out.json").read_bytes()) == [
        {"id": 1, "price": 2.5},
        {"id": 2, "price": 4.0},
    ]


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"file_path": "x.csv", "batch_size": 0}, "batch_size"),
        ({"file_path": "x.csv", "encoding": "klingon"}, "encoding"),
        ({"file_path": "x.dat"}, "file_format"),
        ({"file_path": "x.csv", "file_format": "xml"}, "file_format"),
        ({"file_path": "x.csv", "delimiter": ";;"}, "delimiter"),
        ({"file_path": "x.csv", "quotechar": ","}, "quotechar"),
        ({"file_path": "x.csv", "header": False}, "header"),
        ({"file_path": "x.csv", "records_path": "a.b"}, "records_path"),
        ({"file_path": "x.json", "records_path": "a..b"}, "records_path"),
        ({"file_path": "x.csv", "field_names": ["a", "a"]}, "field_names"),
        ({"file_path": "x.csv", "error_handling": "ignore"}, "error_handling"),
        ({"file_path": "x.csv", "compression": "lzma"}, "compression"),
        ({"file_path": "{oops.csv"}, "file_path"),
        ({"file_path": ""}, "file_path"),
        ({"file_path": "x.csv", "no_such_option": 1}, "no_such_option"),
    ],
)
def test_bad_extractor_config_names_the_field(options: dict[str, Any], field: str) -> None:
    path = options.pop("file_path")
    with pytest.raises(ConfigError) as info:
        create_file_extractor(path, **options)
    assert field in [name for name, _ in info.value.errors], info.value.errors
    assert field in str(info.value)


async def test_on_error_is_a_deprecated_alias_of_error_handling(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"a": 1}\nnot json\n{"a": 2}\n')
    with pytest.warns(DeprecationWarning, match="use error_handling") as caught:
        extractor = create_file_extractor(path, on_error="skip")
    assert caught[0].filename == __file__  # attributed to the caller's line
    assert extractor.config.error_handling == "skip"
    rows: list[dict[str, Any]] = []
    result = await create_el_pipeline(extractor, rows.extend, logging=False).run()
    assert rows == [{"a": 1}, {"a": 2}]
    assert result.stages[0].metrics["records_skipped"] == 1
    with (
        pytest.warns(DeprecationWarning, match="on_error"),
        pytest.raises(ConfigError, match="give one"),
    ):
        create_file_extractor(path, on_error="skip", error_handling="raise")


def test_an_unknown_option_is_named_with_the_closest_one() -> None:
    with pytest.raises(ConfigError) as info:
        create_file_extractor("x.csv", bach_size=10)
    assert info.value.errors == [
        ("bach_size", "Extra inputs are not permitted (did you mean 'batch_size'?)")
    ]
    assert "did you mean 'batch_size'?" in str(info.value)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"file_path": "x.jsonl.gz", "compression_level": 12}, "compression_level"),
        ({"file_path": "x.jsonl", "compression_level": 5}, "compression_level"),
        ({"file_path": "x.json.gz", "mode": "append"}, "mode"),
        ({"file_path": "x.jsonl", "mode": "update"}, "mode"),
        ({"file_path": "x.jsonl", "flush_size": 0}, "flush_size"),
        ({"file_path": "x", "format": None}, "format"),
        ({"file_path": "x.csv", "extra_fields": "drop"}, "extra_fields"),
        ({"file_path": "x.csv", "line_terminator": "\r"}, "line_terminator"),
        ({"file_path": "x.jsonl", "json_default": 3}, "json_default"),
    ],
)
def test_bad_loader_config_names_the_field(options: dict[str, Any], field: str) -> None:
    path = options.pop("file_path")
    with pytest.raises(ConfigError) as info:
        create_file_loader(path, **options)
    assert field in [name for name, _ in info.value.errors], info.value.errors


def test_configs_are_public_models(tmp_path: Path) -> None:
    config = FileExtractorConfig(file_path=str(tmp_path / "a.jsonl.zst"))
    assert config.file_format == "jsonl"
    extractor = FileExtractor(config)
    assert extractor.name == "read_files"
    assert "a.jsonl.zst" in repr(extractor)
    loader_config = FileLoaderConfig(file_path="out.csv.bz2", mode="append")
    assert (loader_config.format, loader_config.codec) == ("csv", "bz2")
    assert FileLoader(loader_config).name == "write_file"
    assert create_file_loader(Path("out.json"), name="save").name == "save"


async def test_files_example_converts_the_bundled_csv(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location(
        "files_example", root / "examples" / "files_pipeline.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = await module.main(tmp_path)
    assert result.stages[0].metrics["records_skipped"] == 2
    lines = gzip.decompress((tmp_path / "customers_to_jsonl.jsonl.gz").read_bytes()).splitlines()
    customers = [orjson.loads(line) for line in lines]
    assert len(customers) == result.records_out == 1000
    assert [c["customer_id"] for c in customers] == list(range(1, 1001))
    assert customers[96]["note"].startswith('prefers "paper" invoices')
    assert isinstance(customers[0]["lifetime_value"], float)


@pytest.mark.parametrize("enabled", [True, False])
async def test_garbage_collector_setting_is_restored(tmp_path: Path, enabled: bool) -> None:
    path = tmp_path / "gc.jsonl"
    path.write_text('{"a": [1]}\n' * 100 + "broken\n")
    was = gc.isenabled()
    try:
        if not enabled:
            gc.disable()
        back, _ = await read(path, error_handling="skip")
        assert len(back) == 100
        assert gc.isenabled() is enabled
        await read_error(path)
        assert gc.isenabled() is enabled
    finally:
        if was:
            gc.enable()

"""Unit tests of the HTTP extractor's parts: decoders, retry policy, rate limiter, pagination."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from time import perf_counter
from typing import Any

import anyio
import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ductwork import (
    BearerAuth,
    ConfigError,
    CursorPagination,
    HttpRetryConfig,
    LinkHeaderPagination,
    NextUrlPagination,
    OffsetPagination,
    PageNumberPagination,
    RateLimiter,
    create_http_extractor,
)
from ductwork.connectors.http import redact_url
from ductwork.connectors.http.formats import (
    ResponseFormatError,
    iter_csv,
    iter_ndjson,
    json_records,
)
from ductwork.connectors.http.limits import parse_retry_after
from ductwork.connectors.http.paging import PageInfo, PageRequest, PaginationError, get_path


async def chunks_of(data: bytes, cuts: list[int]) -> AsyncIterator[bytes]:
    previous = 0
    for cut in sorted({c for c in cuts if 0 < c < len(data)}):
        yield data[previous:cut]
        previous = cut
    yield data[previous:]


async def collect(stream: AsyncIterator[list[dict[str, Any]]]) -> list[list[dict[str, Any]]]:
    return [batch async for batch in stream]


# --------------------------------------------------------------------------- JSON Lines

json_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**53), 2**53),
    st.text(max_size=12),
)
records = st.lists(
    st.dictionaries(st.text(min_size=1, max_size=6), json_values, max_size=4), max_size=40
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=records,
    cuts=st.lists(st.integers(0, 4000), max_size=12),
    batch_size=st.integers(1, 9),
    crlf=st.booleans(),
    trailing_newline=st.booleans(),
)
def test_ndjson_any_chunking_gives_the_same_records(
    rows: list[dict[str, Any]], cuts: list[int], batch_size: int, crlf: bool, trailing_newline: bool
) -> None:
    end = b"\r\n" if crlf else b"\n"
    data = end.join(orjson.dumps(r) for r in rows)
    if trailing_newline and rows:
        data += end

    async def main() -> list[list[dict[str, Any]]]:
        return await collect(iter_ndjson(chunks_of(data, cuts), batch_size))

    batches = anyio.run(main)
    assert [r for b in batches for r in b] == rows
    assert all(len(b) == batch_size for b in batches[:-1])
    assert all(0 < len(b) <= batch_size for b in batches)


async def test_ndjson_error_names_the_line_across_chunks() -> None:
    data = b'{"a": 1}\n\n{"a": 2}\n{"a": 3\n{"a": 4}\n'
    with pytest.raises(ResponseFormatError, match="line 4") as info:
        await collect(iter_ndjson(chunks_of(data, [5, 12, 20]), 10))
    assert info.value.line == 4
    assert info.value.snippet == '{"a": 3'


async def test_ndjson_malformed_last_line_without_newline() -> None:
    with pytest.raises(ResponseFormatError, match="line 2"):
        await collect(iter_ndjson(chunks_of(b'{"a": 1}\n{"a": ', []), 10))


# --------------------------------------------------------------------------- CSV

csv_field = st.text(alphabet=st.sampled_from('ab,"\n\r é€x '), max_size=8)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(st.tuples(csv_field, csv_field, csv_field), max_size=25),
    cuts=st.lists(st.integers(0, 2000), max_size=15),
    batch_size=st.integers(1, 7),
)
def test_csv_any_chunking_gives_the_same_records(
    rows: list[tuple[str, str, str]], cuts: list[int], batch_size: int
) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["a", "b", "c"])
    writer.writerows(rows)
    data = buffer.getvalue().encode("utf-8")  # cuts may split a multi-byte character
    expected = [
        dict(zip("abc", row, strict=True))
        for row in csv.reader(io.StringIO(buffer.getvalue(), newline=""))
    ][1:]
    expected = [r for r in expected if r]

    async def main() -> list[list[dict[str, Any]]]:
        stream = iter_csv(chunks_of(data, cuts), batch_size, encoding="utf-8", delimiter=",")
        return await collect(stream)

    batches = anyio.run(main)
    assert [r for b in batches for r in b] == expected
    assert all(0 < len(b) <= batch_size for b in batches)


async def test_csv_row_with_wrong_width_is_named() -> None:
    data = b"a,b\n1,2\n3\n"
    with pytest.raises(ResponseFormatError, match="CSV record 2 has 1 fields, the header has 2"):
        await collect(iter_csv(chunks_of(data, []), 10, encoding="utf-8", delimiter=","))


async def test_csv_bad_encoding_is_reported() -> None:
    with pytest.raises(ResponseFormatError, match="not valid utf-8"):
        await collect(iter_csv(chunks_of(b"a\n\xff\n", []), 10, encoding="utf-8", delimiter=","))


async def test_csv_other_delimiter_and_no_trailing_newline() -> None:
    data = b"name;city\nada;London\ngrace;New York"
    batches = await collect(iter_csv(chunks_of(data, [3]), 10, encoding="utf-8", delimiter=";"))
    assert batches == [[{"name": "ada", "city": "London"}, {"name": "grace", "city": "New York"}]]


# --------------------------------------------------------------------------- JSON


def test_json_records() -> None:
    assert json_records(b'[{"a": 1}]', None)[0] == [{"a": 1}]
    assert json_records(b'{"data": {"items": [{"a": 1}]}}', "data.items")[0] == [{"a": 1}]
    assert json_records(b'{"user": {"id": 7}}', "user")[0] == [{"id": 7}]
    assert json_records(b"  ", None) == ([], None)
    with pytest.raises(ResponseFormatError, match=r"JSON object.*set records_path.*keys: data"):
        json_records(b'{"data": []}', None)
    with pytest.raises(ResponseFormatError, match="records_path 'items' is not in"):
        json_records(b'{"data": []}', "items")
    with pytest.raises(ResponseFormatError, match="expected a list of records at records_path"):
        json_records(b'{"data": 3}', "data")
    with pytest.raises(ResponseFormatError, match="malformed JSON"):
        json_records(b'{"data": [', None)


def test_get_path() -> None:
    body = {"a": {"b": [{"c": 1}, {"c": 2}]}, "n": None}
    assert get_path(body, "a.b.1.c") == 2
    assert get_path(body, "a.b.-1.c") == 2
    assert get_path(body, "a.b.5.c") is None
    assert get_path(body, "a.x", "default") == "default"
    assert get_path(body, "n") is None
    assert get_path([1, 2], "a") is None


# --------------------------------------------------------------------------- retry policy


def test_parse_retry_after() -> None:
    now = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("3", now) == 3.0
    assert parse_retry_after("0.25", now) == 0.25
    assert parse_retry_after("-4", now) == 0.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=90), usegmt=True), now) == 90
    assert parse_retry_after("Wed, 01 May 2024 11:00:00 GMT", now) == 0.0
    assert parse_retry_after("Wed, 01 May 2024 12:00:30", now) == 30.0  # no zone: UTC
    for useless in (None, "", "soon", "nan"):
        assert parse_retry_after(useless, now) is None


def test_backoff_grows_is_capped_and_jittered() -> None:
    exact = HttpRetryConfig(backoff_factor=0.5, backoff_max=3, jitter=0)
    assert [exact.backoff(n) for n in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert exact.backoff(1000) == 3.0
    jittered = HttpRetryConfig(backoff_factor=1, backoff_max=100, jitter=0.5)
    waits = [jittered.backoff(2) for _ in range(200)]
    assert all(2.0 <= w <= 4.0 for w in waits)
    assert len(set(waits)) > 100


# --------------------------------------------------------------------------- rate limiter


async def test_rate_limiter_allows_a_burst_then_paces() -> None:
    limiter = RateLimiter(requests_per_second=50, burst=3)
    t0 = perf_counter()
    waits = [await limiter.acquire() for _ in range(6)]
    elapsed = perf_counter() - t0
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert all(w > 0 for w in waits[3:])
    assert elapsed >= 3 / 50 - 0.005
    stats = limiter.statistics()
    assert (stats.acquired, stats.delayed) == (6, 3)
    assert stats.waited_seconds == pytest.approx(sum(waits))


async def test_rate_limiter_holds_across_tasks_and_cancellation() -> None:
    limiter = RateLimiter(requests_per_second=100, burst=1)
    times: list[float] = []

    async def worker() -> None:
        await limiter.acquire()
        times.append(perf_counter())

    async def cancelled_worker() -> None:
        with anyio.move_on_after(0.001):
            await limiter.acquire()

    async with anyio.create_task_group() as tg:
        for i in range(12):
            tg.start_soon(cancelled_worker if i % 4 == 0 else worker)
    times.sort()
    # 9 requests, slots of 10 ms: the cancelled waiters' slots are not reused early
    assert times[-1] - times[0] >= 8 / 100 - 0.005


def test_rate_limiter_validation_and_sharing() -> None:
    with pytest.raises(ConfigError, match="requests_per_second"):
        RateLimiter(0)
    with pytest.raises(ConfigError, match="burst"):
        RateLimiter(1, burst=0)
    shared = RateLimiter.shared("parts-test", 5, 2)
    assert RateLimiter.shared("parts-test", 5.0, 2) is shared
    assert repr(shared) == "RateLimiter(name='parts-test', requests_per_second=5, burst=2)"
    with pytest.raises(ConfigError, match="already exists with 5 requests/s and burst 2"):
        RateLimiter.shared("parts-test", 5, 3)


def test_a_limiter_instance_can_be_passed_and_a_number_means_rate() -> None:
    limiter = RateLimiter(3)
    assert create_http_extractor("https://x.test/a", rate_limiting=limiter).rate_limiter is limiter
    by_number = create_http_extractor("https://x.test/a", rate_limiting=7.5).rate_limiter
    assert by_number is not None
    assert (by_number.requests_per_second, by_number.burst) == (7.5, 1)
    assert create_http_extractor("https://x.test/a").rate_limiter is None


# --------------------------------------------------------------------------- pagination


def page(body: Any = None, links: dict[str | None, dict[str, str]] | None = None) -> PageInfo:
    return PageInfo(url=httpx.URL("https://api.test/v1/items?x=1"), body=body, links=links or {})


def test_page_number_and_offset_requests() -> None:
    numbers = PageNumberPagination(page_param="p", start_page=0, page_size=20)
    first = numbers.first_request("https://api.test/items", {"q": "a"})
    assert first.params == {"q": "a", "p": 0, "per_page": 20}
    second = numbers.next_request(first, page())
    assert second is not None
    assert (second.index, second.params["p"]) == (1, 1)
    assert numbers.total_pages(page({"pages": 3})) is None
    totals = PageNumberPagination(page_size=20, total_path="meta.count")
    assert totals.total_pages(page({"meta": {"count": 41}})) == 3
    with pytest.raises(PaginationError, match=r"'meta\.count' \(the total\) is not in"):
        totals.total_pages(page({}))
    with pytest.raises(PaginationError, match="is not a number"):
        totals.total_pages(page({"meta": {"count": "many"}}))
    offsets = OffsetPagination(limit=25, start_offset=10, total_path="total")
    assert offsets.request_at("u", {}, 2).params == {"offset": 60, "limit": 25}
    assert offsets.total_pages(page({"total": 60})) == 2  # 50 records after offset 10


def test_cursor_next_url_and_link_requests() -> None:
    request = PageRequest("https://api.test/v1/items", {"q": "a"}, 0)
    cursor = CursorPagination(cursor_path="meta.next", cursor_param="after")
    nxt = cursor.next_request(request, page({"meta": {"next": "abc"}}))
    assert nxt == PageRequest("https://api.test/v1/items", {"q": "a", "after": "abc"}, 1)
    for missing in ({}, {"meta": {"next": None}}, {"meta": {"next": ""}}):
        assert cursor.next_request(request, page(missing)) is None
    with pytest.raises(PaginationError, match="is a dict"):
        cursor.next_request(request, page({"meta": {"next": {"a": 1}}}))

    next_url = NextUrlPagination(next_url_path="links.next")
    nxt = next_url.next_request(request, page({"links": {"next": "?page=2"}}))
    assert nxt == PageRequest("https://api.test/v1/items?page=2", {}, 1)
    nxt = next_url.next_request(request, page({"links": {"next": "/v2/all?page=2"}}))
    assert nxt is not None
    assert nxt.url == "https://api.test/v2/all?page=2"
    assert next_url.next_request(request, page({"links": {}})) is None

    link = LinkHeaderPagination()
    links = {"next": {"url": "https://api.test/v1/items?page=3", "rel": "next"}}
    nxt = link.next_request(request, page(links=links))
    assert nxt is not None
    assert nxt.url == "https://api.test/v1/items?page=3"
    assert link.next_request(request, page(links={"prev": {"url": "x"}})) is None


def test_request_key_identifies_url_and_params() -> None:
    a = PageRequest("u", {"b": 1, "a": "x"}, 0)
    b = PageRequest("u", {"a": "x", "b": "1"}, 5)
    assert a.key() == b.key()
    assert a.key() != PageRequest("u", {"a": "y", "b": 1}, 0).key()


# --------------------------------------------------------------------------- secrets


def test_redact_url() -> None:
    assert redact_url("https://api.test/x?page=2") == "https://api.test/x?page=2"
    assert redact_url("https://u:p@api.test/x") == "https://u:***@api.test/x"
    masked = redact_url("https://api.test/x?api_key=1&Signature=2&key=3&sort=name&auth=4")
    assert masked == "https://api.test/x?api_key=***&Signature=***&key=***&sort=name&auth=***"
    assert redact_url("https://api.test/x?q=1&tenant=7", frozenset({"tenant"})).endswith(
        "tenant=***"
    )
    assert redact_url("https://api.test/x?day={date}") == "https://api.test/x?day={date}"


def test_reprs_hold_no_secrets() -> None:
    extractor = create_http_extractor(
        "https://api.test/x?access_token=tok123",
        auth=BearerAuth(token="tok456"),
        headers={"X-Secret": "tok789"},
        params={"password": "tok000"},
    )
    text = repr(extractor) + repr(extractor.config) + str(extractor.config)
    for secret in ("tok123", "tok456", "tok789", "tok000"):
        assert secret not in text
    assert "access_token=***" in text


def test_pagination_by_name_and_dict() -> None:
    by_name = create_http_extractor("https://api.test/x", pagination="link_header")
    assert isinstance(by_name.config.pagination, LinkHeaderPagination)
    by_dict = create_http_extractor(
        "https://api.test/x", pagination={"type": "offset", "limit": 5}, concurrency=2
    )
    assert by_dict.config.pagination == OffsetPagination(limit=5)

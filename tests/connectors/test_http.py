"""The HTTP extractor against a real HTTP server on 127.0.0.1 (see http_testserver.py)."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from time import perf_counter
from typing import Any

import anyio
import pytest
from http_testserver import TestServer

from ductwork import (
    BasicAuth,
    Batch,
    BearerAuth,
    ConfigError,
    CursorPagination,
    ExtractError,
    HeaderAuth,
    HttpError,
    HttpExtractor,
    HttpRetryConfig,
    IncrementalConfig,
    LinkHeaderPagination,
    LoadError,
    MemoryStateStore,
    NextUrlPagination,
    OffsetPagination,
    PageNumberPagination,
    RateLimitConfig,
    RateLimiter,
    RunContext,
    RunResult,
    RunTimeoutError,
    create_el_pipeline,
    create_http_extractor,
)
from ductwork.connectors.http.run import default_state_store

FAST_RETRY = HttpRetryConfig(max_retries=3, backoff_factor=0.01, backoff_max=0.05)


@pytest.fixture(scope="module")
def server() -> Iterator[TestServer]:
    srv = TestServer().start()
    yield srv
    srv.stop()


@pytest.fixture
def api(server: TestServer) -> TestServer:
    server.reset()
    return server


async def run(
    extractor: HttpExtractor, params: dict[str, Any] | None = None, **options: Any
) -> tuple[list[dict[str, Any]], RunResult]:
    rows: list[dict[str, Any]] = []
    options.setdefault("logging", False)
    result = await create_el_pipeline(extractor, rows.extend, **options).run(params=params)
    return rows, result


def ids(rows: list[dict[str, Any]]) -> list[int]:
    return [int(r["id"]) for r in rows]


# --------------------------------------------------------------------------- pagination


async def test_page_number_stops_on_the_empty_page(api: TestServer) -> None:
    extractor = create_http_extractor(
        api.url + "/pages?total=35",
        records_path="data",
        pagination=PageNumberPagination(page_size=10),
    )
    rows, result = await run(extractor)
    assert ids(rows) == list(range(35))
    assert [r.query["page"] for r in api.seen("/pages")] == ["1", "2", "3", "4", "5"]
    assert {r.query["per_page"] for r in api.seen("/pages")} == {"10"}
    assert result.stages[0].metrics["http_requests"] == 5
    assert result.stages[0].batches_out == 4


async def test_page_number_stops_at_the_known_total(api: TestServer) -> None:
    extractor = create_http_extractor(
        api.url + "/pages?total=35",
        records_path="data",
        pagination=PageNumberPagination(page_size=10, total_pages_path="meta.pages"),
    )
    rows, _ = await run(extractor)
    assert ids(rows) == list(range(35))
    assert len(api.seen("/pages")) == 4  # no request for an empty page


async def test_page_number_stops_at_a_record_total(api: TestServer) -> None:
    extractor = create_http_extractor(
        api.url + "/pages?total=30",
        records_path="data",
        pagination=PageNumberPagination(page_size=10, total_path="meta.total"),
    )
    rows, _ = await run(extractor)
    assert ids(rows) == list(range(30))
    assert len(api.seen("/pages")) == 3


async def test_max_pages(api: TestServer) -> None:
    extractor = create_http_extractor(
        api.url + "/pages?total=100",
        records_path="data",
        pagination={"type": "page_number", "page_size": 10, "max_pages": 2},
    )
    rows, _ = await run(extractor)
    assert ids(rows) == list(range(20))
    assert len(api.seen("/pages")) == 2


async def test_offset_pagination_with_and_without_total(api: TestServer) -> None:
    with_total = create_http_extractor(
        api.url + "/offset?total=25",
        records_path="items",
        pagination=OffsetPagination(limit=10, total_path="total"),
    )
    rows, _ = await run(with_total)
    assert ids(rows) == list(range(25))
    assert [r.query["offset"] for r in api.seen("/offset")] == ["0", "10", "20"]
    api.reset()
    until_empty = create_http_extractor(
        api.url + "/offset?total=25",
        records_path="items",
        pagination=OffsetPagination(limit=10),
    )
    rows, _ = await run(until_empty)
    assert ids(rows) == list(range(25))
    assert [r.query["offset"] for r in api.seen("/offset")] == ["0", "10", "20", "30"]


async def test_missing_total_fails_clearly(api: TestServer) -> None:
    extractor = create_http_extractor(
        api.url + "/offset?total=25",
        records_path="items",
        pagination=OffsetPagination(limit=10, total_path="meta.total"),
        concurrency=2,
    )
    with pytest.raises(HttpError, match=r"offset pagination: 'meta\.total' \(the total\) is not"):
        await run(extractor)
    assert len(api.seen("/offset")) == 1


async def test_cursor_pagination_keeps_the_other_params(api: TestServer) -> None:
    extractor = create_http_extractor(
        api.url + "/cursor",
        params={"total": 25, "per": 10},
        records_path="results",
        pagination=CursorPagination(cursor_path="paging.next", cursor_param="cursor"),
    )
    rows, _ = await run(extractor)
    assert ids(rows) == list(range(25))
    seen = api.seen("/cursor")
    assert [r.query.get("cursor") for r in seen] == [None, "c1", "c2"]
    assert all(r.query["total"] == "25" for r in seen)


async def test_cursor_loop_fails_clearly(api: TestServer) -> None:
    extractor = create_http_extractor(
        api.url + "/cursor?loop=1",
        records_path="results",
        pagination=CursorPagination(cursor_path="paging.next"),
    )
    with pytest.raises(ExtractError, match=r"pagination loop.*cursor 'same'") as info:
        await run(extractor)
    assert info.value.retryable is False
    assert len(api.seen("/cursor")) == 2  # the repeated cursor is not fetched


async def test_next_url_pagination_follows_relative_urls(api: TestServer) -> None:
    extractor = create_http_extractor(
        api.url + "/next?total=25",
        records_path="results",
        pagination=NextUrlPagination(next_url_path="next"),
    )
    rows, _ = await run(extractor)
    assert ids(rows) == list(range(25))
    assert [r.query.get("page") for r in api.seen("/next")] == [None, "2", "3"]


async def test_next_url_loop_fails_clearly(api: TestServer) -> None:
    extractor = create_http_extractor(
        api.url + "/next?loop=1", records_path="results", pagination=NextUrlPagination()
    )
    with pytest.raises(ExtractError, match="next_url pagination loop: page 3"):
        await run(extractor)
    assert len(api.seen("/next")) == 2


async def test_link_header_pagination_with_streamed_pages(api: TestServer) -> None:
    extractor = create_http_extractor(
        api.url + "/link?total=25&fmt=ndjson",
        response_format="ndjson",
        pagination=LinkHeaderPagination(),
    )
    rows, _ = await run(extractor)
    assert ids(rows) == list(range(25))
    assert len(api.seen("/link")) == 3


async def test_link_header_pagination_with_json(api: TestServer) -> None:
    extractor = create_http_extractor(api.url + "/link?total=15", pagination="link_header")
    rows, _ = await run(extractor)
    assert ids(rows) == list(range(15))


# --------------------------------------------------------------------------- concurrency


async def test_concurrent_pages_arrive_in_page_order(api: TestServer) -> None:
    extractor = create_http_extractor(
        # later pages answer sooner, so responses arrive out of order
        api.url + "/pages?total=60&delay_desc=0.01",
        records_path="data",
        pagination=PageNumberPagination(page_size=5, total_pages_path="meta.pages"),
        concurrency=4,
    )
    rows, result = await run(extractor)
    assert ids(rows) == list(range(60))
    assert len(api.seen("/pages")) == 12  # exactly the announced pages
    assert 2 <= api.max_in_flight <= 4
    assert result.stages[0].batches_out == 12


async def test_concurrent_pages_until_empty_ignore_errors_past_the_end(api: TestServer) -> None:
    extractor = create_http_extractor(
        api.url + "/pages?total=42&beyond404=1&delay=0.005",
        records_path="data",
        pagination=PageNumberPagination(page_size=5),
        concurrency=8,
    )
    rows, _ = await run(extractor)
    assert ids(rows) == list(range(42))
    pages = [int(r.query["page"]) for r in api.seen("/pages")]
    assert set(range(1, 11)) <= set(pages)  # 9 full pages and the empty 10th
    assert api.max_in_flight <= 8


async def test_concurrent_offset_pages(api: TestServer) -> None:
    extractor = create_http_extractor(
        api.url + "/offset?total=95",
        records_path="items",
        pagination=OffsetPagination(limit=10, total_path="total"),
        concurrency=3,
    )
    rows, _ = await run(extractor)
    assert ids(rows) == list(range(95))
    assert len(api.seen("/offset")) == 10


async def test_concurrent_fetch_stops_when_the_loader_fails(api: TestServer) -> None:
    extractor = create_http_extractor(
        api.url + "/pages?total=500&delay=0.01",
        records_path="data",
        pagination=PageNumberPagination(page_size=5),
        concurrency=4,
    )

    def load(batch: Batch) -> None:
        if batch[0]["id"] >= 20:
            raise ValueError("target is full")

    with pytest.raises(LoadError, match="target is full"):
        await create_el_pipeline(extractor, load, logging=False, queue_size=1).run()
    assert len(api.seen("/pages")) < 20  # backpressure and cancellation stopped the fetching
    assert api.wait_idle()  # the client was closed


async def test_extract_iterated_directly_fetches_sequentially(api: TestServer) -> None:
    extractor = create_http_extractor(
        api.url + "/pages?total=30&delay=0.01",
        records_path="data",
        pagination=PageNumberPagination(page_size=10),
        concurrency=4,
    )
    got = []
    async for batch in extractor.extract(RunContext()):
        got.extend(batch)
    assert ids(got) == list(range(30))
    assert api.max_in_flight == 1


# --------------------------------------------------------------------------- retries and faults


async def test_500_then_success(api: TestServer) -> None:
    extractor = create_http_extractor(
        api.url + "/flaky?key=a&fail=2&status=500", retry_logic=FAST_RETRY
    )
    rows, result = await run(extractor)
    assert rows == [{"ok": True, "attempt": 3}]
    assert result.stages[0].metrics["http_retries"] == 2


async def test_429_retry_after_seconds_is_honoured(api: TestServer) -> None:
    extractor = create_http_extractor(
        api.url + "/flaky?key=b&fail=1&status=429&retry_after=1", retry_logic=FAST_RETRY
    )
    t0 = perf_counter()
    rows, _ = await run(extractor)
    elapsed = perf_counter() - t0
    assert rows == [{"ok": True, "attempt": 2}]
    first, second = api.seen("/flaky")
    assert second.at - first.at >= 0.95  # backoff alone would wait at most 0.01 s
    assert elapsed < 5


async def test_503_retry_after_http_date_is_honoured(api: TestServer) -> None:
    extractor = create_http_extractor(
        api.url + "/flaky?key=c&fail=1&status=503&retry_after_date=2", retry_logic=FAST_RETRY
    )
    rows, _ = await run(extractor)
    assert rows == [{"ok": True, "attempt": 2}]
    first, second = api.seen("/flaky")
    # an HTTP-date has whole seconds: 2 s ahead, truncated, is more than 1 s away
    assert second.at - first.at >= 0.9


async def test_retry_after_beyond_the_limit_fails_at_once(api: TestServer) -> None:
    extractor = create_http_extractor(
        api.url + "/flaky?key=d&fail=1&status=429&retry_after=3600",
        retry_logic=HttpRetryConfig(max_retry_after=10),
    )
    with pytest.raises(HttpError, match="retry after 3600s, longer than max_retry_after=10s"):
        await run(extractor)
    assert len(api.seen("/flaky")) == 1


async def test_retries_exhausted(api: TestServer) -> None:
    extractor = create_http_extractor(
        api.url + "/status?code=503",
        retry_logic=HttpRetryConfig(max_retries=2, backoff_factor=0.01),
    )
    with pytest.raises(HttpError, match="HTTP 503 Service Unavailable after 2 retries") as info:
        await run(extractor)
    assert info.value.status_code == 503
    assert info.value.retryable is True
    assert len(api.seen("/status")) == 3


async def test_404_is_not_retried(api: TestServer) -> None:
    extractor = create_http_extractor(
        api.url + "/status?code=404&echo=no+such+thing", retry_logic=FAST_RETRY
    )
    with pytest.raises(HttpError) as info:
        await run(extractor)
    err = info.value
    assert err.status_code == 404
    assert err.method == "GET"
    assert err.url.endswith("/status?code=404&echo=no+such+thing")
    assert err.retryable is False
    assert "no such thing" in (err.body or "")
    assert "GET http://127.0.0.1" in str(err)
    assert "HTTP 404 Not Found" in str(err)
    assert len(api.seen("/status")) == 1


async def test_timeout_is_retried_then_fails(api: TestServer) -> None:
    extractor = create_http_extractor(
        api.url + "/slow?delay=3",
        timeout=0.2,
        retry_logic=HttpRetryConfig(max_retries=1, backoff_factor=0.01),
    )
    t0 = perf_counter()
    with pytest.raises(HttpError, match=r"timed out after 0.2s .*after 1 retries") as info:
        await run(extractor)
    assert perf_counter() - t0 < 2
    assert info.value.status_code is None
    assert len(api.seen("/slow")) == 2


async def test_connection_dropped_mid_body_is_retried(api: TestServer) -> None:
    extractor = create_http_extractor(api.url + "/drop?key=e&times=1", retry_logic=FAST_RETRY)
    rows, result = await run(extractor)
    assert ids(rows) == list(range(20))
    assert len(api.seen("/drop")) == 2
    assert result.stages[0].metrics["http_retries"] == 1


async def test_connection_always_dropped_fails(api: TestServer) -> None:
    extractor = create_http_extractor(
        api.url + "/drop?key=f", retry_logic=HttpRetryConfig(max_retries=1, backoff_factor=0.01)
    )
    with pytest.raises(HttpError, match="connection dropped") as info:
        await run(extractor)
    assert info.value.status_code is None


async def test_stream_dropped_after_records_were_passed_on_fails(api: TestServer) -> None:
    extractor = create_http_extractor(
        api.url + "/ndjson?records=5000&chunk=500&drop_after=2000",
        response_format="ndjson",
        batch_size=500,
        retry_logic=FAST_RETRY,
    )
    rows: list[dict[str, Any]] = []
    with pytest.raises(HttpError, match="connection dropped after 2000 records") as info:
        await create_el_pipeline(extractor, rows.extend, logging=False).run()
    assert info.value.status_code == 200
    assert len(api.seen("/ndjson")) == 1  # not retried: records had gone downstream
    assert ids(rows) == list(range(len(rows)))


async def test_malformed_json_is_not_retried(api: TestServer) -> None:
    extractor = create_http_extractor(
        api.url + "/malformed", records_path="data", retry_logic=FAST_RETRY
    )
    with pytest.raises(HttpError, match="malformed JSON") as info:
        await run(extractor)
    assert info.value.retryable is False
    assert info.value.status_code == 200
    assert '{"data": [{"id": 1}' in str(info.value)
    assert len(api.seen("/malformed")) == 1


async def test_missing_records_path_names_the_keys(api: TestServer) -> None:
    extractor = create_http_extractor(api.url + "/pages", records_path="results")
    with pytest.raises(HttpError, match=r"records_path 'results'.*keys: data, meta"):
        await run(extractor)


async def test_connection_refused(api: TestServer) -> None:
    with socket.socket() as sock:  # a free port with nobody listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    extractor = create_http_extractor(
        f"http://127.0.0.1:{port}/x", retry_logic=HttpRetryConfig(max_retries=1, backoff_factor=0)
    )
    with pytest.raises(HttpError, match=r"could not connect.*after 1 retries"):
        await run(extractor)


# --------------------------------------------------------------------------- streaming formats


async def test_ndjson_large_body_is_streamed_in_batches(api: TestServer) -> None:
    n = 200_000
    extractor = create_http_extractor(
        api.url + f"/ndjson?records={n}&chunk=3000", response_format="jsonl", batch_size=1000
    )
    sizes: list[int] = []
    total = 0
    last_id = -1

    def load(batch: Batch) -> None:
        nonlocal total, last_id
        sizes.append(len(batch))
        assert batch[0]["id"] == last_id + 1
        last_id = batch[-1]["id"]
        total += len(batch)

    result = await create_el_pipeline(extractor, load, logging=False).run()
    assert total == n == result.records_out
    assert max(sizes) == 1000
    assert len(sizes) == n // 1000
    assert last_id == n - 1


async def test_ndjson_blank_lines_are_skipped(api: TestServer) -> None:
    extractor = create_http_extractor(
        api.url + "/ndjson?records=50&chunk=7&blank=1", response_format="ndjson"
    )
    rows, _ = await run(extractor)
    assert ids(rows) == list(range(50))


async def test_ndjson_malformed_line_is_named(api: TestServer) -> None:
    extractor = create_http_extractor(
        api.url + "/ndjson?records=100&chunk=10&bad_line=57", response_format="ndjson"
    )
    with pytest.raises(HttpError, match="malformed JSON Lines record at line 57") as info:
        await run(extractor)
    assert info.value.retryable is False


async def test_csv_stream_with_quotes_and_line_breaks(api: TestServer) -> None:
    extractor = create_http_extractor(
        api.url + "/csv?records=40&chunk_bytes=7", response_format="csv", batch_size=16
    )
    rows, result = await run(extractor)
    assert rows == [
        {"id": str(i), "name": f"item, {i}", "note": f'line one\nline "two" {i}'} for i in range(40)
    ]
    assert result.stages[0].batches_out == 3


# --------------------------------------------------------------------------- rate limits


def assert_rate(times: list[float], rate: float, burst: int) -> None:
    """The arrivals fit ``rate`` requests/s with bursts of ``burst``, give or take one interval
    of jitter between leaving the client and arriving at the server (twice the rate fails)."""
    times = sorted(times)
    interval = 1 / rate
    assert times[-1] - times[0] >= (len(times) - burst - 1) * interval
    for i, early in enumerate(times):
        within = sum(1 for later in times[i:] if later - early < interval)
        assert within <= burst + 1, (i, times[i : i + within])


async def test_rate_limit_is_observed(api: TestServer) -> None:
    extractor = create_http_extractor(
        api.url + "/pages?total=80",
        records_path="data",
        pagination=PageNumberPagination(page_size=10),
        concurrency=4,
        rate_limiting=RateLimitConfig(requests_per_second=25, burst=2),
    )
    rows, result = await run(extractor)
    assert ids(rows) == list(range(80))
    times = [r.at for r in api.seen("/pages")]
    assert len(times) >= 9
    assert_rate(times, 25, 2)
    assert result.stages[0].metrics["http_rate_limit_wait_seconds"] > 0.2


async def test_named_rate_limiter_is_shared_between_extractors(api: TestServer) -> None:
    limit = {"requests_per_second": 20, "burst": 1, "name": "test-shared-api"}
    first = create_http_extractor(
        api.url + "/offset?total=50",
        records_path="items",
        pagination=OffsetPagination(limit=10, total_path="total"),
        rate_limiting=limit,
    )
    second = create_http_extractor(
        api.url + "/cursor?total=40",
        records_path="results",
        pagination=CursorPagination(cursor_path="paging.next"),
        rate_limiting=limit,
    )
    assert first.rate_limiter is second.rate_limiter
    assert first.rate_limiter is RateLimiter.shared("test-shared-api", 20, 1)
    async with anyio.create_task_group() as tg:
        tg.start_soon(run, first)
        tg.start_soon(run, second)
    times = [r.at for r in api.requests]
    assert len(times) == 5 + 4
    assert_rate(times, 20, 1)
    with pytest.raises(ConfigError, match=r"rate_limiting\.name"):
        create_http_extractor(api.url, rate_limiting={**limit, "requests_per_second": 99})


# --------------------------------------------------------------------------- requests and secrets


async def test_templates_headers_and_post_body(api: TestServer) -> None:
    extractor = create_http_extractor(
        api.url + "/echo?day={date}",
        method="post",
        headers={"X-Trace": "{not templated}"},
        params={"pipeline": "{pipeline}", "region": "{region}", "n": 3},
        json_body={"query": "orders"},
    )
    rows, _ = await run(extractor, name="orders", params={"region": "eu"})
    (echo,) = rows
    assert echo["method"] == "POST"
    assert echo["json"] == {"query": "orders"}
    assert echo["headers"]["x-trace"] == "{not templated}"
    day = echo["query"]["day"]
    assert len(day) == 10
    assert day[4] == "-"
    assert echo["query"]["pipeline"] == "orders"
    assert echo["query"]["n"] == "3"
    assert echo["query"]["region"] == "eu"


async def test_unknown_template_name_is_reported(api: TestServer) -> None:
    extractor = create_http_extractor(api.url + "/echo?x={nope}")
    with pytest.raises(ExtractError, match=r"url template names \{nope\}"):
        await run(extractor)
    assert api.seen("/echo") == []


async def test_auth_is_sent_and_secrets_never_leak(
    api: TestServer, caplog: pytest.LogCaptureFixture
) -> None:
    token, password, key = "tok-9f8e7d", "pw-1a2b3c", "key-5d6e7f"
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    for auth, expected in [
        (BearerAuth(token=token), f"Bearer {token}"),
        (BasicAuth(username="bob", password=password), None),
        (HeaderAuth(name="X-API-Key", value=key), key),
    ]:
        extractor = create_http_extractor(api.url + "/echo", auth=auth)
        rows, _ = await run(extractor, logging=True)
        headers = rows[0]["headers"]
        if isinstance(auth, HeaderAuth):
            assert headers["x-api-key"] == expected
        elif expected is not None:
            assert headers["authorization"] == expected
        else:
            assert headers["authorization"].startswith("Basic ")
        failing = create_http_extractor(
            api.url + f"/status?code=401&access_token={token}",
            auth=auth,
            retry_logic=FAST_RETRY,
        )
        with pytest.raises(HttpError) as info:
            await run(failing, logging=True)
        texts += [str(info.value), repr(info.value), info.value.url, repr(failing)]
        texts += [repr(failing.config), str(failing.config)]
        texts.append(repr(auth))
    texts.append(caplog.text)
    everything = "\n".join(texts)
    for secret in (token, password, key):
        assert secret not in everything
    assert "access_token=***" in everything
    assert "HTTP 401 Unauthorized" in everything


async def test_password_in_url_is_redacted(api: TestServer) -> None:
    extractor = create_http_extractor(
        api.url.replace("http://", "http://bob:hunter2@") + "/status?code=400",
        retry_logic=FAST_RETRY,
    )
    with pytest.raises(HttpError) as info:
        await run(extractor)
    assert "hunter2" not in str(info.value)
    assert "bob:***@" in info.value.url
    assert "hunter2" not in repr(extractor)


# --------------------------------------------------------------------------- incremental


async def test_incremental_cursor_is_carried_to_the_next_run(api: TestServer) -> None:
    state = MemoryStateStore()
    extractor = create_http_extractor(
        api.url + "/since?total={total}",
        incremental=IncrementalConfig(cursor_field="updated_at", param="since"),
        name="events",
    )
    rows, _ = await run(extractor, name="sync", state=state, params={"total": 10})
    assert ids(rows) == list(range(10))
    assert await state.get("sync:events:updated_at") == 9
    rows, _ = await run(extractor, name="sync", state=state, params={"total": 15})
    assert ids(rows) == list(range(10, 15))
    assert [r.query.get("since") for r in api.seen("/since")] == [None, "9"]
    assert await state.get("sync:events:updated_at") == 14
    rows, _ = await run(extractor, name="sync", state=state, params={"total": 15})
    assert rows == []
    assert await state.get("sync:events:updated_at") == 14


async def test_incremental_cursor_is_not_stored_when_the_load_fails(api: TestServer) -> None:
    state = MemoryStateStore()
    extractor = create_http_extractor(
        api.url + "/since?total=10",
        incremental={"cursor_field": "updated_at", "param": "since", "initial_value": 2},
    )

    def load(batch: Batch) -> None:
        raise OSError("cannot write")

    with pytest.raises(LoadError):
        await create_el_pipeline(extractor, load, name="p", logging=False, state=state).run()
    assert await state.get("p:http:updated_at") is None
    rows, _ = await run(extractor, name="p", state=state)
    assert ids(rows) == list(range(3, 10))  # the initial value was sent
    assert await state.get("p:http:updated_at") == 9


async def test_incremental_without_a_state_store_uses_the_process_default(
    api: TestServer,
) -> None:
    extractor = create_http_extractor(
        api.url + "/since?total=6",
        incremental=IncrementalConfig(cursor_field="updated_at", param="since"),
    )
    rows, _ = await run(extractor, name="no_store")
    assert ids(rows) == list(range(6))
    assert await default_state_store().get("no_store:http:updated_at") == 5
    rows, _ = await run(extractor, name="no_store")
    assert rows == []
    assert [r.query.get("since") for r in api.seen("/since")] == [None, "5"]


# --------------------------------------------------------------------------- resources


async def test_client_is_closed_when_the_consumer_stops_early(api: TestServer) -> None:
    extractor = create_http_extractor(
        api.url + "/ndjson?records=500000&chunk=1000", response_format="ndjson"
    )
    stream = extractor.extract(RunContext())
    async for _batch in stream:
        break
    await stream.aclose()  # type: ignore[attr-defined]
    assert api.wait_idle()


async def test_run_timeout_closes_the_client(api: TestServer) -> None:
    extractor = create_http_extractor(
        api.url + "/pages?total=1000&delay=0.05",
        records_path="data",
        pagination=PageNumberPagination(page_size=10),
        concurrency=4,
    )
    with pytest.raises(RunTimeoutError):
        await run(extractor, timeout=0.3)
    assert api.wait_idle()


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"url": "ftp://example.com/x"}, "url"),
        ({"url": "/relative"}, "url"),
        ({"timeout": 0}, "timeout"),
        ({"retry_logic": {"max_retries": -1}}, "retry_logic.max_retries"),
        ({"retry_logic": {"retry_statuses": [404, 302]}}, "retry_logic.retry_statuses"),
        ({"rate_limiting": 0}, "rate_limiting"),
        ({"rate_limiting": {"requests_per_second": 5, "burst": 0}}, "rate_limiting"),
        ({"pagination": {"type": "pages"}}, "pagination"),
        ({"pagination": {"type": "page_number", "total_path": "total"}}, "pagination"),
        ({"concurrency": 4, "pagination": CursorPagination()}, "concurrency"),
        ({"concurrency": 0}, "concurrency"),
        ({"response_format": "ndjson", "records_path": "data"}, "records_path"),
        ({"response_format": "csv", "pagination": NextUrlPagination()}, "pagination"),
        ({"response_format": "xml"}, "response_format"),
        ({"method": "FETCH"}, "method"),
        ({"auth": {"type": "bearer"}}, "auth"),
        ({"batch_size": 0}, "batch_size"),
        ({"encoding": "utf-99"}, "encoding"),
        ({"incremental": {"param": "since"}}, "incremental.cursor_field"),
    ],
)
def test_bad_configuration_names_the_field(kwargs: dict[str, Any], field: str) -> None:
    kwargs.setdefault("url", "https://api.example.com/v1/items")
    with pytest.raises(ConfigError) as info:
        create_http_extractor(**kwargs)
    fields = [name for name, _ in info.value.errors]
    assert any(name.startswith(field) for name in fields), fields
    assert field.split(".")[0] in str(info.value)

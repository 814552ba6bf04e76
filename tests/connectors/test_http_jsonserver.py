"""The HTTP extractor on a json-server style API, served for real on 127.0.0.1.

json-server (and many APIs like it) pages with ``_page``/``_limit`` or ``_start``/``_limit``,
sends the number of matching records in an ``X-Total-Count`` header, and filters inclusively
(``updated_at_gte``), so an incremental cursor sees its boundary records again on every run.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pyarrow as pa
import pytest
from http_testserver import TestServer, _Handler

from ductwork import (
    HttpError,
    IncrementalConfig,
    MemoryStateStore,
    OffsetPagination,
    PageNumberPagination,
    RunContext,
    create_el_pipeline,
    create_http_extractor,
    loader,
)
from ductwork.connectors.http.run import MAX_BOUNDARY_KEYS, Run

ROWS = 95
"""Records served; ``updated_at`` is shared by three records at a time (``id // 3``)."""


def item(i: int) -> dict[str, Any]:
    return {"id": i, "name": f"item-{i}", "updated_at": i // 3}


class _JsonServer(_Handler):
    """``GET /items``: ``_page``/``_limit`` or ``_start``/``_limit``, ``updated_at_gte``,
    ``rows``; answers a JSON list with ``X-Total-Count`` (and ``X-Total-Pages`` when paged)."""

    def ep_items(self, q: dict[str, str], body: bytes) -> None:
        since = int(q["updated_at_gte"]) if "updated_at_gte" in q else None
        rows = [item(i) for i in range(int(q.get("rows", ROWS)))]
        matching = [r for r in rows if since is None or r["updated_at"] >= since]
        limit = int(q.get("_limit", 10))
        start = int(q["_start"]) if "_start" in q else (int(q.get("_page", 1)) - 1) * limit
        headers = {"X-Total-Count": str(len(matching))}
        if "_page" in q:
            headers["X-Total-Pages"] = str(math.ceil(len(matching) / limit))
        if "no_total" in q:
            headers = {}
        page = matching[start : start + limit]
        if q.get("fmt") == "ndjson":
            lines = b"".join(orjson.dumps(row) + b"\n" for row in page)
            self._send(lines, content_type="application/x-ndjson", headers=headers)
        else:
            self._json(page, headers=headers)


@pytest.fixture(scope="module")
def server() -> Iterator[TestServer]:
    srv = TestServer()
    owner = srv

    class Handler(_JsonServer):
        pass

    Handler.owner = owner
    srv.httpd.RequestHandlerClass = Handler
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def api(server: TestServer) -> TestServer:
    server.reset()
    return server


async def extract(extractor: Any, **options: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    options.setdefault("logging", False)
    await create_el_pipeline(extractor, rows.extend, **options).run()
    return rows


# --------------------------------------------------------------------------- totals in a header


@pytest.mark.parametrize("concurrency", [1, 4])
async def test_page_number_stops_at_the_total_count_header(
    api: TestServer, concurrency: int
) -> None:
    extractor = create_http_extractor(
        api.url + "/items",
        pagination=PageNumberPagination(
            page_param="_page", page_size_param="_limit", page_size=20, total_header="X-Total-Count"
        ),
        concurrency=concurrency,
    )
    rows = await extract(extractor)
    assert [r["id"] for r in rows] == list(range(ROWS))
    pages = sorted(int(r.query["_page"]) for r in api.seen("/items"))
    assert pages == [1, 2, 3, 4, 5]  # no request for an empty sixth page
    assert {r.query["_limit"] for r in api.seen("/items")} == {"20"}


async def test_page_number_stops_at_a_total_pages_header(api: TestServer) -> None:
    extractor = create_http_extractor(
        api.url + "/items?rows=40",
        pagination=PageNumberPagination(
            page_param="_page",
            page_size_param="_limit",
            page_size=10,
            total_pages_header="x-total-pages",  # header names are not case-sensitive
        ),
        concurrency=3,
    )
    rows = await extract(extractor)
    assert [r["id"] for r in rows] == list(range(40))
    assert len(api.seen("/items")) == 4


@pytest.mark.parametrize("concurrency", [1, 4])
async def test_offset_stops_at_the_total_count_header(api: TestServer, concurrency: int) -> None:
    extractor = create_http_extractor(
        api.url + "/items",
        pagination=OffsetPagination(
            offset_param="_start", limit_param="_limit", limit=30, total_header="X-Total-Count"
        ),
        concurrency=concurrency,
    )
    rows = await extract(extractor)
    assert [r["id"] for r in rows] == list(range(ROWS))
    assert sorted(int(r.query["_start"]) for r in api.seen("/items")) == [0, 30, 60, 90]


async def test_a_header_total_works_with_a_streamed_format(api: TestServer) -> None:
    extractor = create_http_extractor(
        api.url + "/items?fmt=ndjson",
        response_format="ndjson",  # no JSON body to read a total from: the header has it
        pagination=PageNumberPagination(
            page_param="_page", page_size_param="_limit", page_size=40, total_header="X-Total-Count"
        ),
        concurrency=2,
    )
    rows = await extract(extractor)
    assert [r["id"] for r in rows] == list(range(ROWS))
    assert len(api.seen("/items")) == 3


async def test_a_missing_total_header_is_a_clear_error(api: TestServer) -> None:
    extractor = create_http_extractor(
        api.url + "/items?no_total=1",
        pagination=PageNumberPagination(page_size=10, total_header="X-Total-Count"),
    )
    with pytest.raises(HttpError, match="header 'X-Total-Count' \\(the total\\) is not in the"):
        await extract(extractor)


def test_a_record_total_header_needs_a_page_size() -> None:
    with pytest.raises(ValueError, match=r"total_header .* needs page_size"):
        PageNumberPagination(total_header="X-Total-Count")


# --------------------------------------------------------------------------- incremental


def incremental_items(api: TestServer, rows: int, **incremental: Any) -> Any:
    return create_http_extractor(
        api.url + "/items",
        params={"rows": rows},
        pagination=PageNumberPagination(
            page_param="_page", page_size_param="_limit", page_size=25, total_header="X-Total-Count"
        ),
        incremental=IncrementalConfig(
            cursor_field="updated_at", param="updated_at_gte", **incremental
        ),
        name="items",
    )


async def test_an_inclusive_filter_delivers_the_boundary_again_without_a_key(
    api: TestServer,
) -> None:
    state = MemoryStateStore()
    first = await extract(incremental_items(api, 30), name="sync", state=state)
    assert [r["id"] for r in first] == list(range(30))
    again = await extract(incremental_items(api, 33), name="sync", state=state)
    assert [r["id"] for r in again] == [27, 28, 29, 30, 31, 32]  # at least once: 27-29 twice


async def test_the_key_drops_the_boundary_records_already_delivered(api: TestServer) -> None:
    state = MemoryStateStore()
    first = await extract(incremental_items(api, 29, key="id"), name="sync", state=state)
    assert [r["id"] for r in first] == list(range(29))
    assert await state.get("sync:items:updated_at") == 9
    assert await state.get("sync:items:updated_at.boundary_keys") == {
        "value": 9,
        "keys": [27, 28],
    }
    # 29 arrives with the same cursor value: only it is new
    again = await extract(incremental_items(api, 30, key="id"), name="sync", state=state)
    assert [r["id"] for r in again] == [29]
    assert await state.get("sync:items:updated_at.boundary_keys") == {
        "value": 9,
        "keys": [27, 28, 29],
    }
    later = await extract(incremental_items(api, 35, key="id"), name="sync", state=state)
    assert [r["id"] for r in later] == list(range(30, 35))
    assert await state.get("sync:items:updated_at") == 11
    nothing = await extract(incremental_items(api, 35, key="id"), name="sync", state=state)
    assert nothing == []
    firsts = [r for r in api.seen("/items") if r.query["_page"] == "1"]
    assert [r.query.get("updated_at_gte") for r in firsts] == [None, "9", "9", "11"]


async def test_the_key_drops_the_boundary_from_arrow_batches(api: TestServer) -> None:
    state = MemoryStateStore()

    def items(rows: int) -> Any:
        return create_http_extractor(
            api.url + "/items",
            params={"rows": rows, "_limit": 100},
            batch_format="arrow",
            incremental=IncrementalConfig(
                cursor_field="updated_at", param="updated_at_gte", key="id"
            ),
            name="items",
        )

    async def run(rows: int) -> list[int]:
        tables: list[pa.Table] = []
        stage = loader(tables.append, batch_format="arrow")
        await create_el_pipeline(items(rows), stage, name="arrow", state=state, logging=False).run()
        assert all(isinstance(t, pa.Table) for t in tables)
        return [i for t in tables for i in t.column("id").to_pylist()]

    assert await run(20) == list(range(20))
    assert await state.get("arrow:items:updated_at.boundary_keys") == {
        "value": 6,
        "keys": [18, 19],
    }
    assert await run(23) == [20, 21, 22]
    assert await run(23) == []


async def test_a_pipeline_without_a_store_keeps_its_cursor_for_the_process(
    api: TestServer,
) -> None:
    name = f"bare-{uuid.uuid4().hex[:8]}"
    first = await extract(incremental_items(api, 12, key="id"), name=name)
    assert [r["id"] for r in first] == list(range(12))
    # another pipeline object of the same name: the process's default store has the cursor
    again = await extract(incremental_items(api, 15, key="id"), name=name)
    assert [r["id"] for r in again] == [12, 13, 14]
    assert [r.query.get("updated_at_gte") for r in api.seen("/items")] == [None, "3"]


def test_the_boundary_keys_kept_are_bounded() -> None:
    run = Run(RunContext(), "http://api/items", {}, cursor_field="updated_at", key_field="id")
    batch = [{"id": i, "updated_at": 7} for i in range(MAX_BOUNDARY_KEYS + 50)]
    assert run.observe(batch) == batch
    assert run.max_value == 7
    assert len(run.top_keys) == MAX_BOUNDARY_KEYS
    assert run.observe([{"id": -1, "updated_at": 8}]) is not None
    assert run.top_keys == {-1}  # a higher value starts a new boundary

"""Smaller HTTP faults: an error body that echoes credentials, a configuration dumped with its
secrets, and a body that trickles in forever (``request_deadline``)."""

from __future__ import annotations

import base64
import logging
from typing import Any

import anyio
import orjson
import pytest
from faultserver import FaultServer, Reply, Request

from ductwork import (
    BasicAuth,
    HttpError,
    HttpExtractorConfig,
    HttpRetryConfig,
    MemoryStateStore,
    PipelineRegistry,
    create_el_pipeline,
    create_http_extractor,
)

TOKEN = "tok-9f8e7d6c5b4a"
PASSWORD = "pw-0a1b2c3d4e"
URL_PASSWORD = "url-pass-5566"


def echo_error(request: Request, reply: Reply) -> None:
    reply.send(
        {"error": "denied", "you_sent": request.headers, "path": request.raw_path}, status=403
    )


async def test_an_echoing_error_body_never_carries_a_secret(
    api: FaultServer, caplog: pytest.LogCaptureFixture
) -> None:
    api.route("/x", echo_error)
    url = f"http://bob:{URL_PASSWORD}@127.0.0.1:{api.port}/x?access_token={TOKEN}&page=1"
    extractor = create_http_extractor(
        url,
        headers={"X-Session": "sess-778899"},
        params={"signature": "sig-112233", "region": "eu"},
        auth=BasicAuth(username="bob", password=PASSWORD),
        retry_logic=HttpRetryConfig(max_retries=0),
    )
    registry = PipelineRegistry(state=MemoryStateStore())
    registry.register_pipeline("p", lambda: create_el_pipeline(extractor, lambda b: None))
    caplog.set_level(logging.DEBUG)
    with anyio.fail_after(10), pytest.raises(HttpError) as info:
        await registry.run("p")
    error = info.value
    assert error.status_code == 403
    assert "denied" in (error.body or "")
    basic = base64.b64encode(f"bob:{PASSWORD}".encode()).decode()
    history = orjson.dumps(await registry.history("p")).decode()
    for text in (str(error), error.body or "", error.url or "", history, caplog.text):
        for secret in (TOKEN, PASSWORD, URL_PASSWORD, basic, "sess-778899", "sig-112233"):
            assert secret not in text


def test_the_configuration_serialises_without_secrets() -> None:
    config = HttpExtractorConfig(
        url=f"https://bob:{URL_PASSWORD}@api.example.com/v1?api_key={TOKEN}&page=2",
        headers={"X-Api-Key": TOKEN, "Accept": "application/json"},
        params={"client_secret": PASSWORD, "day": "{date}"},
        auth=BasicAuth(username="bob", password=PASSWORD),
    )
    for dumped in (config.model_dump_json(), repr(config.model_dump()), repr(config)):
        assert TOKEN not in dumped
        assert PASSWORD not in dumped
        assert URL_PASSWORD not in dumped
    data = config.model_dump()
    assert data["headers"] == {"X-Api-Key": "***", "Accept": "application/json"}
    assert data["params"] == {"client_secret": "***", "day": "{date}"}
    assert data["url"] == "https://bob:***@api.example.com/v1?api_key=***&page=2"


def trickle(request: Request, reply: Reply) -> None:
    reply.start_chunked()
    reply.chunk(b'{"id": 1}\n')
    while not reply.stopping.wait(0.2):  # one byte every 0.2 s, for ever
        try:
            reply.chunk(b" ")
        except OSError:
            return


async def run(url: str, **options: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    await create_el_pipeline(
        create_http_extractor(url, **options), rows.extend, logging=False
    ).run()
    return rows


async def test_a_trickling_body_fails_at_the_request_deadline(api: FaultServer) -> None:
    url = api.route("/slow", trickle)
    started = anyio.current_time()
    with anyio.fail_after(15), pytest.raises(HttpError, match="request_deadline=1s") as info:
        await run(
            url,
            response_format="ndjson",
            timeout=5,
            request_deadline=1,
            retry_logic=HttpRetryConfig(max_retries=1, backoff_factor=0.01),
        )
    assert anyio.current_time() - started < 10
    assert info.value.url is not None
    assert len(api.seen("/slow")) == 2  # nothing passed on yet: retried once, as a timeout


async def test_the_deadline_also_bounds_waiting_for_the_headers(api: FaultServer) -> None:
    def never(request: Request, reply: Reply) -> None:
        reply.stopping.wait(30)

    url = api.route("/never", never)
    with anyio.fail_after(15), pytest.raises(HttpError, match="request_deadline") as info:
        await run(
            url,
            timeout=20,
            request_deadline=0.5,
            retry_logic=HttpRetryConfig(max_retries=1, backoff_factor=0.01),
        )
    assert "after 1 retries" in str(info.value)
    assert len(api.seen("/never")) == 2


def test_request_deadline_defaults_to_none() -> None:
    assert HttpExtractorConfig(url="https://api.example.com").request_deadline is None

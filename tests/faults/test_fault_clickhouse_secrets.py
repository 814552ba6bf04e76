"""A ClickHouse server (or a proxy before it) may echo a request's credentials in its error body.
Every secret the connection config holds is masked wherever a response body is quoted: in the
stage's error, in the run's result (what history keeps), and in the logs; also when the error
arrives in the middle of a result and a decoder finds it."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from faultserver import FaultServer, Reply, Request

from ductwork import (
    Batch,
    ClickHouseConfig,
    ClickHouseExtractError,
    ClickHouseLoadError,
    create_clickhouse_extractor,
    create_clickhouse_loader,
    create_el_pipeline,
)
from ductwork.connectors.clickhouse import capabilities
from ductwork.connectors.clickhouse.client import Connection
from ductwork.connectors.clickhouse.codec import RowDecoder, ServerError, mask_secrets

SECRET = "s3cr&t pa55"
ECHO = (
    f"Code: 516. DB::Exception: default: Authentication failed: password is incorrect, "
    f"got '{SECRET}' (sent as {SECRET.replace('&', '%26').replace(' ', '%20')}). "
    f"(AUTHENTICATION_FAILED) (version 24.8.1.1)\n"
)


def echoing(request: Request, reply: Reply) -> None:
    reply.send(ECHO, 500, "text/plain", {"X-ClickHouse-Exception-Code": "516"})


@pytest.fixture(autouse=True)
def fresh_capabilities() -> Any:
    capabilities.clear_cache()
    yield
    capabilities.clear_cache()


def config(api: FaultServer) -> ClickHouseConfig:
    api.route("/", echoing)
    return ClickHouseConfig(url=api.url, password=SECRET)


def assert_masked(error: Exception, caplog: pytest.LogCaptureFixture) -> None:
    result = getattr(error, "result", None)
    assert result is not None
    texts = [str(error), repr(error), str(result.to_dict()), str(result), caplog.text]
    for text in texts:
        assert SECRET not in text
        assert "s3cr%26t" not in text
    assert "Authentication failed" in str(error)
    assert "got '***' (sent as ***)" in str(error)


async def test_an_extractor_error_does_not_quote_the_password(
    api: FaultServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    extractor = create_clickhouse_extractor("SELECT 1 AS n", config(api))
    with pytest.raises(ClickHouseExtractError) as info:
        await create_el_pipeline(extractor, lambda batch: None, name="p").run()
    assert_masked(info.value, caplog)
    assert api.seen()[0].headers["x-clickhouse-key"] == SECRET  # it was sent, as a header


async def test_a_loader_error_does_not_quote_the_password(
    api: FaultServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    loader = create_clickhouse_loader("t", connection_config=config(api))

    async def extract() -> Any:
        yield [{"n": 1}]

    with pytest.raises(ClickHouseLoadError) as info:
        await create_el_pipeline(extract, loader, name="p").run()
    assert_masked(info.value, caplog)


async def test_an_error_found_in_the_middle_of_a_result_is_masked(api: FaultServer) -> None:
    def rows_then_echo(request: Request, reply: Reply) -> None:
        reply.send(b'{"n":1}\n' + ECHO.encode(), 200, "application/x-ndjson")

    api.route("/", rows_then_echo)
    decoder = RowDecoder([("n", "UInt8")], "UTC")
    batches: list[Batch] = []
    async with Connection(ClickHouseConfig(url=api.url, password=SECRET), {}) as conn:
        with pytest.raises(ServerError) as info:
            async with conn.stream("SELECT 1 AS n", {}) as result:
                batches.append(decoder.decode(await result.aread()))
    assert batches == []
    assert info.value.code == 516
    assert SECRET not in str(info.value)
    assert "got '***'" in str(info.value)


@pytest.mark.parametrize(
    ("secret", "text", "masked"),
    [
        ("p@ss w0rd", "p@ss w0rd, p%40ss%20w0rd, p%40ss+w0rd", "***, ***, ***"),
        ('q"uote', 'json {"key": "q\\"uote"}', 'json {"key": "***"}'),
        ("", "nothing to mask", "nothing to mask"),
    ],
)
def test_every_form_of_a_secret_is_masked(secret: str, text: str, masked: str) -> None:
    assert mask_secrets(text, [secret]) == masked

"""Credentials never reach another origin: not after a redirect (scheme, host or port differs),
not on a next-page URL from the body or the ``Link`` header. A redirect loop is an HttpError."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from faultserver import CA_FILE, FaultServer, Reply, Request

from ductwork import (
    BasicAuth,
    BearerAuth,
    HeaderAuth,
    HttpError,
    PipelineError,
    create_el_pipeline,
    create_http_extractor,
)

SECRET = "s3cr3t-t0ken"
AUTHS: dict[str, Any] = {
    "header": HeaderAuth(value=SECRET),
    "custom-header": HeaderAuth(name="X-Service-Token", value=SECRET),
    "bearer": BearerAuth(token=SECRET),
    "basic": BasicAuth(username="bob", password=SECRET),
}


def records(request: Request, reply: Reply) -> None:
    reply.send([{"id": 1}])


def carries_secret(request: Request) -> bool:
    import base64

    basic = base64.b64encode(f"bob:{SECRET}".encode()).decode()
    text = repr(request.headers) + request.raw_path
    return SECRET in text or basic in text


async def run(url: str, **options: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    extractor = create_http_extractor(url, **options)
    with anyio.fail_after(10):
        await create_el_pipeline(extractor, rows.extend, logging=False).run()
    return rows


@pytest.mark.parametrize("kind", sorted(AUTHS))
async def test_no_auth_kind_follows_a_redirect_to_another_port(
    api: FaultServer, other: FaultServer, kind: str
) -> None:
    land = other.route("/land", records)
    start = api.route("/start", lambda request, reply: reply.redirect(land))
    assert await run(start, auth=AUTHS[kind]) == [{"id": 1}]
    assert carries_secret(api.seen("/start")[0])
    (landed,) = other.seen("/land")
    assert not carries_secret(landed), landed.headers


async def test_a_redirect_to_another_host_drops_credentials(api: FaultServer) -> None:
    land = api.route("/land", records).replace("127.0.0.1", "localhost")
    start = api.route("/start", lambda request, reply: reply.redirect(land, 307))
    headers = {"X-Api-Key": SECRET, "Cookie": f"session={SECRET}", "Accept": "application/json"}
    assert await run(start, headers=headers, params={"api_key": SECRET}) == [{"id": 1}]
    (first,) = api.seen("/start")
    assert first.headers["x-api-key"] == SECRET
    assert first.query["api_key"] == SECRET
    (landed,) = api.seen("/land")
    assert landed.headers["host"].startswith("localhost:")
    assert not carries_secret(landed)
    assert landed.headers["accept"] == "application/json"  # plain headers still go


@pytest.mark.parametrize("kind", sorted(AUTHS))
async def test_a_redirect_that_changes_only_the_scheme_drops_credentials(
    tls_api: FaultServer, kind: str
) -> None:
    plain = tls_api.route("/plain", records)
    tls_api.route("/down", lambda request, reply: reply.redirect(plain))
    secure = tls_api.https_url + "/secure"
    tls_api.route("/secure", records)
    tls_api.route("/up", lambda request, reply: reply.redirect(secure, 307))
    options = {"auth": AUTHS[kind], "verify": CA_FILE}
    assert await run(tls_api.https_url + "/down", **options) == [{"id": 1}]
    assert await run(tls_api.url + "/up", **options) == [{"id": 1}]
    (down,), (up,) = tls_api.seen("/down"), tls_api.seen("/up")
    assert (down.scheme, up.scheme) == ("https", "http")
    assert carries_secret(down)
    assert carries_secret(up)
    (landed_plain,), (landed_secure,) = tls_api.seen("/plain"), tls_api.seen("/secure")
    assert (landed_plain.scheme, landed_secure.scheme) == ("http", "https")
    assert landed_plain.headers["host"] == landed_secure.headers["host"] == down.headers["host"]
    assert not carries_secret(landed_plain), landed_plain.headers
    assert not carries_secret(landed_secure), landed_secure.headers


async def test_a_redirect_within_the_origin_keeps_credentials(api: FaultServer) -> None:
    api.route("/land", records)
    start = api.route("/start", lambda request, reply: reply.redirect("/land"))
    assert await run(start, auth=AUTHS["header"]) == [{"id": 1}]
    assert carries_secret(api.seen("/land")[0])


async def test_next_page_urls_to_another_origin_get_no_credentials(
    api: FaultServer, other: FaultServer
) -> None:
    elsewhere = other.route("/page2", lambda request, reply: reply.send({"data": [{"id": 2}]}))
    linked = other.route("/linked", records)
    first = api.route(
        "/page1", lambda request, reply: reply.send({"data": [{"id": 1}], "next": elsewhere})
    )
    linking = api.route(
        "/linking",
        lambda request, reply: reply.send([{"id": 0}], headers={"Link": f'<{linked}>; rel="next"'}),
    )
    rows = await run(first, auth=AUTHS["bearer"], records_path="data", pagination="next_url")
    assert rows == [{"id": 1}, {"id": 2}]
    rows = await run(linking, auth=AUTHS["header"], pagination="link_header")
    assert rows == [{"id": 0}, {"id": 1}]
    assert all(carries_secret(r) for r in api.seen())
    assert other.seen()
    assert not any(carries_secret(r) for r in other.seen())


async def test_a_redirect_loop_is_an_http_error_with_the_url(api: FaultServer) -> None:
    a = api.url + "/a"
    api.route("/a", lambda request, reply: reply.redirect("/b?token=" + SECRET))
    api.route("/b", lambda request, reply: reply.redirect("/a"))
    with pytest.raises(PipelineError) as info:
        await run(a)
    error = info.value.__cause__ if not isinstance(info.value, HttpError) else info.value
    assert isinstance(error, HttpError)
    assert error.url is not None
    assert error.url.startswith(api.url)
    assert "redirect loop" in str(error)
    assert SECRET not in str(error)
    assert error.retryable is False

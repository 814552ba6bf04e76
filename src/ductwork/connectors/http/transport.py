"""Sending one page's request: the rate limit, redirects (credentials only to the configured
origin), retries with backoff, and the errors that name the request."""

from __future__ import annotations

import math

import anyio
import httpx

from ..._exceptions import ExtractError, HttpError
from ...core.backoff import Retries
from ...core.instrument import operation
from .body import DeadlineExceeded, read_snippet
from .config import (
    HttpExtractorConfig,
    config_secrets,
    credential_headers,
    mask_secrets,
    origin,
    redact_url,
    ssl_context,
)
from .limits import RateLimiter, parse_retry_after
from .paging import PageRequest
from .run import Run

_MAX_REDIRECTS = 20


class Transport:
    """Sends the requests of an extractor's runs.

    Args:
        config: the extractor's configuration.
    """

    def __init__(self, config: HttpExtractorConfig) -> None:
        self.config = config
        self._headers, self._credentials = credential_headers(config.headers, config.auth)
        self._credential_names = frozenset(name.lower() for name in self._credentials)

    def client(self) -> httpx.AsyncClient:
        """A new client for one run (the caller closes it)."""
        config = self.config
        connections = max(10, config.concurrency)
        # Redirects are followed by ``_send``, which decides per hop where credentials go.
        return httpx.AsyncClient(
            headers=self._headers,
            verify=ssl_context(config.verify),
            timeout=httpx.Timeout(config.timeout),
            follow_redirects=False,
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        )

    async def open(
        self,
        client: httpx.AsyncClient,
        request: PageRequest,
        run: Run,
        tries: Retries,
        limiter: RateLimiter | None,
    ) -> tuple[httpx.Response, float | None]:
        """Send ``request`` until a 2xx response arrives, each attempt after ``limiter`` allows
        it; return the response with its body unread, and the deadline (``request_deadline``
        from the start of the attempt) for reading it."""
        config = self.config
        ctx = run.ctx
        while True:
            if limiter is not None:
                waited = await limiter.acquire()
                if waited:
                    ctx.add_metric("http_rate_limit_wait_seconds", waited)
            # httpx replaces a URL's query with ``params``; merge them instead
            outgoing = client.build_request(
                config.method, request_url(request), json=config.json_body
            )
            ctx.add_metric("http_requests")
            deadline = None
            if config.request_deadline is not None:
                deadline = anyio.current_time() + config.request_deadline
            try:
                with operation(
                    config.method,
                    {
                        "http.request.method": config.method,
                        "url.full": redact_url(outgoing.url),
                        "http.request.resend_count": tries.spent,
                    },
                    "client",
                ) as op:
                    try:
                        with anyio.move_on_after(config.request_deadline or math.inf) as scope:
                            response = await self._send(client, outgoing, request, run)
                        if scope.cancelled_caught:
                            raise DeadlineExceeded
                    except httpx.TransportError as exc:
                        op.set_attribute("error.type", type(exc).__name__)
                        raise
                    op.set_attribute("http.response.status_code", response.status_code)
                    if not response.is_success:
                        op.set_attribute("error.type", str(response.status_code))
            except httpx.TransportError as exc:
                ctx.add_metric("http_status_error")
                await self.retry_or_raise(request, run, tries, exc=exc)
                continue
            ctx.add_metric(f"http_status_{response.status_code}")
            if response.is_success:
                return response, deadline
            try:
                snippet = await read_snippet(response, deadline)
            finally:
                await response.aclose()
            await self.retry_or_raise(request, run, tries, response=response, snippet=snippet)

    async def _send(
        self, client: httpx.AsyncClient, outgoing: httpx.Request, request: PageRequest, run: Run
    ) -> httpx.Response:
        """Send ``outgoing``, following redirects when configured; credentials are attached to
        each hop whose origin is the configured URL's, and stripped from every other."""
        seen: set[str] = set()
        while True:
            for name in self._credential_names:
                outgoing.headers.pop(name, None)
            if self._credentials and origin(outgoing.url) == run.origin:
                outgoing.headers.update(self._credentials)
            response = await client.send(outgoing, stream=True)
            following = response.next_request
            if not self.config.follow_redirects or following is None:
                return response
            await response.aclose()
            seen.add(str(outgoing.url))
            target = str(following.url)
            if target in seen or len(seen) > _MAX_REDIRECTS:
                problem = (
                    f"redirect loop: {redact_url(target)} redirects back to a URL already visited"
                    if target in seen
                    else f"more than {_MAX_REDIRECTS} redirects in a row"
                )
                raise self.error(request, problem, response=response, retryable=False)
            run.ctx.add_metric("http_redirects")
            outgoing = following

    async def retry_or_raise(
        self,
        request: PageRequest,
        run: Run,
        tries: Retries,
        *,
        exc: httpx.TransportError | None = None,
        response: httpx.Response | None = None,
        snippet: str | None = None,
    ) -> None:
        """Wait before the next attempt, or raise HttpError when the failure is final."""
        retry = self.config.retry_logic
        if response is not None:
            status = response.status_code
            what = f"HTTP {status} {response.reason_phrase}".rstrip()
            retryable = status in retry.retry_statuses
        else:
            assert exc is not None
            what = _describe_transport_error(exc, self.config.timeout, self.config.request_deadline)
            retryable = isinstance(
                exc, (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
            )
        after = f" after {tries.spent} retries" if tries.spent else ""
        if not retryable or not tries.left:
            raise self.error(
                request,
                f"{what}{after}",
                response=response,
                snippet=snippet,
                retryable=retryable or (response is not None and response.status_code >= 500),
            ) from exc
        asked: float | None = None
        if response is not None and retry.respect_retry_after:
            asked = parse_retry_after(response.headers.get("Retry-After"))
            if asked is not None and asked > retry.max_retry_after:
                raise self.error(
                    request,
                    f"{what}{after}: the server asks to retry after {asked:.0f}s, longer than "
                    f"max_retry_after={retry.max_retry_after:g}s",
                    response=response,
                    snippet=snippet,
                ) from exc
        wait = tries.take(retry_after=asked)
        run.ctx.add_metric("http_retries")
        run.ctx.add_metric(f"http_retries_{response.status_code if response else 'error'}")
        run.ctx.logger.info(
            "%s: %s %s failed (%s); retry %d of %d in %.2fs",
            run.ctx.pipeline,
            self.config.method,
            redact_url(request_url(request)),
            what,
            tries.spent,
            tries.limit,
            wait,
        )
        await tries.wait()

    def error(
        self,
        request: PageRequest,
        problem: str,
        *,
        response: httpx.Response | None = None,
        snippet: str | None = None,
        retryable: bool | None = None,
    ) -> HttpError:
        """An HttpError naming the method and the (redacted) URL, every secret masked."""
        method = self.config.method
        url = redact_url(response.url if response is not None else request_url(request))
        # A body may echo what was sent: mask every secret of the configuration and the request.
        secrets = config_secrets(self.config, request.params)
        problem = mask_secrets(problem, secrets)
        if snippet:
            snippet = mask_secrets(snippet, secrets)
        message = f"{method} {url}: {problem}"
        if snippet:
            message += f"; body: {snippet!r}"
        status = response.status_code if response is not None else None
        return HttpError(
            message, url=url, status_code=status, method=method, body=snippet, retryable=retryable
        )

    def loop_error(self, request: PageRequest) -> ExtractError:
        """The error of a pagination that would fetch ``request`` a second time."""
        pagination = self.config.pagination
        return ExtractError(
            f"{pagination.type} pagination loop: page {request.index + 1} would fetch "
            f"{pagination.describe(request)} again ({redact_url(request_url(request))}); "
            f"stopping instead of fetching forever",
            retryable=False,
        )


def request_url(request: PageRequest) -> str:
    """The URL ``request`` fetches: its parameters merged into the query of its URL."""
    if not request.params:
        return request.url
    try:
        return str(httpx.URL(request.url).copy_merge_params(request.params))
    except (httpx.InvalidURL, TypeError):
        return request.url


def _describe_transport_error(
    exc: httpx.TransportError, timeout: float, deadline: float | None
) -> str:
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if isinstance(exc, DeadlineExceeded):
        return f"{exc}={deadline:g}s" if deadline is not None else str(exc)
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out after {timeout:g}s ({detail})"
    if isinstance(exc, httpx.ConnectError):
        return f"could not connect ({detail})"
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError)):
        return f"connection dropped ({detail})"
    return detail

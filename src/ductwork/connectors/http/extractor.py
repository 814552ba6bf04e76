"""The HTTP extractor: fetches pages and turns bodies into batches (see the package docs)."""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
from anyio.abc import TaskGroup

from ..._exceptions import ConfigError, ExtractError, HttpError
from ...core.arrow import to_arrow
from ...core.backoff import Retries
from ...core.config import validate_config
from ...core.context import RunContext
from ...core.instrument import operation
from ...core.stages import Extractor
from ...core.templates import fill_confined, url_value_encoder
from ...core.types import Batch
from ..compression import Codec, CorruptDataError, make_decoder
from .config import (
    HttpExtractorConfig,
    config_secrets,
    credential_headers,
    mask_secrets,
    origin,
    redact_httpx_logs,
    redact_url,
    ssl_context,
)
from .formats import ResponseFormatError, iter_arrow, iter_csv, iter_ndjson, json_records
from .limits import HttpRetryConfig, RateLimitConfig, RateLimiter, parse_retry_after
from .paging import (
    OffsetPagination,
    PageInfo,
    PageNumberPagination,
    PageRequest,
    PaginationError,
)

Emit = Callable[[Batch], Awaitable[None]]

_SNIPPET = 200
_MAX_REDIRECTS = 20


# --------------------------------------------------------------------------- the extractor


@dataclass(slots=True)
class _Run:
    """The state of one run."""

    ctx: RunContext
    url: str
    params: dict[str, Any]
    origin: tuple[str, str, int | None] = ("", "", None)
    state_key: str | None = None
    last_value: Any = None
    max_value: Any = None
    pages: int = 0


class _Slot:
    """One page of a concurrent fetch: filled by its fetch task, read in page order."""

    __slots__ = ("batches", "done", "error", "info", "request")

    def __init__(self, request: PageRequest) -> None:
        self.request = request
        self.done = anyio.Event()
        self.batches: list[Batch] = []
        self.info = PageInfo()
        self.error: Exception | None = None


class HttpExtractor(Extractor):
    """Extracts records from an HTTP API. Build one with :func:`create_http_extractor`.

    In a pipeline, :meth:`produce` runs (concurrent page fetching when configured); iterating
    :meth:`extract` yourself fetches the pages one at a time.

    Attributes:
        config: the validated :class:`HttpExtractorConfig`.
        rate_limiter: the :class:`RateLimiter` shared by every run, or ``None``.
    """

    def __init__(self, config: HttpExtractorConfig) -> None:
        self.config = config
        self.name = config.name
        limit = config.rate_limiting
        redact_httpx_logs()
        self.rate_limiter: RateLimiter | None = (
            limit.limiter() if isinstance(limit, RateLimitConfig) else limit
        )
        self._format = "ndjson" if config.response_format == "jsonl" else config.response_format
        pagination = config.pagination
        self._concurrent = config.concurrency > 1 and pagination.predictable
        self._headers, self._credentials = credential_headers(config.headers, config.auth)
        self._credential_names = frozenset(name.lower() for name in self._credentials)

    def __repr__(self) -> str:
        return (
            f"HttpExtractor(name={self.name!r}, method={self.config.method!r}, "
            f"url={redact_url(self.config.url)!r}, pagination={self.config.pagination.type!r}, "
            f"concurrency={self.config.concurrency})"
        )

    # ------------------------------------------------------------------ entry points

    async def extract(self, ctx: RunContext) -> AsyncGenerator[Batch, None]:
        """Yield the batches of one run, fetching pages one at a time."""
        run = await self._start(ctx)
        async with self._client() as client, aclosing(self._iterate(client, run)) as batches:
            async for batch in batches:
                yield batch

    async def produce(self, ctx: RunContext, emit: Emit) -> Callable[[], Awaitable[None]] | None:
        """Push the batches of one run into ``emit`` in order; called by the pipeline.

        Returns:
            a callable that stores the incremental cursor, for the pipeline to await once the
            run succeeded, or ``None`` when there is nothing to store.
        """
        run = await self._start(ctx)
        async with self._client() as client:
            if self._concurrent:
                await self._produce_concurrent(client, run, emit)
            else:
                async with aclosing(self._iterate(client, run)) as batches:
                    async for batch in batches:
                        await emit(batch)
        return self._committer(run)

    # ------------------------------------------------------------------ run set-up

    async def _start(self, ctx: RunContext) -> _Run:
        config = self.config
        values = ctx.template_values()
        run = _Run(ctx, config.url, {})
        inc = config.incremental
        if inc is not None:
            if ctx.state is None:
                raise ExtractError(
                    f"incremental extraction on {inc.cursor_field!r} needs a state store: pass "
                    f"state=... to the pipeline (e.g. ductwork.JsonFileStateStore(path))",
                    retryable=False,
                )
            run.state_key = inc.state_key or f"{ctx.pipeline}:{self.name}:{inc.cursor_field}"
            run.last_value = await ctx.state.get(run.state_key, inc.initial_value)
        values["last_value"] = "" if run.last_value is None else run.last_value
        run.url = _fill(config.url, values, "url")
        run.origin = origin(run.url)
        for key, value in config.params.items():
            if isinstance(value, str):
                value = _fill(value, values, f"params.{key}")
            run.params[key] = value
        if inc is not None and inc.param is not None and run.last_value is not None:
            run.params[inc.param] = run.last_value
        return run

    def _client(self) -> httpx.AsyncClient:
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

    def _committer(self, run: _Run) -> Callable[[], Awaitable[None]] | None:
        state = run.ctx.state
        if run.state_key is None or state is None or run.max_value is None:
            return None
        if run.last_value is not None:
            try:
                if not run.max_value > run.last_value:
                    return None
            except TypeError:
                pass  # a different type than stored before: store the new one
        key, value, logger = run.state_key, run.max_value, run.ctx.logger

        async def commit() -> None:
            await state.set(key, value)
            logger.info("%s: incremental cursor %s = %r", run.ctx.pipeline, key, value)

        return commit

    def _observe(self, run: _Run, batch: Batch) -> None:
        """Track the highest incremental cursor value seen."""
        inc = self.config.incremental
        if inc is None:
            return
        field = inc.cursor_field
        try:
            values = [value for record in batch if (value := record.get(field)) is not None]
            if values:
                top = max(values)
                if run.max_value is None or top > run.max_value:
                    run.max_value = top
        except (TypeError, AttributeError) as exc:
            raise ExtractError(
                f"incremental cursor field {field!r} holds values that cannot be compared: {exc}",
                retryable=False,
            ) from None

    # ------------------------------------------------------------------ paging

    async def _iterate(self, client: httpx.AsyncClient, run: _Run) -> AsyncGenerator[Batch, None]:
        """Fetch pages one after the other, streaming each body."""
        pagination = self.config.pagination
        request: PageRequest | None = pagination.first_request(run.url, run.params)
        seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
        while request is not None:
            if not pagination.predictable:
                key = request.key()
                if key in seen:
                    raise self._loop_error(request)
                seen.add(key)
            info = PageInfo()
            async with aclosing(self._page(client, request, run, info, buffered=False)) as page:
                async for batch in page:
                    self._observe(run, batch)
                    yield batch
            run.pages += 1
            request = self._next(request, info, run)

    def _next(self, request: PageRequest, info: PageInfo, run: _Run) -> PageRequest | None:
        """The next request, or ``None`` when a stop condition holds."""
        pagination = self.config.pagination
        if pagination.max_pages is not None and run.pages >= pagination.max_pages:
            return None
        if info.records == 0 and pagination.stop_on_empty_page:
            return None
        try:
            total = pagination.total_pages(info)
            if total is not None and request.index + 1 >= total:
                return None
            return pagination.next_request(request, info)
        except PaginationError as exc:
            raise self._error(
                request, f"{pagination.type} pagination: {exc}", retryable=False
            ) from None

    async def _produce_concurrent(self, client: httpx.AsyncClient, run: _Run, emit: Emit) -> None:
        """Fetch predictable pages ``concurrency`` at a time, emitting them in page order."""
        pagination = self.config.pagination
        stop = pagination.max_pages
        start = 0
        if pagination.has_total:
            # The first page says how many there are; the rest are fetched concurrently.
            first = pagination.first_request(run.url, run.params)
            info = PageInfo()
            async with aclosing(self._page(client, first, run, info, buffered=False)) as page:
                async for batch in page:
                    self._observe(run, batch)
                    await emit(batch)
            run.pages = 1
            if self._next(first, info, run) is None:
                return
            total = pagination.total_pages(info)
            if total is not None:
                stop = total if stop is None else min(stop, total)
            start = 1
        await self._fetch_window(client, run, emit, start, stop)

    async def _fetch_window(
        self,
        client: httpx.AsyncClient,
        run: _Run,
        emit: Emit,
        start: int,
        stop: int | None,
    ) -> None:
        pagination = self.config.pagination
        assert isinstance(pagination, (PageNumberPagination, OffsetPagination))
        send_slots, receive_slots = anyio.create_memory_object_stream[_Slot](
            max_buffer_size=self.config.concurrency - 1
        )
        error: Exception | None = None

        async def fetch(slot: _Slot) -> None:
            try:
                async with aclosing(
                    self._page(client, slot.request, run, slot.info, buffered=True)
                ) as page:
                    async for batch in page:
                        slot.batches.append(batch)
            except Exception as exc:  # raised in page order by the consumer, or never
                slot.error = exc
            finally:
                slot.done.set()

        async def launch(tg: TaskGroup) -> None:
            with send_slots:
                index = start
                while stop is None or index < stop:
                    slot = _Slot(pagination.request_at(run.url, run.params, index))
                    await send_slots.send(slot)
                    tg.start_soon(fetch, slot)
                    index += 1

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(launch, tg)
                try:
                    async for slot in receive_slots:
                        await slot.done.wait()
                        if slot.error is not None:
                            raise slot.error
                        run.pages += 1
                        for batch in slot.batches:
                            self._observe(run, batch)
                            await emit(batch)
                        slot.batches = []
                        if self._next(slot.request, slot.info, run) is None:
                            break
                except Exception as exc:
                    error = exc
                tg.cancel_scope.cancel()
        finally:
            send_slots.close()
            receive_slots.close()
        if error is not None:
            raise error

    # ------------------------------------------------------------------ one page

    async def _page(
        self,
        client: httpx.AsyncClient,
        request: PageRequest,
        run: _Run,
        info: PageInfo,
        *,
        buffered: bool,
    ) -> AsyncGenerator[Batch, None]:
        """Fetch one page with retries and yield its batches.

        Streamed bodies are passed on as they arrive; a connection dropped before the first
        batch was yielded is retried, one dropped later fails. With ``buffered`` the whole body
        is read first, so a drop at any point is retried.
        """
        tries = self.config.retry_logic.retries()
        while True:
            response, deadline = await self._open(client, request, run, tries)
            started = False
            failure: httpx.TransportError
            collected: list[Batch] = []
            try:
                info.url = response.url
                info.headers = response.headers
                info.links = response.links
                info.records = 0
                async with aclosing(self._parse(response, info, deadline)) as batches:
                    async for batch in batches:
                        if buffered:
                            collected.append(batch)
                        else:
                            started = True
                            yield batch
            except httpx.TransportError as exc:
                if started:
                    raise self._error(
                        request,
                        f"connection dropped after {info.records} records of the response "
                        f"had been passed on ({type(exc).__name__}: {exc})",
                        response=response,
                    ) from exc
                failure = exc
            except ResponseFormatError as exc:
                raise self._error(
                    request, str(exc), response=response, snippet=exc.snippet, retryable=False
                ) from None
            else:
                if run.ctx.logger.isEnabledFor(logging.DEBUG):
                    run.ctx.logger.debug(
                        "%s %s -> %d (%d records)",
                        self.config.method,
                        redact_url(response.url),
                        response.status_code,
                        info.records,
                    )
                run.ctx.add_metric("http_pages")
                break
            finally:
                await response.aclose()
            await self._retry_or_raise(request, run, tries, exc=failure)
        for batch in collected:
            yield batch

    async def _parse(
        self, response: httpx.Response, info: PageInfo, deadline: float | None
    ) -> AsyncGenerator[Batch, None]:
        size = self.config.batch_size
        body = _body(response, deadline)
        arrow = self.config.batch_format == "arrow"
        if self._format == "json":
            raw = b"".join([chunk async for chunk in body])
            records, info.body = json_records(raw, self.config.records_path)
            info.records = len(records)
            for start in range(0, len(records), size):
                part = records if len(records) <= size else records[start : start + size]
                yield to_arrow(part) if arrow else part  # a JSON body: converted per batch
            return
        if arrow:
            tables = iter_arrow(
                body,
                size,
                kind="csv" if self._format == "csv" else "ndjson",
                encoding=response.charset_encoding or self.config.encoding,
                delimiter=self.config.csv_delimiter,
                max_record_size=self.config.max_record_size,
            )
            async with aclosing(tables) as batches:
                async for table in batches:
                    info.records += table.num_rows
                    yield table
            return
        if self._format == "ndjson":
            stream = iter_ndjson(body, size, max_record_size=self.config.max_record_size)
        else:
            stream = iter_csv(
                body,
                size,
                encoding=response.charset_encoding or self.config.encoding,
                delimiter=self.config.csv_delimiter,
                max_record_size=self.config.max_record_size,
            )
        async with aclosing(stream) as batches:
            async for batch in batches:
                info.records += len(batch)
                yield batch

    async def _open(
        self, client: httpx.AsyncClient, request: PageRequest, run: _Run, tries: Retries
    ) -> tuple[httpx.Response, float | None]:
        """Send ``request`` until a 2xx response arrives; return it with its body unread, and
        the deadline (``request_deadline`` from the start of the attempt) for reading it."""
        config = self.config
        limiter = self.rate_limiter
        ctx = run.ctx
        while True:
            if limiter is not None:
                waited = await limiter.acquire()
                if waited:
                    ctx.add_metric("http_rate_limit_wait_seconds", waited)
            # httpx replaces a URL's query with ``params``; merge them instead
            outgoing = client.build_request(
                config.method, _request_url(request), json=config.json_body
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
                            raise _DeadlineExceeded
                    except httpx.TransportError as exc:
                        op.set_attribute("error.type", type(exc).__name__)
                        raise
                    op.set_attribute("http.response.status_code", response.status_code)
                    if not response.is_success:
                        op.set_attribute("error.type", str(response.status_code))
            except httpx.TransportError as exc:
                ctx.add_metric("http_status_error")
                await self._retry_or_raise(request, run, tries, exc=exc)
                continue
            ctx.add_metric(f"http_status_{response.status_code}")
            if response.is_success:
                return response, deadline
            try:
                snippet = await _read_snippet(response, deadline)
            finally:
                await response.aclose()
            await self._retry_or_raise(request, run, tries, response=response, snippet=snippet)

    async def _send(
        self, client: httpx.AsyncClient, outgoing: httpx.Request, request: PageRequest, run: _Run
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
                raise self._error(request, problem, response=response, retryable=False)
            run.ctx.add_metric("http_redirects")
            outgoing = following

    async def _retry_or_raise(
        self,
        request: PageRequest,
        run: _Run,
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
            raise self._error(
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
                raise self._error(
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
            redact_url(_request_url(request)),
            what,
            tries.spent,
            tries.limit,
            wait,
        )
        await tries.wait()

    # ------------------------------------------------------------------ errors

    def _error(
        self,
        request: PageRequest,
        problem: str,
        *,
        response: httpx.Response | None = None,
        snippet: str | None = None,
        retryable: bool | None = None,
    ) -> HttpError:
        method = self.config.method
        if response is not None:
            url = redact_url(response.url)
        else:
            url = redact_url(_request_url(request))
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

    def _loop_error(self, request: PageRequest) -> ExtractError:
        pagination = self.config.pagination
        return ExtractError(
            f"{pagination.type} pagination loop: page {request.index + 1} would fetch "
            f"{pagination.describe(request)} again ({redact_url(_request_url(request))}); "
            f"stopping instead of fetching forever",
            retryable=False,
        )


def _request_url(request: PageRequest) -> str:
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
    if isinstance(exc, _DeadlineExceeded):
        return f"{exc}={deadline:g}s" if deadline is not None else str(exc)
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out after {timeout:g}s ({detail})"
    if isinstance(exc, httpx.ConnectError):
        return f"could not connect ({detail})"
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError)):
        return f"connection dropped ({detail})"
    return detail


class _DeadlineExceeded(httpx.TimeoutException):
    """A request (sending it, its redirects and reading its body) took longer than
    ``request_deadline``; retried as a timeout is."""

    def __init__(self) -> None:
        super().__init__("the request took longer than request_deadline")


async def _until(deadline: float | None, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The chunks of a body, raising :class:`_DeadlineExceeded` once ``deadline`` passes.

    Each wait for a chunk is bounded by its own cancel scope, which never spans a ``yield``."""
    if deadline is None:
        async for chunk in chunks:
            yield chunk
        return
    iterator = chunks.__aiter__()
    while True:
        with anyio.move_on_after(deadline - anyio.current_time()) as scope:
            try:
                chunk = await iterator.__anext__()
            except StopAsyncIteration:
                return
        if scope.cancelled_caught:
            raise _DeadlineExceeded
        yield chunk


_DECODED_PIECE = 1024 * 1024
"""Bytes of a compressed body decoded at a time (the parsers' bound per chunk)."""
_CONTENT_CODECS: dict[str, Codec] = {"gzip": "gzip", "x-gzip": "gzip", "zstd": "zstd"}


def _body(response: httpx.Response, deadline: float | None) -> AsyncIterator[bytes]:
    """The decoded chunks of a response body, within ``deadline``.

    A body with ``Content-Encoding: gzip`` or ``zstd`` is decoded here in pieces of at most
    a MiB (httpx's own decoders turn each network chunk into all of its output at once, which a
    highly compressible body makes arbitrarily large); other encodings are left to httpx.
    """
    codec = _CONTENT_CODECS.get(response.headers.get("content-encoding", "").strip().lower())
    if codec is None:
        return _until(deadline, response.aiter_bytes())
    return _decoded(codec, _until(deadline, response.aiter_raw()))


async def _decoded(codec: Codec, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    decoder = make_decoder(codec)
    try:
        async for chunk in chunks:
            decoder.feed(chunk)
            while piece := decoder.read(_DECODED_PIECE):
                yield piece
        decoder.finish()
    except CorruptDataError as exc:
        raise ResponseFormatError(f"the {codec} response body is corrupt: {exc}") from None


async def _read_snippet(response: httpx.Response, deadline: float | None) -> str:
    """The start of an error response's body, without reading a large body whole."""
    data = b""
    try:
        async for chunk in _body(response, deadline):
            data += chunk
            if len(data) >= _SNIPPET:
                break
    except httpx.TransportError:
        pass  # the status is the error; a broken error body only shortens the snippet
    text = data[:_SNIPPET].decode(response.encoding or "utf-8", "replace").strip()
    return text[: _SNIPPET - 3] + "..." if len(data) > _SNIPPET else text


def _fill(template: str, values: Mapping[str, Any], field: str) -> str:
    """Fill ``{name}`` placeholders from the run's template values.

    In the URL every value is percent-encoded for the part it fills, so a value is one path
    segment or one query value (``../admin?x=1#`` stays inside its segment); query parameters
    given in ``params`` are encoded by httpx.
    """
    if "{" not in template:
        return template
    try:
        if field == "url":
            return fill_confined(template, values, url_value_encoder)
        return template.format_map(values)
    except KeyError as exc:
        known = ", ".join(sorted(k for k in values if isinstance(k, str)))
        raise ExtractError(
            f"{field} template names {{{exc.args[0]}}}, which is not a run value (known: {known})",
            retryable=False,
        ) from None
    except ValueError as exc:
        if len(exc.args) == 2:
            name, problem = exc.args
            raise ExtractError(
                f"run value {name!r} cannot fill the {field} template: {problem}",
                retryable=False,
            ) from ConfigError.for_field(f"params.{name}", problem)
        raise ExtractError(
            f"{field} template is malformed: {exc} (write literal braces as {{{{ and }}}})",
            retryable=False,
        ) from None
    except (IndexError, AttributeError) as exc:
        raise ExtractError(
            f"{field} template is malformed: {exc} (write literal braces as {{{{ and }}}})",
            retryable=False,
        ) from None


# --------------------------------------------------------------------------- factory


def create_http_extractor(
    url: str,
    headers: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    retry_logic: HttpRetryConfig | Mapping[str, Any] | None = None,
    rate_limiting: RateLimitConfig | RateLimiter | Mapping[str, Any] | float | None = None,
    **options: Any,
) -> HttpExtractor:
    """Create an extractor that reads records from an HTTP API.

    Args:
        url: the endpoint; may hold placeholders such as ``{date}``, filled for each run.
        headers: extra request headers.
        timeout: seconds allowed to connect, and for each read and write.
        retry_logic: a :class:`HttpRetryConfig` (or dict); default: 3 retries with backoff.
        rate_limiting: a :class:`RateLimitConfig` (or dict), a bare number of requests per
            second, or a :class:`RateLimiter` instance to share.
        **options: any other field of :class:`HttpExtractorConfig` (``method``, ``params``,
            ``auth``, ``response_format``, ``records_path``, ``pagination``, ``concurrency``,
            ``incremental``, ...), where every option is documented.

    Raises:
        ConfigError: a value is invalid; the message names the field.

    Example:
        >>> from ductwork import BearerAuth, PageNumberPagination, HttpRetryConfig
        >>> extractor = create_http_extractor(
        ...     "https://api.example.com/v1/orders?day={date}",
        ...     auth=BearerAuth(token="s3cret"),
        ...     records_path="data",
        ...     pagination=PageNumberPagination(page_size=100, total_pages_path="meta.pages"),
        ...     concurrency=4,
        ...     retry_logic=HttpRetryConfig(max_retries=5),
        ...     rate_limiting=10,
        ... )
        >>> extractor
        HttpExtractor(name='http', method='GET', url='https://api.example.com/v1/orders?day={date}', pagination='page_number', concurrency=4)
    """  # noqa: E501
    config = validate_config(
        HttpExtractorConfig,
        "HTTP extractor",
        url=url,
        headers=headers,
        timeout=timeout,
        retry_logic=retry_logic,
        rate_limiting=rate_limiting,
        **options,
    )
    return HttpExtractor(config)

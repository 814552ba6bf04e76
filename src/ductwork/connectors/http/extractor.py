"""The HTTP extractor: fetches pages and turns bodies into batches (see the package docs)."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from contextlib import aclosing
from typing import Any

import anyio
import httpx
from anyio.abc import TaskGroup

from ...core.config import validate_config
from ...core.context import RunContext
from ...core.stages import Extractor
from ...core.types import Batch
from .body import iter_batches
from .config import HttpExtractorConfig, redact_httpx_logs, redact_url
from .formats import ResponseFormatError
from .limits import HttpRetryConfig, RateLimitConfig, RateLimiter
from .paging import (
    OffsetPagination,
    PageInfo,
    PageNumberPagination,
    PageRequest,
    PaginationError,
)
from .run import Run, start_run
from .transport import Transport

Emit = Callable[[Batch], Awaitable[None]]


# --------------------------------------------------------------------------- the extractor


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
        pagination = config.pagination
        self._concurrent = config.concurrency > 1 and pagination.predictable
        self._transport = Transport(config)

    def __repr__(self) -> str:
        return (
            f"HttpExtractor(name={self.name!r}, method={self.config.method!r}, "
            f"url={redact_url(self.config.url)!r}, pagination={self.config.pagination.type!r}, "
            f"concurrency={self.config.concurrency})"
        )

    # ------------------------------------------------------------------ entry points

    async def extract(self, ctx: RunContext) -> AsyncGenerator[Batch, None]:
        """Yield the batches of one run, fetching pages one at a time."""
        run = await start_run(self.config, self.name, ctx)
        async with (
            self._transport.client() as client,
            aclosing(self._iterate(client, run)) as batches,
        ):
            async for batch in batches:
                yield batch

    async def produce(self, ctx: RunContext, emit: Emit) -> Callable[[], Awaitable[None]] | None:
        """Push the batches of one run into ``emit`` in order; called by the pipeline.

        Returns:
            a callable that stores the incremental cursor, for the pipeline to await once the
            run succeeded, or ``None`` when there is nothing to store.
        """
        run = await start_run(self.config, self.name, ctx)
        async with self._transport.client() as client:
            if self._concurrent:
                await self._produce_concurrent(client, run, emit)
            else:
                async with aclosing(self._iterate(client, run)) as batches:
                    async for batch in batches:
                        await emit(batch)
        return run.committer()

    # ------------------------------------------------------------------ paging

    async def _iterate(self, client: httpx.AsyncClient, run: Run) -> AsyncGenerator[Batch, None]:
        """Fetch pages one after the other, streaming each body."""
        pagination = self.config.pagination
        request: PageRequest | None = pagination.first_request(run.url, run.params)
        seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
        while request is not None:
            if not pagination.predictable:
                key = request.key()
                if key in seen:
                    raise self._transport.loop_error(request)
                seen.add(key)
            info = PageInfo()
            async with aclosing(self._page(client, request, run, info, buffered=False)) as page:
                async for batch in page:
                    if (kept := run.observe(batch)) is not None:
                        yield kept
            run.pages += 1
            request = self._next(request, info, run)

    def _next(self, request: PageRequest, info: PageInfo, run: Run) -> PageRequest | None:
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
            raise self._transport.error(
                request, f"{pagination.type} pagination: {exc}", retryable=False
            ) from None

    async def _produce_concurrent(self, client: httpx.AsyncClient, run: Run, emit: Emit) -> None:
        """Fetch predictable pages ``concurrency`` at a time, emitting them in page order."""
        pagination = self.config.pagination
        stop = pagination.max_pages
        start = 0
        if pagination.announces_total:
            # The first page says how many there are; the rest are fetched concurrently.
            first = pagination.first_request(run.url, run.params)
            info = PageInfo()
            async with aclosing(self._page(client, first, run, info, buffered=False)) as page:
                async for batch in page:
                    if (kept := run.observe(batch)) is not None:
                        await emit(kept)
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
        run: Run,
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
                            if (kept := run.observe(batch)) is not None:
                                await emit(kept)
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
        run: Run,
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
            response, deadline = await self._transport.open(
                client, request, run, tries, self.rate_limiter
            )
            started = False
            failure: httpx.TransportError
            collected: list[Batch] = []
            try:
                info.url = response.url
                info.headers = response.headers
                info.links = response.links
                info.records = 0
                async with aclosing(iter_batches(self.config, response, info, deadline)) as batches:
                    async for batch in batches:
                        if buffered:
                            collected.append(batch)
                        else:
                            started = True
                            yield batch
            except httpx.TransportError as exc:
                if started:
                    raise self._transport.error(
                        request,
                        f"connection dropped after {info.records} records of the response "
                        f"had been passed on ({type(exc).__name__}: {exc})",
                        response=response,
                    ) from exc
                failure = exc
            except ResponseFormatError as exc:
                raise self._transport.error(
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
            await self._transport.retry_or_raise(request, run, tries, exc=failure)
        for batch in collected:
            yield batch


# --------------------------------------------------------------------------- factory


def create_http_extractor(
    url: str,
    headers: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    retry_logic: HttpRetryConfig | Mapping[str, Any] | bool | None = None,
    rate_limiting: RateLimitConfig | RateLimiter | Mapping[str, Any] | float | bool | None = None,
    **options: Any,
) -> HttpExtractor:
    """Create an extractor that reads records from an HTTP API.

    Args:
        url: the endpoint; may hold placeholders such as ``{date}``, filled for each run.
        headers: extra request headers.
        timeout: seconds allowed to connect, and for each read and write.
        retry_logic: a :class:`HttpRetryConfig` (or dict); ``True`` or ``None`` (default): 3
            retries with backoff; ``False``: no retries.
        rate_limiting: a :class:`RateLimitConfig` (or dict), a bare number of requests per
            second, or a :class:`RateLimiter` instance to share; ``True``: 10 requests per
            second (bursts of 10); ``False`` or ``None`` (default): no limit.
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

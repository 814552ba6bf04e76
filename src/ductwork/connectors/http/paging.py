"""Pagination strategies of the HTTP extractor.

Each strategy is a small frozen pydantic model that says how to ask for the next page:

==========================  ==================================================================
:class:`PageNumberPagination`  ``?page=1``, ``?page=2``, ... (predictable: fetched concurrently)
:class:`OffsetPagination`      ``?offset=0&limit=100``, ``?offset=100&limit=100``, ... (predictable)
:class:`CursorPagination`      a cursor read from the JSON body, sent back as a query parameter
:class:`NextUrlPagination`     the next page's URL read from the JSON body
:class:`LinkHeaderPagination`  the next page's URL from an RFC 8288 ``Link: <...>; rel="next"``
==========================  ==================================================================

Every strategy stops on an empty page (unless ``stop_on_empty_page=False``) and after
``max_pages``. Page-number and offset pagination also stop at a known total, read from the JSON
body (``total_path``, ``total_pages_path``) or from a response header (``total_header``, such as
the ``X-Total-Count`` json-server and many APIs send, or ``total_pages_header``); cursor,
next-URL and Link pagination stop when the response names no next page, and fail with a clear
error when it names one already fetched (a loop) instead of fetching forever.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal

import httpx
from pydantic import Field, model_validator

from ...core.config import Options

__all__ = [
    "CursorPagination",
    "LinkHeaderPagination",
    "NextUrlPagination",
    "NoPagination",
    "OffsetPagination",
    "PageInfo",
    "PageNumberPagination",
    "PageRequest",
    "Pagination",
    "PaginationConfig",
    "get_path",
]

_MISSING: Any = object()


def get_path(data: Any, path: str, default: Any = None) -> Any:
    """Follow a dotted ``path`` (``"data.items"``, ``"pages.0.next"``) into parsed JSON."""
    current = data
    for part in path.split("."):
        if isinstance(current, dict):
            current = current.get(part, _MISSING)
        elif isinstance(current, list) and part.lstrip("-").isdigit():
            index = int(part)
            current = current[index] if -len(current) <= index < len(current) else _MISSING
        else:
            return default
        if current is _MISSING:
            return default
    return current


@dataclass(frozen=True, slots=True)
class PageRequest:
    """One page to fetch: the URL, its query parameters and the page's 0-based index."""

    url: str
    params: dict[str, Any]
    index: int

    def key(self) -> tuple[str, tuple[tuple[str, str], ...]]:
        """Identity of the request, for loop detection."""
        return self.url, tuple(sorted((k, str(v)) for k, v in self.params.items()))


@dataclass(slots=True)
class PageInfo:
    """What a strategy may look at once a page has been read."""

    url: httpx.URL | None = None
    headers: httpx.Headers = field(default_factory=httpx.Headers)
    links: dict[str | None, dict[str, str]] = field(default_factory=dict)
    body: Any = None
    records: int = 0


class PaginationError(ValueError):
    """A response did not hold what the pagination strategy needs."""


class Pagination(Options):
    """Base of the pagination strategies."""

    max_pages: Annotated[int, Field(ge=1, strict=True)] | None = None
    """Fetch at most this many pages in a run."""
    stop_on_empty_page: bool = True
    """Stop at the first page without records."""

    predictable: ClassVar[bool] = False
    """Whether page ``n``'s request is known without reading page ``n - 1``."""
    needs_body: ClassVar[bool] = False
    """Whether the strategy reads the JSON body (so needs ``response_format="json"``)."""

    @property
    def has_total(self) -> bool:
        """Whether the JSON body says how many pages there are."""
        return False

    @property
    def announces_total(self) -> bool:
        """Whether a response says how many pages there are, in its body or a header."""
        return self.has_total

    def first_request(self, url: str, params: dict[str, Any]) -> PageRequest:
        """The request for the first page."""
        return PageRequest(url, dict(params), 0)

    def next_request(self, request: PageRequest, page: PageInfo) -> PageRequest | None:
        """The request after ``request`` given what its response held, or ``None`` to stop."""
        raise NotImplementedError

    def total_pages(self, page: PageInfo) -> int | None:
        """How many pages there are, when the response says so."""
        return None

    def describe(self, request: PageRequest) -> str:
        """How the strategy names a request in a loop error."""
        return f"URL {request.url}"


class NoPagination(Pagination):
    """A single request: the response holds every record."""

    type: Literal["none"] = "none"

    def next_request(self, request: PageRequest, page: PageInfo) -> PageRequest | None:
        """Always ``None``: there is only one page."""
        return None


class _Predictable(Pagination):
    predictable: ClassVar[bool] = True

    def request_at(self, url: str, params: dict[str, Any], index: int) -> PageRequest:
        """The request for page ``index`` (0-based)."""
        raise NotImplementedError

    def first_request(self, url: str, params: dict[str, Any]) -> PageRequest:
        """The request for the first page."""
        return self.request_at(url, params, 0)

    def next_request(self, request: PageRequest, page: PageInfo) -> PageRequest | None:
        """The request for the page after ``request``."""
        return self.request_at(request.url, request.params, request.index + 1)

    def _total(self, page: PageInfo, path: str) -> int:
        return _count(get_path(page.body, path), repr(path))

    def _header_total(self, page: PageInfo, header: str) -> int:
        return _count(page.headers.get(header), f"header {header!r}")


class PageNumberPagination(_Predictable):
    """Pages numbered ``start_page``, ``start_page + 1``, ... in a query parameter.

    Page URLs are predictable, so with ``concurrency > 1`` the extractor fetches several at
    once. It stops on an empty page, after ``max_pages``, or at the total that
    ``total_pages_path`` (number of pages) or ``total_path`` (number of records, with
    ``page_size``) reads from the JSON body, or ``total_pages_header`` or ``total_header``
    (number of records, with ``page_size``) from a response header.

    Example:
        >>> PageNumberPagination(page_size=50).first_request("https://api/x", {}).params
        {'page': 1, 'per_page': 50}
        >>> json_server = PageNumberPagination(
        ...     page_param="_page", page_size_param="_limit", page_size=100,
        ...     total_header="X-Total-Count",
        ... )
        >>> json_server.request_at("https://api/x", {}, 2).params
        {'_page': 3, '_limit': 100}
    """

    type: Literal["page_number"] = "page_number"
    page_param: Annotated[str, Field(min_length=1)] = "page"
    """The query parameter holding the page number."""
    start_page: Annotated[int, Field(ge=0, strict=True)] = 1
    """The number of the first page (usually 1, sometimes 0)."""
    page_size: Annotated[int, Field(ge=1, strict=True)] | None = None
    """Records per page; sent as ``page_size_param`` when set."""
    page_size_param: Annotated[str, Field(min_length=1)] = "per_page"
    """The query parameter holding the page size."""
    total_pages_path: Annotated[str, Field(min_length=1)] | None = None
    """The dotted path of the number of pages in the JSON body."""
    total_path: Annotated[str, Field(min_length=1)] | None = None
    """The dotted path of the total number of records in the JSON body (needs ``page_size``)."""
    total_pages_header: Annotated[str, Field(min_length=1)] | None = None
    """The response header holding the number of pages (``X-Total-Pages``)."""
    total_header: Annotated[str, Field(min_length=1)] | None = None
    """The response header holding the total number of records (``X-Total-Count``, as
    json-server sends; needs ``page_size``)."""

    @model_validator(mode="after")
    def _check_total(self) -> PageNumberPagination:
        for name in ("total_path", "total_header"):
            if getattr(self, name) is not None and self.page_size is None:
                raise ValueError(f"{name} (a record count) needs page_size to count pages")
        return self

    @property
    def has_total(self) -> bool:
        """Whether the JSON body says how many pages there are."""
        return self.total_pages_path is not None or self.total_path is not None

    @property
    def announces_total(self) -> bool:
        """Whether a response says how many pages there are, in its body or a header."""
        headers = (self.total_pages_header, self.total_header)
        return self.has_total or any(header is not None for header in headers)

    def request_at(self, url: str, params: dict[str, Any], index: int) -> PageRequest:
        """The request for page ``index`` (0-based)."""
        query = dict(params)
        query[self.page_param] = self.start_page + index
        if self.page_size is not None:
            query[self.page_size_param] = self.page_size
        return PageRequest(url, query, index)

    def total_pages(self, page: PageInfo) -> int | None:
        """The number of pages the response announces, if configured."""
        if self.total_pages_path is not None:
            return self._total(page, self.total_pages_path)
        if self.total_pages_header is not None:
            return self._header_total(page, self.total_pages_header)
        if self.page_size is None:
            return None
        if self.total_path is not None:
            return math.ceil(self._total(page, self.total_path) / self.page_size)
        if self.total_header is not None:
            return math.ceil(self._header_total(page, self.total_header) / self.page_size)
        return None


class OffsetPagination(_Predictable):
    """Pages addressed by a record offset and a limit: ``?offset=0&limit=100``, ``?offset=100...``.

    The offset advances by ``limit`` per page (the server must honour ``limit``). Page URLs are
    predictable, so ``concurrency > 1`` fetches several at once. Stops on an empty page, after
    ``max_pages``, or at the record total read from ``total_path`` in the JSON body or from the
    ``total_header`` response header (json-server's ``?_start=&_limit=`` with
    ``X-Total-Count``).

    Example:
        >>> OffsetPagination(limit=10).request_at("https://api/x", {}, 3).params
        {'offset': 30, 'limit': 10}
    """

    type: Literal["offset"] = "offset"
    offset_param: Annotated[str, Field(min_length=1)] = "offset"
    """The query parameter holding the offset."""
    limit_param: Annotated[str, Field(min_length=1)] = "limit"
    """The query parameter holding the limit."""
    limit: Annotated[int, Field(ge=1, strict=True)] = 100
    """Records per page."""
    start_offset: Annotated[int, Field(ge=0, strict=True)] = 0
    """The offset of the first page."""
    total_path: Annotated[str, Field(min_length=1)] | None = None
    """The dotted path of the total number of records in the JSON body."""
    total_header: Annotated[str, Field(min_length=1)] | None = None
    """The response header holding the total number of records (``X-Total-Count``)."""

    @property
    def has_total(self) -> bool:
        """Whether the JSON body says how many records there are."""
        return self.total_path is not None

    @property
    def announces_total(self) -> bool:
        """Whether a response says how many records there are, in its body or a header."""
        return self.has_total or self.total_header is not None

    def request_at(self, url: str, params: dict[str, Any], index: int) -> PageRequest:
        """The request for page ``index`` (0-based)."""
        query = dict(params)
        query[self.offset_param] = self.start_offset + index * self.limit
        query[self.limit_param] = self.limit
        return PageRequest(url, query, index)

    def total_pages(self, page: PageInfo) -> int | None:
        """The number of pages needed for the record total the response announces."""
        if self.total_path is not None:
            total = self._total(page, self.total_path)
        elif self.total_header is not None:
            total = self._header_total(page, self.total_header)
        else:
            return None
        return max(0, math.ceil((total - self.start_offset) / self.limit))


class CursorPagination(Pagination):
    """A cursor read from each JSON response and sent back as a query parameter.

    Stops when the cursor is missing, ``null`` or empty; fails when a cursor comes back that
    was already used (a loop).

    Example:
        >>> CursorPagination(cursor_path="meta.next").cursor_param
        'cursor'
    """

    type: Literal["cursor"] = "cursor"
    cursor_path: Annotated[str, Field(min_length=1)] = "next_cursor"
    """The dotted path of the next cursor in the JSON body."""
    cursor_param: Annotated[str, Field(min_length=1)] = "cursor"
    """The query parameter the cursor is sent in."""

    needs_body: ClassVar[bool] = True

    def next_request(self, request: PageRequest, page: PageInfo) -> PageRequest | None:
        """The request carrying the response's cursor, or ``None`` when there is none."""
        cursor = get_path(page.body, self.cursor_path)
        if cursor is None or cursor == "" or cursor is False:
            return None
        if isinstance(cursor, (dict, list)):
            raise PaginationError(
                f"cursor at {self.cursor_path!r} is a {type(cursor).__name__}, not a value"
            )
        params = dict(request.params)
        params[self.cursor_param] = cursor
        return PageRequest(request.url, params, request.index + 1)

    def describe(self, request: PageRequest) -> str:
        """Names the repeated cursor."""
        cursor = str(request.params.get(self.cursor_param, ""))
        if len(cursor) > 60:
            cursor = cursor[:57] + "..."
        return f"cursor {cursor!r}"


class NextUrlPagination(Pagination):
    """The next page's URL read from each JSON response (absolute, or relative to the page).

    The first request's ``params`` are not repeated: the next URL carries its own query. Stops
    when the field is missing, ``null`` or empty; fails when a URL comes back twice.

    Example:
        >>> NextUrlPagination(next_url_path="links.next").type
        'next_url'
    """

    type: Literal["next_url"] = "next_url"
    next_url_path: Annotated[str, Field(min_length=1)] = "next"
    """The dotted path of the next page's URL in the JSON body."""

    needs_body: ClassVar[bool] = True

    def next_request(self, request: PageRequest, page: PageInfo) -> PageRequest | None:
        """The request for the URL the response names, or ``None``."""
        target = get_path(page.body, self.next_url_path)
        if target is None or target == "":
            return None
        if not isinstance(target, str):
            raise PaginationError(
                f"next URL at {self.next_url_path!r} is a {type(target).__name__}, not a string"
            )
        return PageRequest(_join(page, request, target), {}, request.index + 1)


class LinkHeaderPagination(Pagination):
    """The next page's URL from the RFC 8288 ``Link`` response header (as GitHub's API sends).

    Works with every response format, streamed ones included. Stops when there is no link of
    relation ``rel``; fails when a URL comes back twice.

    Example:
        >>> LinkHeaderPagination().rel
        'next'
    """

    type: Literal["link_header"] = "link_header"
    rel: Annotated[str, Field(min_length=1)] = "next"
    """The link relation of the next page."""

    def next_request(self, request: PageRequest, page: PageInfo) -> PageRequest | None:
        """The request for the ``rel`` link, or ``None``."""
        link = page.links.get(self.rel)
        target = link.get("url") if link else None
        if not target:
            return None
        return PageRequest(_join(page, request, target), {}, request.index + 1)


def _count(value: Any, where: str) -> int:
    """A total read from a response: a non-negative whole number."""
    if value is None:
        raise PaginationError(f"{where} (the total) is not in the response")
    try:
        total = int(value)
    except (TypeError, ValueError):
        raise PaginationError(f"{where} (the total) is not a number: {value!r}") from None
    return max(0, total)


def _join(page: PageInfo, request: PageRequest, target: str) -> str:
    base = page.url if page.url is not None else httpx.URL(request.url)
    return str(base.join(target))


PaginationConfig = Annotated[
    NoPagination
    | PageNumberPagination
    | OffsetPagination
    | CursorPagination
    | NextUrlPagination
    | LinkHeaderPagination,
    Field(discriminator="type"),
]
"""Any pagination strategy; as a dict, ``{"type": "page_number", ...}`` picks one."""

"""Result bodies read at wire speed: aiohttp for the streamed results of plain-HTTP servers.

httpx parses a chunked body one chunk at a time in Python (h11), and ClickHouse writes its HTTP
results in chunks of a few KiB: reading a 60 MB ``Native`` result took three times as long
through httpx as through aiohttp, whose HTTP parser is written in C (measured side by side on
the test server; the native client came between the two). So the bulk data of an extract —
the result stream, nothing else — is read with aiohttp where that is safe to do: an ``http://``
URL, no compression asked for, and no proxy set in the environment for its host (httpx honours
those variables; aiohttp is not asked to). Metadata queries, inserts and every other URL keep
httpx.

:class:`BulkResponse` offers what :class:`.client.ResultStream` reads of an ``httpx.Response``
(status, headers, the body in pieces, the bytes received), and turns aiohttp's errors into
httpx's, so that the callers' handling of a broken connection or a timeout is one and the same.
"""

from __future__ import annotations

import urllib.request
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import httpx

__all__ = ["BulkReader", "BulkResponse", "bulk_eligible"]

# Bytes asked of the body at once: large enough that the per-piece work of the callers is
# negligible, small enough to keep memory flat.
_PIECE = 1 << 20


def bulk_eligible(url: str, compression: bool) -> bool:
    """Whether results from ``url`` can be read with aiohttp (see the module docs)."""
    parsed = httpx.URL(url)
    if parsed.scheme != "http" or compression:
        return False
    proxies = urllib.request.getproxies_environment()
    if not proxies.get("http") and not proxies.get("all"):
        return True
    return bool(urllib.request.proxy_bypass(parsed.host))


def _transport_error(exc: BaseException) -> httpx.TransportError:
    """The httpx error a caller expects for an aiohttp failure."""
    message = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError(message)
    if isinstance(exc, TimeoutError):
        return httpx.ReadTimeout(message or "timed out")
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError):
        return httpx.RemoteProtocolError(message)
    return httpx.ReadError(message)


class BulkResponse:
    """A streamed result read through aiohttp, with the parts of ``httpx.Response`` its
    readers use."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status_code = response.status
        self.headers = httpx.Headers(list(response.headers.items()))
        self.num_bytes_downloaded = 0
        self._text = ""

    @property
    def text(self) -> str:
        """The body read by :meth:`aread`, as text."""
        return self._text

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        """The body in pieces of up to 1 MiB as they arrive.

        Raises:
            httpx.TransportError: the connection broke or timed out (a body cut short, too).
        """
        try:
            async for piece in self._response.content.iter_chunked(_PIECE):
                self.num_bytes_downloaded += len(piece)
                yield piece
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _transport_error(exc) from exc

    async def aread(self) -> bytes:
        """The whole body."""
        body = b"".join([piece async for piece in self.aiter_bytes()])
        self._text = body.decode("utf-8", "replace")
        return body


class BulkReader:
    """One aiohttp session per connection, opened at the first bulk read, closed with it."""

    def __init__(self, headers: Mapping[str, str], timeout: httpx.Timeout) -> None:
        self._headers = dict(headers)
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=timeout.connect, sock_read=timeout.read
        )
        self._session: aiohttp.ClientSession | None = None

    @asynccontextmanager
    async def post(
        self, url: str, params: Mapping[str, Any], content: bytes
    ) -> AsyncIterator[BulkResponse]:
        """POST a query and yield its streamed response.

        Raises:
            httpx.TransportError: the server could not be reached, or the connection broke.
        """
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                timeout=self._timeout,
                auto_decompress=False,
                connector=aiohttp.TCPConnector(limit=0, force_close=True),
            )
        query = {key: _text(value) for key, value in params.items()}
        try:
            response = await self._session.post(url, params=query, data=content)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _transport_error(exc) from exc
        try:
            yield BulkResponse(response)
        finally:
            response.release()
            response.close()

    async def aclose(self) -> None:
        """Close the session (and its connections)."""
        if self._session is not None:
            await self._session.close()
            self._session = None


def _text(value: Any) -> str:
    """A query-string value as httpx would write it (booleans in lower case)."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)

"""HTTP extractor on httpx: pagination, concurrent page fetching, retries, rate limits, streaming.

:func:`create_http_extractor` validates an :class:`HttpExtractorConfig` and returns an
:class:`HttpExtractor`. Every run opens one ``httpx.AsyncClient`` and closes it (``async with``)
however the run ends.

How a run fetches pages
-----------------------
A pipeline calls :meth:`HttpExtractor.produce`, which pushes batches into the pipeline's first
stream through ``emit`` (see :mod:`ductwork.core.runner`). With ``concurrency > 1`` and a
predictable pagination (page number or offset), ``produce`` opens a task group of its own:

* a *launcher* task walks the page indexes and, for each, starts a fetch task and queues a slot
  for it in a memory stream of ``concurrency - 1`` slots, so at most ``concurrency`` pages are in
  flight or waiting to be passed on;
* the body of ``produce`` takes the slots in page order, waits for each page, and awaits
  ``emit`` for its batches. Batches therefore leave in page order whatever order the pages
  arrive in, and a slow downstream stage stops new requests (backpressure);
* it stops at the first empty page, at ``max_pages`` or at the total the first page announces,
  then cancels the task group: requests still in flight are abandoned and their errors (a 404
  past the last page, say) are never raised.

Batches are awaited into ``emit``, never ``yield``-ed from inside the task group: an async
generator must not yield inside a task group or cancel scope (PEP 789), so the concurrent path
exists only in ``produce``. Iterating :meth:`HttpExtractor.extract` directly (outside a
pipeline) fetches one page at a time, and does not store the incremental cursor.

Sequential pages (cursor, next URL, Link header, or ``concurrency=1``) are streamed: JSON Lines
and CSV bodies are decoded chunk by chunk as they arrive, so memory stays constant for a body of
any size. JSON bodies are parsed whole, one page at a time.

Failures
--------
Connection errors, timeouts, dropped connections and the statuses in
``HttpRetryConfig.retry_statuses`` (408, 429, 500, 502, 503, 504) are retried with exponential
backoff and jitter, or after the server's ``Retry-After``. A connection dropped while a streamed
body was being passed on is not retried (its first records have already gone downstream); it fails
the run. Everything else raises :class:`~ductwork.HttpError` with the method, the URL (passwords and
secret query parameters redacted), the status and a short snippet of the body. Tokens and
passwords are held as ``pydantic.SecretStr`` and never appear in reprs, logs or errors.

Incremental extraction
----------------------
With ``incremental=IncrementalConfig(cursor_field="updated_at", param="since")`` a run reads the
last value stored in ``ctx.state`` (key ``"<pipeline>:<extractor name>:<cursor_field>"`` unless
``state_key`` says otherwise), sends it as ``?since=...`` (and as ``{last_value}`` in URL and
parameter templates), and tracks the highest ``updated_at`` it sees. The new value is stored only
once the whole run has succeeded, so a failed load never skips records on the next run: delivery
is at least once. An inclusive filter (``updated_at_gte``) sends the records holding the stored
value again; with ``key="id"`` their keys are stored beside the value and they are dropped when
they come back. A pipeline given no state store keeps its cursors in one
:class:`~ductwork.MemoryStateStore` per process.
"""

from typing import TYPE_CHECKING

from ...core.exports import deferred_fallback as _deferred_fallback
from ...core.exports import lazy_names as _lazy_names

__all__ = (
    "BasicAuth",
    "BearerAuth",
    "CursorPagination",
    "HeaderAuth",
    "HttpExtractor",
    "HttpExtractorConfig",
    "HttpRetryConfig",
    "IncrementalConfig",
    "LinkHeaderPagination",
    "NextUrlPagination",
    "NoPagination",
    "OffsetPagination",
    "PageNumberPagination",
    "RateLimitConfig",
    "RateLimiter",
    "create_http_extractor",
    "redact_url",
)

#: For each module, the public names it defines (separated by spaces), imported on first use.
_EXPORTS: dict[str, str] = {
    ".config": "BasicAuth BearerAuth HeaderAuth HttpExtractorConfig IncrementalConfig redact_url",
    ".extractor": "HttpExtractor create_http_extractor",
    ".limits": "HttpRetryConfig RateLimitConfig RateLimiter",
    ".paging": (
        "CursorPagination LinkHeaderPagination NextUrlPagination NoPagination OffsetPagination"
        " PageNumberPagination"
    ),
}

if TYPE_CHECKING:
    from .config import BasicAuth as BasicAuth
    from .config import BearerAuth as BearerAuth
    from .config import HeaderAuth as HeaderAuth
    from .config import HttpExtractorConfig as HttpExtractorConfig
    from .config import IncrementalConfig as IncrementalConfig
    from .config import redact_url as redact_url
    from .extractor import HttpExtractor as HttpExtractor
    from .extractor import create_http_extractor as create_http_extractor
    from .limits import HttpRetryConfig as HttpRetryConfig
    from .limits import RateLimitConfig as RateLimitConfig
    from .limits import RateLimiter as RateLimiter
    from .paging import CursorPagination as CursorPagination
    from .paging import LinkHeaderPagination as LinkHeaderPagination
    from .paging import NextUrlPagination as NextUrlPagination
    from .paging import NoPagination as NoPagination
    from .paging import OffsetPagination as OffsetPagination
    from .paging import PageNumberPagination as PageNumberPagination

    RetryConfig = HttpRetryConfig  # the old name, deprecated (a warning on use)
else:
    # RetryConfig is the deprecated old name of HttpRetryConfig (a warning on use).
    _renamed = _deferred_fallback(__name__, {"RetryConfig"}, ".limits", "renamed_names")
    __getattr__, __dir__ = _lazy_names(globals(), _EXPORTS, _renamed)

"""Retry policy and rate limiting for the HTTP extractor.

* :class:`HttpRetryConfig` says which failures are retried and how long to wait: exponential
  backoff with jitter (a :class:`~ductwork.core.backoff.Backoff`), or the server's
  ``Retry-After`` (seconds or an HTTP-date) when it sends one.
* :class:`RateLimiter` is a token bucket. Every request takes one token; tokens refill at
  ``requests_per_second`` up to ``burst``. Waiters reserve their slot when they arrive, so the
  limit holds however many tasks share the limiter, and arrivals are served first come, first
  served. :meth:`RateLimiter.shared` returns the limiter registered under a name, so several
  extractors (and pipelines) in one process can share one budget.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from time import monotonic
from typing import Annotated, Any, ClassVar

import anyio
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..._exceptions import ConfigError
from ...core.backoff import Backoff, Retries

__all__ = [
    "DEFAULT_RATE_LIMIT",
    "DEFAULT_RETRY_STATUSES",
    "HttpRetryConfig",
    "RateLimitConfig",
    "RateLimiter",
    "RateLimiterStatistics",
    "parse_retry_after",
]

DEFAULT_RETRY_STATUSES: frozenset[int] = frozenset({408, 429, 500, 502, 503, 504})
"""Statuses retried by default: request timeout, too many requests and transient 5xx."""


class HttpRetryConfig(BaseModel):
    """When and how long the HTTP extractor waits before sending a request again.

    A request is retried after a connection error, a timeout, a connection dropped while the
    response was read (before any of its records were passed on), or a response whose status is
    in ``retry_statuses``. Any other status of 400 or more fails at once.

    The wait before retry ``n`` (0-based) is ``min(backoff_max, backoff_factor * 2**n)``, less a
    random fraction of up to ``jitter`` of it, so that clients that failed together do not retry
    together (see :attr:`policy`). When the response carries ``Retry-After`` and
    ``respect_retry_after`` is set, that wait is used instead; a ``Retry-After`` longer than
    ``max_retry_after`` fails the request at once rather than blocking the run.

    Attributes:
        max_retries: retries after the first attempt (0 disables retrying).
        backoff_factor: seconds before the first retry; doubled for each further retry.
        backoff_max: upper bound of one backoff wait, in seconds.
        jitter: fraction (0-1) of each backoff wait that is randomised away.
        retry_statuses: HTTP statuses that are retried.
        respect_retry_after: wait as long as the server's ``Retry-After`` header asks.
        max_retry_after: longest ``Retry-After`` honoured, in seconds.

    Example:
        >>> HttpRetryConfig(max_retries=5, backoff_factor=0.2).backoff(0) <= 0.2
        True

    This class was called ``RetryConfig`` before; that name still works for one release and
    warns (``DeprecationWarning``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_retries: Annotated[int, Field(ge=0, le=100, strict=True)] = 3
    backoff_factor: Annotated[float, Field(ge=0)] = 0.5
    backoff_max: Annotated[float, Field(gt=0)] = 30.0
    jitter: Annotated[float, Field(ge=0, le=1)] = 0.5
    retry_statuses: frozenset[int] = DEFAULT_RETRY_STATUSES
    respect_retry_after: bool = True
    max_retry_after: Annotated[float, Field(ge=0)] = 300.0

    @field_validator("retry_statuses")
    @classmethod
    def _check_statuses(cls, value: frozenset[int]) -> frozenset[int]:
        for status in value:
            if not 400 <= status <= 599:
                raise ValueError(f"{status} is not an HTTP error status (400-599)")
        return value

    @property
    def policy(self) -> Backoff:
        """The backoff between two attempts (without the server's ``Retry-After``)."""
        return Backoff(self.backoff_factor, self.backoff_max, self.jitter)

    def backoff(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (0-based), jitter applied."""
        return self.policy.delay(retry)

    def retries(self) -> Retries:
        """A counter of the retries of one request, at most ``max_retries`` of them."""
        return self.policy.retries(self.max_retries)


_RENAMED: dict[str, type] = {"RetryConfig": HttpRetryConfig}


def renamed_names(module: str) -> Callable[[str], type]:
    """The ``__getattr__`` of a package that exported names since renamed (``RetryConfig``).

    It returns the class under its new name, warning that the old one is deprecated.
    """

    def __getattr__(name: str) -> type:
        new = _RENAMED.get(name)
        if new is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        warnings.warn(
            f"{module}.{name} is deprecated and will be removed in the next release; "
            f"use {module}.{new.__name__}, the same class",
            DeprecationWarning,
            stacklevel=2,
        )
        return new

    return __getattr__


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait according to a ``Retry-After`` header value, or ``None`` if unusable.

    Accepts delay-seconds (``"120"``, also fractional) and an HTTP-date
    (``"Wed, 21 Oct 2015 07:28:00 GMT"``); a date in the past means no wait.

    Example:
        >>> parse_retry_after("2"), parse_retry_after("soon")
        (2.0, None)
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if seconds == seconds else None  # NaN is unusable
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = now if now is not None else datetime.now(UTC)
    return max(0.0, (when - current).total_seconds())


class RateLimitConfig(BaseModel):
    """A request rate limit (token bucket) for the HTTP extractor.

    Attributes:
        requests_per_second: sustained rate; tokens refill at this pace.
        burst: how many requests may go at once after an idle spell (bucket size).
        name: when set, the limiter registered under this name in the process is used (and
            created on first use), so every extractor naming it shares one budget.

    Example:
        >>> RateLimitConfig(requests_per_second=5, burst=2).limiter().burst
        2
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    requests_per_second: Annotated[float, Field(gt=0)]
    burst: Annotated[int, Field(ge=1, strict=True)] = 1
    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None

    def limiter(self) -> RateLimiter:
        """The limiter this configuration describes (the shared one when ``name`` is set)."""
        if self.name is not None:
            return RateLimiter.shared(self.name, self.requests_per_second, self.burst)
        return RateLimiter(self.requests_per_second, self.burst)


@dataclass(frozen=True, slots=True)
class RateLimiterStatistics:
    """Counters of a :class:`RateLimiter`.

    Attributes:
        acquired: requests let through so far.
        delayed: how many of them had to wait.
        waited_seconds: total time they waited.
    """

    acquired: int
    delayed: int
    waited_seconds: float


class RateLimiter:
    """A token bucket limiting requests to ``requests_per_second`` with bursts of ``burst``.

    :meth:`acquire` takes one token, waiting until one is available. A waiter reserves its
    slot on arrival, so waiters are served in arrival order and the rate holds across any
    number of tasks; a waiter that is cancelled gives up its slot (the limit is never exceeded).
    The limiter keeps no event-loop state, so one instance may be shared by pipelines running in
    different event loops or threads of the process.

    Example:
        >>> import anyio
        >>> limiter = RateLimiter(requests_per_second=100, burst=2)
        >>> anyio.run(limiter.acquire)  # a token is available: no wait
        0.0
    """

    _registry: ClassVar[dict[str, RateLimiter]] = {}
    _registry_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, requests_per_second: float, burst: int = 1, *, name: str | None = None):
        if not isinstance(requests_per_second, (int, float)) or not requests_per_second > 0:
            raise ConfigError.for_field(
                "rate_limiting.requests_per_second",
                f"must be a number > 0, got {requests_per_second!r}",
            )
        if not isinstance(burst, int) or isinstance(burst, bool) or burst < 1:
            raise ConfigError.for_field(
                "rate_limiting.burst", f"must be an integer >= 1, got {burst!r}"
            )
        self.requests_per_second = float(requests_per_second)
        self.burst = burst
        self.name = name
        self._tokens = float(burst)
        self._updated = monotonic()
        self._lock = threading.Lock()
        self._acquired = 0
        self._delayed = 0
        self._waited = 0.0

    def __repr__(self) -> str:
        name = f"name={self.name!r}, " if self.name else ""
        return (
            f"RateLimiter({name}requests_per_second={self.requests_per_second:g}, "
            f"burst={self.burst})"
        )

    @classmethod
    def shared(cls, name: str, requests_per_second: float, burst: int = 1) -> RateLimiter:
        """Return the limiter registered under ``name``, creating it on first use.

        Raises:
            ConfigError: a limiter of that name exists with a different rate or burst.
        """
        with cls._registry_lock:
            existing = cls._registry.get(name)
            if existing is None:
                existing = cls._registry[name] = cls(requests_per_second, burst, name=name)
            elif (existing.requests_per_second, existing.burst) != (
                float(requests_per_second),
                burst,
            ):
                raise ConfigError.for_field(
                    "rate_limiting.name",
                    f"a rate limiter named {name!r} already exists with "
                    f"{existing.requests_per_second:g} requests/s and burst {existing.burst}; "
                    f"shared limiters must agree on both",
                )
            return existing

    def _reserve(self) -> float:
        """Take a token now (possibly borrowing ahead); return how long to wait for it."""
        with self._lock:
            now = monotonic()
            tokens = self._tokens + (now - self._updated) * self.requests_per_second
            if tokens > self.burst:
                tokens = float(self.burst)
            tokens -= 1.0
            self._tokens = tokens
            self._updated = now
            self._acquired += 1
            if tokens >= 0.0:
                return 0.0
            delay = -tokens / self.requests_per_second
            self._delayed += 1
            self._waited += delay
            return delay

    async def acquire(self) -> float:
        """Wait for a token; return the seconds waited."""
        delay = self._reserve()
        if delay > 0.0:
            await anyio.sleep(delay)
        return delay

    def statistics(self) -> RateLimiterStatistics:
        """Counters of requests let through and time spent waiting."""
        with self._lock:
            return RateLimiterStatistics(self._acquired, self._delayed, self._waited)


DEFAULT_RATE_LIMIT = RateLimitConfig(requests_per_second=10, burst=10)
"""The limit ``rate_limiting=True`` stands for: 10 requests per second, up to 10 at once after
an idle spell."""


def coerce_rate_limit(value: Any) -> Any:
    """Accept a bare number as requests per second, ``True`` as :data:`DEFAULT_RATE_LIMIT` and
    ``False`` as no limit (used by the extractor config)."""
    if value is True:
        return DEFAULT_RATE_LIMIT
    if value is False:
        return None
    if isinstance(value, (int, float)):
        return {"requests_per_second": value}
    return value


def coerce_retry_policy(value: Any) -> Any:
    """Accept ``True`` as the default retry policy and ``False`` as no retries (used by the
    extractor config)."""
    if value is True:
        return HttpRetryConfig()
    if value is False:
        return HttpRetryConfig(max_retries=0)
    return value

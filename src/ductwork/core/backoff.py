"""Exponential backoff with jitter: how long to wait before each retry, and the wait itself.

One policy serves every retry loop of the library: the HTTP extractor's requests, the ClickHouse
loader's inserts and the retry composition's runs. A :class:`Backoff` says how long to wait before
retry ``n``; :class:`Retries` counts the retries of one operation against a limit and sleeps
between them. The sleep is an ordinary anyio sleep, so cancelling the caller ends a wait at once.

Example:
    >>> import anyio
    >>> async def fetch_with_retries(fetch):
    ...     retries = Backoff(factor=0.01, maximum=1.0).retries(3)
    ...     while True:
    ...         try:
    ...             return await fetch()
    ...         except ConnectionError:
    ...             if not retries.left:
    ...                 raise
    ...             retries.take()  # counts the retry; a caller logs its delay here
    ...             await retries.wait()
    >>> calls = []
    >>> async def flaky():
    ...     calls.append(1)
    ...     if len(calls) < 3:
    ...         raise ConnectionError("refused")
    ...     return "ok"
    >>> anyio.run(fetch_with_retries, flaky), len(calls)
    ('ok', 3)
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import anyio

__all__ = ["Backoff", "Retries"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter.

    The wait before retry ``n`` (0 for the first retry) is ``min(maximum, factor * 2**n)``, less a
    random fraction of up to ``jitter`` of it, so that clients that failed together do not retry
    together.

    Attributes:
        factor: seconds before the first retry; doubled for each further retry.
        maximum: the longest wait, in seconds.
        jitter: the fraction (0 to 1) of each wait that may be cut at random.

    Example:
        >>> policy = Backoff(factor=0.5, maximum=3.0)
        >>> [policy.delay(n) for n in range(5)], policy.delay(0, retry_after=7.0)
        ([0.5, 1.0, 2.0, 3.0, 3.0], 7.0)
    """

    factor: float
    maximum: float = math.inf
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if not self.factor >= 0:
            raise ValueError(f"factor must be >= 0, got {self.factor!r}")
        if not self.maximum >= 0:
            raise ValueError(f"maximum must be >= 0, got {self.maximum!r}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be between 0 and 1, got {self.jitter!r}")

    def delay(self, retry: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (0-based).

        Args:
            retry: how many retries came before this one.
            retry_after: a wait the other side asked for (an HTTP ``Retry-After``), used instead
                of the backoff when given; the caller decides how long a wait it accepts.
        """
        if retry_after is not None:
            return retry_after
        delay = min(self.maximum, self.factor * 2.0 ** min(retry, 64))
        if self.jitter:
            delay *= 1.0 - self.jitter * random.random()
        return delay

    def retries(self, limit: int) -> Retries:
        """Count and wait for the retries of one operation, at most ``limit`` of them."""
        return Retries(self, limit)


class Retries:
    """The retries of one operation under a :class:`Backoff`: counted, limited and waited for.

    :meth:`take` counts a retry and returns the wait before it, so the caller can say so (log
    it, record it) before :meth:`wait` sleeps it.

    Attributes:
        backoff: the policy.
        limit: the most retries allowed.
        spent: retries taken so far.
        delay: the wait before the latest retry taken (``0.0`` before the first).
    """

    __slots__ = ("backoff", "delay", "limit", "spent")

    def __init__(self, backoff: Backoff, limit: int) -> None:
        self.backoff = backoff
        self.limit = limit
        self.spent = 0
        self.delay = 0.0

    def __repr__(self) -> str:
        return f"Retries(spent={self.spent}, limit={self.limit}, delay={self.delay:.3f})"

    @property
    def left(self) -> int:
        """Retries still allowed."""
        return max(0, self.limit - self.spent)

    def take(self, retry_after: float | None = None) -> float:
        """Count one more retry and return the seconds to wait before it.

        Args:
            retry_after: a wait the other side asked for, used instead of the backoff.

        Raises:
            RuntimeError: no retry is left.
        """
        if not self.left:
            raise RuntimeError(f"all {self.limit} retries are spent")
        self.delay = self.backoff.delay(self.spent, retry_after)
        self.spent += 1
        return self.delay

    async def wait(self) -> None:
        """Sleep the wait of the retry just taken; cancellation ends it at once."""
        await anyio.sleep(self.delay)

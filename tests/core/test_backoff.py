"""The backoff policy every retry loop uses: growth, cap, jitter, Retry-After, counting, waiting."""

from __future__ import annotations

import math
from time import perf_counter

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ductwork.core.backoff import Backoff, Retries


def test_delay_doubles_up_to_the_maximum() -> None:
    policy = Backoff(factor=0.25, maximum=1.5)
    assert [policy.delay(n) for n in range(5)] == [0.25, 0.5, 1.0, 1.5, 1.5]
    assert policy.delay(10_000) == 1.5  # no overflow however many retries
    assert Backoff(factor=1.0).delay(3) == 8.0  # no maximum by default
    assert Backoff(factor=0.0, jitter=1.0).delay(7) == 0.0


@given(
    factor=st.floats(0, 100),
    maximum=st.floats(0, 1000),
    jitter=st.floats(0, 1),
    retry=st.integers(0, 200),
)
def test_jitter_only_shortens_the_wait(
    factor: float, maximum: float, jitter: float, retry: int
) -> None:
    full = min(maximum, factor * 2.0 ** min(retry, 64))
    delay = Backoff(factor, maximum, jitter).delay(retry)
    assert full * (1 - jitter) - 1e-9 <= delay <= full


def test_jitter_spreads_the_waits() -> None:
    policy = Backoff(factor=1.0, maximum=10.0, jitter=0.5)
    waits = [policy.delay(1) for _ in range(200)]
    assert all(1.0 <= w <= 2.0 for w in waits)
    assert len(set(waits)) > 100


def test_retry_after_replaces_the_backoff() -> None:
    policy = Backoff(factor=0.5, maximum=1.0, jitter=0.5)
    assert policy.delay(0, retry_after=7.0) == 7.0  # the caller decides which waits it accepts
    assert policy.delay(3, retry_after=0.0) == 0.0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"factor": -1.0}, "factor"),
        ({"factor": math.nan}, "factor"),
        ({"factor": 1.0, "maximum": -1.0}, "maximum"),
        ({"factor": 1.0, "jitter": 1.5}, "jitter"),
    ],
)
def test_bad_policies_are_refused(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        Backoff(**kwargs)


def test_retries_are_counted_against_the_limit() -> None:
    retries = Backoff(factor=0.1, maximum=0.3).retries(3)
    assert (retries.spent, retries.left, retries.delay) == (0, 3, 0.0)
    assert [retries.take() for _ in range(3)] == [0.1, 0.2, 0.3]
    assert (retries.spent, retries.left, retries.delay) == (3, 0, 0.3)
    with pytest.raises(RuntimeError, match="all 3 retries are spent"):
        retries.take()
    assert retries.spent == 3
    assert repr(retries) == "Retries(spent=3, limit=3, delay=0.300)"


def test_take_honours_retry_after_and_counts_it() -> None:
    retries = Retries(Backoff(factor=0.1), limit=2)
    assert retries.take(retry_after=4.0) == 4.0
    assert retries.take() == 0.2  # the backoff goes on from the retries spent
    assert not Backoff(factor=1.0).retries(0).left


async def test_wait_sleeps_the_delay_taken() -> None:
    retries = Backoff(factor=0.05).retries(1)
    retries.take()
    t0 = perf_counter()
    await retries.wait()
    assert perf_counter() - t0 >= 0.045


async def test_cancellation_ends_a_wait_at_once() -> None:
    retries = Backoff(factor=30.0).retries(1)
    retries.take()
    t0 = perf_counter()
    with anyio.move_on_after(0.05) as scope:
        await retries.wait()
    assert scope.cancelled_caught
    assert perf_counter() - t0 < 1.0

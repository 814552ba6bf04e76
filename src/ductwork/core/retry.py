"""The retry composition: run a runnable again after a failure, with exponential backoff."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from pydantic import BeforeValidator, Field

from .._exceptions import CompositionError, is_retryable
from .backoff import Backoff
from .compose import Composition, CompositionConfig, FromConfig
from .context import RunContext
from .result import RunResult
from .runnable import Runnable
from .types import RunStatus

__all__ = ["RetryConfig", "RetryPipeline"]


def _as_tuple(value: Any) -> Any:
    if isinstance(value, type):
        return (value,)
    return value


class RetryConfig(CompositionConfig):
    """Validated options of a :class:`RetryPipeline`."""

    name: Annotated[str, Field(min_length=1, max_length=200)] = "retry_pipeline"
    """The composition's name."""
    pipeline: Runnable
    """The runnable to run and, after a retryable failure, run again."""
    max_retries: Annotated[int, Field(ge=0, le=1000, strict=True)] = 3
    """How many times to run it again after the first attempt (``0``: never)."""
    backoff_factor: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 1.0
    """Seconds to wait before the first retry; each further retry waits twice as long as the one
    before (``0``: no wait)."""
    max_backoff: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 60.0
    """The longest wait between two attempts, in seconds."""
    jitter: Annotated[float, Field(ge=0, le=1)] = 0.1
    """A fraction in ``[0, 1]``: each wait is shortened by a random part of up to this fraction,
    so runs that failed together do not all retry at the same moment."""
    retry_on: Annotated[tuple[type[Exception], ...], BeforeValidator(_as_tuple)] | None = None
    """Exception types to retry on (matched against the error and its causes), or ``None`` for
    the default rule: every PipelineError except those marked not retryable (see
    :class:`RetryPipeline`)."""


class RetryPipeline(Composition[RetryConfig]):
    """Runs a runnable and, when it fails with a retryable error, runs it again after a wait.

    Each attempt is a separate child run with its own context and result; the composition's
    result lists them all as ``children`` (their ``detail`` says ``attempt N of M`` and the wait
    before it), with ``attempts`` and ``retries`` counted. Records are reported from the last
    attempt.

    Waits grow exponentially: before retry ``n`` (1-based) the composition sleeps
    ``min(max_backoff, backoff_factor * 2 ** (n - 1))`` seconds, shortened by a random part of up
    to ``jitter`` of that. The wait is an ordinary anyio sleep, so cancelling the run (or its
    ``timeout``) ends it at once.

    Which failures are retried: by default every :class:`~ductwork.PipelineError` whose
    ``retryable`` is true, so bad configuration, stages of the wrong shape, malformed input and
    values that do not convert (errors marked ``retryable = False``, also when they are the
    ``__cause__`` of a stage error) end the run after the first attempt. ``retry_on`` replaces
    that rule with a tuple of exception types: an attempt is retried when its error, or an
    exception in its ``__cause__`` chain, is one of them (for a failed composition: when every
    child error it reports qualifies). Listing a type retries it even if it is marked not
    retryable, except once the attempt's loader committed rows to a target that does not
    deduplicate them: running again would write those twice.

    When the composition gives up, it fails with a :class:`~ductwork.CompositionError` naming it,
    whose ``__cause__`` is the last attempt's error.

    Build one with :func:`~ductwork.create_retry_pipeline`, or from a :class:`RetryConfig` (or
    its fields as keyword arguments); ``state`` is the state store handed to the child if it has
    none of its own.

    Example:
        >>> import anyio
        >>> from ductwork import create_el_pipeline
        >>> calls = []
        >>> async def flaky(ctx):
        ...     calls.append(ctx.run_id)
        ...     if len(calls) < 3:
        ...         raise ConnectionError("connection reset")
        ...     yield [{"id": 1}]
        >>> pipeline = create_el_pipeline(flaky, lambda batch: None, "flaky", logging=False)
        >>> retry = RetryPipeline(
        ...     RetryConfig(pipeline=pipeline, max_retries=4, backoff_factor=0.01, logging=False)
        ... )
        >>> result = anyio.run(retry.run)
        >>> result.status, result.attempts, [c.status.value for c in result.children]
        (<RunStatus.SUCCEEDED: 'succeeded'>, 3, ['failed', 'failed', 'succeeded'])
    """

    kind = "retry"

    config_model = RetryConfig
    positional = ("pipeline", "max_retries", "backoff_factor")

    pipeline: FromConfig[Runnable] = FromConfig("The runnable that is retried.")
    max_retries: FromConfig[int] = FromConfig("Runs after the first one, at most.")
    backoff_factor: FromConfig[float] = FromConfig("Seconds before the first retry.")
    max_backoff: FromConfig[float] = FromConfig("The longest wait between two attempts.")
    jitter: FromConfig[float] = FromConfig("The fraction of each wait that may be cut at random.")
    retry_on: FromConfig[tuple[type[Exception], ...] | None] = FromConfig(
        "The exception types retried, or ``None`` for the default rule."
    )

    @property
    def policy(self) -> Backoff:
        """The backoff between attempts."""
        config = self.config
        return Backoff(config.backoff_factor, config.max_backoff, config.jitter)

    @property
    def children(self) -> tuple[Runnable, ...]:
        """The runnable that is retried."""
        return (self.pipeline,)

    def backoff(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first retry), with jitter."""
        return self.policy.delay(retry - 1)

    def should_retry(self, error: BaseException) -> bool:
        """Whether a failed attempt with ``error`` may be retried (attempts left aside)."""
        if self.retry_on is None:
            return is_retryable(error)
        return _matches(error, self.retry_on)

    async def _execute(self, ctx: RunContext, result: RunResult) -> None:
        retries = self.policy.retries(self.max_retries)
        total = self.max_retries + 1
        while True:
            attempt = retries.spent + 1
            result.attempts = attempt
            result.retries = retries.spent
            child_ctx, child_result = self.plan_child(ctx, result, self.pipeline)
            try:
                await self.pipeline.execute(child_ctx, child_result)
            finally:
                label = f"attempt {attempt} of {total}"
                if retries.spent:
                    label += f", after {retries.delay:.2f}s backoff"
                detail = child_result.detail
                child_result.detail = f"{label}; {detail}" if detail else label
            if child_result.status is not RunStatus.FAILED:
                if child_result.status is RunStatus.SKIPPED:
                    result.status = RunStatus.SKIPPED
                return
            error = child_result.error
            assert error is not None
            # Not even ``retry_on`` runs again a child that committed rows a rerun would repeat.
            if child_result.rerun_unsafe() is not None or not self.should_retry(error):
                raise self._give_up(f"attempt {attempt} failed with an error not retried", error)
            if not retries.left:
                noun = "attempt" if total == 1 else "attempts"
                raise self._give_up(f"failed after {total} {noun}", error)
            delay = retries.take()
            if self.log_level is not None:
                ctx.logger.log(
                    max(self.log_level, logging.WARNING),
                    "%s: attempt %d of %d failed, retrying in %.2fs: %s",
                    self.name,
                    attempt,
                    total,
                    delay,
                    error,
                )
            await retries.wait()

    def _give_up(self, head: str, error: BaseException) -> CompositionError:
        failure = CompositionError(
            f"{head}: {error}", pipeline=self.name, errors=[error], brief=head
        )
        failure.__cause__ = error
        return failure


def _matches(error: BaseException, types: tuple[type[Exception], ...]) -> bool:
    """Whether ``error`` or its cause chain holds one of ``types`` (every child's, for groups)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, types):
            return True
        if isinstance(current, CompositionError) and current.errors:
            return all(_matches(child, types) for child in current.errors)
        current = current.__cause__
    return False

"""Helpers for the errors a run raises, shared by the core and the layers above it."""

from __future__ import annotations

__all__ = ["INTERRUPTS", "unwrap_group"]

INTERRUPTS = (KeyboardInterrupt, SystemExit)
"""Caught in a stage's task and raised again in the caller's: escaping a task, asyncio would
raise them out of the event loop, past the code awaiting the run."""


def unwrap_group(exc: BaseException) -> BaseException:
    """Unwrap exception groups that hold exactly one exception, recursively."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc

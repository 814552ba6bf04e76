"""Helpers for the errors a run raises, shared by the core and the layers above it."""

from __future__ import annotations

__all__ = ["unwrap_group"]


def unwrap_group(exc: BaseException) -> BaseException:
    """Unwrap exception groups that hold exactly one exception, recursively."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc

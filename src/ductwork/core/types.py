"""Record and batch types shared by every stage."""

from __future__ import annotations

import enum
from typing import Any, TypeAlias

__all__ = ["Batch", "Record", "RunStatus"]

Record: TypeAlias = dict[str, Any]
"""One record: a mapping of column name to value."""

Batch: TypeAlias = list[Record]
"""A batch of records, the unit that flows between stages."""


class RunStatus(enum.StrEnum):
    """The outcome of a run."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"

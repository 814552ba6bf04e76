"""Record and batch types shared by every stage, and the values of the error-handling option."""

from __future__ import annotations

import enum
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["Batch", "ErrorHandling", "Record", "RunStatus"]

Record: TypeAlias = dict[str, Any]
"""One record: a mapping of column name to value."""

Records: TypeAlias = list[Record]
"""A batch of records."""

ExcInfo: TypeAlias = tuple[type[BaseException] | None, BaseException | None, TracebackType | None]
"""The three arguments of ``__exit__``/``__aexit__``, for ``*exc_info: *ExcInfo``."""

Batch: TypeAlias = "list[Record] | pa.Table"
"""A batch, the unit that flows between stages: a list of records or a ``pyarrow.Table``."""

ErrorHandling: TypeAlias = Literal["raise", "skip"]
"""The values of the ``error_handling`` option of pipelines, the file extractor and transformers.

* ``"raise"`` (the default): the first bad input fails the run, with an error saying where it
  was (the file and line, the record's position in the run, the stage).
* ``"skip"``: bad input is dropped, counted in the stage's ``records_skipped`` metric and
  logged (the first of a run as a warning), and the run goes on.

What counts as bad input is the option's own: for a pipeline, a batch its transformer raised on
(extractor and loader errors always fail the run); for the file extractor, a malformed record;
for a transformer, a record it cannot transform. Transformers take a third value,
``"dead_letter"`` (see :mod:`ductwork.transforms`). Compositions take values of their own (their
``error_handling`` decides what a failed child does, not a record).
"""


class RunStatus(enum.StrEnum):
    """The outcome of a run."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"

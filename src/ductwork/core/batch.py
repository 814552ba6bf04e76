"""What a batch is, decided in one place: :func:`batch_rows`.

The core moves batches and never looks inside them beyond counting rows. Every batch a stage
passes on goes through :func:`batch_rows`, which checks that it is a batch and returns its number
of rows (``0`` drops it); anything else raises :class:`BatchShapeError` naming the stage and saying
what it got instead.

The kinds of batch are the entries of ``_ROW_COUNTERS``: a type and the function that checks a
batch of that type and counts its rows. There are two kinds: a list of records (dicts) and a
``pyarrow.Table`` (a ``RecordBatch`` is accepted and passed on as a one-chunk table, see
:func:`normalize`); ``None`` (a stage that drops its batch) counts as no rows. Another kind is
one more entry, made with :func:`register_batch_kind`. A stage receiving a batch counts it with
``len()``, which every kind must support (lists, and the tables of Arrow, do). The Arrow kinds
are entered once pyarrow is loaded (until then no batch can be a table), so a pipeline of
records never imports it.

Example:
    >>> batch_rows([{"id": 1}, {"id": 2}])
    2
    >>> batch_rows({"id": 1}, "transformer 'scale'")
    Traceback (most recent call last):
    ...
    ductwork.core.batch.BatchShapeError: transformer 'scale' returned a single record (a dict); ...
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "BatchShapeError",
    "RowCounter",
    "batch_rows",
    "cut_batches",
    "normalize",
    "register_batch_kind",
]

_T = TypeVar("_T")

RowCounter = Callable[[Any], int]
"""Checks a batch of one kind and returns its number of rows; raises BatchShapeError, with a
message completing "<stage> produced ...", when the batch holds something it must not."""


class BatchShapeError(TypeError):
    """A stage produced something that is not a batch; the message names the stage."""


def _record_rows(batch: list[Any]) -> int:
    """A list of records: checked by its first record only (nothing per record)."""
    if batch and type(batch[0]) is not dict and not isinstance(batch[0], Mapping):
        raise BatchShapeError(
            f"a batch whose records are {type(batch[0]).__name__}, not mappings; "
            f"a batch is a list of dicts"
        )
    return len(batch)


def _no_rows(batch: None) -> int:
    return 0


def _table_rows(batch: pa.Table | pa.RecordBatch) -> int:
    return int(batch.num_rows)


_ROW_COUNTERS: dict[type, RowCounter] = {
    list: _record_rows,
    type(None): _no_rows,
}

_record_batch: type | None = None
"""``pyarrow.RecordBatch`` once :func:`_add_arrow_kinds` has found pyarrow loaded."""


def _add_arrow_kinds() -> type | None:
    """Enter ``pyarrow.Table`` and ``RecordBatch`` in ``_ROW_COUNTERS`` (if not there) when
    pyarrow is loaded, and return ``RecordBatch``; ``None`` while pyarrow is not loaded."""
    global _record_batch
    if "pyarrow" not in sys.modules:
        return None
    import pyarrow as pa

    _ROW_COUNTERS.setdefault(pa.Table, _table_rows)
    _ROW_COUNTERS.setdefault(pa.RecordBatch, _table_rows)
    _record_batch = pa.RecordBatch
    return _record_batch


def normalize(batch: Any) -> Any:
    """The batch as it travels on: a ``RecordBatch`` becomes a one-chunk table (no copy)."""
    if type(batch) is list:
        return batch
    if type(batch) is (_record_batch or _add_arrow_kinds()):
        import pyarrow as pa

        return pa.Table.from_batches([batch])
    return batch


def register_batch_kind(kind: type, rows: RowCounter) -> None:
    """Accept batches of type ``kind`` (and its subclasses), counted and checked by ``rows``."""
    _ROW_COUNTERS[kind] = rows


def _counter_for(batch: object, producer: str) -> RowCounter:
    """The row counter of a batch whose exact type has none: a subclass of a kind, or an error."""
    _add_arrow_kinds()
    for kind, rows in _ROW_COUNTERS.items():
        if isinstance(batch, kind):
            return rows
    if isinstance(batch, Mapping):
        raise BatchShapeError(
            f"{producer} returned a single record (a {type(batch).__name__}); "
            f"return a list of records (a batch)"
        )
    raise BatchShapeError(
        f"{producer} returned {type(batch).__name__}; expected a batch (a list of records or "
        "a pyarrow.Table)"
    )


def batch_rows(batch: object, producer: str = "a stage") -> int:
    """Check that ``batch`` is a batch and return its number of rows.

    Args:
        batch: what a stage produced (``None`` drops the batch: no rows).
        producer: the stage, as error messages name it (``"extractor"``,
            ``"transformer 'scale'"``).

    Raises:
        BatchShapeError: ``batch`` is not a batch of any kind (a single record, a string...), or
            a batch of something other than records; the message names ``producer``.
    """
    if type(batch) is list and (not batch or type(batch[0]) is dict):
        return len(batch)  # the common case, without a lookup
    rows = _ROW_COUNTERS.get(type(batch))
    if rows is None:
        rows = _counter_for(batch, producer)
    try:
        return rows(batch)
    except BatchShapeError as exc:
        raise BatchShapeError(f"{producer} produced {exc}") from None


def cut_batches(pending: list[_T], rows: list[_T], size: int) -> tuple[list[list[_T]], list[_T]]:
    """Add ``rows`` to ``pending``; return the batches of ``size`` rows cut off its front and
    what is left (fewer than ``size`` rows), for a stream re-sliced into batches of one size.

    Lists are not copied where they need not be: ``rows`` becomes the pending list when nothing
    was pending (and ``pending`` is extended in place otherwise), and a pending list of exactly
    ``size`` rows is itself the batch.
    """
    if pending:
        pending.extend(rows)
    else:
        pending = rows
    if len(pending) < size:
        return [], pending
    if len(pending) == size:
        return [pending], []
    whole = len(pending) - len(pending) % size
    return [pending[start : start + size] for start in range(0, whole, size)], pending[whole:]

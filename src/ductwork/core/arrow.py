"""The columnar kind of batch: ``pyarrow.Table``, and the explicit conversions between kinds.

A batch is a list of records or a ``pyarrow.Table`` (a ``RecordBatch`` is accepted and treated
as a one-chunk table). The core never converts one kind into the other on its own: a stage that
takes records only gets an Arrow batch converted once, at its boundary, and the conversion is
logged at DEBUG. :func:`to_arrow` and :func:`to_records` convert explicitly.

pyarrow is imported by the functions that build or combine tables, not with this module: a
pipeline of records never loads it, and telling the kinds apart needs no import (no batch can
be a table before pyarrow is loaded).

Example:
    >>> table = to_arrow([{"id": 1, "name": "ada"}, {"id": 2, "name": None}])
    >>> table.num_rows, table.schema.field("id").type
    (2, DataType(int64))
    >>> to_records(table)
    [{'id': 1, 'name': 'ada'}, {'id': 2, 'name': None}]
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "ArrowKind",
    "BatchFormat",
    "Rebatcher",
    "arrow_kind",
    "at_boundary",
    "is_arrow",
    "num_rows",
    "to_arrow",
    "to_records",
]


ArrowKind = Literal["table", "record_batch", ""]
"""What a type is to Arrow: ``pyarrow.Table``, ``pyarrow.RecordBatch`` (or a subclass), neither."""

_KINDS: dict[type, ArrowKind] = {list: "", dict: "", tuple: "", type(None): ""}
"""The Arrow kind of every type seen, so telling a batch's kind is one lookup."""


def _kind_of(cls: type) -> ArrowKind:
    """The Arrow kind of ``cls``, worked out (and remembered) the first time it is seen."""
    kind: ArrowKind = ""
    if "pyarrow" in sys.modules:  # else no type can derive from pyarrow's
        import pyarrow as pa

        if issubclass(cls, pa.Table):
            kind = "table"
        elif issubclass(cls, pa.RecordBatch):
            kind = "record_batch"
        _KINDS[cls] = kind
    return kind


def arrow_kind(batch: object) -> ArrowKind:
    """``"table"`` for a ``pyarrow.Table``, ``"record_batch"`` for a ``RecordBatch``, else ``""``;
    without importing pyarrow."""
    kind = _KINDS.get(type(batch))
    return _kind_of(type(batch)) if kind is None else kind


def is_arrow(batch: object) -> bool:
    """Whether ``batch`` is columnar (a ``pyarrow.Table`` or ``RecordBatch``)."""
    kind = _KINDS.get(type(batch))
    return bool(_kind_of(type(batch)) if kind is None else kind)


def num_rows(batch: Any) -> int:
    """The number of rows of a batch of either kind."""
    return int(batch.num_rows) if is_arrow(batch) else len(batch)


def to_arrow(batch: Any, schema: pa.Schema | None = None) -> pa.Table:
    """The batch as a ``pyarrow.Table``: records through ``Table.from_pylist`` (typed by
    ``schema`` when given, else inferred), a ``RecordBatch`` as a one-chunk table, a table as it
    is (cast to ``schema`` when given and different)."""
    import pyarrow as pa

    if isinstance(batch, pa.Table):
        table = batch
    elif isinstance(batch, pa.RecordBatch):
        table = pa.Table.from_batches([batch])
    else:
        return pa.Table.from_pylist(list(batch), schema=schema)
    if schema is not None and not table.schema.equals(schema):
        table = table.select(schema.names).cast(schema)
    return table


def to_records(batch: Any) -> list[dict[str, Any]]:
    """The batch as a list of dicts (an Arrow batch through ``to_pylist``; records as they are)."""
    if is_arrow(batch):
        records: list[dict[str, Any]] = batch.to_pylist()
        return records
    return batch if isinstance(batch, list) else list(batch)


def concat(tables: Sequence[pa.Table]) -> pa.Table:
    """One table of ``tables`` (no copy for one); tables whose schemas differ (a column missing,
    or null-typed, in some) are promoted to a common schema."""
    if len(tables) == 1:
        return tables[0]
    import pyarrow as pa

    try:
        return pa.concat_tables(tables)
    except pa.ArrowInvalid:
        return pa.concat_tables(tables, promote_options="permissive")


class Rebatcher:
    """Gathers tables into batches of exactly ``rows`` rows (the last one shorter).

    Sources often deliver many small blocks (ClickHouse can send thousands of tiny blocks for a
    sparse result; a CSV reader a block per MiB); slicing and concatenating tables copies no
    rows until a batch is combined from several pieces.
    """

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self._pending: list[pa.Table] = []
        self._count = 0

    def add(self, table: pa.Table) -> list[pa.Table]:
        """Add a table; return the batches of ``rows`` rows now complete."""
        if table.num_rows == 0:
            return []
        self._pending.append(table)
        self._count += table.num_rows
        out = []
        while self._count >= self.rows:
            whole = concat(self._pending)
            out.append(whole.slice(0, self.rows))
            rest = whole.slice(self.rows)
            self._pending = [rest] if rest.num_rows else []
            self._count = rest.num_rows
        return out

    def finish(self) -> list[pa.Table]:
        """The last, shorter batch, if any."""
        if not self._pending:
            return []
        whole = concat(self._pending)
        self._pending = []
        self._count = 0
        return [whole]


BatchFormat = Literal["records", "arrow", "any"]
"""The kind of batch a transformer or loader takes: ``records`` (the default for plain functions
and stage objects that do not say), ``arrow`` (``pyarrow.Table``), or ``any`` (both, as the
ready-made transformers and the connector loaders do)."""


def at_boundary(
    fn: Callable[..., Any], accepts: str, stage: str, pipeline: str, logger: logging.Logger
) -> Callable[..., Any]:
    """``fn`` behind the conversion its stage needs: a stage taking records gets an Arrow batch
    converted once (``to_pylist``), a stage taking Arrow gets records converted (``from_pylist``);
    the first conversion of a run is logged at DEBUG. ``any`` returns ``fn`` itself."""
    if accepts == "any":
        return fn
    logged = False
    known = _KINDS.get  # the kind of a batch's type, per batch without importing pyarrow

    def note(what: str) -> None:
        nonlocal logged
        if not logged:
            logged = True
            logger.debug(
                "%s: %s takes %s: batches are converted at its input", pipeline, stage, what
            )

    if accepts == "records":

        def records_in(batch: Any, *args: Any) -> Any:
            kind = known(type(batch))
            if kind == "table" or (kind is None and _kind_of(type(batch)) == "table"):
                note("records")
                batch = batch.to_pylist()
            return fn(batch, *args)

        return records_in

    def arrow_in(batch: Any, *args: Any) -> Any:
        if (known(type(batch)) or _kind_of(type(batch))) != "table":
            note("Arrow tables")
            batch = to_arrow(batch)
        return fn(batch, *args)

    return arrow_in

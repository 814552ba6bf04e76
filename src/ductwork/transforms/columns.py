"""Column mapping: :func:`transform_columns` renames, computes, fills, selects and drops columns.

The operations read like a SQL ``SELECT`` list. For every record:

1. ``defaults`` fill the columns the record lacks (by input name);
2. ``column_mapping`` renames columns (``{"user_id": "id"}``); when a record has both a column
   and another column renamed to the same name, the renamed one wins;
3. ``new_columns`` adds computed columns, each a function of the incoming record (input names,
   with the defaults filled in), like an expression in a ``SELECT`` list; a computed column may
   replace an existing one (``{"price": lambda r: r["price"] * 100}``). ``new_columns`` may
   also be a list of names: each is added where a record lacks it, holding its value in
   ``defaults`` or ``None`` (``new_columns=["loaded_at"]``);
4. ``select`` keeps only the listed output columns, in that order (a selected column that is
   missing fails the record), or ``drop`` removes the listed output columns.

Each record gives a new dict; the input records are not changed. Computed functions should be
pure: columns that are neither selected nor kept are not computed, and a record that fails is
evaluated once more, step by step, to name the column at fault.

Arrow batches (a :class:`pyarrow.Table`, or a ``RecordBatch``) are mapped as tables, with the same
steps on whole columns: a default becomes a column holding it in every row when the table lacks
the column (a column that is there keeps its nulls), renames, selects and drops only rearrange
columns, and a computed column is one of two kinds, each under its own option, so the kind of a
function is never guessed:

* ``table_columns``: a function of the table (input names, defaults filled in) returning the
  column: a pyarrow ``Array`` or ``ChunkedArray`` of one value per row, or anything with one
  value per row that ``pyarrow.array`` takes (a list, a NumPy array, a polars ``Series``), or a
  single value (a Python value or a pyarrow scalar) given to every row. Typically an expression
  of :mod:`pyarrow.compute`: ``{"total": lambda t: pc.multiply(t["price"], t["qty"])}``. If it
  raises, the whole batch fails (one error naming the batch's records, as a ``per="batch"``
  lambda does). On a list of records, the batch is made into a table
  (``Table.from_pylist``), mapped as a table, and passed on as records (``Table.to_pylist``).
* ``new_columns``: a function of one record, as for lists of records; on an Arrow batch it is
  called for each row (the table is converted to records once, the one step done row by row in
  Python), a row where it raises fails alone, and its values become a column of the type
  pyarrow infers for them.

An Arrow batch gives a new table; the input table is not changed.

Speed: the mapping is compiled once, when the transformer is made, into a small function that
loops over a batch and builds each output record in one dict display (the way :mod:`dataclasses`
generates its methods); column names enter the generated source only as string literals
(``repr``), and functions and defaults only as arguments.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pyarrow as pa

from .._exceptions import TransformError
from ..core.config import validate_config
from ..core.types import Record
from ._arrow import AnyBatch, is_arrow, rows_of, to_arrow, to_records
from .base import TransformRun
from .column_mapping import ColumnMappingConfig
from .column_tables import TableColumnMapper

__all__ = ["ColumnMappingConfig", "ColumnTransformer", "transform_columns"]


class ColumnTransformer(TableColumnMapper):
    """The transformer :func:`transform_columns` makes."""

    def __repr__(self) -> str:
        return f"ColumnTransformer(name={self.name!r})"

    # ------------------------------------------------------------------ batches

    async def apply(self, batch: AnyBatch, start: int, run: TransformRun) -> AnyBatch | None:
        """Map every record of one batch to a new record (an Arrow batch to a new table)."""
        if is_arrow(batch):
            table = to_arrow(batch)
            return await self._apply_table(table, start, run, lambda rows: rows_of(table, rows))
        if self.table_computed:
            records = batch
            try:
                table = to_arrow(records)
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                end = start + len(records) - 1
                raise TransformError(
                    f"records {start}-{end}: table_columns need the batch as a table, and "
                    f"pyarrow cannot make one of these records: {exc}"
                ) from exc
            out = await self._apply_table(
                table, start, run, lambda rows: [records[row] for row in rows]
            )
            return to_records(out)
        return await self._apply_records(batch, start, run)


def transform_columns(
    column_mapping: Mapping[str, str] | None = None,
    new_columns: Mapping[str, Callable[[Record], Any]] | Sequence[str] | None = None,
    **options: Any,
) -> ColumnTransformer:
    """Make a transformer that renames, computes, fills, selects and drops columns.

    Works on lists of records and on Arrow tables (see :mod:`ductwork.transforms.columns`).

    Args:
        column_mapping: input column → new name.
        new_columns: output column → function of the incoming record; or a list of the names
            of new columns, added with ``None`` (or their value in ``defaults``).
        **options: any other field of :class:`ColumnMappingConfig` (``table_columns``,
            ``select``, ``drop``, ``defaults``, ``missing_columns`` (a renamed column that no
            record has), ``error_handling``, ``dead_letter_sink``, ``name``), where every
            option is documented.

    Raises:
        ConfigError: an option is invalid; the message names it.

    Example:
        >>> import anyio
        >>> from ductwork import RunContext
        >>> stage = transform_columns(
        ...     {"user_id": "id"},
        ...     {"total": lambda r: r["price"] * r["qty"]},
        ...     select=["id", "total", "country"],
        ...     defaults={"country": "unknown"},
        ... )
        >>> anyio.run(stage.transform, [{"user_id": 1, "price": 2.5, "qty": 4}], RunContext())
        [{'id': 1, 'total': 10.0, 'country': 'unknown'}]

        On a table, a computed column can be a function of the table:

        >>> import pyarrow as pa
        >>> import pyarrow.compute as pc
        >>> stage = transform_columns(
        ...     {"user_id": "id"},
        ...     table_columns={"total": lambda t: pc.multiply(t["price"], t["qty"])},
        ...     select=["id", "total"],
        ... )
        >>> table = pa.table({"user_id": [1], "price": [2.5], "qty": [4]})
        >>> anyio.run(stage.transform, table, RunContext()).to_pylist()
        [{'id': 1, 'total': 10.0}]
    """
    config = validate_config(
        ColumnMappingConfig,
        "transform_columns",
        column_mapping=column_mapping,
        new_columns=new_columns,
        **options,
    )
    return ColumnTransformer(config)

"""Column mapping on Arrow tables: the same steps as on records, on whole columns.

See :mod:`ductwork.transforms.columns` for how each kind of computed column is made.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import pyarrow as pa
import pyarrow.compute as pc

from .._exceptions import TransformError
from ..core.types import Record
from ._arrow import mask_of
from .base import Failure, TransformRun
from .column_records import ColumnFailure, ColumnMapper

__all__ = ["TableColumnMapper"]


class _RowFailure(NamedTuple):
    """The first failure of one row of a table: the column, the message and the cause."""

    column: str
    message: str
    cause: BaseException | None


class _BatchFailure(Exception):
    """A whole batch failed (a table column's function raised); the message names the column."""


def _as_column(result: Any, rows: int, column: str) -> Any:
    """What a ``table_columns`` function returned, as a column of ``rows`` values."""
    if isinstance(result, (pa.Array, pa.ChunkedArray)):
        array = result
    elif hasattr(result, "__arrow_c_stream__"):
        array = pa.chunked_array(result)
    elif hasattr(result, "__arrow_c_array__") or (
        isinstance(result, (list, tuple)) or getattr(result, "ndim", 0) >= 1
    ):
        array = pa.array(result)
    else:
        scalar = result if isinstance(result, pa.Scalar) else pa.scalar(result)
        return pa.repeat(scalar, rows)
    if len(array) != rows:
        raise _BatchFailure(
            f"new column {column!r}: the function returned {len(array)} values "
            f"for a batch of {rows} rows"
        )
    return array


class TableColumnMapper(ColumnMapper):
    """A column mapping with its Arrow path beside the records one."""

    async def _apply_table(
        self,
        table: pa.Table,
        start: int,
        run: TransformRun,
        originals: Callable[[list[int]], list[Record]],
    ) -> pa.Table:
        """Map a table (see the module docs); ``originals`` gives the input records of rows."""
        rows = table.num_rows
        src: dict[str, Any] = dict(zip(table.column_names, table.columns, strict=True))
        filled = table
        try:
            for column, value in self.defaults.items():
                if column not in src:
                    src[column] = _as_column(value, rows, column)
                    filled = filled.append_column(column, src[column])
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise TransformError(
                f"records {start}-{start + rows - 1}: default of column {column!r}: {exc}"
            ) from exc
        failed: dict[int, _RowFailure] = {}  # row → its first failure
        computed: dict[str, Any] = {}
        records: list[Record] | None = None
        try:
            for column in self._outputs():
                if column in self.table_computed:
                    computed[column] = self._compute_table(column, filled)
                    continue
                if records is None:
                    records = filled.to_pylist()
                computed[column] = self._compute_rows(column, records, failed)
            out = self._assemble(src, computed.__getitem__)
        except _BatchFailure as failure:
            error = TransformError(f"records {start}-{start + rows - 1}: {failure}")
            cause = failure.__cause__
            if run.raise_errors:
                raise error from cause
            error.__cause__ = cause
            everyone = list(range(rows))
            await run.reject(
                [
                    Failure(start + i, r, error)
                    for i, r in zip(everyone, originals(everyone), strict=True)
                ]
            )
            return table.slice(0, 0)
        except ColumnFailure as failure:
            # A selected column is missing, in every row: each row fails there, unless a
            # computed column selected before it failed first.
            assert self.select is not None
            order = self.select.index
            missing = _RowFailure(failure.column, str(failure), None)
            failed = {
                row: failed[row]
                if row in failed and order(failed[row].column) < order(failure.column)
                else missing
                for row in range(rows)
            }
            out = {}
        result = pa.table(out) if out else table.select([])
        if not failed:
            return result
        bad = sorted(failed)
        failures = []
        for row, record in zip(bad, originals(bad), strict=True):
            _, message, cause = failed[row]
            error = TransformError(f"record {start + row}: {message}")
            error.__cause__ = cause
            if run.raise_errors:
                raise error from cause
            failures.append(Failure(start + row, record, error))
        await run.reject(failures)
        return result.filter(pc.invert(mask_of(rows, bad)))

    def _compute_table(self, column: str, table: pa.Table) -> Any:
        try:
            result = self.table_computed[column](table)
        except Exception as exc:
            raise _BatchFailure(f"new column {column!r}: {type(exc).__name__}: {exc}") from exc
        try:
            return _as_column(result, table.num_rows, column)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise _BatchFailure(
                f"new column {column!r}: pyarrow cannot make a column of what the function "
                f"returned: {exc}"
            ) from exc

    def _compute_rows(
        self,
        column: str,
        records: list[Record],
        failed: dict[int, _RowFailure],
    ) -> Any:
        """A per-record column of a table; rows where the function raises go to ``failed``."""
        fn = self.computed[column]
        values: list[Any] = []
        append = values.append
        i = 0
        while i < len(records):
            try:
                for record in records[i:] if i else records:
                    append(fn(record))
                break
            except Exception as exc:
                i = len(values)
                message = f"new column {column!r}: {type(exc).__name__}: {exc}"
                failed.setdefault(i, _RowFailure(column, message, exc))
                append(None)
                i += 1
        try:
            return pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise _BatchFailure(
                f"new column {column!r}: pyarrow cannot make a column of its values: {exc}"
            ) from exc

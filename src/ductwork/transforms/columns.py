"""Column mapping: :func:`transform_columns` renames, computes, fills, selects and drops columns.

The operations read like a SQL ``SELECT`` list. For every record:

1. ``defaults`` fill the columns the record lacks (by input name);
2. ``column_mapping`` renames columns (``{"user_id": "id"}``); when a record has both a column
   and another column renamed to the same name, the renamed one wins;
3. ``new_columns`` adds computed columns, each a function of the incoming record (input names,
   with the defaults filled in), like an expression in a ``SELECT`` list; a computed column may
   replace an existing one (``{"price": lambda r: r["price"] * 100}``);
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

from collections.abc import Callable, Mapping
from typing import Annotated, Any, NamedTuple

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, ValidationInfo, field_validator, model_validator

from .._exceptions import TransformError
from ..core.config import validate_config
from ..core.stages import accepts_positional, callable_name
from ..core.types import Batch, Record
from ._arrow import AnyBatch, is_arrow, mask_of, rows_of, to_arrow, to_records
from .base import Failure, PolicyConfig, RecordTransformer, TransformRun

__all__ = ["ColumnMappingConfig", "ColumnTransformer", "transform_columns"]

ColumnName = Annotated[str, Field(min_length=1)]


class ColumnMappingConfig(PolicyConfig):
    """Validated options of :func:`transform_columns`."""

    none_is_default = frozenset(
        {"column_mapping", "new_columns", "table_columns", "drop", "defaults"}
    )

    name: Annotated[str, Field(min_length=1, max_length=200)] = "transform_columns"
    """The stage name."""
    column_mapping: dict[ColumnName, ColumnName] = Field(default_factory=dict)
    """Input column → new name."""
    new_columns: dict[ColumnName, Any] = Field(default_factory=dict)
    """Output column → function of the incoming record (input column names, defaults filled
    in); replaces a column of the same name."""
    table_columns: dict[ColumnName, Any] = Field(default_factory=dict)
    """Output column → function of the incoming batch as a ``pyarrow.Table`` (input column
    names, defaults filled in) returning the column: an array of one value per row or a single
    value for every row (see :mod:`ductwork.transforms.columns`); replaces a column of the same
    name."""
    select: list[ColumnName] | None = None
    """The output columns to keep, in this order; a missing one fails its record (not together
    with ``drop``)."""
    drop: list[ColumnName] = Field(default_factory=list)
    """The output columns to remove."""
    defaults: dict[ColumnName, Any] = Field(default_factory=dict)
    """Input column → value for records that lack it (shared, not copied)."""

    @field_validator("column_mapping")
    @classmethod
    def _check_mapping(cls, value: dict[str, str]) -> dict[str, str]:
        seen: dict[str, str] = {}
        for old, new in value.items():
            if new in seen:
                raise ValueError(f"{seen[new]!r} and {old!r} are both renamed to {new!r}")
            seen[new] = old
        return value

    @field_validator("new_columns", "table_columns")
    @classmethod
    def _check_functions(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        what = "the record" if info.field_name == "new_columns" else "the table"
        for column, fn in value.items():
            if not callable(fn):
                raise ValueError(
                    f"column {column!r}: expected a function of {what}, got {type(fn).__name__}"
                )
            if not accepts_positional(fn, 1):
                raise ValueError(
                    f"column {column!r}: {callable_name(fn, 'the function')} must accept "
                    f"{what} as an argument"
                )
        if info.field_name == "table_columns":
            both = sorted(set(value) & set(info.data.get("new_columns") or {}))
            if both:
                raise ValueError(
                    f"{', '.join(map(repr, both))} given in both new_columns and table_columns"
                )
        return value

    @field_validator("select", "drop")
    @classmethod
    def _check_unique(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            duplicates = sorted({name for name in value if value.count(name) > 1})
            if duplicates:
                raise ValueError(f"lists {', '.join(map(repr, duplicates))} more than once")
        return value

    @field_validator("select")
    @classmethod
    def _check_select(cls, value: list[str] | None, info: Any) -> list[str] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("select at least one column")
        mapping: dict[str, str] = info.data.get("column_mapping") or {}
        targets = set(mapping.values())
        for name in value:
            if name in mapping and name not in targets:
                raise ValueError(
                    f"{name!r} is renamed to {mapping[name]!r}; select names output columns"
                )
        return value

    @model_validator(mode="after")
    def _check_operations(self) -> ColumnMappingConfig:
        if self.select is not None and self.drop:
            raise ValueError("give select or drop, not both")
        if not (
            self.column_mapping
            or self.new_columns
            or self.table_columns
            or self.select is not None
            or self.drop
            or self.defaults
        ):
            raise ValueError(
                "nothing to do: give column_mapping, new_columns, table_columns, select, drop "
                "or defaults"
            )
        return self


class _ColumnFailure(Exception):
    """A record failed in one column; the message names the column."""

    def __init__(self, message: str, column: str = "") -> None:
        super().__init__(message)
        self.column = column


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


def _literal(name: str) -> str:
    """A column name as a Python string literal for the generated source."""
    return repr(str.__str__(name))


class ColumnTransformer(RecordTransformer):
    """The transformer :func:`transform_columns` makes."""

    def __init__(self, config: ColumnMappingConfig) -> None:
        super().__init__(config)
        self.config = config
        self.rename = dict(config.column_mapping)
        self.computed = dict(config.new_columns)
        self.table_computed = dict(config.table_columns)
        self.select = list(config.select) if config.select is not None else None
        self.drop = frozenset(config.drop)
        self.defaults = dict(config.defaults)
        # input name each output column comes from (when it is not computed)
        self._source = {new: old for old, new in self.rename.items()}
        # input columns whose output name is dropped
        self._drop_inputs = frozenset(
            name for name in (*self.rename, *self.drop) if self.rename.get(name, name) in self.drop
        )
        self.row, self.rows = self._compile()

    def __repr__(self) -> str:
        return f"ColumnTransformer(name={self.name!r})"

    # ------------------------------------------------------------------ compiled path

    def _compile(self) -> tuple[Callable[[Record], Record], Callable[[Batch, Batch], None]]:
        """Build the functions for this mapping (see the module docs).

        Returns ``row(record) -> record`` and ``rows(batch, out)``, which appends the output
        record of each record of ``batch`` to ``out`` (so when it raises, ``len(out)`` tells how
        far it got).
        """
        namespace: dict[str, Any] = {}
        # `body` computes `r`, the output record of the input record `rec`; `src` is the input
        # record with the defaults filled in (without defaults, the loop names the record `src`)
        body: list[str] = []
        record = "src"
        if self.defaults:
            record = "rec"
            namespace["fill"] = self._fill
            present = " and ".join(f"{_literal(k)} in rec" for k in self.defaults)
            body.append(f"src = rec if {present} else fill(rec)")
        functions: dict[str, str] = {}
        for i, (column, fn) in enumerate(self.computed.items()):
            namespace[f"f{i}"] = fn
            functions[column] = f"f{i}"
        if self.select is not None:
            parts = []
            for column in self.select:
                if column in functions:
                    parts.append(f"{_literal(column)}: {functions[column]}(src)")
                else:
                    source = self._source.get(column, column)
                    parts.append(f"{_literal(column)}: src[{_literal(source)}]")
            body.append("r = {" + ", ".join(parts) + "}")
        else:
            kept = [(c, f) for c, f in functions.items() if c not in self.drop]
            if self.rename or self._drop_inputs:
                namespace["get"] = self.rename.get
                namespace["dropped"] = self._drop_inputs
                key = "get(k, k)" if self.rename else "k"
                where = " if k not in dropped" if self._drop_inputs else ""
                body.append(f"r = {{{key}: v for k, v in src.items(){where}}}")
                for old, new in self.rename.items():
                    if new not in self.drop and new not in self.rename:
                        # a column already named like a rename target: the renamed one wins
                        body.append(
                            f"if {_literal(old)} in src: r[{_literal(new)}] = src[{_literal(old)}]"
                        )
                for column, fn_name in kept:
                    body.append(f"r[{_literal(column)}] = {fn_name}(src)")
            else:
                parts = ["**src"] + [f"{_literal(c)}: {f}(src)" for c, f in kept]
                body.append("r = {" + ", ".join(parts) + "}")
        lines = [f"def row({record}):"]
        lines += [f"    {line}" for line in body]
        lines += ["    return r", "", "def rows(batch, out):", "    append = out.append"]
        lines += [f"    for {record} in batch:"]
        if body[-1].startswith("r = ") and len(body) <= 2:
            # one expression: append it without naming it
            lines += [f"        {line}" for line in body[:-1]]
            lines += [f"        append({body[-1][4:]})"]
        else:
            lines += [f"        {line}" for line in body]
            lines += ["        append(r)"]
        source = "\n".join(lines) + "\n"
        exec(compile(source, f"<transform_columns {self.name}>", "exec"), namespace)
        return namespace["row"], namespace["rows"]

    def _fill(self, record: Record) -> Record:
        filled = record.copy()
        for column, value in self.defaults.items():
            if column not in filled:
                filled[column] = value
        return filled

    # ------------------------------------------------------------------ checked path

    def row_checked(self, record: Record) -> Record:
        """The same mapping, step by step; raises an error naming the column at fault."""
        src = self._fill(record) if self.defaults else record
        return self._assemble(src, lambda column: self._compute(column, src))

    def _outputs(self) -> list[str]:
        """The computed columns the output keeps, in the order they are evaluated."""
        computed = [*self.computed, *self.table_computed]
        if self.select is not None:
            return [column for column in self.select if column in computed]
        return [column for column in computed if column not in self.drop]

    def _assemble(self, src: Any, value_of: Callable[[str], Any]) -> dict[str, Any]:
        """The output of one input ``src`` (a record, or a table's columns by name), with the
        computed columns given by ``value_of``; raises _ColumnFailure for a missing column."""
        computed = self.computed.keys() | self.table_computed.keys()
        if self.select is not None:
            out: dict[str, Any] = {}
            for column in self.select:
                if column in computed:
                    out[column] = value_of(column)
                    continue
                source = self._source.get(column, column)
                if source not in src:
                    origin = f" (renamed from {source!r})" if source != column else ""
                    raise _ColumnFailure(
                        f"selected column {column!r}{origin} is missing; give it a default",
                        column,
                    )
                out[column] = src[source]
            return out
        out = {}
        for key, value in src.items():
            if key not in self._drop_inputs:
                out[self.rename.get(key, key)] = value
        for old, new in self.rename.items():
            if old in src and new not in self.drop:
                out[new] = src[old]
        for column in self._outputs():
            out[column] = value_of(column)
        return out

    def _compute(self, column: str, src: Record) -> Any:
        try:
            return self.computed[column](src)
        except Exception as exc:
            raise _ColumnFailure(f"new column {column!r}: {type(exc).__name__}: {exc}") from exc

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

    async def _apply_records(self, batch: Batch, start: int, run: TransformRun) -> Batch:
        rows = self.rows
        out: Batch = []
        failures: list[Failure] = []
        done = 0  # records of the batch handled so far
        while done < len(batch):
            before = len(out)
            try:
                rows(batch if done == 0 else batch[done:], out)
                break
            except Exception:
                i = done + len(out) - before  # the record that raised
            done = i + 1
            record = batch[i]
            # Evaluate the record again step by step, to name the column at fault.
            try:
                out.append(self.row_checked(record))
                continue
            except _ColumnFailure as failure:
                error = TransformError(f"record {start + i}: {failure}")
                cause = failure.__cause__
            except Exception as other:
                error = TransformError(f"record {start + i}: {type(other).__name__}: {other}")
                cause = other
            error.__cause__ = cause
            if run.raise_errors:
                raise error from cause
            failures.append(Failure(start + i, record, error))
        await run.reject(failures)
        return out

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
        except _ColumnFailure as failure:
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


def transform_columns(
    column_mapping: Mapping[str, str] | None = None,
    new_columns: Mapping[str, Callable[[Record], Any]] | None = None,
    **options: Any,
) -> ColumnTransformer:
    """Make a transformer that renames, computes, fills, selects and drops columns.

    Works on lists of records and on Arrow tables (see :mod:`ductwork.transforms.columns`).

    Args:
        column_mapping: input column → new name.
        new_columns: output column → function of the incoming record.
        **options: any other field of :class:`ColumnMappingConfig` (``table_columns``,
            ``select``, ``drop``, ``defaults``, ``error_handling``, ``dead_letter_sink``,
            ``name``), where every option is documented.

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

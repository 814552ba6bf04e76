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

Speed: the mapping is compiled once, when the transformer is made, into a small function that
loops over a batch and builds each output record in one dict display (the way :mod:`dataclasses`
generates its methods); column names enter the generated source only as string literals
(``repr``), and functions and defaults only as arguments.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator

from .._exceptions import TransformError
from ..core.config import validate_config
from ..core.stages import accepts_positional, callable_name
from ..core.types import Batch, Record
from .base import ErrorHandling, Failure, PolicyConfig, RecordTransformer, TransformRun

__all__ = ["ColumnMappingConfig", "ColumnTransformer", "transform_columns"]

ColumnName = Annotated[str, Field(min_length=1)]


class ColumnMappingConfig(PolicyConfig):
    """Validated options of :func:`transform_columns`.

    Attributes:
        column_mapping: input column → new name.
        new_columns: output column → function of the incoming record.
        select: the output columns to keep, in order (excludes ``drop``).
        drop: the output columns to remove.
        defaults: input column → value used when a record lacks the column.
    """

    name: Annotated[str, Field(min_length=1, max_length=200)] = "transform_columns"
    column_mapping: dict[ColumnName, ColumnName] = Field(default_factory=dict)
    new_columns: dict[ColumnName, Any] = Field(default_factory=dict)
    select: list[ColumnName] | None = None
    drop: list[ColumnName] = Field(default_factory=list)
    defaults: dict[ColumnName, Any] = Field(default_factory=dict)

    @field_validator("column_mapping")
    @classmethod
    def _check_mapping(cls, value: dict[str, str]) -> dict[str, str]:
        seen: dict[str, str] = {}
        for old, new in value.items():
            if new in seen:
                raise ValueError(f"{seen[new]!r} and {old!r} are both renamed to {new!r}")
            seen[new] = old
        return value

    @field_validator("new_columns")
    @classmethod
    def _check_functions(cls, value: dict[str, Any]) -> dict[str, Any]:
        for column, fn in value.items():
            if not callable(fn):
                raise ValueError(
                    f"column {column!r}: expected a function of the record, got {type(fn).__name__}"
                )
            if not accepts_positional(fn, 1):
                raise ValueError(
                    f"column {column!r}: {callable_name(fn, 'the function')} must accept "
                    f"the record as an argument"
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
            or self.select is not None
            or self.drop
            or self.defaults
        ):
            raise ValueError(
                "nothing to do: give column_mapping, new_columns, select, drop or defaults"
            )
        return self


class _ColumnFailure(Exception):
    """A record failed in one column; the message names the column."""


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
        if self.select is not None:
            out: Record = {}
            for column in self.select:
                if column in self.computed:
                    out[column] = self._compute(column, src)
                    continue
                source = self._source.get(column, column)
                if source not in src:
                    origin = f" (renamed from {source!r})" if source != column else ""
                    raise _ColumnFailure(
                        f"selected column {column!r}{origin} is missing; give it a default"
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
        for column in self.computed:
            if column not in self.drop:
                out[column] = self._compute(column, src)
        return out

    def _compute(self, column: str, src: Record) -> Any:
        try:
            return self.computed[column](src)
        except Exception as exc:
            raise _ColumnFailure(f"new column {column!r}: {type(exc).__name__}: {exc}") from exc

    # ------------------------------------------------------------------ batches

    async def apply(self, batch: Batch, start: int, run: TransformRun) -> Batch | None:
        """Map every record of one batch to a new record."""
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


def transform_columns(
    column_mapping: Mapping[str, str] | None = None,
    new_columns: Mapping[str, Callable[[Record], Any]] | None = None,
    *,
    select: Sequence[str] | None = None,
    drop: Sequence[str] | None = None,
    defaults: Mapping[str, Any] | None = None,
    name: str = "transform_columns",
    error_handling: ErrorHandling = "raise",
    dead_letter_sink: Any = None,
) -> ColumnTransformer:
    """Make a transformer that renames, computes, fills, selects and drops columns.

    Args:
        column_mapping: input column → new name.
        new_columns: output column → function of the incoming record (input column names,
            defaults filled in); replaces a column of the same name.
        select: the output columns to keep, in this order; a missing one fails its record.
        drop: the output columns to remove (not together with ``select``).
        defaults: input column → value for records that lack it (shared, not copied).
        name: the stage name.
        error_handling: ``"raise"``, ``"skip"`` or ``"dead_letter"`` for records that fail.
        dead_letter_sink: the loader (or function) dead letters go to.

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
    """
    config: ColumnMappingConfig = validate_config(
        ColumnMappingConfig,
        "transform_columns",
        name=name,
        error_handling=error_handling,
        dead_letter_sink=dead_letter_sink,
        column_mapping=column_mapping if column_mapping is not None else {},
        new_columns=new_columns if new_columns is not None else {},
        select=select,
        drop=drop if drop is not None else [],
        defaults=defaults if defaults is not None else {},
    )
    return ColumnTransformer(config)

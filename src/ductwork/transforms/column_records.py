"""Column mapping on lists of records: the mapping compiled once, and checked step by step.

See :mod:`ductwork.transforms.columns` for what the operations do and how they are compiled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._exceptions import TransformError
from ..core.types import Batch, Record
from .base import Failure, RecordTransformer, TransformRun
from .column_mapping import ColumnMappingConfig

__all__ = ["ColumnFailure", "ColumnMapper"]


class ColumnFailure(Exception):
    """A record failed in one column; the message names the column."""

    def __init__(self, message: str, column: str = "") -> None:
        super().__init__(message)
        self.column = column


def _literal(name: str) -> str:
    """A column name as a Python string literal for the generated source."""
    return repr(str.__str__(name))


class ColumnMapper(RecordTransformer):
    """A column mapping and its records path: the compiled functions and the checked one."""

    def __init__(self, config: ColumnMappingConfig) -> None:
        super().__init__(config)
        self.config = config
        self.rename = dict(config.column_mapping)
        self.named_columns = tuple(config.column_mapping)
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
        computed columns given by ``value_of``; raises ColumnFailure for a missing column."""
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
                    raise ColumnFailure(
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
            raise ColumnFailure(f"new column {column!r}: {type(exc).__name__}: {exc}") from exc

    # ------------------------------------------------------------------ records

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
            except ColumnFailure as failure:
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

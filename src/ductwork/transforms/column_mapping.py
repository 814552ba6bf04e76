"""The options of :func:`~ductwork.transforms.transform_columns`, validated.

What the operations do is in :mod:`ductwork.transforms.columns`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import Field, ValidationInfo, field_validator, model_validator

from ..core.stages import accepts_positional, callable_name
from .base import ColumnPolicyConfig

__all__ = ["ColumnMappingConfig", "ColumnName"]

ColumnName = Annotated[str, Field(min_length=1)]


class ColumnMappingConfig(ColumnPolicyConfig):
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
    in); replaces a column of the same name. A list of names instead adds each column where a
    record lacks it, with its value in ``defaults`` or ``None`` (they become ``defaults``)."""
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

    @model_validator(mode="before")
    @classmethod
    def _names_are_defaults(cls, data: Any) -> Any:
        """``new_columns`` as a list of names: columns added with ``None`` or their default."""
        if not isinstance(data, Mapping):
            return data
        names = data.get("new_columns")
        if not isinstance(names, (list, tuple)):
            return data
        if not all(isinstance(name, str) and name for name in names):
            return data  # reported by the field's validator
        defaults = data.get("defaults") or {}
        if isinstance(defaults, Mapping):
            defaults = {**dict.fromkeys(names), **defaults}
        return {**data, "new_columns": {}, "defaults": defaults}

    @field_validator("new_columns", mode="before")
    @classmethod
    def _check_names(cls, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            bad = next(name for name in value if not isinstance(name, str) or not name)
            raise ValueError(f"a list of new columns holds their names, got {bad!r}")
        return value

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

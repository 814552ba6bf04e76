"""The target type of one column of :func:`~ductwork.transforms.convert_types`.

Shared by the transformer's configuration (:mod:`ductwork.transforms.conversion`) and the value
converters built from it (:mod:`ductwork.transforms.converters`).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from ..core.config import Options

__all__ = ["ColumnType", "TypeName"]

TypeName = Literal[
    "int",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float",
    "str",
    "bool",
    "decimal",
    "date",
    "datetime",
    "uuid",
    "json",
]

_TYPE_NAMES: tuple[str, ...] = TypeName.__args__  # type: ignore[attr-defined]

_ALIASES = {
    "integer": "int",
    "float64": "float",
    "double": "float",
    "string": "str",
    "boolean": "bool",
    "timestamp": "datetime",
}

_PYTHON_TYPES: dict[Any, str] = {
    int: "int",
    float: "float",
    str: "str",
    bool: "bool",
    Decimal: "decimal",
    date: "date",
    datetime: "datetime",
    UUID: "uuid",
    dict: "json",
    list: "json",
}

_UNIX_FORMATS = ("unix", "unix_ms")


class ColumnType(Options):
    """How :func:`convert_types` converts one column.

    Anywhere a ``ColumnType`` is expected, a Python type (``int``, ``datetime``, ``Decimal``,
    ``UUID``, ``dict``…), a type name (``"int32"``, ``"datetime"``…) or a dict of these fields is
    accepted too.

    Example:
        >>> ColumnType.parse("Int32").type
        'int32'
        >>> ColumnType(type="datetime", timezone="UTC").timezone
        'UTC'
    """

    type: TypeName
    """The target type (see the module docs for what converts)."""
    format: Annotated[str, Field(min_length=1)] | None = None
    """For ``date``/``datetime``, a :meth:`~datetime.datetime.strptime` format used instead of
    ISO 8601; for ``datetime`` also ``"unix"`` or ``"unix_ms"``."""
    timezone: Annotated[str, Field(min_length=1)] | None = None
    """For ``datetime``, an IANA zone name: every value becomes aware in that zone."""
    empty_as_none: bool | None = None
    """Whether empty strings become ``None`` (default: the ``convert_types`` setting, which by
    default is ``True`` for every target but ``str``)."""
    nullable: bool = True
    """``False`` makes ``None`` (after ``empty_as_none``) a conversion error."""

    @classmethod
    def parse(cls, spec: Any) -> ColumnType:
        """Make a ColumnType from a type, a type name, a dict or a ColumnType."""
        if isinstance(spec, ColumnType):
            return spec
        return cls.model_validate(spec)

    @model_validator(mode="before")
    @classmethod
    def _from_shorthand(cls, value: Any) -> Any:
        if isinstance(value, (type, str)):
            return {"type": value}
        return value

    @field_validator("type", mode="before")
    @classmethod
    def _normalize_type(cls, value: Any) -> Any:
        if isinstance(value, type):
            name = _PYTHON_TYPES.get(value)
            if name is None:
                raise ValueError(
                    f"cannot convert to {value.__name__}; expected one of "
                    f"int, float, str, bool, Decimal, date, datetime, UUID, dict, list "
                    f"or a type name"
                )
            return name
        if isinstance(value, str):
            key = value.strip().lower()
            key = _ALIASES.get(key, key)
            if key not in _TYPE_NAMES:
                raise ValueError(
                    f"unknown type {value!r}; expected one of {', '.join(_TYPE_NAMES)}"
                )
            return key
        return value

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @model_validator(mode="after")
    def _check_options(self) -> ColumnType:
        if self.format is not None:
            if self.type not in ("date", "datetime"):
                raise ValueError(f"format applies to date and datetime columns, not {self.type}")
            if self.format in _UNIX_FORMATS and self.type != "datetime":
                raise ValueError(f"format {self.format!r} applies to datetime columns only")
        if self.timezone is not None and self.type != "datetime":
            raise ValueError(f"timezone applies to datetime columns, not {self.type}")
        return self

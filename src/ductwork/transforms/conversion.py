"""Type conversion: :func:`convert_types` turns column values into typed Python values.

Target types (a Python type, a name, or a :class:`ColumnType` with options):

=============  ================================================================================
``int``        integer literals (``" 42 "``, ``"-7"``), ints, bools, integral floats/Decimals;
               ``"1.0"`` and ``1.5`` do not convert. ``int8`` … ``int64`` and ``uint8`` …
               ``uint64`` also check the range.
``float``      numeric strings (``"1.5"``, ``"1e3"``, ``"nan"``), ints, floats, Decimals
``str``        strings as they are; numbers, UUIDs and Decimals via ``str()``, dates and
               datetimes as ISO 8601, bytes decoded as UTF-8, dicts and lists as JSON text
``bool``       ``true/false``, ``yes/no``, ``y/n``, ``t/f``, ``on/off``, ``1/0`` (any case),
               bools, and the numbers 1 and 0
``decimal``    :class:`~decimal.Decimal` from strings and ints exactly, floats via their
               shortest repr (``0.1`` → ``Decimal("0.1")``); not NaN or infinity
``date``       ISO 8601 dates (a datetime string gives its date), or ``format`` (strptime);
               datetimes give their date
``datetime``   ISO 8601 (``"2024-05-01T12:00:00Z"``, offsets, naive), or ``format``
               (strptime, ``%z`` for offsets), or ``format="unix"``/``"unix_ms"`` for epoch
               seconds/milliseconds (as aware UTC); ``timezone="Europe/Berlin"`` makes every
               value aware in that zone: naive values are taken to be in it, aware ones converted
``uuid``       :class:`~uuid.UUID` from its string forms, or 16 bytes
``json``       JSON text (str or bytes) parsed with orjson; dicts, lists and numbers kept
=============  ================================================================================

``None`` stays ``None`` (unless the column has ``nullable=False``); with ``empty_as_none`` an empty
string (for non-string columns also one of only whitespace) becomes ``None``. Columns missing from
a record stay missing, and columns not in the mapping are left alone. Converting already converted
values gives them back unchanged, so a batch can go through the same conversion twice (the one
exception: a ``json`` value whose JSON text was itself a string).

``strict_mode=True`` (default): a value that does not convert is an error for its record,
:class:`~ductwork.TypeConversionError` naming the column, the value and the record's position in
the run, handled by the error policy (``error_handling``). ``strict_mode=False``: the value becomes
``None`` and is counted in the stage's ``conversion_failures`` metric (a column with
``nullable=False`` still fails its record).

Speed: one converter is built per column when the transformer is made. Each batch is converted
column by column, in C-level ``map`` calls over the column's values where the values allow (the
common case: strings that all parse), with a per-value path only for the columns of a batch that
hold ``None``, empty strings, mixed types or bad values. Records are updated in place.

Arrow batches (a :class:`pyarrow.Table`, or a ``RecordBatch``, taken as a table of one chunk) are
converted column by column with :mod:`pyarrow.compute`, without making records, into a new table
(other columns and the column order kept): the same values convert, to the same values, with the
same errors, the same ``None`` and empty-string rules and the same ``error_handling``; bad rows
are dropped with one ``Table.filter``, and only they are made into records, for dead letters.
What Arrow's column types change (``int`` is ``int64``, the scale of decimals, naive and aware
datetimes in one column...) is listed in :mod:`ductwork.transforms.arrow_converters`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, field_validator

from .._exceptions import TypeConversionError
from ..core.config import validate_config
from ..core.types import Batch
from ._arrow import AnyBatch, is_arrow, mask_of, rows_of, to_arrow
from .arrow_converters import ArrowColumnConverter
from .base import Failure, PolicyConfig, RecordTransformer, TransformRun
from .column_type import ColumnType
from .converters import MISSING, ColumnConverter, InvalidValue

__all__ = ["ColumnType", "TypeConversionConfig", "TypeConverter", "convert_types"]


class TypeConversionConfig(PolicyConfig):
    """Validated options of :func:`convert_types`."""

    name: Annotated[str, Field(min_length=1, max_length=200)] = "convert_types"
    """The stage name."""
    type_mapping: Annotated[dict[str, ColumnType], Field(min_length=1)]
    """Column name → target type (a type, a type name, a dict or a :class:`ColumnType`)."""
    strict_mode: bool = True
    """``True``: a value that does not convert fails its record with a
    :class:`~ductwork.TypeConversionError` (handled by ``error_handling``). ``False``: it
    becomes ``None`` and is counted in the stage's ``conversion_failures`` metric."""
    empty_as_none: bool = False
    """Whether empty strings become ``None`` (per column: :class:`ColumnType`)."""

    @field_validator("type_mapping", mode="before")
    @classmethod
    def _check_mapping(cls, value: Any) -> Any:
        if not isinstance(value, Mapping):
            raise ValueError(
                f"expected a mapping of column name to type, got {type(value).__name__}"
            )
        return dict(value)


class TypeConverter(RecordTransformer):
    """The transformer :func:`convert_types` makes. Converts records in place, and Arrow
    batches into a new table."""

    def __init__(self, config: TypeConversionConfig) -> None:
        super().__init__(config)
        self.config = config
        self.strict_mode = config.strict_mode
        self.columns = [
            ColumnConverter(name, spec, config.empty_as_none)
            for name, spec in config.type_mapping.items()
        ]
        self.arrow_columns = [
            ArrowColumnConverter(column, spec)
            for column, spec in zip(self.columns, config.type_mapping.values(), strict=True)
        ]

    def __repr__(self) -> str:
        mapping = {name: spec.type for name, spec in self.config.type_mapping.items()}
        return f"TypeConverter(name={self.name!r}, types={mapping!r})"

    async def apply(self, batch: AnyBatch, start: int, run: TransformRun) -> AnyBatch | None:
        """Convert one batch (records in place); bad records go to the error policy."""
        if is_arrow(batch):
            return await self._apply_arrow(to_arrow(batch), start, run)
        return await self._apply_records(batch, start, run)

    async def _apply_arrow(self, table: pa.Table, start: int, run: TransformRun) -> pa.Table:
        strict = self.strict_mode
        original = table
        failures: dict[int, tuple[str, Any, str]] = {}
        nulled = 0
        for converter in self.arrow_columns:
            name = converter.name
            index = table.schema.get_field_index(name)
            if index < 0:
                if name not in table.column_names:
                    continue  # columns missing from the batch stay missing
                index = table.column_names.index(name)
            converted = converter.convert(table.column(index))
            for row, (value, message) in sorted(converted.failures.items()):
                if not strict and converter.column.nullable:
                    nulled += 1
                elif row not in failures:
                    failures[row] = (name, value, message)
            if not converted.unchanged:
                table = table.set_column(index, name, converted.array)
        if nulled:
            run.ctx.add_metric("conversion_failures", nulled)
        if not failures:
            return table
        rows = sorted(failures)
        rejected = []
        for row, record in zip(rows, rows_of(original, rows), strict=True):
            name, value, message = failures[row]
            error = TypeConversionError(message, column=name, value=value, position=start + row)
            rejected.append(Failure(start + row, record, error))
        await run.reject(rejected)
        return table.filter(pc.invert(mask_of(table.num_rows, rows)))

    async def _apply_records(self, batch: Batch, start: int, run: TransformRun) -> Batch:
        strict = self.strict_mode
        failures: dict[int, tuple[str, Any, str]] = {}
        originals: list[tuple[str, list[Any]]] = []
        nulled = 0
        for column in self.columns:
            name = column.name
            try:
                values = list(map(column.getter, batch))
            except KeyError:
                values = [record.get(name, MISSING) for record in batch]
            else:
                out = column.convert_column(values)
                if out is not None:
                    if out is not values:
                        for record, value in zip(batch, out, strict=True):
                            record[name] = value
                        originals.append((name, values))
                    continue
            # The per-value path: None, empty strings, missing columns, mixed or bad values.
            convert = column.convert
            for i, value in enumerate(values):
                if value is MISSING:
                    continue
                try:
                    batch[i][name] = convert(value)
                except InvalidValue as exc:
                    if not strict and column.nullable:
                        batch[i][name] = None
                        nulled += 1
                    elif i not in failures:
                        failures[i] = (name, value, str(exc))
            originals.append((name, values))
        if nulled:
            run.ctx.add_metric("conversion_failures", nulled)
        if not failures:
            return batch
        rejected = []
        for i in sorted(failures):
            name, value, message = failures[i]
            record = dict(batch[i])
            for column_name, values in originals:
                original = values[i]
                if original is not MISSING:
                    record[column_name] = original
            error = TypeConversionError(message, column=name, value=value, position=start + i)
            rejected.append(Failure(start + i, record, error))
        await run.reject(rejected)
        return [record for i, record in enumerate(batch) if i not in failures]


def convert_types(
    type_mapping: Mapping[str, Any], strict_mode: bool = True, **options: Any
) -> TypeConverter:
    """Make a transformer that converts columns to typed values.

    Args:
        type_mapping: column name → target type: a Python type (``int``, ``float``, ``str``,
            ``bool``, ``Decimal``, ``date``, ``datetime``, ``UUID``, ``dict``/``list`` for JSON),
            a type name (``"int32"``, ``"uint64"``, ``"json"``…) or a :class:`ColumnType` (or
            dict) with options such as ``format`` and ``timezone``.
        strict_mode: ``True``: a value that does not convert fails its record (handled by
            ``error_handling``); ``False``: it becomes ``None``.
        **options: any other field of :class:`TypeConversionConfig` (``empty_as_none``,
            ``error_handling``, ``dead_letter_sink``, ``name``), where every option is
            documented.

    Raises:
        ConfigError: an option is invalid; the message names it (e.g. ``type_mapping.price.type``).

    Example:
        >>> import anyio
        >>> import pyarrow as pa
        >>> from ductwork import RunContext
        >>> stage = convert_types({"id": int, "price": "decimal", "day": "date"})
        >>> batch = [{"id": "7", "price": "9.90", "day": "2024-05-01"}]
        >>> anyio.run(stage.transform, batch, RunContext())
        [{'id': 7, 'price': Decimal('9.90'), 'day': datetime.date(2024, 5, 1)}]
        >>> table = pa.table({"id": ["7"], "price": ["9.90"], "day": ["2024-05-01"]})
        >>> out = anyio.run(stage.transform, table, RunContext())
        >>> out.schema
        id: int64
        price: decimal128(38, 2)
        day: date32[day]
        >>> out.to_pylist()
        [{'id': 7, 'price': Decimal('9.90'), 'day': datetime.date(2024, 5, 1)}]
    """
    config = validate_config(
        TypeConversionConfig,
        "convert_types",
        type_mapping=type_mapping,
        strict_mode=strict_mode,
        **options,
    )
    return TypeConverter(config)

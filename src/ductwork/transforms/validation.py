"""Record validation: :func:`validate_records` checks each record against a pydantic model.

An Arrow batch (a :class:`pyarrow.Table`, or a ``RecordBatch``) is validated as records: it is
converted to records once (``Table.to_pylist``), validated like a list of records, and the records
that pass are made back into a table of the batch's own schema: each column the model's output
has takes the model's values (so coercions and validators apply, cast to the column's type), the
other columns keep their values, and fields of the model that are not columns of the batch are
left out. This is the one transformer that handles an Arrow batch row by row in Python.
"""

from __future__ import annotations

from typing import Annotated, Any

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, Field, TypeAdapter, ValidationError, field_validator
from pydantic.errors import PydanticSchemaGenerationError, PydanticUserError

from .._exceptions import RecordValidationError, TransformError
from ..core.config import validate_config
from ..core.types import Batch
from ._arrow import AnyBatch, is_arrow, mask_of, to_arrow
from .base import Failure, PolicyConfig, RecordTransformer, TransformRun

__all__ = [
    "RecordValidationError",
    "RecordValidator",
    "ValidationConfig",
    "validate_records",
]

_MAX_INPUT_REPR = 80


class ValidationConfig(PolicyConfig):
    """Validated options of :func:`validate_records`."""

    name: Annotated[str, Field(min_length=1, max_length=200)] = "validate_records"
    """The stage name."""
    model: Any
    """A pydantic model class (or any type a pydantic ``TypeAdapter`` validates dicts into, such
    as a dataclass or a TypedDict)."""
    strict: bool | None = None
    """Pydantic's strict mode (no coercion, e.g. of ``"1"`` to ``1``); ``None`` keeps the
    model's own setting."""
    by_alias: bool = False
    """Whether the output records use the fields' aliases."""

    @field_validator("model")
    @classmethod
    def _check_model(cls, value: Any) -> Any:
        if not isinstance(value, type):
            raise ValueError(f"expected a pydantic model class, got {type(value).__name__}")
        try:
            TypeAdapter(list[value])
        except (PydanticSchemaGenerationError, PydanticUserError) as exc:
            raise ValueError(f"cannot validate records against {value.__name__}: {exc}") from None
        return value


def _describe(error: Any) -> tuple[str, str]:
    """A ``(field, message)`` pair for one pydantic error of a batch (loc starts with the index)."""
    path = ".".join(str(part) for part in error["loc"][1:]) or "<record>"
    message = error["msg"]
    if error["type"] != "missing" and path != "<record>":
        shown = repr(error.get("input"))
        if len(shown) > _MAX_INPUT_REPR:
            shown = shown[: _MAX_INPUT_REPR - 3] + "..."
        message = f"{message} (got {shown})"
    return path, message


class RecordValidator(RecordTransformer):
    """The transformer :func:`validate_records` makes."""

    def __init__(self, config: ValidationConfig) -> None:
        super().__init__(config)
        self.config = config
        self.model = config.model
        self.adapter: TypeAdapter[list[Any]] = TypeAdapter(list[config.model])  # type: ignore[name-defined]
        self.strict = config.strict
        self.by_alias = config.by_alias

    def __repr__(self) -> str:
        return f"RecordValidator(name={self.name!r}, model={self.model.__name__})"

    async def apply(self, batch: AnyBatch, start: int, run: TransformRun) -> AnyBatch | None:
        """Validate one batch with one TypeAdapter call; return the model-coerced dicts (for an
        Arrow batch, a table of its schema)."""
        if is_arrow(batch):
            table = to_arrow(batch)
            out, rejected = await self._validate(table.to_pylist(), start, run)
            return self._to_table(table, out, rejected, start)
        out, _ = await self._validate(batch, start, run)
        return out

    async def _validate(
        self, batch: Batch, start: int, run: TransformRun
    ) -> tuple[Batch, list[int]]:
        """The model's dicts of the records that pass, and the indices of those that do not."""
        adapter = self.adapter
        rejected: list[int] = []
        try:
            validated = adapter.validate_python(batch, strict=self.strict)
        except ValidationError as exc:
            problems: dict[int, list[tuple[str, str]]] = {}
            for error in exc.errors(include_url=False):
                loc = error["loc"]
                if not loc or not isinstance(loc[0], int):
                    raise  # not a per-record problem (e.g. the batch is not a list)
                problems.setdefault(loc[0], []).append(_describe(error))
            rejected = sorted(problems)
            failures = [
                Failure(
                    start + i,
                    batch[i],
                    RecordValidationError(problems[i], position=start + i),
                )
                for i in rejected
            ]
            if run.raise_errors:
                raise failures[0].error from None
            await run.reject(failures)
            batch = [record for i, record in enumerate(batch) if i not in problems]
            validated = adapter.validate_python(batch, strict=self.strict)
        out: Batch = adapter.dump_python(validated, by_alias=self.by_alias)
        return out, rejected

    def _to_table(self, table: pa.Table, out: Batch, rejected: list[int], start: int) -> pa.Table:
        """The rows of ``table`` that passed, with the model's values (see the module docs)."""
        if rejected:
            table = table.filter(pc.invert(mask_of(table.num_rows, rejected)))
        if not out:
            return table
        columns = []
        for index, field in enumerate(table.schema):
            name = field.name
            if not all(name in record for record in out):
                columns.append(table.column(index))
                continue
            values = [record[name] for record in out]
            try:
                try:
                    column = pa.array(values, type=field.type)
                except (pa.ArrowInvalid, pa.ArrowTypeError):
                    column = pa.array(values).cast(field.type)
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
                raise TransformError(
                    f"records {start}-{start + len(rejected) + len(out) - 1}: column {name!r}: "
                    f"the model's values do not fit the column's type {field.type}: {exc}"
                ) from exc
            columns.append(column)
        return pa.Table.from_arrays(columns, schema=table.schema)


def validate_records(model: type[BaseModel] | type[Any], **options: Any) -> RecordValidator:
    """Make a transformer that validates each record against a pydantic model.

    The whole batch is validated in one call of a pydantic ``TypeAdapter``; the output records are
    the model's dicts (coerced values, defaults filled in, unknown fields handled as the model's
    ``extra`` setting says). A record that does not match fails with a
    :class:`RecordValidationError` naming each field at fault, handled by ``error_handling``.
    An Arrow batch is validated as records and passed on as a table of its own schema (see
    :mod:`ductwork.transforms.validation`).

    Args:
        model: a pydantic model class (a dataclass or TypedDict works too).
        **options: any other field of :class:`ValidationConfig` (``strict``, ``by_alias``,
            ``error_handling``, ``dead_letter_sink``, ``name``), where every option is
            documented.

    Raises:
        ConfigError: an option is invalid; the message names it.

    Example:
        >>> import anyio
        >>> from pydantic import BaseModel
        >>> from ductwork import RunContext
        >>> class Order(BaseModel):
        ...     id: int
        ...     amount: float = 0.0
        >>> stage = validate_records(Order)
        >>> anyio.run(stage.transform, [{"id": "7"}], RunContext())
        [{'id': 7, 'amount': 0.0}]
    """
    config = validate_config(ValidationConfig, "validate_records", model=model, **options)
    return RecordValidator(config)

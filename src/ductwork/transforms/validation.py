"""Record validation: :func:`validate_records` checks each record against a pydantic model."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field, TypeAdapter, ValidationError, field_validator
from pydantic.errors import PydanticSchemaGenerationError, PydanticUserError

from .._exceptions import RecordValidationError
from ..core.config import validate_config
from ..core.types import Batch
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

    async def apply(self, batch: Batch, start: int, run: TransformRun) -> Batch | None:
        """Validate one batch with one TypeAdapter call; return the model-coerced dicts."""
        adapter = self.adapter
        try:
            validated = adapter.validate_python(batch, strict=self.strict)
        except ValidationError as exc:
            problems: dict[int, list[tuple[str, str]]] = {}
            for error in exc.errors(include_url=False):
                loc = error["loc"]
                if not loc or not isinstance(loc[0], int):
                    raise  # not a per-record problem (e.g. the batch is not a list)
                problems.setdefault(loc[0], []).append(_describe(error))
            failures = [
                Failure(
                    start + i,
                    batch[i],
                    RecordValidationError(problems[i], position=start + i),
                )
                for i in sorted(problems)
            ]
            if run.raise_errors:
                raise failures[0].error from None
            await run.reject(failures)
            batch = [record for i, record in enumerate(batch) if i not in problems]
            validated = adapter.validate_python(batch, strict=self.strict)
        out: Batch = adapter.dump_python(validated, by_alias=self.by_alias)
        return out


def validate_records(model: type[BaseModel] | type[Any], **options: Any) -> RecordValidator:
    """Make a transformer that validates each record against a pydantic model.

    The whole batch is validated in one call of a pydantic ``TypeAdapter``; the output records are
    the model's dicts (coerced values, defaults filled in, unknown fields handled as the model's
    ``extra`` setting says). A record that does not match fails with a
    :class:`RecordValidationError` naming each field at fault, handled by ``error_handling``.

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

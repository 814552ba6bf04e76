"""Configuration models: the one place where every option is declared, and their validation.

Each configurable thing (a pipeline, a composition, a connector, a transformer) has one pydantic
model derived from :class:`Options`. A field is an option: its type and bounds, its default and,
in the docstring written under it, its documentation (read by pydantic into the field's
``description``, so ``Model.model_fields[name].description`` and the JSON schema carry it). Classes
take the model; factories take their main arguments by position and every other option by
keyword, and validate them all through the model with :func:`validate_config`, so adding an
option is adding a field.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import sys
import warnings
from collections.abc import Callable, Mapping
from types import FrameType
from typing import Annotated, Any, ClassVar, ParamSpec, TypeAlias, TypeVar, cast, overload

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, model_validator

from .._exceptions import ConfigError
from .types import ErrorHandling

__all__ = [
    "ErrorPolicy",
    "Options",
    "check_value",
    "checked_keywords",
    "configure",
    "error_policy",
    "validate_config",
    "warn_deprecated",
]

ModelT = TypeVar("ModelT", bound=BaseModel)
P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


class Options(BaseModel):
    """Base of the configuration models: immutable, unknown names rejected, fields documented
    by the docstring under each of them.

    Fields named in ``none_is_default`` take ``None`` as "not given" (their default applies):
    for options whose factories have always accepted ``None`` for an empty mapping, no
    pagination and the like, while the field itself holds a value.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    none_is_default: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, /, **data: Any) -> None:
        """Validate ``data``; a bad or unknown field raises ConfigError naming it (with a
        suggestion for a name close to a field's), as the factories do."""
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise _config_error(type(self), exc, type(self).__name__, data) from None

    # Validation inside pydantic (a model as a field of another, model_validate) keeps its
    # ValidationError, so the outer error names the nested field: this __init__ only wraps the
    # errors of a direct call.
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    @model_validator(mode="before")
    @classmethod
    def _drop_none_defaults(cls, data: Any) -> Any:
        if cls.none_is_default and isinstance(data, Mapping):
            return {
                name: value
                for name, value in data.items()
                if value is not None or name not in cls.none_is_default
            }
        return data


def error_policy(value: Any) -> Any:
    """The boolean spelling of the ``error_handling`` options: ``True`` is ``"raise"`` (a clear
    error stops the run), ``False`` is ``"skip"`` (the bad input is dropped and counted); any
    other value is validated as it is.

    Example:
        >>> error_policy(True), error_policy(False), error_policy("skip")
        ('raise', 'skip', 'skip')
    """
    if value is True:
        return "raise"
    if value is False:
        return "skip"
    return value


ErrorPolicy: TypeAlias = Annotated[ErrorHandling, BeforeValidator(error_policy)]
"""The type of an ``error_handling`` field: ``"raise"``, ``"skip"``, or ``True``/``False``."""


def validate_config(model: type[ModelT], what: str, /, **values: Any) -> ModelT:
    """Validate ``values`` against ``model``, raising ConfigError that names each bad field.

    An unknown name close to an option's name gets a suggestion.

    Example:
        >>> from ductwork import PipelineConfig
        >>> validate_config(PipelineConfig, "pipeline", queue_size=4).queue_size
        4
        >>> try:
        ...     validate_config(PipelineConfig, "pipeline", queue_sise=4)
        ... except ConfigError as error:
        ...     print(error.errors)
        [('queue_sise', "Extra inputs are not permitted (did you mean 'queue_size'?)")]
    """
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        error = _config_error(model, exc, what, values)
    raise error from None


def _config_error(
    model: type[BaseModel], exc: ValidationError, what: str, values: Mapping[str, Any]
) -> ConfigError:
    """The ConfigError of ``exc``, with a suggestion for each unknown name close to a field's."""
    error = ConfigError.from_validation_error(exc, what)
    known = list(model.model_fields)
    errors = [
        (field, message + _did_you_mean(field, known) if field in values else message)
        for field, message in error.errors
    ]
    if errors != error.errors:
        lines = "; ".join(f"{field}: {message}" for field, message in errors)
        error = ConfigError(f"invalid {what} configuration: {lines}", errors)
        error.__cause__ = exc
    return error


@overload
def checked_keywords(fn: Callable[P, R], /) -> Callable[P, R]: ...


@overload
def checked_keywords(
    *, forwards_to: Callable[..., Any]
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...


def checked_keywords(
    fn: Callable[P, R] | None = None, /, *, forwards_to: Callable[..., Any] | None = None
) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
    """Make an unknown keyword argument of ``fn`` a ConfigError naming it (with a suggestion),
    instead of the ``TypeError`` of Python, as for the options of the factories.

    ``fn`` may be a coroutine function (the wrapper is one too, and checks when awaited). A
    function taking ``**options`` that it passes on to another gives that one as
    ``forwards_to`` (``@checked_keywords(forwards_to=other)``): its keywords are known too.
    Without it, a function taking ``**options`` is returned unchanged (every keyword fits).
    """
    if fn is None:
        callee = forwards_to
        return lambda function: _checked(function, callee)
    return _checked(fn, forwards_to)


def _checked(fn: Callable[P, R], forwards_to: Callable[..., Any] | None) -> Callable[P, R]:
    known = _keywords(fn)
    if forwards_to is not None:
        known += [name for name in _keywords(forwards_to) if name not in known]
    elif any(p.kind is p.VAR_KEYWORD for p in inspect.signature(fn).parameters.values()):
        return fn

    def check(kwargs: Mapping[str, Any]) -> None:
        unknown = [name for name in kwargs if name not in known]
        if unknown:
            errors = [
                (name, "unexpected keyword argument" + _did_you_mean(name, known))
                for name in unknown
            ]
            lines = "; ".join(f"{field}: {message}" for field, message in errors)
            raise ConfigError(f"invalid arguments of {fn.__name__}(): {lines}", errors)

    if inspect.iscoroutinefunction(fn):
        coroutine_fn: Callable[..., Any] = fn

        @functools.wraps(fn)
        async def call_async(*args: Any, **kwargs: Any) -> Any:
            check(kwargs)
            return await coroutine_fn(*args, **kwargs)

        return cast("Callable[P, R]", call_async)

    @functools.wraps(fn)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        check(kwargs)
        return fn(*args, **kwargs)

    return call


def _keywords(fn: Callable[..., Any]) -> list[str]:
    """The names ``fn`` takes by keyword."""
    return [
        name
        for name, param in inspect.signature(fn).parameters.items()
        if param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY)
    ]


def _did_you_mean(name: str, known: list[str]) -> str:
    """`` (did you mean 'x'?)`` when ``name`` is not one of ``known`` but close to one."""
    close = [] if name in known else difflib.get_close_matches(name, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def configure(
    model: type[ModelT], what: str, config: ModelT | None, options: Mapping[str, Any]
) -> ModelT:
    """The configuration a class is given: ``config``, with ``options`` (fields of ``model``)
    validated on top of it, or ``options`` alone when there is no ``config``."""
    if config is None:
        return validate_config(model, what, **options)
    if not isinstance(config, model):
        raise ConfigError.for_field(
            "config", f"expected a {model.__name__}, got {type(config).__name__}"
        )
    if not options:
        return config
    given = {name: getattr(config, name) for name in config.model_fields_set}
    return validate_config(model, what, **{**given, **options})


def warn_deprecated(message: str) -> None:
    """Issue a DeprecationWarning attributed to the first caller outside ductwork and pydantic.

    The warning then points at the user's line (and shows by default when that is ``__main__``),
    however deep in the validation it is raised.
    """
    level = 2  # the caller of this function
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__", "").partition(".")[0] in (
        "ductwork",
        "pydantic",
    ):
        frame = frame.f_back
        level += 1
    warnings.warn(message, DeprecationWarning, stacklevel=level)


def check_value(
    check: Callable[[T], object],
    value: T,
    errors: type[Exception] | tuple[type[Exception], ...],
    message: str = "{error}",
) -> T:
    """Return ``value`` once ``check(value)`` accepts it: the body of a field validator.

    An exception of ``errors`` raised by ``check`` becomes the ValueError pydantic reports for
    the field, its text ``message`` with ``{value}`` and ``{error}`` filled in.

    Example:
        >>> check_value(int, "12", ValueError, "expected a number, got {value!r}")
        '12'
        >>> check_value(int, "twelve", ValueError, "expected a number, got {value!r}")
        Traceback (most recent call last):
        ...
        ValueError: expected a number, got 'twelve'
    """
    try:
        check(value)
    except errors as exc:
        raise ValueError(message.format(value=value, error=exc)) from None
    return value

"""Validating configuration: every option model of the core, connectors and transformers.

Example:
    >>> from pydantic import BaseModel
    >>> class Options(BaseModel):
    ...     batch_size: int = 100
    >>> validate_config(Options, "example", batch_size=500).batch_size
    500
    >>> try:
    ...     validate_config(Options, "example", batch_size="many")
    ... except ConfigError as exc:
    ...     print(exc.errors[0][0])
    batch_size
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from .._exceptions import ConfigError

__all__ = ["validate_config"]


def validate_config(model: type[BaseModel], what: str, **values: Any) -> Any:
    """Validate ``values`` against ``model``, raising ConfigError that names each bad field."""
    try:
        return model(**values)
    except ValidationError as exc:
        raise ConfigError.from_validation_error(exc, what) from None

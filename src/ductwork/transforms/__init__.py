"""Transformers: functions, type conversion, column mapping and record validation.

Every transformer here works per batch and shares one error policy (``error_handling``:
``"raise"``, ``"skip"`` or ``"dead_letter"``; see :mod:`ductwork.transforms.base`).
"""

from typing import TYPE_CHECKING

from .._exceptions import RecordValidationError as RecordValidationError
from ..core.exports import lazy_names as _lazy_names

__all__ = (
    "ColumnMappingConfig",
    "ColumnTransformer",
    "ColumnType",
    "Failure",
    "LambdaConfig",
    "LambdaTransformer",
    "PolicyConfig",
    "RecordTransformer",
    "RecordValidationError",
    "RecordValidator",
    "TransformErrorHandling",
    "TransformRun",
    "TypeConversionConfig",
    "TypeConverter",
    "ValidationConfig",
    "convert_types",
    "create_lambda_transformer",
    "transform_columns",
    "validate_records",
)

#: For each module, the public names it defines (separated by spaces), imported on first use.
_EXPORTS: dict[str, str] = {
    ".base": "Failure PolicyConfig RecordTransformer TransformErrorHandling TransformRun",
    ".columns": "ColumnMappingConfig ColumnTransformer transform_columns",
    ".conversion": "ColumnType TypeConversionConfig TypeConverter convert_types",
    ".lambda_": "LambdaConfig LambdaTransformer create_lambda_transformer",
    ".validation": "RecordValidator ValidationConfig validate_records",
}

if TYPE_CHECKING:
    from .base import Failure as Failure
    from .base import PolicyConfig as PolicyConfig
    from .base import RecordTransformer as RecordTransformer
    from .base import TransformErrorHandling as TransformErrorHandling
    from .base import TransformRun as TransformRun
    from .columns import ColumnMappingConfig as ColumnMappingConfig
    from .columns import ColumnTransformer as ColumnTransformer
    from .columns import transform_columns as transform_columns
    from .conversion import ColumnType as ColumnType
    from .conversion import TypeConversionConfig as TypeConversionConfig
    from .conversion import TypeConverter as TypeConverter
    from .conversion import convert_types as convert_types
    from .lambda_ import LambdaConfig as LambdaConfig
    from .lambda_ import LambdaTransformer as LambdaTransformer
    from .lambda_ import create_lambda_transformer as create_lambda_transformer
    from .validation import RecordValidator as RecordValidator
    from .validation import ValidationConfig as ValidationConfig
    from .validation import validate_records as validate_records
else:
    __getattr__, __dir__ = _lazy_names(globals(), _EXPORTS)

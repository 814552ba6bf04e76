"""ductwork: asyncio streaming ETL/ELT pipelines.

Extractors are async generators yielding batches of records, transformers map batches, loaders are
async sinks; every stage runs as a task of one anyio task group, joined by bounded streams, so a
slow loader holds the extractor back and memory stays constant however large the extract.
"""

from ._exceptions import ClickHouseError as ClickHouseError
from ._exceptions import CompositionError as CompositionError
from ._exceptions import ConfigError as ConfigError
from ._exceptions import DiscoveryError as DiscoveryError
from ._exceptions import DuctworkError as DuctworkError
from ._exceptions import ExtractError as ExtractError
from ._exceptions import FileFormatError as FileFormatError
from ._exceptions import HttpError as HttpError
from ._exceptions import LoadError as LoadError
from ._exceptions import PipelineError as PipelineError
from ._exceptions import RunTimeoutError as RunTimeoutError
from ._exceptions import ScheduleError as ScheduleError
from ._exceptions import TransformError as TransformError
from ._exceptions import TypeConversionError as TypeConversionError
from .connectors.console import ConsoleLoader as ConsoleLoader
from .connectors.console import ConsoleLoaderConfig as ConsoleLoaderConfig
from .connectors.console import create_console_loader as create_console_loader
from .core.compose import ConditionalPipeline as ConditionalPipeline
from .core.compose import ParallelPipeline as ParallelPipeline
from .core.compose import SequentialPipeline as SequentialPipeline
from .core.context import RunContext as RunContext
from .core.context import TimeWindow as TimeWindow
from .core.pipeline import Pipeline as Pipeline
from .core.pipeline import PipelineConfig as PipelineConfig
from .core.result import RunResult as RunResult
from .core.result import StageStats as StageStats
from .core.retry import RetryPipeline as RetryPipeline
from .core.runnable import Runnable as Runnable
from .core.stages import Extractor as Extractor
from .core.stages import Loader as Loader
from .core.stages import Sink as Sink
from .core.stages import Transformer as Transformer
from .core.stages import transformer as transformer
from .core.types import Batch as Batch
from .core.types import Record as Record
from .core.types import RunStatus as RunStatus
from .factories import create_conditional_pipeline as create_conditional_pipeline
from .factories import create_el_pipeline as create_el_pipeline
from .factories import create_etl_pipeline as create_etl_pipeline
from .factories import create_parallel_pipeline as create_parallel_pipeline
from .factories import create_retry_pipeline as create_retry_pipeline
from .factories import create_sequential_pipeline as create_sequential_pipeline
from .state import JsonFileStateStore as JsonFileStateStore
from .state import MemoryStateStore as MemoryStateStore
from .state import StateStore as StateStore

__version__ = "0.1.0"

__all__ = (
    "Batch",
    "ClickHouseError",
    "CompositionError",
    "ConditionalPipeline",
    "ConfigError",
    "ConsoleLoader",
    "ConsoleLoaderConfig",
    "DiscoveryError",
    "DuctworkError",
    "ExtractError",
    "Extractor",
    "FileFormatError",
    "HttpError",
    "JsonFileStateStore",
    "LoadError",
    "Loader",
    "MemoryStateStore",
    "ParallelPipeline",
    "Pipeline",
    "PipelineConfig",
    "PipelineError",
    "Record",
    "RetryPipeline",
    "RunContext",
    "RunResult",
    "RunStatus",
    "RunTimeoutError",
    "Runnable",
    "ScheduleError",
    "SequentialPipeline",
    "Sink",
    "StageStats",
    "StateStore",
    "TimeWindow",
    "TransformError",
    "Transformer",
    "TypeConversionError",
    "__version__",
    "create_conditional_pipeline",
    "create_console_loader",
    "create_el_pipeline",
    "create_etl_pipeline",
    "create_parallel_pipeline",
    "create_retry_pipeline",
    "create_sequential_pipeline",
    "transformer",
)

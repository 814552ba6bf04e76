"""ductwork: asyncio streaming ETL/ELT pipelines.

Extractors are async generators yielding batches of records, transformers map batches, loaders are
async sinks; every stage runs as a task of one anyio task group, joined by bounded streams, so a
slow loader holds the extractor back and memory stays constant however large the extract.

Importing the package is cheap: the exceptions and ``__version__`` are defined at once, every other
name is imported on first use (see :mod:`ductwork.core.exports`), so ``import ductwork`` loads no
connector and none of pyarrow, httpx or pydantic until a name that needs them is used.
"""

from typing import TYPE_CHECKING

from ._exceptions import ClickHouseError as ClickHouseError
from ._exceptions import ClickHouseExtractError as ClickHouseExtractError
from ._exceptions import ClickHouseLoadError as ClickHouseLoadError
from ._exceptions import CompositionError as CompositionError
from ._exceptions import ConfigError as ConfigError
from ._exceptions import DiscoveryError as DiscoveryError
from ._exceptions import DuctworkError as DuctworkError
from ._exceptions import ExtractError as ExtractError
from ._exceptions import FileFormatError as FileFormatError
from ._exceptions import HttpError as HttpError
from ._exceptions import LoadError as LoadError
from ._exceptions import PipelineError as PipelineError
from ._exceptions import RecordValidationError as RecordValidationError
from ._exceptions import RegistryError as RegistryError
from ._exceptions import RunTimeoutError as RunTimeoutError
from ._exceptions import ScheduleError as ScheduleError
from ._exceptions import TransformError as TransformError
from ._exceptions import TypeConversionError as TypeConversionError
from ._version import __version__ as __version__
from .core.exports import deferred_fallback as _deferred_fallback
from .core.exports import lazy_names as _lazy_names

__all__ = (
    "BackfillResult",
    "BasicAuth",
    "Batch",
    "BearerAuth",
    "ClickHouseConfig",
    "ClickHouseError",
    "ClickHouseExtractError",
    "ClickHouseExtractor",
    "ClickHouseExtractorConfig",
    "ClickHouseLoadError",
    "ClickHouseLoader",
    "ClickHouseLoaderConfig",
    "ColumnType",
    "CompositionError",
    "ConditionalPipeline",
    "ConfigError",
    "ConsoleLoader",
    "ConsoleLoaderConfig",
    "CronJob",
    "CursorPagination",
    "DiscoveredModule",
    "DiscoveryError",
    "DiscoveryFailure",
    "DiscoveryReport",
    "DuctworkError",
    "Executor",
    "ExtractError",
    "Extractor",
    "FileExtractor",
    "FileExtractorConfig",
    "FileFormatError",
    "FileLoader",
    "FileLoaderConfig",
    "HeaderAuth",
    "HttpError",
    "HttpExtractor",
    "HttpExtractorConfig",
    "HttpRetryConfig",
    "IncrementalConfig",
    "JobStatus",
    "JsonFileStateStore",
    "LinkHeaderPagination",
    "LoadError",
    "Loader",
    "LocalExecutor",
    "MemoryStateStore",
    "NextUrlPagination",
    "OffsetPagination",
    "PageNumberPagination",
    "ParallelPipeline",
    "Pipeline",
    "PipelineConfig",
    "PipelineError",
    "PipelineRegistry",
    "RateLimitConfig",
    "RateLimiter",
    "Record",
    "RecordValidationError",
    "RegisteredPipeline",
    "RegistryError",
    "RetryPipeline",
    "RunContext",
    "RunResult",
    "RunStatus",
    "RunTimeoutError",
    "Runnable",
    "ScheduleError",
    "Scheduler",
    "SchedulerConfig",
    "SchedulerStatistics",
    "SequentialPipeline",
    "Sink",
    "SqliteStateStore",
    "StageStats",
    "StateStore",
    "TimeWindow",
    "Timescope",
    "TransformError",
    "Transformer",
    "TypeConversionError",
    "WindowRun",
    "__version__",
    "backfill_pipeline",
    "convert_types",
    "create_clickhouse_extractor",
    "create_clickhouse_loader",
    "create_conditional_pipeline",
    "create_console_loader",
    "create_el_pipeline",
    "create_etl_pipeline",
    "create_file_extractor",
    "create_file_loader",
    "create_http_extractor",
    "create_lambda_transformer",
    "create_parallel_pipeline",
    "create_retry_pipeline",
    "create_sequential_pipeline",
    "daily",
    "discover_pipelines",
    "every",
    "get_cron_job",
    "get_default_registry",
    "get_pipeline",
    "get_pipeline_entry",
    "get_table_name",
    "hourly",
    "list_cron_jobs",
    "list_pipelines",
    "loader",
    "monthly",
    "open_scheduler",
    "register_cron_job",
    "register_pipeline",
    "register_pipeline_with_timescope",
    "remove_cron_job",
    "run_pipeline",
    "to_arrow",
    "to_records",
    "transform_columns",
    "transformer",
    "unregister_pipeline",
    "validate_pipeline",
    "validate_records",
    "validate_schedule",
    "validate_timescope",
    "weekly",
)


#: For each module, the public names it defines (separated by spaces), imported on first use.
_EXPORTS: dict[str, str] = {
    ".backfill": "BackfillResult WindowRun backfill_pipeline",
    ".connectors.clickhouse": (
        "ClickHouseConfig ClickHouseExtractor ClickHouseExtractorConfig ClickHouseLoader"
        " ClickHouseLoaderConfig create_clickhouse_extractor create_clickhouse_loader"
    ),
    ".connectors.console": "ConsoleLoader ConsoleLoaderConfig create_console_loader",
    ".connectors.files": (
        "FileExtractor FileExtractorConfig FileLoader FileLoaderConfig create_file_extractor"
        " create_file_loader"
    ),
    ".connectors.http": (
        "BasicAuth BearerAuth CursorPagination HeaderAuth HttpExtractor HttpExtractorConfig"
        " HttpRetryConfig IncrementalConfig LinkHeaderPagination NextUrlPagination OffsetPagination"
        " PageNumberPagination RateLimitConfig RateLimiter create_http_extractor"
    ),
    ".core.arrow": "to_arrow to_records",
    ".core.compose": "ConditionalPipeline ParallelPipeline SequentialPipeline",
    ".core.context": "RunContext TimeWindow",
    ".core.executor": "Executor LocalExecutor",
    ".core.pipeline": "Pipeline PipelineConfig",
    ".core.result": "RunResult StageStats",
    ".core.retry": "RetryPipeline",
    ".core.runnable": "Runnable",
    ".core.stages": "Extractor Loader Sink Transformer loader transformer",
    ".core.store": "StateStore",
    ".core.types": "Batch Record RunStatus",
    ".cron": "CronJob validate_schedule",
    ".discovery": "DiscoveredModule DiscoveryFailure DiscoveryReport discover_pipelines",
    ".factories": (
        "create_conditional_pipeline create_el_pipeline create_etl_pipeline"
        " create_parallel_pipeline create_retry_pipeline create_sequential_pipeline"
    ),
    ".registry": (
        "PipelineRegistry RegisteredPipeline get_cron_job get_default_registry get_pipeline"
        " get_pipeline_entry list_cron_jobs list_pipelines register_cron_job register_pipeline"
        " register_pipeline_with_timescope remove_cron_job run_pipeline unregister_pipeline"
        " validate_pipeline"
    ),
    ".scheduler": "JobStatus Scheduler SchedulerConfig SchedulerStatistics open_scheduler",
    ".state": "JsonFileStateStore MemoryStateStore",
    ".state_sqlite": "SqliteStateStore",
    ".timescope": "Timescope daily every get_table_name hourly monthly validate_timescope weekly",
    ".transforms": (
        "ColumnType convert_types create_lambda_transformer transform_columns validate_records"
    ),
    # needs the ``dask`` extra: kept out of __all__, so ``import *`` works without it
    ".core.dask_executor": "DaskExecutor",
}

if TYPE_CHECKING:
    from .backfill import BackfillResult as BackfillResult
    from .backfill import WindowRun as WindowRun
    from .backfill import backfill_pipeline as backfill_pipeline
    from .connectors.clickhouse import ClickHouseConfig as ClickHouseConfig
    from .connectors.clickhouse import ClickHouseExtractor as ClickHouseExtractor
    from .connectors.clickhouse import ClickHouseExtractorConfig as ClickHouseExtractorConfig
    from .connectors.clickhouse import ClickHouseLoader as ClickHouseLoader
    from .connectors.clickhouse import ClickHouseLoaderConfig as ClickHouseLoaderConfig
    from .connectors.clickhouse import create_clickhouse_extractor as create_clickhouse_extractor
    from .connectors.clickhouse import create_clickhouse_loader as create_clickhouse_loader
    from .connectors.console import ConsoleLoader as ConsoleLoader
    from .connectors.console import ConsoleLoaderConfig as ConsoleLoaderConfig
    from .connectors.console import create_console_loader as create_console_loader
    from .connectors.files import FileExtractor as FileExtractor
    from .connectors.files import FileExtractorConfig as FileExtractorConfig
    from .connectors.files import FileLoader as FileLoader
    from .connectors.files import FileLoaderConfig as FileLoaderConfig
    from .connectors.files import create_file_extractor as create_file_extractor
    from .connectors.files import create_file_loader as create_file_loader
    from .connectors.http import BasicAuth as BasicAuth
    from .connectors.http import BearerAuth as BearerAuth
    from .connectors.http import CursorPagination as CursorPagination
    from .connectors.http import HeaderAuth as HeaderAuth
    from .connectors.http import HttpExtractor as HttpExtractor
    from .connectors.http import HttpExtractorConfig as HttpExtractorConfig
    from .connectors.http import HttpRetryConfig as HttpRetryConfig
    from .connectors.http import IncrementalConfig as IncrementalConfig
    from .connectors.http import LinkHeaderPagination as LinkHeaderPagination
    from .connectors.http import NextUrlPagination as NextUrlPagination
    from .connectors.http import OffsetPagination as OffsetPagination
    from .connectors.http import PageNumberPagination as PageNumberPagination
    from .connectors.http import RateLimitConfig as RateLimitConfig
    from .connectors.http import RateLimiter as RateLimiter
    from .connectors.http import RetryConfig as RetryConfig
    from .connectors.http import create_http_extractor as create_http_extractor
    from .core.arrow import to_arrow as to_arrow
    from .core.arrow import to_records as to_records
    from .core.compose import ConditionalPipeline as ConditionalPipeline
    from .core.compose import ParallelPipeline as ParallelPipeline
    from .core.compose import SequentialPipeline as SequentialPipeline
    from .core.context import RunContext as RunContext
    from .core.context import TimeWindow as TimeWindow
    from .core.dask_executor import DaskExecutor as DaskExecutor
    from .core.executor import Executor as Executor
    from .core.executor import LocalExecutor as LocalExecutor
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
    from .core.stages import loader as loader
    from .core.stages import transformer as transformer
    from .core.store import StateStore as StateStore
    from .core.types import Batch as Batch
    from .core.types import Record as Record
    from .core.types import RunStatus as RunStatus
    from .cron import CronJob as CronJob
    from .cron import validate_schedule as validate_schedule
    from .discovery import DiscoveredModule as DiscoveredModule
    from .discovery import DiscoveryFailure as DiscoveryFailure
    from .discovery import DiscoveryReport as DiscoveryReport
    from .discovery import discover_pipelines as discover_pipelines
    from .factories import create_conditional_pipeline as create_conditional_pipeline
    from .factories import create_el_pipeline as create_el_pipeline
    from .factories import create_etl_pipeline as create_etl_pipeline
    from .factories import create_parallel_pipeline as create_parallel_pipeline
    from .factories import create_retry_pipeline as create_retry_pipeline
    from .factories import create_sequential_pipeline as create_sequential_pipeline
    from .registry import PipelineRegistry as PipelineRegistry
    from .registry import RegisteredPipeline as RegisteredPipeline
    from .registry import get_cron_job as get_cron_job
    from .registry import get_default_registry as get_default_registry
    from .registry import get_pipeline as get_pipeline
    from .registry import get_pipeline_entry as get_pipeline_entry
    from .registry import list_cron_jobs as list_cron_jobs
    from .registry import list_pipelines as list_pipelines
    from .registry import register_cron_job as register_cron_job
    from .registry import register_pipeline as register_pipeline
    from .registry import register_pipeline_with_timescope as register_pipeline_with_timescope
    from .registry import remove_cron_job as remove_cron_job
    from .registry import run_pipeline as run_pipeline
    from .registry import unregister_pipeline as unregister_pipeline
    from .registry import validate_pipeline as validate_pipeline
    from .scheduler import JobStatus as JobStatus
    from .scheduler import Scheduler as Scheduler
    from .scheduler import SchedulerConfig as SchedulerConfig
    from .scheduler import SchedulerStatistics as SchedulerStatistics
    from .scheduler import open_scheduler as open_scheduler
    from .state import JsonFileStateStore as JsonFileStateStore
    from .state import MemoryStateStore as MemoryStateStore
    from .state_sqlite import SqliteStateStore as SqliteStateStore
    from .timescope import Timescope as Timescope
    from .timescope import daily as daily
    from .timescope import every as every
    from .timescope import get_table_name as get_table_name
    from .timescope import hourly as hourly
    from .timescope import monthly as monthly
    from .timescope import validate_timescope as validate_timescope
    from .timescope import weekly as weekly
    from .transforms import ColumnType as ColumnType
    from .transforms import convert_types as convert_types
    from .transforms import create_lambda_transformer as create_lambda_transformer
    from .transforms import transform_columns as transform_columns
    from .transforms import validate_records as validate_records
else:
    # RetryConfig is the deprecated old name of HttpRetryConfig (a warning on use).
    _renamed = _deferred_fallback(
        __name__, {"RetryConfig"}, ".connectors.http.limits", "renamed_names"
    )
    __getattr__, __dir__ = _lazy_names(globals(), _EXPORTS, _renamed)

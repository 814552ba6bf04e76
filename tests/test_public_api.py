"""Pins the public API: every name in ``ductwork.__all__`` and nothing else."""

import importlib
import warnings

import pytest

import ductwork

EXPECTED = {
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
}


def test_all_is_pinned() -> None:
    assert set(ductwork.__all__) == EXPECTED


def test_all_is_sorted_tuple_without_duplicates() -> None:
    assert isinstance(ductwork.__all__, tuple)
    assert len(set(ductwork.__all__)) == len(ductwork.__all__)


def test_every_public_name_resolves() -> None:
    for name in ductwork.__all__:
        assert getattr(ductwork, name) is not None, name


def test_public_callables_have_docstrings() -> None:
    for name in ductwork.__all__:
        obj = getattr(ductwork, name)
        if callable(obj) and not name.startswith("_"):
            assert obj.__doc__, f"{name} has no docstring"


@pytest.mark.parametrize("module", ["ductwork", "ductwork.connectors.http"])
def test_retry_config_is_a_deprecated_alias_of_http_retry_config(module: str) -> None:
    package = importlib.import_module(module)
    with pytest.warns(DeprecationWarning, match=r"RetryConfig is deprecated.*HttpRetryConfig"):
        alias = package.RetryConfig
    assert alias is ductwork.HttpRetryConfig
    assert "RetryConfig" not in package.__all__
    with pytest.raises(AttributeError, match="no attribute 'NoSuchName'"):
        _ = package.NoSuchName


def test_star_import_does_not_warn() -> None:
    namespace: dict[str, object] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        exec("from ductwork import *", namespace)
        exec("from ductwork.connectors.http import *", namespace)
    assert namespace["HttpRetryConfig"] is ductwork.HttpRetryConfig
    assert "RetryConfig" not in namespace

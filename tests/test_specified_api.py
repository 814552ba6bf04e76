"""The specified public API: every factory and registry function called with exactly the
parameter names and types of its specification (beside the richer options it also takes)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from ductwork import (
    ClickHouseConfig,
    ConditionalPipeline,
    ConfigError,
    HttpRetryConfig,
    ParallelPipeline,
    Pipeline,
    PipelineError,
    PipelineRegistry,
    RateLimitConfig,
    RunContext,
    RunStatus,
    create_clickhouse_extractor,
    create_conditional_pipeline,
    create_etl_pipeline,
    create_http_extractor,
    create_lambda_transformer,
    create_parallel_pipeline,
    discover_pipelines,
    get_pipeline,
    get_pipeline_entry,
    register_pipeline,
    unregister_pipeline,
    validate_pipeline,
)
from ductwork.connectors.http.limits import DEFAULT_RATE_LIMIT
from ductwork.transforms import transform_columns


async def numbers(ctx: RunContext) -> Any:
    yield [{"n": 1}, {"n": 2}]
    yield [{"n": 0}]
    yield [{"n": 4}]


def inverse(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"n": r["n"], "inverse": 1 / r["n"]} for r in batch]


# --- create_etl_pipeline(extractor, transformer, loader, name, error_handling: bool, logging: bool)


async def test_etl_pipeline_error_handling_true_raises_and_stops() -> None:
    rows: list[dict[str, Any]] = []
    pipeline = create_etl_pipeline(
        extractor=numbers,
        transformer=inverse,
        loader=rows.extend,
        name="inverse",
        error_handling=True,
        logging=False,
    )
    assert pipeline.config.error_handling == "raise"
    with pytest.raises(PipelineError, match="ZeroDivisionError") as caught:
        await pipeline.run()
    assert caught.value.stage == "inverse"
    assert [r["n"] for r in rows] in ([], [1, 2])


async def test_etl_pipeline_error_handling_false_skips_and_counts_the_batch() -> None:
    rows: list[dict[str, Any]] = []
    pipeline = create_etl_pipeline(
        extractor=numbers,
        transformer=inverse,
        loader=rows.extend,
        name="inverse",
        error_handling=False,
        logging=True,
    )
    assert pipeline.config.error_handling == "skip"
    assert pipeline.config.logging is True
    result = await pipeline.run()
    assert result.succeeded
    assert [r["n"] for r in rows] == [1, 2, 4]
    assert sum(s.metrics.get("batches_failed", 0) for s in result.stages) == 1


def test_etl_pipeline_strings_keep_working() -> None:
    for value in ("raise", "skip"):
        pipeline = create_etl_pipeline(numbers, None, print, "p", value, False)
        assert pipeline.config.error_handling == value
    with pytest.raises(ConfigError, match="error_handling"):
        create_etl_pipeline(numbers, None, print, "p", "ignore", False)  # type: ignore[arg-type]


# --- create_lambda_transformer(function, name, error_handling: bool) ---------------------------


async def test_lambda_transformer_error_handling_bool() -> None:
    def invert(record: dict[str, Any]) -> dict[str, Any]:
        return {**record, "inverse": 1 / record["n"]}

    skipping = create_lambda_transformer(function=invert, name="invert", error_handling=False)
    assert skipping.error_handling == "skip"
    out = await skipping.transform([{"n": 1}, {"n": 0}, {"n": 2}], RunContext())
    assert [r["n"] for r in out] == [1, 2]  # the failing record is skipped

    raising = create_lambda_transformer(function=invert, name="invert", error_handling=True)
    assert raising.error_handling == "raise"
    with pytest.raises(Exception, match="ZeroDivisionError"):
        await raising.transform([{"n": 0}], RunContext())


# --- create_http_extractor(url, headers, timeout: int, retry_logic: bool, rate_limiting: bool) --


def test_http_extractor_bools_are_the_default_policies() -> None:
    extractor = create_http_extractor(
        url="https://api.example.com/orders",
        headers={"Accept": "application/json"},
        timeout=30,
        retry_logic=True,
        rate_limiting=True,
    )
    config = extractor.config
    assert config.timeout == 30
    assert config.headers == {"Accept": "application/json"}
    assert config.retry_logic == HttpRetryConfig()
    assert config.retry_logic.max_retries == 3
    assert config.rate_limiting == DEFAULT_RATE_LIMIT
    assert RateLimitConfig(requests_per_second=10, burst=10) == DEFAULT_RATE_LIMIT


def test_http_extractor_false_is_none() -> None:
    extractor = create_http_extractor(
        url="https://api.example.com/orders",
        headers={},
        timeout=5,
        retry_logic=False,
        rate_limiting=False,
    )
    assert extractor.config.retry_logic.max_retries == 0
    assert extractor.config.rate_limiting is None


def test_http_extractor_config_objects_keep_working() -> None:
    extractor = create_http_extractor(
        "https://api.example.com/orders",
        retry_logic=HttpRetryConfig(max_retries=5),
        rate_limiting=RateLimitConfig(requests_per_second=2),
    )
    assert extractor.config.retry_logic.max_retries == 5
    assert extractor.config.rate_limiting == RateLimitConfig(requests_per_second=2)


# --- transform_columns(column_mapping, new_columns: List[str]) --------------------------------


async def test_transform_columns_new_columns_as_a_list_of_names() -> None:
    stage = transform_columns(column_mapping={"user_id": "id"}, new_columns=["loaded_by", "batch"])
    out = await stage.transform([{"user_id": 1}, {"user_id": 2, "batch": 7}], RunContext())
    assert out == [
        {"id": 1, "loaded_by": None, "batch": None},
        {"id": 2, "batch": 7, "loaded_by": None},
    ]
    with_defaults = transform_columns({"user_id": "id"}, ["source"], defaults={"source": "api"})
    assert await with_defaults.transform([{"user_id": 3}], RunContext()) == [
        {"id": 3, "source": "api"}
    ]


def test_transform_columns_list_of_names_is_checked() -> None:
    with pytest.raises(ConfigError, match=r"new_columns.*names, got 3"):
        transform_columns({"a": "b"}, ["c", 3])  # type: ignore[list-item]


# --- create_parallel_pipeline(pipelines, max_workers, error_handling: str) ---------------------


async def test_parallel_pipeline_specified_parameters() -> None:
    rows: list[dict[str, Any]] = []
    children = [create_etl_pipeline(numbers, None, rows.extend, n, logging=False) for n in "ab"]
    parallel = create_parallel_pipeline(
        pipelines=children, max_workers=2, error_handling="continue"
    )
    assert isinstance(parallel, ParallelPipeline)
    assert parallel.config.error_handling == "continue"
    assert (await parallel.run()).records_out == 8


# --- create_conditional_pipeline(condition, true_pipeline, false_pipeline) ---------------------


@pytest.mark.parametrize("flag", [True, False])
async def test_conditional_pipeline_condition_without_argument(flag: bool) -> None:
    rows: list[dict[str, Any]] = []
    yes = create_etl_pipeline(numbers, None, rows.extend, "yes", logging=False)
    no = create_etl_pipeline(numbers, None, lambda b: None, "no", logging=False)
    conditional = create_conditional_pipeline(
        condition=lambda: flag, true_pipeline=yes, false_pipeline=no
    )
    assert isinstance(conditional, ConditionalPipeline)
    result = await conditional.run()
    assert result.status is RunStatus.SUCCEEDED
    assert result.children[0].name == ("yes" if flag else "no")


async def test_conditional_pipeline_async_condition_without_argument() -> None:
    async def ready() -> bool:
        return False

    only = create_etl_pipeline(numbers, None, print, "only", logging=False)
    result = await create_conditional_pipeline(ready, only, None).run()
    assert result.status is RunStatus.SKIPPED


# --- create_clickhouse_extractor(query, connection_config: Dict, batch_size) -------------------


def test_clickhouse_extractor_dict_as_clickhouse_users_write_it() -> None:
    extractor = create_clickhouse_extractor(
        query="SELECT 1",
        connection_config={
            "host": "db.example",
            "port": 8123,
            "user": "etl",
            "password": "s3cret",
            "database": "sales",
        },
        batch_size=5000,
    )
    connection = extractor.connection
    assert connection.url == "http://db.example:8123"
    assert (connection.user, connection.database) == ("etl", "sales")
    assert connection.password.get_secret_value() == "s3cret"
    assert extractor.config.batch_size == 5000
    assert "s3cret" not in repr(extractor.config)


def test_clickhouse_connection_host_port_secure() -> None:
    assert ClickHouseConfig(host="db.example").url == "http://db.example:8123"
    assert ClickHouseConfig(host="db.example", secure=True).url == "https://db.example:8443"
    assert ClickHouseConfig(host="::1", port=8123).url == "http://[::1]:8123"
    for port in (9000, 9440):
        with pytest.raises(ConfigError, match=rf"port {port} is ClickHouse's native protocol"):
            create_clickhouse_extractor("SELECT 1", connection_config={"host": "h", "port": port})
    with pytest.raises(ConfigError, match="url, or host and port, not both"):
        create_clickhouse_extractor("SELECT 1", connection_config={"url": "http://h", "host": "h"})
    with pytest.raises(ConfigError, match="port must be a TCP port"):
        create_clickhouse_extractor("SELECT 1", connection_config={"host": "h", "port": "80"})


# --- registry: get_pipeline(name), validate_pipeline(pipeline), register_pipelines() -----------


def test_get_pipeline_returns_the_pipeline_and_the_entry_stays_available() -> None:
    pipeline = create_etl_pipeline(numbers, None, print, "spec_get", logging=False)
    entry = register_pipeline("spec_get", pipeline)
    try:
        assert get_pipeline("spec_get") is pipeline
        assert get_pipeline_entry("spec_get") is entry
        assert validate_pipeline("spec_get") is pipeline
        assert validate_pipeline(pipeline) is pipeline
    finally:
        unregister_pipeline("spec_get")


def test_get_pipeline_builds_a_factory_entry_afresh() -> None:
    registry = PipelineRegistry()
    registry.register_pipeline(
        "built", lambda: create_etl_pipeline(numbers, None, print, "built", logging=False)
    )
    first, second = registry.get_pipeline("built"), registry.get_pipeline("built")
    assert isinstance(first, Pipeline)
    assert first is not second
    assert registry.get_pipeline_entry("built").is_factory


def test_validate_pipeline_accepts_a_pipeline_object() -> None:
    registry = PipelineRegistry()
    loose = create_etl_pipeline(numbers, None, print, "loose", logging=False)
    assert registry.validate_pipeline(loose) is loose  # not registered: checked as it is
    registry.register_pipeline("kept", loose, schedule="0 * * * *")
    assert registry.validate_pipeline(loose) is loose
    with pytest.raises(ConfigError, match="a pipeline name or a Runnable"):
        registry.validate_pipeline(42)  # type: ignore[arg-type]


def test_register_pipelines_without_argument(tmp_path: Path) -> None:
    (tmp_path / "noarg_spec_pipeline.py").write_text(
        textwrap.dedent(
            """
            from ductwork import create_el_pipeline, register_pipeline

            async def extract(ctx):
                yield [{"x": 1}]

            def register_pipelines():
                register_pipeline(
                    "noarg_spec_registered", create_el_pipeline(extract, print, logging=False)
                )
            """
        )
    )
    (tmp_path / "returning_spec_pipeline.py").write_text(
        textwrap.dedent(
            """
            from ductwork import create_el_pipeline

            async def extract(ctx):
                yield [{"x": 1}]

            def register_pipelines():
                return {"returning_spec": create_el_pipeline(extract, print, logging=False)}
            """
        )
    )
    registry = PipelineRegistry()
    report = discover_pipelines(tmp_path, registry=registry)
    assert report.ok, report.errors
    assert [e.name for e in registry.list_pipelines()] == [
        "noarg_spec_registered",
        "returning_spec",
    ]
    # the module's registrations went to the registry discovered into, not the default one
    with pytest.raises(Exception, match="no pipeline named"):
        get_pipeline_entry("noarg_spec_registered")

"""Configuration models: one declaration per option, validation into ConfigError, the shared
error-handling values."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import AsyncIterator, Iterator
from typing import Any, get_args

import pytest

import ductwork
from ductwork import (
    ConditionalPipeline,
    ConfigError,
    FileExtractorConfig,
    ParallelPipeline,
    Pipeline,
    PipelineConfig,
    RetryPipeline,
    SequentialPipeline,
    create_etl_pipeline,
    create_http_extractor,
)
from ductwork.core.compose import ConditionalConfig, ParallelConfig, SequentialConfig
from ductwork.core.config import Options, configure, validate_config
from ductwork.core.retry import RetryConfig
from ductwork.core.types import ErrorHandling
from ductwork.transforms import PolicyConfig, TransformErrorHandling

for _module in pkgutil.walk_packages(ductwork.__path__, prefix="ductwork."):
    importlib.import_module(_module.name)


def _models(cls: type[Options] = Options) -> Iterator[type[Options]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _models(sub)


MODELS = sorted(set(_models()), key=lambda model: f"{model.__module__}.{model.__qualname__}")


async def _extract(ctx: Any) -> AsyncIterator[list[dict[str, Any]]]:
    yield [{"id": 1}]


def test_there_are_models_to_check() -> None:
    assert {PipelineConfig, FileExtractorConfig, ParallelConfig, PolicyConfig} <= set(MODELS)


@pytest.mark.parametrize("model", MODELS, ids=[model.__qualname__ for model in MODELS])
def test_every_option_is_documented_on_its_field(model: type[Options]) -> None:
    undocumented = [
        name
        for name, field in model.model_fields.items()
        if not field.description and name != "type"  # a discriminator names itself
    ]
    assert undocumented == []


def test_an_unknown_name_gets_the_closest_option() -> None:
    with pytest.raises(ConfigError) as info:
        validate_config(PipelineConfig, "pipeline", queue_sise=4, colour="red")
    assert info.value.errors == [
        ("queue_sise", "Extra inputs are not permitted (did you mean 'queue_size'?)"),
        ("colour", "Extra inputs are not permitted"),
    ]
    assert str(info.value).startswith("invalid pipeline configuration: queue_sise: ")


def test_a_bad_value_names_the_field_without_a_suggestion() -> None:
    with pytest.raises(ConfigError) as info:
        create_etl_pipeline(_extract, None, print, queue_size=0)
    assert [field for field, _ in info.value.errors] == ["queue_size"]
    assert "did you mean" not in str(info.value)


def test_classes_take_the_model_or_its_fields() -> None:
    config = PipelineConfig(name="prices", queue_size=4, logging=False)
    pipeline = Pipeline(_extract, [], print, config)
    assert pipeline.config is config
    same = Pipeline(_extract, [], print, name="prices", queue_size=4, logging=False)
    assert same.config == config
    both = Pipeline(_extract, [], print, config, queue_size=2)
    assert (both.name, both.config.queue_size, both.log_level) == ("prices", 2, None)
    with pytest.raises(ConfigError, match="config: expected a PipelineConfig, got dict"):
        Pipeline(_extract, [], print, {"name": "x"})  # type: ignore[arg-type]


def test_configure_validates_options_on_top_of_the_config() -> None:
    config = PipelineConfig(name="a")
    assert configure(PipelineConfig, "pipeline", config, {}) is config
    assert configure(PipelineConfig, "pipeline", None, {"name": "b"}).name == "b"
    with pytest.raises(ConfigError) as info:
        configure(PipelineConfig, "pipeline", config, {"timeout": -1})
    assert [field for field, _ in info.value.errors] == ["timeout"]


def test_compositions_take_their_model() -> None:
    a = create_etl_pipeline(_extract, None, print, "a")
    b = create_etl_pipeline(_extract, None, print, "b")
    parallel = ParallelPipeline(ParallelConfig(pipelines=[a, b], error_handling="continue"))
    assert (parallel.name, parallel.error_handling, parallel.children) == (
        "parallel_pipeline",
        "continue",
        (a, b),
    )
    assert SequentialPipeline(SequentialConfig(pipelines=[a], stop_on_error=False)).children == (a,)
    assert ConditionalPipeline(ConditionalConfig(condition=bool, true_pipeline=a)).children == (a,)
    retry = RetryPipeline(RetryConfig(pipeline=a, max_retries=1), name="again")
    assert (retry.name, retry.max_retries, retry.children) == ("again", 1, (a,))
    assert ParallelPipeline([a, b]).children == (a, b)  # the main fields by position too
    with pytest.raises(TypeError, match="at most 1 positional"):
        ParallelPipeline([a], [b])
    with pytest.raises(ConfigError) as info:
        ParallelPipeline(pipelines=[])
    assert [field for field, _ in info.value.errors] == ["pipelines"]


def test_none_stands_for_the_default_where_factories_always_took_it() -> None:
    extractor = create_http_extractor("https://api.example.com/x", headers=None, pagination=None)
    assert extractor.config.headers == {}
    assert extractor.config.pagination.type == "none"
    assert "headers" not in extractor.config.model_fields_set


def test_error_handling_is_one_type_with_the_same_values_everywhere() -> None:
    assert get_args(ErrorHandling) == ("raise", "skip")
    assert get_args(TransformErrorHandling) == ("raise", "skip", "dead_letter")
    for model in (PipelineConfig, FileExtractorConfig):
        assert model.model_fields["error_handling"].annotation == ErrorHandling
    assert PolicyConfig.model_fields["error_handling"].annotation == TransformErrorHandling


def test_a_config_model_built_directly_raises_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        ductwork.PipelineConfig(queue_sise=4)
    assert isinstance(info.value, ValueError)
    assert info.value.errors == [
        ("queue_sise", "Extra inputs are not permitted (did you mean 'queue_size'?)")
    ]
    assert "invalid PipelineConfig configuration" in str(info.value)
    with pytest.raises(ConfigError, match=r"queue_size: Input should be greater than or equal"):
        ductwork.PipelineConfig(queue_size=0)


def test_a_misspelt_keyword_is_a_config_error_everywhere() -> None:
    pipeline = create_etl_pipeline(_extract, None, print, "p")
    calls = [
        lambda: ductwork.transformer(print, concurency=2),
        lambda: ductwork.loader(print, nam="x"),
        lambda: ductwork.PipelineRegistry().register_pipeline("p", pipeline, timescop="daily"),
        lambda: ductwork.register_pipeline("p", pipeline, timescop="daily"),
        lambda: ductwork.convert_types({"a": int}, strict_mod=False),
        lambda: create_etl_pipeline(_extract, None, print, "p", queue_sise=2),
    ]
    for call in calls:
        with pytest.raises(
            ConfigError,
            match=r"did you mean '(concurrency|name|timescope|strict_mode|queue_size)'\?",
        ):
            call()


def _registry_with_daily_pipeline() -> ductwork.PipelineRegistry:
    registry = ductwork.PipelineRegistry()
    pipeline = create_etl_pipeline(_extract, None, print, "p", logging=False)
    registry.register_pipeline("p", pipeline, timescope="daily")
    return registry


async def _scheduler_shutdown(**options: Any) -> Any:
    async with ductwork.open_scheduler(ductwork.PipelineRegistry()) as scheduler:
        return await scheduler.shutdown(**options)


@pytest.mark.parametrize(
    ("call", "bad", "meant"),
    [
        (lambda: ductwork.every("1h", timezon="UTC"), "timezon", "timezone"),
        (lambda: ductwork.every("1h", orgin=None), "orgin", "origin"),
        (lambda: ductwork.hourly(timezon="UTC"), "timezon", "timezone"),
        (lambda: ductwork.daily(timezon="UTC"), "timezon", "timezone"),
        (lambda: ductwork.weekly(week_star=1), "week_star", "week_start"),
        (lambda: ductwork.monthly(timezon="UTC"), "timezon", "timezone"),
        (lambda: ductwork.validate_timescope("daily", timezon="UTC"), "timezon", "timezone"),
        (lambda: ductwork.get_table_name("events", "daily", windw=None), "windw", "window"),
        (lambda: ductwork.discover_pipelines("pipelines", patern="*.py"), "patern", "pattern"),
        (
            lambda: ductwork.PipelineRegistry().register_cron_job("j", "* * * * *", timezon="UTC"),
            "timezon",
            "timezone",
        ),
        (
            lambda: ductwork.register_cron_job("j", "* * * * *", "p", enabeld=False),
            "enabeld",
            "enabled",
        ),
    ],
)
def test_a_misspelt_keyword_of_a_helper_is_a_config_error(call: Any, bad: str, meant: str) -> None:
    with pytest.raises(ConfigError) as info:
        call()
    assert isinstance(info.value, ValueError)
    assert [field for field, _ in info.value.errors] == [bad]
    assert f"{bad}: unexpected keyword argument (did you mean {meant!r}?)" in str(info.value)


@pytest.mark.parametrize(
    ("call", "bad", "meant"),
    [
        (
            lambda: ductwork.backfill_pipeline(
                "p",
                "2024-01-01",
                "2024-01-03",
                registry=_registry_with_daily_pipeline(),
                max_worker=2,
            ),
            "max_worker",
            "max_workers",
        ),
        (
            lambda: _registry_with_daily_pipeline().backfill(
                "p", "2024-01-01", "2024-01-03", max_worker=2
            ),
            "max_worker",
            "max_workers",
        ),
        (
            lambda: _registry_with_daily_pipeline().backfill(
                "p", "2024-01-01", "2024-01-03", stop_on_failur=True
            ),
            "stop_on_failur",
            "stop_on_failure",
        ),
        (
            lambda: _registry_with_daily_pipeline().run("p", windw="2024-01-01"),
            "windw",
            "window",
        ),
        (lambda: ductwork.run_pipeline("p", parms={}), "parms", "params"),
        (lambda: _registry_with_daily_pipeline().history("p", limt=3), "limt", "limit"),
        (lambda: _scheduler_shutdown(grace_perod=1.0), "grace_perod", "grace_period"),
    ],
)
async def test_a_misspelt_keyword_of_an_async_function_is_a_config_error(
    call: Any, bad: str, meant: str
) -> None:
    with pytest.raises(ConfigError) as info:
        await call()
    assert isinstance(info.value, ValueError)
    assert [field for field, _ in info.value.errors] == [bad]
    assert f"{bad}: unexpected keyword argument (did you mean {meant!r}?)" in str(info.value)


def test_a_keyword_without_a_close_match_is_named_without_a_suggestion() -> None:
    with pytest.raises(ConfigError) as info:
        ductwork.every(hour=1)  # type: ignore[call-arg]
    assert info.value.errors == [("hour", "unexpected keyword argument")]


async def test_checked_functions_keep_their_signature_and_kind() -> None:
    assert inspect.iscoroutinefunction(ductwork.backfill_pipeline)
    assert inspect.iscoroutinefunction(ductwork.PipelineRegistry.backfill)
    assert inspect.iscoroutinefunction(ductwork.PipelineRegistry.run)
    assert "max_workers" in inspect.signature(ductwork.backfill_pipeline).parameters
    assert list(inspect.signature(ductwork.every).parameters) == ["interval", "timezone", "origin"]
    assert ductwork.every("1h", timezone="UTC").name == "1h"
    registry = _registry_with_daily_pipeline()
    result = await ductwork.backfill_pipeline(
        "p", "2024-01-01", "2024-01-03", registry=registry, max_workers=2
    )
    assert len(result.succeeded) == 2

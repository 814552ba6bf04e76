"""Configuration models: one declaration per option, validation into ConfigError, the shared
error-handling values."""

from __future__ import annotations

import importlib
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

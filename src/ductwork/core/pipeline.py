"""Pipeline: an extractor, any number of transformers and a loader, run as one streaming unit."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field

from .._exceptions import ConfigError
from .config import ErrorPolicy, Options, configure
from .config import validate_config as validate_config
from .context import RunContext
from .result import RunResult, StageStats
from .runnable import Runnable, resolve_log_level
from .runner import StageRunner
from .stages import Extractor, Loader, Transformer, as_extractor, as_loader, as_transformer

if TYPE_CHECKING:
    from .store import StateStore

__all__ = ["LogSetting", "Pipeline", "PipelineConfig"]

LogSetting = (
    bool | Literal["DEBUG", "INFO", "WARNING", "ERROR", "debug", "info", "warning", "error"]
)


class PipelineConfig(Options):
    """Validated options of a :class:`Pipeline`."""

    name: Annotated[str, Field(min_length=1, max_length=200)] = "pipeline"
    """The pipeline's name, used in logs, results and the registry."""
    queue_size: Annotated[int, Field(ge=1, le=100_000, strict=True)] = 8
    """Capacity, in batches, of each stream between two stages. Memory stays bounded by about
    ``(stages x queue_size + 1)`` batches whatever the size of the extract."""
    error_handling: ErrorPolicy = "raise"
    """``"raise"`` (or ``True``): any stage error fails the run. ``"skip"`` (or ``False``): a
    batch whose transformer raises is dropped, counted in the stage's ``batches_failed`` and
    ``records_skipped`` metrics and logged as a warning; the run goes on. Extractor and loader
    errors always fail the run (see :data:`~ductwork.core.types.ErrorHandling`)."""
    logging: LogSetting = True
    """``True`` logs one line when a run starts and one when it ends at INFO, ``False`` logs
    nothing per run, a level name logs those lines at that level."""
    timeout: Annotated[float, Field(gt=0)] | None = None
    """Seconds after which a run is cancelled and fails with RunTimeoutError."""
    cleanup_timeout: Annotated[float, Field(gt=0)] = 30.0
    """Seconds a loader's or extractor's cleanup may take after a failure."""


class Pipeline(Runnable):
    """A streaming pipeline: extractor → transformers → loader, every stage a concurrent task.

    Build one with :func:`~ductwork.create_etl_pipeline` or :func:`~ductwork.create_el_pipeline`,
    or directly from its stages and a :class:`PipelineConfig` (or the config's fields as keyword
    arguments, validated into one); ``state`` is the state store handed to stages as
    ``ctx.state``. A pipeline can be run any number of times (even concurrently); each run calls
    the extractor afresh and opens the loader anew.

    Example:
        >>> import anyio
        >>> async def numbers(ctx):
        ...     for start in range(0, 6, 3):
        ...         yield [{"n": n} for n in range(start, start + 3)]
        >>> seen = []
        >>> tens = [lambda b: [{"n": r["n"] * 10} for r in b]]
        >>> config = PipelineConfig(name="tens", logging=False)
        >>> pipeline = Pipeline(numbers, tens, seen.extend, config)
        >>> result = anyio.run(pipeline.run)
        >>> [r["n"] for r in seen], result.records_out
        ([0, 10, 20, 30, 40, 50], 6)
    """

    kind = "pipeline"

    def __init__(
        self,
        extractor: Any,
        transformers: Sequence[Any] | Any = (),
        loader: Any = None,
        config: PipelineConfig | None = None,
        *,
        state: StateStore | None = None,
        **options: Any,
    ) -> None:
        config = configure(PipelineConfig, "pipeline", config, options)
        if loader is None:
            raise ConfigError.for_field("loader", "a pipeline needs a loader")
        if transformers is None:
            transformers = ()
        elif callable(transformers) or isinstance(transformers, Transformer):
            transformers = (transformers,)
        elif not isinstance(transformers, Sequence) or isinstance(transformers, str):
            raise ConfigError.for_field(
                "transformer",
                f"expected a function, a transformer or a list of them, "
                f"got {type(transformers).__name__}",
            )
        self.config = config
        self.name = config.name
        self.timeout = config.timeout
        self.log_level = resolve_log_level(config.logging)
        self.state = state
        self.extractor: Extractor = as_extractor(extractor)
        self.transformers: list[Transformer] = [as_transformer(t) for t in transformers]
        self.loader: Loader = as_loader(loader)
        self.stage_names = _unique_names(
            [self.extractor.name, *(t.name for t in self.transformers), self.loader.name]
        )

    def __repr__(self) -> str:
        return f"Pipeline(name={self.name!r}, stages={self.stage_names!r})"

    def new_result(self, ctx: RunContext) -> RunResult:
        """An empty result with one StageStats per stage."""
        result = super().new_result(ctx)
        kinds = ["extract"] + ["transform"] * len(self.transformers) + ["load"]
        result.stages = [
            StageStats(name, kind) for name, kind in zip(self.stage_names, kinds, strict=True)
        ]
        return result

    async def _execute(self, ctx: RunContext, result: RunResult) -> None:
        runner = StageRunner(
            pipeline=self.name,
            ctx=ctx,
            extractor=self.extractor,
            transformers=self.transformers,
            loader=self.loader,
            stats=result.stages,
            queue_size=self.config.queue_size,
            skip_failed_batches=self.config.error_handling == "skip",
            cleanup_timeout=self.config.cleanup_timeout,
        )
        await runner.run()


def _unique_names(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        count = seen.get(name, 0) + 1
        seen[name] = count
        unique.append(name if count == 1 else f"{name}#{count}")
    return unique

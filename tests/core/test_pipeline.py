"""Pipeline semantics: order, counts, shapes, reruns, results and logging."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ductwork import (
    Batch,
    ConfigError,
    ExtractError,
    Loader,
    Pipeline,
    PipelineError,
    RunContext,
    RunStatus,
    TransformError,
    create_el_pipeline,
    create_etl_pipeline,
    transformer,
)


def numbered(total: int, batch_size: int) -> Any:
    async def extract(ctx: RunContext) -> AsyncIterator[Batch]:
        for start in range(0, total, batch_size):
            yield [{"n": n} for n in range(start, min(start + batch_size, total))]

    return extract


class Collect:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.batches = 0

    async def __call__(self, batch: Batch) -> None:
        self.batches += 1
        self.records.extend(batch)


async def test_etl_pipeline_moves_every_record_in_order() -> None:
    sink = Collect()

    def double(batch: Batch) -> Batch:
        return [{"n": r["n"], "twice": r["n"] * 2} for r in batch]

    pipeline = create_etl_pipeline(numbered(1000, 7), double, sink, name="double")
    result = await pipeline.run()

    assert result.status is RunStatus.SUCCEEDED
    assert [r["n"] for r in sink.records] == list(range(1000))
    assert all(r["twice"] == 2 * r["n"] for r in sink.records)
    assert result.records_in == 1000
    assert result.records_out == 1000
    extract, transform, load = result.stages
    assert (extract.kind, transform.kind, load.kind) == ("extract", "transform", "load")
    assert extract.batches_out == 143
    assert transform.records_in == transform.records_out == 1000
    assert load.batches_in == 143


async def test_el_pipeline_has_two_stages() -> None:
    sink = Collect()
    result = await create_el_pipeline(numbered(10, 3), sink, name="copy").run()
    assert [s.kind for s in result.stages] == ["extract", "load"]
    assert [r["n"] for r in sink.records] == list(range(10))


async def test_list_of_transformers_sync_and_async_with_and_without_ctx() -> None:
    sink = Collect()
    run_ids: set[str] = set()

    def add_one(batch: Batch) -> Batch:
        return [{"n": r["n"] + 1} for r in batch]

    async def times_ten(batch: Batch, ctx: RunContext) -> Batch:
        run_ids.add(ctx.run_id)
        await anyio.sleep(0)
        return [{"n": r["n"] * 10} for r in batch]

    result = await create_etl_pipeline(numbered(20, 4), [add_one, times_ten], sink).run()
    assert [r["n"] for r in sink.records] == [(n + 1) * 10 for n in range(20)]
    assert run_ids == {result.run_id}
    assert [s.name for s in result.stages] == ["extract", "add_one", "times_ten", "load"]


async def test_sync_generator_extractor_and_sync_loader() -> None:
    seen: list[int] = []

    def extract() -> Any:
        for start in range(0, 9, 3):
            yield [{"n": n} for n in range(start, start + 3)]

    def load(batch: Batch) -> None:
        seen.extend(r["n"] for r in batch)

    result = await create_el_pipeline(extract, load).run()
    assert seen == list(range(9))
    assert result.records_out == 9


async def test_transformer_can_drop_batches() -> None:
    sink = Collect()

    def evens_only(batch: Batch) -> Batch | None:
        kept = [r for r in batch if r["n"] % 2 == 0]
        return kept or None

    result = await create_etl_pipeline(numbered(10, 1), evens_only, sink).run()
    assert [r["n"] for r in sink.records] == [0, 2, 4, 6, 8]
    assert result.stages[1].batches_in == 10
    assert result.stages[1].batches_out == 5
    assert result.records_out == 5


async def test_pipeline_runs_again_calling_the_extractor_afresh() -> None:
    calls = 0

    async def extract(ctx: RunContext) -> AsyncIterator[Batch]:
        nonlocal calls
        calls += 1
        yield [{"call": calls}]

    sink = Collect()
    pipeline = create_el_pipeline(extract, sink)
    first = await pipeline.run()
    second = await pipeline.run()
    assert calls == 2
    assert [r["call"] for r in sink.records] == [1, 2]
    assert first.run_id != second.run_id


async def test_concurrent_runs_of_one_pipeline_do_not_mix() -> None:
    outputs: dict[str, list[int]] = {}

    async def load(batch: Batch, ctx: RunContext) -> None:
        await anyio.sleep(0)
        outputs.setdefault(ctx.run_id, []).extend(r["n"] for r in batch)

    pipeline = create_el_pipeline(numbered(50, 5), load)
    results = []

    async def one() -> None:
        results.append(await pipeline.run())

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(one)
    assert len(outputs) == 3
    assert all(v == list(range(50)) for v in outputs.values())
    assert {r.run_id for r in results} == set(outputs)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=6), max_size=25),
    queue_size=st.integers(min_value=1, max_value=4),
    concurrency=st.integers(min_value=1, max_value=4),
    delays=st.lists(st.sampled_from([0.0, 0.0, 0.001, 0.002]), min_size=1, max_size=5),
)
def test_order_and_counts_hold_for_any_batches(
    sizes: list[int], queue_size: int, concurrency: int, delays: list[float]
) -> None:
    """Property: output equals input, in order, for any batch sizes, queue sizes, concurrency
    and uneven per-batch delays (later batches often finish first)."""
    batches = []
    counter = 0
    for size in sizes:
        batches.append([{"n": counter + i} for i in range(size)])
        counter += size

    async def extract() -> AsyncIterator[Batch]:
        for batch in batches:
            yield [dict(r) for r in batch]

    async def slow_copy(batch: Batch) -> Batch:
        await anyio.sleep(delays[batch[0]["n"] % len(delays)] if batch else 0)
        return [{"n": r["n"], "seen": True} for r in batch]

    def identity(batch: Batch) -> Batch:
        return batch

    sink = Collect()
    pipeline = create_etl_pipeline(
        extract,
        [transformer(slow_copy, concurrency=concurrency), identity],
        sink,
        queue_size=queue_size,
        logging=False,
    )
    result = anyio.run(pipeline.run)
    assert [r["n"] for r in sink.records] == list(range(counter))
    assert result.records_in == result.records_out == counter
    assert result.stages[1].batches_in == sum(1 for s in sizes if s)


async def test_concurrent_transformer_really_overlaps_and_keeps_order() -> None:
    active = 0
    peak = 0

    async def slow(batch: Batch) -> Batch:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        # Earlier batches take longer, so they finish last.
        await anyio.sleep(0.02 if batch[0]["n"] % 4 == 0 else 0.001)
        active -= 1
        return batch

    sink = Collect()
    await create_etl_pipeline(
        numbered(40, 1), transformer(slow, concurrency=4), sink, queue_size=2
    ).run()
    assert [r["n"] for r in sink.records] == list(range(40))
    assert peak == 4


# ----------------------------------------------------------------------------- shapes


async def test_transformer_returning_a_dict_is_a_clear_error() -> None:
    def wrong(batch: Batch) -> Any:
        return batch[0]

    pipeline = create_etl_pipeline(numbered(3, 3), wrong, Collect(), name="shapes")
    with pytest.raises(TransformError) as info:
        await pipeline.run()
    err = info.value
    assert err.pipeline == "shapes"
    assert err.stage == "wrong"
    assert "single record" in str(err)
    assert "list of records" in str(err)
    assert err.retryable is False


async def test_transformer_returning_records_that_are_not_mappings() -> None:
    pipeline = create_etl_pipeline(numbered(3, 3), lambda b: [1, 2, 3], Collect())
    with pytest.raises(TransformError, match="not mappings"):
        await pipeline.run()


async def test_extractor_yielding_a_record_instead_of_a_batch() -> None:
    async def extract() -> AsyncIterator[Any]:
        yield {"n": 1}

    with pytest.raises(ExtractError, match="single record"):
        await create_el_pipeline(extract, Collect()).run()


async def test_extractor_that_is_not_iterable() -> None:
    def extract() -> int:
        return 42

    with pytest.raises(ExtractError, match="expected an async iterator of batches"):
        await create_el_pipeline(extract, Collect()).run()


def test_generator_object_instead_of_function_is_a_config_error() -> None:
    async def extract() -> AsyncIterator[Batch]:
        yield []

    agen = extract()
    with pytest.raises(ConfigError, match="generator function") as info:
        create_el_pipeline(agen, Collect())
    assert info.value.errors[0][0] == "extractor"
    anyio.run(agen.aclose)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"queue_size": 0}, "queue_size"),
        ({"queue_size": "8"}, "queue_size"),
        ({"error_handling": "explode"}, "error_handling"),
        ({"name": ""}, "name"),
        ({"logging": "LOUD"}, "logging"),
        ({"timeout": -1}, "timeout"),
    ],
)
def test_bad_options_raise_config_error_naming_the_field(
    kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(ConfigError) as info:
        create_etl_pipeline(numbered(1, 1), None, Collect(), **kwargs)
    fields = [f for f, _ in info.value.errors]
    assert fields[0] == field or fields[0].startswith(field)
    assert field in str(info.value)


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ((42, None, print), "extractor"),
        ((numbered(1, 1), 42, print), "transformer"),
        ((numbered(1, 1), None, 42), "loader"),
        ((numbered(1, 1), lambda: None, print), "transformer"),
    ],
)
def test_bad_stages_raise_config_error_naming_the_stage(args: tuple[Any, ...], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        create_etl_pipeline(*args)
    assert info.value.errors[0][0] == field


def test_transformer_concurrency_is_validated() -> None:
    with pytest.raises(ConfigError, match="concurrency"):
        transformer(lambda b: b, concurrency=0)


# ----------------------------------------------------------------------------- loaders


class RecordingLoader(Loader):
    """A loader object that records how each run ended."""

    name = "recording"

    def __init__(self) -> None:
        self.outcomes: list[str] = []
        self.written: list[Batch] = []

    def open(self, ctx: RunContext) -> Any:
        loader = self

        class _CM:
            async def __aenter__(self) -> RecordingLoader:
                return loader

            async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
                await anyio.sleep(0)  # cleanup may await even when the run was cancelled
                loader.outcomes.append("commit" if exc_type is None else exc_type.__name__)

        return _CM()

    async def write(self, batch: Batch) -> None:
        self.written.append(batch)


async def test_loader_object_commits_on_success() -> None:
    loader = RecordingLoader()
    result = await create_el_pipeline(numbered(5, 2), loader).run()
    assert loader.outcomes == ["commit"]
    assert sum(len(b) for b in loader.written) == 5
    assert result.stages[-1].name == "recording"


# ----------------------------------------------------------------------------- results


async def test_result_has_stage_timings_and_a_readable_summary() -> None:
    async def slow_load(batch: Batch) -> None:
        await anyio.sleep(0.01)

    result = await create_etl_pipeline(
        numbered(20, 2), lambda b: b, slow_load, name="timed", queue_size=1
    ).run()
    load = result.stages[-1]
    extract = result.stages[0]
    assert load.busy_seconds >= 0.09
    assert extract.wait_output_seconds > 0.05  # blocked on a full stream: the loader is slow
    assert result.bottleneck is load
    text = result.summary()
    assert "timed (pipeline)" in text
    assert "succeeded" in text
    [bottleneck_line] = [line for line in text.splitlines() if "<- bottleneck" in line]
    assert "slow_load" in bottleneck_line
    assert str(result) == text
    data = result.to_dict()
    assert data["status"] == "succeeded"
    assert data["stages"][-1]["records_in"] == 20


async def test_run_passes_params_and_window_to_stages() -> None:
    from datetime import UTC, datetime

    from ductwork import TimeWindow

    window = TimeWindow(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC))
    seen: dict[str, Any] = {}

    async def extract(ctx: RunContext) -> AsyncIterator[Batch]:
        seen["params"] = dict(ctx.params)
        seen["window"] = ctx.window
        seen["stage"] = ctx.stage
        seen["date"] = ctx.template_values()["date"]
        yield [{"n": 1}]

    await create_el_pipeline(extract, Collect(), name="p").run(
        params={"region": "eu"}, window=window, run_id="r1"
    )
    assert seen == {
        "params": {"region": "eu"},
        "window": window,
        "stage": "extract",
        "date": "2026-01-01",
    }


async def test_stage_metrics_land_in_the_result() -> None:
    def count_odd(batch: Batch, ctx: RunContext) -> Batch:
        ctx.add_metric("odd", sum(1 for r in batch if r["n"] % 2))
        return batch

    result = await create_etl_pipeline(numbered(10, 3), count_odd, Collect()).run()
    assert result.stage("count_odd").metrics == {"odd": 5}


async def test_skip_error_handling_drops_failing_batches_and_counts_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def picky(batch: Batch) -> Batch:
        if batch[0]["n"] == 4:
            raise ValueError("bad batch")
        return batch

    sink = Collect()
    result = await create_etl_pipeline(
        numbered(10, 2), picky, sink, error_handling="skip", name="skippy"
    ).run()
    assert [r["n"] for r in sink.records] == [0, 1, 2, 3, 6, 7, 8, 9]
    assert result.stage("picky").metrics == {"batches_failed": 1, "records_skipped": 2}
    assert any("skipped batch 3" in r.getMessage() for r in caplog.records)


async def test_logging_one_line_at_start_and_one_at_end(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ductwork")
    await create_etl_pipeline(numbered(10, 5), lambda b: b, Collect(), name="logged").run()
    lines = [r.getMessage() for r in caplog.records if r.name == "ductwork"]
    assert len(lines) == 2
    assert lines[0].startswith("run started: logged")
    assert lines[1].startswith("run succeeded: logged")
    assert "records_out=10" in lines[1]
    assert "slowest=" in lines[1]


async def test_debug_logging_has_per_batch_lines(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="ductwork")
    await create_etl_pipeline(numbered(6, 2), lambda b: b, Collect(), name="dbg").run()
    batch_lines = [r.getMessage() for r in caplog.records if "batch" in r.getMessage()]
    assert len(batch_lines) == 9  # 3 batches x 3 stages


async def test_logging_false_is_silent(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="ductwork")
    await create_el_pipeline(numbered(2, 2), Collect(), logging=False).run()
    assert not [r for r in caplog.records if r.getMessage().startswith("run ")]


async def test_failed_run_logs_an_error_line(caplog: pytest.LogCaptureFixture) -> None:
    def boom(batch: Batch) -> Batch:
        raise RuntimeError("kaput")

    with pytest.raises(PipelineError):
        await create_etl_pipeline(numbered(2, 1), boom, Collect(), name="bad").run()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "run failed: bad" in errors[0].getMessage()
    assert "kaput" in errors[0].getMessage()


def test_pipeline_class_can_be_built_directly() -> None:
    pipeline = Pipeline(numbered(1, 1), [], print, name="direct")
    assert pipeline.stage_names == ["extract", "print"]
    assert "direct" in repr(pipeline)


async def test_parameters_with_defaults_do_not_receive_the_context() -> None:
    def scale(batch: Batch, factor: int = 10) -> Batch:
        return [{"n": r["n"] * factor} for r in batch]

    seen: list[Any] = []

    async def load(batch: Batch, ctx: RunContext | None = None) -> None:
        seen.append(ctx)

    async def extract(limit: int = 2) -> AsyncIterator[Batch]:
        yield [{"n": n} for n in range(limit)]

    sink = Collect()
    await create_etl_pipeline(extract, scale, sink, logging=False).run()
    assert [r["n"] for r in sink.records] == [0, 10]
    result = await create_el_pipeline(extract, load, logging=False).run()
    assert len(seen) == 1
    assert isinstance(seen[0], RunContext)
    assert seen[0].run_id == result.run_id

"""create_lambda_transformer: per record and per batch, sync and async, concurrency, errors."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from ductwork import (
    Batch,
    ConfigError,
    Pipeline,
    RunContext,
    RunResult,
    TransformError,
    create_lambda_transformer,
)


async def run(stage: Any, batches: list[Batch], **options: Any) -> tuple[Batch, RunResult]:
    rows: Batch = []

    async def extract(ctx: RunContext) -> AsyncIterator[Batch]:
        for batch in batches:
            yield [dict(record) for record in batch]

    pipeline = Pipeline(extract, [stage], rows.extend, name="p", logging=False, **options)
    return rows, await pipeline.run()


def numbered(total: int, size: int) -> list[Batch]:
    return [[{"n": n} for n in range(s, min(s + size, total))] for s in range(0, total, size)]


async def test_per_record_drops_none_and_counts() -> None:
    def keep_even(record: dict[str, Any]) -> dict[str, Any] | None:
        return {**record, "half": record["n"] // 2} if record["n"] % 2 == 0 else None

    stage = create_lambda_transformer(keep_even)
    assert stage.name == "keep_even"
    rows, result = await run(stage, numbered(10, 3))
    assert [r["n"] for r in rows] == [0, 2, 4, 6, 8]
    assert rows[2] == {"n": 4, "half": 2}
    stats = result.stage("keep_even")
    assert (stats.records_in, stats.records_out) == (10, 5)
    assert stats.metrics == {"records_dropped": 5}


async def test_per_record_gets_the_context_when_it_takes_two_arguments() -> None:
    stage = create_lambda_transformer(lambda r, ctx: {**r, "stage": ctx.stage}, name="tag")
    rows, _ = await run(stage, numbered(2, 2))
    assert rows == [{"n": 0, "stage": "tag"}, {"n": 1, "stage": "tag"}]


async def test_per_record_async() -> None:
    async def slow_double(record: dict[str, Any]) -> dict[str, Any]:
        await anyio.sleep(0)
        return {"n": record["n"] * 2}

    rows, _ = await run(create_lambda_transformer(slow_double), numbered(7, 3))
    assert [r["n"] for r in rows] == [0, 2, 4, 6, 8, 10, 12]


async def test_per_record_concurrency_keeps_order_and_bounds_calls() -> None:
    in_flight = 0
    peak = 0
    rng = random.Random(7)

    async def enrich(record: dict[str, Any]) -> dict[str, Any] | None:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await anyio.sleep(rng.random() / 500)
        in_flight -= 1
        return None if record["n"] == 13 else {**record, "ok": True}

    stage = create_lambda_transformer(enrich, concurrency=5)
    assert stage.concurrency == 1  # records of a batch run concurrently, batches in order
    rows, result = await run(stage, numbered(60, 20))
    assert [r["n"] for r in rows] == [n for n in range(60) if n != 13]
    assert peak == 5
    assert result.stage("enrich").metrics == {"records_dropped": 1}


async def test_per_batch_sync_and_async() -> None:
    def reverse(batch: Batch) -> Batch:
        return batch[::-1]

    rows, _ = await run(create_lambda_transformer(reverse, per="batch"), numbered(4, 2))
    assert [r["n"] for r in rows] == [1, 0, 3, 2]

    async def drop_small(batch: Batch, ctx: RunContext) -> Batch | None:
        return batch if len(batch) > 1 else None

    rows, result = await run(create_lambda_transformer(drop_small, per="batch"), numbered(5, 2))
    assert [r["n"] for r in rows] == [0, 1, 2, 3]
    assert result.stage("drop_small").batches_out == 2


async def test_per_batch_concurrency_keeps_order() -> None:
    in_flight = 0
    peak = 0

    async def fetch(batch: Batch) -> Batch:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await anyio.sleep(0.001 * (5 - batch[0]["n"] % 5))
        in_flight -= 1
        return batch

    stage = create_lambda_transformer(fetch, per="batch", concurrency=4)
    assert stage.concurrency == 4
    rows, _ = await run(stage, numbered(40, 1), queue_size=8)
    assert [r["n"] for r in rows] == list(range(40))
    assert 1 < peak <= 4


async def test_raise_names_the_record_and_stops_calling() -> None:
    calls: list[int] = []

    def check(record: dict[str, Any]) -> dict[str, Any]:
        calls.append(record["n"])
        if record["n"] == 4:
            raise ValueError("n must not be 4")
        return record

    with pytest.raises(TransformError) as info:
        await run(create_lambda_transformer(check), numbered(9, 3))
    assert str(info.value) == "[pipeline 'p', stage 'check'] record 4: ValueError: n must not be 4"
    assert isinstance(info.value.__cause__, ValueError)
    assert calls == [0, 1, 2, 3, 4]


async def test_raise_with_concurrency_reports_a_failed_record() -> None:
    async def check(record: dict[str, Any]) -> dict[str, Any]:
        await anyio.sleep(0)
        if record["n"] in (7, 9):
            raise KeyError(record["n"])
        return record

    with pytest.raises(TransformError, match=r"record 7: KeyError: 7") as info:
        await run(create_lambda_transformer(check, concurrency=3), numbered(12, 12))
    assert isinstance(info.value.__cause__, KeyError)


async def test_skip_drops_failing_records_and_counts_them(caplog: pytest.LogCaptureFixture) -> None:
    def invert(record: dict[str, Any]) -> dict[str, Any]:
        return {"n": 1 / record["n"]}

    stage = create_lambda_transformer(invert, error_handling="skip")
    batches = [[{"n": 1}, {"n": 0}, {"n": 2}], [{"n": 0}, {"n": 4}]]
    with caplog.at_level("WARNING", logger="ductwork"):
        rows, result = await run(stage, batches)
    assert rows == [{"n": 1.0}, {"n": 0.5}, {"n": 0.25}]
    assert result.stage("invert").metrics == {"records_skipped": 2}
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [
        "p: invert skipped a record: record 1: ZeroDivisionError: division by zero "
        "(later ones are only counted, in the stage's metrics)"
    ]


async def test_skip_with_concurrency() -> None:
    async def invert(record: dict[str, Any]) -> dict[str, Any]:
        await anyio.sleep(0)
        return {"n": 1 / record["n"]}

    stage = create_lambda_transformer(invert, error_handling="skip", concurrency=4)
    rows, result = await run(stage, [[{"n": 1}, {"n": 0}, {"n": 2}, {"n": 0}, {"n": 4}]])
    assert rows == [{"n": 1.0}, {"n": 0.5}, {"n": 0.25}]
    assert result.stage("invert").metrics == {"records_skipped": 2}


async def test_per_batch_failure_applies_to_every_record_of_the_batch() -> None:
    letters: list[dict[str, Any]] = []

    def picky(batch: Batch) -> Batch:
        if any(r["n"] == 3 for r in batch):
            raise RuntimeError("bad batch")
        return batch

    stage = create_lambda_transformer(
        picky, per="batch", error_handling="dead_letter", dead_letter_sink=letters.extend
    )
    rows, result = await run(stage, numbered(6, 2))
    assert [r["n"] for r in rows] == [0, 1, 4, 5]
    assert [(d["position"], d["record"]) for d in letters] == [(2, {"n": 2}), (3, {"n": 3})]
    assert letters[0]["error"] == "records 2-3: RuntimeError: bad batch"
    assert result.stage("picky").metrics == {"dead_letters": 2}

    with pytest.raises(TransformError, match=r"records 2-3: RuntimeError: bad batch"):
        await run(create_lambda_transformer(picky, per="batch"), numbered(6, 2))


async def test_dead_letters_of_a_record_function() -> None:
    letters: list[dict[str, Any]] = []

    def parse(record: dict[str, Any]) -> dict[str, Any]:
        return {"n": int(record["n"])}

    stage = create_lambda_transformer(
        parse, "parse", "dead_letter", dead_letter_sink=letters.extend
    )
    rows, result = await run(stage, [[{"n": "1"}, {"n": "x"}], [{"n": "3"}]])
    assert rows == [{"n": 1}, {"n": 3}]
    [letter] = letters
    assert letter == {
        "record": {"n": "x"},
        "error": "record 1: ValueError: invalid literal for int() with base 10: 'x'",
        "error_type": "TransformError",
        "stage": "parse",
        "pipeline": "p",
        "run_id": result.run_id,
        "position": 1,
    }


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"function": 42}, "function"),
        ({"function": lambda: None}, "function"),
        ({"function": lambda r: r, "per": "row"}, "per"),
        ({"function": lambda r: r, "concurrency": 0}, "concurrency"),
        ({"function": lambda r: r, "concurrency": 2}, "concurrency"),
        ({"function": lambda r: r, "error_handling": "ignore"}, "error_handling"),
        ({"function": lambda r: r, "error_handling": "dead_letter"}, "dead_letter_sink"),
        ({"function": lambda r: r, "dead_letter_sink": 5}, "dead_letter_sink"),
    ],
)
def test_bad_configuration_names_the_field(options: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        create_lambda_transformer(**options)
    assert field in [name for name, _ in info.value.errors]


def test_names() -> None:
    assert create_lambda_transformer(lambda r: r).name == "lambda"
    assert create_lambda_transformer(lambda r: r, name="x").name == "x"
    assert "per='batch'" in repr(create_lambda_transformer(lambda b: b, per="batch"))

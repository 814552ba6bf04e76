"""The instrumentation points: around every run and stage, and operations; nothing when unused."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import pytest

from ductwork import Batch, RunContext, RunResult, StageStats, create_el_pipeline
from ductwork.core.instrument import Instrument, Operation, install, installed, operation


class Recorder(Instrument):
    def __init__(self, name: str, events: list[str]) -> None:
        self.name = name
        self.events = events

    @contextmanager
    def run(self, runnable: Any, ctx: RunContext, result: RunResult) -> Iterator[None]:
        self.events.append(f"{self.name} run {result.name} {result.status}")
        yield
        self.events.append(f"{self.name} ran {result.name} {result.status} {result.records_out}")

    @contextmanager
    def stage(self, ctx: RunContext, stats: StageStats) -> Iterator[None]:
        try:
            yield
        except ValueError:
            self.events.append(f"{self.name} stage {stats.name} raised")
            raise
        self.events.append(f"{self.name} stage {stats.name} {stats.records_out}")

    @contextmanager
    def operation(self, name: str, attributes: Mapping[str, Any], kind: str) -> Iterator[Operation]:
        recorder = self

        class Op(Operation):
            def set_attribute(self, key: str, value: Any) -> None:
                recorder.events.append(f"{recorder.name} {name} {key}={value}")

        yield Op()


async def source(ctx: RunContext) -> AsyncIterator[Batch]:
    with operation("fetch", {"url": "x"}, "client") as op:
        op.set_attribute("status", 200)
    yield [{"n": 1}, {"n": 2}]


async def test_every_instrument_sees_runs_stages_and_operations() -> None:
    events: list[str] = []
    first, second = Recorder("a", events), Recorder("b", events)
    removers = [install(first), install(second), install(first)]
    assert installed()[-2:] == (first, second)  # installed once each, in order
    try:
        await create_el_pipeline(source, lambda b: None, name="p", logging=False).run()
    finally:
        for remove in removers:
            remove()
    assert first not in installed()
    assert second not in installed()
    assert events[:2] == ["a run p pending", "b run p pending"]
    assert events[-2:] == ["b ran p succeeded 2", "a ran p succeeded 2"]
    middle = set(events[2:-2])
    assert middle == {
        "a fetch status=200",
        "b fetch status=200",
        "a stage source 2",
        "b stage source 2",
        "a stage load 2",
        "b stage load 2",
    }


async def test_a_stage_error_passes_through_the_instruments() -> None:
    events: list[str] = []

    async def broken(ctx: RunContext) -> AsyncIterator[Batch]:
        raise ValueError("boom")
        yield []

    remove = install(Recorder("a", events))
    try:
        with pytest.raises(Exception, match="boom"):
            await create_el_pipeline(broken, lambda b: None, name="p", logging=False).run()
    finally:
        remove()
    assert "a stage broken raised" in events
    assert events[-1] == "a ran p failed 0"


def test_without_instruments_an_operation_is_a_no_op() -> None:
    with operation("anything", {}) as op:
        op.set_attribute("key", 1)
        op.record_error(ValueError("ignored"))

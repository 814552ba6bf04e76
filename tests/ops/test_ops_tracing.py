"""OpenTelemetry spans: the tree of a composition run, stages, HTTP requests, backfill windows."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from ops_helpers import pages_api

from ductwork import (
    Batch,
    ConfigError,
    MemoryStateStore,
    PageNumberPagination,
    PipelineRegistry,
    RunContext,
    create_el_pipeline,
    create_http_extractor,
    create_parallel_pipeline,
    create_retry_pipeline,
)
from ductwork.ops import enable_tracing, exporting_spans

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    remove = enable_tracing(provider)
    try:
        yield exporter
    finally:
        remove()
        provider.shutdown()


def tree(finished: tuple[ReadableSpan, ...]) -> list[Any]:
    """The spans as nested ``(name, [children...])``, children in start order."""
    by_parent: dict[int | None, list[ReadableSpan]] = {}
    for span in finished:
        parent = span.parent.span_id if span.parent is not None else None
        by_parent.setdefault(parent, []).append(span)

    def build(span: ReadableSpan) -> Any:
        children = sorted(by_parent.get(span.context.span_id, []), key=lambda s: s.start_time or 0)
        return (span.name, [build(child) for child in children])

    return [build(root) for root in by_parent.get(None, [])]


def named(finished: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [span for span in finished if span.name == name]


async def test_a_composition_run_forms_the_tree(spans: InMemorySpanExporter) -> None:
    calls = 0

    async def flaky(ctx: RunContext) -> AsyncIterator[Batch]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("connection reset by peer")
        yield [{"id": 1}, {"id": 2}]

    async def steady(ctx: RunContext) -> AsyncIterator[Batch]:
        yield [{"id": 3}]

    async def sink(batch: Batch) -> None:
        pass

    nightly = create_retry_pipeline(
        create_parallel_pipeline(
            [
                create_el_pipeline(flaky, sink, name="flaky_api", logging=False),
                create_el_pipeline(steady, sink, name="steady_api", logging=False),
            ],
            name="sources",
            max_workers=1,  # children start in order
            logging=False,
        ),
        max_retries=2,
        backoff_factor=0.01,
        name="nightly",
        logging=False,
    )
    result = await nightly.run()
    finished = spans.get_finished_spans()
    pipeline = lambda name, source: (  # noqa: E731
        f"pipeline {name}",
        [(f"extract {source}", []), ("load sink", [])],
    )
    assert tree(finished) == [
        (
            "retry nightly",
            [
                # the first attempt: the extract fails at once, which cancels the loader before
                # it starts, and fail_fast cancels steady_api before it starts
                ("parallel sources", [("pipeline flaky_api", [("extract flaky", [])])]),
                (
                    "parallel sources",
                    [pipeline("flaky_api", "flaky"), pipeline("steady_api", "steady")],
                ),
            ],
        )
    ]
    (root,) = named(finished, "retry nightly")
    assert root.attributes is not None
    assert root.attributes["ductwork.status"] == "succeeded"
    assert root.attributes["ductwork.attempts"] == 2
    assert root.attributes["ductwork.records_out"] == result.records_out == 3
    assert root.attributes["ductwork.run_id"] == result.run_id
    first, second = named(finished, "parallel sources")
    assert first.status.status_code is StatusCode.ERROR
    assert second.status.status_code is StatusCode.UNSET
    failed_run = named(finished, "pipeline flaky_api")[0]
    assert failed_run.attributes["ductwork.status"] == "failed"  # type: ignore[index]
    failed_stage = named(finished, "extract flaky")[0]
    assert failed_stage.status.status_code is StatusCode.ERROR
    assert failed_stage.events[0].name == "exception"
    load = named(finished, "load sink")[-1]
    assert load.attributes is not None
    assert (load.attributes["ductwork.records_in"], load.attributes["ductwork.records_out"]) == (
        1,
        1,
    )
    assert load.attributes["ductwork.status"] == "succeeded"
    assert load.attributes["ductwork.stage"] == "sink"


async def test_http_requests_nest_under_their_stage(spans: InMemorySpanExporter) -> None:
    with pages_api() as url:
        pipeline = create_el_pipeline(
            create_http_extractor(
                url + "/pages?access_token=abc",
                records_path="data",
                pagination=PageNumberPagination(page_size=2),
                retry_logic={"max_retries": 2, "backoff_factor": 0.01},
                name="pages",
            ),
            lambda batch: None,
            name="paged",
            logging=False,
        )
        await pipeline.run()
    finished = spans.get_finished_spans()
    (stage,) = named(finished, "extract pages")
    requests = named(finished, "GET")
    assert len(requests) == 5  # page 2 twice: a 503, then the retry
    for request in requests:
        assert request.parent is not None
        assert request.parent.span_id == stage.context.span_id
        assert request.kind is SpanKind.CLIENT
        assert "access_token=***" in str(request.attributes["url.full"])  # type: ignore[index]
    statuses = [r.attributes["http.response.status_code"] for r in requests]  # type: ignore[index]
    assert statuses == [200, 503, 200, 200, 200]
    retried = requests[1]
    assert retried.status.status_code is StatusCode.ERROR
    assert requests[2].attributes["http.request.resend_count"] == 1  # type: ignore[index]


async def test_backfill_windows_nest_under_the_backfill(spans: InMemorySpanExporter) -> None:
    async def extract(ctx: RunContext) -> AsyncIterator[Batch]:
        yield [{"day": f"{ctx.window.start:%d}"}] if ctx.window else []

    registry = PipelineRegistry(state=MemoryStateStore())
    registry.register_pipeline(
        "days",
        create_el_pipeline(extract, lambda batch: None, name="days", logging=False),
        timescope="daily",
    )
    await registry.backfill("days", "2024-02-27", "2024-03-01", max_workers=2)
    finished = spans.get_finished_spans()
    (backfill,) = named(finished, "backfill days")
    windows = named(finished, "pipeline days")
    assert len(windows) == 3
    assert {w.parent.span_id for w in windows if w.parent} == {backfill.context.span_id}
    starts = sorted(str(w.attributes["ductwork.window.start"]) for w in windows)  # type: ignore[index]
    assert starts == [f"2024-02-{d}T00:00:00+00:00" for d in (27, 28, 29)]


PIPELINE_MODULE = textwrap.dedent(
    """
    from ductwork import create_el_pipeline

    async def extract(ctx):
        yield [{"n": n} for n in range(3)]

    async def load(batch):
        pass

    PIPELINE_REGISTRY = {"three": lambda: create_el_pipeline(extract, load, name="three")}
    """
)


def run_with_otel(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "pipelines").mkdir(exist_ok=True)
    (tmp_path / "pipelines" / "three_pipeline.py").write_text(PIPELINE_MODULE)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "DUCTWORK_"))}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "ductwork",
            "run",
            "three",
            "--otel",
            "--path",
            str(tmp_path / "pipelines"),
            "--state",
            str(tmp_path / "state.json"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**clean, "PYTHONPATH": str(ROOT / "src"), **env},
    )


def test_run_otel_prints_the_spans_on_stderr_when_no_exporter_is_set(tmp_path: Path) -> None:
    done = run_with_otel(tmp_path)
    assert done.returncode == 0, done.stderr
    assert "three (pipeline) · succeeded" in done.stdout
    decoder = json.JSONDecoder()
    text, spans = done.stderr, []
    index = text.find("{")
    while index != -1:
        span, end = decoder.raw_decode(text, index)
        spans.append(span)
        index = text.find("{", end)
    names = sorted(span["name"] for span in spans)
    assert names == ["extract extract", "load load", "pipeline three"]
    assert {span["resource"]["attributes"]["service.name"] for span in spans} == {"ductwork"}


class _Collector(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, bytes]]] = []

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()


def test_run_otel_exports_by_otlp_to_the_endpoint_of_the_environment(tmp_path: Path) -> None:
    with OtlpCollector() as collector:
        done = run_with_otel(
            tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT=collector.url, OTEL_SERVICE_NAME="nightly-etl"
        )
    assert done.returncode == 0, done.stderr
    assert collector.spans() == (
        ["extract extract", "load load", "pipeline three"],
        {"nightly-etl"},
    )


class OtlpCollector:
    """A local OTLP/HTTP receiver: the span names and service names of what it was sent."""

    def __init__(self) -> None:
        _Collector.received = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> OtlpCollector:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    @staticmethod
    def spans() -> tuple[list[str], set[str]]:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        names, services = [], set()
        for path, body in _Collector.received:
            assert path == "/v1/traces"
            request = ExportTraceServiceRequest.FromString(body)
            for resource_spans in request.resource_spans:
                for attribute in resource_spans.resource.attributes:
                    if attribute.key == "service.name":
                        services.add(attribute.value.string_value)
                for scope in resource_spans.scope_spans:
                    names.extend(span.name for span in scope.spans)
        return sorted(names), services


async def three_records(ctx: RunContext) -> AsyncIterator[Batch]:
    yield [{"n": n} for n in range(3)]


async def run_three() -> None:
    await create_el_pipeline(three_records, lambda batch: None, name="three", logging=False).run()


@pytest.fixture
def no_otel_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)
    return monkeypatch


async def test_exporting_spans_to_a_stream_by_default(no_otel_env: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    with exporting_spans(stream):
        await run_three()
    await run_three()  # after the block: not traced
    text = stream.getvalue()
    assert text.count('"name": "pipeline three"') == 1
    assert '"service.name": "ductwork"' in text


async def test_exporting_spans_by_otlp(no_otel_env: pytest.MonkeyPatch) -> None:
    with OtlpCollector() as collector:
        no_otel_env.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", collector.url + "/v1/traces")
        no_otel_env.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=etl,team=data")
        with exporting_spans():
            await run_three()
    assert collector.spans() == (["extract three_records", "load load", "pipeline three"], {"etl"})


async def test_exporting_spans_nowhere_or_to_an_unknown_exporter(
    no_otel_env: pytest.MonkeyPatch,
) -> None:
    no_otel_env.setenv("OTEL_TRACES_EXPORTER", "none")
    with exporting_spans():
        await run_three()
    no_otel_env.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    with pytest.raises(ConfigError, match="expected otlp, console or none"), exporting_spans():
        pass
    no_otel_env.setenv("OTEL_TRACES_EXPORTER", "otlp")
    no_otel_env.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")  # its package is not installed
    missing = "opentelemetry-exporter-otlp-proto-grpc"
    with pytest.raises(ConfigError, match=missing), exporting_spans():
        pass

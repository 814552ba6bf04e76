"""OpenTelemetry traces of runs, stages and HTTP requests (the ``otel`` extra).

:func:`enable_tracing` installs an :class:`~ductwork.core.instrument.Instrument` that opens:

* a span per run (``pipeline orders``, ``parallel sources``, ``retry nightly``...), with the
  runs of a composition's children, a retry's attempts and a backfill's windows as its children;
* a span per stage of a pipeline run (``extract read_orders``, ``load jsonl_file``), a child of
  the run's span, current in the stage's task, so what the stage does nests under it;
* a client span per HTTP request the HTTP extractor sends (``GET``), a child of its stage.

Attributes: ``ductwork.pipeline``, ``ductwork.run_id``, ``ductwork.kind``, ``ductwork.status``,
``ductwork.records_in``, ``ductwork.records_out``, the window (``ductwork.window.start``,
``ductwork.window.end``), on stages ``ductwork.stage`` and their batches, on requests the
OpenTelemetry HTTP attributes (``http.request.method``, ``url.full`` with secrets masked,
``http.response.status_code``). A failed run or stage has the status ``ERROR`` and the exception
as an event.

This module uses only ``opentelemetry-api``: spans go to the tracer provider the application
set up (or the one given). :func:`exporting_spans`, used by ``ductwork run --otel``, sets one up
with the SDK, exporting by OTLP as the standard ``OTEL_*`` variables say, or to the console.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, TextIO

import anyio

from .._exceptions import ConfigError
from .._version import __version__
from ..core.context import RunContext
from ..core.instrument import Instrument, Operation, OperationKind, install
from ..core.result import RunResult, StageStats
from ..core.runnable import Runnable
from ..core.types import RunStatus

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, TracerProvider

__all__ = ["Tracing", "enable_tracing", "exporting_spans"]

_Attribute = str | int | float | bool


class _SpanOperation(Operation):
    """An operation recorded as a span."""

    __slots__ = ("_span",)

    def __init__(self, span: Span) -> None:
        self._span = span

    def set_attribute(self, key: str, value: _Attribute) -> None:
        self._span.set_attribute(key, value)
        if key == "error.type":
            from opentelemetry.trace import StatusCode

            self._span.set_status(StatusCode.ERROR)

    def record_error(self, error: BaseException) -> None:
        _fail(self._span, error)


def _fail(span: Span, error: BaseException) -> None:
    from opentelemetry.trace import StatusCode

    span.record_exception(error)
    span.set_status(StatusCode.ERROR, f"{type(error).__name__}: {error}")


class Tracing(Instrument):
    """Spans for runs, stages and HTTP requests, through the OpenTelemetry API.

    Args:
        tracer_provider: where the spans go (default: the global tracer provider).
    """

    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        try:
            from opentelemetry import trace
        except ImportError:
            raise ConfigError.for_field(
                "tracing", "tracing needs opentelemetry-api: pip install 'ductwork[otel]'"
            ) from None
        self._tracer = trace.get_tracer("ductwork", __version__, tracer_provider)
        self._client = trace.SpanKind.CLIENT
        self._internal = trace.SpanKind.INTERNAL

    def run(
        self, runnable: Runnable, ctx: RunContext, result: RunResult
    ) -> AbstractContextManager[None]:
        """A span for the run, current while it goes on."""
        return self._run(ctx, result)

    @contextmanager
    def _run(self, ctx: RunContext, result: RunResult) -> Iterator[None]:
        attributes: dict[str, _Attribute] = {
            "ductwork.pipeline": result.name,
            "ductwork.kind": result.kind,
            "ductwork.run_id": ctx.run_id,
        }
        if ctx.parent_run_id is not None:
            attributes["ductwork.parent_run_id"] = ctx.parent_run_id
        if ctx.window is not None:
            attributes["ductwork.window.start"] = ctx.window.start.isoformat()
            attributes["ductwork.window.end"] = ctx.window.end.isoformat()
        with self._tracer.start_as_current_span(
            f"{result.kind} {result.name}",
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                yield
            finally:
                span.set_attribute("ductwork.status", str(result.status))
                span.set_attribute("ductwork.records_in", result.records_in)
                span.set_attribute("ductwork.records_out", result.records_out)
                if result.kind == "retry":
                    span.set_attribute("ductwork.attempts", result.attempts)
                if result.detail:
                    span.set_attribute("ductwork.detail", result.detail)
                if result.status is RunStatus.FAILED and result.error is not None:
                    _fail(span, result.error)

    def stage(self, ctx: RunContext, stats: StageStats) -> AbstractContextManager[None]:
        """A span for one stage, current in its task."""
        return self._stage(ctx, stats)

    @contextmanager
    def _stage(self, ctx: RunContext, stats: StageStats) -> Iterator[None]:
        with self._tracer.start_as_current_span(
            f"{stats.kind} {stats.name}",
            attributes={
                "ductwork.pipeline": ctx.pipeline,
                "ductwork.run_id": ctx.run_id,
                "ductwork.stage": stats.name,
                "ductwork.stage.kind": stats.kind,
            },
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            status = RunStatus.SUCCEEDED
            try:
                yield
            except anyio.get_cancelled_exc_class():
                status = RunStatus.CANCELLED
                raise
            except BaseException as exc:
                status = RunStatus.FAILED
                _fail(span, exc)
                raise
            finally:
                span.set_attribute("ductwork.status", str(status))
                span.set_attribute("ductwork.records_in", stats.records_in)
                span.set_attribute("ductwork.records_out", stats.records_out)
                span.set_attribute("ductwork.batches_in", stats.batches_in)
                span.set_attribute("ductwork.batches_out", stats.batches_out)
                span.set_attribute("ductwork.blocked_seconds", stats.blocked_seconds)

    def operation(
        self, name: str, attributes: Mapping[str, _Attribute], kind: OperationKind
    ) -> AbstractContextManager[Operation]:
        """A span for one operation of a stage (an HTTP request: a client span)."""
        return self._operation(name, attributes, kind)

    @contextmanager
    def _operation(
        self, name: str, attributes: Mapping[str, _Attribute], kind: OperationKind
    ) -> Iterator[Operation]:
        with self._tracer.start_as_current_span(
            name,
            kind=self._client if kind == "client" else self._internal,
            attributes=dict(attributes),
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            op = _SpanOperation(span)
            try:
                yield op
            except anyio.get_cancelled_exc_class():
                raise
            except BaseException as exc:
                op.set_attribute("error.type", type(exc).__name__)
                raise


def enable_tracing(tracer_provider: TracerProvider | None = None) -> Callable[[], None]:
    """Trace every run in this process from now on; returns a function that stops it.

    Args:
        tracer_provider: where the spans go (default: OpenTelemetry's global provider, set by
            the application with ``opentelemetry.trace.set_tracer_provider``).

    Raises:
        ConfigError: opentelemetry-api is not installed.
    """
    return install(Tracing(tracer_provider))


@contextmanager
def exporting_spans(stream: TextIO | None = None) -> Iterator[None]:
    """Trace runs while the block runs, exporting the spans with the OpenTelemetry SDK.

    The exporter follows the standard variables: ``OTEL_TRACES_EXPORTER`` (``otlp``,
    ``console`` or ``none``); otherwise OTLP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` or
    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set (over HTTP, or gRPC when
    ``OTEL_EXPORTER_OTLP_PROTOCOL`` is ``grpc``), and the console (``stream``, by default
    stderr) when none is. ``OTEL_SERVICE_NAME`` names the service (default ``ductwork``). The
    spans are flushed when the block is left.

    Raises:
        ConfigError: the SDK or the exporter is not installed, or an unknown exporter is named.
    """
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise ConfigError.for_field(
            "otel", "exporting spans needs the OpenTelemetry SDK: pip install 'ductwork[otel]'"
        ) from None
    exporter = _exporter(stream if stream is not None else sys.stderr)
    named = "OTEL_SERVICE_NAME" in os.environ or "service.name=" in os.environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    )
    provider = TracerProvider(
        resource=Resource.create({} if named else {"service.name": "ductwork"})
    )
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    remove = install(Tracing(provider))
    try:
        yield
    finally:
        remove()
        provider.shutdown()


def _exporter(stream: TextIO) -> SpanExporter | None:
    env = os.environ
    choice = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if not choice:
        endpoints = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        choice = "otlp" if any(env.get(name) for name in endpoints) else "console"
    if choice == "none":
        return None
    if choice == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter(out=stream)
    if choice != "otlp":
        raise ConfigError.for_field(
            "OTEL_TRACES_EXPORTER", f"expected otlp, console or none, got {choice!r}"
        )
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
    )
    grpc = protocol.strip().lower() == "grpc"
    package = f"opentelemetry-exporter-otlp-proto-{'grpc' if grpc else 'http'}"
    try:
        module = importlib.import_module(
            f"opentelemetry.exporter.otlp.proto.{'grpc' if grpc else 'http'}.trace_exporter"
        )
    except ImportError:
        raise ConfigError.for_field(
            "OTEL_EXPORTER_OTLP_PROTOCOL", f"exporting by OTLP needs {package}: pip install it"
        ) from None
    exporter: SpanExporter = module.OTLPSpanExporter()
    return exporter

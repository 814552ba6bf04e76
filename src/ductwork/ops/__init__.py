"""Operating ductwork: Prometheus metrics, OpenTelemetry traces, an HTTP API and a dashboard.

* :class:`RunMetrics` counts runs, records and stage time from the counters every run keeps
  (nothing per record); ``metrics.install()`` observes every run of the process,
  ``metrics.write(path)`` writes the Prometheus text format (``ductwork run --metrics-file``).
* :func:`enable_tracing` opens OpenTelemetry spans for runs, stages and HTTP requests, through
  ``opentelemetry-api`` (the ``otel`` extra); :func:`exporting_spans` exports them with the SDK
  as the ``OTEL_*`` variables say (``ductwork run --otel``).
* :class:`HttpServer` serves ``/healthz``, ``/readyz``, ``/metrics``, a JSON API of jobs and
  runs and a dashboard, inside the scheduler's event loop and task group
  (``open_scheduler(registry, http=HttpServer("127.0.0.1:8080"))``, ``ductwork serve --http``;
  the ``ops`` extra: starlette, uvicorn, prometheus-client).

prometheus-client, starlette, uvicorn and OpenTelemetry are imported only when used.
"""

from __future__ import annotations

from .metrics import RunMetrics
from .server import HttpServer, HttpServerConfig, SchedulerMetrics
from .tracing import Tracing, enable_tracing, exporting_spans

__all__ = [
    "HttpServer",
    "HttpServerConfig",
    "RunMetrics",
    "SchedulerMetrics",
    "Tracing",
    "enable_tracing",
    "exporting_spans",
]

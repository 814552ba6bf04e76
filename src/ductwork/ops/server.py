"""The HTTP server of ``ductwork serve --http``: health, metrics, the API and the dashboard.

:class:`HttpServer` is a :class:`~ductwork.scheduler.SchedulerService`: handed to
``open_scheduler(registry, http=HttpServer("127.0.0.1:8080"))``, it runs uvicorn's
``Server.serve()`` as a task of the scheduler's task group, in the same event loop, and stops
with the scheduler once its runs have ended. It binds its socket before the scheduler's block
starts (a port in use fails the ``async with``), leaves the signals to the scheduler (which owns
SIGINT, SIGTERM and the grace period) and never configures logging.

Endpoints:

=========================================  ====================================================
``GET /healthz``                           the process is alive
``GET /readyz``                            the scheduler runs and the state store answers (503
                                           otherwise)
``GET /metrics``                           Prometheus text format
``GET /api/jobs``                          every cron job: schedule, timescope, next fire, last
                                           run, counts
``GET /api/jobs/{name}``                   one job and its recent runs
``GET /api/runs?pipeline=&limit=``         run history, newest first, with per-stage figures
``GET /api/runs/{pipeline}/{run_id}``      one run (also while it goes on, from its live
                                           counters)
``POST /api/jobs/{name}/trigger``          start a run now (202; 409 when the overlap policy
                                           skips it)
``POST /api/jobs/{name}/enable|disable``   let the job's ticks start runs, or stop them
``GET /``, ``/jobs/{name}``,               the dashboard
``/runs/{pipeline}/{run_id}``
=========================================  ====================================================

Every POST needs ``Authorization: Bearer <token>``, compared in constant time; a server without a
token answers POSTs with 403, a missing or wrong token gets 401. The token never appears in a
response. When listening on a loopback address (the default), requests must name a loopback host
(``Host: 127.0.0.1`` or ``localhost``), so a web page cannot reach the server through DNS
rebinding.

This module runs the server; the answers are in :mod:`ductwork.ops.routes`, the token and host
checks in :mod:`ductwork.ops.auth`.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import anyio
from anyio.abc import TaskStatus
from pydantic import Field, SecretStr, field_validator

from .._exceptions import ConfigError
from ..core.config import Options, configure
from ..scheduler import Scheduler
from .auth import BearerToken, allowed_hosts, is_loopback
from .metrics import RunMetrics
from .routes import MAX_LIMIT, Routes

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric
    from starlette.applications import Starlette

__all__ = [
    "HttpServer",
    "HttpServerConfig",
    "SchedulerMetrics",
    "is_loopback",
    "parse_listen",
]

logger = logging.getLogger("ductwork.ops")


def parse_listen(listen: str | int) -> tuple[str, int]:
    """``"host:port"``, ``"[::1]:port"``, ``":port"`` or a port alone as ``(host, port)``;
    without a host, the loopback address 127.0.0.1.

    Example:
        >>> parse_listen("8080"), parse_listen("0.0.0.0:9000"), parse_listen("[::1]:0")
        (('127.0.0.1', 8080), ('0.0.0.0', 9000), ('::1', 0))
    """
    text = str(listen).strip()
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = "", text
    host = host.strip("[]") or "127.0.0.1"
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"expected HOST:PORT or a port number, got {text!r}") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is not between 0 and 65535")
    return host, port


class HttpServerConfig(Options):
    """Options of an :class:`HttpServer`."""

    listen: str = "127.0.0.1:8080"
    """Where to listen: ``HOST:PORT``, or a port alone for 127.0.0.1 (port 0: any free port).
    Only a loopback address keeps the dashboard and the read endpoints, which need no token, to
    this machine."""
    token: SecretStr | None = None
    """The bearer token every POST must carry (trigger, enable, disable); without one the POST
    endpoints answer 403."""
    metrics: bool = True
    """While serving, count every run of the process for ``/metrics`` (and show the runs in
    flight on the dashboard); without, ``/metrics`` has the scheduler's figures only."""
    allowed_hosts: list[str] | None = None
    """Host names requests may be addressed to; by default the loopback names when listening
    on a loopback address, any otherwise."""
    refresh_seconds: Annotated[float, Field(ge=0)] = 5.0
    """How often the dashboard refreshes itself (0: never)."""
    runs_shown: Annotated[int, Field(ge=1, le=MAX_LIMIT)] = 20
    """Recent runs shown per job on the dashboard."""
    shutdown_timeout: Annotated[float, Field(ge=0)] = 5.0
    """On shutdown, how long requests in progress may take before they are cancelled."""

    @field_validator("listen", mode="before")
    @classmethod
    def _check_listen(cls, value: Any) -> str:
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ValueError("expected HOST:PORT or a port number")
        host, port = parse_listen(value)
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    @field_validator("token")
    @classmethod
    def _check_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("the token is empty")
        return value


class SchedulerMetrics:
    """A prometheus-client collector of a scheduler's own figures, read at scrape time.

    ``ductwork_scheduler_running`` (1 while it runs), ``ductwork_scheduler_jobs{status}``
    (``enabled``/``disabled``), and per pipeline ``ductwork_scheduler_ticks_total``,
    ``ductwork_scheduler_ticks_skipped_total`` (dropped by the overlap policy) and
    ``ductwork_scheduler_tick_lateness_seconds`` (a summary: how late the ticks woke up).
    """

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler

    def collect(self) -> list[Metric]:
        """The metric families."""
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            SummaryMetricFamily,
        )

        jobs = self.scheduler.status()
        running = GaugeMetricFamily("ductwork_scheduler_running", "1 while the scheduler runs.")
        running.add_metric([], 1 if self.scheduler.state == "running" else 0)
        counts = GaugeMetricFamily(
            "ductwork_scheduler_jobs", "Cron jobs, by status.", labels=["status"]
        )
        enabled = sum(job.enabled for job in jobs)
        counts.add_metric(["enabled"], enabled)
        counts.add_metric(["disabled"], len(jobs) - enabled)
        per_pipeline: dict[str, list[float]] = {}
        for job in jobs:
            figures = per_pipeline.setdefault(job.pipeline, [0, 0, 0.0])
            figures[0] += job.ticks
            figures[1] += job.skipped
            figures[2] += job.tick_lateness_seconds
        ticks = CounterMetricFamily(
            "ductwork_scheduler_ticks", "Ticks that fired.", labels=["pipeline"]
        )
        skipped = CounterMetricFamily(
            "ductwork_scheduler_ticks_skipped",
            "Ticks skipped because the previous run was still going.",
            labels=["pipeline"],
        )
        lateness = SummaryMetricFamily(
            "ductwork_scheduler_tick_lateness_seconds",
            "How late ticks woke up after their time, in seconds.",
            labels=["pipeline"],
        )
        for pipeline, (n, dropped, late) in sorted(per_pipeline.items()):
            ticks.add_metric([pipeline], n)
            skipped.add_metric([pipeline], dropped)
            lateness.add_metric([pipeline], count_value=int(n), sum_value=late)
        return [running, counts, ticks, skipped, lateness]


class HttpServer:
    """Health checks, Prometheus metrics, a JSON API and a dashboard for a scheduler.

    Hand it to the scheduler, which runs it in its task group and stops it on shutdown::

        async with open_scheduler(registry, http=HttpServer("127.0.0.1:8080", token=token)):
            ...

    A server serves once. Needs the ``ops`` extra (starlette, uvicorn, prometheus-client).

    Args:
        listen: where to listen (see :attr:`HttpServerConfig.listen`).
        config: the options as an :class:`HttpServerConfig`, or
        **options: the options as keyword arguments (``token``, ``metrics``, ...).

    Raises:
        ConfigError: an invalid option, naming it.
    """

    def __init__(
        self,
        listen: str | int | None = None,
        config: HttpServerConfig | None = None,
        **options: Any,
    ) -> None:
        if listen is not None:
            options["listen"] = listen
        self.config: HttpServerConfig = configure(HttpServerConfig, "HTTP server", config, options)
        self.host, self.port = parse_listen(self.config.listen)
        self.metrics = RunMetrics()
        self._scheduler: Scheduler | None = None
        self._server: Any = None
        self._state = "new"
        self._stop = False
        self._token = BearerToken(self.config.token)

    def __repr__(self) -> str:
        return f"HttpServer({self.url!r}, state={self._state!r})"

    @property
    def url(self) -> str:
        """The server's base URL (with the port it got, once serving)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    # --- the service ----------------------------------------------------------------------

    async def serve(
        self,
        scheduler: Scheduler,
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve ``scheduler`` until :meth:`stop`; ``task_status.started()`` once listening.

        Raises:
            RuntimeError: the server has served already.
            ConfigError: the ``ops`` extra is not installed.
            OSError: the address cannot be bound (a port in use, ...).
        """
        if self._state != "new":
            raise RuntimeError(f"this HTTP server is {self._state}; a server serves once")
        self._state = "starting"
        try:
            import uvicorn
        except ImportError:
            raise ConfigError.for_field(
                "http", "the HTTP server needs the ops extra: pip install 'ductwork[ops]'"
            ) from None
        self._scheduler = scheduler
        app = self._app(scheduler)
        sock = self._bind()
        server = _server_class()(
            uvicorn.Config(
                app,
                log_config=None,
                lifespan="off",
                ws="none",
                server_header=False,
                timeout_graceful_shutdown=max(1, round(self.config.shutdown_timeout)),
            )
        )
        self._server = server
        remove_metrics = self.metrics.install() if self.config.metrics else None
        try:
            server.should_exit = self._stop
            self._state = "serving"
            task_status.started()
            logger.info("HTTP server listening on %s", self.url)
            await server.serve(sockets=[sock])
        finally:
            self._state = "closed"
            if remove_metrics is not None:
                remove_metrics()
            with anyio.CancelScope(shield=True):
                await _close(server, sock)
            logger.info("HTTP server stopped")

    def stop(self) -> None:
        """Stop serving: requests in progress may finish (up to ``shutdown_timeout``)."""
        self._stop = True
        if self._server is not None:
            self._server.should_exit = True

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        try:
            sock = socket.create_server((self.host, self.port), family=family)
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise OSError(
                exc.errno, f"cannot listen on {self.host}:{self.port}: {reason}"
            ) from None
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        return sock

    # --- the application -----------------------------------------------------------------

    def _app(self, scheduler: Scheduler) -> Starlette:
        routes = Routes(
            scheduler,
            self.metrics,
            [SchedulerMetrics(scheduler)],
            self._token,
            runs_shown=self.config.runs_shown,
            refresh_seconds=self.config.refresh_seconds,
        )
        return routes.app(allowed_hosts(self.config.allowed_hosts, self.host))

    @property
    def scheduler(self) -> Scheduler:
        """The scheduler served (once serving)."""
        assert self._scheduler is not None
        return self._scheduler


def _server_class() -> type[Any]:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, leaving SIGINT and SIGTERM to the scheduler."""

        @contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return Server


async def _close(server: Any, sock: socket.socket) -> None:
    """Close what uvicorn left open when its ``serve()`` did not finish (it was cancelled)."""
    for listener in getattr(server, "servers", ()):
        listener.close()
    sock.close()
    for connection in list(server.server_state.connections):
        connection.shutdown()
    for task in list(server.server_state.tasks):
        task.cancel()
    with anyio.move_on_after(1):
        for listener in getattr(server, "servers", ()):
            await listener.wait_closed()

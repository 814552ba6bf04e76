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
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import anyio
import orjson
from anyio.abc import TaskStatus
from pydantic import Field, SecretStr, field_validator

from .._exceptions import ConfigError, RegistryError
from ..core.config import Options, configure
from ..core.result import RunResult
from ..scheduler import Scheduler
from . import dashboard
from .metrics import RunMetrics, collector_registry, metrics_text
from .views import job_view, recent_runs, run_view

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

__all__ = [
    "HttpServer",
    "HttpServerConfig",
    "SchedulerMetrics",
    "is_loopback",
    "parse_listen",
]

logger = logging.getLogger("ductwork.ops")

_LOOPBACK_NAMES = ["localhost", "127.0.0.1", "::1", "[::1]"]
_MAX_LIMIT = 1000


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


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is this machine's loopback."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
    runs_shown: Annotated[int, Field(ge=1, le=_MAX_LIMIT)] = 20
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
        self._registry: Any = None
        self._state = "new"
        self._stop = False
        self._token_digest = (
            hashlib.sha256(self.config.token.get_secret_value().encode()).digest()
            if self.config.token is not None
            else None
        )

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
        try:
            from starlette.applications import Starlette
            from starlette.exceptions import HTTPException
            from starlette.middleware import Middleware
            from starlette.middleware.trustedhost import TrustedHostMiddleware
            from starlette.routing import Route
        except ImportError:
            raise ConfigError.for_field(
                "http", "the HTTP server needs the ops extra: pip install 'ductwork[ops]'"
            ) from None
        import prometheus_client  # noqa: F401  (fail here, not at the first scrape)

        self._registry = collector_registry(self.metrics, SchedulerMetrics(scheduler), process=True)
        hosts = self.config.allowed_hosts
        if hosts is None:
            hosts = _LOOPBACK_NAMES if is_loopback(self.host) else ["*"]

        async def http_error(request: Request, exc: Exception) -> Response:
            assert isinstance(exc, HTTPException)
            return _json({"error": exc.detail}, exc.status_code)

        routes = [
            Route("/", self._index),
            Route("/static/dashboard.css", self._stylesheet),
            Route("/static/dashboard.js", self._script),
            Route("/static/icon.svg", self._icon),
            Route("/favicon.ico", self._icon),
            Route("/jobs/{name:str}", self._job_page),
            Route("/runs/{pipeline:str}/{run_id:str}", self._run_page),
            Route("/healthz", self._healthz),
            Route("/readyz", self._readyz),
            Route("/metrics", self._metrics),
            Route("/api/jobs", self._jobs),
            Route("/api/jobs/{name:str}", self._job),
            Route("/api/jobs/{name:str}/{action:str}", self._act, methods=["POST"]),
            Route("/api/runs", self._runs),
            Route("/api/runs/{pipeline:str}/{run_id:str}", self._run),
        ]
        return Starlette(
            routes=routes,
            middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=hosts)],
            exception_handlers={HTTPException: http_error},
        )

    @property
    def scheduler(self) -> Scheduler:
        assert self._scheduler is not None
        return self._scheduler

    def _scheduler_view(self) -> dict[str, Any]:
        stats = self.scheduler.statistics()
        return {
            "state": stats.state,
            "started_at": stats.started_at.isoformat() if stats.started_at else None,
            "jobs": stats.jobs,
            "jobs_enabled": stats.jobs_enabled,
            "runs_in_flight": stats.runs_in_flight,
            "runs_started": stats.runs_started,
            "runs_succeeded": stats.runs_succeeded,
            "runs_failed": stats.runs_failed,
            "runs_cancelled": stats.runs_cancelled,
            "ticks_skipped": stats.ticks_skipped,
        }

    def _job_views(self) -> list[dict[str, Any]]:
        registry = self.scheduler.registry
        return [job_view(job, registry) for job in self.scheduler.status()]

    def _job_view(self, name: str) -> dict[str, Any] | None:
        try:
            job = self.scheduler.job_status(name)
        except RegistryError:
            return None
        return job_view(job, self.scheduler.registry)

    def _live(self, run_id: str) -> RunResult | None:
        for result in self.metrics.in_flight():
            if result.run_id == run_id:
                return result
        return None

    async def _find_run(self, pipeline: str, run_id: str) -> tuple[dict[str, Any] | None, bool]:
        live = self._live(run_id)
        if live is not None:
            record = live.to_dict()
            record["pipeline"] = pipeline
            return run_view(record), True
        if pipeline not in self.scheduler.registry:
            return None, False
        for record in await self.scheduler.registry.state.list_runs(pipeline, None):
            if record.get("run_id") == run_id:
                return run_view(record), False
        return None, False

    # --- health and metrics

    async def _healthz(self, request: Request) -> Response:
        return _json({"status": "ok"})

    async def _readyz(self, request: Request) -> Response:
        state = self.scheduler.state
        checks: dict[str, str] = {"scheduler": state}
        ready = state == "running"
        try:
            with anyio.fail_after(5):
                await self.scheduler.registry.state.list_runs("ductwork.readyz", 1)
        except Exception as exc:
            checks["state_store"] = f"unreachable: {type(exc).__name__}: {exc}"
            ready = False
        else:
            checks["state_store"] = "ok"
        body = {"status": "ready" if ready else "not ready", "checks": checks}
        return _json(body, 200 if ready else 503)

    async def _metrics(self, request: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST
        from starlette.responses import Response

        return Response(
            metrics_text(self._registry),
            media_type=CONTENT_TYPE_LATEST,
            headers={"Cache-Control": "no-store"},
        )

    # --- the API

    def _limit(self, request: Request, default: int) -> int:
        from starlette.exceptions import HTTPException

        text = request.query_params.get("limit")
        if text is None or text == "":
            return default
        try:
            limit = int(text)
        except ValueError:
            raise HTTPException(400, f"limit must be an integer, got {text!r}") from None
        if not 1 <= limit <= _MAX_LIMIT:
            raise HTTPException(400, f"limit must be between 1 and {_MAX_LIMIT}")
        return limit

    async def _jobs(self, request: Request) -> Response:
        return _json({"scheduler": self._scheduler_view(), "jobs": self._job_views()})

    async def _job(self, request: Request) -> Response:
        name = request.path_params["name"]
        view = self._job_view(name)
        if view is None:
            return _json({"error": f"no cron job named {name!r}"}, 404)
        limit = self._limit(request, self.config.runs_shown)
        view["recent_runs"] = await recent_runs(
            self.scheduler.registry.state, [view["pipeline"]], limit
        )
        return _json(view)

    async def _runs(self, request: Request) -> Response:
        limit = self._limit(request, 20)
        registry = self.scheduler.registry
        pipeline = request.query_params.get("pipeline")
        if pipeline:
            if pipeline not in registry:
                return _json({"error": f"no pipeline named {pipeline!r}"}, 404)
            names = [pipeline]
        else:
            names = [entry.name for entry in registry.list_pipelines()]
        return _json({"runs": await recent_runs(registry.state, names, limit)})

    async def _run(self, request: Request) -> Response:
        pipeline, run_id = request.path_params["pipeline"], request.path_params["run_id"]
        record, live = await self._find_run(pipeline, run_id)
        if record is None:
            return _json({"error": f"no run {run_id!r} of {pipeline!r}"}, 404)
        record["live"] = live
        return _json(record)

    def _refused(self, request: Request) -> Response | None:
        """The answer to a POST without the right token, or ``None`` when it may go on."""
        if self._token_digest is None:
            return _json(
                {
                    "error": "POST endpoints are off: the server has no token "
                    "(give one with --token or DUCTWORK_TOKEN)"
                },
                403,
            )
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        digest = hashlib.sha256(given.strip().encode()).digest()
        if scheme.lower() == "bearer" and hmac.compare_digest(digest, self._token_digest):
            return None
        return _json(
            {"error": "a valid bearer token is needed (Authorization: Bearer <token>)"},
            401,
            {"WWW-Authenticate": 'Bearer realm="ductwork"'},
        )

    async def _act(self, request: Request) -> Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        name, action = request.path_params["name"], request.path_params["action"]
        if action not in ("trigger", "enable", "disable"):
            return _json({"error": f"unknown action {action!r}: trigger, enable or disable"}, 404)
        if self._job_view(name) is None:
            return _json({"error": f"no cron job named {name!r}"}, 404)
        scheduler = self.scheduler
        try:
            if action == "trigger":
                started = scheduler.trigger(name)
            elif action == "enable":
                scheduler.enable(name)
            else:
                scheduler.disable(name)
        except RuntimeError as exc:
            return _json({"error": str(exc)}, 503)
        view = self._job_view(name)
        if action != "trigger":
            logger.info("job %s %sd through the API", name, action)
            return _json({"job": view})
        if not started:
            return _json(
                {"error": "the overlap policy skipped the run: one is still going", "job": view},
                409,
            )
        logger.info("job %s triggered through the API", name)
        return _json({"triggered": True, "job": view}, 202)

    # --- the dashboard

    async def _stylesheet(self, request: Request) -> Response:
        from starlette.responses import Response

        return Response(dashboard.STYLESHEET, media_type="text/css")

    async def _script(self, request: Request) -> Response:
        from starlette.responses import Response

        return Response(dashboard.SCRIPT, media_type="text/javascript")

    async def _icon(self, request: Request) -> Response:
        from starlette.responses import Response

        return Response(dashboard.ICON, media_type="image/svg+xml")

    async def _index(self, request: Request) -> Response:
        jobs = self._job_views()
        store = self.scheduler.registry.state
        runs = {
            pipeline: await store.list_runs(pipeline, self.config.runs_shown)
            for pipeline in {job["pipeline"] for job in jobs}
        }
        page = dashboard.index_page(jobs, runs, self._scheduler_view(), self.config.refresh_seconds)
        return _html(page)

    async def _job_page(self, request: Request) -> Response:
        name = request.path_params["name"]
        view = self._job_view(name)
        if view is None:
            return _html(
                dashboard.not_found_page(f"no cron job named {name!r}", self._scheduler_view()), 404
            )
        runs = await recent_runs(
            self.scheduler.registry.state, [view["pipeline"]], self.config.runs_shown
        )
        page = dashboard.job_page(view, runs, self._scheduler_view(), self.config.refresh_seconds)
        return _html(page)

    async def _run_page(self, request: Request) -> Response:
        pipeline, run_id = request.path_params["pipeline"], request.path_params["run_id"]
        record, live = await self._find_run(pipeline, run_id)
        if record is None:
            what = f"no run {run_id!r} of {pipeline!r}"
            return _html(dashboard.not_found_page(what, self._scheduler_view()), 404)
        page = dashboard.run_page(record, self._scheduler_view(), live, self.config.refresh_seconds)
        return _html(page)


_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
}
_CSP = (
    "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    from starlette.responses import Response

    return Response(
        orjson.dumps(body, default=str),
        status,
        headers={**_SECURITY_HEADERS, **(headers or {})},
        media_type="application/json",
    )


def _html(page: str, status: int = 200) -> Response:
    from starlette.responses import Response

    headers = {**_SECURITY_HEADERS, "Content-Security-Policy": _CSP}
    return Response(page, status, headers=headers, media_type="text/html")


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

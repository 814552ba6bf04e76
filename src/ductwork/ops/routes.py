"""The routes of the HTTP server: health, metrics, the JSON API and the dashboard's pages.

:class:`Routes` answers the requests about one scheduler; its :meth:`~Routes.app` is the
starlette application that :class:`~ductwork.ops.HttpServer` serves with uvicorn. Every answer
carries security headers (no sniffing, no caching, no referrer), and the pages a strict
Content-Security-Policy.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import orjson

from .._exceptions import ConfigError, RegistryError
from ..core.result import RunResult
from ..scheduler import Scheduler
from . import dashboard
from .auth import BearerToken
from .metrics import RunMetrics, collector_registry, metrics_text
from .views import job_view, recent_runs, run_view

if TYPE_CHECKING:
    from prometheus_client.registry import Collector
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

__all__ = ["ACTIONS", "MAX_LIMIT", "Routes"]

logger = logging.getLogger("ductwork.ops")

MAX_LIMIT = 1000
"""The most runs one request may ask for (``limit=``)."""

ACTIONS = ("trigger", "enable", "disable")
"""What ``POST /api/jobs/{name}/{action}`` may do to a job."""


@dataclass(eq=False)
class Routes:
    """The answers of the HTTP server about ``scheduler``.

    Attributes:
        scheduler: the scheduler shown and acted on.
        metrics: the runs counted for ``/metrics`` and the runs in flight.
        collectors: further prometheus-client collectors for ``/metrics``.
        token: the check of the POST endpoints' bearer token.
        runs_shown: recent runs shown per job (and the default ``limit`` of a job's runs).
        refresh_seconds: how often the dashboard refreshes itself (0: never).
    """

    scheduler: Scheduler
    metrics: RunMetrics
    collectors: Sequence[Collector]
    token: BearerToken
    runs_shown: int
    refresh_seconds: float
    _registry: Any = field(default=None, init=False, repr=False)

    def app(self, hosts: list[str]) -> Starlette:
        """The starlette application, answering requests that name one of ``hosts``.

        Raises:
            ConfigError: the ``ops`` extra is not installed.
        """
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

        self._registry = collector_registry(self.metrics, *self.collectors, process=True)
        icon = _static(dashboard.ICON, "image/svg+xml")

        async def http_error(request: Request, exc: Exception) -> Response:
            assert isinstance(exc, HTTPException)
            return _json({"error": exc.detail}, exc.status_code)

        routes = [
            Route("/", self._index),
            Route("/static/dashboard.css", _static(dashboard.STYLESHEET, "text/css")),
            Route("/static/dashboard.js", _static(dashboard.SCRIPT, "text/javascript")),
            Route("/static/icon.svg", icon),
            Route("/favicon.ico", icon),
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
        if not 1 <= limit <= MAX_LIMIT:
            raise HTTPException(400, f"limit must be between 1 and {MAX_LIMIT}")
        return limit

    async def _jobs(self, request: Request) -> Response:
        return _json({"scheduler": self._scheduler_view(), "jobs": self._job_views()})

    async def _job(self, request: Request) -> Response:
        name = request.path_params["name"]
        view = self._job_view(name)
        if view is None:
            return _json({"error": f"no cron job named {name!r}"}, 404)
        limit = self._limit(request, self.runs_shown)
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

    async def _act(self, request: Request) -> Response:
        refusal = self.token.refusal(request.headers.get("authorization", ""))
        if refusal is not None:
            return _json({"error": refusal.error}, refusal.status, refusal.headers)
        name, action = request.path_params["name"], request.path_params["action"]
        if action not in ACTIONS:
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

    async def _index(self, request: Request) -> Response:
        jobs = self._job_views()
        store = self.scheduler.registry.state
        runs = {
            pipeline: await store.list_runs(pipeline, self.runs_shown)
            for pipeline in {job["pipeline"] for job in jobs}
        }
        page = dashboard.index_page(jobs, runs, self._scheduler_view(), self.refresh_seconds)
        return _html(page)

    async def _job_page(self, request: Request) -> Response:
        name = request.path_params["name"]
        view = self._job_view(name)
        if view is None:
            return _html(
                dashboard.not_found_page(f"no cron job named {name!r}", self._scheduler_view()), 404
            )
        runs = await recent_runs(self.scheduler.registry.state, [view["pipeline"]], self.runs_shown)
        page = dashboard.job_page(view, runs, self._scheduler_view(), self.refresh_seconds)
        return _html(page)

    async def _run_page(self, request: Request) -> Response:
        pipeline, run_id = request.path_params["pipeline"], request.path_params["run_id"]
        record, live = await self._find_run(pipeline, run_id)
        if record is None:
            what = f"no run {run_id!r} of {pipeline!r}"
            return _html(dashboard.not_found_page(what, self._scheduler_view()), 404)
        page = dashboard.run_page(record, self._scheduler_view(), live, self.refresh_seconds)
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


def _static(body: str, media_type: str) -> Callable[[Request], Awaitable[Response]]:
    """An endpoint answering every request with ``body`` (a stylesheet, a script, an icon)."""

    async def endpoint(request: Request) -> Response:
        from starlette.responses import Response

        return Response(body, media_type=media_type)

    return endpoint

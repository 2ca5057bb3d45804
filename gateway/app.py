"""The app factory: `create_app(settings)` builds one self-contained gateway.

The returned ASGI app sends `/api/event/...` straight to the raw ingest endpoint (the hot
path skips routing and middleware) and everything else to a Starlette app with the admin
API, health, metrics and the OpenAPI document. All state hangs off `app.state.gateway`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, Literal, TypedDict

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import Receive, Scope, Send

from actions import DeliveryClient
from gateway.config import Settings
from gateway.http.admin import apps, deliveries, events, rules, targets
from gateway.http.admin_io import BearerAuth, JSONResponse, error_response, exception_handlers
from gateway.http.ingest import INGEST_PATH, PREFIX, IngestEndpoint
from gateway.http.openapi import Operation, openapi_document, operation
from gateway.observability.logs import ACCESS, redact_path
from gateway.runtime import Gateway, ensure_admin_token
from gateway.store import Store

access_log = logging.getLogger(ACCESS)


class Health(TypedDict):
    status: Literal["ok"]


class Ready(TypedDict):
    status: Literal["ready"]
    rules_version: str


@operation(Operation("Process is up", "operations", response=Health, admin=False))
async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


@operation(
    Operation(
        "Store reachable and rules loaded",
        "operations",
        response=Ready,
        admin=False,
        errors={503: "not_ready: the store does not answer or no rule set is loaded"},
    )
)
async def readyz(request: Request) -> Response:
    gw: Gateway = request.app.state.gateway
    try:
        await gw.store.ping()
    except Exception:
        return error_response(503, "not_ready", "the store does not answer")
    if gw.rules.loaded_at is None and gw.rules.errors:
        return error_response(503, "not_ready", "no valid rule set has been loaded")
    return JSONResponse({"status": "ready", "rules_version": gw.rules.version})


@operation(
    Operation(
        "Prometheus metrics",
        "operations",
        response={"type": "string"},
        admin=False,
        media_type="text/plain",
    )
)
async def metrics(request: Request) -> Response:
    gw: Gateway = request.app.state.gateway
    writer_stats = getattr(gw.store, "writer_stats", None)
    if writer_stats is not None:  # the SQLite writer process: its group-commit factor
        with contextlib.suppress(Exception):
            transactions, writes = await writer_stats()
            gw.metrics.set("hookgate_store_commits_total", transactions)
            gw.metrics.set("hookgate_store_writes_total", writes)
    return PlainTextResponse(gw.metrics.render(), media_type="text/plain; version=0.0.4")


@operation(Operation("This document", "operations", response={"type": "object"}, admin=False))
async def openapi(request: Request) -> Response:
    gw: Gateway = request.app.state.gateway
    return JSONResponse(openapi_document(gw.settings.base_url, documented_routes(request.app)))


def documented_routes(starlette: Starlette) -> list[tuple[str, list[str], Any]]:
    """(path, methods, endpoint) of every route the document describes: the public event
    route (served ahead of Starlette) and each Starlette route."""
    return [(INGEST_PATH, ["POST"], IngestEndpoint), *_routes(starlette.routes, "")]


def _routes(routes: list[BaseRoute], prefix: str) -> list[tuple[str, list[str], Any]]:
    """Every `Route` under `routes`, through `Mount`s (their paths prefixed)."""
    out: list[tuple[str, list[str], Any]] = []
    for route in routes:
        if isinstance(route, Route):
            out.append((prefix + route.path, sorted(route.methods or ()), route.endpoint))
        elif isinstance(route, Mount):
            out += _routes(route.routes, prefix + route.path)
    return out


class HookgateApp:
    """Outer ASGI app: ingest fast path, then Starlette, with one access-log line per
    admin request (the ingest endpoint logs its own). A request no route matched logs
    `route: null` and its path redacted: `/api/events/<token>` is an event URL with a typo."""

    def __init__(self, gateway: Gateway, starlette: Starlette) -> None:
        self.gateway = gateway
        self.starlette = starlette
        self.state = starlette.state
        self.ingest = IngestEndpoint(gateway)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(PREFIX):
            await self.ingest(scope, receive, send)
            return
        if scope["type"] != "http" or not self.gateway.settings.log.requests:
            await self.starlette(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_logged(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.starlette(scope, receive, send_logged)
        finally:
            template = route_template(scope)
            fields: dict[str, Any] = {"method": scope.get("method"), "route": template}
            if template is None:  # no route matched: the path may hold a mistyped event URL
                fields["path"] = redact_path(scope.get("path", ""))
            fields["status"] = status
            fields["latency_ms"] = round((time.perf_counter() - started) * 1000, 3)
            self.gateway.access.write("request", fields)


def route_template(scope: Scope) -> str | None:
    """The matched route's path template with its mounts' prefixes (`/v1/apps/{app_id}`),
    or None when no route matched (a bare `Mount` match is a 404 or 401 inside it)."""
    route = scope.get("route")
    if not isinstance(route, Route):
        return None
    prefix: str = scope.get("root_path", "")[len(scope.get("app_root_path", "")) :]
    return prefix + route.path


def create_app(
    settings: Settings,
    *,
    store: Store | None = None,
    http_client: DeliveryClient | None = None,
    freeze_heap: bool = False,
    metrics_dir: str | None = None,
) -> HookgateApp:
    """Build a gateway for `settings`; it starts (store, rules, dispatcher) in the lifespan.

    `freeze_heap` is for a gateway that owns its process (see `Gateway._freeze_heap`);
    `metrics_dir` for one of a group whose `/metrics` totals the group's
    (`gateway.observability.metrics`)."""
    gateway = Gateway(
        settings,
        store=store,
        http_client=http_client,
        freeze_heap=freeze_heap,
        metrics_dir=metrics_dir,
    )
    admin_token, _ = ensure_admin_token(settings)

    console = None
    if settings.console.enabled:
        from gateway.http.console import build_console

        console = build_console(gateway, admin_token)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gateway.start()
        if console is not None:
            console.sampler.start()
        try:
            yield
        finally:
            if console is not None:
                await console.sampler.stop()
            await gateway.stop()

    v1 = [*apps.routes, *events.routes, *targets.routes, *deliveries.routes, *rules.routes]
    token = admin_token.encode()
    routes: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Mount("/v1", routes=v1, middleware=[Middleware(BearerAuth, token=token, routes=v1)]),
    ]
    if console is not None:
        routes.append(console.mount)
    starlette = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers=exception_handlers(),
    )
    starlette.state.gateway = gateway
    return HookgateApp(gateway, starlette)


def create_app_from_env() -> HookgateApp:
    """Factory for `uvicorn --factory` with several workers: settings from the environment
    (and `$HOOKGATE_CONFIG`), as every worker process must build its own app, and the
    group's metrics directory that `gateway.http.serving.serve` made."""
    import os

    from gateway.config import load_settings
    from gateway.http.serving import METRICS_DIR_ENV
    from gateway.observability.logs import configure_logging

    settings = load_settings()
    configure_logging(settings.log.level)
    return create_app(settings, freeze_heap=True, metrics_dir=os.environ.get(METRICS_DIR_ENV))

"""The ASGI app: the collector's routes, an admin API behind a bearer token, a health check.

    app = create_app(settings)                      # what `journeymap serve` runs
    app = create_app(settings, faults=Faults())     # tests: inject 500s

Every error has one JSON shape, ``{"code", "message", "detail"}`` (tests/test_collector.py pins
it), whatever raised it: the collector's own errors, FastAPI's validation errors, unknown
routes, unexpected exceptions (500, logged). The collector's routes are plain Starlette
routes (no dependency injection or body models on the hot path); the admin API is FastAPI.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from journeymap.collect.collector import Collector, CollectorConfig, Faults
from journeymap.collect.errors import CollectorError
from journeymap.collect.loader import InboxLoader, LoaderThread
from journeymap.config import Settings
from journeymap.orchestration.runtime import CampaignRuntime
from journeymap.storage.db import OperationalDB, database_url
from journeymap.storage.lake import DeltaEventStore

log = logging.getLogger(__name__)


def error_response(
    status: int,
    code: str,
    message: str,
    detail: Any = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """The one error shape of the server."""
    return JSONResponse(
        {"code": code, "message": message, "detail": detail}, status_code=status, headers=headers
    )


def collector_error_response(
    exc: CollectorError, headers: dict[str, str] | None = None
) -> JSONResponse:
    out = dict(headers or {})
    if exc.retry_after is not None:
        out["Retry-After"] = str(exc.retry_after)
    return error_response(exc.status, exc.code, exc.message, exc.detail, out)


@dataclass
class ServerState:
    """What the routes share (``app.state.jm``)."""

    settings: Settings
    db: OperationalDB
    store: DeltaEventStore
    collector: Collector
    loader: InboxLoader
    admin_token: str | None
    cors_origins: frozenset[str]
    #: campaigns, channels and tracking of the project (built lazily from the settings)
    campaigns: CampaignRuntime
    loader_thread: LoaderThread | None = None
    owns_db: bool = False

    def allowed_origin(self, origin: str | None) -> str | None:
        if not origin:
            return None
        if "*" in self.cors_origins or origin in self.cors_origins:
            return origin
        return None


def read_admin_token(settings: Settings) -> str | None:
    path = settings.admin_token_file
    if not path.exists():
        return None
    token = path.read_text(encoding="utf-8").strip()
    return token or None


def create_app(
    settings: Settings,
    *,
    db: OperationalDB | None = None,
    store: DeltaEventStore | None = None,
    admin_token: str | None = None,
    faults: Faults | None = None,
    loader_interval: float | None = None,
    campaigns: CampaignRuntime | None = None,
) -> FastAPI:
    """The server for the project of ``settings``.

    ``db`` and ``store`` default to the ones the settings name (the app then opens and closes
    the database); ``admin_token`` defaults to the content of ``admin_token_file`` (no file:
    the admin API answers 403); ``loader_interval`` overrides ``loader_interval_seconds``;
    ``campaigns`` replaces the campaign runtime (tests: a fake clock, channels of their own).
    """
    from journeymap.server.admin_routes import admin_router
    from journeymap.server.campaign_routes import add_campaign_routes
    from journeymap.server.collector_routes import add_collector_routes
    from journeymap.server.decide_routes import add_decide_routes

    owns_db = db is None
    database = db or OperationalDB(database_url(settings.database, settings.project_dir))
    lake = store or DeltaEventStore(settings.lake)
    config = CollectorConfig(
        max_request_bytes=settings.collector_max_request_bytes,
        max_message_bytes=settings.collector_max_message_bytes,
        rate_limit=settings.collector_rate_limit,
        max_queued_events=settings.collector_max_queued_events,
    )
    state = ServerState(
        settings=settings,
        db=database,
        store=lake,
        collector=Collector(database, config, faults=faults),
        loader=InboxLoader(
            database,
            lake,
            batch_size=settings.loader_batch_size,
            default_currency=settings.currency,
            retention_days=settings.inbox_retention_days,
        ),
        admin_token=admin_token if admin_token is not None else read_admin_token(settings),
        cors_origins=frozenset(o.strip() for o in settings.cors_origins.split(",") if o.strip()),
        campaigns=campaigns or CampaignRuntime.open(settings, database),
        owns_db=owns_db,
    )
    interval = settings.loader_interval_seconds if loader_interval is None else loader_interval

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.collector.registry.reload()
        if interval > 0:
            state.loader_thread = LoaderThread(state.loader, interval)
            state.loader_thread.start()
        try:
            yield
        finally:
            if state.loader_thread is not None:
                state.loader_thread.stop()
            if state.owns_db:
                state.db.close()

    app = FastAPI(
        title="journeymap",
        lifespan=lifespan,
        docs_url="/admin/docs",
        openapi_url="/admin/openapi.json",
        redoc_url=None,
    )
    app.state.jm = state
    # never redirect (segment-python treats a 3xx as an error): /v1/batch/ is simply a 404
    app.router.redirect_slashes = False

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized"}.get(
            exc.status_code, "http_error"
        )
        return error_response(
            exc.status_code,
            code,
            str(exc.detail),
            {"path": request.url.path},
            dict(exc.headers or {}),
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        return error_response(
            400, "invalid_request", "the request does not match the API", exc.errors()
        )

    @app.exception_handler(CollectorError)
    async def _collector_error(request: Request, exc: CollectorError) -> Response:
        return collector_error_response(exc)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(
            500, "internal_error", "unexpected server error; see the server log", None
        )

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    add_collector_routes(app, state)
    add_decide_routes(app, state)
    add_campaign_routes(app, state)
    app.include_router(admin_router(state))
    return app

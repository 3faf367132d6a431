"""The HTTP app: assembles the route families, CORS, the HTTP-record middleware and the error handlers.

One port serves both modes (docs/PROTOCOL.md §1). Every error is `{"detail": "<what to do>"}`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from mock_server.config import SERVER_VERSION, VERSION, Settings
from mock_server.errors import ServiceError
from mock_server.metrics import Metrics
from mock_server.model.commands import COMMANDS
from mock_server.routes import (
    admin,
    clips,
    coordinator,
    docs,
    faults,
    inspector,
    local,
    metrics,
    transport,
    uploads,
)
from mock_server.routes.body_guard import BodyGuard
from mock_server.routes.errors import client_gone, http_error
from mock_server.routes.http_record import HttpRecord
from mock_server.services.admin_guard import CORS_ALLOW_HEADERS, cors_applies
from mock_server.services.registry import Registry
from mock_server.transport.ice import restrict_host_addresses

log = logging.getLogger("helios_mock.http")


class ClientCorsMiddleware(CORSMiddleware):
    """CORS (`*`) for the client-facing routes only: admin paths are passed through without CORS headers,
    so a browser page of another origin can neither preflight nor read them."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not cors_applies(scope["path"]):
            await self.app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings) -> FastAPI:
    registry = Registry(settings, metrics=Metrics(version=VERSION, command_names=COMMANDS))
    if settings.ice_addresses:
        restrict_host_addresses(list(settings.ice_addresses))  # process-wide: aioice's host addresses

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        log.info(
            "helios-mock ready: fps %g, speed %g, native size %dx%d, mode %s",
            settings.fps,
            settings.speed,
            *settings.native_size,
            settings.mode,
        )
        lag_watch = registry.metrics.start_loop_watch()
        registry.start_media()
        await _prime_routes(app)
        yield
        await registry.shutdown()
        await Metrics.stop_loop_watch(lag_watch)

    app = FastAPI(
        title="helios-mock",
        version=SERVER_VERSION,
        lifespan=lifespan,
        description="Reactor platform + Helios model mock: HTTP signalling API",
        docs_url=None,  # /docs is served from routes/docs.py with local assets (works offline)
        redoc_url=None,
    )
    app.state.registry = registry
    app.state.metrics = registry.metrics
    app.add_middleware(
        ClientCorsMiddleware,
        allow_origins=["*"],
        allow_methods=["GET", "POST", "PUT", "DELETE", "OPTIONS"],
        allow_headers=list(CORS_ALLOW_HEADERS),
        expose_headers=["Retry-After"],
    )
    app.add_middleware(BodyGuard, settings=settings)  # inside the record middleware: refusals are recorded
    app.add_middleware(HttpRecord)
    app.add_exception_handler(ServiceError, _service_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, http_error)  # type: ignore[arg-type]
    app.add_exception_handler(ClientDisconnect, client_gone)
    app.add_exception_handler(RequestValidationError, _invalid_request)  # type: ignore[arg-type]
    for family in (local, coordinator, transport, uploads, admin, faults, metrics, docs, inspector, clips):
        app.include_router(family.router)
    app.include_router(admin.socket_router)
    return app


async def _prime_routes(app: FastAPI) -> None:
    """Send one request that matches no route through the whole app, in process, before the first client.

    Starlette builds the middleware stack on the first request, and FastAPI each router's route table on
    the first request that reaches it (tens of ms for the transport family on 2 cores); without this the
    first client of a fresh mock paid for both inside its connect() (docs/DECISIONS.md, "Route tables are
    built at start-up"). The path is an admin path, so nothing is recorded; the answer (a 404) is dropped."""
    scope: Scope = {
        "type": "http",
        "method": "GET",
        "path": "/admin/helios-mock-prime",
        "raw_path": b"/admin/helios-mock-prime",
        "root_path": "",
        "query_string": b"",
        "headers": [],
        "http_version": "1.1",
        "scheme": "http",
        "server": ("127.0.0.1", 0),
        "client": ("127.0.0.1", 0),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(_: Any) -> None:
        return None

    await app(scope, receive, send)


async def _service_error(request: Request, exc: ServiceError) -> JSONResponse:
    log.info("%s %s -> %d: %s", request.method, request.url.path, exc.status, exc.detail)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status, headers=exc.headers)


async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    log.info("%s %s -> 422: %s", request.method, request.url.path, exc.errors())
    return JSONResponse({"detail": _plain_errors(exc)}, status_code=422)


def _plain_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()))
        out.append(
            {"loc": list(err.get("loc", ())), "msg": f"{loc}: {err.get('msg')}", "type": err.get("type")}
        )
    return out

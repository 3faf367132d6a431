"""The HTTP app: assembles the route families, CORS, the HTTP-record middleware and the error handlers.

One port serves both modes (PROTOCOL.md §1). Every error is `{"detail": "<what to do>"}`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response

from mock_server.config import SERVER_VERSION, Settings
from mock_server.errors import ServiceError
from mock_server.routes import admin, coordinator, faults, local, transport, uploads
from mock_server.services.admin import note_http, session_for_path
from mock_server.services.registry import Registry
from mock_server.transport.ice import restrict_host_addresses

log = logging.getLogger("helios_mock.http")

CORS_HEADERS = [
    "Authorization",
    "Content-Type",
    "Reactor-API-Version",
    "Reactor-API-Accept-Version",
    "Reactor-WebRTC-Version",
    "Reactor-API-Key",
]


def create_app(settings: Settings) -> FastAPI:
    registry = Registry(settings)
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
        yield
        await registry.shutdown()

    app = FastAPI(
        title="helios-mock",
        version=SERVER_VERSION,
        lifespan=lifespan,
        description="Reactor platform + Helios model mock: HTTP signalling API",
    )
    app.state.registry = registry
    app.add_middleware(
        CORSMiddleware,
        allow_origins=["*"],
        allow_methods=["GET", "POST", "PUT", "DELETE", "OPTIONS"],
        allow_headers=CORS_HEADERS,
        expose_headers=["Retry-After"],
    )
    app.middleware("http")(_record_http)
    app.add_exception_handler(ServiceError, _service_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _invalid_request)  # type: ignore[arg-type]
    for family in (local, coordinator, transport, uploads, admin, faults):
        app.include_router(family.router)
    return app


async def _record_http(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    """Record every answered request in the record of the session it is about (or as unbound)."""
    registry: Registry = request.app.state.registry
    path = request.url.path
    session_before = session_for_path(registry, path)
    response = await call_next(request)
    session = session_before or session_for_path(registry, path)
    note_http(registry, session, request.method, path, response.status_code)
    return response


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

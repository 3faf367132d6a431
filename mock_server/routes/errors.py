"""HTTP error shapes: the `{detail}` model and per-route error declarations for OpenAPI, and the handlers
for a wrong method (405 with the path's true `Allow`) and a client that went away mid-request."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

log = logging.getLogger("helios_mock.http")

HTTP_METHODS = {"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"}
CLIENT_GONE = 499  # nginx's "client closed request": recorded, never seen by the client


class ErrorDetail(BaseModel):
    """Every error answer: what went wrong, in words a person can act on (422: a list of field errors)."""

    detail: str | list[dict[str, Any]] = Field(description="what went wrong and what to do about it")


WHY = {
    400: "bad request: the detail says which value is wrong",
    401: "missing, empty or expired bearer token / API key; or a missing or wrong admin token",
    403: "refused: expired upload or clip URL, a forged clip URL, a token's session quota is spent, "
    "or an admin route called cross-origin",
    404: "unknown session, connection, upload or model; or this mode's routes are off",
    405: "method not allowed on this path (the Allow header lists the allowed ones)",
    408: "the request body did not arrive in time (body_read_timeout)",
    409: "conflict: the upload was already filled, or a per-session limit is reached",
    410: "gone: the recording no longer holds this chunk (retention, or the clip links expired)",
    413: "too large: request body, upload size, or a per-connection count limit",
    422: "unprocessable: the body does not validate, or nests too deeply (max_json_depth)",
    429: "rate or concurrency limit reached; retry after Retry-After seconds",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: each status it can answer, with the `{detail}` schema."""
    return {status: {"model": ErrorDetail, "description": WHY[status]} for status in statuses}


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app serves on this request's path (from the OpenAPI paths)."""
    table = getattr(request.app.state, "method_table", None)
    if table is None:
        table = [
            (compile_path(path)[0], {m.upper() for m in ops if m.upper() in HTTP_METHODS})
            for path, ops in request.app.openapi().get("paths", {}).items()
        ]
        request.app.state.method_table = table
    methods: set[str] = set()
    for pattern, path_methods in table:
        if pattern.match(request.url.path):
            methods |= path_methods
    return sorted(methods)


async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
    """Starlette's own errors as `{detail}`; a 405 names every method the path allows."""
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        allowed = allowed_methods(request)
        headers["Allow"] = ", ".join(allowed)
        detail = f"{request.method} is not allowed on {request.url.path}; use {' or '.join(allowed)}"
    else:
        detail = str(exc.detail)
    return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=headers)


async def client_gone(request: Request, _: Exception) -> Response:
    """A client that closed its connection mid-request: one log line, no traceback."""
    log.info(
        "%s %s: the client closed the connection before its body arrived", request.method, request.url.path
    )
    return Response(status_code=CLIENT_GONE)

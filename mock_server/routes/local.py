"""Local runtime routes (docs/PROTOCOL.md §1): /start_session, /session, /stop_session, /health, /schema."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from mock_server.routes.bodies import json_body
from mock_server.routes.deps import LOCAL_ONLY, RegistryDep
from mock_server.routes.errors import errors

router = APIRouter(tags=["local"])


@router.post("/start_session", dependencies=[LOCAL_ONLY], responses=errors(400, 404, 408, 413, 422))
async def start_session(request: Request, registry: RegistryDep) -> dict[str, Any]:
    session = await registry.start_local(await json_body(request))
    return registry.descriptor(session)


@router.get("/session", dependencies=[LOCAL_ONLY], responses=errors(404))
async def get_session(registry: RegistryDep) -> dict[str, Any]:
    return registry.descriptor(registry.local)


@router.post("/stop_session", dependencies=[LOCAL_ONLY], responses=errors(400, 404, 408, 409, 413, 422))
async def stop_session(request: Request, registry: RegistryDep) -> Response:
    body = await json_body(request)
    await registry.stop_local(body.get("reason"))
    return JSONResponse(None)


@router.get("/health")
async def health(registry: RegistryDep) -> dict[str, Any]:
    return registry.health()


@router.get("/schema")
async def schema(registry: RegistryDep) -> dict[str, Any]:
    return registry.schema

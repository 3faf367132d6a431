"""Production coordinator routes (docs/PROTOCOL.md §1): /tokens and /sessions."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Header, Request

from mock_server.routes.bodies import json_body
from mock_server.routes.deps import PRODUCTION_ONLY, RegistryDep
from mock_server.routes.errors import errors
from mock_server.services.tokens import api_key_from_headers

router = APIRouter(tags=["production"], dependencies=[PRODUCTION_ONLY])


@router.post("/tokens", responses=errors(400, 401, 403, 404, 408, 413, 422))
async def mint_token(request: Request, registry: RegistryDep) -> dict[str, Any]:
    """Mint a JWT for the `Reactor-API-Key` account; the body may scope it (`authorization_details`)."""
    return registry.mint_token(api_key_from_headers(request.headers), await json_body(request))


@router.get("/tokens", responses=errors(401, 403, 404))
async def mint_unscoped_token(request: Request, registry: RegistryDep) -> dict[str, Any]:
    """Mint an unscoped JWT for the `Reactor-API-Key` account (what `GET /tokens` clients expect)."""
    return registry.mint_token(api_key_from_headers(request.headers), None)


@router.post("/sessions", status_code=201, responses=errors(400, 401, 403, 404, 408, 413, 422, 429))
async def create_session(
    request: Request, registry: RegistryDep, authorization: str | None = Header(default=None)
) -> dict[str, Any]:
    session = await registry.create_session(authorization, await json_body(request))
    return registry.descriptor(session)


@router.get("/sessions/{session_id}", responses=errors(401, 403, 404))
async def get_production_session(
    session_id: str, registry: RegistryDep, authorization: str | None = Header(default=None)
) -> dict[str, Any]:
    return registry.descriptor(registry.production_session(session_id, authorization))


@router.delete("/sessions/{session_id}", responses=errors(401, 403, 404))
async def delete_session(
    session_id: str, registry: RegistryDep, authorization: str | None = Header(default=None)
) -> dict[str, Any]:
    await registry.delete_session(session_id, authorization)
    return {}

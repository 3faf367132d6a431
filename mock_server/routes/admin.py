"""Admin routes the conformance harness reads: the record, a transcript, a live follow, client-rule verdicts,
and reset."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from fastapi import APIRouter, Query, WebSocket, WebSocketDisconnect

from mock_server.errors import ServiceError
from mock_server.routes.deps import ADMIN_ONLY, RegistryDep, SocketRegistryDep, admin_socket_allowed
from mock_server.routes.errors import errors
from mock_server.services import admin, verdicts
from mock_server.services.admin_guard import WS_POLICY_VIOLATION

log = logging.getLogger("helios_mock.http")

# HTTP routes (the admin guard answers 401/403 on each); the WebSocket checks itself
router = APIRouter(tags=["admin"], dependencies=[ADMIN_ONLY], responses=errors(401, 403))
socket_router = APIRouter(tags=["admin"])


@router.get("/admin/record")
async def admin_record(registry: RegistryDep) -> dict[str, Any]:
    return admin.record(registry)


@router.get("/admin/sessions/{session_id}/transcript", responses=errors(404))
async def admin_transcript(session_id: str, registry: RegistryDep) -> dict[str, Any]:
    return admin.transcript(registry, session_id)


IGNORE = Query(
    default=[],
    description="rule ids not to report (repeat or comma-separate): the pytest plugin's helios_lenient(*ids)",
)
ONLY = Query(default=[], description="report only these rule ids (default: every rule, i.e. strict mode)")
PING_TOLERANCE = Query(
    default=verdicts.DEFAULT_PING_TOLERANCE,
    description=f"scale of the documented keep-alive intervals (1 to {verdicts.MAX_PING_TOLERANCE:g})",
)


@router.get("/admin/violations", responses=errors(400, 422))
async def admin_violations(
    registry: RegistryDep,
    ignore: list[str] = IGNORE,
    only: list[str] = ONLY,
    ping_tolerance: float = PING_TOLERANCE,
) -> dict[str, Any]:
    """Client-rule violations in every recorded session (conformance.client_rules), in time order."""
    return verdicts.violations(registry, ignore=ignore, only=only, ping_tolerance=ping_tolerance)


@router.get("/admin/sessions/{session_id}/violations", responses=errors(400, 404, 422))
async def admin_session_violations(
    session_id: str,
    registry: RegistryDep,
    ignore: list[str] = IGNORE,
    only: list[str] = ONLY,
    ping_tolerance: float = PING_TOLERANCE,
) -> dict[str, Any]:
    """Client-rule violations in the latest session with this id."""
    return verdicts.violations(registry, session_id, ignore=ignore, only=only, ping_tolerance=ping_tolerance)


@router.get("/admin/rules")
async def admin_rules() -> dict[str, str]:
    """Every client rule id and what it means."""
    return verdicts.rule_texts()


@socket_router.websocket("/admin/sessions/{session_id}/live")
async def admin_live(websocket: WebSocket, session_id: str, registry: SocketRegistryDep) -> None:
    try:
        admin_socket_allowed(websocket, registry)
    except ServiceError as exc:
        log.info("WS %s refused (%d): %s", websocket.url.path, exc.status, exc.detail)
        await websocket.close(code=WS_POLICY_VIOLATION, reason="admin access refused")
        return
    await websocket.accept()
    session = admin.live_session(registry, session_id)
    if session is None:
        await websocket.send_json({"error": f"no running session {session_id!r}"})
        await websocket.close(code=4404)
        return
    try:
        async with contextlib.aclosing(admin.follow(session)) as items:
            async for item in items:
                await websocket.send_json(item)
        await websocket.close()
    except WebSocketDisconnect:
        pass


@router.post("/admin/reset")
async def admin_reset(registry: RegistryDep) -> dict[str, Any]:
    await registry.reset()
    return {}

"""HTTP routes: local runtime routes, production coordinator routes, transport signalling, uploads, admin.

One port serves both modes (PROTOCOL.md §1). Every error is `{"detail": "<what to do>"}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Header, Request, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from mock_server.config import SERVER_VERSION, Settings
from mock_server.errors import ApiError, ServiceError
from mock_server.services.registry import LOCAL_ID, Registry
from mock_server.session.session import Session
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


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow")


class TrackMapping(_Body):
    mid: str | int | None = None
    name: str
    kind: str = "video"
    direction: str = "recvonly"


class SdpOffer(_Body):
    sdp_offer: str = Field(description="The client's SDP offer")
    client_info: dict[str, Any] = Field(default_factory=dict)
    track_mapping: list[TrackMapping] = Field(default_factory=list)


class IceCandidate(_Body):
    candidate: str
    sdp_mid: str | None = None
    sdp_mline_index: int | None = None


class IceCandidates(_Body):
    candidates: list[IceCandidate] = Field(default_factory=list)
    is_final: bool = False


class UploadRequest(_Body):
    name: str
    size: int
    mime_type: str = "application/octet-stream"


async def _json_body(request: Request) -> dict[str, Any]:
    """Lenient body for routes whose clients send `{}`, `null` or nothing."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise ApiError(400, "request body is not valid JSON") from None
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise ApiError(400, "request body must be a JSON object")
    return body


def create_app(settings: Settings) -> FastAPI:
    registry = Registry(settings)
    if settings.ice_addresses:
        restrict_host_addresses(list(settings.ice_addresses))

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

    @app.exception_handler(ServiceError)
    async def _api_error(request: Request, exc: ServiceError) -> JSONResponse:
        log.info("%s %s -> %d: %s", request.method, request.url.path, exc.status, exc.detail)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        log.info("%s %s -> 422: %s", request.method, request.url.path, exc.errors())
        return JSONResponse({"detail": _plain_errors(exc)}, status_code=422)

    @app.middleware("http")
    async def _record_http(request: Request, call_next: Any) -> Response:
        session_before = _session_for_path(registry, request.url.path)
        response = await call_next(request)
        session = session_before or _session_for_path(registry, request.url.path)
        if session is not None:
            session.record.add(
                "http", f"{request.method} {request.url.path}", body={"status": response.status_code}
            )
        elif not request.url.path.startswith("/admin"):
            registry.unbound_http.append(
                {
                    "method": request.method,
                    "path": request.url.path,
                    "status": response.status_code,
                    "t": round(time.time(), 3),
                }
            )
        return response

    # ------------------------------------------------------------------ local mode

    local_enabled = settings.mode in ("local", "both")
    production_enabled = settings.mode in ("production", "both")

    def _need(enabled: bool, what: str) -> None:
        if not enabled:
            raise ApiError(404, f"{what} routes are off (server started with --mode {settings.mode})")

    @app.post("/start_session", tags=["local"])
    async def start_session(request: Request) -> dict[str, Any]:
        _need(local_enabled, "local-mode")
        session = await registry.start_local(await _json_body(request))
        return registry.descriptor(session)

    @app.get("/session", tags=["local"])
    async def get_session() -> dict[str, Any]:
        _need(local_enabled, "local-mode")
        return registry.descriptor(registry.local)

    @app.post("/stop_session", tags=["local"])
    async def stop_session(request: Request) -> Response:
        _need(local_enabled, "local-mode")
        body = await _json_body(request)
        reason = str(body.get("reason") or "session stopped by the client")[:64]
        await registry.stop_local(reason)
        return JSONResponse(None)

    @app.get("/health", tags=["local"])
    async def health() -> dict[str, Any]:
        serving = bool(registry.sessions)
        return {
            "status": "healthy",
            "state": "serving" if serving else "available",
            "model": "helios",
            "detail": None,
        }

    @app.get("/schema", tags=["local"])
    async def schema() -> dict[str, Any]:
        return registry.schema

    # ------------------------------------------------------------------ production mode

    @app.post("/tokens", tags=["production"])
    async def tokens(request: Request, reactor_api_key: str | None = Header(default=None)) -> dict[str, Any]:
        _need(production_enabled, "production-mode")
        return registry.mint_token(reactor_api_key, await _json_body(request))

    @app.post("/sessions", status_code=201, tags=["production"])
    async def create_session(
        request: Request, authorization: str | None = Header(default=None)
    ) -> dict[str, Any]:
        _need(production_enabled, "production-mode")
        session = await registry.create_session(authorization, await _json_body(request))
        session.record.add("http", "POST /sessions", body={"status": 201})
        return registry.descriptor(session)

    @app.get("/sessions/{session_id}", tags=["production"])
    async def get_production_session(
        session_id: str, authorization: str | None = Header(default=None)
    ) -> dict[str, Any]:
        _need(production_enabled, "production-mode")
        return registry.descriptor(registry.production_session(session_id, authorization))

    @app.delete("/sessions/{session_id}", tags=["production"])
    async def delete_session(
        session_id: str, authorization: str | None = Header(default=None)
    ) -> dict[str, Any]:
        _need(production_enabled, "production-mode")
        await registry.delete_session(session_id, authorization)
        return {}

    # ------------------------------------------------------------------ transport signalling

    base = "/sessions/{session_id}/transport/webrtc"

    @app.get(base + "/ice_servers", tags=["transport"])
    async def ice_servers(
        session_id: str, authorization: str | None = Header(default=None)
    ) -> dict[str, Any]:
        registry.running(session_id, authorization)
        return {"ice_servers": []}

    @app.post(base + "/sdp_params", status_code=202, tags=["transport"])
    @app.put(base + "/sdp_params", status_code=202, tags=["transport"])
    async def legacy_offer(
        session_id: str, offer: SdpOffer, authorization: str | None = Header(default=None)
    ) -> dict[str, Any]:
        session = registry.running(session_id, authorization)
        mapping = [t.model_dump() for t in offer.track_mapping]
        await session.signalling.offer(None, offer.sdp_offer, mapping, offer.client_info, legacy=True)
        return {"connection_id": 1001}

    @app.get(base + "/sdp_params", tags=["transport"])
    async def legacy_answer(session_id: str, authorization: str | None = Header(default=None)) -> Response:
        poll = registry.running(session_id, authorization).signalling.answer(None, legacy=True)
        return JSONResponse(poll.body, status_code=poll.status)

    @app.post(base + "/connections", status_code=201, tags=["transport"])
    async def register(
        session_id: str, request: Request, authorization: str | None = Header(default=None)
    ) -> dict[str, Any]:
        session = registry.running(session_id, authorization)
        await _json_body(request)
        return {"connection_id": session.signalling.register().id}

    @app.post(base + "/connections/{connection_id}/ice_candidates", status_code=202, tags=["transport"])
    async def trickle(
        session_id: str,
        connection_id: int,
        body: IceCandidates,
        authorization: str | None = Header(default=None),
    ) -> dict[str, Any]:
        session = registry.running(session_id, authorization)
        candidates = [c.model_dump() for c in body.candidates]
        await session.signalling.trickle(connection_id, candidates, body.is_final)
        return {}

    @app.post(base + "/connections/{connection_id}/sdp_params", status_code=202, tags=["transport"])
    @app.put(base + "/connections/{connection_id}/sdp_params", status_code=202, tags=["transport"])
    async def connection_offer(
        session_id: str, connection_id: int, offer: SdpOffer, authorization: str | None = Header(default=None)
    ) -> dict[str, Any]:
        session = registry.running(session_id, authorization)
        mapping = [t.model_dump() for t in offer.track_mapping]
        signalling = session.signalling
        await signalling.offer(connection_id, offer.sdp_offer, mapping, offer.client_info, legacy=False)
        return {"connection_id": connection_id}

    @app.get(base + "/connections/{connection_id}/sdp_params", tags=["transport"])
    async def connection_answer(
        session_id: str, connection_id: int, authorization: str | None = Header(default=None)
    ) -> Response:
        signalling = registry.running(session_id, authorization).signalling
        poll = signalling.answer(connection_id, legacy=False)
        return JSONResponse(poll.body, status_code=poll.status)

    # ------------------------------------------------------------------ uploads

    @app.post("/sessions/{session_id}/uploads", status_code=201, tags=["uploads"])
    async def create_upload(
        session_id: str,
        body: UploadRequest,
        request: Request,
        authorization: str | None = Header(default=None),
    ) -> dict[str, Any]:
        session = registry.running(session_id, authorization)
        upload = session.uploads.create(body.name, body.mime_type, body.size)
        url = f"{str(request.base_url).rstrip('/')}/uploads/{upload.presigned_id}"
        return {
            "presigned_id": upload.presigned_id,
            "presigned_url": url,
            "path": f"uploads/{upload.presigned_id}",
        }

    @app.put("/uploads/{presigned_id}", tags=["uploads"])
    async def put_upload(presigned_id: str, request: Request) -> dict[str, Any]:
        session = registry.upload_owner(presigned_id)
        await session.uploads.fill(presigned_id, request.body)
        return {}

    # ------------------------------------------------------------------ admin

    @app.get("/admin/record", tags=["admin"])
    async def admin_record() -> dict[str, Any]:
        return {
            "sessions": [_admin_view(s) for s in registry.all_sessions()],
            "http": list(registry.unbound_http),  # requests tied to no session (e.g. POST /tokens)
        }

    @app.get("/admin/sessions/{session_id}/transcript", tags=["admin"])
    async def admin_transcript(session_id: str) -> dict[str, Any]:
        matches = [s for s in registry.all_sessions() if s.id == session_id]
        if not matches:
            raise ApiError(404, f"unknown session {session_id!r}")
        return matches[-1].record.to_json()

    @app.websocket("/admin/sessions/{session_id}/live")
    async def admin_live(websocket: WebSocket, session_id: str) -> None:
        await websocket.accept()
        session = registry.sessions.get(session_id) or (registry.local if session_id == LOCAL_ID else None)
        if session is None:
            await websocket.send_json({"error": f"no running session {session_id!r}"})
            await websocket.close(code=4404)
            return
        queue = session.record.subscribe()
        try:
            for entry in list(session.record.entries):
                await websocket.send_json(entry.to_json())
            while not session.closed:
                try:
                    item = await asyncio.wait_for(queue.get(), timeout=1.0)
                except TimeoutError:
                    continue
                await websocket.send_json(item)
            await websocket.close()
        except WebSocketDisconnect:
            pass
        finally:
            session.record.unsubscribe(queue)

    @app.post("/admin/reset", tags=["admin"])
    async def admin_reset() -> dict[str, Any]:
        await registry.reset()
        return {}

    return app


def _session_for_path(registry: Registry, path: str) -> Session | None:
    if path in ("/start_session", "/stop_session", "/session"):
        return registry.local
    parts = path.strip("/").split("/")
    if len(parts) >= 2 and parts[0] == "sessions":
        if parts[1] == LOCAL_ID:
            return registry.local
        return registry.sessions.get(parts[1]) or registry.closed.get(parts[1])
    return None


def _admin_view(session: Session) -> dict[str, Any]:
    entries = list(session.record.entries)
    commands = []
    for entry in entries:
        if entry.kind == "CommandIn" and isinstance(entry.body, dict):
            commands.append(
                {
                    "connection_id": entry.connection_id,
                    "type": entry.body.get("type"),
                    "chunk": entry.chunk,
                    "t": round(entry.t, 4),
                }
            )
    return {
        "session_id": session.id,
        "mode": session.mode,
        "closed": session.closed,
        "close_reason": session.close_reason,
        "chunks_generated": session.chunks_generated,
        "connections": [c.describe() for c in session.connections.values()],
        "rejections": [r.to_json() for r in session.record.rejections],
        "http": [
            {
                "method": e.kind.split(" ", 1)[0],
                "path": e.kind.split(" ", 1)[1],
                "status": (e.body or {}).get("status"),
                "t": round(e.t, 4),
            }
            for e in entries
            if e.direction == "http"
        ],
        "commands": commands,
        "entries": [e.to_json() for e in entries],  # the transcript, for conformance.client_rules
    }


def _plain_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()))
        out.append(
            {"loc": list(err.get("loc", ())), "msg": f"{loc}: {err.get('msg')}", "type": err.get("type")}
        )
    return out

"""WebRTC signalling routes under /sessions/{id}/transport/webrtc (docs/PROTOCOL.md §4).

The flat `sdp_params` route is the legacy default connection (JS 2.9.0); the per-connection routes serve
registered connections. The session's signalling part chooses the connection and answers.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse, Response

from mock_server.routes.bodies import IceCandidates, SdpOffer, json_body
from mock_server.routes.deps import RegistryDep
from mock_server.routes.errors import errors
from mock_server.session.signalling import LEGACY_CONNECTION_ID, AnswerPoll

BASE = "/sessions/{session_id}/transport/webrtc"

router = APIRouter(prefix=BASE, tags=["transport"])


def _answer(poll: AnswerPoll) -> Response:
    """200 with the answer, or 202 with an empty body while it is not ready (as the real runtime)."""
    if poll.status == 202:
        return Response(status_code=202)
    return JSONResponse(poll.body, status_code=poll.status)


@router.get("/ice_servers", responses=errors(400, 401, 403, 404))
async def ice_servers(
    session_id: str, registry: RegistryDep, authorization: str | None = Header(default=None)
) -> dict[str, Any]:
    registry.running(session_id, authorization)
    return {"ice_servers": []}


@router.post("/sdp_params", status_code=202, responses=errors(400, 401, 403, 404, 408, 409, 413, 422))
@router.put("/sdp_params", status_code=202, responses=errors(400, 401, 403, 404, 408, 409, 413, 422))
async def legacy_offer(
    session_id: str, offer: SdpOffer, registry: RegistryDep, authorization: str | None = Header(default=None)
) -> dict[str, Any]:
    session = registry.running(session_id, authorization)
    await session.signalling.offer(None, offer.sdp_offer, offer.mapping(), offer.client_info, legacy=True)
    return {"connection_id": LEGACY_CONNECTION_ID}


@router.get("/sdp_params", responses=errors(400, 401, 403, 404))
async def legacy_answer(
    session_id: str, registry: RegistryDep, authorization: str | None = Header(default=None)
) -> Response:
    session = registry.running(session_id, authorization)
    return _answer(session.signalling.answer(None, legacy=True))


@router.post("/connections", status_code=201, responses=errors(400, 401, 403, 404, 408, 409, 413, 422))
async def register(
    session_id: str, request: Request, registry: RegistryDep, authorization: str | None = Header(default=None)
) -> dict[str, Any]:
    session = registry.running(session_id, authorization)
    await json_body(request)
    return {"connection_id": session.signalling.register().id}


@router.post(
    "/connections/{connection_id}/ice_candidates",
    status_code=202,
    response_class=Response,
    responses=errors(400, 401, 403, 404, 408, 409, 413, 422),
)
async def trickle(
    session_id: str,
    connection_id: int,
    body: IceCandidates,
    registry: RegistryDep,
    authorization: str | None = Header(default=None),
) -> Response:
    """202 with an empty body, as the real runtime."""
    session = registry.running(session_id, authorization)
    candidates = [c.model_dump() for c in body.candidates]
    await session.signalling.trickle(connection_id, candidates, body.is_final)
    return Response(status_code=202)


@router.post(
    "/connections/{connection_id}/sdp_params",
    status_code=202,
    responses=errors(400, 401, 403, 404, 408, 409, 413, 422),
)
@router.put(
    "/connections/{connection_id}/sdp_params",
    status_code=202,
    responses=errors(400, 401, 403, 404, 408, 409, 413, 422),
)
async def connection_offer(
    session_id: str,
    connection_id: int,
    offer: SdpOffer,
    registry: RegistryDep,
    authorization: str | None = Header(default=None),
) -> dict[str, Any]:
    session = registry.running(session_id, authorization)
    mapping = offer.mapping()
    await session.signalling.offer(connection_id, offer.sdp_offer, mapping, offer.client_info, legacy=False)
    return {"connection_id": connection_id}


@router.get("/connections/{connection_id}/sdp_params", responses=errors(400, 401, 403, 404))
async def connection_answer(
    session_id: str,
    connection_id: int,
    registry: RegistryDep,
    authorization: str | None = Header(default=None),
) -> Response:
    session = registry.running(session_id, authorization)
    return _answer(session.signalling.answer(connection_id, legacy=False))

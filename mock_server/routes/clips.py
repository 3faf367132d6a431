"""Clip routes (§1.9): `GET /clips` (playlist), `/clips/init/{seq}.mp4`, `/clips/chunks/{seq}.m4s`.

Also the middleware that remembers, per session, the base URL its clients reach the server on: clipReady's
`playlist_url` must be absolute, and only the client's own requests say which address that is.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import Response

from mock_server.routes.deps import RegistryDep
from mock_server.routes.errors import errors
from mock_server.services.clips import PLAYLIST_TYPE, ClipService

log = logging.getLogger("helios_mock.http")

router = APIRouter(prefix="/clips", tags=["clips"])
_NO_STORE = {"Cache-Control": "no-store"}


def clip_service(request: Request, registry: RegistryDep) -> ClipService:
    """The app's clip service (created on first use, with the registry's settings)."""
    service: ClipService | None = getattr(request.app.state, "clips", None)
    if service is None:
        service = ClipService(registry)
        request.app.state.clips = service
    return service


ClipsDep = Annotated[ClipService, Depends(clip_service)]


# 400 a clip URL lacking parts, 403 forged or expired, 401/403/404 a production session's authorization,
# 404 a forgotten recording or a chunk outside the clip, 410 a chunk the recording no longer holds
CLIP_ERRORS = errors(400, 401, 403, 404, 410)


@router.get("", responses=CLIP_ERRORS)
async def playlist(
    request: Request, clips: ClipsDep, authorization: str | None = Header(default=None)
) -> Response:
    """200 with the HLS playlist, or 202 with `Retry-After` (seconds) until the window's last chunk exists."""
    answer = clips.playlist(request.query_params, authorization)
    if answer.status == 202:
        headers = {**_NO_STORE, "Retry-After": answer.retry_after}
        return Response(answer.text, status_code=202, media_type="text/plain", headers=headers)
    return Response(answer.text, media_type=PLAYLIST_TYPE, headers=_NO_STORE)


@router.get("/init/{seq}.mp4", responses={**CLIP_ERRORS, **errors(422)})
async def init_segment(
    seq: int, request: Request, clips: ClipsDep, authorization: str | None = Header(default=None)
) -> Response:
    data = await clips.init_segment(request.query_params, seq, authorization)
    return Response(data, media_type="video/mp4")


@router.get("/chunks/{seq}.m4s", responses={**CLIP_ERRORS, **errors(422)})
async def media_segment(
    seq: int, request: Request, clips: ClipsDep, authorization: str | None = Header(default=None)
) -> Response:
    data = await clips.media_segment(request.query_params, seq, authorization)
    return Response(data, media_type="video/iso.segment")

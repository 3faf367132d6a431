"""Request bodies of the HTTP routes: the pydantic models and the lenient JSON body reader."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field

from mock_server.errors import Invalid, TooLarge, Unprocessable
from mock_server.textlimits import JsonRejected, parse_json_bounded


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

    def mapping(self) -> list[dict[str, Any]]:
        return [t.model_dump() for t in self.track_mapping]


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
    mime_type: str = Field(description="MIME type of the bytes; required, as on the real runtime")


async def json_body(request: Request) -> dict[str, Any]:
    """Lenient body for routes whose clients send `{}`, `null` or nothing; parsed with the same bounds as a
    v0 frame (size, depth, no lone surrogates, no NaN), so nothing unencodable reaches a record."""
    raw = await request.body()
    if not raw.strip():
        return {}
    settings = request.app.state.registry.settings
    try:
        limits = {"max_depth": settings.max_json_depth, "max_bytes": settings.max_request_bytes}
        body = parse_json_bounded(raw, **limits)
    except JsonRejected as exc:
        problem = f"request body {exc.reason}"
        raise (TooLarge(problem) if exc.too_large else Unprocessable(problem)) from None
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise Invalid("request body must be a JSON object")
    return body

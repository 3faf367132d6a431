"""Request bodies of the HTTP routes: the pydantic models and the lenient JSON body reader."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field

from mock_server.errors import Invalid, Unprocessable


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
    """Lenient body for routes whose clients send `{}`, `null` or nothing."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise Unprocessable("request body is not valid JSON") from None
    except RecursionError:  # the body guard refuses deep bodies first; this is the last line
        raise Unprocessable("the JSON body nests too deeply (limit max_json_depth)") from None
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise Invalid("request body must be a JSON object")
    return body

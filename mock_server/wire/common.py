"""Wire-neutral messages: what the session reads from and writes to a connection.

Both codecs (v0 JSON, v1 protobuf) translate between these dataclasses and frames, so the session
and Helios never see a wire format.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

DATA = "data"
CONTROL = "control"


class WireError(Exception):
    """A frame that cannot be decoded (malformed JSON/protobuf, unknown scope or payload)."""

    def __init__(self, code: str, message: str, request_id: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id


# ---------------------------------------------------------------- inbound (client -> server)


@dataclass(frozen=True)
class UploadRef:
    upload_id: str
    name: str = ""
    mime_type: str = ""
    size: int = 0


@dataclass(frozen=True)
class CommandIn:
    type: str
    data: dict[str, Any]
    uploads: dict[str, UploadRef] = field(default_factory=dict)
    request_id: str = ""  # v1 only; "" on v0


@dataclass(frozen=True)
class Ping:
    pass


@dataclass(frozen=True)
class RequestSchema:
    request_id: str = ""


@dataclass(frozen=True)
class RequestCapabilities:  # v0 only
    pass


@dataclass(frozen=True)
class FileUploaded:
    upload_id: str
    name: str = ""
    mime_type: str = ""
    size: int = 0


@dataclass(frozen=True)
class RequestClip:
    duration_seconds: float = 0.0
    request_id: str = ""


@dataclass(frozen=True)
class RequestRecording:
    request_id: str = ""


@dataclass(frozen=True)
class TrackVerb:
    """publish_track / pause_track / resume_track / unpublish_track on the control channel."""

    verb: str  # "publish" | "pause" | "resume" | "unpublish"
    name: str
    request_id: str = ""


@dataclass(frozen=True)
class ClientStats:
    pass


@dataclass(frozen=True)
class RequestStep:  # v1 stepped generation; Helios is streamed only
    request_id: str = ""


@dataclass(frozen=True)
class Ignored:
    """A well-formed frame the server takes no action on (e.g. a client-sent error notice)."""

    what: str


Inbound = (
    CommandIn
    | Ping
    | RequestSchema
    | RequestCapabilities
    | FileUploaded
    | RequestClip
    | RequestRecording
    | TrackVerb
    | ClientStats
    | RequestStep
    | Ignored
)


# ---------------------------------------------------------------- outbound (server -> client)


@dataclass(frozen=True)
class ModelMessageOut:
    """A Helios message. reply_to set -> correlated answer (v1 kind 2); else a notification/broadcast."""

    type: str
    data: dict[str, Any]
    reply_to: str = ""


@dataclass(frozen=True)
class AckOut:
    """Bodyless acknowledgement of a v1 command (withheld on v0)."""

    reply_to: str


@dataclass(frozen=True)
class ErrorOut:
    """Protocol-level error. On the data channel for commands, on control for control requests."""

    code: str
    message: str
    reply_to: str = ""
    channel: str = DATA


@dataclass(frozen=True)
class ModelSchemaOut:
    openapi: dict[str, Any]
    reply_to: str = ""


@dataclass(frozen=True)
class ModelCapabilitiesOut:  # v0 only
    capabilities: dict[str, Any]


@dataclass(frozen=True)
class ClipReadyOut:
    """Reply to a clip or recording request: the window (media seconds) and its HLS playlist URL."""

    session_id: str
    kind: str  # "clip" | "recording"
    start_marker: float
    end_marker: float
    now_marker: float
    predicted_ready_at_ms: int
    playlist_url: str
    reply_to: str = ""


@dataclass(frozen=True)
class ClipFailedOut:
    reason: str
    reply_to: str = ""


@dataclass(frozen=True)
class SessionEndedOut:
    reason: str


@dataclass(frozen=True)
class TrackResponseOut:
    """Reply granting publish_track (never sent by Helios, which has no input tracks)."""

    name: str
    reply_to: str = ""


Outbound = (
    ModelMessageOut
    | AckOut
    | ErrorOut
    | ModelSchemaOut
    | ModelCapabilitiesOut
    | ClipReadyOut
    | ClipFailedOut
    | SessionEndedOut
    | TrackResponseOut
)


class Codec(Protocol):
    """One wire encoding. A connection latches one codec for its life (PROTOCOL.md §3.6)."""

    name: str

    def decode(self, channel: str, raw: str | bytes) -> Inbound:
        """Decode one inbound frame received on `channel`; raise WireError when it is malformed."""
        ...

    def encode(self, out: Outbound) -> tuple[str, str | bytes] | None:
        """Encode one outbound message as (channel label, frame), or None when this wire cannot carry it."""
        ...


def clip_ready_body(out: ClipReadyOut) -> dict[str, Any]:
    """The clipReady / ClipReady fields (PROTOCOL.md §3.2, §3.3), the same on both wires."""
    return {
        "session_id": out.session_id,
        "kind": out.kind,
        "start_marker": out.start_marker,
        "end_marker": out.end_marker,
        "now_marker": out.now_marker,
        "predicted_ready_at_ms": out.predicted_ready_at_ms,
        "playlist_url": out.playlist_url,
    }


def looks_like_json(raw: str | bytes) -> bool:
    """RT3's rule: text, or binary whose first non-whitespace byte is '{' or '[', is JSON."""
    if isinstance(raw, str):
        return True
    stripped = raw.lstrip()
    return stripped[:1] in (b"{", b"[")

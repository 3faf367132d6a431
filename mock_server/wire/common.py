"""Wire-neutral messages: what the session reads from and writes to a connection.

Both codecs (v0 JSON, v1 protobuf) translate between these dataclasses and frames, so the session
and Helios never see a wire format.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from mock_server.textlimits import clip

DATA = "data"
CONTROL = "control"

# ---------------------------------------------------------------- inbound limits (docs/LIMITS.md)

MAX_FRAME_BYTES = 262_144  # the SCTP max-message-size aiortc advertises (a=max-message-size:262144)
MAX_JSON_DEPTH = 32  # nesting of arrays/objects in a v0 frame or a v1 command's data
MAX_NAME_CHARS = 64  # a command name, a runtime message type, a track name
MAX_REQUEST_ID_CHARS = 128  # echoed in every correlated reply, so bounded
MAX_ERROR_MESSAGE_CHARS = 1_000  # an error text (it may quote client text) in a reply and a log line

MALFORMED = "malformed_frame"
INVALID_COMMAND = "invalid_command"


class WireError(Exception):
    """A frame that cannot be decoded (malformed JSON/protobuf, unknown scope or payload, over a limit).

    ``message`` is clipped to MAX_ERROR_MESSAGE_CHARS, so quoting client text in it never makes a reply
    or a log line unbounded.
    """

    def __init__(self, code: str, message: str, request_id: str = "") -> None:
        message = clip(message, MAX_ERROR_MESSAGE_CHARS)
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id


def frame_size(raw: str | bytes) -> int:
    """Size of a frame on the wire: bytes as they are, text as UTF-8."""
    if isinstance(raw, str):
        return len(raw) if raw.isascii() else len(raw.encode("utf-8", "surrogatepass"))
    return len(raw)


def check_frame_size(raw: str | bytes, request_id: str = "") -> None:
    """Raise WireError(malformed_frame) for a frame over MAX_FRAME_BYTES."""
    size = frame_size(raw)
    if size > MAX_FRAME_BYTES:
        raise WireError(
            MALFORMED,
            f"frame is {size} bytes; the limit is {MAX_FRAME_BYTES} bytes (the data channel's "
            "max-message-size)",
            request_id,
        )


def check_name(value: str, what: str, code: str, request_id: str = "") -> str:
    """``value`` when it is at most MAX_NAME_CHARS characters; otherwise WireError(code)."""
    if len(value) > MAX_NAME_CHARS:
        raise WireError(
            code,
            f"{what} is {len(value)} characters; the limit is {MAX_NAME_CHARS} (got '{clip(value, 40)}')",
            request_id,
        )
    return value


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
class ModerationOut:
    """A moderation notice (runtime `moderation` on v0, control `Moderation` notification on v1)."""

    action: str
    input_kind: str
    command: str
    categories: tuple[str, ...]
    message: str


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
    | ModerationOut
    | TrackResponseOut
)


class Codec(Protocol):
    """One wire encoding. A connection latches one codec for its life (docs/PROTOCOL.md §3.6)."""

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

"""v0: the legacy JSON encoding spoken by the JS SDK (docs/PROTOCOL.md §3.2).

Data channel: text frames ``{"scope": "application" | "runtime", "data": {"type", "data", "uploads"?}}``.
Control channel: JSON track verbs ``{"type": "notification" | "request", "event" | "method", ...}``.
v0 has no correlation, so acks and command errors are withheld (§3.4).
"""

from __future__ import annotations

import json
import math
from typing import Any

from mock_server.model.limits import UPLOAD_FIELD_MAX_CHARS
from mock_server.textlimits import JsonRejected, clip, parse_json_bounded
from mock_server.wire.common import (
    CONTROL,
    DATA,
    INVALID_COMMAND,
    MALFORMED,
    MAX_FRAME_BYTES,
    MAX_JSON_DEPTH,
    MAX_NAME_CHARS,
    MAX_REQUEST_ID_CHARS,
    AckOut,
    ClipFailedOut,
    ClipReadyOut,
    CommandIn,
    ErrorOut,
    FileUploaded,
    Inbound,
    ModelCapabilitiesOut,
    ModelMessageOut,
    ModelSchemaOut,
    ModerationOut,
    Outbound,
    Ping,
    RequestCapabilities,
    RequestClip,
    RequestRecording,
    RequestSchema,
    SessionEndedOut,
    TrackResponseOut,
    TrackVerb,
    UploadRef,
    WireError,
    check_frame_size,
    check_name,
    clip_ready_body,
)

__all__ = ["V0Codec"]

UNKNOWN_SCOPE = "unknown_scope"
UNKNOWN_RUNTIME = "unknown_runtime_message"

_TRACK_EVENTS = {"pause_track": "pause", "resume_track": "resume", "unpublish_track": "unpublish"}
_TRACK_METHODS = {"publish_track": "publish"}
_PUBLISH_METHOD = "publish_track"  # the only v0 control request, so every control response answers it


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _runtime(type_: str, data: Any) -> tuple[str, str]:
    return DATA, _dumps({"scope": "runtime", "data": {"type": type_, "data": data}})


def _parse(raw: str | bytes) -> dict[str, Any]:
    """One frame's JSON object, within the frame size, nesting depth and text rules (docs/LIMITS.md)."""
    if isinstance(raw, memoryview):
        raw = bytes(raw)
    check_frame_size(raw)
    try:
        obj = parse_json_bounded(raw, max_depth=MAX_JSON_DEPTH, max_bytes=MAX_FRAME_BYTES)
    except JsonRejected as exc:
        raise WireError(MALFORMED, f"frame {exc.reason}") from None
    if not isinstance(obj, dict):
        raise WireError(MALFORMED, f"frame must be a JSON object, got {_json_type(obj)}")
    return obj


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _object(value: Any, what: str, code: str) -> dict[str, Any]:
    """An optional JSON object: absent/null -> {}."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise WireError(code, f"{what} must be a JSON object, got {_json_type(value)}")
    return value


def _str(
    obj: dict[str, Any], key: str, what: str, code: str, *, required: bool = False, limit: int = 0
) -> str:
    value = obj.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise WireError(
            code,
            f"{what} needs a non-empty string '{key}'" if required else f"{what}: '{key}' must be a string",
        )
    if limit and len(value) > limit:
        raise WireError(code, f"{what}: '{key}' is {len(value)} characters; the limit is {limit}")
    return value


def _upload_fields(obj: dict[str, Any], what: str, code: str) -> dict[str, Any]:
    """upload_id, name, mime_type (bounded strings) and size of an upload reference or notice."""
    limit = UPLOAD_FIELD_MAX_CHARS
    return {
        "upload_id": _str(obj, "upload_id", what, code, required=True, limit=limit),
        "name": _str(obj, "name", what, code, limit=limit),
        "mime_type": _str(obj, "mime_type", what, code, limit=limit),
        "size": _int(obj, "size", what, code),
    }


def _int(obj: dict[str, Any], key: str, what: str, code: str) -> int:
    value = obj.get(key)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise WireError(code, f"{what}: '{key}' must be a whole number, got {_json_type(value)}")
    if isinstance(value, float):
        if not (math.isfinite(value) and value.is_integer()):
            raise WireError(code, f"{what}: '{key}' must be a whole number, got {value}")
        value = int(value)
    return value


def _number(obj: dict[str, Any], key: str, what: str, code: str) -> float:
    value = obj.get(key)
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise WireError(code, f"{what}: '{key}' must be a number, got {_json_type(value)}")
    try:
        return float(value)
    except OverflowError:
        raise WireError(code, f"{what}: '{key}' is too large") from None


def _upload(name: str, ref: Any) -> UploadRef:
    check_name(name, "an upload parameter name", INVALID_COMMAND)
    what = f"upload '{name}'"
    if not isinstance(ref, dict):
        raise WireError(INVALID_COMMAND, f"{what} must be a JSON object, got {_json_type(ref)}")
    return UploadRef(**_upload_fields(ref, what, INVALID_COMMAND))


def _decode_application(msg: dict[str, Any]) -> CommandIn:
    type_ = msg.get("type")
    if not isinstance(type_, str) or not type_:
        raise WireError(INVALID_COMMAND, "command has no 'type' (the command name)")
    check_name(type_, "the command name", INVALID_COMMAND)
    what = f"command '{type_}'"
    data = _object(msg.get("data"), f"{what}: 'data'", INVALID_COMMAND)
    uploads = _object(msg.get("uploads"), f"{what}: 'uploads'", INVALID_COMMAND)
    return CommandIn(type=type_, data=data, uploads={k: _upload(k, v) for k, v in uploads.items()})


def _decode_runtime(msg: dict[str, Any]) -> Inbound:
    type_ = msg.get("type")
    if not isinstance(type_, str) or not type_:
        raise WireError(MALFORMED, "runtime message has no 'type'")
    check_name(type_, "the runtime message type", MALFORMED)
    data = _object(msg.get("data"), f"runtime message '{type_}': 'data'", MALFORMED)
    if type_ == "ping":
        return Ping()
    if type_ == "requestSchema":
        return RequestSchema()
    if type_ == "requestCapabilities":
        return RequestCapabilities()
    if type_ == "requestRecording":
        return RequestRecording()
    if type_ == "requestClip":
        return RequestClip(duration_seconds=_number(data, "duration_seconds", type_, MALFORMED))
    if type_ == "fileUploaded":
        return FileUploaded(**_upload_fields(data, type_, MALFORMED))
    raise WireError(UNKNOWN_RUNTIME, f"unknown runtime message type '{type_}'")


def _decode_control(obj: dict[str, Any]) -> TrackVerb:
    type_ = obj.get("type")
    if type_ == "notification":
        event = obj.get("event")
        if not isinstance(event, str) or event not in _TRACK_EVENTS:
            raise WireError(UNKNOWN_RUNTIME, f"unknown control notification event {_quoted(event)}")
        data = _object(obj.get("data"), f"{event}: 'data'", MALFORMED)
        name = _str(data, "name", event, MALFORMED, limit=MAX_NAME_CHARS)
        return TrackVerb(verb=_TRACK_EVENTS[event], name=name)
    if type_ == "request":
        request_id = obj.get("request_id")
        if not isinstance(request_id, str) or not request_id:
            raise WireError(MALFORMED, "control request has no string 'request_id'")
        if len(request_id) > MAX_REQUEST_ID_CHARS:
            raise WireError(
                MALFORMED,
                f"control request_id is {len(request_id)} characters; the limit is {MAX_REQUEST_ID_CHARS}",
            )
        method = obj.get("method")
        if not isinstance(method, str) or method not in _TRACK_METHODS:
            raise WireError(UNKNOWN_RUNTIME, f"unknown control method {_quoted(method)}", request_id)
        try:
            data = _object(obj.get("data"), f"{method}: 'data'", MALFORMED)
            name = _str(data, "name", method, MALFORMED, limit=MAX_NAME_CHARS)
        except WireError as exc:
            raise WireError(exc.code, exc.message, request_id) from None
        return TrackVerb(verb=_TRACK_METHODS[method], name=name, request_id=request_id)
    raise WireError(
        UNKNOWN_RUNTIME,
        f"unexpected control message type {_quoted(type_)}; expected notification or request",
    )


def _quoted(value: Any) -> str:
    """A client value for an error message: strings quoted and clipped, other JSON types named."""
    return f"'{clip(value, 40)}'" if isinstance(value, str) else _json_type(value)


def _control_response(request_id: str, body: dict[str, Any]) -> tuple[str, str]:
    frame = {"type": "response", "method": _PUBLISH_METHOD, "request_id": request_id, **body}
    return CONTROL, _dumps(frame)


class V0Codec:
    """Legacy JSON envelope codec (JS SDK 2.9.0, RT2)."""

    name = "v0"

    def decode(self, channel: str, raw: str | bytes) -> Inbound:
        """Decode one text (or JSON-bearing binary) frame; raise WireError when it is malformed."""
        obj = _parse(raw)
        if channel == CONTROL:
            return _decode_control(obj)
        scope = obj.get("scope")
        if scope not in ("application", "runtime"):
            shown = "no scope" if scope is None else f"unknown scope {_quoted(scope)}"
            raise WireError(UNKNOWN_SCOPE, f"frame has {shown}; expected 'application' or 'runtime'")
        envelope = obj.get("data")
        if not isinstance(envelope, dict):
            raise WireError(
                MALFORMED, f"{scope} frame: 'data' must be a JSON object, got {_json_type(envelope)}"
            )
        return _decode_application(envelope) if scope == "application" else _decode_runtime(envelope)

    def encode(self, out: Outbound) -> tuple[str, str] | None:
        """Encode as compact JSON text; acks and data-channel errors are withheld (None)."""
        match out:
            case ModelMessageOut():
                return DATA, _dumps({"scope": "application", "data": {"type": out.type, "data": out.data}})
            case AckOut():
                return None
            case ErrorOut(channel=channel) if channel == CONTROL:
                return _control_response(out.reply_to, {"error": {"code": out.code, "message": out.message}})
            case ErrorOut():
                return None
            case ModelSchemaOut():
                return _runtime("modelSchema", out.openapi)
            case ModelCapabilitiesOut():
                return _runtime("modelCapabilities", out.capabilities)
            case ClipReadyOut():
                return _runtime("clipReady", clip_ready_body(out))
            case ClipFailedOut():
                return _runtime("clipFailed", {"reason": out.reason})
            case SessionEndedOut():
                return _runtime("sessionEnded", {"reason": out.reason})
            case ModerationOut():
                return _runtime("moderation", _moderation_body(out))
            case TrackResponseOut():
                return _control_response(out.reply_to, {"data": {"name": out.name}})
        raise TypeError(f"V0Codec cannot encode {type(out).__name__}")


def _moderation_body(out: ModerationOut) -> dict[str, object]:
    return {
        "action": out.action,
        "input_kind": out.input_kind,
        "command": out.command,
        "categories": list(out.categories),
        "message": out.message,
    }

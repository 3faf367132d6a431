"""v1: binary protobuf envelopes of package reactor_wire.v1 (docs/PROTOCOL.md §3.3–3.4).

The "control" channel carries ControlClientMessage / ControlServerMessage; every other channel carries
DataClientMessage / DataServerMessage. One protobuf message per frame, no length prefix. Struct values
carry every number as a double, so ints sent by the server reach the client as floats and vice versa.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.protobuf.message import DecodeError
from google.protobuf.struct_pb2 import NULL_VALUE, ListValue, Struct, Value

from mock_server.model.limits import UPLOAD_FIELD_MAX_CHARS
from mock_server.textlimits import nesting_depth
from mock_server.wire import reactor_wire_pb as pb
from mock_server.wire.common import (
    CONTROL,
    DATA,
    INVALID_COMMAND,
    MALFORMED,
    MAX_JSON_DEPTH,
    MAX_REQUEST_ID_CHARS,
    AckOut,
    ClientStats,
    ClipFailedOut,
    ClipReadyOut,
    CommandIn,
    ErrorOut,
    FileUploaded,
    Ignored,
    Inbound,
    ModelCapabilitiesOut,
    ModelMessageOut,
    ModelSchemaOut,
    ModerationOut,
    Outbound,
    Ping,
    RequestClip,
    RequestRecording,
    RequestSchema,
    RequestStep,
    SessionEndedOut,
    TrackResponseOut,
    TrackVerb,
    UploadRef,
    WireError,
    check_frame_size,
    check_name,
    clip_ready_body,
)

__all__ = ["V1Codec", "dict_to_struct", "struct_to_dict", "to_value", "from_value"]

REQUEST = pb.MessageKind.MESSAGE_KIND_REQUEST
RESPONSE = pb.MessageKind.MESSAGE_KIND_RESPONSE
NOTIFICATION = pb.MessageKind.MESSAGE_KIND_NOTIFICATION

_TRACK_VERBS = {
    "publish_track": "publish",
    "pause_track": "pause",
    "resume_track": "resume",
    "unpublish_track": "unpublish",
}


# ---------------------------------------------------------------- google.protobuf.Struct <-> plain data


def to_value(obj: Any) -> Value:
    """A JSON-like Python value as a protobuf Value (numbers become doubles, int keys become strings)."""
    value = Value()
    if obj is None:
        value.null_value = NULL_VALUE
    elif isinstance(obj, bool):
        value.bool_value = obj
    elif isinstance(obj, int | float):
        value.number_value = float(obj)
    elif isinstance(obj, str):
        value.string_value = obj
    elif isinstance(obj, Mapping):
        value.struct_value.CopyFrom(dict_to_struct(obj))
    elif isinstance(obj, list | tuple):
        value.list_value.CopyFrom(ListValue(values=[to_value(item) for item in obj]))
    else:
        raise TypeError(f"cannot put a {type(obj).__name__} into a protobuf Struct")
    return value


def dict_to_struct(obj: Mapping[Any, Any]) -> Struct:
    """A mapping with string (or int) keys as a protobuf Struct."""
    struct = Struct()
    for key, item in obj.items():
        if isinstance(key, int) and not isinstance(key, bool):
            key = str(key)
        if not isinstance(key, str):
            raise TypeError(f"Struct keys must be strings, got {type(key).__name__}")
        struct.fields[key].CopyFrom(to_value(item))
    return struct


def from_value(value: Value) -> Any:
    """A protobuf Value as plain Python data; numbers stay floats, an unset Value is None."""
    which = value.WhichOneof("kind")
    if which == "number_value":
        return value.number_value
    if which == "string_value":
        return value.string_value
    if which == "bool_value":
        return value.bool_value
    if which == "struct_value":
        return struct_to_dict(value.struct_value)
    if which == "list_value":
        return [from_value(item) for item in value.list_value.values]
    return None


def struct_to_dict(struct: Struct) -> dict[str, Any]:
    """A protobuf Struct as a plain dict (keys in sorted order, numbers as floats)."""
    return {key: from_value(struct.fields[key]) for key in sorted(struct.fields)}


# ---------------------------------------------------------------- decoding


def _varint(raw: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(raw) or shift > 63:
            raise IndexError
        byte = raw[pos]
        result |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            return result, pos
        shift += 7


def _peek_request_id(raw: bytes) -> str:
    """Best effort: the request_id of a frame that failed to parse, when it is the leading field and
    within MAX_REQUEST_ID_CHARS (the reply echoes it)."""
    try:
        tag, pos = _varint(raw, 0)
        if tag != (1 << 3) | 2:
            return ""
        length, pos = _varint(raw, pos)
        if pos + length > len(raw) or length > 4 * MAX_REQUEST_ID_CHARS:
            return ""
        request_id = raw[pos : pos + length].decode("utf-8")
        return request_id if len(request_id) <= MAX_REQUEST_ID_CHARS else ""
    except (IndexError, UnicodeDecodeError):
        return ""


def _upload_fields(ref: pb.UploadReference | pb.FileUploaded, what: str, code: str, rid: str) -> None:
    """Raise WireError(code) when an upload string is over UPLOAD_FIELD_MAX_CHARS."""
    for key in ("upload_id", "name", "mime_type"):
        value: str = getattr(ref, key)
        if len(value) > UPLOAD_FIELD_MAX_CHARS:
            raise WireError(
                code,
                f"{what}: '{key}' is {len(value)} characters; the limit is {UPLOAD_FIELD_MAX_CHARS}",
                rid,
            )


def _command(cmd: pb.Command, request_id: str) -> CommandIn:
    if not cmd.type:
        raise WireError(INVALID_COMMAND, "command has no type (the command name)", request_id)
    check_name(cmd.type, "the command name", INVALID_COMMAND, request_id)
    for key, ref in cmd.uploads.items():
        check_name(key, "an upload parameter name", INVALID_COMMAND, request_id)
        _upload_fields(ref, f"command '{cmd.type}': upload '{key}'", INVALID_COMMAND, request_id)
    uploads = {
        key: UploadRef(upload_id=ref.upload_id, name=ref.name, mime_type=ref.mime_type, size=ref.size)
        for key, ref in sorted(cmd.uploads.items())
    }
    data = struct_to_dict(cmd.data)
    if nesting_depth(data, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise WireError(
            INVALID_COMMAND,
            f"command '{cmd.type}': data is nested more than {MAX_JSON_DEPTH} levels deep",
            request_id,
        )
    return CommandIn(type=cmd.type, data=data, uploads=uploads, request_id=request_id)


def _decode_control(msg: pb.ControlClientMessage, which: str) -> Inbound:
    rid = msg.request_id
    if which == "ping":
        return Ping()
    if which == "request_schema":
        return RequestSchema(request_id=rid)
    if which == "file_uploaded":
        f = msg.file_uploaded
        _upload_fields(f, "file_uploaded", MALFORMED, rid)
        return FileUploaded(upload_id=f.upload_id, name=f.name, mime_type=f.mime_type, size=f.size)
    if which == "request_clip":
        return RequestClip(duration_seconds=msg.request_clip.duration_seconds, request_id=rid)
    if which == "request_recording":
        return RequestRecording(request_id=rid)
    if which in _TRACK_VERBS:
        name = check_name(getattr(msg, which).name, f"{which}: the track name", MALFORMED, rid)
        return TrackVerb(verb=_TRACK_VERBS[which], name=name, request_id=rid)
    if which == "client_stats":
        return ClientStats()
    return Ignored(what=f"control {which}")  # "error": a client-sent error notice


def _decode_data(msg: pb.DataClientMessage, which: str) -> Inbound:
    if which == "command":
        return _command(msg.command, msg.request_id)
    if which == "request_step":
        return RequestStep(request_id=msg.request_id)
    return Ignored(what=f"data {which}")  # "error": a client-sent error notice


def _parse(msg: pb.ControlClientMessage | pb.DataClientMessage, raw: bytes) -> str:
    """Parse ``raw`` into ``msg``; return its payload field name or raise WireError."""
    envelope = type(msg).__name__
    try:
        msg.ParseFromString(raw)
    except (DecodeError, RecursionError, ValueError):
        raise WireError(
            MALFORMED, f"frame is not a valid reactor_wire.v1 {envelope}", _peek_request_id(raw)
        ) from None
    if len(msg.request_id) > MAX_REQUEST_ID_CHARS:
        raise WireError(
            MALFORMED, f"request_id is {len(msg.request_id)} characters; the limit is {MAX_REQUEST_ID_CHARS}"
        )
    if msg.kind == REQUEST and not msg.request_id:
        raise WireError(MALFORMED, f"{envelope} request has no request_id")
    which = msg.WhichOneof("payload")
    if which is None:
        code = "unknown_runtime_message" if isinstance(msg, pb.ControlClientMessage) else INVALID_COMMAND
        raise WireError(code, f"{envelope} carries no payload this server understands", msg.request_id)
    return which


# ---------------------------------------------------------------- encoding


def _kind(reply_to: str) -> pb.MessageKind:
    return RESPONSE if reply_to else NOTIFICATION


def _control_reply(reply_to: str, **payload: Any) -> tuple[str, bytes]:
    """A control-channel server envelope answering `reply_to` (a notification when it is empty)."""
    return _frame(CONTROL, pb.ControlServerMessage(request_id=reply_to, kind=_kind(reply_to), **payload))


def _frame(channel: str, message: pb.DataServerMessage | pb.ControlServerMessage) -> tuple[str, bytes]:
    return channel, message.SerializeToString(deterministic=True)


class V1Codec:
    """Protobuf reactor_wire.v1 codec (reactor-sdk 1.13.0, RT3)."""

    name = "v1"

    def decode(self, channel: str, raw: str | bytes) -> Inbound:
        """Decode one binary frame: ControlClientMessage on "control", else DataClientMessage."""
        if isinstance(raw, str):
            raise WireError(MALFORMED, "text frame on a protobuf (v1) connection; frames must be binary")
        raw = bytes(raw)
        check_frame_size(raw, _peek_request_id(raw))
        if channel == CONTROL:
            control = pb.ControlClientMessage()
            which = _parse(control, raw)
            return _decode_control(control, which)
        data = pb.DataClientMessage()
        which = _parse(data, raw)
        return _decode_data(data, which)

    def encode(self, out: Outbound) -> tuple[str, bytes] | None:
        """Encode as a serialized server envelope; capabilities (v0 only) give None."""
        match out:
            case ModelMessageOut():
                message = pb.ModelMessage(type=out.type, data=dict_to_struct(out.data))
                return _frame(
                    DATA,
                    pb.DataServerMessage(request_id=out.reply_to, kind=_kind(out.reply_to), message=message),
                )
            case AckOut():
                return _frame(DATA, pb.DataServerMessage(request_id=out.reply_to, kind=RESPONSE))
            case ErrorOut():
                error = pb.Error(code=out.code, message=out.message)
                envelope = pb.ControlServerMessage if out.channel == CONTROL else pb.DataServerMessage
                channel = CONTROL if out.channel == CONTROL else DATA
                return _frame(
                    channel, envelope(request_id=out.reply_to, kind=_kind(out.reply_to), error=error)
                )
            case ModelSchemaOut():
                schema = pb.ModelSchema(openapi=dict_to_struct(out.openapi))
                return _control_reply(out.reply_to, model_schema=schema)
            case ClipReadyOut():
                return _control_reply(out.reply_to, clip_ready=pb.ClipReady(**clip_ready_body(out)))
            case ClipFailedOut():
                return _control_reply(out.reply_to, clip_failed=pb.ClipFailed(reason=out.reason))
            case SessionEndedOut():
                ended = pb.SessionEnded(reason=out.reason)
                return _frame(CONTROL, pb.ControlServerMessage(kind=NOTIFICATION, session_ended=ended))
            case ModerationOut():
                notice = pb.Moderation(
                    action=out.action,
                    input_kind=out.input_kind,
                    command=out.command,
                    categories=list(out.categories),
                    message=out.message,
                )
                return _frame(CONTROL, pb.ControlServerMessage(kind=NOTIFICATION, moderation=notice))
            case TrackResponseOut():
                return _control_reply(out.reply_to, publish_track=pb.PublishTrackResponse(name=out.name))
            case ModelCapabilitiesOut():
                return None
        raise TypeError(f"V1Codec cannot encode {type(out).__name__}")

"""Property tests for both codecs: every message type in both directions, plus decode fuzzing.

Outbound: encode with the codec, parse the frame back with the generated protobuf classes (v1) or json (v0),
compare with the input. Inbound: build a client frame the way a client would, decode, compare.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from google.protobuf.json_format import ParseDict
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mock_server.wire import V0Codec, V1Codec, WireError
from mock_server.wire import reactor_wire_pb as pb
from mock_server.wire.common import (
    CONTROL,
    DATA,
    AckOut,
    ClientStats,
    ClipFailedOut,
    CommandIn,
    ErrorOut,
    FileUploaded,
    Ignored,
    ModelCapabilitiesOut,
    ModelMessageOut,
    ModelSchemaOut,
    Ping,
    RequestCapabilities,
    RequestClip,
    RequestRecording,
    RequestSchema,
    RequestStep,
    SessionEndedOut,
    TrackResponseOut,
    TrackVerb,
    UploadRef,
)
from mock_server.wire.v1 import dict_to_struct, struct_to_dict

v0 = V0Codec()
v1 = V1Codec()
K = pb.MessageKind
CHANNELS = st.sampled_from([DATA, CONTROL, "other-label"])

# ---------------------------------------------------------------- strategies

texts = st.text(max_size=20)
names = st.text(min_size=1, max_size=20)
request_ids = st.one_of(st.just(""), st.from_regex(r"(data|ctrl)_[1-9][0-9]{0,3}", fullmatch=True))
nonempty_ids = st.from_regex(r"(data|ctrl|r)_?[1-9][0-9]{0,3}", fullmatch=True)
sizes = st.integers(min_value=0, max_value=2**53)
finite = st.floats(allow_nan=False, allow_infinity=False)
# Exactly representable ints, so int -> double -> float comparisons hold.
numbers = st.one_of(finite, st.integers(min_value=-(2**53), max_value=2**53))
json_scalars = st.one_of(st.none(), st.booleans(), numbers, texts)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(texts, children, max_size=4)),
    max_leaves=12,
)
json_objects = st.dictionaries(texts, json_values, max_size=5)
upload_refs = st.builds(UploadRef, upload_id=names, name=texts, mime_type=texts, size=sizes)
uploads = st.dictionaries(names, upload_refs, max_size=3)
verbs = st.sampled_from(["publish", "pause", "resume", "unpublish"])


def plain(value: Any) -> Any:
    """What a value looks like after a trip through Struct: ints become floats."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return [plain(v) for v in value]


def same(a: Any, b: Any) -> bool:
    """Equal, with ints and floats distinguished (so float-ness is really checked)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


# ---------------------------------------------------------------- v1 outbound


def parse_data(frame: tuple[str, str | bytes] | None) -> pb.DataServerMessage:
    assert frame is not None and frame[0] == DATA and isinstance(frame[1], bytes)
    return pb.DataServerMessage.FromString(frame[1])


def parse_control(frame: tuple[str, str | bytes] | None) -> pb.ControlServerMessage:
    assert frame is not None and frame[0] == CONTROL and isinstance(frame[1], bytes)
    return pb.ControlServerMessage.FromString(frame[1])


def expected_kind(reply_to: str) -> int:
    return K.MESSAGE_KIND_RESPONSE if reply_to else K.MESSAGE_KIND_NOTIFICATION


@given(type_=names, data=json_objects, reply_to=request_ids)
def test_v1_model_message(type_: str, data: dict, reply_to: str) -> None:
    msg = parse_data(v1.encode(ModelMessageOut(type=type_, data=data, reply_to=reply_to)))
    assert msg.WhichOneof("payload") == "message"
    assert (msg.request_id, msg.kind) == (reply_to, expected_kind(reply_to))
    assert msg.message.type == type_
    assert same(struct_to_dict(msg.message.data), plain(data))


@given(reply_to=nonempty_ids)
def test_v1_ack(reply_to: str) -> None:
    msg = parse_data(v1.encode(AckOut(reply_to=reply_to)))
    assert msg.WhichOneof("payload") is None
    assert (msg.request_id, msg.kind) == (reply_to, K.MESSAGE_KIND_RESPONSE)


@given(code=names, message=texts, reply_to=request_ids, channel=st.sampled_from([DATA, CONTROL]))
def test_v1_error(code: str, message: str, reply_to: str, channel: str) -> None:
    frame = v1.encode(ErrorOut(code=code, message=message, reply_to=reply_to, channel=channel))
    msg = parse_control(frame) if channel == CONTROL else parse_data(frame)
    assert msg.WhichOneof("payload") == "error"
    assert (msg.request_id, msg.kind) == (reply_to, expected_kind(reply_to))
    assert (msg.error.code, msg.error.message) == (code, message)


@given(openapi=json_objects, reply_to=request_ids)
def test_v1_model_schema(openapi: dict, reply_to: str) -> None:
    msg = parse_control(v1.encode(ModelSchemaOut(openapi=openapi, reply_to=reply_to)))
    assert msg.WhichOneof("payload") == "model_schema"
    assert (msg.request_id, msg.kind) == (reply_to, expected_kind(reply_to))
    assert same(struct_to_dict(msg.model_schema.openapi), plain(openapi))


@given(capabilities=json_objects)
def test_v1_capabilities_withheld(capabilities: dict) -> None:
    assert v1.encode(ModelCapabilitiesOut(capabilities=capabilities)) is None


@given(reason=texts, reply_to=request_ids)
def test_v1_clip_failed(reason: str, reply_to: str) -> None:
    msg = parse_control(v1.encode(ClipFailedOut(reason=reason, reply_to=reply_to)))
    assert msg.WhichOneof("payload") == "clip_failed"
    assert (msg.request_id, msg.kind, msg.clip_failed.reason) == (reply_to, expected_kind(reply_to), reason)


@given(reason=texts)
def test_v1_session_ended(reason: str) -> None:
    msg = parse_control(v1.encode(SessionEndedOut(reason=reason)))
    assert msg.WhichOneof("payload") == "session_ended"
    assert (msg.request_id, msg.kind, msg.session_ended.reason) == ("", K.MESSAGE_KIND_NOTIFICATION, reason)


@given(name=texts, reply_to=nonempty_ids)
def test_v1_track_response(name: str, reply_to: str) -> None:
    msg = parse_control(v1.encode(TrackResponseOut(name=name, reply_to=reply_to)))
    assert msg.WhichOneof("payload") == "publish_track"
    assert (msg.request_id, msg.kind, msg.publish_track.name) == (reply_to, K.MESSAGE_KIND_RESPONSE, name)


def test_v1_struct_types() -> None:
    data = {"i": 33, "f": 0.5, "b": True, "n": None, "s": "x", "l": [1, "a", None], "d": {"3": {"k": False}}}
    msg = parse_data(v1.encode(ModelMessageOut(type="t", data=data)))
    assert same(struct_to_dict(msg.message.data), plain(data))
    assert dict_to_struct({3: 1}) == dict_to_struct({"3": 1.0})


# ---------------------------------------------------------------- v1 inbound


def control_frame(request_id: str = "", kind: int = K.MESSAGE_KIND_NOTIFICATION, **payload: Any) -> bytes:
    return pb.ControlClientMessage(request_id=request_id, kind=kind, **payload).SerializeToString()


def data_frame(request_id: str = "", kind: int = K.MESSAGE_KIND_REQUEST, **payload: Any) -> bytes:
    return pb.DataClientMessage(request_id=request_id, kind=kind, **payload).SerializeToString()


@given(type_=names, data=json_objects, ups=uploads, request_id=nonempty_ids)
def test_v1_command(type_: str, data: dict, ups: dict[str, UploadRef], request_id: str) -> None:
    command = pb.Command(type=type_, data=dict_to_struct(data))
    for key, ref in ups.items():
        command.uploads[key].CopyFrom(
            pb.UploadReference(upload_id=ref.upload_id, name=ref.name, mime_type=ref.mime_type, size=ref.size)
        )
    decoded = v1.decode(DATA, data_frame(request_id, command=command))
    assert isinstance(decoded, CommandIn)
    assert (decoded.type, decoded.uploads, decoded.request_id) == (type_, ups, request_id)
    assert same(decoded.data, plain(data))


def test_v1_ping() -> None:
    assert v1.decode(CONTROL, control_frame(ping=pb.Ping())) == Ping()


@given(request_id=nonempty_ids)
def test_v1_control_requests(request_id: str) -> None:
    req = K.MESSAGE_KIND_REQUEST
    assert v1.decode(
        CONTROL, control_frame(request_id, req, request_schema=pb.RequestSchema())
    ) == RequestSchema(request_id)
    assert v1.decode(CONTROL, control_frame(request_id, req, request_recording=pb.RequestRecording())) == (
        RequestRecording(request_id)
    )


@given(duration=finite, request_id=nonempty_ids)
def test_v1_request_clip(duration: float, request_id: str) -> None:
    frame = control_frame(
        request_id, K.MESSAGE_KIND_REQUEST, request_clip=pb.RequestClip(duration_seconds=duration)
    )
    assert v1.decode(CONTROL, frame) == RequestClip(duration_seconds=duration, request_id=request_id)


@given(ref=upload_refs)
def test_v1_file_uploaded(ref: UploadRef) -> None:
    payload = pb.FileUploaded(upload_id=ref.upload_id, name=ref.name, mime_type=ref.mime_type, size=ref.size)
    decoded = v1.decode(CONTROL, control_frame(file_uploaded=payload))
    assert decoded == FileUploaded(
        upload_id=ref.upload_id, name=ref.name, mime_type=ref.mime_type, size=ref.size
    )


TRACK_MESSAGES = {
    "publish": pb.PublishTrack,
    "pause": pb.PauseTrack,
    "resume": pb.ResumeTrack,
    "unpublish": pb.UnpublishTrack,
}


@given(verb=verbs, name=texts, request_id=nonempty_ids)
def test_v1_track_verbs(verb: str, name: str, request_id: str) -> None:
    field = f"{verb}_track"
    message = TRACK_MESSAGES[verb](name=name)
    if verb == "publish":
        frame = control_frame(request_id, K.MESSAGE_KIND_REQUEST, **{field: message})
        assert v1.decode(CONTROL, frame) == TrackVerb(verb=verb, name=name, request_id=request_id)
    else:
        assert v1.decode(CONTROL, control_frame(**{field: message})) == TrackVerb(verb=verb, name=name)


STATS = {
    "tracks": [
        {
            "timestampMs": "1732480000000",
            "track": "main_video",
            "kind": "TRACK_KIND_VIDEO",
            "direction": "TRACK_DIRECTION_RECV",
            "unknown5": "7",
            "metrics": [{"name": "fps", "value": 24.0}],
            "frameStages": [{"name": "decode", "totalMs": 3.5, "count": "10"}],
            "codecImplementation": "libvpx",
            "unknown11": True,
        }
    ],
    "connection": {
        "timestampMs": "1732480000000",
        "metrics": [{"name": "time_to_connect_ms", "value": 812.0}],
        "environment": {
            "sdkType": "python",
            "sdkVersion": "1.13.0",
            "os": "linux",
            "osVersion": "6",
            "arch": "x86",
        },
        "messageStages": [{"name": "send", "totalMs": 1.0, "count": "2"}],
    },
}


@given(metric=finite, count=st.integers(min_value=0, max_value=2**64 - 1))
def test_v1_client_stats(metric: float, count: int) -> None:
    stats = ParseDict(STATS, pb.ClientStats())
    stats.tracks[0].metrics[0].value = metric
    stats.tracks[0].frame_stages[0].count = count
    assert v1.decode(CONTROL, control_frame(client_stats=stats)) == ClientStats()


@given(state=json_objects, request_id=nonempty_ids, encoding=st.sampled_from(list(pb.FrameEncoding.values())))
def test_v1_request_step(state: dict, request_id: str, encoding: int) -> None:
    frame = pb.Frame(encoding=encoding, dtype="uint8", shape=[2, 2, 3], data=bytes(12), capture_time_us=5)
    step = pb.RequestStep(
        state=dict_to_struct(state),
        commands=[pb.Command(type="set_prompt")],
        inputs=[
            pb.TrackFrames(track="webcam", kind=pb.TrackKind.TRACK_KIND_VIDEO, frames=[frame], rate=24.0)
        ],
    )
    assert v1.decode(DATA, data_frame(request_id, request_step=step)) == RequestStep(request_id=request_id)


@given(code=texts, message=texts, channel=st.sampled_from([DATA, CONTROL]))
def test_v1_client_error_is_ignored(code: str, message: str, channel: str) -> None:
    err = pb.Error(code=code, message=message)
    frame = (
        control_frame(error=err)
        if channel == CONTROL
        else data_frame(kind=K.MESSAGE_KIND_NOTIFICATION, error=err)
    )
    assert isinstance(v1.decode(channel, frame), Ignored)


def test_v1_errors() -> None:
    with pytest.raises(WireError) as exc:
        v1.decode(CONTROL, '{"scope":"runtime"}')
    assert exc.value.code == "malformed_frame"
    with pytest.raises(WireError) as exc:
        v1.decode(DATA, b"\x0a\x06data_7\x10\x01\x52\xff")  # truncated command
    assert (exc.value.code, exc.value.request_id) == ("malformed_frame", "data_7")
    with pytest.raises(WireError) as exc:
        v1.decode(DATA, data_frame("data_3"))  # no payload
    assert (exc.value.code, exc.value.request_id) == ("invalid_command", "data_3")
    with pytest.raises(WireError) as exc:
        v1.decode(CONTROL, control_frame("ctrl_4", K.MESSAGE_KIND_REQUEST))
    assert (exc.value.code, exc.value.request_id) == ("unknown_runtime_message", "ctrl_4")
    with pytest.raises(WireError) as exc:
        v1.decode(CONTROL, control_frame("", K.MESSAGE_KIND_REQUEST, request_schema=pb.RequestSchema()))
    assert exc.value.code == "malformed_frame"
    with pytest.raises(WireError) as exc:
        v1.decode(DATA, data_frame("data_5", command=pb.Command()))  # command without a name
    assert (exc.value.code, exc.value.request_id) == ("invalid_command", "data_5")
    # A newer client's unknown payload field (here 20) is skipped, leaving no payload.
    with pytest.raises(WireError) as exc:
        v1.decode(CONTROL, control_frame("ctrl_9", K.MESSAGE_KIND_REQUEST) + b"\xa2\x01\x00")
    assert exc.value.request_id == "ctrl_9"


# ---------------------------------------------------------------- v0 outbound


def parse_json(frame: tuple[str, str | bytes] | None, channel: str = DATA) -> dict:
    assert frame is not None and frame[0] == channel and isinstance(frame[1], str)
    parsed = json.loads(frame[1])
    assert frame[1] == json.dumps(parsed, separators=(",", ":")), "v0 frames are compact JSON"
    return parsed


@given(type_=names, data=json_objects, reply_to=request_ids)
def test_v0_model_message(type_: str, data: dict, reply_to: str) -> None:
    # Replies and broadcasts look the same on v0 (no correlation).
    parsed = parse_json(v0.encode(ModelMessageOut(type=type_, data=data, reply_to=reply_to)))
    assert same(parsed, {"scope": "application", "data": {"type": type_, "data": data}})


@given(reply_to=request_ids, code=names, message=texts)
def test_v0_withheld(reply_to: str, code: str, message: str) -> None:
    assert v0.encode(AckOut(reply_to=reply_to)) is None
    assert v0.encode(ErrorOut(code=code, message=message, reply_to=reply_to)) is None


@given(reply_to=nonempty_ids, code=names, message=texts)
def test_v0_control_error(reply_to: str, code: str, message: str) -> None:
    parsed = parse_json(v0.encode(ErrorOut(code, message, reply_to=reply_to, channel=CONTROL)), CONTROL)
    assert parsed == {
        "type": "response",
        "method": "publish_track",
        "request_id": reply_to,
        "error": {"code": code, "message": message},
    }


@given(reply_to=nonempty_ids, name=texts)
def test_v0_track_response(reply_to: str, name: str) -> None:
    parsed = parse_json(v0.encode(TrackResponseOut(name=name, reply_to=reply_to)), CONTROL)
    assert parsed == {
        "type": "response",
        "method": "publish_track",
        "request_id": reply_to,
        "data": {"name": name},
    }


def runtime(type_: str, data: Any) -> dict:
    return {"scope": "runtime", "data": {"type": type_, "data": data}}


@given(openapi=json_objects, capabilities=json_objects, reason=texts, reply_to=request_ids)
def test_v0_runtime_messages(openapi: dict, capabilities: dict, reason: str, reply_to: str) -> None:
    assert same(parse_json(v0.encode(ModelSchemaOut(openapi, reply_to))), runtime("modelSchema", openapi))
    assert same(
        parse_json(v0.encode(ModelCapabilitiesOut(capabilities))), runtime("modelCapabilities", capabilities)
    )
    assert parse_json(v0.encode(ClipFailedOut(reason, reply_to))) == runtime("clipFailed", {"reason": reason})
    assert parse_json(v0.encode(SessionEndedOut(reason))) == runtime("sessionEnded", {"reason": reason})


# ---------------------------------------------------------------- v0 inbound


def app_frame(type_: str, data: dict | None, ups: dict[str, UploadRef]) -> dict:
    inner: dict[str, Any] = {"type": type_}
    if data is not None:
        inner["data"] = data
    if ups:
        inner["uploads"] = {k: vars(v) for k, v in ups.items()}
    return {"scope": "application", "data": inner}


@given(type_=names, data=st.none() | json_objects, ups=uploads, as_bytes=st.booleans())
def test_v0_command(type_: str, data: dict | None, ups: dict[str, UploadRef], as_bytes: bool) -> None:
    text = json.dumps(app_frame(type_, data, ups))
    decoded = v0.decode(DATA, text.encode() if as_bytes else text)
    assert isinstance(decoded, CommandIn)
    assert (decoded.type, decoded.uploads, decoded.request_id) == (type_, ups, "")
    assert same(decoded.data, {} if data is None else data)


@given(ref=upload_refs, duration=numbers)
def test_v0_runtime_inbound(ref: UploadRef, duration: float) -> None:
    def decode(type_: str, data: Any) -> Any:
        return v0.decode(DATA, json.dumps(runtime(type_, data)))

    assert decode("ping", {}) == Ping()
    assert decode("requestSchema", {}) == RequestSchema()
    assert decode("requestCapabilities", {}) == RequestCapabilities()
    assert decode("requestRecording", {}) == RequestRecording()
    assert decode("requestClip", {"duration_seconds": duration}) == RequestClip(
        duration_seconds=float(duration)
    )
    assert decode("fileUploaded", vars(ref)) == FileUploaded(ref.upload_id, ref.name, ref.mime_type, ref.size)


@given(verb=st.sampled_from(["pause", "resume", "unpublish"]), name=texts)
def test_v0_track_notifications(verb: str, name: str) -> None:
    frame = {"type": "notification", "event": f"{verb}_track", "data": {"name": name}}
    assert v0.decode(CONTROL, json.dumps(frame)) == TrackVerb(verb=verb, name=name)


@given(request_id=nonempty_ids, name=texts)
def test_v0_publish_request(request_id: str, name: str) -> None:
    frame = {"type": "request", "method": "publish_track", "request_id": request_id, "data": {"name": name}}
    assert v0.decode(CONTROL, json.dumps(frame)) == TrackVerb(
        verb="publish", name=name, request_id=request_id
    )


V0_ERRORS = [
    (DATA, "{not json", "malformed_frame"),
    (DATA, b"\xff\xfe", "malformed_frame"),
    (DATA, "[1, 2]", "malformed_frame"),
    (DATA, '"text"', "malformed_frame"),
    (DATA, "[" * 100_000, "malformed_frame"),
    (DATA, '{"data":{"type":"ping"}}', "unknown_scope"),
    (DATA, '{"scope":"model","data":{"type":"ping"}}', "unknown_scope"),
    (DATA, '{"scope":"runtime","data":"ping"}', "malformed_frame"),
    (DATA, '{"scope":"runtime","data":{"data":{}}}', "malformed_frame"),
    (DATA, '{"scope":"runtime","data":{"type":"mediaStats","data":{}}}', "unknown_runtime_message"),
    (DATA, '{"scope":"runtime","data":{"type":"ping","data":[]}}', "malformed_frame"),
    (
        DATA,
        '{"scope":"runtime","data":{"type":"requestClip","data":{"duration_seconds":"5"}}}',
        "malformed_frame",
    ),
    (DATA, '{"scope":"runtime","data":{"type":"fileUploaded","data":{"name":"x"}}}', "malformed_frame"),
    (
        DATA,
        '{"scope":"runtime","data":{"type":"requestClip","data":{"duration_seconds":1' + "0" * 400 + "}}}",
        "malformed_frame",
    ),
    (
        DATA,
        '{"scope":"runtime","data":{"type":"fileUploaded","data":{"upload_id":"u","size":1.5}}}',
        "malformed_frame",
    ),
    (DATA, '{"scope":"application","data":{"data":{}}}', "invalid_command"),
    (DATA, '{"scope":"application","data":{"type":7}}', "invalid_command"),
    (DATA, '{"scope":"application","data":{"type":"x","data":[1]}}', "invalid_command"),
    (DATA, '{"scope":"application","data":{"type":"x","uploads":[]}}', "invalid_command"),
    (DATA, '{"scope":"application","data":{"type":"x","uploads":{"image":"up-1"}}}', "invalid_command"),
    (DATA, '{"scope":"application","data":{"type":"x","uploads":{"image":{"name":"a"}}}}', "invalid_command"),
    (CONTROL, '{"type":"notification","event":"jump_track","data":{"name":"a"}}', "unknown_runtime_message"),
    (CONTROL, '{"type":"notification","event":"pause_track","data":{"name":5}}', "malformed_frame"),
    (CONTROL, '{"type":"request","method":"publish_track","data":{"name":"a"}}', "malformed_frame"),
    (CONTROL, '{"scope":"runtime","data":{"type":"ping"}}', "unknown_runtime_message"),
]


@pytest.mark.parametrize(("channel", "raw", "code"), V0_ERRORS)
def test_v0_errors(channel: str, raw: str | bytes, code: str) -> None:
    with pytest.raises(WireError) as exc:
        v0.decode(channel, raw)
    assert exc.value.code == code
    assert exc.value.message and len(exc.value.message) < 200


def test_v0_control_error_keeps_request_id() -> None:
    with pytest.raises(WireError) as exc:
        v0.decode(CONTROL, '{"type":"request","method":"take_track","request_id":"r9","data":{}}')
    assert (exc.value.code, exc.value.request_id) == ("unknown_runtime_message", "r9")


# ---------------------------------------------------------------- fuzz: decode never crashes

FUZZ = settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])


def only_wire_errors(codec: V0Codec | V1Codec, channel: str, raw: str | bytes) -> None:
    try:
        codec.decode(channel, raw)
    except WireError as exc:
        assert isinstance(exc.code, str) and isinstance(exc.message, str) and isinstance(exc.request_id, str)


@FUZZ
@given(raw=st.binary(max_size=200) | st.text(max_size=200), channel=CHANNELS)
def test_fuzz_arbitrary(raw: str | bytes, channel: str) -> None:
    only_wire_errors(v0, channel, raw)
    only_wire_errors(v1, channel, raw)


def _valid_v1_frames() -> list[tuple[str, bytes]]:
    command = pb.Command(type="set_image", data=dict_to_struct({"a": [1, {"b": None}], "c": "d"}))
    command.uploads["image"].CopyFrom(pb.UploadReference(upload_id="up-1", name="x.png", size=15))
    stats = ParseDict(STATS, pb.ClientStats())
    return [
        (DATA, data_frame("data_1", command=command)),
        (DATA, data_frame("data_2", request_step=pb.RequestStep(commands=[command]))),
        (CONTROL, control_frame(client_stats=stats)),
        (
            CONTROL,
            control_frame("ctrl_1", K.MESSAGE_KIND_REQUEST, request_clip=pb.RequestClip(duration_seconds=5)),
        ),
        (CONTROL, control_frame(file_uploaded=pb.FileUploaded(upload_id="up-1", size=3))),
    ]


@FUZZ
@given(
    base=st.sampled_from(_valid_v1_frames()),
    cut=st.integers(min_value=0, max_value=400),
    flips=st.lists(st.tuples(st.integers(min_value=0, max_value=400), st.integers(0, 255)), max_size=4),
    tail=st.binary(max_size=8),
    channel=CHANNELS,
)
def test_fuzz_v1_mutated(base: tuple[str, bytes], cut: int, flips: list, tail: bytes, channel: str) -> None:
    raw = bytearray(base[1][:cut] if cut < len(base[1]) else base[1])
    for pos, byte in flips:
        if raw:
            raw[pos % len(raw)] = byte
    only_wire_errors(v1, channel, bytes(raw) + tail)
    only_wire_errors(v1, base[0], bytes(raw) + tail)


envelope_keys = st.sampled_from(
    ["scope", "data", "type", "uploads", "event", "method", "request_id", "upload_id", "name", "size"]
)
envelope_values = st.recursive(
    st.one_of(
        json_scalars,
        st.sampled_from(["application", "runtime", "ping", "fileUploaded", "requestClip", "request"]),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(envelope_keys, children, max_size=5)
    ),
    max_leaves=15,
)


@FUZZ
@given(obj=st.dictionaries(envelope_keys, envelope_values, max_size=5), channel=CHANNELS)
def test_fuzz_v0_structured(obj: dict, channel: str) -> None:
    only_wire_errors(v0, channel, json.dumps(obj))

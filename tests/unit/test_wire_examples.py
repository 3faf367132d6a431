"""Byte-exact checks against the example frames of docs/PROTOCOL.md §3.7, plus §3.3's field-number tables."""

from __future__ import annotations

import json

import pytest

from mock_server.wire import V0Codec, V1Codec, codec_for_first_frame, provisional_codec
from mock_server.wire import reactor_wire_pb as pb
from mock_server.wire.common import (
    CONTROL,
    DATA,
    AckOut,
    ClipFailedOut,
    CommandIn,
    ErrorOut,
    FileUploaded,
    ModelMessageOut,
    Ping,
    RequestSchema,
    TrackVerb,
)
from mock_server.wire.v1 import to_value


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


PING = h("10 03 52 00")
RESUME_MAIN_VIDEO = h("10 03 8a 01 0c 0a 0a 6d 61 69 6e 5f 76 69 64 65 6f")
SET_PROMPT_DATA_1 = h(
    "0a 06 64 61 74 61 5f 31 10 01 52 21 0a 0a 73 65 74 5f 70 72 6f 6d 70 74"
    " 12 13 0a 11 0a 06 70 72 6f 6d 70 74 12 07 1a 05 61 20 63 61 74"
)
ACK_DATA_1 = h("0a 06 64 61 74 61 5f 31 10 02")
PROMPT_ACCEPTED_DATA_1 = h(
    "0a 06 64 61 74 61 5f 31 10 02 52 26 0a 0f 70 72 6f 6d 70 74 5f 61 63 63 65 70 74 65 64"
    " 12 13 0a 11 0a 06 70 72 6f 6d 70 74 12 07 1a 05 61 20 63 61 74"
)
ERROR_DATA_2 = h(
    "0a 06 64 61 74 61 5f 32 10 02 c2 02 16 0a 0f 69 6e 76 61 6c 69 64 5f 63 6f 6d 6d 61 6e 64 12 03 62 61 64"
)
REQUEST_SCHEMA_CTRL_1 = h("0a 06 63 74 72 6c 5f 31 10 01 5a 00")
VALUE_33 = h("11 00 00 00 00 00 80 40 40")

v0 = V0Codec()
v1 = V1Codec()


# ---------------------------------------------------------------- v1, client -> server (decode)


def test_py_ping_notification() -> None:
    assert v1.decode(CONTROL, PING) == Ping()
    built = pb.ControlClientMessage(kind=pb.MessageKind.MESSAGE_KIND_NOTIFICATION, ping=pb.Ping())
    assert built.SerializeToString() == PING


def test_py_resume_track() -> None:
    assert v1.decode(CONTROL, RESUME_MAIN_VIDEO) == TrackVerb(verb="resume", name="main_video")
    built = pb.ControlClientMessage(
        kind=pb.MessageKind.MESSAGE_KIND_NOTIFICATION, resume_track=pb.ResumeTrack(name="main_video")
    )
    assert built.SerializeToString() == RESUME_MAIN_VIDEO


def test_py_command_set_prompt() -> None:
    decoded = v1.decode(DATA, SET_PROMPT_DATA_1)
    assert decoded == CommandIn(type="set_prompt", data={"prompt": "a cat"}, request_id="data_1")


def test_request_schema() -> None:
    assert v1.decode(CONTROL, REQUEST_SCHEMA_CTRL_1) == RequestSchema(request_id="ctrl_1")


# ---------------------------------------------------------------- v1, server -> client (encode)


def test_bodyless_ack() -> None:
    assert v1.encode(AckOut(reply_to="data_1")) == (DATA, ACK_DATA_1)


def test_prompt_accepted_reply() -> None:
    out = ModelMessageOut(type="prompt_accepted", data={"prompt": "a cat"}, reply_to="data_1")
    assert v1.encode(out) == (DATA, PROMPT_ACCEPTED_DATA_1)


def test_error_reply() -> None:
    out = ErrorOut(code="invalid_command", message="bad", reply_to="data_2")
    assert v1.encode(out) == (DATA, ERROR_DATA_2)


def test_value_33() -> None:
    assert to_value(33).SerializeToString() == VALUE_33
    assert to_value(33.0).SerializeToString() == VALUE_33


def test_ints_arrive_as_doubles() -> None:
    frame = pb.DataClientMessage(request_id="data_9", kind=pb.MessageKind.MESSAGE_KIND_REQUEST)
    frame.command.type = "x"
    frame.command.data.update({"n": 3})
    decoded = v1.decode(DATA, frame.SerializeToString())
    assert decoded.data == {"n": 3.0} and isinstance(decoded.data["n"], float)


# ---------------------------------------------------------------- v0 (JSON text)


def test_v0_examples() -> None:
    assert v0.decode(
        DATA, '{"scope":"application","data":{"type":"set_prompt","data":{"prompt":"a cat"}}}'
    ) == (CommandIn(type="set_prompt", data={"prompt": "a cat"}))
    out = ModelMessageOut(type="prompt_accepted", data={"prompt": "a cat", "chunk": 0})
    assert v0.encode(out) == (
        DATA,
        '{"scope":"application","data":{"type":"prompt_accepted","data":{"prompt":"a cat","chunk":0}}}',
    )
    assert v0.decode(DATA, '{"scope":"runtime","data":{"type":"ping","data":{}}}') == Ping()
    uploaded = (
        '{"scope":"runtime","data":{"type":"fileUploaded","data":{"upload_id":"up-1","name":"ref.png",'
        '"mime_type":"image/png","size":15}}}'
    )
    assert v0.decode(DATA, uploaded) == FileUploaded(
        upload_id="up-1", name="ref.png", mime_type="image/png", size=15
    )
    assert v0.encode(ClipFailedOut(reason="recorder disabled")) == (
        DATA,
        '{"scope":"runtime","data":{"type":"clipFailed","data":{"reason":"recorder disabled"}}}',
    )


def test_v0_set_image_with_uploads() -> None:
    frame = {
        "scope": "application",
        "data": {
            "type": "set_image",
            "data": {},
            "uploads": {
                "image": {"upload_id": "up-1", "name": "ref.png", "mime_type": "image/png", "size": 15}
            },
        },
    }
    decoded = v0.decode(DATA, json.dumps(frame))
    assert decoded.type == "set_image" and decoded.data == {}
    assert decoded.uploads["image"].upload_id == "up-1" and decoded.uploads["image"].size == 15


def test_v0_control_examples() -> None:
    assert v0.decode(
        CONTROL, '{"type":"notification","event":"resume_track","data":{"name":"main_video"}}'
    ) == (TrackVerb(verb="resume", name="main_video"))
    request = '{"type":"request","method":"publish_track","request_id":"r1","data":{"name":"webcam"}}'
    assert v0.decode(CONTROL, request) == TrackVerb(verb="publish", name="webcam", request_id="r1")
    refused = ErrorOut(
        code="publish_refused", message="track already published", reply_to="r1", channel=CONTROL
    )
    assert v0.encode(refused) == (
        CONTROL,
        '{"type":"response","method":"publish_track","request_id":"r1",'
        '"error":{"code":"publish_refused","message":"track already published"}}',
    )


# ---------------------------------------------------------------- §3.3 tables and §3.6 selection

ENVELOPES = {
    "ControlClientMessage": {
        "request_id": 1,
        "kind": 2,
        "ping": 10,
        "request_schema": 11,
        "file_uploaded": 12,
        "request_clip": 13,
        "request_recording": 14,
        "publish_track": 15,
        "pause_track": 16,
        "resume_track": 17,
        "unpublish_track": 18,
        "client_stats": 19,
        "error": 40,
    },
    "ControlServerMessage": {
        "request_id": 1,
        "kind": 2,
        "model_schema": 10,
        "clip_ready": 11,
        "clip_failed": 12,
        "moderation": 13,
        "publish_track": 14,
        "session_ended": 15,
        "error": 40,
    },
    "DataClientMessage": {"request_id": 1, "kind": 2, "command": 10, "request_step": 11, "error": 40},
    "DataServerMessage": {"request_id": 1, "kind": 2, "message": 10, "step_result": 11, "error": 40},
}


@pytest.mark.parametrize("name", sorted(ENVELOPES))
def test_envelope_tables(name: str) -> None:
    descriptor = getattr(pb, name).DESCRIPTOR
    assert {f.name: f.number for f in descriptor.fields} == ENVELOPES[name]
    payload = descriptor.oneofs_by_name["payload"]
    assert sorted(f.number for f in payload.fields) == sorted(n for n in ENVELOPES[name].values() if n >= 10)


def test_codec_selection() -> None:
    assert codec_for_first_frame('{"scope":"runtime"}').name == "v0"
    assert codec_for_first_frame(b'  {"scope":"runtime"}').name == "v0"
    assert codec_for_first_frame(b"[1]").name == "v0"
    assert codec_for_first_frame(PING).name == "v1"
    chunking = "v=0\r\na=x-reactor-dc-chunking:1 max-message-size=67108864\r\n"
    metadata = "v=0\r\na=x-reactor-frame-metadata:1\r\n"
    assert provisional_codec(flat_route=True, sdk_type="python", offer_sdp=chunking).name == "v0"
    assert provisional_codec(flat_route=False, sdk_type="python", offer_sdp="v=0\r\n").name == "v1"
    assert provisional_codec(flat_route=False, sdk_type=None, offer_sdp=chunking).name == "v1"
    assert provisional_codec(flat_route=False, sdk_type="js", offer_sdp=metadata).name == "v1"
    assert (
        provisional_codec(flat_route=False, sdk_type=None, offer_sdp="v=0\r\na=x-reactor-other:1\r\n").name
        == "v0"
    )
    assert provisional_codec(flat_route=False, sdk_type=None, offer_sdp="").name == "v0"

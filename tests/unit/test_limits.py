"""Limits on client input (docs/LIMITS.md): the probe's exact inputs, and the worst case under the limits.

Every defect of the hardening probe (issue 12) is replayed at the unit level: the codec decodes the exact
frame, or the model handles the exact command, and the test asserts a clear error and an unchanged state.
"""

from __future__ import annotations

import io
import json
import struct
import time
import zlib
from typing import Any

import pytest
from aiortc.rtcsctptransport import LOCAL_MAX_MESSAGE_SIZE
from google.protobuf.struct_pb2 import Struct
from PIL import Image

from mock_server.constants import SNAPSHOT_CAPACITY
from mock_server.model import limits as L
from mock_server.model import messages as m
from mock_server.model.commands import CommandRejected, validate_command
from mock_server.model.helios import Helios, Outcome
from mock_server.model.images import ImageRejected, UploadedFile, condition_image
from mock_server.textlimits import JsonRejected, clip, nesting_depth, parse_json_bounded
from mock_server.wire import CONTROL, DATA, V0Codec, V1Codec, WireError
from mock_server.wire import common as wc
from mock_server.wire import reactor_wire_pb as pb
from mock_server.wire.common import CommandIn, ErrorOut, FileUploaded, ModelMessageOut, TrackVerb

LIMIT = 262_144  # the data channel's max-message-size
MARGIN = 0.8  # a message under the limits must stay below 80 % of it
ASTRAL = "\U0001f98a"  # 🦊: v0 JSON writes it as two \uXXXX escapes (12 bytes), v1 as 4 UTF-8 bytes
CHARACTERS = ["a", '"', "\\", "\t", "\n", "é", "\u2028", "\uffff", ASTRAL]  # one per encoding class
LONG_REQUEST_ID = "r" * wc.MAX_REQUEST_ID_CHARS


def helios() -> Helios:
    return Helios(draw_seed=lambda: 7)


def handle(h: Helios, name: str, **params: Any) -> Outcome:
    return h.handle(name, validate_command(name, params), {})


def v0_frame(name: str, data: Any) -> str:
    return json.dumps({"scope": "application", "data": {"type": name, "data": data}})


def v1_command(name: str, data: dict[str, Any], request_id: str = "data_1") -> bytes:
    struct_data = Struct()
    struct_data.update(data)
    cmd = pb.Command(type=name, data=struct_data)
    kind = pb.MessageKind.MESSAGE_KIND_REQUEST
    return pb.DataClientMessage(request_id=request_id, kind=kind, command=cmd).SerializeToString()


def wire_sizes(type_: str, data: dict[str, Any]) -> tuple[int, int]:
    """(v0 bytes, v1 bytes) of one model message as an answer (v1 carries the longest request_id)."""
    frame0 = V0Codec().encode(ModelMessageOut(type_, data))
    frame1 = V1Codec().encode(ModelMessageOut(type_, data, reply_to=LONG_REQUEST_ID))
    assert frame0 is not None and frame1 is not None
    return wc.frame_size(frame0[1]), wc.frame_size(frame1[1])


def rejected(name: str, params: dict[str, Any]) -> CommandRejected:
    with pytest.raises(CommandRejected) as info:
        validate_command(name, params)
    assert info.value.code == "invalid_command"
    return info.value


def wire_error(codec: V0Codec | V1Codec, raw: str | bytes, channel: str = DATA) -> WireError:
    with pytest.raises(WireError) as info:
        codec.decode(channel, raw)
    assert len(info.value.message) <= 300, info.value.message  # short enough for a log line
    return info.value


# ------------------------------------------------------------------------------ worst case under the limits


def test_frame_limit_is_what_aiortc_advertises() -> None:
    assert wc.MAX_FRAME_BYTES == LOCAL_MAX_MESSAGE_SIZE == LIMIT


def worst_state(char: str) -> dict[str, Any]:
    """The largest ``state`` the limits allow: a full-length current prompt, the schedule full in entries
    and characters, at the latest chunks, every counter at ten digits."""
    share, extra = divmod(L.SCHEDULE_MAX_CHARS, L.SCHEDULE_MAX_ENTRIES)
    schedule = {
        str(L.CHUNK_MAX - i): char * (share + (1 if i < extra else 0)) for i in range(L.SCHEDULE_MAX_ENTRIES)
    }
    assert sum(map(len, schedule.values())) == L.SCHEDULE_MAX_CHARS
    return m.State(
        started=True,
        running=True,
        paused=False,
        image_set=True,
        current_chunk=9_999_999_999,
        current_frame=329_999_999_967,
        current_prompt=char * L.PROMPT_MAX_CHARS,
        image_strength=0.30000000000000004,
        scheduled_prompts=schedule,
    ).model_dump()


def worst_snapshot_list(char: str) -> dict[str, Any]:
    entry = {"label": char * L.LABEL_MAX_CHARS, "chunk": 9_999_999_999, "frame": 329_999_999_967}
    snapshots = [m.SnapshotEntry(snapshot_index=i, **entry) for i in range(SNAPSHOT_CAPACITY)]
    return m.SnapshotList(
        snapshots=snapshots, count=SNAPSHOT_CAPACITY, capacity=SNAPSHOT_CAPACITY
    ).model_dump()


@pytest.mark.parametrize(("type_", "build"), [("state", worst_state), ("snapshot_list", worst_snapshot_list)])
def test_worst_case_message_fits_on_both_encodings(type_: str, build: Any) -> None:
    sizes = {char: wire_sizes(type_, build(char)) for char in CHARACTERS}
    v0 = max(size[0] for size in sizes.values())
    v1 = max(size[1] for size in sizes.values())
    assert sizes[ASTRAL][0] == v0  # the astral character is the worst case on v0 (12 bytes each)
    assert v0 < MARGIN * LIMIT and v1 < MARGIN * LIMIT, (type_, v0, v1)


def test_every_message_with_one_prompt_or_label_fits() -> None:
    prompt, label = ASTRAL * L.PROMPT_MAX_CHARS, ASTRAL * L.LABEL_MAX_CHARS
    payloads = [
        m.ChunkComplete(chunk_index=10**10, frames_emitted=33, active_prompt=prompt),
        m.GenerationStarted(prompt=prompt, chunk_index=0),
        m.PromptAccepted(prompt=prompt, chunk=L.CHUNK_MAX),
        m.SnapshotSaved(snapshot_index=49, label=label, chunk=10**10, frame=33 * 10**10, count=50),
        m.RewindComplete(snapshot_index=49, label=label, chunk=10**10, frame=33 * 10**10),
    ]
    for payload in payloads:
        assert max(wire_sizes(type(payload).TYPE, payload.model_dump())) < 0.1 * LIMIT


def test_error_replies_stay_small_whatever_they_quote() -> None:
    error = WireError("invalid_command", ASTRAL * 500_000, LONG_REQUEST_ID)
    frame = V1Codec().encode(ErrorOut(error.code, error.message, reply_to=error.request_id))
    assert frame is not None and wc.frame_size(frame[1]) < 0.05 * LIMIT
    assert len(CommandRejected("invalid_command", "x" * 500_000).message) < 1_100


# ------------------------------------------------------------------------------ defect 1: state too large


def test_300_schedule_prompts_of_1000_characters_stop_at_the_limit() -> None:
    h = helios()
    outcomes = [handle(h, "schedule_prompt", prompt="p" * 1_000, chunk=i) for i in range(300)]
    accepted = [o for o in outcomes if o.accepted]
    assert len(accepted) == L.SCHEDULE_MAX_CHARS // 1_000  # 14: then the characters run out
    refusal = outcomes[len(accepted)].broadcasts[0]
    assert refusal.type == "command_error" and refusal.data == {
        "command": "schedule_prompt",
        "reason": "pending prompts would total 15000 characters; the limit is 14000",
    }
    state = h.state_message()
    assert state == accepted[-1].state  # every refusal left the state as it was
    assert max(wire_sizes("state", state.data)) < MARGIN * LIMIT


def test_schedule_is_bounded_in_entries_and_a_replacement_is_always_possible() -> None:
    h = helios()
    for chunk in range(1, L.SCHEDULE_MAX_ENTRIES + 1):
        assert handle(h, "schedule_prompt", prompt="short", chunk=chunk).accepted
    before = h.state_message()
    for out in (
        handle(h, "schedule_prompt", prompt="one more", chunk=99),
        handle(h, "set_prompt", prompt="x"),
    ):
        assert not out.accepted and out.state is None
        assert out.broadcasts[0].data["reason"].startswith("schedule is full (16 pending prompts)")
    assert h.state_message() == before
    assert handle(h, "schedule_prompt", prompt="replaced", chunk=3).accepted  # same chunk: no new entry


def test_set_conditioning_over_the_schedule_limit_changes_nothing() -> None:
    h = helios()
    for chunk in range(1, L.SCHEDULE_MAX_ENTRIES + 1):
        handle(h, "schedule_prompt", prompt="s", chunk=chunk)
    before = h.state_message()
    ref = {"upload_id": "u", "name": "a.png", "mime_type": "image/png", "size": 1}
    out = h.handle(
        "set_conditioning", validate_command("set_conditioning", {"prompt": "x", "image": ref}), {}
    )
    assert not out.accepted and out.broadcasts[0].data["reason"].startswith("schedule is full")
    assert h.state_message() == before and h.image is None


def test_one_prompt_of_66000_non_ascii_characters() -> None:
    prompt = "é" * 66_000
    # as Python's json.dumps writes it (six bytes each): over the frame limit, refused at decode
    escaped = v0_frame("set_prompt", {"prompt": prompt})
    assert len(escaped) > LIMIT
    error = wire_error(V0Codec(), escaped)
    assert error.code == "malformed_frame" and f"the limit is {LIMIT} bytes" in error.message
    # as JavaScript's JSON.stringify writes it (raw UTF-8, two bytes each): decoded, then rejected
    raw = json.dumps(
        {"scope": "application", "data": {"type": "set_prompt", "data": {"prompt": prompt}}},
        ensure_ascii=False,
    )
    cmd = V0Codec().decode(DATA, raw)
    assert isinstance(cmd, CommandIn)
    assert (
        rejected("set_prompt", cmd.data).message
        == "set_prompt: prompt is 66000 characters; the limit is 2000"
    )
    # the longest accepted prompt
    h = helios()
    assert handle(h, "set_prompt", prompt="é" * L.PROMPT_MAX_CHARS).accepted
    assert rejected("set_prompt", {"prompt": "é" * (L.PROMPT_MAX_CHARS + 1)})


def test_v1_command_with_a_262000_character_name_gets_a_short_error() -> None:
    raw = v1_command("n" * 262_000, {}, request_id="data_7")
    assert len(raw) <= LIMIT
    error = wire_error(V1Codec(), raw)
    assert (error.code, error.request_id) == ("invalid_command", "data_7")
    assert error.message.startswith("the command name is 262000 characters; the limit is 64")
    frame = V1Codec().encode(ErrorOut(error.code, error.message, reply_to=error.request_id))
    assert frame is not None and wc.frame_size(frame[1]) < 1_000


def test_v0_command_name_is_bounded_too() -> None:
    error = wire_error(V0Codec(), v0_frame("n" * 200_000, {}))
    assert error.code == "invalid_command" and "the limit is 64" in error.message


# ------------------------------------------------------------------------------ defect 2: lone surrogates


def test_lone_surrogate_in_a_v0_prompt_is_rejected_at_decode() -> None:
    frame = '{"scope":"application","data":{"type":"set_prompt","data":{"prompt":"fox \\ud800 snow"}}}'
    json.loads(frame)  # valid JSON...
    for raw in (frame, frame.encode()):
        error = wire_error(V0Codec(), raw)
        assert error.code == "malformed_frame"
        assert "lone UTF-16 surrogate in the string 'fox \\ud800 snow'" in error.message
        error.message.encode("utf-8")  # ...and the error itself is printable text
    low = '{"scope":"runtime","data":{"type":"ping","data":{"\\udc00":1}}}'  # in a key, low half
    assert wire_error(V0Codec(), low).code == "malformed_frame"
    # a proper pair is one character
    pair = '{"scope":"application","data":{"type":"set_prompt","data":{"prompt":"fox \\ud83e\\udd8a"}}}'
    cmd = V0Codec().decode(DATA, pair)
    assert isinstance(cmd, CommandIn) and cmd.data == {"prompt": "fox " + ASTRAL}


def test_surrogate_bytes_in_a_v1_frame_are_malformed() -> None:
    good = v1_command("set_prompt", {"prompt": "fox XXX snow"})
    bad = good.replace(b"XXX", b"\xed\xa0\x80")  # U+D800 in CESU-8: not UTF-8
    error = wire_error(V1Codec(), bad)
    assert (error.code, error.request_id) == ("malformed_frame", "data_1")


@pytest.mark.parametrize("prompt", ["fox\x00snow", "fox\x1bsnow", "fox\x7fsnow", "\x0c"])
def test_control_characters_in_prompts_and_labels_are_rejected(prompt: str) -> None:
    msg = rejected("set_prompt", {"prompt": prompt}).message
    assert "must not hold control characters" in msg
    assert "must not hold control characters" in rejected("save_snapshot", {"label": prompt}).message


def test_tab_and_line_breaks_are_allowed() -> None:
    assert validate_command("set_prompt", {"prompt": "a fox\n\tin snow\r\n"})
    assert validate_command("save_snapshot", {"label": "line 1\nline 2"})


# ------------------------------------------------------------------------------ defect 3: deep nesting


def nested(depth: int) -> str:
    """A v0 set_prompt whose prompt is an array nested so that the whole frame is ``depth`` levels deep."""
    inner = depth - 3  # frame object, its data, the command data
    return (
        '{"scope":"application","data":{"type":"set_prompt","data":{"prompt":'
        + "[" * inner
        + "]" * inner
        + "}}}"
    )


@pytest.mark.parametrize("depth", [33, 500, 999, 5_000])
def test_deep_v0_frames_are_rejected_without_recursion_error(depth: int) -> None:
    error = wire_error(V0Codec(), nested(depth))
    assert error.code == "malformed_frame"
    assert "nested" in error.message


def test_frames_up_to_the_depth_limit_decode() -> None:
    cmd = V0Codec().decode(DATA, nested(wc.MAX_JSON_DEPTH))
    assert isinstance(cmd, CommandIn)
    assert rejected("set_prompt", cmd.data).message.startswith("set_prompt: prompt must be a string")


def test_deep_v1_command_data_is_rejected() -> None:
    data: Any = []
    for _ in range(40):  # lists: a dict costs protobuf three nesting levels, and upb stops at 100 itself
        data = [data]
    error = wire_error(V1Codec(), v1_command("set_prompt", {"prompt": data}))
    assert (error.code, error.request_id) == ("invalid_command", "data_1")


def test_nesting_depth_counts_without_recursion() -> None:
    deep: Any = []
    for _ in range(100_000):
        deep = [deep]
    assert nesting_depth(deep, 32) == 33  # stops counting past the limit
    assert nesting_depth({"a": [1, {"b": []}]}, 32) == 4
    assert nesting_depth("text", 32) == 0


# ------------------------------------------------------------------------------ defect 5: sizes and names


def test_v0_frame_over_the_max_message_size_is_rejected() -> None:
    frame = v0_frame("set_prompt", {"prompt": "p" * LIMIT})
    error = wire_error(V0Codec(), frame)
    assert error.code == "malformed_frame" and error.message.startswith(f"frame is {len(frame)} bytes")
    exactly = '{"scope":"runtime","data":{"type":"ping","data":{"pad":"' + "p" * (LIMIT - 60) + '"}}}'
    assert len(exactly) == LIMIT
    V0Codec().decode(DATA, exactly)  # the limit itself is allowed


def test_v1_frame_over_the_max_message_size_is_rejected() -> None:
    raw = v1_command("set_prompt", {"prompt": "p" * LIMIT}, request_id="data_9")
    error = wire_error(V1Codec(), raw)
    assert (error.code, error.request_id) == ("malformed_frame", "data_9")
    assert f"the limit is {LIMIT} bytes" in error.message


def test_v1_request_id_is_bounded() -> None:
    raw = v1_command("start", {}, request_id="r" * (wc.MAX_REQUEST_ID_CHARS + 1))
    error = wire_error(V1Codec(), raw)
    assert error.code == "malformed_frame" and error.request_id == ""
    # a frame too large (or unreadable) whose leading request_id is too long is not correlated either
    huge_id = v1_command("start", {}, request_id="r" * 262_000) + b"\x00" * 300
    assert wire_error(V1Codec(), huge_id).request_id == ""
    assert wire_error(V1Codec(), huge_id[:-300] + b"\xff").request_id == ""
    assert isinstance(V1Codec().decode(DATA, v1_command("start", {}, request_id=LONG_REQUEST_ID)), CommandIn)


def test_names_and_upload_fields_are_bounded_at_decode() -> None:
    huge = "n" * 200_000
    v0, v1 = V0Codec(), V1Codec()
    runtime = json.dumps({"scope": "runtime", "data": {"type": huge}})
    assert wire_error(v0, runtime).code == "malformed_frame"
    uploaded = json.dumps({"scope": "runtime", "data": {"type": "fileUploaded", "data": {"upload_id": huge}}})
    assert "'upload_id' is 200000 characters; the limit is 256" in wire_error(v0, uploaded).message
    track = json.dumps({"type": "notification", "event": "pause_track", "data": {"name": huge}})
    assert wire_error(v0, track, CONTROL).code == "malformed_frame"
    refs = {"image": {"upload_id": "u", "name": huge, "mime_type": "image/png", "size": 1}}
    app = json.dumps({"scope": "application", "data": {"type": "set_image", "uploads": refs}})
    assert wire_error(v0, app).code == "invalid_command"
    kind = pb.MessageKind.MESSAGE_KIND_NOTIFICATION
    pause = pb.ControlClientMessage(kind=kind, pause_track=pb.PauseTrack(name=huge)).SerializeToString()
    assert wire_error(v1, pause, CONTROL).code == "malformed_frame"
    notice = pb.ControlClientMessage(kind=kind, file_uploaded=pb.FileUploaded(upload_id="u", mime_type=huge))
    assert wire_error(v1, notice.SerializeToString(), CONTROL).code == "malformed_frame"
    ok = v0.decode(
        CONTROL, json.dumps({"type": "notification", "event": "pause_track", "data": {"name": "main_video"}})
    )
    assert ok == TrackVerb(verb="pause", name="main_video")
    assert isinstance(
        v1.decode(
            CONTROL,
            pb.ControlClientMessage(
                kind=kind, file_uploaded=pb.FileUploaded(upload_id="u")
            ).SerializeToString(),
        ),
        FileUploaded,
    )


def test_rejection_messages_never_quote_200kb() -> None:
    huge = "n" * 200_000
    assert len(rejected(huge, {}).message) < 400  # the name clipped, then the list of known commands
    assert len(rejected("set_prompt", {huge: 1, "prompt": "p"}).message) < 300
    assert len(rejected("set_prompt", {"prompt": huge}).message) < 300
    assert len(rejected("save_snapshot", {"label": huge}).message) < 300
    ref = {"upload_id": huge, "name": "a.png", "mime_type": "image/png", "size": 1}
    assert len(rejected("set_image", {"image": ref}).message) < 300


@pytest.mark.parametrize(
    ("name", "params", "expected"),
    [
        ("schedule_prompt", {"prompt": "p", "chunk": L.CHUNK_MAX + 1}, "chunk must be between 0 and 1000000"),
        ("set_seed", {"seed": 2**53}, "seed must be between -1 and 9007199254740991"),
        ("set_seed", {"seed": 1e308}, "seed must be between -1 and 9007199254740991"),
        ("save_snapshot", {"label": "l" * 201}, "label is 201 characters; the limit is 200"),
        ("set_prompt", {"prompt": "p", "extra": 1}, "unexpected parameter 'extra'; set_prompt takes prompt"),
    ],
)
def test_numbers_and_strings_over_their_limit(name: str, params: dict[str, Any], expected: str) -> None:
    assert expected in rejected(name, params).message


def test_largest_accepted_values() -> None:
    h = helios()
    assert handle(h, "schedule_prompt", prompt="late", chunk=L.CHUNK_MAX).accepted
    assert handle(h, "set_seed", seed=L.SEED_MAX).accepted and h.seed == L.SEED_MAX
    assert validate_command("save_snapshot", {"label": ASTRAL * L.LABEL_MAX_CHARS})
    assert validate_command(
        "set_image",
        {"image": {"upload_id": "u", "name": "n", "mime_type": "image/png", "size": 1}, "transition": "cut"},
    )


# ------------------------------------------------------------------------------ image pixels


def png_header_only(width: int, height: int) -> bytes:
    """A grey PNG of width x height whose pixels compress to almost nothing (written row by row)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    packer = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte 0, then zeros
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_a_12000_by_12000_png_is_refused_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    data = png_header_only(12_000, 12_000)
    assert len(data) < 200_000  # the probe's was 140 KB
    decoded: list[str] = []
    monkeypatch.setattr(Image.Image, "load", lambda self: decoded.append("load"))
    t0 = time.perf_counter()
    with pytest.raises(ImageRejected) as info:
        condition_image(UploadedFile("u", "bomb.png", "image/png", data))
    elapsed = time.perf_counter() - t0
    assert info.value.reason == "image is 12000x12000 pixels; the limit is 16777216 pixels (e.g. 4096x4096)"
    assert decoded == [], "pixels were decoded before the size check"
    print(f"refused in {elapsed * 1000:.1f} ms")


def test_pillows_own_bomb_error_gets_the_same_kind_of_refusal() -> None:
    data = png_header_only(20_000, 10_000)  # 200 M pixels: over Pillow's own refusal threshold (179 M)
    with pytest.raises(ImageRejected) as info:
        condition_image(UploadedFile("u", "bomb.png", "image/png", data))
    assert "the limit" in info.value.reason and "16777216" in info.value.reason


def test_images_at_the_pixel_limit_are_accepted() -> None:
    buf = io.BytesIO()
    Image.new("L", (4096, 4096), 128).save(buf, format="PNG")
    image = condition_image(UploadedFile("u", "big.png", "image/png", buf.getvalue()))
    assert image.source_size == (4096, 4096)


def test_set_image_with_a_huge_image_changes_nothing() -> None:
    h = helios()
    before = h.state_message()
    ref = {"upload_id": "u", "name": "bomb.png", "mime_type": "image/png", "size": 1}
    upload = UploadedFile("u", "bomb.png", "image/png", png_header_only(12_000, 12_000))
    out = h.handle("set_image", validate_command("set_image", {"image": ref}), {"image": upload})
    assert not out.accepted and out.broadcasts[0].data["command"] == "set_image"
    assert h.state_message() == before and h.image is None


# ------------------------------------------------------------------------------ helpers


def test_clip() -> None:
    assert clip("short") == "short"
    assert clip("x" * 250) == "x" * 200 + "… (250 characters)"
    assert clip("a\ud800b") == "a\\ud800b"  # always encodable
    clip("\ud800" * 1000).encode("utf-8")


def test_parse_json_bounded() -> None:
    assert parse_json_bounded('{"a": [1, 2]}', max_depth=2, max_bytes=100) == {"a": [1, 2]}
    cases = [
        ("x" * 101, "is 101 bytes; the limit is 100 bytes", True),
        (b"\xff{}", "is not UTF-8 text", False),
        ('{"a": NaN}', "holds NaN, which is not a JSON value", False),
        ("[1, -Infinity]", "holds -Infinity", False),
        ("[[[]]]", "is nested more than 2 levels deep", False),
        ("{", "is not valid JSON (Expecting property name", False),
        ('["\\udfff"]', "holds a lone UTF-16 surrogate", False),
        ("1" * 5000, "is not valid JSON (Exceeds the limit", False),
    ]
    for raw, reason, too_large in cases:
        with pytest.raises(JsonRejected) as info:
            parse_json_bounded(raw, max_depth=2, max_bytes=100 if too_large else 10_000)
        assert info.value.reason.startswith(reason), (raw[:20], info.value.reason)
        assert info.value.too_large is too_large

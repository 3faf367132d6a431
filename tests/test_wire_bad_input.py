"""Bad input over the real wire (docs/HELIOS.md §3.2–3.3): refusals, rejections, and a session that keeps
going.

Runs a raw aiortc client on loopback against the session's mock server (pytest plugin fixtures).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from conformance.server import HeliosServer
from conformance.server_suite.support import barrier, described, read_only_state, v1_command
from conformance.wire_client import WireClient
from mock_server.wire import reactor_wire_pb as pb

pytestmark = pytest.mark.helios_lenient  # these tests misbehave on purpose

V0_BAD_FRAMES = [
    ("{not json", "malformed_frame"),
    ("[1, 2]", "malformed_frame"),
    (json.dumps({"scope": "galaxy", "data": {"type": "set_prompt"}}), "unknown_scope"),
    (json.dumps({"scope": "runtime", "data": {"type": "teleport", "data": {}}}), "unknown_runtime_message"),
    (json.dumps({"scope": "application", "data": {"type": "warp_speed", "data": {}}}), "invalid_command"),
    (
        json.dumps({"scope": "application", "data": {"type": "set_prompt", "data": {"prompt": 7}}}),
        "invalid_command",
    ),
    (
        json.dumps({"scope": "application", "data": {"type": "set_seed", "data": {"seed": 3.5}}}),
        "invalid_command",
    ),
    (
        json.dumps(
            {"scope": "application", "data": {"type": "set_image_strength", "data": {"image_strength": 1.5}}}
        ),
        "invalid_command",
    ),
    (
        json.dumps({"scope": "application", "data": {"type": "set_sr_scale", "data": {"sr_scale": "8x"}}}),
        "invalid_command",
    ),
    (
        json.dumps({"scope": "application", "data": {"type": "schedule_prompt", "data": {"prompt": "x"}}}),
        "invalid_command",
    ),
]


async def test_v0_runtime_rejections_are_silent_on_the_wire_but_recorded(
    helios: HeliosServer, helios_client
) -> None:
    client: WireClient = await helios_client(wire="v0")
    client.send_command("set_prompt", {"prompt": "a calm lake"})
    await client.wait_message("state", lambda d: d["scheduled_prompts"] == {"0": "a calm lake"})
    before = await read_only_state(client)
    mark, start = client.now(), len(client.received)
    for frame, _ in V0_BAD_FRAMES:
        client.send_raw("data", frame)
    end = await barrier(client)  # its answer comes after anything the bad frames caused
    # The real runtime gives v0 clients nothing for a rejected frame: no error, no command_error, no state.
    assert client.received[start:end] == [], described(client.received[start:end])
    assert await read_only_state(client) == before
    rejections = helios.rejections()
    assert [r["code"] for r in rejections] == [code for _, code in V0_BAD_FRAMES]
    assert all(r["message"] and r["connection_id"] == 1001 for r in rejections)
    assert "between 0 and 1" in rejections[7]["message"]
    # the session is alive and the next valid command works
    client.send_command("start")
    await client.wait_message("generation_started", since=mark)
    await client.wait_message("chunk_complete", since=mark)


async def test_v1_runtime_rejections_get_an_error_reply(helios: HeliosServer, helios_client) -> None:
    client: WireClient = await helios_client(wire="v1")
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("warp_speed", {}, "invalid_command"),
        ("set_prompt", {}, "invalid_command"),
        ("set_prompt", {"prompt": 3}, "invalid_command"),
        ("set_seed", {"seed": 2.5}, "invalid_command"),
        ("set_image_strength", {"image_strength": -0.1}, "invalid_command"),
        ("set_sr_scale", {"sr_scale": "3x"}, "invalid_command"),
    ]
    before = await read_only_state(client)
    for name, params, code in cases:
        reply = await client.command(name, params)
        assert reply is not None and reply.scope == "error" and reply.type == code, (name, reply)
        assert reply.data  # a message a person can act on
    upload_reply = await client.command(
        "set_image",
        {},
        uploads={
            "image": {"upload_id": "never-created", "name": "x.png", "mime_type": "image/png", "size": 3}
        },
    )
    assert upload_reply is not None and (upload_reply.scope, upload_reply.type) == (
        "error",
        "unresolved_upload",
    )
    assert await read_only_state(client) == before
    # integral doubles are integers (v1 numbers are doubles)
    assert await client.command("set_seed", {"seed": 7.0}) is not None
    assert (await v1_command(client, "set_prompt", {"prompt": "ok"})).type == "prompt_accepted"
    assert len(helios.rejections()) == len(cases) + 1


async def test_v1_malformed_protobuf_gets_an_error_and_the_session_lives(
    helios: HeliosServer, helios_client
) -> None:
    client: WireClient = await helios_client(wire="v1")
    mark = client.now()
    client.send_raw("data", b"\xff\xff\xff\x00garbage")
    client.send_raw("control", b"\x0a\x05ctrl_\x10\x01\xff\xfe")
    client.send_raw(
        "data",
        pb.DataClientMessage(
            request_id="data_99", kind=pb.MessageKind.MESSAGE_KIND_REQUEST
        ).SerializeToString(),
    )  # no payload
    await client._wait(
        lambda: sum(r.scope == "error" for r in client.received if r.t >= mark) >= 3, 5, "errors"
    )
    errors = [r for r in client.received if r.scope == "error" and r.t >= mark]
    assert {e.type for e in errors} <= {"malformed_frame", "invalid_command", "unknown_runtime_message"}
    assert any(e.request_id == "data_99" for e in errors)
    reply = await v1_command(client, "set_prompt", {"prompt": "still here"})
    assert reply.type == "prompt_accepted" and reply.data["chunk"] == 0
    assert len(helios.rejections()) == 3


@pytest.mark.parametrize("wire", ["v0", "v1"])
async def test_model_refusals_broadcast_command_error_without_state(helios_client, wire: str) -> None:
    client: WireClient = await helios_client(wire=wire)
    refusals = [
        ("start", {}, "no prompt scheduled at chunk 0"),
        ("set_prompt", {"prompt": "   "}, "empty prompt"),
        ("pause", {}, "not running"),
        ("resume", {}, "not paused"),
    ]
    for name, params, reason in refusals:
        mark, start = client.now(), len(client.received)
        reply = await client.command(name, params)
        if wire == "v1":
            assert reply is not None and reply.scope == "ack", (name, reply)
        error = await client.wait_message("command_error", since=mark)
        assert error.data == {"command": name, "reason": reason}
        end = await barrier(client)  # a state caused by the refusal would arrive before its answer
        got = [(r.scope, r.type) for r in client.received[start:end]]
        expected = [("application", "command_error")] + ([("ack", "ack")] if wire == "v1" else [])
        assert got == expected, f"{name}: {described(client.received[start:end])} (no state after a refusal)"
    mark = client.now()
    await client.command("set_prompt", {"prompt": "go"})
    client.send_command("start")
    await client.wait_message("generation_started", since=mark)
    mark = client.now()
    client.send_command("start")
    assert (await client.wait_message("command_error", since=mark)).data[
        "reason"
    ] == "already started; reset first"
    mark = client.now()
    client.send_command("schedule_prompt", {"prompt": "past", "chunk": 0})
    refusal = await client.wait_message("command_error", since=mark)
    assert refusal.data["command"] == "schedule_prompt" and "in the past" in refusal.data["reason"]


async def test_commands_take_effect_at_the_next_chunk_exactly(helios_client) -> None:
    """Prompt switches land at the chunk the answer names, and the video proves it frame by frame."""
    client: WireClient = await helios_client(wire="v0")
    client.send_command("set_prompt", {"prompt": "first"})
    client.send_command("start")
    await client.wait_message("chunk_complete", lambda d: d["chunk_index"] == 1)
    mark = client.now()
    client.send_command("set_prompt", {"prompt": "second"})
    switch = (await client.wait_message("prompt_accepted", since=mark)).data["chunk"]
    await client.wait_message("chunk_complete", lambda d: d["chunk_index"] == switch + 1, timeout=15)
    from mock_server.media.markers import prompt_id

    first, second = prompt_id("first"), prompt_id("second")
    marked = [f.markers for f in client.frames if f.markers is not None]
    assert {m.prompt_id for m in marked if m.chunk < switch} == {first}
    assert {m.prompt_id for m in marked if switch <= m.chunk <= switch + 1} == {second}
    chunk_done = client.messages("chunk_complete")
    assert [c.data["active_prompt"] for c in chunk_done if c.data["chunk_index"] in (switch - 1, switch)] == [
        "first",
        "second",
    ]

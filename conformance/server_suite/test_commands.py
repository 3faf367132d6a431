"""Data-channel semantics (docs/HELIOS.md §3, §5): greeting, replies and their order, refusals, rejections."""

from __future__ import annotations

from typing import Any

import pytest

from conformance.wire_client import WireClient

from .conftest import ClientFactory
from .support import INITIAL_STATE, STATE_FIELDS, Stream, barrier, check_message, described

pytestmark = pytest.mark.asyncio


@pytest.mark.parametrize("wire", ["v0", "v1"])
async def test_greeting_state_on_connect(open_client: ClientFactory, wire: str) -> None:
    """A new connection gets the model state first, to that connection only (§3.5)."""
    client = await open_client(wire)
    first = client.messages()[0]
    assert (first.scope, first.type) == ("application", "state")
    assert set(first.data) == STATE_FIELDS
    check_message("state", first.data)
    assert first.data == INITIAL_STATE
    if wire == "v1":
        mark = len(client.received)
        other = await open_client("v1", join=client)
        assert other.messages()[0].type == "state"
        end = await barrier(client)  # the greeting was sent before the barrier was handled
        extra = client.received[mark:end]
        assert not extra, f"the greeting went to the old connection too: {described(extra)}"


async def test_v1_replies_and_their_order(session: tuple[WireClient, Stream]) -> None:
    """Broadcasts, then the answer (or a bodyless ack), then state — for every accepted command (§3.4)."""
    _, s = session
    reply, state = await s.accepted("set_prompt", {"prompt": "a red fox"})
    assert [(b.type, b.data) for b in reply.broadcasts] == [
        ("conditions_ready", {"has_prompt": True, "has_image": False})
    ]
    assert (reply.kind, reply.reply.type, reply.reply.data) == (
        "answer",
        "prompt_accepted",
        {"prompt": "a red fox", "chunk": 0},
    )
    assert state["scheduled_prompts"] == {"0": "a red fox"} and state["current_prompt"] is None

    reply, state = await s.accepted("schedule_prompt", {"prompt": "later", "chunk": 4})
    assert (reply.reply.type, reply.reply.data) == ("prompt_accepted", {"prompt": "later", "chunk": 4})
    assert state["scheduled_prompts"] == {"0": "a red fox", "4": "later"}

    for name, params in (
        ("set_seed", {"seed": 7.0}),  # an integral double is an integer (v1 numbers are doubles)
        ("set_image_strength", {"image_strength": 0.25}),
        ("set_sr_scale", {"sr_scale": "off"}),
        ("set_prompt", {"prompt": "a red fox"}),
    ):
        reply, state = await s.accepted(name, params)
        assert reply.kind == ("answer" if name == "set_prompt" else "ack"), (name, reply)
        assert reply.broadcasts == [] or name == "set_prompt"
    assert state["image_strength"] == 0.25

    reply, state = await s.accepted("list_snapshots")
    assert (reply.reply.type, reply.reply.data) == (
        "snapshot_list",
        {"snapshots": [], "count": 0, "capacity": 50},
    )
    assert state["started"] is False


async def test_v0_answers_arrive_as_application_messages(open_client: ClientFactory) -> None:
    client = await open_client("v0")
    mark = client.now()
    client.send_command("set_prompt", {"prompt": "a calm lake"})
    state = await client.wait_message("state", since=mark)
    got = [(r.type, r.data) for r in client.messages(since=mark) if r.t <= state.t]
    assert got == [
        ("conditions_ready", {"has_prompt": True, "has_image": False}),
        ("prompt_accepted", {"prompt": "a calm lake", "chunk": 0}),
        ("state", state.data),
    ]
    assert all(r.scope in ("application", "runtime") for r in client.received), "v0 is JSON envelopes only"


async def test_refusals_broadcast_command_error_then_ack_and_no_state(
    open_client: ClientFactory, session: tuple[WireClient, Stream]
) -> None:
    """A refused command broadcasts command_error (rewind_failed for snapshots), then the ack; no state."""
    client, s = session
    watcher = await open_client("v1", join=client)
    watch = Stream(watcher)
    await watch.state()  # its greeting
    refusals = [
        ("start", {}, "command_error"),  # no prompt at chunk 0
        ("set_prompt", {"prompt": "   "}, "command_error"),
        ("pause", {}, "command_error"),
        ("resume", {}, "command_error"),
        ("rewind", {}, "rewind_failed"),
        ("save_snapshot", {"label": "x"}, "rewind_failed"),
    ]
    before = await s.read_only_barrier()
    await watch.state()  # the barrier's state broadcast
    for name, params, kind in refusals:
        reply = await s.command(name, params)
        assert reply.kind == "ack", (name, reply.reply)
        assert [(b.type, b.data["command"]) for b in reply.broadcasts] == [(kind, name)]
        assert isinstance(reply.broadcasts[0].data["reason"], str) and reply.broadcasts[0].data["reason"]
        # the other connection got the broadcast too
        seen = await watch.model_message()
        assert (seen.type, seen.data) == (kind, reply.broadcasts[0].data)
    assert await s.read_only_barrier() == before  # no state came in between, nothing changed


@pytest.mark.mock_only
async def test_refusal_reasons(session: tuple[WireClient, Stream]) -> None:
    """[mock] The documented refusal texts (docs/HELIOS.md §6)."""
    _, s = session
    for name, params, reason in [
        ("start", {}, "no prompt scheduled at chunk 0"),
        ("set_prompt", {"prompt": ""}, "empty prompt"),
        ("pause", {}, "not running"),
        ("resume", {}, "not paused"),
        ("rewind", {}, "generation has not started"),
    ]:
        reply = await s.command(name, params)
        assert reply.broadcasts[0].data["reason"] == reason


async def test_runtime_rejections_get_an_error_reply_and_change_nothing(
    session: tuple[WireClient, Stream],
) -> None:
    """§3.3: unknown name, missing/wrong-typed parameter, out of range, bad enum -> Error invalid_command."""
    _, s = session
    await s.accepted("set_prompt", {"prompt": "keep me"})
    before = await s.read_only_barrier()
    cases: list[tuple[str, dict[str, Any]]] = [
        ("warp_speed", {}),
        ("set_prompt", {}),
        ("set_prompt", {"prompt": 3}),
        ("schedule_prompt", {"prompt": "x", "chunk": -1}),
        ("schedule_prompt", {"prompt": "x", "chunk": 2.5}),
        ("set_seed", {"seed": -2}),
        ("set_seed", {"seed": "7"}),
        ("set_image_strength", {"image_strength": 1.5}),
        ("set_image_strength", {"image_strength": True}),
        ("set_sr_scale", {"sr_scale": "8x"}),
        ("rewind", {"snapshot_index": "last"}),
        ("set_image", {}),
        ("set_prompt", {"prompt": "x", "x_unknown": 1}),  # an unexpected parameter (docs/DECISIONS.md)
        ("set_prompt", {"prompt": "x" * 2001}),  # over the prompt limit (docs/LIMITS.md)
    ]
    for name, params in cases:
        reply = await s.command(name, params)
        assert (reply.kind, reply.reply.type) == ("error", "invalid_command"), (name, params, reply.reply)
        assert reply.reply.data, "the error message must say what is wrong"
        assert reply.broadcasts == [], (name, reply.broadcasts)
    ghost = {"upload_id": "never-created", "name": "x.png", "mime_type": "image/png", "size": 3}
    reply = await s.command("set_image", {}, uploads={"image": ghost}, timeout=15)
    assert (reply.kind, reply.reply.type) == ("error", "unresolved_upload"), reply.reply
    assert await s.read_only_barrier() == before


async def test_v0_rejections_are_silent(open_client: ClientFactory) -> None:
    """v0 has no correlation: a rejected command gets nothing at all (§3.3)."""
    client = await open_client("v0")
    mark = len(client.received)
    for name, params in (
        ("warp_speed", {}),
        ("set_seed", {"seed": 2.5}),
        ("set_sr_scale", {"sr_scale": "8x"}),
    ):
        client.send_command(name, params)
    end = await barrier(client)  # its answer comes after anything the rejected commands caused
    assert client.received[mark:end] == [], described(client.received[mark:end])

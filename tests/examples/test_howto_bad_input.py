"""How to: send bad input on purpose and check the server's reaction and record.

A v1 client gets a correlated `Error` reply for a runtime-level rejection; a v0 client gets nothing on the
wire (as with the real runtime), but every rejection is in the server's record.
"""

from __future__ import annotations

import json

import pytest

from conformance.helpers import expect_message, violations
from conformance.server import HeliosServer
from conformance.wire_client import WireClient

pytestmark = pytest.mark.helios_lenient  # violations are the point here


async def test_bad_command_v1_gets_an_error_reply(helios: HeliosServer, helios_client) -> None:
    client: WireClient = await helios_client(wire="v1")
    reply = await client.command("set_image_strength", {"image_strength": 1.5})
    assert reply is not None and (reply.scope, reply.type) == ("error", "invalid_command")
    assert "between 0 and 1" in reply.data
    assert [r["code"] for r in helios.rejections()] == ["invalid_command"]
    assert [v.rule_id for v in violations(helios)] == ["command-invalid"]


async def test_garbage_v0_is_silent_but_recorded(helios: HeliosServer, helios_client) -> None:
    client: WireClient = await helios_client(wire="v0")
    client.send_raw("data", "{this is not json")
    client.send_raw(
        "data", json.dumps({"scope": "application", "data": {"type": "set_seed", "data": {"seed": 0.5}}})
    )
    client.send_command("list_snapshots")  # frames are handled in order: once this is answered, all are
    await expect_message(client, "snapshot_list")
    assert [r.type for r in client.received if r.type not in ("state", "snapshot_list")] == []
    assert [r["code"] for r in helios.rejections()] == ["malformed_frame", "invalid_command"]
    assert [v.rule_id for v in violations(helios)] == ["frame-malformed", "command-invalid"]


async def test_model_refusal_is_a_broadcast(helios_client) -> None:
    client: WireClient = await helios_client(wire="v0")
    client.send_command("resume")
    refusal = await expect_message(client, "command_error", {"command": "resume"})
    assert refusal.data["reason"]  # free-form text: match the command, not the reason

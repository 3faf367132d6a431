"""How to: read what the server saw — the transcript after the fact, or live over a WebSocket.

`GET /admin/sessions/{id}/transcript` (`helios.transcript(id)`) returns every message both ways with time,
chunk and connection; `WS /admin/sessions/{id}/live` replays the entries so far, then streams new ones.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from conformance.client_rules import check_transcript
from conformance.helpers import expect_message
from conformance.server import HeliosServer
from conformance.wire_client import WireClient


async def _next_entry(ws: ClientConnection, where: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while True:
            entry = json.loads(await ws.recv())
            if where(entry):
                return entry


async def test_follow_the_transcript_live(helios: HeliosServer, helios_client) -> None:
    client: WireClient = await helios_client(wire="v1")
    live_url = helios.url.replace("http", "ws", 1) + f"/admin/sessions/{client.session_id}/live"
    async with connect(live_url) as ws:
        ready = await _next_entry(ws, lambda e: e.get("kind") == "connection ready")  # replayed
        assert ready["connection_id"] == client.connection_id
        request_id = client.send_command("set_prompt", {"prompt": "a paper boat"})
        command = await _next_entry(ws, lambda e: e.get("kind") == "CommandIn")
        assert command["body"]["type"] == "set_prompt" and command["request_id"] == request_id
        answer = await _next_entry(
            ws, lambda e: e.get("direction") == "out" and e.get("request_id") == request_id
        )
        assert answer["body"]["type"] == "prompt_accepted"
    await client.reply(request_id)


async def test_read_the_transcript_afterwards(helios: HeliosServer, helios_client) -> None:
    client: WireClient = await helios_client(wire="v0")
    client.send_command("set_prompt", {"prompt": "a paper boat"})
    await expect_message(client, "prompt_accepted")
    transcript = helios.transcript(str(client.session_id))
    kinds = [(e["direction"], e["kind"]) for e in transcript["entries"]]
    assert ("in", "CommandIn") in kinds and ("out", "ModelMessageOut") in kinds
    assert check_transcript(transcript) == []  # the client rules work on a transcript too

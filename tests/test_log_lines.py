"""Session-scoped log lines name their session and connection (issue 13, item 5).

Before: ``connection 2000: peer connecting`` carried no session id (and every session's first connection is
2000), and a prompt scheduled for chunk 2 logged as ``accepted (chunk 0)``. A short session runs against the
mock in this process; every record of the session, connection, fault and transport loggers must carry the
session id (JSON field ``session``, text suffix ``[session=…]``), every connection line its connection id, and
the scheduled prompt its effective chunk.
"""

from __future__ import annotations

import json
import logging

import pytest
from loopback_mock import BOUND, mock_on_loopback

from conformance.helpers import resume_video
from conformance.wire_client import WireClient
from mock_server.logging_setup import JsonFormatter, TextFormatter

SCOPED = ("helios_mock.session", "helios_mock.connection", "helios_mock.faults", "helios_mock.transport")


async def _short_session(url: str, wire: str) -> WireClient:
    """Start at chunk 0, schedule a prompt for chunk 2, send one invalid command, play one chunk, leave."""
    client = WireClient(url, wire=wire)
    try:
        await client.connect(timeout=BOUND)
        resume_video(client)
        client.send_command("schedule_prompt", {"prompt": "a red fox", "chunk": 0})
        client.send_command("start")
        client.send_command("schedule_prompt", {"prompt": "a blue owl", "chunk": 2})
        client.send_command("set_prompt", {"prompt": 123})  # rejected: logged as a warning
        await client.wait_message("prompt_accepted", lambda d: d.get("chunk") == 2, timeout=BOUND)
        await client.wait_message("chunk_complete", timeout=BOUND)
    finally:
        await client.close()
    return client


@pytest.mark.parametrize("wire", ["v0", "v1"])
async def test_every_session_line_names_its_session_and_connection(
    wire: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "helios_mock")
    async with mock_on_loopback() as url:
        client = await _short_session(url, wire)
    sid, cid = client.session_id, client.connection_id or 1001  # v0 speaks on the legacy connection 1001
    records = [r for r in caplog.records if r.name.startswith(SCOPED)]
    assert {r.name for r in records} >= {"helios_mock.session", "helios_mock.connection"}

    fields = [json.loads(JsonFormatter().format(r)) for r in records]
    unscoped = [f"{f['logger']}: {f['message']}" for f in fields if f.get("session") != sid]
    assert unscoped == []
    connection_lines = [
        f for f in fields if f["logger"] == "helios_mock.connection" or f["message"].startswith("connection ")
    ]
    assert len(connection_lines) >= 5  # registered, peer states, channel open, codec, commands
    assert [f["message"] for f in connection_lines if f.get("connection") != cid] == []

    peer_line = next(r for r in records if r.getMessage() == f"connection {cid}: peer connecting")
    assert TextFormatter().format(peer_line).endswith(f"[session={sid} connection={cid}]")
    scheduled = [f["message"] for f in fields if "schedule_prompt accepted" in f["message"]]
    assert len(scheduled) == 2
    assert scheduled[0].endswith("takes effect at chunk 0")
    assert scheduled[1].endswith("takes effect at chunk 2")
    assert any("rejected a frame [invalid_command]" in f["message"] for f in fields)

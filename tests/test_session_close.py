"""A session the mock itself ends closes its clients' transports promptly (issue 9).

The mock runs in this process (uvicorn on loopback) with tiny limits, and a raw aiortc client connects to it
on loopback. When the watchdog ends the session (maximum duration, reconnect grace), the client must get the
goodbye notice and see its peer connection leave "connected"; before the fix, the watchdog's close
cancelled its own task before closing the peers, so the client stayed connected to a dead session.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import pytest
from loopback_mock import mock_on_loopback

from conformance.wire_client import WireClient

BOUND = 10.0  # seconds: generous bound for a loaded machine; the close itself takes milliseconds


async def _left_connected(client: WireClient) -> asyncio.Event:
    """An event set once the client's peer connection is no longer "connected"."""
    assert client.pc is not None
    left = asyncio.Event()
    pc = client.pc

    @pc.on("connectionstatechange")
    def _changed() -> None:
        if pc.connectionState != "connected":
            left.set()

    if pc.connectionState != "connected":
        left.set()
    return left


async def _ended_record(url: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url) as http:
        record = (await http.get("/admin/record")).json()
    [session] = record["sessions"]
    return session


@pytest.mark.parametrize("wire", ["v0", "v1"])
async def test_max_duration_closes_the_clients_peer_connection(wire: str) -> None:
    async with mock_on_loopback(max_session_duration=1.0) as url:
        client = WireClient(url, wire=wire)
        try:
            await client.connect(timeout=BOUND)
            left = await _left_connected(client)
            await asyncio.wait_for(left.wait(), BOUND)
            assert client.pc is not None and client.pc.connectionState in ("closed", "failed", "disconnected")
            ended = [r for r in client.received if r.type in ("sessionEnded", "session_ended")]
            assert ended, (
                f"no goodbye notice before the transport closed: {[r.type for r in client.received]}"
            )
            session = await _ended_record(url)
            assert session["closed"]
            assert session["close_reason"] == "session reached its maximum duration of 1 s"
            assert not any(e["kind"] == "task failed" for e in session["entries"])
        finally:
            await client.close(stop_session=False)


async def test_reconnect_grace_closes_a_silent_clients_peer_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The ping watchdog drops a silent connection; the grace ends the session; the client learns."""
    caplog.set_level(logging.INFO, "helios_mock")
    async with mock_on_loopback(ping_timeout=0.6, reconnect_grace=0.6) as url:
        client = WireClient(url, wire="v0")
        try:
            await client.connect(timeout=BOUND)
            left = await _left_connected(client)
            await asyncio.wait_for(left.wait(), BOUND)  # the client never pings: the watchdog drops it
            async with asyncio.timeout(BOUND):
                while not (await _ended_record(url))["closed"]:  # noqa: ASYNC110 - polls over HTTP
                    await asyncio.sleep(0.1)
            session = await _ended_record(url)
            assert session["close_reason"] == "no client reconnected within 0.6 s"
        finally:
            await client.close(stop_session=False)

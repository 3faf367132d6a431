"""``/metrics`` parses as Prometheus text and its counters move with a session's traffic (issue 13).

The mock runs in this process on loopback; a raw client (v0 JSON or v1 protobuf) connects, sends one
command of each outcome (accepted, refused by the model, refused by an armed command_error fault, rejected
as invalid), lets two chunks play, and leaves. Scrapes before, during and after show every family moving
by exactly what the traffic did.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from loopback_mock import BOUND, mock_on_loopback
from prometheus_client.parser import text_string_to_metric_families

from conformance.helpers import resume_video
from conformance.wire_client import WireClient

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

# (command, params, outcome) in the order sent; set_seed meets the armed command_error fault
TRAFFIC = [
    ("set_seed", {"seed": 7}, "refused"),  # the fault's refusal
    ("resume", {}, "refused"),  # the model's refusal: not paused
    ("set_prompt", {"prompt": 123}, "rejected"),  # invalid_command: prompt must be a string
    ("schedule_prompt", {"prompt": "a red fox", "chunk": 0}, "accepted"),
    ("start", {}, "accepted"),
]


async def _scrape(url: str) -> Samples:
    async with httpx.AsyncClient(base_url=url) as http:
        resp = await http.get("/metrics")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(resp.text)
        for s in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((f"helios_mock_{name}", tuple(sorted(labels.items()))), 0.0)


def _moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return _value(after, name, **labels) - _value(before, name, **labels)


async def _arm_command_error(url: str, session_id: str) -> None:
    body = {"kind": "command_error", "session_id": session_id, "on_command": "set_seed", "params": {}}
    async with httpx.AsyncClient(base_url=url) as http:
        resp = await http.post("/admin/faults", json=body)
    assert resp.status_code == 201, resp.text


async def _session_state(url: str) -> str:
    async with httpx.AsyncClient(base_url=url) as http:
        resp = await http.get("/session")
    resp.raise_for_status()
    return str(resp.json()["state"])


async def _play(client: WireClient) -> None:
    """The commands of TRAFFIC, a barrier that they were all handled, then two completed chunks."""
    resume_video(client)
    for name, params, _ in TRAFFIC:
        client.send_command(name, params)
    client.send_command("list_snapshots")  # barrier: handled after every command above
    await client.wait_message("snapshot_list", timeout=BOUND)
    for index in (0, 1):
        await client.wait_message(
            "chunk_complete", lambda d, i=index: d.get("chunk_index") == i, timeout=BOUND
        )


async def _until_disconnected(url: str, wire: str) -> Samples:
    """Scrape until the connection has left the gauge (the session's close counts it out)."""
    async with asyncio.timeout(BOUND):
        while True:
            samples = await _scrape(url)
            if _value(samples, "connections", encoding=wire) == 0:
                return samples
            await asyncio.sleep(0.05)


@pytest.mark.parametrize("wire", ["v0", "v1"])
async def test_counters_move_with_a_sessions_traffic(wire: str) -> None:
    async with mock_on_loopback() as url:
        before = await _scrape(url)
        client = WireClient(url, wire=wire)
        try:
            await client.connect(timeout=BOUND)
            assert client.session_id is not None
            await _arm_command_error(url, client.session_id)
            await _play(client)
            during = await _scrape(url)
            state = await _session_state(url)
        finally:
            await client.close()
        after = await _until_disconnected(url, wire)

    assert _value(during, "sessions", state=state) == 1
    assert _value(during, "connections", encoding=wire) == 1
    assert _value(after, "connections", encoding=wire) == 0
    assert _value(after, "sessions", state=state) == 0
    _assert_traffic(before, after)


def _assert_traffic(before: Samples, after: Samples) -> None:
    expected: dict[tuple[str, str], int] = {}
    for name, _, outcome in [*TRAFFIC, ("list_snapshots", {}, "accepted")]:
        expected[name, outcome] = expected.get((name, outcome), 0) + 1
    counted = {
        key: _moved(before, after, "commands_total", command=key[0], outcome=key[1]) for key in expected
    }
    assert counted == expected
    others = [k for k in after if k[0] == "helios_mock_commands_total" and _command_key(k) not in expected]
    assert others == []
    rejections = {k[1]: v for k, v in after.items() if k[0] == "helios_mock_rejections_total"}
    assert rejections == {(("code", "invalid_command"),): 1.0}
    assert _moved(before, after, "faults_fired_total", kind="command_error") == 1
    assert _moved(before, after, "chunks_generated_total") >= 2
    frames = _moved(before, after, "frames_sent_total")
    assert frames >= 33  # at least one whole chunk reached the client's video track
    assert _moved(before, after, "bytes_sent_total") > frames  # more than a byte per frame
    assert _moved(before, after, "encode_seconds_count") >= 66  # two chunks of 33 frames, encoded once
    assert ("helios_mock_event_loop_lag_latest_seconds", ()) in after
    assert _value(after, "event_loop_lag_seconds_count") >= 1


def _command_key(key: tuple[str, tuple[tuple[str, str], ...]]) -> tuple[str, str]:
    labels: dict[str, Any] = dict(key[1])
    return str(labels.get("command")), str(labels.get("outcome"))

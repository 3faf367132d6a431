"""Fault injection over the real wire (issue 9, docs/FAULTS.md): each kind's client-visible outcome, its entry
in the session's record, and a clean server afterwards (no session left, the next session streams).

Raw aiortc clients (`WireClient`) and httpx on loopback against the plugin's mock server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from conformance.server import HeliosServer
from conformance.wire_client import Received, WireClient

pytestmark = pytest.mark.helios_lenient  # faults make clients see errors on purpose

AUTH = {"Authorization": "Bearer test-token"}
CREATE = {
    "model": {"name": "helios"},
    "client_info": {"sdk_version": "0", "sdk_type": "conformance"},
    "supported_transports": [{"protocol": "webrtc", "version": "1.0"}],
}


# ------------------------------------------------------------------------------------------- helpers


async def _generate(client: WireClient, prompt: str = "a calm lake") -> None:
    client.send_command("set_prompt", {"prompt": prompt})
    client.send_command("start")


async def _chunk_done(client: WireClient, index: int, timeout: float = 20.0) -> Received:
    return await client.wait_message("chunk_complete", lambda d: d["chunk_index"] == index, timeout=timeout)


def _fault_entries(helios: HeliosServer, session_id: str) -> list[dict[str, Any]]:
    return [e for e in helios.transcript(session_id)["entries"] if e["direction"] == "fault"]


def _view(helios: HeliosServer, session_id: str) -> dict[str, Any]:
    """The record view of the latest session with this id (local ids repeat)."""
    return [s for s in helios.record()["sessions"] if s["session_id"] == session_id][-1]


async def _eventually(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 10.0) -> Any:
    """Poll `check` (an HTTP look at the server) every 50 ms until it returns something truthy."""
    for _ in range(int(timeout / 0.05)):
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{what} did not happen within {timeout:g} s")


async def _wait_closed(helios: HeliosServer, session_id: str, timeout: float = 10.0) -> dict[str, Any]:
    async def closed_view() -> dict[str, Any] | None:
        view = _view(helios, session_id)
        return view if view["closed"] else None

    result: dict[str, Any] = await _eventually(closed_view, f"the end of session {session_id}", timeout)
    return result


async def _assert_clean(helios: HeliosServer, *clients: WireClient) -> None:
    """Every session ended (no leaked session or connection) and a fresh session streams a chunk."""
    for client in clients:
        await client.close()
        client.session_id = None  # the fixture's second close() then only closes what is left
    async with httpx.AsyncClient(base_url=helios.url) as http:

        async def idle() -> bool:
            return bool((await http.get("/health")).json()["state"] == "available")

        await _eventually(idle, "no session running")
    assert all(s["closed"] for s in helios.record()["sessions"])
    fresh = WireClient(helios.url, wire="v1")
    try:
        await fresh.connect()
        await _generate(fresh)
        await _chunk_done(fresh, 0)
    finally:
        await fresh.close()


def _ended(client: WireClient) -> Received | None:
    return next((r for r in client.received if r.type in ("sessionEnded", "session_ended")), None)


async def _wait_ended(client: WireClient) -> Received:
    await client._wait(lambda: _ended(client) is not None, 10, "sessionEnded / SessionEnded")
    ended = _ended(client)
    assert ended is not None
    return ended


# ------------------------------------------------------------------------------------------- admin API


def test_admin_api_arms_lists_removes_and_refuses(helios: HeliosServer) -> None:
    fault = helios.faults.inject("gpu_failure", at_chunk=3, reason="boom")
    assert fault["id"].startswith("flt_") and fault["status"] == "armed"
    assert fault["params"]["reason"] == "boom"
    assert [f["id"] for f in helios.faults.list()] == [fault["id"]]
    with httpx.Client(base_url=helios.url) as http:
        bad = http.post("/admin/faults", json={"kind": "stall", "params": {"seconds": -1}})
        assert bad.status_code == 422 and "params.seconds" in bad.json()["detail"]
        ghost = http.post("/admin/faults", json={"kind": "stall", "session_id": "sess_nope"})
        assert ghost.status_code == 404 and "sess_nope" in ghost.json()["detail"]
        assert http.delete("/admin/faults/flt_999").status_code == 404
    assert helios.faults.remove(fault["id"])["id"] == fault["id"]
    helios.faults.inject("stall")
    assert helios.faults.clear() == 1 and helios.faults.list() == []
    helios.faults.inject("stall")
    helios.reset()
    assert helios.faults.list() == []


# ------------------------------------------------------------------------------------------- HTTP kinds


@pytest.mark.parametrize(("status", "retry"), [(503, None), (429, "3")])
async def test_session_refused(helios: HeliosServer, status: int, retry: str | None) -> None:
    params: dict[str, Any] = {"status": status} | ({"retry_after": 3} if retry else {})
    helios.faults.inject("session_refused", params=params)
    async with httpx.AsyncClient(base_url=helios.url, headers=AUTH) as http:
        refused = await http.post("/sessions", json=CREATE)
        assert refused.status_code == status and refused.json()["detail"]
        assert refused.headers.get("Retry-After") == retry
        assert helios.record()["sessions"] == []  # no session was created
        created = await http.post("/sessions", json=CREATE)  # count 1: the next creation works
        assert created.status_code == 201
        await http.delete(f"/sessions/{created.json()['session_id']}")
    [fault] = helios.faults.list()
    assert fault["status"] == "expired" and fault["firings"][0]["hook"] == "create_request"
    await _assert_clean(helios)


async def test_session_refused_local_start(helios: HeliosServer) -> None:
    helios.faults.inject("session_refused", status=500)
    async with httpx.AsyncClient(base_url=helios.url) as http:
        assert (await http.post("/start_session", json={})).status_code == 500
        assert (await http.get("/session")).json()["state"] == "READY"  # nothing was started
    await _assert_clean(helios)


async def test_queue_wait_reports_the_state_then_active(helios: HeliosServer) -> None:
    helios.faults.inject("queue_wait", state="WAITING", seconds=1.0)
    async with httpx.AsyncClient(base_url=helios.url, headers=AUTH) as http:
        sid = (await http.post("/sessions", json=CREATE)).json()["session_id"]
        seen: list[str] = []
        async with asyncio.timeout(10):
            while True:
                body = (await http.get(f"/sessions/{sid}")).json()
                seen.append(body["state"])
                if body["state"] == "ACTIVE":
                    assert body["capabilities"] and body["selected_transport"]
                    break
                assert "capabilities" not in body and "selected_transport" not in body
                await asyncio.sleep(0.1)
        assert seen[0] == "WAITING" and seen.count("WAITING") >= 5  # ≈ 1 s of 0.1 s polls
        [entry] = _fault_entries(helios, sid)
        assert entry["kind"] == "queue_wait"
        assert entry["body"]["params"] == {"state": "WAITING", "seconds": 1.0}
        await http.delete(f"/sessions/{sid}")
    await _assert_clean(helios)


async def test_session_closed_while_pending(helios: HeliosServer) -> None:
    helios.faults.inject("session_closed", seconds=0.5, reason="no capacity")
    async with httpx.AsyncClient(base_url=helios.url, headers=AUTH) as http:
        sid = (await http.post("/sessions", json=CREATE)).json()["session_id"]
        assert (await http.get(f"/sessions/{sid}")).json()["state"] == "PENDING"
        view = await _wait_closed(helios, sid)
        assert view["close_reason"] == "no capacity"
        assert (await http.get(f"/sessions/{sid}")).json()["state"] == "CLOSED"
        assert view["faults"][0]["kind"] == "session_closed"
    await _assert_clean(helios)


async def _offer_and_poll(client: WireClient, polls: int, gap: float) -> list[int]:
    """Post an offer on the legacy route, then poll its answer `polls` times; the statuses seen."""
    await client.start_session()
    pc_client = WireClient(client.base_url)  # only for its SDP offer
    from aiortc import RTCPeerConnection

    pc = RTCPeerConnection()
    pc.createDataChannel("data")
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    body = {"sdp_offer": pc.localDescription.sdp, "client_info": {"sdk_type": "js"}}
    path = f"/sessions/{client.session_id}/transport/webrtc/sdp_params"
    assert (await client.http.post(path, json=body)).status_code == 202
    statuses = []
    for _ in range(polls):
        statuses.append((await client.http.get(path)).status_code)
        await asyncio.sleep(gap)
    await pc.close()
    await pc_client.http.aclose()
    return statuses


async def test_sdp_timeout_never_answers(helios: HeliosServer) -> None:
    helios.faults.inject("sdp_timeout")
    client = WireClient(helios.url)
    statuses = await _offer_and_poll(client, 8, 0.1)
    assert statuses == [202] * 8
    assert _fault_entries(helios, "local")[0]["kind"] == "sdp_timeout"
    await _assert_clean(helios, client)


async def test_sdp_slow_answers_late(helios: HeliosServer) -> None:
    helios.faults.inject("sdp_slow", seconds=0.6)
    client = WireClient(helios.url)
    statuses = await _offer_and_poll(client, 12, 0.1)
    assert statuses[0] == 202 and statuses[-1] == 200
    assert 4 <= statuses.index(200) <= 9  # ≈ 0.6 s of 0.1 s polls
    await _assert_clean(helios, client)


async def test_ice_failure_never_connects(helios: HeliosServer) -> None:
    helios.faults.inject("ice_failure")
    client = WireClient(helios.url, wire="v1")
    with pytest.raises(TimeoutError):
        await client.connect(timeout=4)
    assert not client.ready
    assert _fault_entries(helios, "local")[0]["kind"] == "ice_failure"
    await _assert_clean(helios, client)


async def test_upload_failure_then_upload_works(helios: HeliosServer, helios_client) -> None:
    client: WireClient = await helios_client(wire="v1")
    helios.faults.inject("upload_failure", session_id="local", status=403)
    with pytest.raises(httpx.HTTPStatusError) as failed:
        await client.upload(b"x" * 10)
    assert failed.value.response.status_code == 403
    assert failed.value.response.json()["detail"] == "upload URL expired"
    await client.upload(b"x" * 10)  # count 1: the next PUT is stored
    assert _fault_entries(helios, "local")[0]["kind"] == "upload_failure"
    await _assert_clean(helios, client)


# ------------------------------------------------------------------------------------------- commands


@pytest.mark.parametrize("wire", ["v0", "v1"])
async def test_command_error_refuses_and_keeps_the_state(
    helios: HeliosServer, helios_client, wire: str
) -> None:
    client: WireClient = await helios_client(wire=wire)
    helios.faults.inject("command_error", session_id="local", on_command="set_seed", reason="seed refused")
    client.send_command("list_snapshots")  # barrier: snapshot_list, then its state broadcast
    listed = await client.wait_message("snapshot_list")
    mark = (await client.wait_message("state", since=listed.t)).t + 1e-6
    rid = client.send_command("set_seed", {"seed": 7})
    refusal = await client.wait_message("command_error", since=mark)
    assert refusal.data == {"command": "set_seed", "reason": "seed refused"}
    if wire == "v1":
        assert (await client.reply(rid)).scope == "ack"
    client.send_command("list_snapshots")  # round-trip barrier: no state came for the refused command
    listed = await client.wait_message("snapshot_list", since=refusal.t)
    assert [m for m in client.messages("state", since=mark) if m.t < listed.t] == []
    client.send_command("set_seed", {"seed": 7})  # count 1: accepted now
    state = await client.wait_message("state", since=client.now())
    assert state.data["started"] is False
    [entry] = _fault_entries(helios, "local")
    assert entry["kind"] == "command_error" and entry["body"]["hook"] == "command"
    await _assert_clean(helios, client)


async def test_internal_error_v1_error_reply(helios: HeliosServer, helios_client) -> None:
    client: WireClient = await helios_client(wire="v1")
    helios.faults.inject("internal_error", session_id="local", on_command="set_seed", message="kaput")
    rid = client.send_command("set_seed", {"seed": 7})
    reply = await client.reply(rid)
    assert reply.scope == "error" and reply.type == "internal_error" and "kaput" in reply.data
    await _assert_clean(helios, client)


@pytest.mark.parametrize("wire", ["v0", "v1"])
async def test_moderation_warn_runs_the_command(helios: HeliosServer, helios_client, wire: str) -> None:
    client: WireClient = await helios_client(wire=wire)
    helios.faults.inject("moderation", session_id="local", prompt_pattern=r"\bwar\b", categories=["violence"])
    mark = client.now()
    client.send_command("set_prompt", {"prompt": "a war scene"})
    accepted = await client.wait_message("state", lambda d: d["scheduled_prompts"] == {"0": "a war scene"})
    notice = next(r for r in client.received if r.type == "moderation")
    assert mark <= notice.t <= accepted.t
    assert notice.data["action"] == "warn" and notice.data["command"] == "set_prompt"
    assert list(notice.data["categories"]) == ["violence"]
    await _assert_clean(helios, client)


async def test_moderation_terminate_ends_the_session(helios: HeliosServer, helios_client) -> None:
    client: WireClient = await helios_client(wire="v1")
    helios.faults.inject("moderation", session_id="local", on_command="set_prompt", action="terminate")
    client.send_command("set_prompt", {"prompt": "anything"})
    await _wait_ended(client)
    view = await _wait_closed(helios, "local")
    assert view["close_reason"] == "content flagged by moderation"
    types = [r.type for r in client.received if r.scope == "control"]
    assert types.index("moderation") < types.index("session_ended")
    assert client.messages("state", since=0.0)[-1].data["scheduled_prompts"] == {}  # the command was dropped
    await _assert_clean(helios, client)


# ------------------------------------------------------------------------------------------- generation


@pytest.mark.parametrize(
    ("kind", "wire"), [("gpu_failure", "v0"), ("gpu_failure", "v1"), ("session_expiry", "v0")]
)
async def test_end_at_a_chunk(helios: HeliosServer, helios_client, kind: str, wire: str) -> None:
    client: WireClient = await helios_client(wire=wire)
    params: dict[str, Any] = {"reason": "GPU fell off the bus"} if kind == "gpu_failure" else {}
    helios.faults.inject(kind, at_chunk=2, params=params)  # bind mode: the *next* session — start a new one
    await client.close()
    client.session_id = None
    client = await helios_client(wire=wire)
    await _generate(client)
    ended = await _wait_ended(client)
    view = await _wait_closed(helios, client.session_id or "local")
    expected = "GPU fell off the bus" if kind == "gpu_failure" else "maximum duration"
    assert expected in str(ended.data) and expected in view["close_reason"]
    assert [m.data["chunk_index"] for m in client.messages("chunk_complete")] == [0, 1]  # chunk 2 never done
    assert not any(f.markers and f.markers.chunk >= 2 for f in client.frames)
    assert view["faults"][0]["chunk"] == 2
    await _assert_clean(helios, client)


async def test_stall_holds_frames_and_chunk_complete(helios: HeliosServer, helios_client) -> None:
    client: WireClient = await helios_client(wire="v0")  # legacy connection: video not paused
    helios.faults.inject("stall", session_id="local", at_chunk=2, seconds=1.5)
    await _generate(client)
    done1, done2 = await _chunk_done(client, 1), await _chunk_done(client, 2, timeout=30)
    first_of_2 = await client.wait_frames(lambda f: f.markers is not None and f.markers.chunk == 2)
    normal = done1.t - (await _chunk_done(client, 0)).t
    assert first_of_2.t - done1.t >= 1.3  # no frame of chunk 2 during the stall
    assert done2.t - done1.t >= 1.4 and done2.t - done1.t > normal + 1.0  # 1.5 s, less receive jitter
    assert _fault_entries(helios, "local")[0]["chunk"] == 2
    await _assert_clean(helios, client)


async def test_slow_chunks_stretch_the_named_chunks(helios: HeliosServer, helios_client) -> None:
    client: WireClient = await helios_client(wire="v1")
    helios.faults.inject("slow_chunks", session_id="local", at_chunk=2, params={"count": 2}, factor=6)
    await _generate(client)
    done = [await _chunk_done(client, i, timeout=30) for i in range(6)]
    spans = {i: done[i].t - done[i - 1].t for i in range(1, 6)}
    fast = max(spans[1], spans[4], spans[5])
    assert min(spans[2], spans[3]) > 2.5 * fast, spans  # chunks 2 and 3 took ≈ 6x
    assert _fault_entries(helios, "local")[0]["body"]["params"] == {"count": 2, "factor": 6.0}
    await _assert_clean(helios, client)


async def test_transport_drop_then_reconnect(helios: HeliosServer, helios_client) -> None:
    client: WireClient = await helios_client(wire="v1")
    await _generate(client)
    await _chunk_done(client, 0)
    helios.faults.inject("transport_drop", session_id="local")  # "now": at the next chunk or tick
    await client._wait(lambda: not client.ready, 10, "the transport to drop")
    view = _view(helios, "local")
    assert not view["closed"]  # the session waits the reconnect grace
    await client.reconnect()
    mark = client.now()
    await client.wait_message("chunk_complete", since=mark, timeout=20)
    await _assert_clean(helios, client)


async def test_media_loss_drops_video_packets(helios: HeliosServer, helios_client) -> None:
    client: WireClient = await helios_client(wire="v0")
    await _generate(client)
    await client.wait_frames(lambda f: f.markers is not None)
    helios.faults.inject("media_loss", session_id="local", percent=100, seconds=1.5)

    async def fired_entries() -> list[dict[str, Any]]:
        return _fault_entries(helios, "local")

    await _eventually(fired_entries, "the media_loss firing")
    fired = client.now()
    await asyncio.sleep(0.3)  # frames in flight before the fault
    quiet_from = len(client.frames)
    await asyncio.sleep(1.0)
    assert len(client.frames) == quiet_from  # nothing got through during the loss
    await client.wait_frames(lambda f: f.t > fired + 1.5, timeout=20)  # video recovers after it
    await _assert_clean(helios, client)


async def test_fault_entries_follow_live(helios: HeliosServer, helios_client) -> None:
    """A firing is visible on the live WebSocket of the session."""
    import json

    from websockets.asyncio.client import connect

    client: WireClient = await helios_client(wire="v1")
    ws_url = helios.url.replace("http", "ws") + "/admin/sessions/local/live"
    async with connect(ws_url) as ws:
        helios.faults.inject("command_error", session_id="local", on_command="set_seed")
        client.send_command("set_seed", {"seed": 1})
        async with asyncio.timeout(10):
            while True:
                item = json.loads(await ws.recv())
                if item.get("direction") == "fault":
                    break
    assert item["kind"] == "command_error" and item["body"]["fault_id"].startswith("flt_")
    await _assert_clean(helios, client)


# ------------------------------------------------------------------------------------------- start-up


def test_serve_arms_a_fault_file_and_reset_rearms_it(tmp_path) -> None:
    path = tmp_path / "faults.yaml"
    path.write_text("- kind: session_refused\n  count: 2\n  params: {status: 429, retry_after: 3}\n")
    server = HeliosServer.start(extra=["--faults", str(path), "--fault-seed", "7", "--chaos", "light"])
    try:
        kinds = [f["kind"] for f in server.faults.list()]
        assert kinds[0] == "session_refused" and len(kinds) == 1 + 6  # the file, then the light preset
        server.faults.clear()
        server.reset()
        assert len(server.faults.list()) == 7  # back to the start-up faults
    finally:
        server.stop()


def test_serve_refuses_a_bad_fault_file(tmp_path) -> None:
    path = tmp_path / "faults.json"
    path.write_text('[{"kind": "stall", "params": {"seconds": -1}}]')
    with pytest.raises(RuntimeError, match=r"item 0: params.seconds \(stall\)"):
        HeliosServer.start(extra=["--faults", str(path)], ready_timeout=15)


# ------------------------------------------------------------------------------------------- client rules


async def test_rules_judge_the_client_after_a_gpu_failure(helios: HeliosServer) -> None:
    """After a server-side end a production client must DELETE; the rules see it from the record."""
    from conformance.client_rules import check_transcript

    helios.faults.inject("gpu_failure", at_chunk=1)
    client = WireClient(helios.url, wire="v1", mode="production")
    await client.connect()
    await _generate(client)
    await _wait_ended(client)
    sid = str(client.session_id)
    await _wait_closed(helios, sid)
    rules = [v.rule_id for v in check_transcript(helios.transcript(sid))]
    assert "no-delete-after-end" in rules and "poll-too-fast" not in rules
    await client.close()  # DELETE (404: already closed) — now the client did what it should
    rules = [v.rule_id for v in check_transcript(helios.transcript(sid))]
    assert "no-delete-after-end" not in rules
    client.session_id = None
    await _assert_clean(helios, client)

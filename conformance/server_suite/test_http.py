"""HTTP API (docs/PROTOCOL.md §1): descriptors, signalling statuses, ICE servers, uploads, session end."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import httpx
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from conformance.wire_client import WireClient

from .conftest import ClientFactory
from .support import Target

pytestmark = pytest.mark.asyncio

TRACKS = [{"name": "main_video", "kind": "video", "direction": "recvonly"}]
STATES = {"CREATED", "PENDING", "SUSPENDED", "WAITING", "ACTIVE", "INACTIVE", "CLOSED"}
CLIENT_BODY = {
    "model": {"name": "helios"},
    "client_info": {"sdk_version": "1.13.0", "sdk_type": "python"},
    "supported_transports": [{"protocol": "webrtc", "version": "1.0"}],
}


def check_base(descriptor: dict[str, Any]) -> None:
    """Fields JS 2.9.0 requires in every session object, pending or not (§1.4, §1.5)."""
    assert isinstance(descriptor.get("session_id"), str) and descriptor["session_id"]
    assert isinstance(descriptor.get("state"), str)
    assert isinstance(descriptor.get("cluster"), str)
    assert descriptor.get("model", {}).get("name") == "helios"
    assert isinstance(descriptor.get("server_info", {}).get("server_version"), str)


def check_ready(descriptor: dict[str, Any]) -> None:
    """A ready descriptor: selected_transport + capabilities as both clients parse them (§1.4)."""
    check_base(descriptor)
    transport = descriptor["selected_transport"]
    assert transport["protocol"] == "webrtc" and isinstance(transport.get("version"), str)
    caps = descriptor["capabilities"]
    assert isinstance(caps["protocol_version"], str)
    assert caps["tracks"] == TRACKS  # recvonly = server -> client, from the client's point of view
    for command in caps.get("commands") or []:
        assert isinstance(command.get("name"), str) and isinstance(command.get("description"), str)
    assert caps.get("emission_fps") is None or isinstance(caps["emission_fps"], int | float)
    assert descriptor.get("generation") in (None, "streamed"), "Helios is not a stepped model"


async def test_local_descriptor(needs_local: Target) -> None:
    async with httpx.AsyncClient(base_url=needs_local.url, timeout=10) as http:
        try:
            resp = await http.post("/start_session", json={})
            assert resp.status_code == 200, resp.text
            descriptor = resp.json()
            check_ready(descriptor)
            again = await http.get("/session")
            assert again.status_code == 200 and again.json()["session_id"] == descriptor["session_id"]
        finally:
            assert (await http.post("/stop_session")).status_code == 200


@pytest.mark.mock_only
async def test_local_start_is_idempotent(needs_local: Target) -> None:
    """[mock] (as RT2): a second POST /start_session returns the running session."""
    async with httpx.AsyncClient(base_url=needs_local.url, timeout=10) as http:
        try:
            first = (await http.post("/start_session", json={})).json()
            second = await http.post("/start_session", json={})
            assert second.status_code == 200 and second.json()["session_id"] == first["session_id"]
        finally:
            await http.post("/stop_session")
        idle = (await http.get("/session")).json()
        assert idle["state"] == "READY", "GET /session with no session running (RT2)"


async def test_production_descriptor_polling_and_delete(needs_production: Target) -> None:
    target = needs_production
    async with httpx.AsyncClient(base_url=target.url, timeout=10, headers=target.auth) as http:
        resp = await http.post("/sessions", json=CLIENT_BODY)
        assert 200 <= resp.status_code < 300, resp.text
        created = resp.json()
        check_base(created)
        assert created["state"] in STATES
        sid = created["session_id"]
        try:
            descriptor = created
            for _ in range(60):  # ready = capabilities and selected_transport present, whatever the state
                if descriptor.get("capabilities") and descriptor.get("selected_transport"):
                    break
                assert descriptor["state"] not in ("CLOSED", "INACTIVE"), descriptor
                await asyncio.sleep(0.2)
                poll = await http.get(f"/sessions/{sid}")
                assert poll.status_code == 200, "a non-2xx poll is fatal for both clients"
                descriptor = poll.json()
                check_base(descriptor)
                assert descriptor["state"] in STATES
            else:
                pytest.fail("the session never became ready (≈ 12 s)")
            check_ready(descriptor)
        finally:
            deleted = await http.delete(f"/sessions/{sid}")
        assert 200 <= deleted.status_code < 300
        after = await http.get(f"/sessions/{sid}")
        assert after.status_code == 404 or after.json()["state"] == "CLOSED"


async def test_production_routes_need_a_bearer_token(needs_production: Target) -> None:
    async with httpx.AsyncClient(base_url=needs_production.url, timeout=10) as http:
        resp = await http.post("/sessions", json=CLIENT_BODY)
        assert resp.status_code == 401, resp.text


@pytest.mark.mock_only
async def test_production_delete_twice_is_404(needs_production: Target) -> None:
    async with httpx.AsyncClient(
        base_url=needs_production.url, timeout=10, headers=needs_production.auth
    ) as h:
        sid = (await h.post("/sessions", json=CLIENT_BODY)).json()["session_id"]
        assert (await h.delete(f"/sessions/{sid}")).status_code == 200
        assert (await h.delete(f"/sessions/{sid}")).status_code == 404


async def _offer_sdp() -> tuple[RTCPeerConnection, str, str]:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.createDataChannel("data")
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    mid = next(t.mid for t in pc.getTransceivers() if t.kind == "video")
    return pc, pc.localDescription.sdp, str(mid)


async def _poll_answer(http: httpx.AsyncClient, path: str) -> dict[str, Any]:
    """GET until 200; only 202 may come before (§1.6); the answer must be there within ≈ 6.2 s (§1.10)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 6.2
    while True:
        resp = await http.get(path)
        if resp.status_code == 200:
            body = resp.json()
            assert body["sdp_answer"].startswith("v=0"), body
            return body
        assert resp.status_code == 202, f"GET {path}: {resp.status_code} is fatal for both clients"
        assert loop.time() < deadline, "no SDP answer within 6.2 s of the offer"
        await asyncio.sleep(0.1)


async def test_flat_sdp_params_answers_exactly_202_then_polls(
    open_client: ClientFactory, target: Target
) -> None:
    """JS 2.9.0's legacy route: POST and PUT must be exactly 202 (200/201 make JS fail)."""
    owner = await open_client("v1")  # creates the session and keeps it alive
    base = f"/sessions/{owner.session_id}/transport/webrtc"
    headers = target.auth if target.mode == "production" else {}
    async with httpx.AsyncClient(base_url=target.url, timeout=10, headers=headers) as http:
        for method in ("POST", "PUT"):
            pc, sdp, mid = await _offer_sdp()
            try:
                body = {
                    "sdp_offer": sdp,
                    "client_info": {"sdk_version": "2.9.0", "sdk_type": "js"},
                    "track_mapping": [
                        {"mid": mid, "name": "main_video", "kind": "video", "direction": "recvonly"}
                    ],
                }
                resp = await http.request(method, base + "/sdp_params", json=body)
                assert resp.status_code == 202, f"{method} sdp_params: {resp.status_code}"
                await _poll_answer(http, base + "/sdp_params")
            finally:
                await pc.close()


async def test_registered_connection_signalling(open_client: ClientFactory, target: Target) -> None:
    """PY 1.13.0's route: 201 {connection_id}, trickle 202, offer 202 {connection_id}, GET 200 answer."""
    owner = await open_client("v1")
    base = f"/sessions/{owner.session_id}/transport/webrtc"
    headers = target.auth if target.mode == "production" else {}
    async with httpx.AsyncClient(base_url=target.url, timeout=10, headers=headers) as http:
        resp = await http.post(base + "/connections", json={})
        assert resp.status_code == 201, resp.text
        cid = resp.json()["connection_id"]
        assert isinstance(cid, int)
        final = {
            "candidates": [],
            "is_final": True,
            "client_info": {"sdk_version": "1.13.0", "sdk_type": "python"},
        }
        resp = await http.post(f"{base}/connections/{cid}/ice_candidates", json=final)
        assert resp.status_code == 202, resp.text
        pc, sdp, mid = await _offer_sdp()
        try:
            body = {
                "sdp_offer": sdp,
                "client_info": {"sdk_version": "1.13.0", "sdk_type": "python"},
                "track_mapping": [
                    {"name": "main_video", "kind": "video", "direction": "recvonly", "mid": mid}
                ],
            }
            resp = await http.post(f"{base}/connections/{cid}/sdp_params", json=body)
            assert resp.status_code == 202 and resp.json().get("connection_id") == cid, resp.text
            answer = await _poll_answer(http, f"{base}/connections/{cid}/sdp_params")
            assert answer.get("connection_id") == cid
        finally:
            await pc.close()
        unknown = await http.get(f"{base}/connections/{cid + 7919}/sdp_params")
        assert unknown.status_code == 404


async def test_ice_servers_shape(open_client: ClientFactory, target: Target) -> None:
    owner = await open_client("v1")
    headers = target.auth if target.mode == "production" else {}
    async with httpx.AsyncClient(base_url=target.url, timeout=10, headers=headers) as http:
        resp = await http.get(f"/sessions/{owner.session_id}/transport/webrtc/ice_servers")
    assert resp.status_code == 200
    servers = resp.json()["ice_servers"]
    assert isinstance(servers, list)
    for server in servers:
        assert "urls" not in server, "the key is `uris` (PY rejects `urls`)"
        assert isinstance(server["uris"], list) and all(isinstance(u, str) for u in server["uris"])
        creds = server.get("credentials")
        assert creds is None or (isinstance(creds["username"], str) and isinstance(creds["password"], str))


async def test_uploads_slot_and_put(open_client: ClientFactory, target: Target) -> None:
    owner = await open_client("v1")
    headers = target.auth if target.mode == "production" else {}
    async with httpx.AsyncClient(base_url=target.url, timeout=10) as http:
        data = b"\x89PNG not really"
        resp = await http.post(
            f"/sessions/{owner.session_id}/uploads",
            json={"name": "ref.png", "size": len(data), "mime_type": "image/png"},
            headers=headers,
        )
        assert resp.status_code == 201, resp.text
        slot = resp.json()
        assert isinstance(slot["presigned_id"], str) and isinstance(slot["path"], str)
        assert slot["presigned_url"].startswith(("http://", "https://")), "presigned_url must be absolute"
        put = await http.put(slot["presigned_url"], content=data, headers={"Content-Type": "image/png"})
        assert 200 <= put.status_code < 300, put.text


@pytest.mark.mock_only
async def test_upload_errors(open_client: ClientFactory, target: Target) -> None:
    """RT2 statuses: bad slot request 4xx, byte count mismatch 400, second PUT 409; unknown slot 404."""
    owner = await open_client("v1")
    headers = target.auth if target.mode == "production" else {}
    async with httpx.AsyncClient(base_url=target.url, timeout=10, headers=headers) as http:
        url = f"/sessions/{owner.session_id}/uploads"
        for bad in ({"name": "a.png", "size": 0, "mime_type": "image/png"}, {"name": "", "size": 3}):
            # docs/PROTOCOL.md §1.7: RT2/RT3 answer 400; the mock's body validation answers 422 (both 4xx)
            assert (await http.post(url, json=bad)).status_code in (400, 422)
        slot = (await http.post(url, json={"name": "a.png", "size": 3, "mime_type": "image/png"})).json()
        assert (await http.put(slot["presigned_url"], content=b"ab")).status_code == 400
        assert (await http.put(slot["presigned_url"], content=b"abc")).status_code == 200
        assert (await http.put(slot["presigned_url"], content=b"abc")).status_code == 409
        assert (await http.put(slot["presigned_url"] + "x", content=b"abc")).status_code == 404


async def test_session_end_reaches_every_connection(open_client: ClientFactory, target: Target) -> None:
    """Ending the session (stop_session / DELETE) tells or disconnects every client (§3.8)."""
    owner = await open_client("v1")
    other = await open_client("v1", join=owner)
    if target.mode == "local":
        async with httpx.AsyncClient(base_url=target.url, timeout=10) as http:
            assert (await http.post("/stop_session")).status_code == 200
            assert (await http.get("/session")).json()["state"] in ("READY", "CLOSED", "CLOSING")
    else:
        async with httpx.AsyncClient(base_url=target.url, timeout=10, headers=target.auth) as http:
            assert (await http.delete(f"/sessions/{owner.session_id}")).status_code == 200
            after = await http.get(f"/sessions/{owner.session_id}")
            assert after.status_code == 404 or after.json()["state"] == "CLOSED"

    def ended(client: WireClient) -> bool:
        told = any(r.scope == "control" and r.type == "session_ended" for r in client.received)
        data = client.channels.get("data")
        return told or data is None or data.readyState == "closed"

    for client in (owner, other):
        await client._wait(functools.partial(ended, client), 10, "the session end to reach the client")
        if target.is_mock:  # [mock] / RT3: a SessionEnded notice precedes the close
            notices = [r for r in client.received if r.type == "session_ended"]
            assert notices and notices[0].data["reason"], client.received[-3:]

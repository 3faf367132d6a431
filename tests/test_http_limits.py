"""HTTP- and session-level limits (issue 12): each defect the probe found, with its exact input.

The mock runs in this process (uvicorn on loopback) with small limits, so the test can reach into the
registry for what only the server knows (weak references to closed sessions, a failing channel send).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import uvicorn

from conformance.server import free_port
from conformance.wire_client import WireClient
from mock_server.app import create_app
from mock_server.config import Settings
from mock_server.services.registry import Registry
from mock_server.session.record import SessionRecord
from mock_server.transport.ice import restrict_host_addresses

BOUND = 15.0
BEARER = {"Authorization": "Bearer limits-test"}


@contextlib.asynccontextmanager
async def _mock(**limits: Any) -> AsyncIterator[tuple[str, Registry]]:
    """The mock on a free loopback port with `limits` as settings; yields its URL and registry."""
    restrict_host_addresses(["127.0.0.1"])
    port = free_port()
    settings = Settings(port=port, speed=20.0, native_size=(160, 96), ice_addresses=("127.0.0.1",), **limits)
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.get_running_loop().create_task(server.serve())
    try:
        await _until(lambda: server.started, BOUND)
        yield f"http://127.0.0.1:{port}", app.state.registry
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, BOUND)


async def _until(condition: Callable[[], bool], timeout: float) -> None:
    """Poll `condition` until it holds (TimeoutError after `timeout` s)."""
    async with asyncio.timeout(timeout):
        for _ in iter(int, 1):
            if condition():
                return
            await asyncio.sleep(0.02)


def _detail(resp: httpx.Response) -> str:
    body = resp.json()
    assert set(body) == {"detail"}, body
    assert isinstance(body["detail"], str)
    return body["detail"]


async def _statuses(http: httpx.AsyncClient, path: str) -> list[int]:
    """Every status recorded for `path` (in a session's record or as an unbound request)."""
    record = (await http.get("/admin/record")).json()
    found = [h["status"] for h in record["http"] if h["path"] == path]
    for session in record["sessions"]:
        found += [h["status"] for h in session["http"] if h["path"] == path]
    return found


def _nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


# ---------------------------------------------------------------- deep nesting


@pytest.mark.parametrize("depth", [500, 999, 5000])
async def test_deeply_nested_bodies_get_422_on_every_lenient_route(depth: int) -> None:
    async with _mock() as (url, _), httpx.AsyncClient(base_url=url, timeout=BOUND) as http:
        assert (await http.post("/start_session", json={})).status_code == 200
        routes = [
            ("/sessions", BEARER),
            ("/start_session", {}),
            ("/tokens", {"Reactor-API-Key": "k"}),
            ("/sessions/local/transport/webrtc/connections", {}),
            ("/stop_session", {}),
        ]
        for path, headers in routes:
            resp = await http.post(
                path, content=_nested(depth), headers={**headers, "Content-Type": "application/json"}
            )
            assert resp.status_code == 422, (path, resp.text)
            detail = _detail(resp)
            assert f"nests {depth} levels" in detail and "max_json_depth" in detail
            assert 422 in await _statuses(http, path), path
        assert (await http.get("/health")).status_code == 200
        assert (await http.get("/session")).json()["state"] == "WAITING"  # the nested stop did nothing


# ---------------------------------------------------------------- uploads


async def _slot(http: httpx.AsyncClient, size: int) -> str:
    body = {"name": "a.png", "size": size, "mime_type": "image/png"}
    resp = await http.post("/sessions/local/uploads", json=body)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["presigned_id"])


async def _raw_put(url: str, head: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(head)
    await writer.drain()
    return reader, writer


async def test_lone_surrogate_bodies_get_422_and_never_reach_the_record() -> None:
    """The lenient routes parse with the wire's bounds: valid JSON holding "\\ud800" is not text."""
    async with _mock() as (url, _), httpx.AsyncClient(base_url=url, timeout=BOUND) as http:
        assert (await http.post("/start_session", json={})).status_code == 200
        body = b'{"reason": "fox \\ud800 snow"}'
        resp = await http.post("/stop_session", content=body, headers={"Content-Type": "application/json"})
        assert resp.status_code == 422 and "surrogate" in _detail(resp)
        assert (await http.get("/session")).json()["state"] != "CLOSING"  # the session was not stopped
        assert (await http.get("/admin/record")).status_code == 200


async def test_upload_longer_than_its_slot_is_refused_before_the_body_is_read() -> None:
    async with _mock() as (url, registry), httpx.AsyncClient(base_url=url, timeout=BOUND) as http:
        await http.post("/start_session", json={})
        pid = await _slot(http, 1000)
        # Declared too long: answered from the headers alone, no body byte sent.
        head = f"PUT /uploads/{pid} HTTP/1.1\r\nHost: x\r\nContent-Length: 268435456\r\n\r\n".encode()
        reader, writer = await _raw_put(url, head)
        status_line = await asyncio.wait_for(reader.readline(), BOUND)
        assert b" 413 " in status_line, status_line
        writer.close()
        # Chunked, no length: answered at the first chunk past the size while the body is still open.
        head = f"PUT /uploads/{pid} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        reader, writer = await _raw_put(url, head)
        chunk = b"x" * 65536
        for _ in range(4):
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), BOUND)  # the body's end was never sent
        assert b" 413 " in status_line, status_line
        writer.close()
        session = registry.local
        assert session is not None
        upload = session.uploads.get(pid)
        assert upload is not None and upload.data is None  # state unchanged
        assert (await http.put(f"/uploads/{pid}", content=b"y" * 1000)).status_code == 200
        assert (await _statuses(http, f"/uploads/{pid}")).count(413) == 2


async def test_upload_declared_size_and_slot_count_are_limited() -> None:
    async with _mock(max_upload_slots=2) as (url, _), httpx.AsyncClient(base_url=url, timeout=BOUND) as http:
        await http.post("/start_session", json={})
        huge_body = {"name": "a", "size": 10**30, "mime_type": "image/png"}
        huge = await http.post("/sessions/local/uploads", json=huge_body)
        assert huge.status_code == 413 and "max_upload_bytes" in _detail(huge)
        await _slot(http, 10)
        await _slot(http, 10)
        third = await http.post("/sessions/local/uploads", json={**huge_body, "size": 10})
        assert third.status_code == 409 and "max_upload_slots" in _detail(third)
        assert (await _statuses(http, "/sessions/local/uploads")) == [413, 201, 201, 409]


async def test_slow_body_times_out_with_408() -> None:
    async with _mock(body_read_timeout=0.5) as (url, _), httpx.AsyncClient(base_url=url) as http:
        head = b"POST /start_session HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{}"
        reader, writer = await _raw_put(url, head)
        status_line = await asyncio.wait_for(reader.readline(), BOUND)
        assert b" 408 " in status_line, status_line
        writer.close()
        assert 408 in await _statuses(http, "/start_session")
        assert (await http.get("/health")).status_code == 200


async def test_request_body_size_is_limited() -> None:
    async with _mock(max_request_bytes=1000) as (url, _), httpx.AsyncClient(base_url=url) as http:
        resp = await http.post("/start_session", content=b" " * 2000)
        assert resp.status_code == 413 and "max_request_bytes" in _detail(resp)


# ---------------------------------------------------------------- signalling


async def test_trickled_candidates_per_connection_are_limited() -> None:
    async with _mock(max_candidates_per_connection=5) as (url, registry):
        async with httpx.AsyncClient(base_url=url, timeout=BOUND) as http:
            await http.post("/start_session", json={})
            path = "/sessions/local/transport/webrtc/connections/7777/ice_candidates"
            cand = {"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host", "sdp_mid": "0"}
            assert (await http.post(path, json={"candidates": [cand] * 5})).status_code == 202
            over = await http.post(path, json={"candidates": [cand]})
            assert over.status_code == 413 and "max_candidates_per_connection" in _detail(over)
            assert registry.local is not None
            assert len(registry.local.connections[7777].early_candidates) == 5  # nothing more kept
            assert 413 in await _statuses(http, path)


async def test_connections_and_offers_per_session_are_limited() -> None:
    async with _mock(max_connections_per_session=2) as (url, registry):
        async with httpx.AsyncClient(base_url=url, timeout=BOUND) as http:
            await http.post("/start_session", json={})
            base = "/sessions/local/transport/webrtc"
            assert (await http.post(f"{base}/connections", json={})).status_code == 201
            assert (await http.post(f"{base}/connections", json={})).status_code == 201
            third = await http.post(f"{base}/connections", json={})
            assert third.status_code == 409 and "max_connections_per_session" in _detail(third)
            offer = await http.post(f"{base}/connections/9999/sdp_params", json={"sdp_offer": "v=0"})
            assert offer.status_code == 409
            trickle = await http.post(f"{base}/connections/9998/ice_candidates", json={"candidates": []})
            assert trickle.status_code == 409
            assert registry.local is not None and len(registry.local.connections) == 2
            assert (await _statuses(http, f"{base}/connections")) == [201, 201, 409]


# ---------------------------------------------------------------- record bytes


def test_record_is_bounded_by_bytes_and_counts_what_it_dropped() -> None:
    record = SessionRecord("s", "local", max_bytes=50_000, max_entry_bytes=2_000)
    for i in range(5_000):
        record.reject(1, "invalid_command", "bad " * 100, "x", "r" * 5000)
        record.add("in", "message", body={"blob": "z" * 10_000, "i": i})
    assert record.size <= 50_000
    truncated = record.to_json()["truncated"]
    assert truncated["dropped_rejections"] > 0 and truncated["dropped_entries"] > 0
    assert truncated["elided_bodies"] == 5_000
    last = record.entries[-1].body
    assert last["elided"] is True and last["bytes"] > 10_000


async def test_a_flooded_session_keeps_admin_record_bounded() -> None:
    async with _mock(max_record_bytes=40_000) as (url, _), httpx.AsyncClient(base_url=url) as http:
        await http.post("/start_session", json={})
        path = "/sessions/local/transport/webrtc/connections/1/ice_candidates"
        for _ in range(600):
            assert (await http.post(path, json={"candidates": "not a list"})).status_code == 422
        resp = await http.get("/admin/record")
        assert resp.status_code == 200 and len(resp.content) < 200_000
        [session] = resp.json()["sessions"]
        assert session["record_truncated"]["dropped_entries"] > 0
        assert session["http"][-1]["status"] == 422  # the newest are kept


# ---------------------------------------------------------------- closed sessions


async def test_closed_sessions_release_peers_and_are_collected() -> None:
    async with _mock() as (url, registry):
        client = WireClient(url, wire="v0")
        try:
            await client.connect(timeout=BOUND)
            session = registry.local
            assert session is not None
            conn = next(iter(session.connections.values()))
            session_ref, conn_ref = weakref.ref(session), weakref.ref(conn)
            await session.close("test over")
            assert conn.peer is None and conn.video is None and not conn.channels
            del session, conn
        finally:
            await client.close(stop_session=False)
        await asyncio.sleep(0.2)
        gc.collect()
        assert session_ref() is None and conn_ref() is None
        async with httpx.AsyncClient(base_url=url) as http:
            [view] = (await http.get("/admin/record")).json()["sessions"]
        assert view["closed"] and view["close_reason"] == "test over"
        assert view["connections"] and view["connections"][0]["frames_sent"] >= 0
        assert any(e["kind"] == "session_ended" for e in view["entries"])


async def test_closed_summaries_are_bounded_by_count_and_bytes() -> None:
    async with _mock(keep_closed_sessions=2) as (url, registry), httpx.AsyncClient(base_url=url) as http:
        for reason in ("one", "two", "three"):
            await http.post("/start_session", json={})
            await http.post("/stop_session", json={"reason": reason})
        reasons = [s["close_reason"] for s in (await http.get("/admin/record")).json()["sessions"]]
        assert reasons == ["two", "three"]
        registry.settings = Settings(max_closed_record_bytes=1)  # any record is over: only the newest stays
        await http.post("/start_session", json={})
        await http.post("/stop_session", json={"reason": "four"})
        reasons = [s["close_reason"] for s in (await http.get("/admin/record")).json()["sessions"]]
        assert reasons == ["four"]


# ---------------------------------------------------------------- sends


async def test_a_failing_channel_send_is_recorded_and_the_clock_goes_on() -> None:
    async with _mock() as (url, registry):
        client = WireClient(url, wire="v0")
        try:
            await client.connect(timeout=BOUND)
            session = registry.local
            assert session is not None
            client.send_command("set_prompt", {"prompt": "a calm lake"})
            client.send_command("start")
            await _until(lambda: session.chunks_generated >= 1, BOUND)
            conn = next(iter(session.connections.values()))

            def refuse(_: object) -> None:
                raise ValueError("Data channel message too large for SCTP")

            for channel in conn.channels.values():
                channel.send = refuse  # type: ignore[method-assign,assignment]
            before = session.chunks_generated
            await _until(lambda: session.chunks_generated >= before + 2, BOUND * 2)
            assert not session.closed
            failed = [e for e in session.record.entries if e.kind == "send failed"]
            assert failed and "too large" in failed[0].body["error"]
            assert not any(e.kind == "task failed" for e in session.record.entries)
        finally:
            await client.close()


# ---------------------------------------------------------------- 405 and OpenAPI


async def test_405_names_every_method_of_the_path() -> None:
    async with _mock() as (url, _), httpx.AsyncClient(base_url=url) as http:
        resp = await http.delete("/sessions/local/transport/webrtc/sdp_params")
        assert resp.status_code == 405 and resp.headers["allow"] == "GET, POST, PUT"
        assert "DELETE is not allowed" in _detail(resp)
        resp = await http.patch("/sessions/abc")
        assert resp.status_code == 405 and resp.headers["allow"] == "DELETE, GET"


def test_openapi_documents_the_error_statuses_with_the_detail_schema() -> None:
    doc = create_app(Settings()).openapi()
    ops = doc["paths"]["/sessions"]["post"]["responses"]
    assert {"400", "401", "404", "413", "422", "429"} <= set(ops)
    assert ops["429"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorDetail")
    put = doc["paths"]["/uploads/{presigned_id}"]["put"]["responses"]
    assert {"403", "404", "409", "413"} <= set(put)


# ---------------------------------------------------------------- clients that go away


@pytest.mark.parametrize("upload", [False, True])
async def test_a_client_leaving_mid_body_is_one_quiet_log_line(
    upload: bool, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with _mock() as (url, _), httpx.AsyncClient(base_url=url, timeout=BOUND) as http:
        monkeypatch.setattr(logging.getLogger("uvicorn"), "propagate", True)  # its tracebacks reach caplog
        await http.post("/start_session", json={})
        path = f"/uploads/{await _slot(http, 1000)}" if upload else "/start_session"
        method = "PUT" if upload else "POST"
        caplog.set_level(logging.INFO)
        caplog.clear()
        head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n".encode()
        _, writer = await _raw_put(url, head + b"x" * 10)
        writer.close()
        await writer.wait_closed()
        await _until(lambda: any("closed the connection" in r.getMessage() for r in caplog.records), BOUND)
        assert not [r for r in caplog.records if r.exc_info or r.levelname in ("ERROR", "CRITICAL")]
        assert (await http.get("/health")).status_code == 200

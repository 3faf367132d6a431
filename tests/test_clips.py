"""Clips over the real wire (raw aiortc client on loopback): clipReady / clipFailed on v0 and v1, the HLS
playlist (202 with Retry-After, then 200), segments that PyAV decodes, and the marker band proving which
chunks and frames a clip holds. The Python SDK and the browser (hls.js) are in tests/e2e."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
import pytest_asyncio
from clip_tools import decode_clip, expected_frames, fetch_clip

from conformance.server import HeliosServer
from conformance.wire_client import Received, WireClient
from mock_server.wire import reactor_wire_pb as pb

FPS = 24.0
CHUNK_S = 33 / FPS


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HeliosServer]:
    log = tmp_path_factory.mktemp("clips") / "server.log"
    started = HeliosServer.start(speed=4, resolution="160x96", log_path=log, extra=["--clip-url-ttl", "60"])
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def server_off(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HeliosServer]:
    log = tmp_path_factory.mktemp("clips-off") / "server.log"
    started = HeliosServer.start(speed=4, resolution="160x96", log_path=log, extra=["--recording", "off"])
    try:
        yield started
    finally:
        started.stop()


@pytest_asyncio.fixture
async def fresh(server: HeliosServer) -> AsyncIterator[HeliosServer]:
    server.reset()
    yield server


def send_runtime(client: WireClient, type_: str, data: dict[str, Any] | None = None) -> None:
    client.send_raw("data", json.dumps({"scope": "runtime", "data": {"type": type_, "data": data or {}}}))


async def runtime_reply(client: WireClient, after: int, timeout: float = 10.0) -> Received:
    """The first clipReady/clipFailed received after index `after` of client.received."""

    def found() -> Received | None:
        for item in client.received[after:]:
            if item.scope == "runtime" and item.type in ("clipReady", "clipFailed"):
                return item
        return None

    await client._wait(lambda: found() is not None, timeout, "clipReady or clipFailed")
    item = found()
    assert item is not None
    return item


async def generate(client: WireClient, until_chunk: int, prompt: str = "a lighthouse at dawn") -> None:
    client.send_command("set_prompt", {"prompt": prompt})
    client.send_command("start")
    await client.wait_message("chunk_complete", lambda d: d["chunk_index"] >= until_chunk, timeout=30)


def window_chunks(data: dict[str, Any]) -> tuple[int, int]:
    return round(data.get("start_marker", 0.0) / CHUNK_S), round(data["end_marker"] / CHUNK_S) - 1


async def test_v0_request_clip_gives_a_playlist_whose_segments_decode_to_the_window(
    fresh: HeliosServer,
) -> None:
    async with fresh.client(wire="v0") as client:
        await generate(client, until_chunk=3)
        mark = len(client.received)
        send_runtime(client, "requestClip", {"duration_seconds": 2.0})
        reply = await runtime_reply(client, mark)
        assert reply.type == "clipReady", reply
        ready = reply.data
        assert ready["session_id"] == "local" and ready["kind"] == "clip"
        first, last = window_chunks(ready)
        assert ready["start_marker"] <= ready["now_marker"] - 2.0 < ready["start_marker"] + CHUNK_S
        assert ready["now_marker"] <= ready["end_marker"] < ready["now_marker"] + CHUNK_S + 1e-9
        assert ready["playlist_url"].startswith(fresh.url + "/clips?")
        fetched = await asyncio.to_thread(fetch_clip, ready["playlist_url"])
        if ready["end_marker"] > ready["now_marker"]:
            assert fetched.polls_202 >= 1 and all(v.isdigit() for v in fetched.retry_after)
    assert "#EXT-X-VERSION:7" in fetched.playlist and "#EXT-X-ENDLIST" in fetched.playlist
    assert len(fetched.runs) == 1 and len(fetched.runs[0][1]) == last - first + 1
    frames = decode_clip(fetched.data)
    assert [m for _, _, m in frames] == expected_frames(first, last)
    assert {(w, h) for w, h, _ in frames} == {(320, 192)}  # sr_scale 2x (the default) of 160x96


async def test_v1_clip_and_recording_are_correlated_by_request_id(fresh: HeliosServer) -> None:
    async with fresh.client(wire="v1") as client:
        await generate(client, until_chunk=2)
        clip_id = client.request_control("request_clip", pb.RequestClip(duration_seconds=1.0))
        recording_id = client.request_control("request_recording")
        clip = await client.reply(clip_id)
        recording = await client.reply(recording_id)
        fetched = await asyncio.to_thread(fetch_clip, recording.data["playlist_url"])
    assert clip.type == "clip_ready" and recording.type == "clip_ready"
    assert clip.data["kind"] == "clip" and recording.data["kind"] == "recording"
    assert recording.data.get("start_marker", 0.0) == 0.0  # proto3 leaves a zero double out
    first, last = window_chunks(clip.data)
    assert last - first + 1 in (1, 2)
    frames = [m for _, _, m in decode_clip(fetched.data)]
    rec_last = window_chunks(recording.data)[1]
    assert frames == expected_frames(0, rec_last)


async def test_refusals_name_their_reason(fresh: HeliosServer) -> None:
    async with fresh.client(wire="v0") as client:
        mark = len(client.received)
        send_runtime(client, "requestClip", {"duration_seconds": 4})
        nothing = await runtime_reply(client, mark)
        await generate(client, until_chunk=0)
        for bad in (0, -3, None):
            mark = len(client.received)
            send_runtime(client, "requestClip", {} if bad is None else {"duration_seconds": bad})
            invalid = await runtime_reply(client, mark)
            assert invalid.type == "clipFailed" and invalid.data["reason"].startswith("invalid duration"), bad
    assert nothing.type == "clipFailed" and nothing.data["reason"].startswith("nothing recorded yet")
    async with fresh.client(wire="v1") as client:
        await generate(client, until_chunk=0)
        rid = client.request_control("request_clip", pb.RequestClip(duration_seconds=math.nan))
        failed = await client.reply(rid)
    assert failed.type == "clip_failed" and failed.data["reason"].startswith("invalid duration")


async def test_recording_off_keeps_recorder_disabled(server_off: HeliosServer) -> None:
    async with server_off.client(wire="v1") as client:
        await generate(client, until_chunk=0)
        failed = await client.reply(
            client.request_control("request_clip", pb.RequestClip(duration_seconds=4))
        )
    assert failed.type == "clip_failed" and failed.data["reason"] == "recorder disabled"


async def test_a_size_change_starts_a_new_run_with_its_own_init_segment(fresh: HeliosServer) -> None:
    async with fresh.client(wire="v0") as client:
        await generate(client, until_chunk=0)
        client.send_command("set_sr_scale", {"sr_scale": "off"})
        await client.wait_message("chunk_complete", lambda d: d["chunk_index"] >= 3, timeout=30)
        mark = len(client.received)
        send_runtime(client, "requestRecording")
        ready = (await runtime_reply(client, mark)).data
        fetched = await asyncio.to_thread(fetch_clip, ready["playlist_url"])
    assert fetched.playlist.count("#EXT-X-MAP") == 2 and fetched.playlist.count("#EXT-X-DISCONTINUITY") == 1
    frames = decode_clip(fetched.data)  # SDK-style: one (the last) init segment, then every fragment
    first, last = window_chunks(ready)
    assert [m for _, _, m in frames] == expected_frames(first, last)
    sizes = [(w, h) for w, h, _ in frames]
    assert sizes[0] == (320, 192) and sizes[-1] == (160, 96)
    switch = sizes.index((160, 96))
    assert switch % 33 == 0 and set(sizes[switch:]) == {(160, 96)}


async def test_clips_outlive_their_session_and_links_are_guarded(fresh: HeliosServer) -> None:
    async with fresh.client(wire="v0") as client:
        await generate(client, until_chunk=1)
        mark = len(client.received)
        send_runtime(client, "requestClip", {"duration_seconds": 1})
        url = (await runtime_reply(client, mark)).data["playlist_url"]
        await asyncio.to_thread(fetch_clip, url)  # ready before the session ends
    # the client stopped the session on close
    after = await asyncio.to_thread(fetch_clip, url)
    assert decode_clip(after.data)
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    async with httpx.AsyncClient(timeout=10) as http:
        forged = await http.get(f"{fresh.url}/clips?" + urlencode({**query, "start": "0.000"}))
        missing = await http.get(f"{fresh.url}/clips?session_id=local")
        outside = await http.get(f"{fresh.url}/clips/chunks/999.m4s?{parts.query}")
    assert forged.status_code == 403 and "signature" in forged.json()["detail"]
    assert missing.status_code == 400 and "lacks" in missing.json()["detail"]
    assert outside.status_code == 404 and "not part of this clip" in outside.json()["detail"]


async def test_production_clips_need_a_bearer_allowed_on_the_session(fresh: HeliosServer) -> None:
    fresh.token, default_token = "clips-account-a", fresh.token
    try:
        await _production_clip(fresh)
    finally:
        fresh.token = default_token


async def _production_clip(fresh: HeliosServer) -> None:
    async with fresh.client(wire="v1", mode="production") as client:
        await generate(client, until_chunk=1)
        ready = await client.reply(client.request_control("request_clip", pb.RequestClip(duration_seconds=1)))
        url = ready.data["playlist_url"]
        async with httpx.AsyncClient(timeout=10) as http:
            anonymous = await http.get(url)
            foreign = await http.get(url, headers={"Authorization": "Bearer clips-account-b"})
        fetched = await asyncio.to_thread(fetch_clip, url, {"Authorization": "Bearer clips-account-a"})
    assert anonymous.status_code == 401
    assert foreign.status_code == 403
    assert decode_clip(fetched.data)

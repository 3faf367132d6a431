"""The inspector's HTTP side against a running mock (no browser): pages behind the admin guard, the overview
of `/`, a session's timeline (where each prompt command took effect), chunk thumbnails and the live frame
(whose markers must decode), the static assets and the vendored bundles; the Faults panel's data (the fault
kinds, the bodies it sends, fired faults on the timeline) and the admin clip endpoint behind "Cut a clip"."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from conformance.server import HeliosServer
from mock_server.cli import banner
from mock_server.config import Settings
from mock_server.faults import parse_fault
from mock_server.faults.catalogue import COMMAND_KINDS, CREATION_KINDS, KINDS, TIMED_KINDS
from mock_server.media.markers import decode_markers, prompt_id

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
from clip_tools import decode_clip, fetch_clip  # noqa: E402

STATIC = REPO / "mock_server" / "inspector" / "static"
PROMPT_A = "A red fox trotting through snow"
PROMPT_B = "A lighthouse on a cliff at dawn"
PROMPT_C = "A paper boat on a puddle"


def _get(server: HeliosServer, path: str, **headers: str) -> httpx.Response:
    return httpx.get(server.url + path, headers={**server.admin_headers, **headers}, timeout=10)


async def _aget(server: HeliosServer, path: str) -> httpx.Response:
    async with httpx.AsyncClient(headers=server.admin_headers, timeout=10) as http:
        return await http.get(server.url + path)


async def _local(server: HeliosServer) -> dict[str, Any]:
    overview = (await _aget(server, "/admin/inspector/overview")).json()
    (local,) = [s for s in overview["sessions"] if s["mode"] == "local"]
    return local


def _decode_png(content: bytes) -> Any:
    return decode_markers(np.asarray(Image.open(io.BytesIO(content)).convert("RGB")))


# ------------------------------------------------------------------------------------------ guard, assets


def test_pages_answer_the_browser_address_bar_and_refuse_other_sites(helios: HeliosServer) -> None:
    for path in ("/", "/playground", "/inspector/sessions/local"):
        page = _get(helios, path, **{"Sec-Fetch-Site": "none"})
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html"), path
        assert "default-src 'self'" in page.headers["content-security-policy"]
        refused = _get(helios, path, **{"Sec-Fetch-Site": "cross-site", "Origin": "http://evil.example"})
        assert refused.status_code == 403 and "detail" in refused.json(), path
    data = _get(helios, "/admin/inspector/overview", Origin="http://evil.example")
    assert data.status_code == 403
    assert "access-control-allow-origin" not in data.headers


def test_admin_token_guards_pages_and_data(tmp_path: Path) -> None:
    server = HeliosServer.start(admin_token="s3cret-token", log_path=tmp_path / "server.log")
    try:
        bare = {"Sec-Fetch-Site": "none"}
        assert httpx.get(server.url + "/", headers=bare).status_code == 401
        assert httpx.get(server.url + "/?admin_token=wrong", headers=bare).status_code == 401
        assert httpx.get(server.url + "/?admin_token=s3cret-token", headers=bare).status_code == 200
        assert httpx.get(server.url + "/admin/inspector/overview").status_code == 401
        ok = httpx.get(
            server.url + "/admin/inspector/overview", headers={"X-Helios-Admin-Token": "s3cret-token"}
        )
        assert ok.status_code == 200 and ok.json()["server"]["admin_token_required"] is True
    finally:
        server.stop()


def test_static_assets_are_served_and_unknown_ones_named(helios: HeliosServer) -> None:
    for name, kind in (("common.js", "text/javascript"), ("inspector.css", "text/css")):
        res = httpx.get(f"{helios.url}/inspector/static/{name}")
        assert res.status_code == 200 and res.headers["content-type"].startswith(kind), name
    bundle = httpx.get(f"{helios.url}/inspector/static/playground.bundle.js")
    assert bundle.status_code == 200 and len(bundle.content) > 100_000
    missing = httpx.get(f"{helios.url}/inspector/static/../../config.py")
    assert missing.status_code == 404
    unknown = httpx.get(f"{helios.url}/inspector/static/secret.txt")
    assert unknown.status_code == 404 and "playground.bundle.js" in unknown.json()["detail"]


def test_banner_names_the_inspector() -> None:
    assert "inspector http://127.0.0.1:8123/ " in banner(Settings(host="127.0.0.1", port=0), 8123)


def test_static_files_ship_as_package_data() -> None:
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "mock_server.inspector.static" in setuptools["packages"]
    assert setuptools["package-data"]["mock_server.inspector.static"] == ["*"]
    from mock_server.routes.inspector import PAGES
    from mock_server.routes.inspector import STATIC as SERVED

    for name in [*SERVED, *PAGES.values()]:
        assert (STATIC / name).is_file(), name


def test_bundles_are_fresh_builds_of_the_locked_packages() -> None:
    playground = json.loads((STATIC / "playground.licenses.json").read_text())
    sdk = playground["packages"]["@reactor-team/js-sdk"]
    assert (sdk["version"], sdk["license"]) == ("2.9.0", "MIT")
    panels = json.loads((STATIC / "panels.licenses.json").read_text())
    hls = panels["packages"]["hls.js"]
    assert (hls["version"], hls["license"]) == ("1.6.15", "Apache-2.0") and "Apache" in hls["license_text"]
    lock = json.loads((REPO / "tests" / "js" / "package-lock.json").read_text())["packages"]
    for licenses in (playground, panels):
        assert licenses["esbuild"] == "0.28.2"
        for name, package in licenses["packages"].items():
            assert lock[f"node_modules/{name}"]["version"] == package["version"], name
    if shutil.which("node") is None or not (REPO / "tests/js/node_modules/esbuild").exists():
        pytest.skip("node and tests/js/node_modules (npm ci) are needed to rebuild the bundle")
    check = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "build_playground.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert check.returncode == 0, check.stdout + check.stderr


# ------------------------------------------------------------------------------------------ views


async def test_overview_lists_sessions_with_states(helios: HeliosServer) -> None:
    async with httpx.AsyncClient() as http:
        token = (await http.post(helios.url + "/tokens", headers={"Reactor-API-Key": "k"})).json()["jwt"]
        created = await http.post(
            helios.url + "/sessions",
            headers={"Authorization": f"Bearer {token}"},
            json={"model": {"name": "helios"}},
        )
    assert created.status_code == 201
    async with helios.client(wire="v1") as client:
        await client.command("set_prompt", {"prompt": PROMPT_A})
        await client.command("start", {})
        await client.command("no_such_command", {})
        await client.wait_message("chunk_complete", timeout=20)
        overview = (await _aget(helios, "/admin/inspector/overview")).json()
    rows = {s["session_id"]: s for s in overview["sessions"]}
    assert set(rows) == {"local", created.json()["session_id"]}
    local = rows["local"]
    assert (local["state"], local["generation"], local["prompt"]) == ("STREAMING", "running", PROMPT_A)
    assert [c["codec"] for c in local["connections"]] == ["v1"]
    assert [c["type"] for c in local["commands"]] == ["set_prompt", "start", "no_such_command"]
    assert local["rejections_total"] == 1 and local["rejections"][0]["code"] == "invalid_command"
    assert "command-unknown" in {v["rule_id"] for v in local["violations"]}
    assert rows[created.json()["session_id"]]["state"] in ("PENDING", "ACTIVE")
    assert overview["server"]["native_size"] == "160x96"


@pytest.mark.parametrize("wire", ["v0", "v1"])
async def test_timeline_places_each_prompt_where_it_took_effect(helios: HeliosServer, wire: str) -> None:
    async with helios.client(wire=wire) as client:
        await client.command("set_prompt", {"prompt": PROMPT_A})
        await client.command("start", {})
        await client.command("schedule_prompt", {"prompt": PROMPT_B, "chunk": 3})
        await client.wait_message("chunk_complete", lambda d: d["chunk_index"] >= 4, timeout=30)
        await client.command("set_prompt", {"prompt": PROMPT_C})
        accepted_c = await client.wait_message("prompt_accepted", lambda d: d["prompt"] == PROMPT_C)
        await client.wait_message("chunk_complete", lambda d: d["chunk_index"] >= accepted_c.data["chunk"])
        key = (await _local(helios))["key"]
        timeline = (await _aget(helios, f"/admin/inspector/sessions/{key}")).json()
    columns = timeline["columns"]
    assert [c["chunk"] for c in columns] == list(range(len(columns)))
    assert columns[3]["prompt"] == PROMPT_B and columns[2]["prompt"] == PROMPT_A
    assert f"prompt → {PROMPT_B!r}" in columns[3]["changes"]
    assert columns[3]["prompt_id"] == prompt_id(PROMPT_B)
    effects = {e["detail"]["prompt"]: e for e in timeline["events"] if e["lane"] == "effect"}
    scheduled = effects[PROMPT_B]
    assert (scheduled["label"], scheduled["effective_chunk"], scheduled["received_chunk"]) == (
        "schedule_prompt",
        3,
        0,
    )
    assert columns[scheduled["column"]]["chunk"] == 3
    later = effects[PROMPT_C]  # received during chunk N, in effect from N+1 (docs/HELIOS.md §4)
    assert later["effective_chunk"] == accepted_c.data["chunk"]
    assert later["effective_chunk"] - later["received_chunk"] in (0, 1)
    assert columns[later["column"]]["chunk"] == later["effective_chunk"]
    assert columns[later["column"]]["prompt"] == PROMPT_C
    commands = [e for e in timeline["events"] if e["lane"] == "command"]
    assert [e["label"] for e in commands] == ["set_prompt", "start", "schedule_prompt", "set_prompt"]
    assert {e["label"] for e in timeline["events"] if e["lane"] == "connection"} >= {"connection ready"}


async def test_thumbnails_and_live_frame_decode_and_join_nothing(helios: HeliosServer) -> None:
    async with helios.client(wire="v1") as client:
        await client.command("set_prompt", {"prompt": PROMPT_A})
        await client.command("start", {})
        await client.command("schedule_prompt", {"prompt": PROMPT_B, "chunk": 3})
        await client.wait_message("chunk_complete", lambda d: d["chunk_index"] >= 3, timeout=30)
        before = await _local(helios)
        key = before["key"]
        thumb = await _aget(helios, f"/inspector/sessions/{key}/chunks/3/thumbnail.png")
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/png"
        markers = _decode_png(thumb.content)
        assert markers is not None and (markers.chunk, markers.frame) == (3, 0)
        assert markers.prompt_id == prompt_id(PROMPT_B)
        assert thumb.headers["x-helios-markers"].startswith(
            f"chunk=3 frame=0 prompt_id={prompt_id(PROMPT_B)} "
        )
        assert Image.open(io.BytesIO(thumb.content)).width <= 192
        for _ in range(3):
            live = await _aget(helios, f"/admin/inspector/sessions/{key}/frame.png")
            assert live.status_code == 200 and _decode_png(live.content) is not None
        after = await _local(helios)
    assert [c["connection_id"] for c in after["connections"]] == [
        c["connection_id"] for c in before["connections"]
    ]
    record = helios.transcript("local")
    assert not [e for e in record["entries"] if "inspector" in e["kind"]], "inspector requests in the record"


async def test_unknown_session_chunk_and_time_are_named(helios: HeliosServer) -> None:
    assert (await _aget(helios, "/admin/inspector/sessions/sess_nope")).status_code == 404
    async with helios.client(wire="v1") as client:
        await client.command("set_prompt", {"prompt": PROMPT_A})
        await client.command("start", {})
        await client.wait_message("chunk_complete", timeout=20)
        key = (await _local(helios))["key"]
        far = await _aget(helios, f"/inspector/sessions/{key}/chunks/99999/thumbnail.png")
        assert far.status_code == 404 and "chunk 99999" in far.json()["detail"]
        bad_t = await _aget(helios, f"/inspector/sessions/{key}/chunks/0/thumbnail.png?t=soon")
        assert bad_t.status_code == 400 and "t must be a number" in bad_t.json()["detail"]
        negative = await _aget(helios, f"/inspector/sessions/{key}/chunks/-1/thumbnail.png")
        assert negative.status_code == 400


async def test_a_closed_session_stays_inspectable(helios: HeliosServer) -> None:
    """After the session ends, `/` still lists it (generation "ended") and its kept chunks still render."""
    async with helios.client(wire="v1") as client:
        await client.command("set_prompt", {"prompt": PROMPT_A})
        await client.command("start", {})
        await client.wait_message("chunk_complete", lambda d: d["chunk_index"] >= 1, timeout=30)
        key = (await _local(helios))["key"]
    async with httpx.AsyncClient() as http:
        assert (await http.post(helios.url + "/stop_session", json={})).status_code in (200, 409)
    overview = (await _aget(helios, "/admin/inspector/overview")).json()
    row = next(s for s in overview["sessions"] if s["key"] == key)
    assert row["generation"] == "ended" and row["prompt"] == PROMPT_A
    thumb = await _aget(helios, f"/inspector/sessions/{key}/chunks/1/thumbnail.png")
    markers = _decode_png(thumb.content)
    assert markers is not None and (markers.chunk, markers.prompt_id) == (1, prompt_id(PROMPT_A))
    live = await _aget(helios, f"/admin/inspector/sessions/{key}/frame.png")
    assert live.status_code == 404


# ------------------------------------------------------------------------------------------ faults panel


def _panel_body(kind: dict[str, Any], session_id: str, **trigger: Any) -> dict[str, Any]:
    """The body the Faults panel sends for a kind with its fields left at their defaults."""
    params = {p["name"]: p["default"] for p in kind["params"] if p["default"] is not None}
    return {"kind": kind["kind"], "session_id": session_id, "params": params, **trigger}


def test_fault_kinds_offer_every_session_kind_with_bodies_the_server_accepts(helios: HeliosServer) -> None:
    kinds = {k["kind"]: k for k in _get(helios, "/admin/inspector/fault-kinds").json()["kinds"]}
    assert list(kinds) == [k for k in KINDS if k not in CREATION_KINDS]
    stall = {p["name"]: p for p in kinds["stall"]["params"]}
    assert stall["seconds"]["type"] == "number" and stall["seconds"]["default"] == 5.0
    assert (stall["seconds"]["exclusiveMinimum"], stall["seconds"]["maximum"]) == (0, 600.0)
    moderation = {p["name"]: p for p in kinds["moderation"]["params"]}
    assert moderation["action"]["enum"] == ["warn", "terminate"]
    assert moderation["categories"]["type"] == "list" and moderation["prompt_pattern"]["optional"]
    for name, kind in kinds.items():
        assert kind["triggers"][0] == "now" and kind["description"], name
        assert ("at_chunk" in kind["triggers"]) == (name in TIMED_KINDS), name
        assert ("on_command" in kind["triggers"]) == (name in COMMAND_KINDS), name
        for trigger in kind["triggers"]:
            value = {"now": None, "at_chunk": 3, "after_seconds": 2.5, "on_command": "set_prompt"}[trigger]
            body = _panel_body(kind, "local", **({trigger: value} if value is not None else {}))
            assert parse_fault(body).kind == name, body  # every default form the panel can send is valid
    refused = httpx.get(
        helios.url + "/admin/inspector/fault-kinds", headers={"Origin": "http://evil.example"}
    )
    assert refused.status_code == 403


AT_CHUNK = 30  # far enough ahead (≈ 2 s at the tests' speed) to be armed before the session gets there


async def test_a_fault_injected_for_the_session_fires_and_shows_on_the_timeline(helios: HeliosServer) -> None:
    async with helios.client(wire="v0") as client, httpx.AsyncClient(headers=helios.admin_headers) as http:
        await client.command("set_prompt", {"prompt": PROMPT_A})
        await client.command("start", {})
        await client.wait_message("chunk_complete", timeout=20)
        served = (await http.get(helios.url + "/admin/inspector/fault-kinds")).json()["kinds"]
        kinds = {k["kind"]: k for k in served}
        stall = _panel_body(kinds["stall"], "local")
        stall["params"]["seconds"] = 0.3
        slow = _panel_body(kinds["slow_chunks"], "local", at_chunk=AT_CHUNK)
        for body in (stall, slow):
            armed = await http.post(helios.url + "/admin/faults", json=body)
            assert armed.status_code == 201, armed.text
        await client.wait_message("chunk_complete", lambda d: d["chunk_index"] > AT_CHUNK, timeout=30)
        key = (await _local(helios))["key"]
        timeline = (await _aget(helios, f"/admin/inspector/sessions/{key}")).json()
        listed = (await http.get(helios.url + "/admin/faults")).json()["faults"]
    assert [(f["kind"], f["status"], f["fired_count"]) for f in listed] == [
        ("stall", "expired", 1),
        ("slow_chunks", "expired", 1),
    ], listed
    fired = [e for e in timeline["events"] if e["lane"] == "fault"]
    assert [e["label"] for e in fired] == ["stall", "slow_chunks"], fired
    assert fired[0]["detail"]["params"] == {"seconds": 0.3}
    columns = timeline["columns"]
    assert listed[1]["firings"][0]["chunk"] == AT_CHUNK
    assert columns[fired[1]["column"]]["chunk"] == AT_CHUNK  # fired as that chunk began, shown in its column
    assert [f["kind"] for f in timeline["session"]["faults"]] == ["stall", "slow_chunks"]


# ------------------------------------------------------------------------------------------ clip endpoint


async def test_a_clip_cut_by_an_admin_plays_the_last_seconds(helios: HeliosServer) -> None:
    async with helios.client(wire="v1") as client, httpx.AsyncClient(headers=helios.admin_headers) as http:
        await client.command("set_prompt", {"prompt": PROMPT_A})
        await client.command("start", {})
        await client.wait_message("chunk_complete", lambda d: d["chunk_index"] >= 3, timeout=30)
        key = (await _local(helios))["key"]
        cut = await http.post(f"{helios.url}/admin/sessions/{key}/clips", json={"duration_seconds": 2})
        assert cut.status_code == 201, cut.text
        clip = cut.json()
        assert clip["playlist_url"].startswith(helios.url + "/clips?")
        assert clip["session_id"] == "local" and clip["kind"] == "clip"
        assert 1.9 <= clip["now_marker"] - clip["start_marker"] <= 2 + 33 / 24
        first, last = clip["chunks"]
        fetched = await asyncio.to_thread(fetch_clip, clip["playlist_url"])
        by_id = await http.post(f"{helios.url}/admin/sessions/local/clips", json={"duration_seconds": 1})
        assert by_id.status_code == 201
    frames = decode_clip(fetched.data)
    assert len(frames) == (last - first + 1) * 33
    chunks = sorted({m[0] for _, _, m in frames if m is not None})
    assert chunks == list(range(first, last + 1)), chunks  # one chunk index per recorded position here
    record = helios.transcript("local")
    assert not [e for e in record["entries"] if e["kind"] in ("RequestClip", "ClipReadyOut")]


async def test_admin_clip_errors_are_named(helios: HeliosServer) -> None:
    url = f"{helios.url}/admin/sessions/local/clips"
    async with httpx.AsyncClient(headers=helios.admin_headers) as http:
        none = await http.post(url, json={"duration_seconds": 2})
        assert none.status_code == 404 and "no session 'local'" in none.json()["detail"]
        async with helios.client(wire="v0"):
            early = await http.post(url, json={"duration_seconds": 2})
            assert early.status_code == 409 and "nothing recorded yet" in early.json()["detail"]
            bad_bodies = (
                {"duration_seconds": 0},
                {"duration_seconds": "x"},
                {},
                {"duration_seconds": 1, "extra": 1},
            )
            for bad in bad_bodies:
                answer = await http.post(url, json=bad)
                assert answer.status_code == 422 and answer.json()["detail"], bad
            far = await http.post(url, json={"duration_seconds": 1e9})
            assert far.status_code == 422 and "3600" in json.dumps(far.json()["detail"])
            foreign = await http.post(
                url, json={"duration_seconds": 2}, headers={"Origin": "http://evil.example"}
            )
            assert foreign.status_code == 403

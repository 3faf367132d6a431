"""End-to-end in a real browser: Debian's headless Chromium runs a page with the published JS SDK (2.9.0,
bundled by esbuild) against the mock, all inside a private network namespace (tests/browser/run_browser.cjs).

The page is served from another origin than the mock, so every SDK request is cross-origin (CORS preflights).
Scenario: ready; set_prompt A + start; first chunk_complete; set_prompt B; the chunk after B's chunk
completes; disconnect. The tests check what only a browser shows: preflights, Chromium's offer (MIDs, H264),
video decoded by Chromium and grabbed from the <video> element, and the prompt switch in those pixels at
exactly one chunk.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest
from jsclient import NS_SCENARIO, REPO, ensure_node_modules
from netns import run_in_netns
from PIL import Image
from prereq import missing_prerequisite

from mock_server.media.markers import Markers, decode_markers, prompt_id

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
RUN_BROWSER = REPO / "tests" / "browser" / "run_browser.cjs"
SPEED = 2
NATIVE = (160, 96)
OUTPUT = (NATIVE[0] * 2, NATIVE[1] * 2)  # sr_scale "2x" (the default)
PROMPT_A = "A red fox trotting through snow"
PROMPT_B = "A lighthouse on a cliff at dawn"


@dataclass(frozen=True)
class Grab:
    """One picture grabbed from the <video> element: its file, page time (ms), size and markers."""

    file: str
    t: float
    width: int
    height: int
    markers: Markers | None
    js_markers: dict[str, int] | None  # the JS harness's decodeMarkers of the same picture, in the page


@dataclass
class BrowserRun:
    returncode: int
    out_dir: Path
    results: dict[str, Any]
    record: dict[str, Any]
    grabs: list[Grab]
    wall_s: float

    def context(self) -> str:
        def tail(name: str, n: int = 25) -> str:
            path = self.out_dir / name
            return "\n".join(path.read_text(errors="replace").splitlines()[-n:]) if path.exists() else ""

        return (
            f"\n--- exit {self.returncode}, artifacts in {self.out_dir}; error: {self.results.get('error')}"
            f"\n--- harness:\n{tail('harness.log')}\n--- client:\n{tail('client.log')}"
            f"\n--- browser:\n{tail('browser.log')}\n--- server:\n{tail('server.log')}"
        )

    @property
    def session(self) -> dict[str, Any]:
        sessions = self.record.get("sessions") or []
        assert sessions, f"no session in the server record: {str(self.record)[:300]}" + self.context()
        return sessions[-1]

    def server_http(self, session: bool = True) -> list[tuple[str, str, int]]:
        """(method, path, status) of the requests the mock recorded for the session (or tied to none)."""
        rows = self.session.get("http", []) if session else self.record.get("http", [])
        return [(h["method"], h["path"], int(h["status"])) for h in rows]

    def messages(self, msg_type: str) -> list[dict[str, Any]]:
        return [m["data"] for m in self.results.get("messages", []) if m["type"] == msg_type]


def _read_grabs(out_dir: Path, frames: list[dict[str, Any]]) -> list[Grab]:
    grabs = []
    for f in frames:
        rgb = np.asarray(Image.open(out_dir / "frames" / f["file"]).convert("RGB"))
        size = (int(f["width"]), int(f["height"]))
        grabs.append(Grab(f["file"], float(f["t"]), *size, decode_markers(rgb), f.get("jsMarkers")))
    return grabs


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> BrowserRun:
    if not CHROMIUM.exists():
        missing_prerequisite(f"{CHROMIUM} is missing (Debian package 'chromium') for the browser test")
    ensure_node_modules()
    out_dir = tmp_path_factory.mktemp("browser")
    client = [shutil.which("node") or "node", str(RUN_BROWSER), "--out-dir", str(out_dir)]
    client += ["--api-url", "{api_url}", "--prompt-a", PROMPT_A, "--prompt-b", PROMPT_B]
    argv = [sys.executable, str(NS_SCENARIO), "--out-dir", str(out_dir), "--client-timeout", "60"]
    argv += [f"--server-arg={a}" for a in ("--mode=local", f"--speed={SPEED}")]
    argv += [f"--server-arg=--resolution={NATIVE[0]}x{NATIVE[1]}", "--", *client]
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["PYTHONUNBUFFERED"] = "1"
    started = time.monotonic()
    proc = run_in_netns(
        argv,
        cwd=REPO,
        env=env,
        timeout=120,
        stdout_path=out_dir / "ns.stdout",
        stderr_path=out_dir / "ns.stderr",
    )
    wall = time.monotonic() - started
    results_path, record_path = out_dir / "results.json", out_dir / "record.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {"error": "no results.json"}
    record = json.loads(record_path.read_text()) if record_path.exists() else {"error": "no record.json"}
    grabs = _read_grabs(out_dir, results.get("frames", []))
    return BrowserRun(proc.returncode, out_dir, results, record, grabs, wall)


def test_scenario_ran(run: BrowserRun, capsys: pytest.CaptureFixture[str]) -> None:
    assert run.returncode == 0, "browser scenario failed" + run.context()
    res = run.results
    statuses = [s["status"] for s in res["statuses"]]
    assert statuses == ["connecting", "waiting", "ready", "disconnected"], statuses
    assert [t["name"] for t in res["tracks"]] == ["main_video"], res["tracks"]
    assert not res["errors"] and not res["page_errors"], (res["errors"], res["page_errors"])
    t_disconnect = res["steps"]["disconnect_sent"]
    early = [c for c in res["console"] if c["type"] in ("error", "pageerror") and c["t"] < t_disconnect]
    assert not early, f"browser console errors before disconnect: {early}"
    assert not run.session["rejections"], run.session["rejections"]
    # Chromium enumerates an interface only with a default route (netns.py adds one inside the namespace);
    # then its offer carries the 198.18.0.1 host candidate and ICE needs no peer-reflexive discovery.
    offered = res["sdp"][0]["offer"].count("a=candidate:")
    assert "198.18.0.1" in res["sdp"][0]["offer"], "Chromium offered no host candidate on the veth address"
    stats = [s["stats"] for s in res["sdk_stats"] if s["stats"].get("candidateType")]
    selected = stats[-1]["candidateType"] if stats else "?"
    with capsys.disabled():
        print(
            f"\n[browser] Chromium {res.get('browser_version')}: {len(run.grabs)} frames grabbed, "
            f"connect -> ready {res['steps']['ready'] - res['steps']['loaded']} ms after load, "
            f"{offered} candidates offered, selected local candidate {selected}, wall time {run.wall_s:.1f} s"
        )


def test_cors_preflights(run: BrowserRun) -> None:
    res = run.results
    page_origin = res["page_origin"]
    api = urlsplit(res["api_url"])
    assert res["page_origin_seen"] == page_origin
    assert page_origin != f"{api.scheme}://{api.netloc}", "the page must not share the mock's origin"
    # browser side: every SDK request to the mock succeeded with CORS headers
    browser = [(h["method"], urlsplit(h["url"]).path, h["status"], h.get("acao")) for h in res["http"]]
    assert browser, "the browser made no request to the mock" + run.context()
    bad = [h for h in browser if h[2] is None or not 200 <= h[2] < 300 or h[3] != "*"]
    assert not bad, f"cross-origin requests failed or lacked Access-Control-Allow-Origin: {bad}"
    calls = [(m, p) for m, p, _, _ in browser]
    for want in [
        ("POST", "/start_session"),
        ("GET", "/sessions/local/transport/webrtc/ice_servers"),
        ("POST", "/sessions/local/transport/webrtc/sdp_params"),
        ("GET", "/sessions/local/transport/webrtc/sdp_params"),
        ("POST", "/stop_session"),
    ]:
        assert want in calls, f"{want} not requested by the browser: {calls}"
    # server side: each path got a successful OPTIONS preflight before its first real request (the one for
    # /start_session came before the session existed, so the mock files it under requests tied to no session)
    server = run.server_http(session=False) + run.server_http()
    for path in {p for _, p in calls}:
        rows = [(m, s) for m, p, s in server if p == path]
        assert rows and rows[0] == ("OPTIONS", 200), f"no successful preflight first for {path}: {rows}"
    assert all(s == 200 for m, _, s in server if m == "OPTIONS"), server


def test_chromium_offer(run: BrowserRun) -> None:
    (pc,) = run.results["sdp"]
    offer, answer = pc["offer"], pc["answer"]
    sections = offer.split("\r\nm=")[1:]
    assert [s.split(" ", 1)[0] for s in sections] == ["video", "application"], offer
    video, app = sections
    assert "a=mid:0" in video and "a=recvonly" in video
    assert "a=mid:1" in app
    assert "a=group:BUNDLE 0 1" in offer
    assert "H264/90000" in video, "Chromium offered no H264"
    assert pc["transceivers"] == [{"mid": "0", "direction": "recvonly", "kind": "video"}]
    # the mock still picks VP8 (first payload type of its answer) and Chromium decodes VP8 on mid 0
    answer_video = answer.split("\r\nm=")[1]
    first_pt = answer_video.split("\r\n", 1)[0].split()[3]
    assert f"a=rtpmap:{first_pt} VP8/90000" in answer_video, answer_video[:400]
    (inbound,) = run.results["inbound_video"]
    assert inbound["codec"] == "video/VP8" and inbound["mid"] == "0", inbound


def test_video_decoded_by_the_browser(run: BrowserRun) -> None:
    (inbound,) = run.results["inbound_video"]
    assert inbound["framesDecoded"] > 0, inbound
    assert (inbound["frameWidth"], inbound["frameHeight"]) == OUTPUT, inbound
    fps = [s["stats"].get("framesPerSecond") or 0 for s in run.results["sdk_stats"]]
    assert max(fps, default=0) > 0, f"the SDK's statsUpdate never reported video: {fps}"
    times = [s["currentTime"] for s in run.results["current_time"]]
    assert times and times[-1] > times[0] + 1.0, f"<video> currentTime did not advance: {times}"
    assert run.grabs, "no frame grabbed from the <video> element" + run.context()
    assert {(g.width, g.height) for g in run.grabs} == {OUTPUT}
    good = [g for g in run.grabs if g.markers is not None]
    assert len(good) >= 0.9 * len(run.grabs), f"only {len(good)}/{len(run.grabs)} grabs carry markers"
    assert all(0 <= g.markers.frame < 33 for g in good)
    order = [(g.markers.chunk, g.markers.frame) for g in good]
    assert order == sorted(order), f"grabbed frames out of order: {order}"


def test_prompt_switch_in_pixels(run: BrowserRun) -> None:
    switch = run.results["steps"]["prompt_accepted_b"]["data"]["chunk"]
    accepted = run.messages("prompt_accepted")
    assert accepted == [{"prompt": PROMPT_A, "chunk": 0}, {"prompt": PROMPT_B, "chunk": switch}], accepted
    good = [g for g in run.grabs if g.markers is not None]
    wrong = [
        (g.file, g.markers.chunk, g.markers.frame, g.markers.prompt_id)
        for g in good
        if g.markers.prompt_id != prompt_id(PROMPT_B if g.markers.chunk >= switch else PROMPT_A)
    ]
    assert not wrong, f"wrong prompt (file, chunk, frame, prompt_id) with the switch at {switch}: {wrong}"
    seen = {g.markers.chunk for g in good}
    assert {switch - 1, switch} <= seen, f"switch at chunk {switch} not seen on both sides: {sorted(seen)}"
    for cc in run.messages("chunk_complete"):
        assert cc["active_prompt"] == (PROMPT_B if cc["chunk_index"] >= switch else PROMPT_A), cc


def test_js_harness_decoder_agrees_in_the_browser(run: BrowserRun) -> None:
    """@helios-mock/harness decodeMarkers on the page's RGBA ImageData == Python's decode of the same grab."""
    assert run.grabs, "no frame grabbed" + run.context()
    differ = []
    for g in run.grabs:
        m = g.markers
        python = None if m is None else {
            "chunk": m.chunk, "frame": m.frame, "promptId": m.prompt_id, "seed": m.seed, "imageId": m.image_id
        }  # fmt: skip
        if g.js_markers != python:
            differ.append((g.file, g.js_markers, python))
    assert not differ, f"JS and Python decoders differ on {len(differ)}/{len(run.grabs)} grabs: {differ[:5]}"
    assert sum(g.js_markers is not None for g in run.grabs) >= 0.9 * len(run.grabs)


def test_stop_session_at_the_end(run: BrowserRun) -> None:
    assert run.results["final_status"] == "disconnected"
    server = run.server_http()
    stops = [row for row in server if row[:2] == ("POST", "/stop_session")]
    assert stops == [("POST", "/stop_session", 200)], server
    assert server[-1] == stops[0], f"requests after POST /stop_session: {server}"
    assert run.session["closed"] is True
    commands = [c["type"] for c in run.session["commands"]]
    assert commands == ["set_prompt", "start", "set_prompt"], commands

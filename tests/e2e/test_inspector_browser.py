"""The inspector in a real browser: Debian's headless Chromium opens the mock's own pages (`/`, a session's
timeline, `/playground` with the bundled JS SDK), all inside a private network namespace
(tests/inspector/run_inspector.cjs; Chromium's WebRTC needs the namespace's non-loopback address).

Scenario: a production session is created over HTTP; the playground connects a local session and, with its
own buttons, sends set_prompt A, start and schedule_prompt B at chunk 3, injects a `stall` fault (Faults
panel) and cuts a clip (Clip panel: the SDK's runtime `requestClip`) that the bundled hls.js plays to its end;
then `/` and the local session's timeline are read, where a `slow_chunks` fault is injected at a later chunk
and a clip is cut through `POST /admin/sessions/{key}/clips` and played. Screenshots of the three pages are
kept under artifacts/inspector/.
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

from mock_server.media.markers import decode_markers, prompt_id

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
DRIVER = REPO / "tests" / "inspector" / "run_inspector.cjs"
ARTIFACTS = REPO / "artifacts" / "inspector"
PROMPT_A = "A red fox trotting through snow"
PROMPT_B = "A lighthouse on a cliff at dawn"
SWITCH = 3
SCREENSHOTS = ("inspector-playground.png", "inspector-sessions.png", "inspector-timeline.png")
CLIP_FRAMES = ("clip-playground.png", "clip-timeline.png")


@dataclass
class InspectorRun:
    returncode: int
    out_dir: Path
    results: dict[str, Any]
    record: dict[str, Any]
    wall_s: float

    def context(self) -> str:
        def tail(name: str, n: int = 25) -> str:
            path = self.out_dir / name
            return "\n".join(path.read_text(errors="replace").splitlines()[-n:]) if path.exists() else ""

        return (
            f"\n--- exit {self.returncode}, artifacts in {self.out_dir}; error: {self.results.get('error')}"
            f"\n--- console: {self.results.get('console', [])[-10:]}"
            f"\n--- client:\n{tail('client.log')}\n--- server:\n{tail('server.log')}"
        )


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> InspectorRun:
    if not CHROMIUM.exists():
        missing_prerequisite(f"{CHROMIUM} is missing (Debian package 'chromium') for the inspector test")
    ensure_node_modules()
    out_dir = tmp_path_factory.mktemp("inspector")
    client = [
        shutil.which("node") or "node",
        str(DRIVER),
        "--out-dir",
        str(out_dir),
        "--api-url",
        "{api_url}",
    ]
    client += ["--prompt-a", PROMPT_A, "--prompt-b", PROMPT_B, "--switch-chunk", str(SWITCH)]
    argv = [sys.executable, str(NS_SCENARIO), "--out-dir", str(out_dir), "--client-timeout", "160"]
    argv += [f"--server-arg={a}" for a in ("--mode=both", "--speed=1", "--resolution=320x192")]
    argv += ["--", *client]
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["PYTHONUNBUFFERED"] = "1"
    started = time.monotonic()
    proc = run_in_netns(
        argv,
        cwd=REPO,
        env=env,
        timeout=240,
        stdout_path=out_dir / "ns.stdout",
        stderr_path=out_dir / "ns.stderr",
    )
    wall = time.monotonic() - started
    results_path, record_path = out_dir / "results.json", out_dir / "record.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {"error": "no results.json"}
    record = json.loads(record_path.read_text()) if record_path.exists() else {"error": "no record.json"}
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for name in (*SCREENSHOTS, *CLIP_FRAMES, "thumbnail.png", "results.json"):
        if (out_dir / name).exists():
            shutil.copy(out_dir / name, ARTIFACTS / name)
    return InspectorRun(proc.returncode, out_dir, results, record, wall)


def _rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_scenario_ran(run: InspectorRun, capsys: pytest.CaptureFixture[str]) -> None:
    assert run.returncode == 0, "inspector scenario failed" + run.context()
    # (after disconnect, Chromium reports the SDK's closing data channel as an error: not the inspector's)
    t_disconnect = run.results["steps"]["disconnect_sent"]
    console = run.results["console"]
    errors = [c for c in console if c["type"] in ("error", "pageerror") and c["t"] < t_disconnect]
    assert not errors, f"browser console errors before disconnect: {errors}" + run.context()
    for name in SCREENSHOTS:
        assert (ARTIFACTS / name).stat().st_size > 10_000, f"{name} missing or empty"
    with capsys.disabled():
        print(f"\n[inspector] {len(run.results['requests'])} browser requests, wall time {run.wall_s:.1f} s")


def test_sessions_page_lists_both_sessions_with_states(run: InspectorRun) -> None:
    rows = {row["session_id"]: row for row in run.results["sessions"]}
    production = run.results["production_session"]
    assert set(rows) == {"local", production}, rows
    assert rows["local"]["state"] == "STREAMING", rows["local"]
    assert rows[production]["state"] == "ACTIVE", rows[production]
    for session_id, row in rows.items():
        assert row["state"] in row["text"], (session_id, row["text"])
    assert "production" in rows[production]["text"] and "local" in rows["local"]["text"]
    assert "320x192" in run.results["server_panel"], run.results["server_panel"]


def test_timeline_shows_the_switch_at_its_chunk(run: InspectorRun) -> None:
    timeline = run.results["timeline"]
    effect = " ".join(timeline["effect"])
    assert "schedule_prompt" in effect and PROMPT_B[:20] in effect, timeline
    assert f"from chunk {SWITCH}" in effect, effect
    received = [c for c in timeline["command_cells"] if "schedule_prompt" in c["text"]]
    assert received and received[0]["chunk"] != str(SWITCH), f"received where it took effect? {received}"
    assert f"prompt → '{PROMPT_B}'" in timeline["head"], timeline["head"]
    assert f"prompt_id={prompt_id(PROMPT_B)}" in timeline["markers"], timeline["markers"]
    assert timeline["thumbnail_src"] == "blob:"
    assert timeline["live_markers"].startswith("chunk="), timeline["live_markers"]


def test_thumbnail_decodes_to_the_new_prompt(run: InspectorRun) -> None:
    markers = decode_markers(_rgb(run.out_dir / "thumbnail.png"))
    assert markers is not None, "the chunk thumbnail carries no readable marker band"
    assert (markers.chunk, markers.frame, markers.prompt_id) == (SWITCH, 0, prompt_id(PROMPT_B)), markers


def test_playground_video_shows_the_prompt(run: InspectorRun) -> None:
    pg = run.results["playground"]
    assert pg["status"] == "ready" and not pg["errors"] and not pg["error_text"], pg
    assert [s["name"] for s in pg["sent"]] == ["set_prompt", "start", "schedule_prompt"], pg["sent"]
    assert "clipReady" in [m["type"] for m in pg["runtime_messages"]], pg["runtime_messages"]
    accepted = [m["data"] for m in pg["messages"] if m["type"] == "prompt_accepted"]
    assert accepted == [{"prompt": PROMPT_A, "chunk": 0}, {"prompt": PROMPT_B, "chunk": SWITCH}], accepted
    decoded = [decode_markers(_rgb(run.out_dir / "frames" / f["file"])) for f in run.results["frames"]]
    good = [m for m in decoded if m is not None]
    assert good, f"no grabbed frame decodes ({len(decoded)} grabbed)" + run.context()
    wrong = [m for m in good if m.prompt_id != prompt_id(PROMPT_B if m.chunk >= SWITCH else PROMPT_A)]
    assert not wrong, wrong
    assert any(m.prompt_id == prompt_id(PROMPT_A) for m in good), good
    (local,) = [s for s in run.record["sessions"] if s["mode"] == "local"]
    commands = [c["type"] for c in local["commands"]]
    assert commands[:3] == ["set_prompt", "start", "schedule_prompt"], commands


def test_no_request_leaves_the_mock(run: InspectorRun) -> None:
    api = urlsplit(run.results["api_url"])
    origin = f"{api.scheme}://{api.netloc}"
    elsewhere = [
        r["url"] for r in run.results["requests"] if not r["url"].startswith((origin + "/", "blob:", "data:"))
    ]
    assert not elsewhere, f"the browser asked other origins: {elsewhere}"
    assert not run.results["failed_requests"], run.results["failed_requests"]
    paths = {urlsplit(r["url"]).path for r in run.results["requests"] if r["url"].startswith(origin)}
    for want in ("/", "/playground", "/inspector/static/playground.bundle.js", "/admin/inspector/overview"):
        assert want in paths, (want, sorted(paths))


def test_faults_injected_from_the_pages_fire_and_show_on_the_timeline(run: InspectorRun) -> None:
    pg, timeline = run.results["playground"], run.results["timeline"]
    (stall,) = [f for f in pg["faults"] if f["kind"] == "stall"]
    assert (stall["session_id"], stall["params"], stall["fired_count"]) == ("local", {"seconds": 1.0}, 1)
    assert stall["at_chunk"] is None and stall["after_seconds"] is None  # trigger "now"
    assert pg["fault_result"].startswith(f"armed {stall['id']} (stall, now)"), pg["fault_result"]
    (slow,) = [f for f in timeline["faults"] if f["kind"] == "slow_chunks"]
    at = timeline["slow_chunks_at"]
    assert (slow["at_chunk"], slow["params"], slow["fired_count"]) == (at, {"count": 1, "factor": 1.5}, 1)
    assert slow["firings"][0]["chunk"] == at, slow
    lane = timeline["fault_lane"]
    assert any("stall" in c["text"] for c in lane), lane
    assert [c["chunk"] for c in lane if "slow_chunks" in c["text"]] == [str(at)], lane
    (local,) = [s for s in run.record["sessions"] if s["mode"] == "local"]
    fired = [(e["kind"], e["chunk"]) for e in local["entries"] if e["direction"] == "fault"]
    assert [k for k, _ in fired] == ["stall", "slow_chunks"] and fired[1][1] == at, fired


@pytest.mark.parametrize("where", ["playground", "timeline"])
def test_a_clip_cut_from_the_page_plays_to_its_end(run: InspectorRun, where: str) -> None:
    clip = run.results[where]["clip"]
    assert clip["status"] == "ended" and not clip["errors"], clip
    assert clip["playlist_status"] == 200 and clip["link"] == clip["reply"]["playlist_url"], clip
    assert clip["button"] == f"Cut a clip (last {3 if where == 'playground' else 4} s)"
    reply = clip["reply"]
    chunk_s = 33 / 24
    chunks = round((reply["end_marker"] - reply["start_marker"]) / chunk_s)
    assert abs(clip["duration"] - chunks * chunk_s) < 0.1, (clip["duration"], reply)
    markers = decode_markers(_rgb(run.out_dir / f"clip-{where}.png"))  # the last frame the <video> showed
    assert markers is not None, f"the clip's last frame has no readable marker band ({where})"
    assert markers.frame == 32 and markers.prompt_id == prompt_id(PROMPT_B), markers
    # no reset in this session: a chunk's place in the recording is its index
    assert markers.chunk == round(reply["end_marker"] / chunk_s) - 1, (markers, reply)
    (local,) = [s for s in run.record["sessions"] if s["mode"] == "local"]
    asked = [e for e in local["entries"] if e["direction"] == "in" and e["kind"] == "RequestClip"]
    assert len(asked) == 1, "only the playground's clip goes over the data channel"

"""End-to-end: the published JS SDK (v0 JSON) and the published Python SDK (v1 protobuf) in ONE session.

JS 2.9.0 cannot join an existing session: ``connect(jwt)`` always POSTs /sessions (production) or
/start_session (local) and takes no session id. So the mixed session is a local one: the JS client starts it
(legacy flat signalling) and the Python client adopts it with ``connect(session_id="local")`` (registered
connection). Both run concurrently in one namespace against one mock server (ns_scenario.py ``:::`` mode).

Choreography (each side waits for a broadcast caused by the other):
PY set_prompt -> JS sees conditions_ready -> JS schedule_prompt at chunk 2 -> PY sees it in ``state`` ->
PY start, save_snapshot -> both watch chunks; JS list_snapshots after chunk 3 -> PY disconnects after chunk 5
-> JS still gets chunks up to 8 (the adopting client must not end the session) -> JS disconnects.
"""

from __future__ import annotations

import json
import shutil
import statistics
from pathlib import Path
from typing import Any

import pytest
from jsclient import DRIVER, Frame, RunResult, Scenario, ensure_node_modules, read_frames
from py_scenarios.pyrun import PyRunResult, load_py_run, program_argv, require_python_sdk, run_ns

from mock_server.media.markers import prompt_id

pytestmark = pytest.mark.e2e

SPEED = 4
NATIVE = (160, 96)
OUTPUT = (NATIVE[0] * 2, NATIVE[1] * 2)
PY_PROMPT = "A python swims through a neon reef"  # as in py_scenarios/mixed_session.py
JS_PROMPT = "A jellyfish drifts past a lantern"
JS_CHUNK = 2
JS_LAST_CHUNK = 8
PY_LAST_CHUNK = 5
PY_SNAPSHOT = "py-snapshot"


def build_js_scenario() -> Scenario:
    sc = Scenario("local", timeout_ms=60_000)
    sc.connect()
    # PY's set_prompt broadcasts conditions_ready to every connection, JS included
    sc.wait(
        "conditions_ready", {"has_prompt": True}, save_as="py_conditions", from_start=True, timeout_ms=30_000
    )
    sc.command("schedule_prompt", {"prompt": JS_PROMPT, "chunk": JS_CHUNK}, step_id="js_schedule")
    sc.wait("prompt_accepted", {"prompt": JS_PROMPT}, save_as="js_prompt_accepted")
    sc.wait("generation_started", save_as="generation_started", from_start=True, timeout_ms=20_000)
    sc.wait("chunk_complete", {"chunk_index": 3}, save_as="cc3", from_start=True, timeout_ms=20_000)
    sc.command("list_snapshots", step_id="js_list")
    sc.wait("snapshot_list", save_as="js_snapshot_list")
    sc.wait(
        "chunk_complete",
        {"chunk_index": JS_LAST_CHUNK},
        save_as="cc_last",
        from_start=True,
        timeout_ms=20_000,
    )
    sc.disconnect()
    return sc


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunResult, PyRunResult]:
    """One run: server + JS driver + Python client, all in one namespace."""
    ensure_node_modules()
    require_python_sdk()
    out_dir: Path = tmp_path_factory.mktemp("mixed")
    scenario = build_js_scenario()
    scenario_path = out_dir / "scenario.json"
    scenario_path.write_text(json.dumps(scenario.to_json(out_dir), indent=1))
    js_argv = [shutil.which("node") or "node", str(DRIVER), str(scenario_path)]
    py_out = out_dir / "py"
    py_argv = program_argv(
        "mixed_session.py",
        py_out,
        "--speed",
        str(SPEED),
        "--js-prompt",
        JS_PROMPT,
        "--js-chunk",
        str(JS_CHUNK),
    )
    rc = run_ns(
        out_dir,
        [js_argv, py_argv],
        server_args=[f"--speed={SPEED}", f"--resolution={NATIVE[0]}x{NATIVE[1]}", "--log-level=info"],
        api_host="198.18.0.1",
        timeout=150,
    )
    events_path = out_dir / "events.jsonl"
    events = (
        [json.loads(line) for line in events_path.read_text().splitlines() if line.strip()]
        if events_path.exists()
        else []
    )
    record = json.loads((out_dir / "record.json").read_text()) if (out_dir / "record.json").exists() else {}
    js = RunResult("local", rc, out_dir, events, read_frames(out_dir / "frames.bin"), record)
    py = load_py_run("local", rc, py_out, out_dir, "client-2.log")
    return js, py


def _js_types(run: RunResult) -> set[str]:
    return {m["type"] for m in run.messages}


def _check_frames(run: RunResult, frames: list[Frame], what: str) -> None:
    """Frames show PY's prompt before JS_CHUNK and JS's prompt from it on; both sides observed."""
    good = [f for f in frames if f.markers is not None]
    assert len(good) >= 0.9 * len(frames) > 0, (
        f"{what}: {len(good)}/{len(frames)} frames decodable" + run.context()
    )
    assert {(f.width, f.height) for f in frames} == {OUTPUT}, what
    wrong = [
        (f.markers.chunk, f.markers.frame)
        for f in good
        if f.markers.prompt_id != prompt_id(JS_PROMPT if f.markers.chunk >= JS_CHUNK else PY_PROMPT)
    ]
    assert not wrong, f"{what}: frames with the wrong prompt (chunk, frame): {wrong[:10]}" + run.context(20)
    seen = {f.markers.chunk for f in good}
    assert {JS_CHUNK - 1, JS_CHUNK} <= seen, (
        f"{what}: switch at {JS_CHUNK} not seen on both sides: {sorted(seen)}"
    )


def test_both_clients_pass(mixed: tuple[RunResult, PyRunResult]) -> None:
    js, py = mixed
    assert py.results.get("ok") is True, "Python client failed" + py.context()
    js.assert_ok()
    assert js.step("connect")["session_id"] == "local"
    assert py.step("connect")["session_id"] == "local"


def test_one_session_two_encodings(mixed: tuple[RunResult, PyRunResult]) -> None:
    js, py = mixed
    sessions = js.record.get("sessions") or []
    assert len(sessions) == 1, f"expected one session, got {[s['session_id'] for s in sessions]}"
    session = sessions[0]
    assert session["mode"] == "local" and session["closed"] is True
    conns = {c["codec"]: c for c in session["connections"]}
    assert set(conns) == {"v0", "v1"}, session["connections"]
    assert conns["v0"]["legacy"] is True and conns["v1"]["legacy"] is False
    assert conns["v0"]["frames_sent"] > 0 and conns["v1"]["frames_sent"] > 0
    by_conn = {(c["type"], c["connection_id"]) for c in session["commands"]}
    js_id, py_id = conns["v0"]["connection_id"], conns["v1"]["connection_id"]
    for name in ("set_prompt", "start", "save_snapshot"):
        assert (name, py_id) in by_conn, f"{name} not recorded for the Python connection: {by_conn}"
    for name in ("schedule_prompt", "list_snapshots"):
        assert (name, js_id) in by_conn, f"{name} not recorded for the JS connection: {by_conn}"
    requests = [(h["method"], h["path"]) for h in session["http"]]
    assert requests.count(("POST", "/start_session")) == 1, requests  # JS only; PY adopted
    own = py.facts["own_session_gets"]  # the program's own polls, besides the SDK's adoption call
    assert requests.count(("GET", "/session")) == own + 1, (
        "PY's connect(session_id=) should GET /session once"
    )
    assert requests.count(("POST", "/stop_session")) == 1, requests  # JS's disconnect only
    assert requests[-1] == ("POST", "/stop_session"), requests[-3:]
    assert not session["rejections"], session["rejections"]


def test_broadcasts_reach_both(mixed: tuple[RunResult, PyRunResult]) -> None:
    js, py = mixed
    for run, name in ((js, "JS"), (py, "PY")):
        types = _js_types(run)
        for t in ("state", "conditions_ready", "generation_started", "chunk_complete"):
            assert t in types, f"{name} never saw a {t} broadcast: {sorted(types)}" + run.context(20)
        assert len(run.of_type("conditions_ready")) >= 2, f"{name}: conditions_ready of both commands"
        started = run.of_type("generation_started")
        assert [m["data"] for m in started] == [{"prompt": PY_PROMPT, "chunk_index": 0}], started
    js_chunks = [int(m["data"]["chunk_index"]) for m in js.of_type("chunk_complete")]
    py_chunks = [int(m["data"]["chunk_index"]) for m in py.of_type("chunk_complete")]
    assert js_chunks[: JS_LAST_CHUNK + 1] == list(range(JS_LAST_CHUNK + 1)), js_chunks
    assert py_chunks[: PY_LAST_CHUNK + 1] == list(range(PY_LAST_CHUNK + 1)), py_chunks
    # the state broadcast after JS's schedule_prompt reached PY
    scheduled = [m["data"]["scheduled_prompts"] for m in py.of_type("state")]
    assert {"0": PY_PROMPT, str(JS_CHUNK): JS_PROMPT} in scheduled, scheduled


def test_answers_only_to_sender(mixed: tuple[RunResult, PyRunResult]) -> None:
    js, py = mixed
    # PY's answers
    assert py.results["replies"]["set_prompt"] == {
        "type": "prompt_accepted",
        "data": {"prompt": PY_PROMPT, "chunk": 0},
    }
    assert py.results["replies"]["save_snapshot"]["type"] == "snapshot_saved"
    js_pa = [m["data"] for m in js.of_type("prompt_accepted")]
    assert js_pa == [{"prompt": JS_PROMPT, "chunk": JS_CHUNK}], f"JS saw prompt_accepted {js_pa}"
    assert not js.of_type("snapshot_saved"), "JS saw PY's snapshot_saved answer"
    # JS's answers
    py_pa = [m["data"] for m in py.of_type("prompt_accepted")]
    assert py_pa == [{"prompt": PY_PROMPT, "chunk": 0}], f"PY saw prompt_accepted {py_pa}"
    assert not py.of_type("snapshot_list"), "PY saw JS's snapshot_list answer"
    # JS's list_snapshots shows PY's snapshot: one shared model
    listing = js.step("wait:js_snapshot_list")["data"]
    assert listing["count"] == 1 and listing["snapshots"][0]["label"] == PY_SNAPSHOT, listing


def test_frames_both_sides(mixed: tuple[RunResult, PyRunResult]) -> None:
    js, py = mixed
    _check_frames(js, js.frames, "JS frames")
    _check_frames(py, py.frames, "PY frames")


def test_adopting_client_leaves_session_running(mixed: tuple[RunResult, PyRunResult], capsys: Any) -> None:
    js, py = mixed
    assert py.facts.get("session_state_after_disconnect") not in (None, "READY", "CLOSING"), py.facts
    last = js.step("wait:cc_last")
    assert last["data"]["chunk_index"] == JS_LAST_CHUNK
    assert js.statuses()[-1] == "disconnected"
    with capsys.disabled():
        times = [("js", js.timing("connect_to_ready_ms")), ("py adopt", py.timing("connect_to_ready_ms"))]
        shown = ", ".join(f"{n} {v:.1f} ms" for n, v in times if v is not None)
        values = [v for _, v in times if v is not None]
        print(f"\n[mixed] connect() -> ready: {shown}; median {statistics.median(values):.1f} ms")

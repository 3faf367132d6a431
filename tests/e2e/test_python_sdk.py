"""End-to-end: the published Python SDK (reactor-sdk 1.13.0, unmodified, v1 protobuf) drives the mock.

One scripted session per mode (local; production with ``jwt=``) runs py_scenarios/helios_workflow.py inside a
private network namespace; a third, short production run uses ``api_key=`` so the SDK mints its token with
POST /tokens. The program checks every reply itself; the tests below check the same run from its event log,
the decoded marker band of every received frame (exact chunk of each prompt, image and size change) and the
server's record.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from jsclient import Frame
from py_scenarios.pyrun import PyRunResult, run_py_scenario
from summary import print_past_capture

from mock_server.media.frames import render_frame
from mock_server.media.markers import prompt_id
from mock_server.model.images import UploadedFile, condition_image, image_id_of
from mock_server.model.plan import ChunkPlan

pytestmark = pytest.mark.e2e

SPEED = 4
NATIVE = (160, 96)
OUTPUT = (NATIVE[0] * 2, NATIVE[1] * 2)  # sr_scale "2x" (the default)
CHUNK_MS = 33 / (24 * SPEED) * 1000
SERVER_ARGS = [
    f"--speed={SPEED}",
    f"--resolution={NATIVE[0]}x{NATIVE[1]}",
    "--pending-delay=0.2",
    "--log-level=info",
]
PROGRAM = "helios_workflow.py"

# as in py_scenarios/helios_workflow.py
SEED = 1234
P0 = "A red fox trotting through snow"
P1 = "The fox stops and looks at the camera"
P2 = "Snow begins to fall heavily"
P3 = "Night falls over the forest"
P4 = "A lighthouse on a cliff at dawn"
IMAGE_SIZE = (50, 30)
SNAPSHOT_LABEL = "before-rewind"
PROBE_FRAME = 16  # py_scenarios/common.py keeps the pixels of this frame of every chunk
MAX_PIXEL_ERROR = 6.0  # mean absolute difference (grey levels) between a received frame and its render

_connect_times: list[tuple[str, float]] = []


@pytest.fixture(scope="module", autouse=True)
def connect_time_summary(request: pytest.FixtureRequest) -> Iterator[None]:
    """After the module: print every connect() -> ready time measured, with the median per mode."""
    yield
    if not _connect_times:
        return
    by_mode: dict[str, list[float]] = {}
    for name, ms in _connect_times:
        by_mode.setdefault(name.split("/")[0], []).append(ms)
    runs = ", ".join(f"{name} {ms:.1f} ms" for name, ms in _connect_times)
    medians = ", ".join(f"{mode} {statistics.median(v):.1f} ms" for mode, v in by_mode.items())
    line = f"[py-sdk] connect() -> ready: {runs}; median: {medians}"
    print_past_capture(request, line)


def _run(mode: str, out_dir: Path, *extra: str) -> PyRunResult:
    result = run_py_scenario(
        mode, out_dir, PROGRAM, ["--mode", mode, "--speed", str(SPEED), *extra], server_args=SERVER_ARGS
    )
    ms = result.timing("connect_to_ready_ms")
    if ms is not None:
        _connect_times.append((f"{mode}{'/api_key' if 'api_key' in extra else ''}", ms))
    return result


@pytest.fixture(scope="module", params=["local", "production"])
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> PyRunResult:
    """The full workflow, once per mode (shared by the tests of this module)."""
    mode: str = request.param
    return _run(mode, tmp_path_factory.mktemp(f"py-{mode}"))


@pytest.fixture(scope="module")
def api_key_run(tmp_path_factory: pytest.TempPathFactory) -> PyRunResult:
    """A short production run authenticated with ``api_key=`` (the SDK calls POST /tokens itself)."""
    return _run("production", tmp_path_factory.mktemp("py-api-key"), "--auth", "api_key", "--short")


# ─── helpers ─────────────────────────────────────────────────────────────────────────────────────────────


def marked(frames: Iterable[Frame]) -> list[Frame]:
    return [f for f in frames if f.markers is not None]


def generations(run: PyRunResult) -> tuple[list[Frame], list[Frame]]:
    """Decodable frames before and after the reset, told apart by the prompt (P4 only after the reset)."""
    frames = marked(run.frames)
    second = prompt_id(P4)
    return [f for f in frames if f.markers.prompt_id != second], [
        f for f in frames if f.markers.prompt_id == second
    ]


def schedule(run: PyRunResult) -> dict[int, str]:
    return {int(k): v for k, v in run.facts["schedule"].items()}


def check_by_chunk(
    run: PyRunResult,
    frames: list[Frame],
    expected: Callable[[int], Any],
    actual: Callable[[Frame], Any],
    switches: Iterable[int],
    what: str,
) -> None:
    """Every frame shows ``expected(chunk)``; for each switch chunk s, chunks s-1 and s were both observed."""
    assert frames, f"{what}: no decodable frames" + run.context()
    wrong = [
        (f.markers.chunk, f.markers.frame, actual(f))
        for f in frames
        if actual(f) != expected(f.markers.chunk)
    ]
    assert not wrong, f"{what}: {len(wrong)} frames wrong (chunk, frame, value): {wrong[:10]}" + run.context(
        20
    )
    seen = {f.markers.chunk for f in frames}
    for s in switches:
        assert {s - 1, s} <= seen, f"{what}: switch at chunk {s} not observed on both sides: {sorted(seen)}"


def reply(run: PyRunResult, step_id: str) -> Any:
    """The reply send_command returned in step ``step_id`` (the step must have passed)."""
    return run.step(step_id)["reply"]


# ─── tests ───────────────────────────────────────────────────────────────────────────────────────────────


def test_connect_ready(run: PyRunResult, capsys: pytest.CaptureFixture[str]) -> None:
    result = run.step("connect")
    assert run.statuses()[:3] == ["connecting", "waiting", "ready"], run.statuses()
    ms = result["connect_to_ready_ms"]
    assert 0 < ms < 20_000
    session = run.session_record()
    assert session["mode"] == run.mode
    if run.mode == "local":
        assert result["session_id"] == "local" == session["session_id"]
    else:
        assert result["session_id"] == session["session_id"] and result["session_id"].startswith("sess_")
    assert [(c["codec"], c["legacy"]) for c in session["connections"]] == [("v1", False)], session[
        "connections"
    ]
    assert run.of_type("state")[0]["data"]["started"] is False
    with capsys.disabled():
        print(f"\n[py-sdk {run.mode}] connect() -> ready: {ms:.1f} ms")


def test_whole_scenario_passes(run: PyRunResult) -> None:
    assert run.results.get("ok") is True and run.returncode == 0, "scenario failed" + run.context()
    assert not [e for e in run.events if e["kind"] == "error"], "on('error') fired"
    assert run.results["decodable_frames"] >= 0.95 * run.results["frames"] > 0, run.results


def test_request_schema(run: PyRunResult) -> None:
    schema = run.step("request_schema")
    assert schema["openapi"].startswith("3.1"), schema
    assert {"paths", "components", "info"} <= set(schema["keys"]), schema["keys"]
    for name in ("set_prompt", "schedule_prompt", "set_image", "start", "pause", "rewind", "list_snapshots"):
        assert f"/events/{name}" in schema["paths"], schema["paths"]
    assert "/events/clear_image" not in schema["paths"]


def test_every_reply(run: PyRunResult) -> None:
    f = run.facts
    paused, snap = f["paused_chunk"], f["snap_chunk"]
    snapshot = {"snapshot_index": 0, "label": SNAPSHOT_LABEL, "chunk": snap, "frame": 33 * snap}
    want = {
        "set_seed": None,
        "set_prompt_p0": {"type": "prompt_accepted", "data": {"prompt": P0, "chunk": 0}},
        "start": None,
        "schedule_p1": {"type": "prompt_accepted", "data": {"prompt": P1, "chunk": f["p1_chunk"]}},
        "set_prompt_p2": {"type": "prompt_accepted", "data": {"prompt": P2, "chunk": f["p2_chunk"]}},
        "set_image": {"type": "image_accepted", "data": {"width": IMAGE_SIZE[0], "height": IMAGE_SIZE[1]}},
        "set_image_strength": None,  # its effect is checked in test_pixels_match_render
        "set_sr_scale": None,
        "pause": {"type": "generation_paused", "data": {"frame": 33 * paused, "chunk": paused}},
        "set_prompt_p3": {"type": "prompt_accepted", "data": {"prompt": P3, "chunk": paused + 1}},
        "resume": {"type": "generation_resumed", "data": {"frame": 33 * (paused + 1), "chunk": paused + 1}},
        "save_snapshot": {"type": "snapshot_saved", "data": {**snapshot, "count": 1}},
        "list_snapshots": {
            "type": "snapshot_list",
            "data": {"snapshots": [snapshot], "count": 1, "capacity": 50},
        },
        "rewind": {"type": "rewind_complete", "data": snapshot},
        "start_again": None,
        "schedule_past": None,
        "reset": None,
        "set_prompt_p4": {"type": "prompt_accepted", "data": {"prompt": P4, "chunk": 0}},
        "start2": None,
        "list_after_reconnect": {
            "type": "snapshot_list",
            "data": {"snapshots": [], "count": 0, "capacity": 50},
        },
    }
    got = {step_id: reply(run, step_id) for step_id in want}
    assert got == want
    # v1 numbers are doubles: the SDK hands them over as floats
    assert isinstance(got["set_prompt_p0"]["data"]["chunk"], float)
    # an answer is also delivered as a message event, once
    answers = [m for m in run.of_type("prompt_accepted") if m["data"]["prompt"] == P2]
    assert len(answers) == 1, answers


def test_broadcasts(run: PyRunResult) -> None:
    started = [m["data"] for m in run.of_type("generation_started")]
    assert started == [{"prompt": P0, "chunk_index": 0}, {"prompt": P4, "chunk_index": 0}], started
    msgs = run.messages
    cut = next(i for i, m in enumerate(msgs) if m["type"] == "generation_reset")
    last_done = [m for m in msgs[:cut] if m["type"] == "chunk_complete"][-1]["data"]["chunk_index"]
    assert msgs[cut]["data"] == {"chunk": last_done + 1, "frame": 33 * (last_done + 1)}, msgs[cut]
    ready = [m["data"] for m in run.of_type("conditions_ready")]
    assert {"has_prompt": True, "has_image": True} in ready and {
        "has_prompt": True,
        "has_image": False,
    } in ready
    completes = [m for m in msgs[:cut] if m["type"] == "chunk_complete"]
    assert all(m["data"]["frames_emitted"] == 33 for m in completes)
    for i, m in enumerate(msgs[:cut]):
        if m["type"] == "chunk_complete":  # followed by state with the counters of the next chunk...
            nxt = next(n for n in msgs[i + 1 :] if n["type"] == "state")["data"]
            k = int(m["data"]["chunk_index"])
            if k != run.facts["rewound_from"]:  # ...except where the rewind restores the snapshot
                assert nxt["current_chunk"] == k + 1 and nxt["current_frame"] == 33 * (k + 1), (m, nxt)
    # active_prompt of each chunk_complete follows the schedule
    sched = schedule(run)
    for m in completes:
        k = int(m["data"]["chunk_index"])
        assert m["data"]["active_prompt"] == sched[max(s for s in sched if s <= k)], (k, m["data"], sched)


def test_prompt_switches_exact(run: PyRunResult) -> None:
    gen1, _ = generations(run)
    sched = schedule(run)
    assert set(sched.values()) == {P0, P1, P2, P3} and len(sched) == 4, sched
    starts = sorted(sched)
    check_by_chunk(
        run,
        gen1,
        lambda k: prompt_id(sched[max(s for s in starts if s <= k)]),
        lambda f: f.markers.prompt_id,
        starts[1:],
        "prompt",
    )


def test_set_image_exact(run: PyRunResult) -> None:
    png = (run.out_dir / "ref.png").read_bytes()
    assert image_id_of(png) == run.facts["image_id"]
    upload = run.step("upload")
    assert upload["size"] == len(png) and upload["mime_type"] == "image/png" and upload["upload_id"]
    switch = run.facts["image_chunk"]
    gen1, gen2 = generations(run)
    check_by_chunk(
        run,
        gen1,
        lambda k: run.facts["image_id"] if k >= switch else 0,
        lambda f: f.markers.image_id,
        [switch],
        "image_id",
    )
    assert all(f.markers.image_id == 0 for f in gen2), "reset did not clear the image"
    requests = run.http_requests()
    assert any(m == "POST" and p.endswith("/uploads") and s == 201 for m, p, s in requests), requests
    assert any(m == "PUT" and p.startswith("/uploads/") and s == 200 for m, p, s in requests), requests


def test_sr_scale_exact(run: PyRunResult) -> None:
    switch = run.facts["sr_chunk"]
    assert switch > run.facts["image_chunk"]
    gen1, gen2 = generations(run)
    small = (NATIVE[0], NATIVE[1])
    check_by_chunk(
        run,
        gen1,
        lambda k: small if k >= switch else OUTPUT,
        lambda f: (f.width, f.height),
        [switch],
        "frame size",
    )
    assert {(f.width, f.height) for f in gen2} == {OUTPUT}, "reset did not restore sr_scale 2x"


def test_pixels_match_render(run: PyRunResult) -> None:
    """Received frames equal the mock's deterministic render of the expected plan (up to VP8 loss).

    This is what shows set_image_strength taking effect at exactly one chunk boundary: the markers do not
    carry the strength, but the blend does.
    """
    f = run.facts
    image_chunk, strength_chunk, sr_chunk = f["image_chunk"], f["strength_chunk"], f["sr_chunk"]
    assert image_chunk < strength_chunk < sr_chunk, f
    png = (run.out_dir / "ref.png").read_bytes()
    image = condition_image(UploadedFile("ref", "ref.png", "image/png", png))
    sched = schedule(run)
    probes = np.load(run.out_dir / "probes.npz")

    def plan(chunk: int, second: bool, strength: float | None = None) -> ChunkPlan:
        if second:
            return ChunkPlan(chunk, P4, SEED, None, 1.0, "2x")
        prompt = sched[max(s for s in sched if s <= chunk)]
        if strength is None:
            strength = 0.5 if chunk >= strength_chunk else 1.0
        return ChunkPlan(
            chunk,
            prompt,
            SEED,
            image if chunk >= image_chunk else None,
            strength,
            "off" if chunk >= sr_chunk else "2x",
        )

    def error(frame: np.ndarray, p: ChunkPlan) -> float:
        want = render_frame(p, PROBE_FRAME, NATIVE).astype(np.int16)
        assert want.shape == frame.shape, (p, frame.shape)
        return float(np.abs(want - frame.astype(np.int16)).mean())

    checked: dict[tuple[int, bool], float] = {}
    for key in probes.files:
        chunk, pid = (int(part[1:]) for part in key.split("_"))
        second = pid == prompt_id(P4)
        checked[(chunk, second)] = error(probes[key], plan(chunk, second))
    bad = {k: round(v, 1) for k, v in checked.items() if v > MAX_PIXEL_ERROR}
    assert not bad, f"frames differ from the render of their plan (chunk, gen 2) -> error: {bad}"
    for chunk in (strength_chunk - 1, strength_chunk):
        assert (chunk, False) in checked, f"no probe frame of chunk {chunk}: {sorted(checked)}"
        key = f"c{chunk}_p{prompt_id(plan(chunk, False).prompt)}"
        other = error(probes[key], plan(chunk, False, 1.0 if chunk >= strength_chunk else 0.5))
        assert other > 3 * checked[(chunk, False)], (
            f"chunk {chunk}: strength not distinguishable ({other:.1f})"
        )


def test_seed(run: PyRunResult) -> None:
    seeds = {f.markers.seed for f in marked(run.frames)}
    assert seeds == {SEED}, f"set_seed {SEED} (kept by reset) but frames carry {seeds}"


def test_pause_resume(run: PyRunResult) -> None:
    paused = run.facts["paused_chunk"]
    t_resume = run.facts["t_resume_sent_ms"]
    gen1, _ = generations(run)
    early = [(f.t_ms, f.markers.chunk) for f in gen1 if f.markers.chunk > paused and f.t_ms < t_resume]
    assert not early, f"frames of chunks after {paused} arrived before resume ({t_resume} ms): {early[:5]}"
    # the chunk in progress completes (the SDK may drop a frame now and then: it keeps only the newest)
    tail = [f.markers.frame for f in gen1 if f.markers.chunk == paused]
    assert len(tail) >= 28 and max(tail) >= 30, f"the paused chunk did not complete: frames {tail}"
    t_paused = run.event_time("message", type="generation_paused")
    during = [
        int(m["data"]["chunk_index"]) for m in run.of_type("chunk_complete") if t_paused < m["t"] < t_resume
    ]
    assert during == [paused], f"chunk_complete while paused: {during}"
    gap = max(b.t_ms - a.t_ms for a, b in zip(gen1, gen1[1:], strict=False))
    assert gap >= 2 * CHUNK_MS, f"longest gap between frames {gap:.0f} ms"


def test_snapshots_and_rewind(run: PyRunResult) -> None:
    snap, rewound_from = run.facts["snap_chunk"], run.facts["rewound_from"]
    assert rewound_from > snap
    t_rewind = run.facts["t_rewind_sent_ms"]
    gen1, _ = generations(run)
    again = [f for f in gen1 if f.markers.chunk == snap and f.t_ms > t_rewind]
    before = [f for f in gen1 if f.markers.chunk == snap and f.t_ms < t_rewind]
    assert len(before) >= 28 and len(again) >= 28, (
        f"chunk {snap}: {len(before)} frames before the rewind, {len(again)} after"
    )
    # after the rewind, the chunk in progress finished, then generation went on from the snapshot's chunk
    after = [f.markers.chunk for f in gen1 if f.t_ms > t_rewind]
    first_back = after.index(snap)
    assert set(after[:first_back]) <= {rewound_from}, after[: first_back + 1]
    assert run.of_type("rewind_failed") == []


def test_refusals_and_rejections(run: PyRunResult) -> None:
    refused = [m["data"]["command"] for m in run.of_type("command_error")]
    assert refused == ["start", "schedule_prompt"], run.of_type("command_error")
    for step_id, name in (
        ("strength_out_of_range", "set_image_strength"),
        ("unknown_command", "fly_to_the_moon"),
        ("missing_parameter", "set_prompt"),
        ("bad_enum", "set_sr_scale"),
    ):
        error = run.step(step_id)["error"]
        assert error["class"] == "ReactorError" and error["code"] == "invalid_command", (step_id, error)
        assert name in error["message"], error
    rejections = run.session_record()["rejections"]
    assert [r["code"] for r in rejections] == ["invalid_command"] * 4, rejections
    assert [r["command"] for r in rejections][:2] == ["set_image_strength", "fly_to_the_moon"], rejections


def test_track_pause_resume(run: PyRunResult) -> None:
    assert run.step("track_pause")["paused_tracks"] == ["main_video"]
    assert run.step("track_resume")["paused_tracks"] == []
    t_from, t_to = run.facts["track_paused_window_ms"]
    assert t_to - t_from >= 2.5 * CHUNK_MS
    inside = [f for f in run.frames if t_from <= f.t_ms <= t_to]
    assert not inside, f"{len(inside)} frames arrived while main_video was paused"
    completes = [m for m in run.of_type("chunk_complete") if t_from <= m["t"] <= t_to]
    assert len(completes) >= 2, "the model should keep generating while one connection's track is paused"
    t_resume = run.facts["t_track_resume_ms"]
    assert [f for f in run.frames if t_resume < f.t_ms < t_resume + 2000], "no frames after track.resume()"


def test_reset_and_second_generation(run: PyRunResult) -> None:
    _, gen2 = generations(run)
    assert gen2, "no frames of the second generation" + run.context()
    chunks = [f.markers.chunk for f in gen2]
    assert chunks[0] == 0 and {0, 1} <= set(chunks), sorted(set(chunks))
    assert all(f.t_ms > run.facts["t_reset_sent_ms"] for f in gen2)


def test_reconnect(run: PyRunResult) -> None:
    result = run.step("reconnect")
    assert result["status"] == "ready" and 0 < result["reconnect_to_ready_ms"] < 20_000
    session = run.session_record()
    assert len(session["connections"]) == 1, session["connections"]
    cid = session["connections"][0]["connection_id"]
    requests = run.http_requests()
    sdp = f"/transport/webrtc/connections/{cid}/sdp_params"
    assert [s for m, p, s in requests if m == "POST" and p.endswith(sdp)] == [202], requests
    assert [s for m, p, s in requests if m == "PUT" and p.endswith(sdp)] == [202], requests
    assert sum(1 for m, p, _ in requests if m == "POST" and p.endswith("/transport/webrtc/connections")) == 1
    t_ready = run.facts["t_reconnected_ms"]
    after = [f for f in marked(run.frames) if f.t_ms > t_ready]
    assert len(after) >= 10 and all(f.markers.prompt_id == prompt_id(P4) for f in after), len(after)
    assert [m for m in run.messages if m["t"] > t_ready and m["type"] == "chunk_complete"]
    assert run.statuses()[3:7] == ["disconnected", "connecting", "waiting", "ready"], run.statuses()


def test_disconnect_recorded(run: PyRunResult) -> None:
    assert run.step("disconnect")["status"] == "disconnected"
    assert run.statuses()[-1] == "disconnected"
    session = run.session_record()
    requests = run.http_requests()
    want = (
        ("POST", "/stop_session") if run.mode == "local" else ("DELETE", f"/sessions/{session['session_id']}")
    )
    hits = [r for r in requests if r[:2] == want]
    assert len(hits) == 1 and 200 <= hits[0][2] < 300, f"{want} not recorded once: {requests}"
    assert requests[-1][:2] == want
    assert session["closed"] is True
    bad = [r for r in requests if r[2] >= 400]
    assert not bad, bad
    commands = {c["type"] for c in session["commands"]}
    for name in ("set_seed", "set_prompt", "start", "schedule_prompt", "set_image", "set_sr_scale", "rewind"):
        assert name in commands, f"{name} missing from the server's command record {sorted(commands)}"


def test_api_key_mints_token(api_key_run: PyRunResult, capsys: pytest.CaptureFixture[str]) -> None:
    run = api_key_run
    assert run.results.get("ok") is True and run.returncode == 0, "api_key run failed" + run.context()
    # POST /tokens has no session to be recorded under; the SDK logs the exchange itself
    assert "exchanged the API key for a scoped token" in run.results["auth_log"], run.results["auth_log"]
    requests = run.http_requests()
    sid = run.session_record()["session_id"]
    assert requests[0] == ("POST", "/sessions", 201), requests[:3]
    assert requests[-1] == ("DELETE", f"/sessions/{sid}", 200), requests[-3:]
    frames = marked(run.frames)
    assert frames and {f.markers.prompt_id for f in frames} == {prompt_id(P0)}
    assert {0, 1} <= {f.markers.chunk for f in frames}
    with capsys.disabled():
        print(f"\n[py-sdk production/api_key] connect() -> ready: {run.timing('connect_to_ready_ms'):.1f} ms")


# ─── issue 10: a token bound to a session adopts it; another account cannot ─────────────────────────────


@pytest.fixture(scope="module")
def bound_run(tmp_path_factory: pytest.TempPathFactory) -> PyRunResult:
    """Account A creates a session, mints a token bound to it, and the SDK adopts it with ``jwt=``."""
    return run_py_scenario(
        "production",
        tmp_path_factory.mktemp("py-bound"),
        "bound_token.py",
        ["--speed", str(SPEED)],
        server_args=SERVER_ARGS,
    )


def test_bound_token_adopts_its_session(bound_run: PyRunResult) -> None:
    run = bound_run
    assert run.results.get("ok"), run.context()
    sid = run.facts["session_id"]
    assert sid.startswith("sess_") and run.facts["frames"] >= 10, run.context()
    assert run.facts["other_account_status"] == 403, run.context()
    assert run.facts["other_account_sdk"]["refused"], run.context()
    (session,) = [s for s in run.record["sessions"] if s["session_id"] == sid]
    assert not session["closed"] or "deleted" not in (session["close_reason"] or ""), session["close_reason"]
    refused = [(h["method"], h["path"], h["status"]) for h in run.record["http"] if h["status"] == 403]
    assert ("GET", f"/sessions/{sid}", 403) in refused, run.record["http"]

"""End-to-end: the published JS SDK (@reactor-team/js-sdk 2.9.0 under Node 20 + @roamhq/wrtc) drives the mock.

One scripted session per mode (local and production) runs inside a private network namespace; the tests below
check different parts of the same run, from the SDK's events, the decoded video frames and the server record:

connect -> ready; set_seed + set_prompt; start (generation_started, chunk_complete, state); schedule_prompt at
a future chunk; set_prompt mid-stream; upload a PNG + set_image; pause / set_prompt while paused / resume;
reset; a second generation; disconnect.
"""

from __future__ import annotations

import io
import statistics
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from jsclient import Frame, RunResult, Scenario, run_js_scenario, saved, upload_ref
from PIL import Image
from summary import print_past_capture

from mock_server.media.markers import prompt_id
from mock_server.model.images import image_id_of

pytestmark = pytest.mark.e2e

SPEED = 4
NATIVE = (160, 96)
OUTPUT = (NATIVE[0] * 2, NATIVE[1] * 2)  # sr_scale "2x" (the default)
CHUNK_MS = 33 / (24 * SPEED) * 1000  # one chunk of wall-clock time
MID_CHUNK_MS = int(CHUNK_MS * 0.4)  # sleep after a chunk_complete so a command lands mid-chunk
PAUSE_MS = int(CHUNK_MS * 3)  # how long the test stays paused
SCHEDULE_AHEAD = 4  # schedule_prompt this many chunks after the last completed one

SEED_1, SEED_2 = 1234, 4321
P0 = "A red fox trotting through snow"
P1 = "The fox stops and looks at the camera"  # scheduled for a future chunk
P2 = "Snow begins to fall heavily"  # set_prompt mid-stream
P3 = "Night falls over the forest"  # set_prompt while paused
P4 = "A lighthouse on a cliff at dawn"  # after reset
IMAGE_SIZE = (50, 30)

_connect_times: list[tuple[str, float]] = []


@pytest.fixture(scope="module", autouse=True)
def connect_time_summary(request: pytest.FixtureRequest) -> Iterator[None]:
    """After the module: print every connect() -> ready time measured, with the median (not a test)."""
    yield
    if not _connect_times:
        return
    values = [ms for _, ms in _connect_times]
    runs = ", ".join(f"{mode} {ms:.1f} ms" for mode, ms in _connect_times)
    median = statistics.median(values)
    line = f"[js-sdk] connect() -> ready over {len(values)} runs: {runs}; median {median:.1f} ms"
    print_past_capture(request, line)


def _png(path: Path) -> bytes:
    """A small deterministic PNG (horizontal gradient + a square)."""
    img = Image.new("RGB", IMAGE_SIZE, (20, 60, 200))
    for x in range(IMAGE_SIZE[0]):
        for y in range(IMAGE_SIZE[1]):
            img.putpixel((x, y), (x * 5 % 256, 80, 255 - y * 8))
    for x in range(10, 20):
        for y in range(10, 20):
            img.putpixel((x, y), (255, 255, 0))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    path.write_bytes(buf.getvalue())
    return buf.getvalue()


def build_scenario(mode: str, png_path: Path) -> Scenario:
    """The scripted session; every command marks the message cursor, so each wait sees only later messages."""
    sc = Scenario(mode, token="e2e-test-token" if mode == "production" else None, timeout_ms=90_000)
    sc.connect()
    sc.wait("state", {"started": False}, save_as="initial_state", from_start=True)
    sc.upload(png_path, "image/png", alias="img", name="ref.png")
    # generation 1
    sc.command("set_seed", {"seed": SEED_1}).wait("state", save_as="seed_state")
    sc.command("set_prompt", {"prompt": P0}).wait("prompt_accepted", {"prompt": P0}, save_as="pa0")
    sc.wait("state", {"scheduled_prompts": {"0": P0}})
    sc.command("start", step_id="start1").wait("generation_started", save_as="gs1")
    sc.wait("state", {"started": True}, save_as="started_state")
    sc.wait("chunk_complete", {"chunk_index": 0}, save_as="cc0", step_id="wait:cc0")
    sc.sleep(MID_CHUNK_MS)
    # schedule_prompt at a future chunk, then set_prompt (next chunk) before it
    sc.command("schedule_prompt", {"prompt": P1, "chunk": saved("cc0", "chunk_index", SCHEDULE_AHEAD)})
    sc.wait("prompt_accepted", {"prompt": P1}, save_as="pa1")
    sc.wait("state", {"scheduled_prompts": {"$ne": {}}}, save_as="scheduled_state")
    sc.command("set_prompt", {"prompt": P2}).wait("prompt_accepted", {"prompt": P2}, save_as="pa2")
    sc.wait("state", save_as="p2_state", after="pa2")
    sc.wait("chunk_complete", {"chunk_index": saved("pa1", "chunk")}, save_as="cc_p1", timeout_ms=15_000)
    # set_image mid-chunk
    sc.sleep(MID_CHUNK_MS)
    sc.command("set_image", {"image": upload_ref("img")}, step_id="set_image")
    sc.wait("image_accepted", save_as="ia")
    sc.wait("state", save_as="image_state", after="ia")
    sc.wait("chunk_complete", {"chunk_index": saved("image_state", "current_chunk", 1)}, save_as="cc_img")
    # pause mid-chunk; the chunk in progress completes, nothing after it until resume
    sc.sleep(MID_CHUNK_MS)
    sc.command("pause").wait("generation_paused", save_as="gp")
    sc.wait("chunk_complete", {"chunk_index": saved("gp", "chunk")}, save_as="cc_paused")
    sc.wait("state", {"paused": True, "current_chunk": saved("gp", "chunk", 1)}, save_as="paused_state")
    sc.command("set_prompt", {"prompt": P3}).wait("prompt_accepted", {"prompt": P3}, save_as="pa3")
    sc.no_message("chunk_complete", for_ms=PAUSE_MS)
    sc.command("resume", step_id="resume").wait("generation_resumed", save_as="gr")
    sc.wait("chunk_complete", {"chunk_index": saved("pa3", "chunk")}, save_as="cc_p3")
    # reset, then generation 2
    sc.sleep(MID_CHUNK_MS)
    sc.command("reset", step_id="reset").wait("generation_reset", save_as="grs")
    sc.wait("state", {"started": False, "current_chunk": 0}, save_as="reset_state")
    sc.command("set_seed", {"seed": SEED_2}).wait("state", save_as="seed2_state")
    sc.command("set_prompt", {"prompt": P4}).wait("prompt_accepted", {"prompt": P4}, save_as="pa4")
    sc.command("start", step_id="start2").wait("generation_started", save_as="gs2")
    sc.wait("chunk_complete", {"chunk_index": 1}, save_as="cc2_1")
    sc.disconnect()
    return sc


def build_reconnect_scenario(mode: str) -> Scenario:
    """Recoverable transport drop (disconnect(true)) and reconnect() with PUT, mid-generation."""
    sc = Scenario(mode, token="e2e-test-token" if mode == "production" else None, timeout_ms=60_000)
    sc.connect()
    sc.command("set_seed", {"seed": SEED_1}).wait("state")
    sc.command("set_prompt", {"prompt": P0}).wait("prompt_accepted", {"prompt": P0})
    sc.command("start").wait("chunk_complete", {"chunk_index": 1}, save_as="cc1")
    sc.disconnect(recoverable=True, step_id="drop")
    sc.sleep(int(CHUNK_MS * 3))
    sc.mark().reconnect()
    sc.wait("state", save_as="state_after")
    sc.wait("chunk_complete", {"chunk_index": saved("state_after", "current_chunk", 1)}, save_as="cc_after")
    sc.disconnect()
    return sc


def _run(mode: str, scenario: Scenario, out_dir: Path) -> RunResult:
    result = run_js_scenario(
        scenario,
        out_dir,
        server_args=[
            f"--mode={mode}",
            f"--speed={SPEED}",
            f"--resolution={NATIVE[0]}x{NATIVE[1]}",
            "--log-level=info",
        ],
        api_host="127.0.0.1" if mode == "local" else "198.18.0.1",
    )
    ms = result.timing("connect_to_ready_ms")
    if ms is not None:
        _connect_times.append((mode, ms))
    return result


@pytest.fixture(scope="module", params=["local", "production"])
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    """One full scripted session per mode (shared by the tests of this module)."""
    mode: str = request.param
    out_dir = tmp_path_factory.mktemp(f"js-{mode}")
    png_path = out_dir / "ref.png"
    _png(png_path)
    return _run(mode, build_scenario(mode, png_path), out_dir)


@pytest.fixture(scope="module", params=["local", "production"])
def reconnect_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    """A session with a recoverable drop and a reconnect, per mode."""
    mode: str = request.param
    return _run(mode, build_reconnect_scenario(mode), tmp_path_factory.mktemp(f"js-reconnect-{mode}"))


# ─── helpers ─────────────────────────────────────────────────────────────────────────────────────────────


def saved_msg(run: RunResult, step_id: str) -> dict[str, Any]:
    """The data of the message a wait step matched."""
    return run.step(step_id)["data"]


def marked(frames: Iterable[Frame]) -> list[Frame]:
    return [f for f in frames if f.markers is not None]


def epochs(run: RunResult) -> tuple[list[Frame], list[Frame]]:
    """Frames of generation 1 and generation 2, told apart by the seed carried in their markers."""
    frames = marked(run.frames)
    seeds = {f.markers.seed for f in frames}
    assert seeds <= {SEED_1, SEED_2}, f"unexpected seeds in frames: {sorted(seeds)}" + run.context()
    return [f for f in frames if f.markers.seed == SEED_1], [f for f in frames if f.markers.seed == SEED_2]


def split_messages(run: RunResult) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Model messages before and after generation_reset."""
    msgs = run.messages
    cut = next(i for i, m in enumerate(msgs) if m["type"] == "generation_reset")
    return msgs[:cut], msgs[cut:]


def effective_prompts(msgs: list[dict[str, Any]]) -> dict[int, str]:
    """chunk -> prompt from prompt_accepted answers, in arrival order (a later entry overwrites)."""
    schedule: dict[int, str] = {}
    for m in msgs:
        if m["type"] == "prompt_accepted":
            schedule[int(m["data"]["chunk"])] = m["data"]["prompt"]
    return schedule


def check_switches(run: RunResult, frames: list[Frame], schedule: dict[int, str], what: str) -> None:
    """Every frame shows the prompt whose effective chunk is the latest <= its chunk; every switch seen."""
    assert frames, f"{what}: no decodable frames" + run.context()
    starts = sorted(schedule)
    assert starts[0] == 0, f"{what}: no prompt at chunk 0: {schedule}"

    def expected(chunk: int) -> str:
        return schedule[max(s for s in starts if s <= chunk)]

    wrong = [
        (f.markers.chunk, f.markers.frame, f.markers.prompt_id, prompt_id(expected(f.markers.chunk)))
        for f in frames
        if f.markers.prompt_id != prompt_id(expected(f.markers.chunk))
    ]
    assert not wrong, (
        f"{what}: {len(wrong)} frames show the wrong prompt (chunk, frame, got, want): {wrong[:10]}; "
        f"schedule {schedule}" + run.context(20)
    )
    seen = {f.markers.chunk for f in frames}
    for s in starts[1:]:
        assert s - 1 in seen and s in seen, (
            f"{what}: switch to {schedule[s]!r} at chunk {s} not observed on both sides "
            f"(chunks seen: {sorted(seen)})" + run.context(20)
        )


# ─── tests ───────────────────────────────────────────────────────────────────────────────────────────────


def test_connect_ready(run: RunResult, capsys: pytest.CaptureFixture[str]) -> None:
    result = run.step("connect")
    statuses = run.statuses()
    assert statuses[:3] == ["connecting", "waiting", "ready"], statuses
    ms = result["connect_to_ready_ms"]
    assert 0 < ms < 20_000
    session = run.session_record()
    assert session["mode"] == run.mode
    if run.mode == "local":
        assert result["session_id"] == "local" == session["session_id"]
    else:
        assert result["session_id"] == session["session_id"]
        assert session["session_id"].startswith("sess_")
    assert run.of_type("state")[0]["data"]["started"] is False
    assert [e for e in run.events if e["kind"] == "track" and e["name"] == "main_video"], (
        "no main_video track"
    )
    with capsys.disabled():
        print(f"\n[js-sdk {run.mode}] connect() -> ready: {ms:.1f} ms")


def test_whole_scenario_passes(run: RunResult) -> None:
    run.assert_ok()
    assert not run.session_record()["rejections"], run.session_record()["rejections"]
    errors = [e for e in run.events if e["kind"] == "error"]
    assert not errors, errors
    assert not run.of_type("command_error"), run.of_type("command_error")


def test_generation_messages(run: RunResult) -> None:
    gs1 = saved_msg(run, "wait:gs1")
    assert gs1 == {"prompt": P0, "chunk_index": 0}
    assert saved_msg(run, "wait:pa0") == {"prompt": P0, "chunk": 0}
    started = saved_msg(run, "wait:started_state")
    assert started["running"] is True and started["current_prompt"] in (None, P0)
    assert saved_msg(run, "wait:seed_state")["started"] is False
    before, _ = split_messages(run)
    completes = [m["data"] for m in before if m["type"] == "chunk_complete"]
    indices = [c["chunk_index"] for c in completes]
    assert indices == list(range(len(indices))), f"chunk_complete indices not consecutive: {indices}"
    assert all(c["frames_emitted"] == 33 for c in completes), completes
    # every chunk_complete is followed by a state with current_chunk = chunk_index + 1
    for i, m in enumerate(before):
        if m["type"] == "chunk_complete":
            nxt = next((n for n in before[i + 1 :] if n["type"] == "state"), None)
            assert nxt is not None and nxt["data"]["current_chunk"] == m["data"]["chunk_index"] + 1, (m, nxt)
            assert nxt["data"]["current_frame"] == 33 * nxt["data"]["current_chunk"]


def test_frames_decoded(run: RunResult) -> None:
    assert run.frames, "no video frames received" + run.context()
    sizes = {(f.width, f.height) for f in run.frames}
    assert sizes == {OUTPUT}, f"frame sizes {sizes}, expected {OUTPUT}"
    good = marked(run.frames)
    assert len(good) >= 0.9 * len(run.frames), f"only {len(good)}/{len(run.frames)} frames decodable"
    assert all(0 <= f.markers.frame < 33 for f in good)
    gen1, gen2 = epochs(run)
    assert gen1 and gen2, f"generation 1: {len(gen1)} frames, generation 2: {len(gen2)} frames"


def test_prompt_switches_exact(run: RunResult) -> None:
    before, after = split_messages(run)
    gen1, gen2 = epochs(run)
    schedule1 = effective_prompts(before)
    assert set(schedule1.values()) == {P0, P1, P2, P3}, schedule1
    assert len(schedule1) == 4, f"prompts collided on one chunk: {schedule1}"
    check_switches(run, gen1, schedule1, "generation 1")
    schedule2 = effective_prompts(after)
    assert schedule2 == {0: P4}, schedule2
    check_switches(run, gen2, schedule2, "generation 2")
    # the chunk_complete messages name the same prompt as the frames
    for m in before:
        if m["type"] == "chunk_complete":
            k = m["data"]["chunk_index"]
            want = schedule1[max(s for s in schedule1 if s <= k)]
            assert m["data"]["active_prompt"] == want, (k, m["data"], schedule1)


def test_schedule_prompt(run: RunResult) -> None:
    cc0 = saved_msg(run, "wait:cc0")
    pa1 = saved_msg(run, "wait:pa1")
    assert pa1 == {"prompt": P1, "chunk": cc0["chunk_index"] + SCHEDULE_AHEAD}
    scheduled = saved_msg(run, "wait:scheduled_state")["scheduled_prompts"]
    assert scheduled.get(str(pa1["chunk"])) == P1, scheduled
    # set_prompt while running targets the chunk after the one in progress (from the state that follows it)
    pa2 = saved_msg(run, "wait:pa2")
    p2_state = saved_msg(run, "wait:p2_state")
    assert p2_state["running"] is True
    assert pa2["chunk"] == p2_state["current_chunk"] + 1 < pa1["chunk"], (pa2, p2_state, pa1)
    assert p2_state["scheduled_prompts"] == {str(pa2["chunk"]): P2, str(pa1["chunk"]): P1}
    assert saved_msg(run, "wait:cc_p1")["active_prompt"] == P1
    gen1, _ = epochs(run)
    first = min(f.markers.chunk for f in gen1 if f.markers.prompt_id == prompt_id(P1))
    assert first == pa1["chunk"]


def test_set_image(run: RunResult) -> None:
    png = (run.out_dir / "ref.png").read_bytes()
    image_id = image_id_of(png)
    upload = run.step("upload:img")
    assert upload["size"] == len(png) and upload["mime_type"] == "image/png"
    assert saved_msg(run, "wait:ia") == {"width": IMAGE_SIZE[0], "height": IMAGE_SIZE[1]}
    # the state that directly follows image_accepted (docs/HELIOS.md §3.4) gives the chunk in progress
    ia_index = run.step("wait:ia")["index"]
    assert run.step("wait:image_state")["index"] == ia_index + 1, (
        "state did not directly follow image_accepted"
    )
    state = saved_msg(run, "wait:image_state")
    assert state["running"] is True and state["image_set"] is True
    # sent while chunk c = state.current_chunk was in progress -> the image shows from chunk c + 1 exactly
    switch = state["current_chunk"] + 1
    gen1, gen2 = epochs(run)
    wrong = [
        (f.markers.chunk, f.markers.frame, f.markers.image_id)
        for f in gen1
        if f.markers.image_id != (image_id if f.markers.chunk >= switch else 0)
    ]
    assert not wrong, f"image_id wrong (chunk, frame, image_id) with switch at {switch}: {wrong[:10]}"
    seen = {f.markers.chunk for f in gen1}
    assert {switch - 1, switch} <= seen, f"image switch at {switch} not seen on both sides: {sorted(seen)}"
    assert all(f.markers.image_id == 0 for f in gen2), "reset did not clear the image"


def test_pause_resume(run: RunResult) -> None:
    gp = saved_msg(run, "wait:gp")
    paused_chunk = gp["chunk"]
    assert gp["frame"] == 33 * paused_chunk
    assert saved_msg(run, "wait:cc_paused")["chunk_index"] == paused_chunk
    paused_state = saved_msg(run, "wait:paused_state")
    assert (
        paused_state["paused"] is True
        and paused_state["running"] is False
        and paused_state["started"] is True
    )
    # set_prompt while paused (no chunk in progress) targets the chunk that starts at resume
    pa3 = saved_msg(run, "wait:pa3")
    assert pa3 == {"prompt": P3, "chunk": paused_chunk + 1}
    gr = saved_msg(run, "wait:gr")
    assert gr == {"frame": 33 * (paused_chunk + 1), "chunk": paused_chunk + 1}
    # no chunk after the paused one started before resume was sent
    t_resume = run.event_time("command_sent", name="resume")
    gen1, _ = epochs(run)
    early = [(f.t_ms, f.markers.chunk) for f in gen1 if f.markers.chunk > paused_chunk and f.t_ms < t_resume]
    assert not early, (
        f"frames of chunks after {paused_chunk} arrived before resume ({t_resume} ms): {early[:5]}"
    )
    before, _ = split_messages(run)
    t_gp = run.event_time("message", type="generation_paused")
    during = [
        m["data"]["chunk_index"] for m in before if m["type"] == "chunk_complete" and t_gp < m["t"] < t_resume
    ]
    assert during == [paused_chunk], f"chunk_complete while paused: {during}"
    gap = max(b.t_ms - a.t_ms for a, b in zip(gen1, gen1[1:], strict=False))
    assert gap >= PAUSE_MS * 0.8, f"longest gap between frames {gap:.0f} ms; paused {PAUSE_MS} ms"


def test_reset(run: RunResult) -> None:
    grs = saved_msg(run, "wait:grs")
    cc_p3 = saved_msg(run, "wait:cc_p3")
    assert grs["chunk"] >= cc_p3["chunk_index"] + 1 and grs["frame"] == 33 * grs["chunk"], (grs, cc_p3)
    state = saved_msg(run, "wait:reset_state")
    assert state["started"] is False and state["running"] is False and state["paused"] is False
    assert state["image_set"] is False and state["scheduled_prompts"] == {} and state["current_frame"] == 0
    assert state["current_prompt"] is None and state["image_strength"] == 1.0
    assert saved_msg(run, "wait:pa4") == {"prompt": P4, "chunk": 0}
    assert saved_msg(run, "wait:gs2") == {"prompt": P4, "chunk_index": 0}
    _, gen2 = epochs(run)
    assert min(f.markers.chunk for f in gen2) == 0
    assert {0, 1} <= {f.markers.chunk for f in gen2}
    # reset halts at once: no chunk_complete for the chunk that was in progress
    before, _ = split_messages(run)
    done = [m["data"]["chunk_index"] for m in before if m["type"] == "chunk_complete"]
    assert grs["chunk"] not in done, (grs, done)


def test_disconnect_recorded(run: RunResult) -> None:
    run.step("disconnect")
    assert run.statuses()[-1] == "disconnected"
    session = run.session_record()
    requests = run.http_requests()
    if run.mode == "local":
        want = ("POST", "/stop_session")
    else:
        want = ("DELETE", f"/sessions/{session['session_id']}")
    hits = [r for r in requests if r[:2] == want]
    assert hits, f"{want} not in the server record: {requests}"
    assert 200 <= hits[-1][2] < 300, hits
    assert session["closed"] is True
    commands = [c["type"] for c in session["commands"]]
    for name in (
        "set_seed",
        "set_prompt",
        "start",
        "schedule_prompt",
        "set_image",
        "pause",
        "resume",
        "reset",
    ):
        assert name in commands, f"{name} missing from the server's command record {commands}"


def test_reconnect(reconnect_run: RunResult, capsys: pytest.CaptureFixture[str]) -> None:
    run = reconnect_run
    run.assert_ok()
    assert run.statuses() == [
        "connecting",
        "waiting",
        "ready",
        "disconnected",
        "connecting",
        "ready",
        "disconnected",
    ]
    session = run.session_record()
    sid = session["session_id"]
    base = f"/sessions/{sid}/transport/webrtc/sdp_params"
    requests = [(m, p) for m, p, _ in run.http_requests()]
    assert ("PUT", base) in requests, requests
    put = requests.index(("PUT", base))
    # the recoverable drop sent neither DELETE nor stop_session, and reconnect made no coordinator call
    stop = ("POST", "/stop_session") if run.mode == "local" else ("DELETE", f"/sessions/{sid}")
    assert requests.count(stop) == 1 and requests.index(stop) > put, requests
    assert all(p.startswith(f"/sessions/{sid}/transport/") for _, p in requests[put - 1 : put + 2]), requests
    assert not [r for r in session["rejections"]], session["rejections"]
    # the new connection gets the state at once; generation stopped while nobody was connected
    cc1 = saved_msg(run, "wait:cc1")["chunk_index"]
    state = saved_msg(run, "wait:state_after")
    assert state["started"] is True and state["running"] is True
    # the chunk in progress at the drop (cc1 + 1) still completes; at most one more starts before the
    # server sees the transport go (3 chunks of time passed while disconnected)
    assert cc1 + 2 <= state["current_chunk"] <= cc1 + 3, (cc1, state)
    t_ready = [e["t"] for e in run.events if e["kind"] == "status" and e["status"] == "ready"][1]
    frames = marked(run.frames)
    late = [f for f in frames if f.t_ms > t_ready]
    assert late, "no frames after the reconnect" + run.context()
    # A new connection never replays a chunk that completed before it joined: the first frames after the
    # reconnect belong to the chunk generated from then on, and chunk order never goes back.
    chunks = [f.markers.chunk for f in late]
    assert min(chunks) >= state["current_chunk"], chunks[:10]
    assert chunks == sorted(chunks), chunks
    assert state["current_chunk"] in chunks, chunks
    assert {f.markers.seed for f in frames} == {SEED_1}
    assert all(f.markers.prompt_id == prompt_id(P0) for f in frames)
    ms = run.timing("reconnect_to_ready_ms")
    assert ms is not None
    with capsys.disabled():
        print(f"\n[js-sdk {run.mode}] reconnect() -> ready: {ms:.1f} ms")

"""End-to-end: faults against the published Python SDK (reactor-sdk 1.13.0, unmodified), issue 9.

Session-ending, creation and command kinds: one namespace run per kind. Each run arms one fault for the first
session (``--faults FILE``), runs py_scenarios/fault_run.py and checks what the client showed (facts) and the
server's record. The time from the last chunk before the fault to the client's first status change is printed
(docs/FAULTS.md, "Python SDK 1.13.0 shows").

The other kinds run in two namespace runs of py_scenarios/fault_kinds.py, which arms each kind over
``POST /admin/faults`` just before the step it hits and waits for a clean server after each:

* signalling (a new session per kind): ``session_closed``, ``sdp_slow``, ``sdp_timeout``, ``ice_failure``;
* generation (one session): ``slow_chunks``, ``stall``, ``media_loss`` at a chunk, ``internal_error`` on a
  command, ``upload_failure`` (403, 500) on uploads.

``slow_chunks``, ``stall`` and ``media_loss`` are proven from the arrival times of ``chunk_complete`` and of
the frames, whose marker band names their chunk and frame: which chunk was slowed, stalled or lost, how much.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

import pytest
from py_scenarios.pyrun import PyRunResult, run_py_scenario

pytestmark = pytest.mark.e2e

SPEED = 4
SERVER_ARGS = [f"--speed={SPEED}", "--resolution=160x96", "--pending-delay=0.2", "--log-level=info"]

FAULTS: dict[str, dict[str, Any]] = {
    "gpu_failure": {"kind": "gpu_failure", "at_chunk": 2, "params": {"reason": "the GPU worker failed"}},
    "session_expiry": {"kind": "session_expiry", "at_chunk": 2},
    "moderation": {"kind": "moderation", "at_chunk": 2, "params": {"action": "terminate"}},
    "transport_drop": {"kind": "transport_drop", "at_chunk": 2},
    "command_error": {"kind": "command_error", "on_command": "set_seed", "params": {"reason": "no seeds"}},
    "session_refused": {"kind": "session_refused", "params": {"status": 429, "retry_after": 2}},
    "queue_wait": {"kind": "queue_wait", "params": {"state": "WAITING", "seconds": 3}},
}


def _run(kind: str, tmp_path: Path) -> tuple[PyRunResult, dict[str, Any]]:
    fault_file = tmp_path / "faults.json"
    fault_file.write_text(json.dumps([FAULTS[kind]]))
    result = run_py_scenario(
        "production",
        tmp_path / "run",
        "fault_run.py",
        ["--kind", kind, "--speed", str(SPEED), "--observe", "40"],
        server_args=[*SERVER_ARGS, f"--faults={fault_file}"],
        timeout=240,
    )
    facts = result.facts
    print(f"\n[py-sdk fault {kind}] {json.dumps(facts)}")
    open_sessions = [s["session_id"] for s in result.record.get("sessions", []) if not s["closed"]]
    assert "sessions" in result.record and open_sessions == [], result.context()  # none left open
    return result, facts


def _fired(result: PyRunResult) -> list[dict[str, Any]]:
    return [f for s in result.record.get("sessions", []) for f in s.get("faults", [])]


@pytest.mark.parametrize("kind", ["gpu_failure", "session_expiry", "moderation"])
def test_server_side_end_is_noticed(kind: str, tmp_path: Path) -> None:
    result, facts = _run(kind, tmp_path)
    assert [f["kind"] for f in _fired(result)] == [kind], result.context()
    assert "noticed_ms" in facts, result.context()
    assert facts["first_status"] != "ready"


def test_transport_drop_then_reconnect(tmp_path: Path) -> None:
    result, facts = _run("transport_drop", tmp_path)
    assert [f["kind"] for f in _fired(result)] == ["transport_drop"], result.context()
    assert "noticed_ms" in facts, result.context()


def test_command_error(tmp_path: Path) -> None:
    result, facts = _run("command_error", tmp_path)
    assert facts.get("command_error_messages") == [{"command": "set_seed", "reason": "no seeds"}], (
        result.context()
    )


def test_session_refused(tmp_path: Path) -> None:
    result, facts = _run("session_refused", tmp_path)
    assert "connect_error" in facts, result.context()


def test_queue_wait(tmp_path: Path) -> None:
    result, facts = _run("queue_wait", tmp_path)
    assert facts.get("connect_ms", 0) >= 3000, result.context()


# ─── kinds armed over the admin API (py_scenarios/fault_kinds.py) ─────────────────────────────────────────

CHUNK_MS = 33 / (24 * SPEED) * 1000
LATE_TOLERANCE = 0.8  # a slowed or stalled gap must reach this share of what the fault asks (client jitter)
NORMAL_LIMIT = 1.5  # an unaffected chunk_complete gap stays under this many normal chunk durations
COMPLETE = 30  # frames of 33 that make a chunk "received" (the SDK may drop a few under load)


def _kinds_run(group: str, tmp_path_factory: pytest.TempPathFactory) -> PyRunResult:
    result = run_py_scenario(
        "production",
        tmp_path_factory.mktemp(f"py-faults-{group}"),
        "fault_kinds.py",
        ["--group", group, "--speed", str(SPEED)],
        server_args=SERVER_ARGS,
        timeout=240,
    )
    for kind, facts in result.facts.items():
        shown = {k: v for k, v in facts.items() if not k.startswith(("fault", "server_after", "t_"))}
        print(f"\n[py-sdk fault {kind}] {json.dumps(shown)}")
    return result


@pytest.fixture(scope="module")
def signalling_run(tmp_path_factory: pytest.TempPathFactory) -> PyRunResult:
    return _kinds_run("signalling", tmp_path_factory)


@pytest.fixture(scope="module")
def generation_run(tmp_path_factory: pytest.TempPathFactory) -> PyRunResult:
    return _kinds_run("generation", tmp_path_factory)


def _facts(result: PyRunResult, kind: str) -> dict[str, Any]:
    facts: dict[str, Any] = result.facts.get(kind, {})
    assert facts and "failed" not in facts, f"{kind}: {facts.get('failed')}" + result.context()
    return facts


def _session(result: PyRunResult, fault_id: str) -> dict[str, Any]:
    """The record of the session the fault fired in (it fired exactly once there)."""
    hit = [s for s in result.record["sessions"] if any(f["fault_id"] == fault_id for f in s["faults"])]
    assert len(hit) == 1, f"fault {fault_id} fired in {len(hit)} sessions" + result.context()
    assert [f["fault_id"] for f in hit[0]["faults"]].count(fault_id) == 1
    return hit[0]


def _firing(result: PyRunResult, facts: dict[str, Any]) -> dict[str, Any]:
    """The record's entry of the kind's fault firing (kind, hook, chunk, elapsed)."""
    fault_id = facts["fault"]["id"]
    return next(f for f in _session(result, fault_id)["faults"] if f["fault_id"] == fault_id)


def _error_is(error: dict[str, Any], cls: str, code: str, *, recoverable: bool) -> None:
    assert (error["class"], error["code"], error["recoverable"]) == (cls, code, recoverable), error


def _sdp_calls(session: dict[str, Any], method: str) -> list[dict[str, Any]]:
    """The session's `sdp_params` requests of `method`, in order (t = seconds since creation, status)."""
    return [h for h in session["http"] if h["method"] == method and h["path"].endswith("sdp_params")]


def _assert_server_clean(result: PyRunResult, facts: dict[str, Any]) -> None:
    """After the kind: no session running, none open in the record, no connection open; no task died."""
    after = facts.get("server_after", {})
    assert "clean_after_ms" in facts, f"server not clean after the kind: {after}" + result.context()
    assert after["health"] == "available" and after["open_sessions"] == [] and after["connections"] == 0
    log = result.server_log
    assert "Traceback" not in log and " died" not in log, result.context()


def _cc_times(result: PyRunResult) -> dict[int, float]:
    """chunk_complete arrival time (client ms) per chunk index, of the run's first session."""
    times: dict[int, float] = {}
    for m in result.of_type("chunk_complete"):
        times.setdefault(int(m["data"]["chunk_index"]), float(m["t"]))
    return times


def _gap(cc: dict[int, float], chunk: int) -> float:
    """How long `chunk` took as the client saw it: chunk_complete(chunk) - chunk_complete(chunk - 1)."""
    return cc[chunk] - cc[chunk - 1]


def _normal_gap(cc: dict[int, float], skip: set[int]) -> float:
    gaps = [_gap(cc, c) for c in cc if c - 1 in cc and c not in skip and c > 1]
    return statistics.median(gaps)


def _frames_of(result: PyRunResult, chunk: int, before_ms: float) -> list[tuple[float, int]]:
    """(arrival ms, frame index) of every frame of `chunk` received before `before_ms` (first session)."""
    return [
        (f.t_ms, f.markers.frame)
        for f in result.frames
        if f.markers is not None and f.markers.chunk == chunk and f.t_ms < before_ms
    ]


# ── signalling kinds ──


def test_session_closed_raises_session_terminal(signalling_run: PyRunResult) -> None:
    facts = _facts(signalling_run, "session_closed")
    error = facts["connect_error"]
    _error_is(error, "SessionTerminalError", "SESSION_TERMINAL", recoverable=False)
    assert "terminal state Closed" in error["message"]
    assert facts["connect_failed_after_ms"] >= 1000  # the session was PENDING for the fault's 1 s
    assert facts["statuses"][-1] == "disconnected" and "ready" not in facts["statuses"]
    session = _session(signalling_run, facts["fault"]["id"])
    assert session["close_reason"] == "no capacity" and session["connections"] == []
    _assert_server_clean(signalling_run, facts)


def test_sdp_slow_connects_late(signalling_run: PyRunResult) -> None:
    facts = _facts(signalling_run, "sdp_slow")
    assert facts["connect_ms"] >= 2000 and facts["streamed"], facts  # the answer was held 2 s, then streamed
    session = _session(signalling_run, facts["fault"]["id"])
    offer = _sdp_calls(session, "POST")[0]["t"]
    answers = _sdp_calls(session, "GET")
    assert [h["status"] for h in answers][-1] == 200 and all(h["status"] == 202 for h in answers[:-1])
    assert answers[-1]["t"] - offer >= 2.0, answers
    assert "ready" in facts["statuses"]
    _assert_server_clean(signalling_run, facts)


def test_sdp_timeout_raises_request_timeout(signalling_run: PyRunResult) -> None:
    facts = _facts(signalling_run, "sdp_timeout")
    error = facts["connect_error"]
    _error_is(error, "RequestTimeoutError", "REQUEST_TIMEOUT", recoverable=True)
    assert "no SDP answer after 6 polls" in error["message"]
    assert facts["connect_failed_after_ms"] >= 6000
    session = _session(signalling_run, facts["fault"]["id"])
    polls = [h["status"] for h in _sdp_calls(session, "GET")]
    assert polls == [202] * 6, polls  # no answer was ever served
    assert ("DELETE", 200) in [(h["method"], h["status"]) for h in session["http"]]  # the SDK ended it
    assert "ready" not in facts["statuses"]
    _assert_server_clean(signalling_run, facts)


def test_ice_failure_raises_disconnected(signalling_run: PyRunResult) -> None:
    facts = _facts(signalling_run, "ice_failure")
    error = facts["connect_error"]
    _error_is(error, "DisconnectedError", "DISCONNECTED", recoverable=True)
    assert "peer connection state: Failed" in error["message"]
    session = _session(signalling_run, facts["fault"]["id"])
    polls = [h["status"] for h in _sdp_calls(session, "GET")]
    assert polls[-1] == 200  # an answer came, but its candidates lead nowhere
    assert session["connections"][0]["frames_sent"] == 0
    assert ("DELETE", 200) in [(h["method"], h["status"]) for h in session["http"]]
    assert "ready" not in facts["statuses"]
    _assert_server_clean(signalling_run, facts)


def test_signalling_faults_then_a_clean_session(signalling_run: PyRunResult) -> None:
    facts = _facts(signalling_run, "next_session")
    assert facts["streamed"] and "ready" in facts["statuses"]
    _assert_server_clean(signalling_run, facts)
    sessions = signalling_run.record["sessions"]
    assert len(sessions) == 5 and all(s["closed"] for s in sessions)
    fired = [[f["kind"] for f in s["faults"]] for s in sessions]
    assert fired == [["session_closed"], ["sdp_slow"], ["sdp_timeout"], ["ice_failure"], []], fired


# ── generation kinds ──


def test_slow_chunks_from_chunk_complete_and_frames(generation_run: PyRunResult) -> None:
    facts = _facts(generation_run, "slow_chunks")
    at, params = facts["at_chunk"], facts["fault"]["params"]
    factor, count = params["factor"], params["count"]
    assert _firing(generation_run, facts)["chunk"] == at
    cc = _cc_times(generation_run)
    slowed = set(range(at, at + count))
    normal = _normal_gap(cc, slowed | {at + count})
    for chunk in slowed:  # each slowed chunk took factor x as long, its frames came factor x apart
        assert _gap(cc, chunk) >= LATE_TOLERANCE * factor * normal, (chunk, _gap(cc, chunk), normal)
        times = sorted(t for t, _ in _frames_of(generation_run, chunk, cc[chunk] + 1000))
        assert len(times) >= COMPLETE
        spread = times[-1] - times[0]  # 32 frame intervals
        assert spread >= LATE_TOLERANCE * factor * normal * 32 / 33, (chunk, spread, normal)
    for chunk in (at - 1, at + count + 1):  # the chunks around them ran at the normal pace
        assert _gap(cc, chunk) < NORMAL_LIMIT * normal, (chunk, _gap(cc, chunk), normal)
    assert facts["statuses"] == [] and facts["errors"] == []  # the SDK shows nothing but the pace
    print(f"\n[py-sdk slow_chunks] gaps {[round(_gap(cc, c)) for c in range(at - 1, at + count + 2)]} ms")


def test_stall_from_chunk_complete_and_frames(generation_run: PyRunResult) -> None:
    facts = _facts(generation_run, "stall")
    at, seconds = facts["at_chunk"], facts["fault"]["params"]["seconds"]
    assert _firing(generation_run, facts)["chunk"] == at
    cc = _cc_times(generation_run)
    normal = _normal_gap(cc, {at})
    assert _gap(cc, at) >= seconds * 1000, (_gap(cc, at), seconds)  # chunk_complete held back by the stall
    assert _gap(cc, at + 1) < NORMAL_LIMIT * normal
    stalled = sorted(_frames_of(generation_run, at, cc[at] + 1000))
    before = [t for t, _ in _frames_of(generation_run, at - 1, cc[at])]
    assert len(stalled) >= COMPLETE and stalled[0][1] == 0  # the chunk then played from its first frame
    # the barrier: a control request answered during the stall, before any frame of the stalled chunk came
    assert facts["schema_answered_at_ms"] < stalled[0][0], (facts["schema_answered_at_ms"], stalled[0])
    frame_gap = stalled[0][0] - max(before)
    assert frame_gap >= LATE_TOLERANCE * seconds * 1000, frame_gap  # no frame of any chunk during the stall
    assert facts["statuses"] == [] and facts["errors"] == []  # still ready: the SDK shows only the silence
    print(f"\n[py-sdk stall] chunk_complete gap {_gap(cc, at):.0f} ms, frame gap {frame_gap:.0f} ms")


def test_media_loss_frames_missing_then_recovered(generation_run: PyRunResult) -> None:
    facts = _facts(generation_run, "media_loss")
    at, seconds = facts["at_chunk"], facts["fault"]["params"]["seconds"]
    assert _firing(generation_run, facts)["chunk"] == at
    cc = _cc_times(generation_run)
    start = cc[at - 1]  # the loss begins as chunk `at` begins, right after chunk_complete at-1
    inside = [c for c in cc if c >= at and cc[c] <= start + seconds * 1000]  # chunks played in the window
    assert inside, (start, cc)
    for chunk in inside:  # their chunk_complete came on time (data channel unaffected), their frames did not
        assert _gap(cc, chunk) < NORMAL_LIMIT * _normal_gap(cc, set()), (chunk, _gap(cc, chunk))
        assert len(_frames_of(generation_run, chunk, math.inf)) < COMPLETE, chunk
    last_before = max(t for t, _ in _frames_of(generation_run, at - 1, math.inf))
    resumed = min(f.t_ms for f in generation_run.frames if f.t_ms > last_before)
    silence = resumed - last_before  # no frame at all came in the window
    assert silence >= LATE_TOLERANCE * seconds * 1000, (last_before, resumed)
    recovered = [c for c in range(at, facts["chunk_after_window"] + 1) if cc[c - 1] > start + seconds * 1000]
    assert len(recovered) >= 2, recovered  # whole chunks after the window: every one arrived again
    for chunk in recovered:
        assert len(_frames_of(generation_run, chunk, math.inf)) >= COMPLETE, chunk
    assert facts["statuses"] == [] and facts["errors"] == []
    print(f"\n[py-sdk media_loss] no frame for {silence:.0f} ms; chunks {inside} lost, {recovered} whole")


def test_internal_error_raises_reactor_error(generation_run: PyRunResult) -> None:
    facts = _facts(generation_run, "internal_error")
    error = facts["first"]["error"]
    assert (error["class"], error["code"]) == ("ReactorError", "internal_error")
    assert "the seed handler crashed" in error["message"]
    assert "error" not in facts["second"] and facts["second"]["reply"] is None  # the next one is acked
    assert facts["status_after"] == "ready" and facts["statuses"] == []
    assert _firing(generation_run, facts)["hook"] == "command"


def test_upload_failure_raises_per_status(generation_run: PyRunResult) -> None:
    facts = _facts(generation_run, "upload_failure")
    e403, e500 = facts["upload_403"]["error"], facts["upload_500"]["error"]
    assert (e403["class"], e403["code"], e403["status"], e403["recoverable"]) == (
        "UnauthorizedError", "UNAUTHORIZED", 403, False,
    )  # fmt: skip
    assert "upload URL expired" in e403["message"]
    assert (e500["class"], e500["code"], e500["status"], e500["recoverable"]) == (
        "ServerError", "SERVER_ERROR", 500, True,
    )  # fmt: skip
    assert "upload storage failed" in e500["message"]
    assert facts["upload_after"]["size"] > 0  # the next upload works and the model takes the file
    assert facts["set_image"]["reply"]["type"] == "image_accepted"
    assert facts["status_after"] == "ready" and facts["statuses"] == []


def test_generation_faults_then_a_clean_session(generation_run: PyRunResult) -> None:
    setup = _facts(generation_run, "setup")
    _assert_server_clean(generation_run, setup)  # the faulted session ended cleanly
    facts = _facts(generation_run, "next_session")
    assert facts["streamed"]
    _assert_server_clean(generation_run, facts)
    sessions = generation_run.record["sessions"]
    assert len(sessions) == 2 and all(s["closed"] for s in sessions)
    fired = [f["kind"] for f in sessions[0]["faults"]]
    assert fired == ["slow_chunks", "stall", "media_loss", "internal_error", *["upload_failure"] * 2], fired
    assert sessions[1]["faults"] == [] and sessions[0]["connections"][0]["frames_skipped"] == 0

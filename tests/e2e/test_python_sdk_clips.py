"""End-to-end: the published Python SDK (reactor-sdk 1.13.0) asks the mock for clips and downloads them.

py_scenarios/clips.py runs inside a private network namespace, in local and production mode: request_clip(4)
mid-chunk, download (the SDK waits out the 202s), request_recording(), invalid durations; and, against a
server started with ``--recording off``, RecorderDisabledError. The program decodes every downloaded clip
with PyAV and logs each frame's marker band; the tests check the frames are exactly the window's chunks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from py_scenarios.pyrun import PyRunResult, run_py_scenario

pytestmark = pytest.mark.e2e

SPEED = 4
CHUNK_S = 33 / 24
SERVER_ARGS = [f"--speed={SPEED}", "--resolution=160x96", "--pending-delay=0.2", "--log-level=info"]


def _run(mode: str, out_dir: Path, *extra: str, server_args: list[str] = SERVER_ARGS) -> PyRunResult:
    args = ["--mode", mode, "--speed", str(SPEED), *extra]
    return run_py_scenario(mode, out_dir, "clips.py", args, server_args=server_args)


@pytest.fixture(scope="module", params=["local", "production"])
def clips_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> PyRunResult:
    return _run(request.param, tmp_path_factory.mktemp(f"py-clips-{request.param}"))


def _chunks(clip: dict[str, Any]) -> tuple[int, int]:
    return round(clip["start_marker"] / CHUNK_S), round(clip["end_marker"] / CHUNK_S) - 1


def _expected(first: int, last: int) -> list[list[int]]:
    return [[c, f] for c in range(first, last + 1) for f in range(33)]


def test_request_clip_downloads_exactly_the_window(clips_run: PyRunResult) -> None:
    run = clips_run
    assert run.results.get("ok"), run.context()
    got = run.facts["clip"]
    clip = got["clip"]
    assert clip["kind"] == "clip" and clip["session_id"] == run.facts["session_id"]
    first, last = _chunks(clip)
    # the window: the last 4 s of media, in whole chunks, ending in the chunk generating at the request
    assert clip["start_marker"] <= clip["now_marker"] - 4 < clip["start_marker"] + CHUNK_S, clip
    assert clip["now_marker"] < clip["end_marker"] <= clip["now_marker"] + CHUNK_S, clip
    assert [m for _, _, m in got["frames"]] == _expected(first, last), run.context()
    assert {(w, h) for w, h, _ in got["frames"]} == {(320, 192)}
    polls = [h for h in run.record["http"] if h["path"] == "/clips"]
    assert [h["status"] for h in polls][:1] == [202] and polls[-1]["status"] == 200, polls


def test_request_recording_starts_at_chunk_zero(clips_run: PyRunResult) -> None:
    run = clips_run
    assert run.results.get("ok"), run.context()
    got = run.facts["recording"]
    assert got["clip"]["kind"] == "recording" and got["clip"]["start_marker"] == 0.0
    _, last = _chunks(got["clip"])
    assert [m for _, _, m in got["frames"]] == _expected(0, last), run.context()


def test_invalid_durations_get_the_sdks_invalid_duration_error(clips_run: PyRunResult) -> None:
    run = clips_run
    assert run.results.get("ok"), run.context()
    assert set(run.facts["invalid"]) == {"0.0", "-2.0", "inf"}
    for bad, error in run.facts["invalid"].items():
        # reactor-sdk 1.13.0 checks the duration itself and raises BadRequestError; nothing reaches the server
        assert error["class"] == "BadRequestError" and error["code"] == "BAD_REQUEST", (bad, error)
        assert "duration_seconds must be a positive finite number" in error["message"], error
    assert "invalid duration" not in run.server_log


def test_recording_off_raises_recorder_disabled(tmp_path: Path) -> None:
    run = _run("local", tmp_path, "--expect-off", server_args=[*SERVER_ARGS, "--recording=off"])
    assert run.results.get("ok"), run.context()
    off = run.facts["off"]
    assert off["class"] == "RecorderDisabledError" and off["code"] == "RECORDER_DISABLED", off

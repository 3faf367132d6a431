"""Load-testing kit (load/): frame-timeline rules, the cheap marker reader, and bounded real runs.

The Locust runs start their own mock (``--speed 4 --resolution 160x96``, production limits off, loopback
only): one standalone headless run (3 users, 20 s) and one distributed run (a master and 2 workers on this
machine, 4 users, 15 s). A chaos run (``--chaos heavy --fault-seed 1``, 4 users, 30 s) checks that failures
are reported by kind and that every session is accounted for. A tiny ``load/bench.py`` run checks that the
benchmark still works end to end.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from conformance.server import HeliosServer, free_port
from mock_server.media.markers import Markers, decode_markers, encode_markers

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # load/ is a directory of scripts, not an installed package
    sys.path.insert(0, str(ROOT))
from locust_runs import run_distributed  # noqa: E402

from load.accounting import (  # noqa: E402
    Failure,
    accounting_text,
    attribute,
    instance_of,
    instances_missing,
    reconcile,
)
from load.session import _to_the_end  # noqa: E402
from load.video import FrameTimeline, _vp8_descriptor, read_markers_luma  # noqa: E402

LOCUSTFILE = ROOT / "load" / "locustfile.py"
LOCUST = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE)]
SPEED = 4.0
INTERVAL = 1 / (24 * SPEED)
# Kinds that only say the machine was slow (frames the server skipped, lateness): timing is not asserted.
TIMING_KINDS = {"failure media loss", "failure late frames", "failure stall"}


# ---------------------------------------------------------------------- pure rules


def m(chunk: int, frame: int) -> Markers:
    return Markers(chunk=chunk, frame=frame, prompt_id=1, seed=2, image_id=0)


def test_timeline_on_time_late_missing() -> None:
    t = FrameTimeline(interval=0.1)
    assert t.add(10.0, m(0, 0)) == 0.0
    assert t.add(10.1, m(0, 1)) == pytest.approx(0.0)
    t.add(10.25, m(0, 2))  # 50 ms behind its slot: within one interval, not late
    assert t.late == 0
    lateness = t.add(10.45, m(0, 3))  # slot 10.3: 150 ms behind
    assert lateness == pytest.approx(0.15) and t.late == 1
    t.add(10.6, m(0, 6))  # frames 4 and 5 never came
    assert t.missing == 2
    assert t.counters() == {"received": 5, "late": 1, "missing": 2, "unreadable": 0}


def test_timeline_anchor_moves_to_the_earliest_frame() -> None:
    """A slow first frame must not hide later lateness: the schedule follows the earliest arrival."""
    t = FrameTimeline(interval=0.1)
    t.add(10.5, m(0, 0))  # first frame 0.5 s late
    t.add(10.1, m(0, 1))  # implies the timeline started at 10.0
    t.add(10.35, m(0, 2))  # slot 10.2 on the corrected schedule: 150 ms late
    assert t.late == 1


def test_timeline_crosses_chunks_and_rebases_after_resume() -> None:
    t = FrameTimeline(interval=0.1)
    t.add(0.0, m(0, 32))
    t.add(0.1, m(1, 0))  # global frame 33 follows 32
    assert (t.late, t.missing) == (0, 0)
    t.rebase()  # paused for 5 s: the resumed chunk starts a new schedule
    t.add(5.2, m(2, 0))
    t.add(5.3, m(2, 1))
    assert (t.late, t.missing) == (0, 0)
    assert t.add(1.0, None) is None and t.unreadable == 1


def test_vp8_descriptor() -> None:
    assert _vp8_descriptor(bytes([0x10, 0xAA])) == (True, bytes([0xAA]))  # S=1, PID 0, no extension
    # X=1, I=1 with a 15-bit picture id (2 bytes), S=0: a continuation packet
    assert _vp8_descriptor(bytes([0x80, 0x80, 0x81, 0x23, 0xBB])) == (False, bytes([0xBB]))
    # X=1, I=1 (7-bit id), L=1, T=1: 1 + 1 + 1 + 1 + 1 header bytes
    assert _vp8_descriptor(bytes([0x90, 0xE0, 0x05, 0x07, 0x40, 0xCC])) == (True, bytes([0xCC]))


@pytest.mark.parametrize("size", [(160, 96), (320, 192), (640, 384), (161, 97), (64, 32)])
def test_fast_marker_reader_matches_the_reference(size: tuple[int, int]) -> None:
    rng = np.random.default_rng(size[0])
    width, height = size
    for i in range(60):
        markers = Markers(
            chunk=int(rng.integers(0, 65536)),
            frame=int(rng.integers(0, 33)),
            prompt_id=int(rng.integers(0, 65536)),
            seed=int(rng.integers(0, 2**32)),
            image_id=int(rng.integers(0, 4096)),
        )
        frame = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        encode_markers(frame, markers)
        luma = frame[:, :, 1].copy()
        if i % 3 == 1:  # noise: sometimes still readable, sometimes not
            luma = np.clip(luma.astype(int) + rng.integers(-70, 70, luma.shape), 0, 255).astype(np.uint8)
        if i % 3 == 2:  # a destroyed band
            luma[: height // 6] = rng.integers(0, 256, luma[: height // 6].shape, dtype=np.uint8)
        expected = decode_markers(luma)
        assert read_markers_luma(luma) == expected
        if i % 3 == 0:
            assert expected == markers


# ---------------------------------------------------------------------- real runs


@pytest.fixture(scope="module")
def load_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HeliosServer]:
    server = HeliosServer.start(
        speed=SPEED,
        resolution="160x96",
        extra=["--max-sessions-per-account", "0", "--max-creations-per-minute", "0"],
        log_path=tmp_path_factory.mktemp("load") / "server.log",
    )
    try:
        yield server
    finally:
        server.stop()


def _helios_args(server: HeliosServer, out: Path) -> list[str]:
    return [
        "--headless",
        "--host", server.url,
        "--only-summary",
        "--csv", str(out / "run"),
        "--helios-speed", str(SPEED),
        "--helios-summary", str(out / "summary.json"),
    ]  # fmt: skip


def _stats(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "run_stats.csv", newline="", encoding="utf-8") as fh:
        return {row["Name"]: row for row in csv.DictReader(fh)}


def _check_run(out: Path, min_sessions: int) -> dict[str, dict[str, str]]:
    stats = _stats(out)
    failures = {
        f"{row['Type']} {name}": row["Failure Count"]
        for name, row in stats.items()
        if row["Failure Count"] != "0" and f"{row['Type']} {name}" not in TIMING_KINDS
    }
    assert not failures, f"failed requests: {failures}"
    assert int(stats["connect→ready"]["Request Count"]) >= min_sessions
    assert int(stats["first frame"]["Request Count"]) >= min_sessions
    effects = {name: row for name, row in stats.items() if name.startswith("command→effect ")}
    assert "command→effect set_prompt" in effects, sorted(stats)
    assert "command→answer set_prompt" in stats
    video = stats["chunk video"]
    frames = float(video["Average Content Size"]) * int(video["Request Count"])
    assert frames >= 33 * min_sessions
    summary = json.loads((out / "summary.json").read_text())
    assert summary["received"] >= frames and summary["sessions"] >= min_sessions
    assert summary["unreadable"] == 0
    return stats


def _failures(out: Path) -> dict[str, list[str]]:
    """The failure table (``run_failures.csv``): kind → error texts."""
    kinds: dict[str, list[str]] = {}
    with open(out / "run_failures.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            assert row["Method"] == "failure", row
            kinds.setdefault(row["Name"], []).append(row["Error"])
    return kinds


def _run(cmd: list[str], timeout: float, log: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    log.write_text(result.stdout + result.stderr)
    return result


def test_locust_headless(load_server: HeliosServer, tmp_path: Path) -> None:
    cmd = [
        *LOCUST,
        "-u",
        "3",
        "-r",
        "3",
        "-t",
        "20s",
        "--helios-wire",
        "v1",
        *_helios_args(load_server, tmp_path),
    ]
    result = _run(cmd, timeout=120, log=tmp_path / "locust.log")
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert "Helios sessions:" in result.stdout + result.stderr
    assert "Every session accounted for: yes" in result.stdout
    stats = _check_run(tmp_path, min_sessions=3)
    assert "command→effect set_image" in stats and "command→effect resume" in stats  # the mixed scenario


def test_locust_distributed_two_workers(load_server: HeliosServer, tmp_path: Path) -> None:
    port = free_port()
    master_cmd = [
        *LOCUST, "--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port),
        "--expect-workers", "2", "--expect-workers-max-wait", "60", "-u", "4", "-r", "4", "-t", "15s",
        "--helios-scenario", "prompts", *_helios_args(load_server, tmp_path),
    ]  # fmt: skip
    worker_cmd = [*LOCUST, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port)]
    result, worker_statuses = run_distributed(master_cmd, worker_cmd, tmp_path, cwd=ROOT)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "2 workers connected" in output
    assert worker_statuses == [0, 0]
    assert "Every session accounted for: yes" in result.stdout
    _check_run(tmp_path, min_sessions=4)


def test_locust_chaos_heavy_failures_by_kind_and_accounting(tmp_path: Path) -> None:
    """`--chaos heavy --fault-seed 1`: failures land in rows named by kind, every session is accounted for.

    With seed 1 the heavy preset's draws are fixed per creation request; ~30 sessions of ~3 s meet queue
    waits (5 s, past the 3 s queue budget), refused set_prompt commands and 429 refusals (requests 20, 27)."""
    server = HeliosServer.start(
        speed=8.0,
        resolution="160x96",
        extra=["--max-sessions-per-account", "0", "--max-creations-per-minute", "0",
               "--chaos", "heavy", "--fault-seed", "1"],
        log_path=tmp_path / "server.log",
    )  # fmt: skip
    try:
        cmd = [
            *LOCUST, "-u", "4", "-r", "4", "-t", "30s", "--exit-code-on-error", "0",
            "--headless", "--host", server.url, "--only-summary", "--csv", str(tmp_path / "run"),
            "--helios-speed", "8", "--helios-chunks", "12", "--helios-queue-timeout", "3",
        ]  # fmt: skip
        result = _run(cmd, timeout=90, log=tmp_path / "locust.log")
    finally:
        server.stop()
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    failures = _failures(tmp_path)
    assert len(failures) >= 3, failures
    assert "refused 429" in failures, failures  # no session, so nothing to attribute: the status says it
    for kind in ("queue timeout", "command_error"):
        assert kind in failures, failures
        assert all("(fault " in error for error in failures[kind]), failures[kind]
    table = result.stdout[result.stdout.index("Helios session accounting") :]
    assert "Every session accounted for: yes" in table
    assert re.search(r"still open\s+0\n", table) and re.search(r"unknown to the client\s+0\n", table), table
    assert re.search(r"faults fired, by kind\s+\d+ \(.*queue_wait", table), table


def test_accounting_reconciles_client_runs_with_the_record() -> None:
    runs = [
        {"session_id": None, "outcome": "refused 429", "kinds": ["refused 429"]},
        {"session_id": "s1", "outcome": "ok", "kinds": []},
        {"session_id": "s2", "outcome": "queue timeout", "kinds": ["queue timeout"]},
        {"session_id": "s3", "outcome": None, "kinds": []},
    ]
    server = [
        {"session_id": "old", "closed": False},
        {"session_id": "s1", "closed": True, "close_reason": "session deleted by the client", "faults": []},
        {"session_id": "s2", "closed": True, "close_reason": "x", "faults": [{"kind": "queue_wait"}]},
        {"session_id": "s4", "closed": False, "faults": []},
    ]
    acc = reconcile(runs, server, before={"old"})
    assert (acc.requests, acc.created, acc.server_sessions) == (4, 3, 3)
    assert acc.not_created == {"refused 429": 1}
    assert acc.still_open == ["s4"] and acc.unknown_to_client == ["s4"]
    assert acc.unknown_to_server == ["s3"] and acc.no_outcome == ["s3"]
    assert acc.faults_fired == {"queue_wait": 1} and not acc.accounted
    assert "Every session accounted for: NO" in accounting_text(acc)
    clean = reconcile(runs[:3], server[:3], before={"old"})
    assert clean.accounted and "Every session accounted for: yes" in accounting_text(clean)


async def test_a_session_winding_up_is_not_cut_short_by_a_cancel() -> None:
    """A user stopped while its session closes: the wind-up (DELETE, outcome) still ends, then the cancel."""
    started, release, finished = asyncio.Event(), asyncio.Event(), []

    async def wind_up() -> None:
        started.set()
        await release.wait()
        finished.append(True)

    outer = asyncio.ensure_future(_to_the_end(wind_up()))
    await started.wait()
    outer.cancel()
    await asyncio.sleep(0)  # the cancel is delivered; the wind-up goes on
    assert not outer.done() and not finished
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await outer
    assert finished == [True]


def test_accounting_names_instances_missing_from_the_record() -> None:
    """Behind a router /admin/record reaches one instance: the other's sessions are named as the cause."""
    runs = [{"session_id": sid, "outcome": "ok", "kinds": []} for sid in ("sess_a_00ff", "sess_b_01ff")]
    one_instance = [{"session_id": "sess_a_00ff", "closed": True}]
    acc = reconcile(runs, one_instance)
    assert acc.unknown_to_server == ["sess_b_01ff"] and instances_missing(acc, one_instance) == ["b"]
    both = [*one_instance, {"session_id": "sess_b_01ff", "closed": True}]
    assert reconcile(runs, both).accounted and instances_missing(reconcile(runs, both), both) == []
    assert instance_of("sess_0123abcd") is None and instance_of("sess_b2_0123abcd") == "b2"


def test_attribution_names_the_cause_from_the_record() -> None:
    ended = Failure("ended by server", "session", "sessionEnded: the GPU worker failed")
    timeout = Failure("command timeout", "command→answer set_prompt", "TimeoutError")
    stall = Failure("stall", "video", "no video frame", terminal=False)
    attribute([ended, timeout, stall], ["gpu_failure", "internal_error"])
    assert ended.kind == "ended gpu_failure" and ended.detail.endswith("(fault gpu_failure)")
    assert timeout.kind == "internal_error"
    assert stall.detail.endswith("(no fault recorded)")
    unread = Failure("stall", "video", "no video frame")
    attribute([unread], None)  # the record could not be read: the symptom stays as seen
    assert unread.detail == "no video frame"


def test_bench_smoke(tmp_path: Path) -> None:
    """The benchmark end to end at toy scale (2 sessions, 5 chunks at --speed 1000)."""
    cmd = [
        sys.executable, str(ROOT / "load" / "bench.py"), "--sessions", "2", "--hold", "2", "--settle", "1",
        "--connects", "2", "--burst", "2", "--chunks", "5", "--chunk-runs", "1", "--out", str(tmp_path),
    ]  # fmt: skip
    result = _run(cmd, timeout=180, log=tmp_path / "bench.log")
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    report = json.loads((tmp_path / "bench.json").read_text())
    variant = report["variants"][0]
    assert variant["error"] is None
    assert variant["connect_ms"]["all"]["n"] == 4
    assert [s["sessions"] for s in variant["steps"]] == [2]
    assert variant["steps"][0]["live"] == 2 and variant["steps"][0]["received"] > 0
    assert len(variant["chunks100_s"]) == 1 and variant["chunks100_s"][0] > 0
    assert (tmp_path / "bench.png").stat().st_size > 0

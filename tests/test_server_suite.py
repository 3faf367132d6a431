"""Run the shipped server conformance suite (conformance/server_suite) against the mock, as a user would:
``pytest --pyargs conformance.server_suite`` from a directory outside the repository, in a subprocess."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from conformance.server import HeliosServer

SUITE = [sys.executable, "-m", "pytest", "--pyargs", "conformance.server_suite", "-q", "-rs"]
# outside the repository no ini file sets these: keep the run quiet and self-contained
QUIET = ["-p", "no:cacheprovider", "-o", "asyncio_default_fixture_loop_scope=function"]


def _run(args: list[str], cwd: Path, **env: str) -> tuple[dict[str, int], str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HELIOS_MOCK_", "HELIOS_SUITE_"))}
    proc = subprocess.run(
        SUITE + QUIET + args, cwd=cwd, env={**clean, **env}, capture_output=True, text=True, timeout=600
    )
    output = proc.stdout + proc.stderr
    summary = output.strip().splitlines()[-1] if output.strip() else ""
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|skipped|errors?)", summary)}
    assert proc.returncode == 0, output[-6000:]
    return counts, summary


def test_server_suite_against_the_mock(tmp_path: Path) -> None:
    """The whole suite, local mode, against a mock the suite starts itself (speed 5: every frame is sent,
    so the 33-frames-per-chunk check runs)."""
    counts, summary = _run(["--helios-speed", "5"], tmp_path)
    print(f"\nserver suite (local mode): {summary}")
    assert counts.get("passed", 0) >= 25 and not counts.get("skipped") and not counts.get("failed"), summary


def test_server_suite_production_mode(tmp_path: Path) -> None:
    """The WebRTC tests through the production routes (POST /sessions + bearer token)."""
    selection = "greeting or replies or refusals or next_chunk or session_end or registered or uploads_slot"
    counts, summary = _run(
        ["--helios-speed", "10", "-k", selection], tmp_path, HELIOS_SUITE_MODE="production"
    )
    print(f"\nserver suite (production mode, subset): {summary}")
    assert counts.get("passed", 0) >= 7 and not counts.get("skipped"), summary


def test_server_suite_with_helios_url(tmp_path: Path, helios: HeliosServer) -> None:
    """--helios-url: an already running server; helios-mock is recognised by its admin endpoints, so the
    mock_only tests run. (HTTP-only tests: this process's mock offers loopback ICE candidates only.)"""
    selection = "descriptor or idempotent or bearer or delete_twice"
    counts, summary = _run(["--helios-url", helios.url, "-k", selection], tmp_path)
    print(f"\nserver suite (--helios-url, HTTP subset): {summary}")
    assert counts.get("passed", 0) >= 5 and not counts.get("skipped"), summary


def test_howto_external_server_runs_with_helios_url(helios: HeliosServer) -> None:
    """The documented --helios-url howto, run for real against an already running mock."""
    howto = Path(__file__).parent / "examples" / "test_howto_external_server.py"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--helios-url",
            helios.url,
            str(howto),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and "1 passed" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-2000:]

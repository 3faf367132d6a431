"""Soak (bounded for CI): ``load/soak.py`` for ``--soak-seconds`` (default 60) of session churn.

The script starts its own mock, churns sessions in local and production mode with real aiortc clients over
loopback, samples the server's RSS, fds and threads, and fails above ``CI_RSS_GROWTH_MB`` RSS per 100
sessions after the warm-up (and on leaked sessions or a server that does not say ``available`` afterwards).
The issue's target, < 2 MB per 100 sessions, is judged over the 10-minute soak by hand (the script's
default threshold): ``python load/soak.py --minutes 10``. 60 s on a shared CI machine measures the slope over
~250 sessions, which scatters by about ±1 MB; 5 MB still catches the leaks found so far (29–62 MB).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from suite_options import setting

SOAK = Path(__file__).resolve().parents[2] / "load" / "soak.py"
CI_RSS_GROWTH_MB = 5.0  # per 100 sessions, for the short CI run (the 10-minute soak uses 2 MB)


def test_soak(request: pytest.FixtureRequest, tmp_path: Path, figures: list[str]) -> None:
    seconds = setting(request.config, "--soak-seconds", "HELIOS_SOAK_SECONDS", 60)
    out = tmp_path / "soak.json"
    command = [sys.executable, str(SOAK), "--seconds", str(seconds), "--json", str(out)]
    command += ["--log", str(tmp_path / "server.log"), "--max-rss-growth", str(CI_RSS_GROWTH_MB)]
    proc = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + 120, env={**os.environ}, check=False
    )
    assert out.exists(), (
        f"soak.py wrote no result (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr[-3000:]}"
    )
    result = json.loads(out.read_text())
    figures.append(result["line"])
    print(proc.stdout)
    verdicts = "\n".join(f"  - {v}" for v in result["verdicts"])
    failures = "\n".join(f"  - {f}" for f in result["failures"][:10])
    assert result["ok"], f"{result['line']}\n{verdicts}\nfailed sessions:\n{failures}"
    assert proc.returncode == 0

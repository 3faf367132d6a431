"""The sample client project (examples/sample_client_project) passes its own tests with the installed plugin.

Runs its pytest in a subprocess, from its directory, so only the installed helios-mock package and its
`helios` entry-point plugin are available — exactly what a client team has.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1] / "examples" / "sample_client_project"


def test_sample_client_project_passes() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HELIOS_MOCK_", "PYTEST_"))}
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # leave the example's tree clean
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA"],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = proc.stdout[-6000:] + proc.stderr[-3000:]
    assert proc.returncode == 0, output
    assert "failed" not in proc.stdout and " passed" in proc.stdout, output
    assert "--helios-strict" in (PROJECT / "pyproject.toml").read_text()  # strict mode is part of the sample

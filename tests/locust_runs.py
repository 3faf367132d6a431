"""Run a distributed Locust test from a test: one master and its workers, every log under `tmp_path`."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def run_distributed(
    master: list[str], worker: list[str], tmp_path: Path, *, cwd: Path, workers: int = 2, timeout: float = 150
) -> tuple[subprocess.CompletedProcess[str], list[int | None]]:
    """The master's completed process (its output also in master.log) and the workers' exit statuses."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    logs = [open(tmp_path / f"worker{i}.log", "w") for i in range(workers)]  # noqa: SIM115
    procs = [subprocess.Popen(worker, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT) for log in logs]
    try:
        result = subprocess.run(master, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
        for proc in procs:
            proc.wait(timeout=60)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for log in logs:
            log.close()
    (tmp_path / "master.log").write_text(result.stdout + result.stderr)
    return result, [proc.returncode for proc in procs]

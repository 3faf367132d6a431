"""pytest side of the Python SDK runs: start a client program of this package in a namespace, read its logs.

``run_py_scenario`` runs ``ns_scenario.py`` (mock server + ``python <program> --out DIR ...``) inside a fresh
network namespace and returns a ``PyRunResult``: a jsclient.RunResult (same event format as the JS driver)
plus the program's results.json and its ``facts``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jsclient import NS_SCENARIO, REPO, Frame, RunResult
from netns import run_in_netns
from prereq import missing_prerequisite

HERE = Path(__file__).resolve().parent


def require_python_sdk() -> None:
    """Skip (fail in CI) when the published Python SDK is not installed in this interpreter."""
    if importlib.util.find_spec("reactor_sdk") is None:
        missing_prerequisite("reactor-sdk==1.13.0 is not installed (pip install -e '.[test]')")


def read_py_frames(path: Path) -> list[Frame]:
    """Frames logged by common.Recorder, one JSON line each: ``[t_ms, width, height, markers or null]``."""
    from mock_server.media.markers import Markers

    frames: list[Frame] = []
    if not path.exists():
        return frames
    for line in path.read_text().splitlines():
        try:
            t_ms, width, height, m = json.loads(line)
        except ValueError:
            continue  # a line cut short when the program was killed
        frames.append(Frame(float(t_ms), int(width), int(height), Markers(*m) if m is not None else None))
    return frames


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


@dataclass
class PyRunResult(RunResult):
    """A Python client's run; its files are in ``out_dir``, the server's in ``server_dir``."""

    server_dir: Path | None = None
    client_log_name: str = "client.log"
    results: dict[str, Any] = field(default_factory=dict)

    @property
    def _server_dir(self) -> Path:
        return self.server_dir or self.out_dir

    @property
    def server_log(self) -> str:
        return _read(self._server_dir / "server.log")

    @property
    def client_log(self) -> str:
        return _read(self._server_dir / self.client_log_name)

    @property
    def harness_log(self) -> str:
        return _read(self._server_dir / "harness.log") + _read(self._server_dir / "ns.stderr")

    @property
    def facts(self) -> dict[str, Any]:
        return self.results.get("facts", {})

    def context(self, lines: int = 40) -> str:
        failures = "\n".join(self.results.get("failures", [])) or "(none recorded)"
        return f"\n--- client failures:\n{failures}" + super().context(lines)


def load_py_run(
    mode: str, returncode: int, out_dir: Path, server_dir: Path, client_log_name: str
) -> PyRunResult:
    """Read what a client program and ns_scenario.py left on disk."""
    events = [json.loads(line) for line in _read(out_dir / "events.jsonl").splitlines() if line.strip()]
    record_path = server_dir / "record.json"
    record = json.loads(record_path.read_text()) if record_path.exists() else {"error": "no record.json"}
    results_text = _read(out_dir / "results.json")
    results = json.loads(results_text) if results_text else {"failures": ["no results.json written"]}
    return PyRunResult(
        mode,
        returncode,
        out_dir,
        events,
        read_py_frames(out_dir / "frames.jsonl"),
        record,
        server_dir=server_dir,
        client_log_name=client_log_name,
        results=results,
    )


def program_argv(program: str, out_dir: Path, *args: str) -> list[str]:
    """argv that runs ``program`` (a file of this package) with ``--out out_dir``."""
    return [sys.executable, str(HERE / program), "--out", str(out_dir), *args]


def clean_env() -> dict[str, str]:
    """The environment for a namespace run: no proxies (nothing outside is reachable anyway)."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("RUST_LOG", "reactor_ffi=warn,reactor_core=warn")
    return env


def run_ns(
    out_dir: Path, clients: list[list[str]], *, server_args: list[str], api_host: str, timeout: float
) -> int:
    """Run ns_scenario.py with one or more client argvs in a fresh namespace; returns its exit status."""
    out_dir.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, str(NS_SCENARIO), "--out-dir", str(out_dir), "--api-host", api_host]
    argv += [f"--server-arg={a}" for a in server_args]
    argv += ["--client-timeout", str(max(10.0, timeout - 30)), "--"]
    for i, client in enumerate(clients):
        argv += ([":::"] if i else []) + client
    proc = run_in_netns(
        argv,
        cwd=REPO,
        env=clean_env(),
        timeout=timeout,
        stdout_path=out_dir / "ns.stdout",
        stderr_path=out_dir / "ns.stderr",
    )
    return proc.returncode


def run_py_scenario(
    mode: str,
    out_dir: Path,
    program: str,
    program_args: list[str],
    *,
    server_args: list[str],
    api_host: str = "198.18.0.1",
    timeout: float = 180.0,
) -> PyRunResult:
    """One mock server + one Python client program in a fresh namespace; all files stay in ``out_dir``."""
    require_python_sdk()
    client = program_argv(program, out_dir, *program_args)
    rc = run_ns(out_dir, [client], server_args=server_args, api_host=api_host, timeout=timeout)
    return load_py_run(mode, rc, out_dir, out_dir, "client.log")

"""pytest helpers: run a scripted JS SDK session (tests/js/driver.cjs) against the mock in a namespace.

``run_js_scenario`` writes the scenario, runs ``ns_scenario.py`` (server + ``node driver.cjs``) inside a
fresh network namespace (``netns.py``) and returns a ``RunResult`` with the driver's events, the decoded video
frames, the server's record and every log. All artifacts stay in the given directory (a pytest ``tmp_path``).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from netns import run_in_netns
from prereq import missing_prerequisite

REPO = Path(__file__).resolve().parents[2]
JS_DIR = REPO / "tests" / "js"
DRIVER = JS_DIR / "driver.cjs"
NS_SCENARIO = Path(__file__).with_name("ns_scenario.py")
MIN_NODE_MAJOR = 20
_STAMP = "node_modules/.helios-e2e-lock.sha256"
_npm_ready: str | None = None  # "ok" once checked in this process, else the skip reason

# ─── Node dependencies ───────────────────────────────────────────────────────────────────────────────────


def ensure_node_modules() -> None:
    """Run ``npm ci`` in tests/js once per test session when node_modules is missing or stale.

    Staleness = the sha256 of package-lock.json differs from the stamp written after the last ``npm ci``.
    Skips when node/npm are missing or node is older than 20; fails when ``npm ci`` fails.
    """
    global _npm_ready
    if _npm_ready == "ok":
        return
    if _npm_ready is not None:
        missing_prerequisite(_npm_ready)
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        _npm_ready = "node and npm are needed for the JS SDK tests (Node 20)"
        missing_prerequisite(_npm_ready)
    version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
    match = re.match(r"v(\d+)", version)
    if not match or int(match.group(1)) < MIN_NODE_MAJOR:
        _npm_ready = f"Node >= {MIN_NODE_MAJOR} needed for the JS SDK tests, found {version or 'unknown'}"
        missing_prerequisite(_npm_ready)
    lock_hash = hashlib.sha256((JS_DIR / "package-lock.json").read_bytes()).hexdigest()
    stamp = JS_DIR / _STAMP
    lock_path = (
        Path(tempfile.gettempdir()) / f"helios-e2e-npm-{hashlib.sha1(bytes(JS_DIR)).hexdigest()[:12]}.lock"
    )
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another pytest process may be installing
        if not (stamp.exists() and stamp.read_text().strip() == lock_hash):
            proc = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=JS_DIR,
                capture_output=True,
                text=True,
                timeout=600,
            )
            if proc.returncode != 0:
                output = (proc.stdout + proc.stderr)[-4000:]
                pytest.fail(f"npm ci in {JS_DIR} failed ({proc.returncode}):\n{output}")
            stamp.write_text(lock_hash + "\n")
    _npm_ready = "ok"


# ─── scenario building ───────────────────────────────────────────────────────────────────────────────────


def saved(alias: str, field: str | None = None, add: int | None = None) -> dict[str, Any]:
    """Reference to ``data[field]`` (+ add) of the message a wait step saved as ``alias``."""
    ref: dict[str, Any] = {"$saved": alias}
    if field is not None:
        ref["field"] = field
    if add is not None:
        ref["add"] = add
    return ref


def last(msg_type: str, field: str | None = None, add: int | None = None) -> dict[str, Any]:
    """Reference to ``data[field]`` (+ add) of the latest message of ``msg_type``."""
    ref: dict[str, Any] = {"$last": msg_type}
    if field is not None:
        ref["field"] = field
    if add is not None:
        ref["add"] = add
    return ref


def upload_ref(alias: str) -> dict[str, str]:
    """Parameter value replaced by the FileRef of the upload ``alias``."""
    return {"$upload": alias}


@dataclass
class Scenario:
    """Steps for tests/js/driver.cjs (see its header for the semantics of each op)."""

    mode: str
    token: str | None = None
    timeout_ms: int = 120_000
    steps: list[dict[str, Any]] = field(default_factory=list)

    def add(self, op: str, step_id: str | None = None, **fields: Any) -> Scenario:
        step = {"op": op, **{k: v for k, v in fields.items() if v is not None}}
        if step_id is not None:
            step["id"] = step_id
        self.steps.append(step)
        return self

    def connect(self, timeout_ms: int = 20_000, step_id: str = "connect") -> Scenario:
        return self.add("connect", step_id, timeout_ms=timeout_ms)

    def command(
        self,
        name: str,
        params: dict[str, Any] | None = None,
        *,
        mark: bool = True,
        step_id: str | None = None,
    ) -> Scenario:
        """Send a command; by default the message cursor moves to "now" first (mark)."""
        return self.add("command", step_id, name=name, params=params or {}, mark=mark)

    def upload(self, path: Path, mime_type: str, alias: str, name: str | None = None) -> Scenario:
        return self.add(
            "upload", f"upload:{alias}", path=str(path), mime_type=mime_type, alias=alias, name=name
        )

    def wait(
        self,
        msg_type: str,
        where: dict[str, Any] | None = None,
        *,
        save_as: str | None = None,
        timeout_ms: int = 10_000,
        from_start: bool = False,
        after: str | None = None,
        step_id: str | None = None,
    ) -> Scenario:
        """Wait for a message after the cursor (or the whole run, or after the message saved as ``after``)."""
        return self.add(
            "wait_message",
            step_id or (f"wait:{save_as}" if save_as else None),
            type=msg_type,
            where=where,
            save_as=save_as,
            timeout_ms=timeout_ms,
            after=after,
            **({"from": "start"} if from_start else {}),
        )

    def no_message(self, msg_type: str, for_ms: int, where: dict[str, Any] | None = None) -> Scenario:
        return self.add("expect_no_message", f"no:{msg_type}", type=msg_type, for_ms=for_ms, where=where)

    def wait_status(self, status: str, timeout_ms: int = 10_000) -> Scenario:
        return self.add("wait_status", f"status:{status}", status=status, timeout_ms=timeout_ms)

    def sleep(self, ms: int) -> Scenario:
        return self.add("sleep", None, ms=ms)

    def mark(self) -> Scenario:
        return self.add("mark", None)

    def disconnect(self, recoverable: bool = False, step_id: str = "disconnect") -> Scenario:
        return self.add("disconnect", step_id, recoverable=recoverable)

    def reconnect(self, timeout_ms: int = 20_000, step_id: str = "reconnect") -> Scenario:
        return self.add("reconnect", step_id, timeout_ms=timeout_ms)

    def to_json(self, out_dir: Path) -> dict[str, Any]:
        data: dict[str, Any] = {
            "mode": self.mode,
            "out_dir": str(out_dir),
            "timeout_ms": self.timeout_ms,
            "steps": self.steps,
        }
        if self.token is not None:
            data["token"] = self.token
        return data


# ─── results ─────────────────────────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class Frame:
    """One received video frame: arrival time (driver clock, ms), size and its decoded marker band."""

    t_ms: float
    width: int
    height: int
    markers: Any  # mock_server.media.markers.Markers | None


def read_frames(path: Path) -> list[Frame]:
    """Parse frames.bin records ``[u32 w][u32 h][f64 t_ms][w*h luma]`` and decode each frame's markers."""
    from mock_server.media.markers import decode_markers

    frames: list[Frame] = []
    if not path.exists():
        return frames
    data = path.read_bytes()
    pos = 0
    while pos + 16 <= len(data):
        width, height, t_ms = struct.unpack_from("<IId", data, pos)
        pos += 16
        size = width * height
        if pos + size > len(data):
            break  # truncated last record (driver killed mid-write)
        luma = np.frombuffer(data, dtype=np.uint8, count=size, offset=pos).reshape(height, width)
        pos += size
        frames.append(Frame(t_ms, width, height, decode_markers(luma)))
    return frames


def _read_text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def _tail(text: str, lines: int) -> str:
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class RunResult:
    """Everything one scenario run produced."""

    mode: str
    returncode: int
    out_dir: Path
    events: list[dict[str, Any]]
    frames: list[Frame]
    record: dict[str, Any]

    # logs
    @property
    def server_log(self) -> str:
        return _read_text(self.out_dir / "server.log")

    @property
    def client_log(self) -> str:
        return _read_text(self.out_dir / "client.log")

    @property
    def sdk_log(self) -> str:
        return _read_text(self.out_dir / "sdk.log")

    @property
    def harness_log(self) -> str:
        """ns_scenario's notes, plus anything else the namespace wrapper printed (e.g. a traceback)."""
        extra = [
            line
            for line in _read_text(self.out_dir / "ns.stderr").splitlines()
            if not line.startswith("[ns_scenario]")
        ]
        return _read_text(self.out_dir / "harness.log") + "\n".join(extra)

    def context(self, lines: int = 40) -> str:
        """Tails of the driver output, the event log and the server log, for assertion messages."""
        events = _read_text(self.out_dir / "events.jsonl")
        return (
            f"\n--- {self.mode}: exit {self.returncode}, artifacts in {self.out_dir}"
            f"\n--- harness:\n{_tail(self.harness_log, 15)}"
            f"\n--- client:\n{_tail(self.client_log, 10)}"
            f"\n--- events (last {lines}):\n{_tail(events, lines)}"
            f"\n--- server log (last {lines}):\n{_tail(self.server_log, lines)}"
        )

    # driver events
    def steps(self) -> dict[str, dict[str, Any]]:
        """step id -> its step_end event."""
        return {e["id"]: e for e in self.events if e["kind"] == "step_end"}

    def step(self, step_id: str) -> dict[str, Any]:
        """The result of step ``step_id``; fails the test (with context) unless it ran and passed."""
        end = self.steps().get(step_id)
        assert end is not None, f"step {step_id!r} never finished" + self.context()
        assert end["ok"], f"step {step_id!r} failed: {end.get('error')}" + self.context()
        return end.get("result", {})

    def assert_ok(self) -> None:
        assert self.returncode == 0, "scenario failed" + self.context()

    @property
    def messages(self) -> list[dict[str, Any]]:
        """Model messages in arrival order: {t, index, type, data}."""
        return [e for e in self.events if e["kind"] == "message"]

    def of_type(self, msg_type: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == msg_type]

    def event_time(self, kind: str, **match: Any) -> float:
        """Time of the first event of ``kind`` whose fields equal ``match``."""
        for e in self.events:
            if e["kind"] == kind and all(e.get(k) == v for k, v in match.items()):
                return float(e["t"])
        raise AssertionError(f"no {kind} event with {match}" + self.context())

    def timing(self, name: str) -> float | None:
        for e in self.events:
            if e["kind"] == "timing" and e["name"] == name:
                return float(e["value"])
        return None

    def statuses(self) -> list[str]:
        return [e["status"] for e in self.events if e["kind"] == "status"]

    # server record
    def session_record(self) -> dict[str, Any]:
        """The server's record of the (single) session this run created."""
        sessions = self.record.get("sessions") or []
        assert sessions, f"server record has no session: {str(self.record)[:500]}" + self.context()
        return sessions[-1]

    def http_requests(self) -> list[tuple[str, str, int]]:
        """(method, path, status) of every HTTP request the server recorded for the session."""
        return [(h["method"], h["path"], int(h["status"])) for h in self.session_record().get("http", [])]


def run_js_scenario(
    scenario: Scenario,
    out_dir: Path,
    *,
    server_args: list[str],
    api_host: str = "127.0.0.1",
    timeout: float = 240.0,
) -> RunResult:
    """Run ``scenario`` with the JS driver against a fresh mock, both inside a new network namespace."""
    ensure_node_modules()
    out_dir.mkdir(parents=True, exist_ok=True)
    scenario_path = out_dir / "scenario.json"
    scenario_path.write_text(json.dumps(scenario.to_json(out_dir), indent=1))
    node = shutil.which("node") or "node"
    argv = [sys.executable, str(NS_SCENARIO), "--out-dir", str(out_dir), "--api-host", api_host]
    argv += [f"--server-arg={a}" for a in server_args]
    argv += [
        "--client-timeout",
        str(scenario.timeout_ms / 1000 + 30),
        "--",
        node,
        str(DRIVER),
        str(scenario_path),
    ]
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["PYTHONUNBUFFERED"] = "1"
    proc = run_in_netns(
        argv,
        cwd=REPO,
        env=env,
        timeout=timeout,
        stdout_path=out_dir / "ns.stdout",
        stderr_path=out_dir / "ns.stderr",
    )
    events_path = out_dir / "events.jsonl"
    events = [json.loads(line) for line in _read_text(events_path).splitlines() if line.strip()]
    record_path = out_dir / "record.json"
    record = json.loads(record_path.read_text()) if record_path.exists() else {"error": "no record.json"}
    frames = read_frames(out_dir / "frames.bin")
    return RunResult(scenario.mode, proc.returncode, out_dir, events, frames, record)

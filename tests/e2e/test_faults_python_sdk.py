"""End-to-end: faults against the published Python SDK (reactor-sdk 1.13.0, unmodified), one namespace run per
kind. Each run arms one fault for the first session (``--faults FILE``), runs py_scenarios/fault_run.py and
checks what the client showed (facts) and the server's record. The time from the last chunk before the fault
to the client's first status change is printed (docs/FAULTS.md, "Python SDK 1.13.0 shows")."""

from __future__ import annotations

import json
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

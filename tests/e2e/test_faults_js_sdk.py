"""End-to-end: faults against the published JS SDK (@reactor-team/js-sdk 2.9.0, unmodified, Node 20), one
namespace run per kind: the server arms one fault for the first session (``--faults FILE``), the driver runs
connect → set_prompt → start → chunk_complete 1 → wait for a status change. Prints what the client showed and
the time from chunk_complete 1 (the fault fires as chunk 2 begins) to the first status change
(docs/FAULTS.md, "JS SDK 2.9.0 shows")."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsclient import RunResult, Scenario, run_js_scenario

pytestmark = pytest.mark.e2e

SPEED = 4
SERVER_ARGS = ["--mode=production", f"--speed={SPEED}", "--resolution=160x96", "--log-level=info"]

END_FAULTS: dict[str, dict[str, Any]] = {
    "gpu_failure": {"kind": "gpu_failure", "at_chunk": 2, "params": {"reason": "the GPU worker failed"}},
    "session_expiry": {"kind": "session_expiry", "at_chunk": 2},
    "moderation": {"kind": "moderation", "at_chunk": 2, "params": {"action": "terminate"}},
    "transport_drop": {"kind": "transport_drop", "at_chunk": 2},
}
CREATION_FAULTS: dict[str, dict[str, Any]] = {
    "session_refused": {"kind": "session_refused", "params": {"status": 429, "retry_after": 2}},
    "queue_wait": {"kind": "queue_wait", "params": {"state": "WAITING", "seconds": 3}},
    "session_closed": {"kind": "session_closed", "params": {"seconds": 1, "reason": "no capacity"}},
}


def _run(fault: dict[str, Any], scenario: Scenario, tmp_path: Path) -> RunResult:
    fault_file = tmp_path / "faults.json"
    fault_file.write_text(json.dumps([fault]))
    return run_js_scenario(
        scenario,
        tmp_path / "run",
        server_args=[*SERVER_ARGS, f"--faults={fault_file}"],
        api_host="198.18.0.1",
    )


def _fired(result: RunResult) -> list[str]:
    return [f["kind"] for s in result.record.get("sessions", []) for f in s.get("faults", [])]


def _report(kind: str, result: RunResult, **facts: Any) -> None:
    http = [
        (h["method"], h["path"], h["status"]) for s in result.record.get("sessions", []) for h in s["http"]
    ]
    errors = [e.get("error") for e in result.events if e["kind"] == "error"]
    print(f"\n[js-sdk fault {kind}] statuses={result.statuses()} errors={errors} http={http} {facts}")


@pytest.mark.parametrize("kind", list(END_FAULTS))
def test_server_side_end(kind: str, tmp_path: Path) -> None:
    sc = Scenario("production", token="e2e-test-token", timeout_ms=90_000)
    sc.connect()
    sc.command("set_prompt", {"prompt": "a quiet harbour"}).command("start")
    sc.wait("chunk_complete", {"chunk_index": 1}, save_as="cc1", timeout_ms=30_000)
    sc.wait_status("disconnected", timeout_ms=40_000)
    result = _run(END_FAULTS[kind], sc, tmp_path)
    assert _fired(result) == [kind], result.context()
    t_cc1 = next(m["t"] for m in result.of_type("chunk_complete") if m["data"]["chunk_index"] == 1)
    after = [e for e in result.events if e["kind"] == "status" and e["t"] > t_cc1]
    assert after, result.context()
    noticed = after[0]["t"] - t_cc1
    _report(kind, result, noticed_ms=round(noticed, 1), first_status=after[0]["status"])
    runtime = [e for e in result.events if "moderation" in json.dumps(e) and e["kind"] != "step_start"]
    print(f"[js-sdk fault {kind}] events mentioning moderation: {[json.dumps(e)[:200] for e in runtime]}")


@pytest.mark.parametrize("kind", list(CREATION_FAULTS))
def test_creation_fault(kind: str, tmp_path: Path) -> None:
    sc = Scenario("production", token="e2e-test-token", timeout_ms=60_000)
    sc.connect(timeout_ms=20_000)
    result = _run(CREATION_FAULTS[kind], sc, tmp_path)
    assert _fired(result) == [kind] or kind == "session_refused", result.context()
    connect = result.steps().get("connect", {})
    _report(
        kind,
        result,
        connect_ok=connect.get("ok"),
        connect_ms=connect.get("duration_ms"),
        connect_error=str(connect.get("error"))[:200],
    )
    if kind == "queue_wait":
        assert connect.get("ok") and connect["duration_ms"] >= 3000, result.context()
    else:
        assert not connect.get("ok"), result.context()

"""Two mock instances behind nginx (deploy/nginx) on one base URL, on loopback (tests/multi_instance.py).

nginx is started by the test with the documented configuration (ports substituted) under a temporary
prefix, as an unprivileged process. Checks: session ids name their instance; new sessions spread over both
instances; every call of a session (coordinator, transport, uploads) reaches the instance that holds it
(each instance's ``/admin/record`` has exactly its own sessions, with all their HTTP calls, and no call of
another instance's session); the SDP answer carries the instance's own ICE candidates (media never passes
the router, which only speaks HTTP); tokens minted by one instance verify on the other; a Locust run with
two workers through the router (its accounting reads every instance's record); the published Python SDK
through the router, in a network namespace (docs/CLIENTS.md §1), with a token and an upload.
"""

from __future__ import annotations

import asyncio
import csv
import importlib.util
import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from locust_runs import run_distributed
from multi_instance import NGINX, ROOT, Cluster, instance_of, start_cluster, strays

from conformance.server import free_port
from conformance.wire_client import WireClient
from mock_server.transport.ice import restrict_host_addresses

sys.path.insert(0, str(ROOT / "tests" / "e2e"))
from netns import NS_ADDRESS, run_in_netns  # noqa: E402
from prereq import missing_prerequisite  # noqa: E402

LOAD_SYMPTOMS = {"stall", "late frames", "media loss"}  # failure kinds a slow machine alone can cause
PY_SCENARIOS = ROOT / "tests" / "e2e" / "py_scenarios"
LOCUST = [sys.executable, "-m", "locust", "-f", str(ROOT / "load" / "locustfile.py")]

pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (apt-get install -y nginx)")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with start_cluster(tmp_path_factory.mktemp("multi")) as running:
        yield running


async def _stream(router: str, token: str) -> tuple[str, str, int]:
    """One production session through the router: connect, start, 10 frames; (id, answer SDP, frames)."""
    client = WireClient(router, wire="v0", mode="production", token=token)
    try:
        await client.connect(timeout=30)
        assert client.pc is not None and client.session_id is not None
        answer = client.pc.remoteDescription.sdp
        client.send_command("set_prompt", {"prompt": "a lighthouse at dusk"})
        client.send_command("start")
        await client.wait_frames(lambda f: f.markers is not None and f.markers.frame >= 9, timeout=20)
        return client.session_id, answer, len(client.frames)
    finally:
        await client.close()


def test_sessions_spread_and_every_call_reaches_the_owner(cluster: Cluster) -> None:
    restrict_host_addresses(["127.0.0.1"])
    token = httpx.post(cluster.router + "/tokens", headers={"X-API-Key": "k"}, timeout=10).json()["jwt"]

    async def run() -> list[tuple[str, str, int]]:
        return await asyncio.gather(*(_stream(cluster.router, token) for _ in range(4)))

    results = asyncio.run(run())
    owners = {sid: instance_of(sid) for sid, _, _ in results}
    assert set(owners.values()) == {"a", "b"}, owners  # round robin spreads new sessions
    for sid, answer, frames in results:
        assert frames >= 10, f"{sid} received {frames} frames"
        router_port = cluster.router.rsplit(":", 1)[1]
        candidates = re.findall(r"a=candidate:\S+ \d+ udp \d+ (\S+) (\d+) typ host", answer)
        assert candidates and all(ip == "127.0.0.1" and port != router_port for ip, port in candidates)
    for name in ("a", "b"):
        record = cluster.record(name)
        held = {s["session_id"]: s for s in record["sessions"]}
        mine = {sid for sid, owner in owners.items() if owner == name}
        assert mine <= set(held), (name, mine, set(held))
        assert not {sid for sid in held if instance_of(sid) != name}  # nothing of the other instance
        assert not strays(record), strays(record)  # no call of the other's sessions reached this one
        for sid in mine:
            paths = [h["path"] for h in held[sid]["http"]]
            assert any("/transport/webrtc/" in p for p in paths), paths  # signalling landed here too
            assert {c.get("type") or c.get("command") for c in held[sid]["commands"]} & {"start"}, held[sid][
                "commands"
            ]


def test_unknown_instance_and_cross_instance_tokens(cluster: Cluster) -> None:
    missing = httpx.get(cluster.router + "/sessions/sess_zz_0123456789abcdef", timeout=10)
    assert missing.status_code == 404 and "no instance zz" in missing.json()["detail"]
    a, b = cluster.instances["a"].url, cluster.instances["b"].url
    token = httpx.post(a + "/tokens", headers={"X-API-Key": "k"}, timeout=10).json()["jwt"]
    created = httpx.post(
        b + "/sessions",
        json={"model": {"name": "helios"}},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    sid = created.json()["session_id"]
    assert instance_of(sid) == "b"
    routed = httpx.get(cluster.router + f"/sessions/{sid}", headers={"Authorization": f"Bearer {token}"})
    assert routed.status_code == 200 and routed.json()["session_id"] == sid
    httpx.delete(cluster.router + f"/sessions/{sid}", headers={"Authorization": f"Bearer {token}"})


def test_locust_two_workers_through_the_router(cluster: Cluster, tmp_path: Path) -> None:
    """Two Locust workers play sessions through the router; the master's accounting reads every instance's
    record (--helios-admin-urls: /admin/record through the router would reach one instance only)."""
    port = free_port()
    admin_urls = ",".join(server.url for server in cluster.instances.values())
    master = [
        *LOCUST, "--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port),
        "--expect-workers", "2", "--expect-workers-max-wait", "60", "-u", "4", "-r", "4", "-t", "10s",
        "--helios-scenario", "prompts", "--headless", "--host", cluster.router, "--only-summary",
        "--csv", str(tmp_path / "run"), "--helios-speed", "4", "--helios-admin-urls", admin_urls,
        "--exit-code-on-error", "0",  # the exit status is the accounting's; failures are checked below
    ]  # fmt: skip
    worker = [*LOCUST, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port)]
    before = {name: {s["session_id"] for s in cluster.record(name)["sessions"]} for name in cluster.instances}
    result, _ = run_distributed(master, worker, tmp_path, cwd=ROOT)
    output = result.stdout + result.stderr
    assert result.returncode == 0, (
        result.stdout[result.stdout.find("Helios session") :] + result.stderr[-3000:]
    )
    assert "2 workers connected" in output
    table = result.stdout[result.stdout.index("Helios session accounting") :]
    assert "Every session accounted for: yes" in table, table
    with open(tmp_path / "run_failures.csv", newline="", encoding="utf-8") as fh:
        failures = {row["Name"]: row["Error"] for row in csv.DictReader(fh)}
    # A busy machine may make frames late (or skipped by a server that fell behind); nothing else may fail.
    assert set(failures) <= LOAD_SYMPTOMS, failures
    created = int(re.search(r"sessions created\s+(\d+)", table).group(1))  # type: ignore[union-attr]
    records = {name: cluster.record(name) for name in cluster.instances}
    new = {
        name: {s["session_id"]: s for s in record["sessions"] if s["session_id"] not in before[name]}
        for name, record in records.items()
    }
    assert sum(len(v) for v in new.values()) == created >= 4, (created, new.keys())
    assert all(new.values()), {name: len(v) for name, v in new.items()}  # round robin spread them
    for name, sessions in new.items():
        assert not strays(records[name]), strays(records[name])  # no call of a session missed its owner
        for sid, view in sessions.items():
            assert instance_of(sid) == name
            calls = [f"{h['method']} {h['path']}" for h in view["http"]]
            assert calls[0] == "POST /sessions" and f"DELETE /sessions/{sid}" in calls, calls
            assert view["closed"], sid
            if view["commands"]:  # it reached the data channel: its signalling came here too
                assert any("/transport/webrtc/" in c for c in calls), calls
        assert any(view["chunks_generated"] >= 1 for view in sessions.values()), name  # and streamed


@pytest.mark.e2e
def test_python_sdk_through_the_router(tmp_path: Path) -> None:
    """The published Python SDK (reactor-sdk 1.13.0, libwebrtc: it needs the namespace's non-loopback
    address, docs/CLIENTS.md §1) runs two concurrent production sessions through nginx in front of two
    instances; every HTTP call of each session reaches its owner, media go straight to the instance."""
    if importlib.util.find_spec("reactor_sdk") is None:
        missing_prerequisite("reactor-sdk==1.13.0 is not installed (pip install -e '.[test]')")
    out = tmp_path / "run"
    argv = [
        sys.executable, str(ROOT / "tests" / "multi_instance.py"), "--out", str(out),
        "--ice-address", NS_ADDRESS, "--", sys.executable, str(PY_SCENARIOS / "through_router.py"),
        "--out", str(out / "client"), "--api-url", "{api_url}",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(PYTHONUNBUFFERED="1", RUST_LOG="reactor_ffi=warn,reactor_core=warn")
    out.mkdir()
    proc = run_in_netns(
        argv, cwd=ROOT, env=env, timeout=180, stdout_path=out / "ns.stdout", stderr_path=out / "ns.stderr"
    )
    results_path = out / "client" / "results.json"
    clients = json.loads(results_path.read_text())["clients"] if results_path.exists() else []
    logs = "".join(p.read_text(errors="replace")[-3000:] for p in (out / "ns.stderr", out / "client.log"))
    assert proc.returncode == 0 and len(clients) == 2, (clients, logs)
    records = {name: json.loads((out / f"record-{name}.json").read_text()) for name in ("a", "b")}
    owners = {c["session_id"]: instance_of(c["session_id"]) for c in clients}
    assert set(owners.values()) == {"a", "b"}, owners  # round robin: one session on each instance
    for client in clients:
        sid, owner = client["session_id"], owners[client["session_id"]]
        assert client["upload_id"].startswith(f"{owner}_"), client
        held = {s["session_id"]: s for s in records[owner]["sessions"]}
        assert sid in held, (owner, sid, list(held))
        view = held[sid]
        calls = [f"{h['method']} {h['path']}" for h in view["http"]]
        for call in (
            f"/sessions/{sid}/transport/webrtc/",
            f"PUT /uploads/{client['upload_id']}",
            f"DELETE /sessions/{sid}",
        ):
            assert any(call in c for c in calls), (call, calls)
        assert {"set_prompt", "set_image", "start"} <= {c["type"] for c in view["commands"]}, view["commands"]
        sent = sum(c["frames_sent"] for c in view["connections"])  # the video came from the owner itself
        assert view["closed"] and sent >= client["frames"] >= 10, (sent, client)
    for name, record in records.items():
        assert not strays(record), (name, strays(record))  # no session call reached the other instance
        assert all(instance_of(s["session_id"]) == name for s in record["sessions"]), name

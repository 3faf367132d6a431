"""Two mock instances behind nginx (deploy/nginx) on one base URL, on loopback.

nginx is started by the test with the documented configuration (ports substituted) under a temporary
prefix, as an unprivileged process. Checks: session ids name their instance; new sessions spread over both
instances; every call of a session (coordinator, transport, uploads) reaches the instance that holds it
(each instance's ``/admin/record`` has exactly its own sessions, with all their HTTP calls); the SDP answer
carries the instance's own ICE candidates (media never passes the router, which only speaks HTTP);
tokens minted by one instance verify on the other; a Locust run with two workers through the router.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from conformance.server import HeliosServer, free_port
from conformance.wire_client import WireClient
from mock_server.transport.ice import restrict_host_addresses

ROOT = Path(__file__).resolve().parent.parent
NGINX_DIR = ROOT / "deploy" / "nginx"
LOCUST = [sys.executable, "-m", "locust", "-f", str(ROOT / "load" / "locustfile.py")]
SECRET = "multi-instance-test-secret-0123456789abcdef"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)

pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (apt-get install -y nginx)")


@dataclass
class Cluster:
    router: str
    instances: dict[str, HeliosServer]  # instance id -> server

    def record(self, instance: str) -> dict:
        server = self.instances[instance]
        return httpx.get(server.url + "/admin/record", timeout=10).json()


def _nginx_config(prefix: Path, listen: int, ports: dict[str, int]) -> Path:
    """The documented configuration with this test's ports."""
    text = (NGINX_DIR / "helios-mock.conf").read_text()
    text = text.replace("listen 127.0.0.1:8080;", f"listen 127.0.0.1:{listen};")
    text = text.replace("127.0.0.1:8081", f"127.0.0.1:{ports['a']}").replace(
        "127.0.0.1:8082", f"127.0.0.1:{ports['b']}"
    )
    (prefix / "helios-mock.conf").write_text(text)
    shutil.copy(NGINX_DIR / "nginx.conf", prefix / "nginx.conf")
    return prefix / "nginx.conf"


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nginx exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"nginx did not answer: {log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("multi")
    common = ["--jwt-secret", SECRET, "--max-sessions-per-account", "0", "--max-creations-per-minute", "0"]
    instances: dict[str, HeliosServer] = {}
    proc = None
    try:
        for name in ("a", "b"):
            instances[name] = HeliosServer.start(
                speed=4, extra=["--instance-id", name, *common], log_path=tmp / f"{name}.log"
            )
        ports = {name: int(s.url.rsplit(":", 1)[1]) for name, s in instances.items()}
        listen = free_port()
        assert NGINX is not None
        config = _nginx_config(tmp, listen, ports)
        log = tmp / "nginx.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [NGINX, "-p", str(tmp), "-c", str(config), "-e", "stderr"], stdout=out, stderr=out
            )
        router = f"http://127.0.0.1:{listen}"
        _wait_healthy(router, proc, log)
        yield Cluster(router, instances)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
        for server in instances.values():
            server.stop()


def _instance_of(session_id: str) -> str:
    found = re.fullmatch(r"sess_([a-z0-9]+)_[0-9a-f]{16}", session_id)
    assert found, session_id
    return found.group(1)


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
    owners = {sid: _instance_of(sid) for sid, _, _ in results}
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
        assert not {sid for sid in held if _instance_of(sid) != name}  # nothing of the other instance
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
    assert _instance_of(sid) == "b"
    routed = httpx.get(cluster.router + f"/sessions/{sid}", headers={"Authorization": f"Bearer {token}"})
    assert routed.status_code == 200 and routed.json()["session_id"] == sid
    httpx.delete(cluster.router + f"/sessions/{sid}", headers={"Authorization": f"Bearer {token}"})


def test_locust_two_workers_through_the_router(cluster: Cluster, tmp_path: Path) -> None:
    port = free_port()
    master = [
        *LOCUST, "--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port),
        "--expect-workers", "2", "--expect-workers-max-wait", "60", "-u", "4", "-r", "4", "-t", "15s",
        "--helios-scenario", "prompts", "--headless", "--host", cluster.router, "--only-summary",
        "--csv", str(tmp_path / "run"), "--helios-speed", "4",
    ]  # fmt: skip
    worker = [*LOCUST, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    logs = [open(tmp_path / f"worker{i}.log", "w") for i in range(2)]  # noqa: SIM115
    before = {name: {s["session_id"] for s in cluster.record(name)["sessions"]} for name in ("a", "b")}
    workers = [
        subprocess.Popen(worker, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT) for log in logs
    ]
    try:
        result = subprocess.run(master, cwd=ROOT, env=env, capture_output=True, text=True, timeout=150)
        for proc in workers:
            proc.wait(timeout=60)
    finally:
        for proc in workers:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for log in logs:
            log.close()
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "2 workers connected" in output
    new = {
        name: {
            s["session_id"]: s
            for s in cluster.record(name)["sessions"]
            if s["session_id"] not in before[name]
        }
        for name in ("a", "b")
    }
    assert sum(len(v) for v in new.values()) >= 4
    for name, sessions in new.items():
        for sid, view in sessions.items():
            assert _instance_of(sid) == name
            assert view["chunks_generated"] >= 1 and view["commands"], sid

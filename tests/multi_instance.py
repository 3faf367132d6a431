"""Two helios-mock instances behind nginx (deploy/nginx) on one base URL, for tests/test_multi_instance.py.

``start_cluster`` starts instances ``a`` and ``b`` (same JWT secret, unlimited sessions) and an unprivileged
nginx with the documented configuration (ports substituted) under a temporary prefix, all on 127.0.0.1.

Run as a program inside a network namespace (tests/e2e/netns.py) it hosts one real-client run::

    python tests/multi_instance.py --out DIR --ice-address 198.18.0.1 -- CLIENT_ARGV...

It starts the cluster (the instances offer ``--ice-address`` as their ICE candidate), runs the client with
``{api_url}`` in its argv replaced by the router's URL, saves each instance's ``GET /admin/record`` to
``DIR/record-<instance>.json`` and exits with the client's status (124: the client timed out).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a program: conformance/ lives at the root
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from conformance.server import HeliosServer, free_port  # noqa: E402

NGINX_DIR = ROOT / "deploy" / "nginx"
SECRET = "multi-instance-test-secret-0123456789abcdef"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
INSTANCES = ("a", "b")
EXIT_CLIENT_TIMEOUT = 124
# A call that reached an instance which does not hold its session: recorded there as unbound.
_SESSION_PATH = re.compile(r"^/(?:admin/)?sessions/sess_|^/uploads/")


@dataclass
class Cluster:
    router: str
    instances: dict[str, HeliosServer]  # instance id -> server

    def record(self, instance: str) -> dict[str, Any]:
        server = self.instances[instance]
        return dict(httpx.get(server.url + "/admin/record", timeout=10).json())


def instance_of(session_id: str) -> str:
    """The instance named by ``sess_<instance>_<hex>`` (AssertionError for another shape)."""
    found = re.fullmatch(r"sess_([a-z0-9]+)_[0-9a-f]{16}", session_id)
    assert found, session_id
    return found.group(1)


def strays(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Unbound requests of a record that name a session or an upload: calls routed to the wrong instance."""
    return [h for h in record.get("http") or () if _SESSION_PATH.match(str(h.get("path")))]


def _nginx_config(prefix: Path, listen: int, ports: dict[str, int], namespace_root: bool) -> Path:
    """The documented configuration with this cluster's ports.

    ``namespace_root``: nginx runs as root of a user namespace (``unshare -r``) where only that uid is
    mapped, so its workers cannot switch to ``nobody``: they keep the (mapped) root user."""
    text = (NGINX_DIR / "helios-mock.conf").read_text()
    text = text.replace("listen 127.0.0.1:8080;", f"listen 127.0.0.1:{listen};")
    text = text.replace("127.0.0.1:8081", f"127.0.0.1:{ports['a']}").replace(
        "127.0.0.1:8082", f"127.0.0.1:{ports['b']}"
    )
    (prefix / "helios-mock.conf").write_text(text)
    main = (NGINX_DIR / "nginx.conf").read_text()
    (prefix / "nginx.conf").write_text(("user root root;\n" if namespace_root else "") + main)
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


@contextlib.contextmanager
def start_cluster(
    tmp: Path, *, ice_address: str = "127.0.0.1", namespace_root: bool = False
) -> Iterator[Cluster]:
    """Instances a and b plus nginx in front of them; everything stops when the block ends."""
    assert NGINX is not None, "nginx is not installed (apt-get install -y nginx)"
    common = ["--jwt-secret", SECRET, "--max-sessions-per-account", "0", "--max-creations-per-minute", "0"]
    instances: dict[str, HeliosServer] = {}
    proc = None
    try:
        for name in INSTANCES:
            instances[name] = HeliosServer.start(
                speed=4,
                ice_addresses=ice_address,
                extra=["--instance-id", name, *common],
                log_path=tmp / f"{name}.log",
            )
        ports = {name: int(s.url.rsplit(":", 1)[1]) for name, s in instances.items()}
        listen = free_port()
        config = _nginx_config(tmp, listen, ports, namespace_root)
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


def main() -> int:
    parser = argparse.ArgumentParser(description="one client run against two instances behind nginx")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--ice-address", default="127.0.0.1", help="the ICE candidate the instances offer")
    parser.add_argument("--client-timeout", type=float, default=120.0)
    parser.add_argument("client", nargs=argparse.REMAINDER, help="-- client argv ({api_url}: the router)")
    args = parser.parse_args()
    argv = args.client[1:] if args.client[:1] == ["--"] else args.client
    args.out.mkdir(parents=True, exist_ok=True)
    with start_cluster(args.out, ice_address=args.ice_address, namespace_root=True) as cluster:
        with open(args.out / "client.log", "wb") as log:
            client = subprocess.Popen(
                [a.replace("{api_url}", cluster.router) for a in argv], stdout=log, stderr=subprocess.STDOUT
            )
            try:
                rc = client.wait(timeout=args.client_timeout)
            except subprocess.TimeoutExpired:
                client.kill()
                client.wait()
                rc = EXIT_CLIENT_TIMEOUT
        for name in INSTANCES:
            (args.out / f"record-{name}.json").write_text(json.dumps(cluster.record(name), indent=1))
    return rc


if __name__ == "__main__":
    sys.exit(main())

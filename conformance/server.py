"""Run the mock server as a child process (what the pytest plugin and the benchmarks use), and open raw
clients to it (``async with server.client(wire="v1") as client``)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import httpx

if TYPE_CHECKING:
    from conformance.wire_client import WireClient

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class FaultsHandle:
    """`helios.faults`: arm, list and clear the server's faults (docs/FAULTS.md) from a test."""

    def __init__(self, url: str) -> None:
        self._url = url

    def inject(
        self,
        kind: str,
        session_id: str | None = None,
        at_chunk: int | None = None,
        after_seconds: float | None = None,
        on_command: str | None = None,
        count: int | None = 1,
        probability: float | None = None,
        params: dict[str, Any] | None = None,
        **kind_params: Any,
    ) -> dict[str, Any]:
        """Arm one fault; return it as the server listed it (raises with the server's detail if refused).

        The kind's parameters are keyword arguments (`reason=...`); a parameter whose name is also a
        trigger field (slow_chunks' `count`) goes in `params={"count": 2}`.
        """
        body: dict[str, Any] = {"kind": kind, "params": {**(params or {}), **kind_params}}
        for key, value in (
            ("session_id", session_id),
            ("at_chunk", at_chunk),
            ("after_seconds", after_seconds),
            ("on_command", on_command),
            ("count", count),
            ("probability", probability),
        ):
            if value is not None:
                body[key] = value
        resp = httpx.post(self._url + "/admin/faults", json=body, timeout=10)
        if resp.status_code != 201:
            raise ValueError(f"POST /admin/faults answered {resp.status_code}: {resp.text}")
        fault: dict[str, Any] = resp.json()
        return fault

    def list(self) -> list[dict[str, Any]]:
        resp = httpx.get(self._url + "/admin/faults", timeout=10)
        resp.raise_for_status()
        faults: list[dict[str, Any]] = resp.json()["faults"]
        return faults

    def get(self, fault_id: str) -> dict[str, Any]:
        return next(f for f in self.list() if f["id"] == fault_id)

    def remove(self, fault_id: str) -> dict[str, Any]:
        resp = httpx.delete(f"{self._url}/admin/faults/{fault_id}", timeout=10)
        resp.raise_for_status()
        removed: dict[str, Any] = resp.json()
        return removed

    def clear(self) -> int:
        resp = httpx.delete(self._url + "/admin/faults", timeout=10)
        resp.raise_for_status()
        return int(resp.json()["removed"])


@dataclass
class HeliosServer:
    """A mock server reachable at `url`: one this process started, or an external one (`process` None)."""

    url: str
    token: str = "test-token"
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    args: list[str] = field(default_factory=list)
    admin_token: str | None = field(default_factory=lambda: os.environ.get("HELIOS_MOCK_ADMIN_TOKEN") or None)

    @property
    def faults(self) -> FaultsHandle:
        """Fault injection: `helios.faults.inject("gpu_failure", at_chunk=2)`; cleared by reset()."""
        return FaultsHandle(self.url)

    @classmethod
    def start(
        cls,
        *,
        speed: float = 20.0,
        resolution: str = "160x96",
        host: str = "127.0.0.1",
        ice_addresses: str = "127.0.0.1",
        extra: list[str] | None = None,
        log_path: Path | None = None,
        ready_timeout: float = 30.0,
        admin_token: str | None = None,
    ) -> HeliosServer:
        """Start `python -m mock_server serve` on a free port and wait for /health."""
        port = free_port(host)
        args = [
            sys.executable, "-m", "mock_server", "serve",
            "--host", host, "--port", str(port), "--speed", str(speed), "--resolution", resolution,
            "--ice-addresses", ice_addresses, "--pending-delay", "0.2",
            *(extra or []),
            *(["--admin-token", admin_token] if admin_token else []),
        ]  # fmt: skip
        if admin_token is None and "--admin-token" in args:
            admin_token = args[args.index("--admin-token") + 1]
        if log_path is None:
            log_path = Path(tempfile.mkstemp(prefix="helios-mock-", suffix=".log")[1])
        log_file = open(log_path, "wb")  # noqa: SIM115 - lives as long as the server
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        process = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT, env=env)
        server = cls(url=f"http://{host}:{port}", process=process, log_path=log_path, args=args)
        if admin_token:
            server.admin_token = admin_token
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"helios-mock exited with {process.returncode}:\n{server.log_tail()}")
            try:
                if httpx.get(server.url + "/health", timeout=1).status_code == 200:
                    return server
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        server.stop()
        raise RuntimeError(
            f"helios-mock did not answer /health within {ready_timeout:g} s:\n{server.log_tail()}"
        )

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    @property
    def on_loopback(self) -> bool:
        """The server runs on this machine's loopback (started here, or an external one at 127.0.0.1)."""
        return (urlparse(self.url).hostname or "") in LOOPBACK_HOSTS

    async def connect_client(self, wire: str = "v0", mode: str = "local", **kwargs: Any) -> WireClient:
        """A connected raw wire client of this server (close it with ``await client.close()``).

        Against a loopback server the client gathers its ICE host candidates on 127.0.0.1 only, and only
        for this connection: other peers of the process (your application's) keep aioice's own choice.
        """
        from conformance.wire_client import WireClient
        from mock_server.transport.ice import host_addresses

        client = WireClient(self.url, wire=wire, mode=mode, token=self.token, **kwargs)
        scope = host_addresses(["127.0.0.1"]) if self.on_loopback else contextlib.nullcontext()
        try:
            with scope:
                await client.connect()
        except BaseException:
            await client.close()
            raise
        return client

    @contextlib.asynccontextmanager
    async def client(self, wire: str = "v0", mode: str = "local", **kwargs: Any) -> AsyncIterator[WireClient]:
        """``async with server.client(wire="v1") as client:`` connected for the block, closed after it.

        Works in any test, including a Hypothesis ``@given`` test that uses only the session-scoped
        ``helios_server`` fixture (call ``server.reset()`` at the start of each example)."""
        client = await self.connect_client(wire=wire, mode=mode, **kwargs)
        try:
            yield client
        finally:
            await client.close()

    # ------------------------------------------------------------------ admin API

    @property
    def admin_headers(self) -> dict[str, str]:
        """The admin token header, when the server was started with one (`--admin-token`)."""
        return {"X-Helios-Admin-Token": self.admin_token} if self.admin_token else {}

    def reset(self) -> None:
        """Close every session, forget every record, disarm every fault (back to the start-up faults)."""
        httpx.post(self.url + "/admin/reset", headers=self.admin_headers, timeout=10).raise_for_status()

    def record(self) -> dict[str, Any]:
        resp = httpx.get(self.url + "/admin/record", headers=self.admin_headers, timeout=10)
        resp.raise_for_status()
        return resp.json()

    def transcript(self, session_id: str) -> dict[str, Any]:
        resp = httpx.get(
            f"{self.url}/admin/sessions/{session_id}/transcript", headers=self.admin_headers, timeout=10
        )
        resp.raise_for_status()
        return resp.json()

    def rejections(self) -> list[dict[str, Any]]:
        return [r for s in self.record()["sessions"] for r in s["rejections"]]

"""Run one end-to-end scenario inside a network namespace: mock server + one client program.

Usage (normally through ``netns.run_in_netns``)::

    python tests/e2e/ns_scenario.py --out-dir DIR [--api-host 127.0.0.1] [--server-arg=--speed=4 ...] \
        -- CLIENT_ARGV...

Steps: start ``python -m mock_server serve --host 0.0.0.0 --port <free port> <server args>``, wait for
``GET /health``, run the client, fetch ``GET /admin/record`` into ``DIR/record.json``, stop the server
(SIGINT, then SIGKILL after a timeout) and exit with the client's exit status. The server's output goes to
``DIR/server.log``, the client's to ``DIR/client.log``, this program's own notes to ``DIR/harness.log``.

The client learns where the server is through the environment (``HELIOS_E2E_API_URL``, ``HELIOS_E2E_PORT``)
and through ``{api_url}`` / ``{port}`` placeholders in its argv, so any client program can be used.
Exit codes besides the client's: 90 server did not come up, 124 client timed out.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, TextIO

EXIT_SERVER_DOWN = 90
EXIT_CLIENT_TIMEOUT = 124


class Harness:
    """Notes written to harness.log and echoed on stderr."""

    def __init__(self, out_dir: Path) -> None:
        self.t0 = time.monotonic()
        self.log: TextIO = open(out_dir / "harness.log", "w")

    def note(self, text: str) -> None:
        line = f"{time.monotonic() - self.t0:8.3f} {text}"
        self.log.write(line + "\n")
        self.log.flush()
        print(f"[ns_scenario] {line}", file=sys.stderr, flush=True)

    def close(self) -> None:
        self.log.close()


def free_port() -> int:
    """A TCP port that is free on every address of this namespace right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("0.0.0.0", 0))
        return int(sock.getsockname()[1])


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """Plain GET (never through a proxy); returns (status, body)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_health(base: str, server: subprocess.Popen[bytes], timeout: float) -> str | None:
    """Poll GET /health until 200; returns an error text, or None when healthy."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if server.poll() is not None:
            return f"server exited with status {server.returncode} before becoming healthy"
        try:
            status, body = http_get(f"{base}/health", timeout=1.0)
            if status == 200:
                return None
            last = f"HTTP {status}: {body[:200]!r}"
        except (OSError, urllib.error.URLError) as exc:
            last = str(exc)
        time.sleep(0.1)
    return f"GET /health not 200 after {timeout:.0f} s ({last})"


def stop_process(proc: subprocess.Popen[Any], grace: float) -> int:
    """SIGINT, wait up to ``grace`` seconds, then SIGKILL. Returns the exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", required=True, type=Path)
    parser.add_argument("--api-host", default="127.0.0.1", help="host the client uses for HTTP")
    parser.add_argument("--port", type=int, default=0, help="server port (0: pick a free one)")
    parser.add_argument("--server-arg", action="append", default=[], help="extra argument for 'serve'")
    parser.add_argument("--health-timeout", type=float, default=30.0)
    parser.add_argument("--client-timeout", type=float, default=180.0)
    parser.add_argument("--stop-timeout", type=float, default=10.0)
    parser.add_argument("client", nargs=argparse.REMAINDER, help="-- client argv")
    args = parser.parse_args(argv)
    client_argv = args.client[1:] if args.client[:1] == ["--"] else args.client
    if not client_argv:
        parser.error("no client command given (after --)")

    out_dir: Path = args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    harness = Harness(out_dir)
    port = args.port or free_port()
    base_local = f"http://127.0.0.1:{port}"
    api_url = f"http://{args.api_host}:{port}"

    server_cmd = [sys.executable, "-m", "mock_server", "serve", "--host", "0.0.0.0", "--port", str(port)]
    server_cmd += args.server_arg
    harness.note(f"server: {' '.join(server_cmd)}")
    server_log = open(out_dir / "server.log", "wb")
    server = subprocess.Popen(
        server_cmd, stdout=server_log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
    )
    client_rc = EXIT_SERVER_DOWN
    try:
        error = wait_health(base_local, server, args.health_timeout)
        if error is not None:
            harness.note(f"SERVER DOWN: {error}")
            return EXIT_SERVER_DOWN
        harness.note(f"server healthy on port {port}")

        env = dict(os.environ, HELIOS_E2E_API_URL=api_url, HELIOS_E2E_PORT=str(port))
        cmd = [a.replace("{api_url}", api_url).replace("{port}", str(port)) for a in client_argv]
        harness.note(f"client: {' '.join(cmd)}")
        started = time.monotonic()
        with open(out_dir / "client.log", "wb") as client_log:
            client = subprocess.Popen(cmd, stdout=client_log, stderr=subprocess.STDOUT, env=env)
            try:
                client_rc = client.wait(timeout=args.client_timeout)
            except subprocess.TimeoutExpired:
                harness.note(f"CLIENT TIMEOUT after {args.client_timeout:.0f} s; killing it")
                client.kill()
                client.wait()
                client_rc = EXIT_CLIENT_TIMEOUT
        harness.note(f"client exited with {client_rc} after {time.monotonic() - started:.2f} s")

        try:
            status, body = http_get(f"{base_local}/admin/record", timeout=10.0)
            record: Any = (
                json.loads(body) if status == 200 else {"error": f"HTTP {status}", "body": body.decode()}
            )
        except (OSError, ValueError, urllib.error.URLError) as exc:
            record = {"error": f"GET /admin/record failed: {exc}"}
        (out_dir / "record.json").write_text(json.dumps(record, indent=1))
        harness.note("record saved" if "error" not in record else f"record: {record['error']}")
        return client_rc
    finally:
        rc = stop_process(server, args.stop_timeout)
        server_log.close()
        harness.note(f"server stopped with {rc}")
        harness.close()


if __name__ == "__main__":
    sys.exit(main())

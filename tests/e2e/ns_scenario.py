"""Run one end-to-end scenario inside a network namespace: mock server + one client program.

Usage (normally through ``netns.run_in_netns``)::

    python tests/e2e/ns_scenario.py --out-dir DIR [--api-host 127.0.0.1] [--server-arg=--speed=4 ...] \
        -- CLIENT_ARGV... [::: CLIENT2_ARGV... ...]

Steps: start ``python -m mock_server serve --host 0.0.0.0 --port <free port> <server args>``, wait for
``GET /health``, run the client, fetch ``GET /admin/record`` into ``DIR/record.json``, stop the server
(SIGINT, then SIGKILL after a timeout) and exit with the client's exit status. The server's output goes to
``DIR/server.log``, the client's to ``DIR/client.log``, this program's own notes to ``DIR/harness.log``.

The client learns where the server is through the environment (``HELIOS_E2E_API_URL``, ``HELIOS_E2E_PORT``)
and through ``{api_url}`` / ``{port}`` placeholders in its argv, so any client program can be used.
Exit codes besides the client's: 90 server did not come up, 124 client timed out.

Several clients: separate their argvs with ``:::``; they start together and run concurrently against the
same server. The first one logs to ``client.log``, the n-th to ``client-<n>.log``; the exit status is the
first non-zero one in argv order. When one fails, the others get ``--fail-grace`` seconds, then are killed.
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
CLIENT_SEPARATOR = ":::"


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


def split_clients(argv: list[str]) -> list[list[str]]:
    """Split ``a b ::: c d`` into ``[[a, b], [c, d]]``."""
    groups: list[list[str]] = [[]]
    for arg in argv:
        if arg == CLIENT_SEPARATOR:
            groups.append([])
        else:
            groups[-1].append(arg)
    return groups if argv else []


def run_client(harness: Harness, cmd: list[str], log_path: Path, env: dict[str, str], timeout: float) -> int:
    """Run one client to completion (killed after ``timeout``); returns its exit status."""
    harness.note(f"client: {' '.join(cmd)}")
    started = time.monotonic()
    with open(log_path, "wb") as client_log:
        client = subprocess.Popen(cmd, stdout=client_log, stderr=subprocess.STDOUT, env=env)
        try:
            client_rc = client.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            harness.note(f"CLIENT TIMEOUT after {timeout:.0f} s; killing it")
            client.kill()
            client.wait()
            client_rc = EXIT_CLIENT_TIMEOUT
    harness.note(f"client exited with {client_rc} after {time.monotonic() - started:.2f} s")
    return client_rc


def run_clients(
    harness: Harness, cmds: list[list[str]], out_dir: Path, env: dict[str, str], timeout: float, grace: float
) -> int:
    """Run several clients concurrently; returns the first non-zero exit status in argv order (else 0)."""
    started = time.monotonic()
    deadline = started + timeout
    logs: list[TextIO] = []
    procs: list[subprocess.Popen[bytes]] = []
    codes: list[int | None] = [None] * len(cmds)
    try:
        for n, cmd in enumerate(cmds, start=1):
            name = "client.log" if n == 1 else f"client-{n}.log"
            harness.note(f"client {n} ({name}): {' '.join(cmd)}")
            log = open(out_dir / name, "w")
            logs.append(log)
            procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env))
        while any(code is None for code in codes):
            for i, proc in enumerate(procs):
                if codes[i] is None and proc.poll() is not None:
                    codes[i] = proc.returncode
                    elapsed = time.monotonic() - started
                    harness.note(f"client {i + 1} exited with {proc.returncode} after {elapsed:.2f} s")
                    if proc.returncode != 0 and deadline > time.monotonic() + grace:
                        deadline = time.monotonic() + grace
                        harness.note(f"client {i + 1} failed; the others get {grace:.0f} s more")
            if time.monotonic() > deadline:
                for i, proc in enumerate(procs):
                    if codes[i] is None:
                        harness.note(f"CLIENT {i + 1} TIMEOUT; killing it")
                        proc.kill()
                        proc.wait()
                        codes[i] = EXIT_CLIENT_TIMEOUT
            time.sleep(0.05)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for log in logs:
            log.close()
    return next((code for code in codes if code), 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", required=True, type=Path)
    parser.add_argument("--api-host", default="127.0.0.1", help="host the client uses for HTTP")
    parser.add_argument("--port", type=int, default=0, help="server port (0: pick a free one)")
    parser.add_argument("--server-arg", action="append", default=[], help="extra argument for 'serve'")
    parser.add_argument("--health-timeout", type=float, default=30.0)
    parser.add_argument("--client-timeout", type=float, default=180.0)
    parser.add_argument("--stop-timeout", type=float, default=10.0)
    parser.add_argument("--fail-grace", type=float, default=10.0, help="several clients: see above")
    parser.add_argument("client", nargs=argparse.REMAINDER, help="-- client argv [::: argv ...]")
    args = parser.parse_args(argv)
    client_argvs = split_clients(args.client[1:] if args.client[:1] == ["--"] else args.client)
    if not client_argvs or not all(client_argvs):
        parser.error(f"no client command given (after --), or an empty one around {CLIENT_SEPARATOR}")

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
        cmds = [
            [a.replace("{api_url}", api_url).replace("{port}", str(port)) for a in client_argv]
            for client_argv in client_argvs
        ]
        if len(cmds) == 1:
            client_rc = run_client(harness, cmds[0], out_dir / "client.log", env, args.client_timeout)
        else:
            client_rc = run_clients(harness, cmds, out_dir, env, args.client_timeout, args.fail_grace)

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

"""`helios-mock run`: a fresh mock for one command (optionally inside a private network namespace), then the
client-rule verdict of everything that command did.

Steps: start ``helios-mock serve --port 0 …`` as a child, learn its port from the start-up banner, wait for
``GET /health``, run COMMAND with ``HELIOS_MOCK_URL`` (and ``HELIOS_MOCK_ADMIN_TOKEN`` when an admin token is
set) in its environment, fetch ``GET /admin/violations``, print them, stop the mock.

Exit status: COMMAND's own when it failed (128+N when killed by signal N); else ``EXIT_VIOLATIONS`` (3)
with ``--strict`` and at least one violation; ``EXIT_MOCK_DOWN`` (4) when the mock did not come up;
``EXIT_NO_VERDICT`` (5) when the violations could not be fetched; ``EXIT_NO_NETNS`` (6) when ``--netns``
cannot create a namespace; 127 when COMMAND cannot be started; 0 otherwise.

``--netns`` re-runs this very command inside ``unshare -rn --pid --fork`` with a veth pair whose ``v0`` end
holds 198.18.0.1/24 and carries the default route (docs/CLIENTS.md §1, §4): libwebrtc (browsers,
``@roamhq/wrtc``, ``reactor-sdk``) gathers no loopback candidates, so without a non-loopback address it never
connects. The runner is PID 1 of the namespace: whenever it ends, the kernel ends everything inside.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

EXIT_VIOLATIONS = 3
EXIT_MOCK_DOWN = 4
EXIT_NO_VERDICT = 5
EXIT_NO_NETNS = 6
EXIT_NOT_STARTED = 127
NS_ADDRESS = "198.18.0.1"
NS_PREFIX = 24
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
STOP_GRACE = 10.0  # seconds the mock gets to close its sessions before it is killed
_BANNER_PORT = re.compile(r" API http://(?:\[[^\]]*\]|[^\s/:]+):(\d+)")
_NETNS_SETUP = (
    "set -e; ip link set lo up; ip link add v0 type veth peer name v1; "
    f"ip addr add {NS_ADDRESS}/{NS_PREFIX} dev v0; ip link set v0 up; ip link set v1 up; "
    # Chromium enumerates an interface only when a default route exists (nothing lies beyond it)
    'ip route add default dev v0; exec "$@"'
)


@dataclass
class RunOptions:
    """What `helios-mock run` was asked to do (see `mock_server.cli`)."""

    command: list[str]
    serve_argv: list[str] = field(default_factory=list)  # validated serve flags, as typed
    netns: bool = False
    inside_netns: Path | None = None  # the re-executed runner inside the namespace: its 'started' file
    strict: bool = False
    ignore: tuple[str, ...] = ()
    ping_tolerance: float | None = None
    health_timeout: float = 30.0
    server_log: Path | None = None
    admin_token: str | None = None
    host_given: bool = False
    rerun_argv: list[str] = field(default_factory=list)  # the `run` arguments, for the namespace re-run


def say(text: str) -> None:
    print(f"helios-mock run: {text}", file=sys.stderr, flush=True)


def run(opts: RunOptions) -> int:
    """Run COMMAND against a fresh mock; returns the exit status documented above."""
    if opts.netns and opts.inside_netns is None:
        return _run_in_namespace(opts)
    if opts.inside_netns is not None:
        opts.inside_netns.touch()
    if not opts.netns:
        _warn_if_loopback_only()
    return _run_here(opts)


# ---------------------------------------------------------------------- the namespace


def netns_unavailable() -> str | None:
    """Why `--netns` cannot work here (a missing tool), or None."""
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            return f"'{tool}' is not installed (util-linux and iproute2 provide the network namespace)"
    return None


def _run_in_namespace(opts: RunOptions) -> int:
    reason = netns_unavailable()
    if reason is not None:
        say(f"--netns: {reason}")
        return EXIT_NO_NETNS
    unshare = shutil.which("unshare") or "unshare"
    with tempfile.TemporaryDirectory(prefix="helios-mock-netns-") as scratch:
        started = Path(scratch) / "started"  # the inner runner creates it: the namespace was made
        inner = [sys.executable, "-m", "mock_server", "run", f"--inside-netns={started}", *opts.rerun_argv]
        argv = [
            unshare,
            "-rn",
            "--pid",
            "--fork",
            "--kill-child",
            "sh",
            "-c",
            _NETNS_SETUP,
            "netns-sh",
            *inner,
        ]
        try:
            proc = subprocess.Popen(argv, process_group=0)
        except OSError as exc:
            say(f"--netns: cannot start unshare: {exc}")
            return EXIT_NO_NETNS
        with _forwarding_signals(proc.pid):
            rc = proc.wait()
        if rc != 0 and not started.exists():
            say(
                "--netns: could not create the network namespace (unprivileged user namespaces disabled? "
                "on Ubuntu 24.04+: sysctl kernel.apparmor_restrict_unprivileged_userns=0)"
            )
            return EXIT_NO_NETNS
    return _status(rc)


def _warn_if_loopback_only() -> None:
    """libwebrtc gathers no loopback candidates: on a loopback-only host its clients time out. Say so."""
    try:
        import ifaddr  # aioice's own interface lister (installed with aiortc)

        addresses = [ip.ip for adapter in ifaddr.get_adapters() for ip in adapter.ips]
    except (ImportError, OSError):
        return
    non_loopback = [a for a in addresses if isinstance(a, str) and not a.startswith("127.")]
    if not non_loopback:
        say(
            "warning: this host has only loopback addresses; libwebrtc clients (browsers, @roamhq/wrtc, "
            "reactor-sdk) gather no loopback ICE candidates and will time out — add --netns"
        )


# ---------------------------------------------------------------------- here


def _run_here(opts: RunOptions) -> int:
    token = opts.admin_token or os.environ.get("HELIOS_MOCK_ADMIN_TOKEN") or None
    log_path = opts.server_log or Path(tempfile.mkdtemp(prefix="helios-mock-run-")) / "server.log"
    with _mock(opts, log_path) as mock:
        if mock.error is not None:
            say(f"the mock did not come up: {mock.error}; its log: {log_path}")
            _print_tail(log_path)
            return EXIT_MOCK_DOWN
        say(f"mock at {mock.url} (log {log_path}); running: {' '.join(opts.command)}")
        env = dict(os.environ, HELIOS_MOCK_URL=mock.url)
        if token:
            env["HELIOS_MOCK_ADMIN_TOKEN"] = token
        rc = _run_command(opts.command, env)
        try:
            verdict = fetch_violations(mock.local_url, token, opts.ignore, opts.ping_tolerance)
        except (OSError, ValueError) as exc:
            say(f"could not fetch the violations from {mock.local_url}/admin/violations: {exc}")
            return rc or EXIT_NO_VERDICT
    violations = verdict.get("violations", [])
    print_violations(violations)
    return _final_status(rc, len(violations), opts.strict)


def _final_status(rc: int, violations: int, strict: bool) -> int:
    if rc != 0:
        say(f"the command failed with exit status {rc}")
        return rc
    if strict and violations:
        say(f"--strict: {violations} client-rule violation(s); exit status {EXIT_VIOLATIONS}")
        return EXIT_VIOLATIONS
    return 0


@dataclass
class _Mock:
    url: str = ""  # what COMMAND uses
    local_url: str = ""  # what this runner uses (loopback)
    error: str | None = None


@contextmanager
def _mock(opts: RunOptions, log_path: Path) -> Iterator[_Mock]:
    """A started mock (or one whose `error` says why not); stopped on leaving, whatever happened."""
    host = "0.0.0.0" if opts.netns else "127.0.0.1"  # inside the namespace: lo for us, v0 for the client
    argv = [sys.executable, "-m", "mock_server", "serve", "--host", host, "--port", "0", *opts.serve_argv]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # a Ctrl-C at the terminal is for COMMAND; the runner stops the mock
        )
        try:
            yield _start(proc, log, opts)
        finally:
            _stop(proc)


def _start(proc: subprocess.Popen[str], log: IO[str], opts: RunOptions) -> _Mock:
    assert proc.stdout is not None
    found: dict[str, int] = {}
    ready = threading.Event()

    def copy() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            log.flush()
            match = _BANNER_PORT.search(line)
            if match and "port" not in found:
                found["port"] = int(match.group(1))
                ready.set()
        ready.set()

    threading.Thread(target=copy, daemon=True).start()
    if not ready.wait(opts.health_timeout) or "port" not in found:
        return _Mock(error=f"no start-up banner within {opts.health_timeout:g} s (exit {proc.poll()})")
    port = found["port"]
    mock = _Mock(url=f"http://127.0.0.1:{port}", local_url=f"http://127.0.0.1:{port}")
    if opts.host_given:
        mock.url = mock.local_url = _banner_url(opts.serve_argv, port)
    elif opts.netns:
        mock.url = f"http://{NS_ADDRESS}:{port}"
    mock.error = _wait_health(mock.local_url, proc, opts.health_timeout)
    return mock


def _banner_url(serve_argv: Sequence[str], port: int) -> str:
    """The URL for an explicit --host (a wildcard host is reached over loopback)."""
    host = "127.0.0.1"
    for i, arg in enumerate(serve_argv):
        if arg == "--host" and i + 1 < len(serve_argv):
            host = serve_argv[i + 1]
        elif arg.startswith("--host="):
            host = arg.split("=", 1)[1]
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _wait_health(base: str, proc: subprocess.Popen[str], timeout: float) -> str | None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"it exited with status {proc.returncode}"
        try:
            status, _ = _http_get(f"{base}/health", None, timeout=2.0)
            if status == 200:
                return None
            last = f"HTTP {status}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.1)
    return f"GET /health did not answer 200 within {timeout:g} s ({last})"


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=STOP_GRACE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _print_tail(path: Path, lines: int = 20) -> None:
    try:
        tail = path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
    except OSError:
        return
    for line in tail:
        print(f"  | {line}", file=sys.stderr)


# ---------------------------------------------------------------------- the command


def _run_command(command: list[str], env: dict[str, str]) -> int:
    """COMMAND in its own process group (so its whole tree gets forwarded signals); its exit status."""
    try:
        child = subprocess.Popen(command, env=env, process_group=0)
    except OSError as exc:
        say(f"cannot start {command[0]!r}: {exc}")
        return EXIT_NOT_STARTED
    with _forwarding_signals(child.pid):
        return _status(child.wait())


@contextmanager
def _forwarding_signals(pgid: int) -> Iterator[None]:
    """While inside: SIGINT / SIGTERM / SIGHUP sent to this runner go to the process group `pgid`."""

    def forward(signum: int, _frame: Any) -> None:
        try:
            os.killpg(pgid, signum)
        except ProcessLookupError:
            pass

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _status(returncode: int) -> int:
    """A shell's view of an exit: 128+N for death by signal N."""
    return 128 - returncode if returncode < 0 else returncode


# ---------------------------------------------------------------------- the verdict


def _http_get(url: str, token: str | None, timeout: float) -> tuple[int, bytes]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via a proxy
    request = urllib.request.Request(url, headers={"X-Helios-Admin-Token": token} if token else {})
    try:
        with opener.open(request, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


def fetch_violations(
    base: str, token: str | None, ignore: Sequence[str] = (), ping_tolerance: float | None = None
) -> dict[str, Any]:
    """`GET /admin/violations` of the mock at `base` (ValueError on a non-200 answer)."""
    query: list[tuple[str, str]] = [("ignore", rule) for rule in ignore]
    if ping_tolerance is not None:
        query.append(("ping_tolerance", f"{ping_tolerance:g}"))
    url = f"{base}/admin/violations" + (f"?{urllib.parse.urlencode(query)}" if query else "")
    status, body = _http_get(url, token, timeout=30.0)
    if status != 200:
        raise ValueError(f"HTTP {status}: {body[:300].decode('utf-8', 'replace')}")
    result: dict[str, Any] = json.loads(body)
    return result


def print_violations(violations: Sequence[dict[str, Any]]) -> None:
    """One block per violation: rule id, explanation, where, the rule's text and the offending entry."""
    if not violations:
        say("no client-rule violations recorded")
        return
    say(f"{len(violations)} client-rule violation(s) recorded:")
    for v in violations:
        entry = v.get("entry") or {}
        where = [f"session {v['session_id']}"] if v.get("session_id") else []
        if entry.get("connection_id") is not None:
            where.append(f"connection {entry['connection_id']}")
        if isinstance(entry.get("t"), int | float):
            where.append(f"t={entry['t']:g}s")
        print(f"  [{v['rule_id']}] {v['explanation']} ({', '.join(where) or 'no session'})", file=sys.stderr)
        if v.get("rule"):
            print(f"      rule: {v['rule']}", file=sys.stderr)
        if entry:
            print(f"      entry: {json.dumps(entry, sort_keys=True)[:400]}", file=sys.stderr)

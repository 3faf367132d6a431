"""`helios-mock run [serve options] [--netns] [--strict] -- COMMAND`: a fresh mock for one command, the
client-rule verdict printed after it, exit statuses, signal forwarding and clean-up; then real client suites
inside a network namespace: a node:test suite with the published JS SDK 2.9.0 and the JS harness
(tests/js_harness), and a pytest project with the published reactor-sdk (tests/py_harness)."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from mock_server.run import EXIT_NOT_STARTED, EXIT_VIOLATIONS, NS_ADDRESS, netns_unavailable

REPO = Path(__file__).resolve().parent.parent
JS_HARNESS = REPO / "tests" / "js_harness"
PY_HARNESS = REPO / "tests" / "py_harness"
FAST = ["--speed", "4", "--resolution", "160x96"]
BAD_UPLOAD = (  # a request the mock answers 4xx: the http-error client rule, no WebRTC needed
    "import json, os, urllib.request as u\n"
    "base = os.environ['HELIOS_MOCK_URL']\n"
    "post = lambda path, body: u.Request(base + path, json.dumps(body).encode(), "
    "{'Content-Type': 'application/json'})\n"
    "u.urlopen(post('/start_session', {}))\n"
    "bad = {'name': 'x.png', 'size': 0, 'mime_type': 'image/png'}\n"
    "try: u.urlopen(post('/sessions/local/uploads', bad))\n"
    "except u.HTTPError as e: print('answered', e.code)\n"
)


def _env() -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if "proxy" not in k.lower() and not k.startswith("HELIOS_MOCK")
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def helios_run(*args: str, cwd: Path = REPO, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "mock_server", "run", *args]
    return subprocess.run(argv, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)


def _context(proc: subprocess.CompletedProcess[str]) -> str:
    out, err = proc.stdout[-3000:], proc.stderr[-3000:]
    return f"\n--- exit {proc.returncode}\n--- stdout:\n{out}\n--- stderr:\n{err}"


# ---------------------------------------------------------------------- on loopback, no WebRTC


def test_command_sees_the_mock_and_a_clean_run_exits_0() -> None:
    check = (
        "import os, urllib.request as u; print(u.urlopen(os.environ['HELIOS_MOCK_URL'] + '/health').status)"
    )
    proc = helios_run("--", sys.executable, "-c", check)
    assert proc.returncode == 0, _context(proc)
    assert proc.stdout.strip() == "200"
    assert "mock at http://127.0.0.1:" in proc.stderr
    assert "no client-rule violations recorded" in proc.stderr


def test_command_failure_is_the_exit_status() -> None:
    proc = helios_run("--", sys.executable, "-c", "import sys; sys.exit(7)")
    assert proc.returncode == 7, _context(proc)
    assert "the command failed with exit status 7" in proc.stderr


def test_missing_command_and_no_command() -> None:
    proc = helios_run("--", "no-such-program-helios")
    assert proc.returncode == EXIT_NOT_STARTED and "cannot start 'no-such-program-helios'" in proc.stderr
    proc = helios_run("--strict")
    assert proc.returncode == 2 and "no command given" in proc.stderr


def test_violations_are_printed_and_strict_fails() -> None:
    lenient = helios_run("--", sys.executable, "-c", BAD_UPLOAD)
    assert lenient.returncode == 0, _context(lenient)
    assert "answered 4" in lenient.stdout
    assert "1 client-rule violation(s) recorded" in lenient.stderr
    assert "[http-error] POST /sessions/local/uploads was answered 4" in lenient.stderr
    assert "(session local, connection" not in lenient.stderr and "session local" in lenient.stderr
    assert "rule: an HTTP call the server answered with a 4xx status" in lenient.stderr
    assert '"kind": "POST /sessions/local/uploads"' in lenient.stderr  # the offending entry

    strict = helios_run("--strict", "--", sys.executable, "-c", BAD_UPLOAD)
    assert strict.returncode == EXIT_VIOLATIONS, _context(strict)
    assert "--strict: 1 client-rule violation(s); exit status 3" in strict.stderr
    ignored = helios_run("--strict", "--ignore", "http-error", "--", sys.executable, "-c", BAD_UPLOAD)
    assert ignored.returncode == 0, _context(ignored)
    assert "no client-rule violations recorded" in ignored.stderr


def test_admin_token_is_exported_and_used() -> None:
    check = (
        "import os, urllib.request as u, urllib.error as e\n"
        "base, token = os.environ['HELIOS_MOCK_URL'], os.environ['HELIOS_MOCK_ADMIN_TOKEN']\n"
        "try: u.urlopen(base + '/admin/violations')\n"
        "except e.HTTPError as err: print('without', err.code)\n"
        "req = u.Request(base + '/admin/violations', headers={'X-Helios-Admin-Token': token})\n"
        "print('with', u.urlopen(req).status, token)\n"
    )
    proc = helios_run("--admin-token", "s3cret-admin", "--", sys.executable, "-c", check)
    assert proc.returncode == 0, _context(proc)
    assert proc.stdout.split() == ["without", "401", "with", "200", "s3cret-admin"]
    assert "no client-rule violations recorded" in proc.stderr  # the runner itself sent the token


def test_bad_serve_option_is_refused_before_anything_starts() -> None:
    proc = helios_run("--resolution", "10x10", "--", "true")
    assert proc.returncode == 2 and "--resolution 10x10" in proc.stderr, _context(proc)


def test_sigint_reaches_the_command_and_the_mock_is_stopped(tmp_path: Path) -> None:
    flag = tmp_path / "url"
    child = (
        "import os, signal, sys, time\n"
        "def stop(*_):\n"
        f"    open({str(tmp_path / 'got-sigint')!r}, 'w').close(); sys.exit(0)\n"
        "signal.signal(signal.SIGINT, stop)\n"
        f"open({str(flag)!r}, 'w').write(os.environ['HELIOS_MOCK_URL'])\n"
        "time.sleep(60)\n"
    )
    argv = [sys.executable, "-m", "mock_server", "run", "--", sys.executable, "-c", child]
    runner = subprocess.Popen(argv, cwd=REPO, env=_env(), stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (flag.exists() and flag.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        url = flag.read_text()
        runner.send_signal(signal.SIGINT)
        _, stderr = runner.communicate(timeout=60)
    finally:
        if runner.poll() is None:
            runner.kill()
    assert (tmp_path / "got-sigint").exists(), stderr
    assert runner.returncode == 0, stderr
    assert "no client-rule violations recorded" in stderr  # the verdict still came after the interrupt
    with pytest.raises(OSError):
        urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url + "/health", timeout=2)


# ---------------------------------------------------------------------- real clients in a namespace


def _require_netns() -> None:
    reason = netns_unavailable()
    if reason is None:
        probe = subprocess.run(["unshare", "-rn", "--pid", "--fork", "true"], capture_output=True, timeout=20)
        reason = None if probe.returncode == 0 else f"unshare -rn --pid --fork fails: {probe.stderr!r}"
    if reason is not None:
        pytest.skip(reason)


def _ensure_js_harness() -> None:
    """`npm ci` in tests/js_harness when node_modules is missing or older than package-lock.json."""
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        pytest.skip("node and npm are needed for the JS harness suite")
    lock_hash = hashlib.sha256((JS_HARNESS / "package-lock.json").read_bytes()).hexdigest()
    stamp = JS_HARNESS / "node_modules" / ".helios-lock.sha256"
    lock_path = Path(tempfile.gettempdir()) / f"helios-js-harness-{lock_hash[:12]}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists() and stamp.read_text().strip() == lock_hash:
            return
        proc = subprocess.run(
            [npm, "ci", "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=JS_HARNESS,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, f"npm ci in {JS_HARNESS} failed:\n{(proc.stdout + proc.stderr)[-3000:]}"
        stamp.write_text(lock_hash + "\n")


@pytest.mark.e2e
def test_netns_url_is_the_namespace_address() -> None:
    _require_netns()
    show = "import os; print(os.environ['HELIOS_MOCK_URL'])"
    proc = helios_run("--netns", "--", sys.executable, "-c", show)
    assert proc.returncode == 0, _context(proc)
    assert proc.stdout.strip().startswith(f"http://{NS_ADDRESS}:")


@pytest.mark.e2e
def test_js_sdk_suite_passes_under_netns() -> None:
    _require_netns()
    _ensure_js_harness()
    proc = helios_run("--netns", "--strict", *FAST, "--", "npm", "test", cwd=JS_HARNESS, timeout=300)
    assert proc.returncode == 0, _context(proc)
    assert "# pass 1" in proc.stdout and "# fail 0" in proc.stdout, _context(proc)
    assert f"mock at http://{NS_ADDRESS}:" in proc.stderr
    assert "no client-rule violations recorded" in proc.stderr


@pytest.mark.e2e
def test_js_deliberate_violation_fails_with_strict() -> None:
    _require_netns()
    _ensure_js_harness()
    cmd = ["node", "--test", "deliberate/"]
    proc = helios_run("--netns", "--strict", *FAST, "--", *cmd, cwd=JS_HARNESS, timeout=300)
    assert proc.returncode == EXIT_VIOLATIONS, _context(proc)
    assert "# pass 1" in proc.stdout, _context(proc)  # the test itself passed: only the verdict fails
    assert "[start-without-prompt] start sent with no prompt scheduled at chunk 0" in proc.stderr
    assert "rule: start sent while no prompt is scheduled at chunk 0" in proc.stderr


@pytest.mark.e2e
def test_python_sdk_project_passes_under_netns() -> None:
    _require_netns()
    pytest.importorskip("reactor_sdk")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    proc = helios_run("--netns", "--strict", *FAST, "--", *cmd, cwd=PY_HARNESS, timeout=300)
    assert proc.returncode == 0, _context(proc)
    assert "1 passed" in proc.stdout and "no client-rule violations recorded" in proc.stderr

"""Run commands inside a fresh, unprivileged network namespace (docs/CLIENTS.md §1).

The namespace has ``lo`` up and a veth pair ``v0``/``v1`` with ``198.18.0.1/24`` on ``v0`` (both ends up): one
non-loopback address that every WebRTC stack gathers, in a range that is never routed. Nothing started inside
can reach anything outside; leaving the command destroys the namespace and its interfaces.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from prereq import missing_prerequisite

NS_ADDRESS = "198.18.0.1"
NS_PREFIX = 24

_SETUP = (
    "set -e; "
    "ip link set lo up; "
    "ip link add v0 type veth peer name v1; "
    f"ip addr add {NS_ADDRESS}/{NS_PREFIX} dev v0; "
    "ip link set v0 up; "
    "ip link set v1 up; "
    # A default route via v0 (inside the namespace only; nothing is beyond it) makes Chromium offer its
    # 198.18.0.1 host candidate instead of relying on peer-reflexive discovery.
    "ip route add default dev v0; "
    'exec "$@"'
)


def netns_argv(argv: Sequence[str]) -> list[str]:
    """The command line that runs ``argv`` inside a new namespace set up as above."""
    unshare = shutil.which("unshare") or "unshare"
    return [unshare, "-rn", "sh", "-c", _SETUP, "netns-sh", *argv]


@functools.cache
def unavailable_reason() -> str | None:
    """Why namespaces cannot be used here, or None when they work (probed once per process)."""
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            return f"'{tool}' is not installed (util-linux / iproute2 needed for the network namespace)"
    try:
        probe = subprocess.run(
            netns_argv(["ip", "-o", "-4", "addr", "show", "dev", "v0"]),
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot create a network namespace: {exc}"
    if probe.returncode != 0:
        detail = (probe.stderr or probe.stdout).strip().splitlines()
        return "cannot create a network namespace with unshare -rn (user namespaces disabled?): " + (
            detail[-1] if detail else f"exit {probe.returncode}"
        )
    if f"{NS_ADDRESS}/{NS_PREFIX}" not in probe.stdout:
        return f"namespace probe did not show {NS_ADDRESS} on v0: {probe.stdout.strip()!r}"
    return None


def require_netns() -> None:
    """pytest.skip with the reason when a namespace cannot be created."""
    reason = unavailable_reason()
    if reason is not None:
        missing_prerequisite(reason)


def run_in_netns(
    argv: Sequence[str],
    *,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 300.0,
    stdout_path: Path | None = None,
    stderr_path: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` inside a fresh namespace and wait for it.

    Output goes to the given files (then the result's stdout/stderr hold their text) or is captured.
    On timeout the whole namespace is torn down (killing ``unshare`` ends every process inside only if they
    exit with it, so the process group is killed) and ``subprocess.TimeoutExpired`` propagates.
    """
    require_netns()
    out = open(stdout_path, "w") if stdout_path else None
    err = open(stderr_path, "w") if stderr_path else None
    try:
        proc = subprocess.Popen(
            netns_argv(argv),
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdout=out or subprocess.PIPE,
            stderr=err or subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.communicate()
            raise
    finally:
        for handle in (out, err):
            if handle is not None:
                handle.close()
    if stdout_path:
        stdout = stdout_path.read_text(errors="replace")
    if stderr_path:
        stderr = stderr_path.read_text(errors="replace")
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout or "", stderr or "")


def _kill_group(proc: subprocess.Popen[str]) -> None:
    """Kill the process group this module started (only ours: it has its own session)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass

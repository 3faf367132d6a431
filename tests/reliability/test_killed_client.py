"""A client killed with SIGKILL mid-session: the server reclaims the session after the watchdog and grace.

The server runs with ``--ping-timeout 1 --reconnect-grace 1``; the client (a subprocess running a
``WireClient`` session that generates video and pings) is killed without a word. Within the ping timeout,
the grace and a margin, the session must be closed with a reason, no session may stay live in
``GET /admin/record``, ``GET /health`` must say ``available`` again, and the server's RSS is reported.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from conformance.server import HeliosServer

PING_TIMEOUT = 1.0
GRACE = 1.0
MARGIN = 8.0  # the watchdog ticks every ~0.25 s here; closing a peer takes well under a second
CLIENT = Path(__file__).with_name("killed_client.py")


@pytest.fixture
def short_grace_server(tmp_path: Path) -> Iterator[HeliosServer]:
    server = HeliosServer.start(
        speed=20,
        extra=["--ping-timeout", str(PING_TIMEOUT), "--reconnect-grace", str(GRACE), "--log-level", "info"],
        log_path=tmp_path / "server.log",
    )
    yield server
    server.stop()


def _live(url: str) -> tuple[list[dict], str]:
    record = httpx.get(url + "/admin/record", timeout=10).json()
    health = httpx.get(url + "/health", timeout=10).json()["state"]
    return [s for s in record["sessions"] if not s["closed"]], health


@pytest.mark.parametrize(("wire", "mode"), [("v0", "local"), ("v1", "production")])
def test_killed_client_session_is_reclaimed(
    short_grace_server: HeliosServer, wire: str, mode: str, figures: list[str]
) -> None:
    server = short_grace_server
    assert server.process is not None
    rss = psutil.Process(server.process.pid)
    before = rss.memory_info().rss / 2**20
    client = subprocess.Popen(
        [sys.executable, str(CLIENT), server.url, wire, mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )
    try:
        assert client.stdout is not None
        ready, _, _ = select.select([client.stdout], [], [], 60)  # the client connects and starts
        line = client.stdout.readline() if ready else ""
        assert line.startswith("READY "), f"the client never got going: {line!r}"
        session_id = line.split()[1]
        live, health = _live(server.url)
        assert [s["session_id"] for s in live] == [session_id] and health == "serving"
        during = rss.memory_info().rss / 2**20
        client.send_signal(signal.SIGKILL)
        client.wait(timeout=10)
        killed_at = time.monotonic()
        deadline = killed_at + PING_TIMEOUT + GRACE + MARGIN
        while time.monotonic() < deadline:
            live, health = _live(server.url)
            if not live and health == "available":
                break
            time.sleep(0.2)
        reclaimed_after = time.monotonic() - killed_at
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    after = rss.memory_info().rss / 2**20
    record = httpx.get(server.url + "/admin/record", timeout=10).json()
    session = next(s for s in record["sessions"] if s["session_id"] == session_id)
    line = (
        f"killed client ({wire}, {mode}): session reclaimed after {reclaimed_after:.1f} s "
        f"(ping timeout {PING_TIMEOUT:g} s + grace {GRACE:g} s); server RSS {before:.1f} -> {during:.1f} "
        f"(live) -> {after:.1f} MB; close reason {session['close_reason']!r}"
    )
    figures.append(line)
    print(line)
    assert not live, (
        f"sessions still live {MARGIN:g} s past watchdog + grace: {[s['session_id'] for s in live]}"
    )
    assert health == "available", f"GET /health says {health!r} after the session was reclaimed"
    assert session["closed"] and session["close_reason"], session

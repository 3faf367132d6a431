"""End-to-end in a real browser: Debian's headless Chromium plays a clip's HLS playlist with hls.js.

A raw wire client (loopback) generates a few chunks and asks for a clip; once the playlist answers 200, a page
served from another loopback origin plays it with hls.js (tests/js, npm) through Media Source Extensions, and
grabs frames from the <video> element (tests/browser/play_clip.cjs). No WebRTC is involved, so no namespace.
The grabbed frames' marker bands must decode to chunks and frames of the clip's window, in playback order.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from jsclient import REPO, ensure_node_modules
from PIL import Image
from prereq import missing_prerequisite

sys.path.insert(0, str(REPO / "tests"))
from clip_tools import fetch_clip  # noqa: E402

from conformance.server import HeliosServer  # noqa: E402
from mock_server.media.markers import decode_markers  # noqa: E402

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
PLAY_CLIP = REPO / "tests" / "browser" / "play_clip.cjs"
CHUNK_S = 33 / 24


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HeliosServer]:
    log = tmp_path_factory.mktemp("browser-clips") / "server.log"
    started = HeliosServer.start(speed=4, resolution="160x96", log_path=log)
    try:
        yield started
    finally:
        started.stop()


async def _clip(server: HeliosServer) -> dict[str, float | str]:
    async with server.client(wire="v0") as client:
        client.send_command("set_prompt", {"prompt": "a tram crossing a bridge at night"})
        client.send_command("start")
        await client.wait_message("chunk_complete", lambda d: d["chunk_index"] >= 4, timeout=30)
        mark = len(client.received)
        request = {"type": "requestClip", "data": {"duration_seconds": 4}}
        client.send_raw("data", json.dumps({"scope": "runtime", "data": request}))

        def reply() -> list[dict[str, float | str]]:
            return [r.data for r in client.received[mark:] if r.scope == "runtime" and r.type == "clipReady"]

        await client._wait(lambda: bool(reply()), 10, "clipReady")
        ready = reply()[0]
        await asyncio.to_thread(fetch_clip, str(ready["playlist_url"]))  # 202s until the last chunk is out
    return ready


def test_hls_js_plays_a_clip_in_chromium(server: HeliosServer, tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        missing_prerequisite(f"{CHROMIUM} is missing (Debian package 'chromium') for the browser test")
    ensure_node_modules()
    ready = asyncio.run(_clip(server))
    first = round(float(ready["start_marker"]) / CHUNK_S)
    last = round(float(ready["end_marker"]) / CHUNK_S) - 1
    node = shutil.which("node") or "node"
    proc = subprocess.run(
        [node, str(PLAY_CLIP), "--out-dir", str(tmp_path), "--playlist", str(ready["playlist_url"])],
        capture_output=True,
        text=True,
        timeout=90,
    )
    results = json.loads((tmp_path / "results.json").read_text())
    assert proc.returncode == 0, (proc.stderr[-2000:], results.get("error"), results.get("console"))
    page = results["page"]
    assert page["supported"] and page["ended"] == "ended", page
    assert not [e for e in page["errors"] if "fatal" in e], page["errors"]
    assert all(r["acao"] == "*" for r in results["requests"] if "/clips" in r["url"]), results["requests"]
    markers = []
    for grab in page["grabs"]:
        found = decode_markers(np.asarray(Image.open(tmp_path / "grabs" / grab["file"]).convert("RGB")))
        if found is not None:  # a grab can catch a frame mid-update; the band then does not decode
            markers.append((found.chunk, found.frame))
    assert len(markers) >= 0.8 * len(page["grabs"]) >= 8, (markers, len(page["grabs"]))
    window = {(c, f) for c in range(first, last + 1) for f in range(33)}
    assert set(markers) <= window, (markers, first, last)
    assert markers == sorted(markers), markers
    assert {c for c, _ in markers} == set(range(first, last + 1)), (markers, first, last)

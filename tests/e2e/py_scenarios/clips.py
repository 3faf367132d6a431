"""Python SDK clips (issue 11): request_clip / request_recording / download against the mock.

Usage (inside ns_scenario.py)::

    python clips.py --out DIR --mode local|production [--speed 4] [--expect-off]

With recording on: generate a few chunks, ``request_clip(4)`` while a chunk is generating, download it with
the SDK (it waits out the 202s itself), decode the bytes with PyAV and log the marker band of every frame;
then ``request_recording()`` the same way; then ``request_clip`` with invalid durations. With
``--expect-off`` (server started with ``--recording off``): ``request_clip`` must raise
``RecorderDisabledError``. Facts go to results.json for tests/e2e/test_python_sdk_clips.py.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import math
import sys
import time
from pathlib import Path
from typing import Any

import av
from common import Recorder, ScenarioFailed, api_url
from reactor_sdk import Reactor, ReactorError

from mock_server.media.markers import decode_markers

PROMPT = "A paper boat drifting down a rain gutter"


def decoded(data: bytes) -> list[list[Any]]:
    """[width, height, [chunk, frame] or None] of every frame PyAV decodes from the downloaded bytes."""
    frames: list[list[Any]] = []
    with av.open(io.BytesIO(data)) as container:
        for frame in container.decode(video=0):
            m = decode_markers(frame.to_ndarray(format="rgb24"))
            frames.append([frame.width, frame.height, None if m is None else [m.chunk, m.frame]])
    return frames


async def fetch(rec: Recorder, reactor: Reactor, step: str, ask: Any) -> dict[str, Any]:
    """Ask for a clip, download it with the SDK, decode it; the clip's fields, timings and frames."""

    async def action() -> dict[str, Any]:
        asked = time.monotonic()
        clip = await ask()
        answered = time.monotonic()
        data = await reactor.download(clip)
        done = time.monotonic()
        return {
            "clip": {k: getattr(clip, k) for k in clip.__dataclass_fields__},
            "reply_ms": round((answered - asked) * 1000, 1),
            "download_ms": round((done - answered) * 1000, 1),
            "bytes": len(data),
            "frames": await asyncio.to_thread(decoded, data),
        }

    result = await rec.step(step, action)
    rec.timing(f"{step}_request_to_bytes_ms", result["reply_ms"] + result["download_ms"])
    return result


async def refused(rec: Recorder, step: str, ask: Any) -> dict[str, Any]:
    async def action() -> dict[str, Any]:
        try:
            clip = await ask()
        except ReactorError as exc:
            return {"class": type(exc).__name__, "code": exc.code, "message": exc.message}
        raise ScenarioFailed(f"{step}: got a clip instead of an error: {clip}")

    return dict(await rec.step(step, action))


async def run(rec: Recorder, args: argparse.Namespace, facts: dict[str, Any]) -> None:
    url = api_url()
    if args.mode == "local":
        reactor = Reactor("helios", local=True, api_url=url)
    else:
        reactor = Reactor("helios", jwt="e2e-clips", api_url=url)
    rec.attach(reactor)
    try:
        await rec.step("connect", reactor.connect)
        await rec.wait_message("state")
        await rec.command("set_prompt", reactor, "set_prompt", {"prompt": PROMPT})
        await rec.command("start", reactor, "start", {})
        if args.expect_off:
            facts["off"] = await refused(rec, "clip_off", lambda: reactor.request_clip(4))
            return
        await rec.wait_message("chunk_complete", {"chunk_index": 3}, timeout=30)
        # mid-chunk: the window's last chunk is still generating when the request arrives
        await asyncio.sleep(0.4 * 33 / (24 * args.speed))
        facts["clip"] = await fetch(rec, reactor, "clip", lambda: reactor.request_clip(4))
        facts["recording"] = await fetch(rec, reactor, "recording", reactor.request_recording)
        facts["invalid"] = {
            str(bad): await refused(rec, f"clip_invalid_{bad}", lambda bad=bad: reactor.request_clip(bad))
            for bad in (0.0, -2.0, math.inf)
        }
        facts["session_id"] = reactor.session_id
    finally:
        await asyncio.wait_for(reactor.disconnect(), timeout=10)
        reactor.close()


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--mode", choices=("local", "production"), required=True)
    parser.add_argument("--speed", type=float, default=4.0)
    parser.add_argument("--expect-off", action="store_true")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    rec = Recorder(Path(args.out), f"py-clips-{args.mode}")
    facts: dict[str, Any] = {"mode": args.mode}
    error: BaseException | None = None
    try:
        await asyncio.wait_for(run(rec, args, facts), timeout=args.timeout)
    except Exception as exc:
        error = exc
    return rec.finish(error, {"facts": facts})


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

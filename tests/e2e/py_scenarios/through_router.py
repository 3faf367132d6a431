"""Python SDK sessions through a router in front of two instances (tests/multi_instance.py runs this).

Usage (inside the namespace, by ``python tests/multi_instance.py … -- python through_router.py …``)::

    python through_router.py --out DIR --api-url http://127.0.0.1:<router>

An API key mints one token (POST /tokens through the router: whichever instance answers, the shared secret
makes it valid on both). Two published-SDK clients then run concurrently in production mode with that
token: connect, upload an image (the presigned URL points back at the router), set_prompt, set_image,
start, receive frames showing the prompt, disconnect. Each client's files go to ``DIR/client-<n>/`` (see
common.Recorder); ``DIR/results.json`` lists both clients' session ids and outcomes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import urllib.request
from pathlib import Path
from typing import Any

from common import Recorder, ScenarioFailed, png_bytes
from reactor_sdk import Reactor

from mock_server.media.markers import prompt_id

PROMPT = "Two lighthouses, one router"
API_KEY = "rk_e2e_router"
FRAMES = 10  # frames showing the prompt each client waits for


def mint(url: str) -> str:
    """POST /tokens with the API key, never through a proxy."""
    request = urllib.request.Request(f"{url}/tokens", data=b"{}", method="POST")
    request.add_header("Content-Type", "application/json")
    request.add_header("Reactor-API-Key", API_KEY)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=10) as resp:
        return str(json.loads(resp.read())["jwt"])


async def one_client(rec: Recorder, url: str, token: str) -> dict[str, Any]:
    """One production session through the router; returns what the test checks against the records."""
    reactor = Reactor("helios", jwt=token, api_url=url)
    rec.attach(reactor)
    facts: dict[str, Any] = {}
    try:
        await rec.step("connect", reactor.connect)
        facts["session_id"] = reactor.session_id
        rec.require(reactor.status.value == "ready", f"status after connect(): {reactor.status.value}")
        ref = await rec.step(
            "upload", lambda: reactor.upload_file(png_bytes(), name="ref.png", mime_type="image/png")
        )
        facts["upload_id"] = ref.upload_id
        await rec.command("set_prompt", reactor, "set_prompt", {"prompt": PROMPT})
        await rec.command("set_image", reactor, "set_image", {"image": ref})
        t_start = rec.now_ms()
        await rec.command("start", reactor, "start", {})
        wanted = prompt_id(PROMPT)
        await rec.wait_for(
            lambda: (
                sum(1 for f in rec.frames_since(t_start) if f[3] is not None and f[3][2] == wanted) >= FRAMES
            ),
            30.0,
            f"{FRAMES} frames showing the prompt",
        )
        facts["frames"] = len(rec.frames)
    finally:
        await asyncio.wait_for(reactor.disconnect(), timeout=10)
        reactor.close()
    return facts


async def client_run(out: Path, n: int, url: str, token: str) -> dict[str, Any]:
    rec = Recorder(out / f"client-{n}", f"py-router-{n}")
    facts: dict[str, Any] = {}
    error: BaseException | None = None
    try:
        facts = await one_client(rec, url, token)
    except Exception as exc:
        error = exc
    code = rec.finish(error, {"facts": facts})
    return {"ok": code == 0, "failures": rec.failures, **facts}


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--api-url", required=True)
    parser.add_argument("--timeout", type=float, default=90.0)
    args = parser.parse_args()
    url = args.api_url.rstrip("/")
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        token = mint(url)
        runs = await asyncio.wait_for(
            asyncio.gather(*(client_run(args.out, n, url, token) for n in (1, 2))), timeout=args.timeout
        )
    except (OSError, ValueError, KeyError, TimeoutError, ScenarioFailed) as exc:
        runs = [{"ok": False, "failures": [f"{type(exc).__name__}: {exc}"]}]
    (args.out / "results.json").write_text(json.dumps({"clients": runs}, indent=1))
    return 0 if all(run["ok"] for run in runs) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

"""Python SDK adopts a production session with a token bound to it (issue 10), and another account cannot.

Usage (inside ns_scenario.py)::

    python bound_token.py --out DIR [--speed 4]

Steps: account A's API key mints an unscoped token, which creates a session (POST /sessions); the same key
mints a second token bound to that session (`authorization_details[0].resources.sessions.bind`); the
published SDK connects with ``Reactor(jwt=<bound token>)`` and ``connect(session_id=sid)``, sets a prompt,
starts and receives frames. Then account B's token is refused: GET /sessions/{sid} answers 403, and the SDK's
``connect(session_id=sid)`` with B's token fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from common import Recorder, ScenarioFailed, api_url
from reactor_sdk import Reactor

PROMPT = "A bound token watches the tide"
KEY_A = "rk_e2e_account_a"
KEY_B = "rk_e2e_account_b"
ALL_MODELS = {"models": {"all": True}}


def call(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """One JSON request, never through a proxy: (status, decoded body or None)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=5) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, json.loads(raw) if raw else None


def mint(url: str, key: str, details: list[dict[str, Any]] | None = None) -> str:
    body = {"authorization_details": details} if details is not None else {}
    status, minted = call("POST", f"{url}/tokens", body, {"Reactor-API-Key": key})
    if status != 200:
        raise ScenarioFailed(f"POST /tokens with {key}: {status} {minted}")
    return str(minted["jwt"])


async def run(rec: Recorder, args: argparse.Namespace, facts: dict[str, Any]) -> None:
    url = api_url()

    async def create() -> dict[str, Any]:
        creator = mint(url, KEY_A)
        session_body = {
            "model": {"name": "helios"},
            "client_info": {"sdk_version": "e2e", "sdk_type": "python"},
            "supported_transports": [{"protocol": "webrtc", "version": "1.0"}],
        }
        status, desc = call("POST", f"{url}/sessions", session_body, {"Authorization": f"Bearer {creator}"})
        if status != 201:
            raise ScenarioFailed(f"POST /sessions: {status} {desc}")
        sid = desc["session_id"]
        bound = mint(
            url, KEY_A, [{"type": "session", "resources": {**ALL_MODELS, "sessions": {"bind": [sid]}}}]
        )
        other = mint(url, KEY_B)
        return {"session_id": sid, "bound": bound, "other": other}

    tokens = await rec.step("create", create)
    sid = tokens["session_id"]
    facts["session_id"] = sid

    reactor = Reactor("helios", jwt=tokens["bound"], api_url=url)
    rec.attach(reactor)
    try:

        async def adopt() -> dict[str, Any]:
            await reactor.connect(session_id=sid)
            return {"session_id": reactor.session_id, "status": reactor.status.value}

        result = await rec.step("adopt", adopt)
        rec.require(result["status"] == "ready", f"status after connect(session_id=sid): {result['status']}")
        rec.expect_equal(result["session_id"], sid, "adopted session id")
        await rec.wait_message("state", save_as="initial_state")
        await rec.command("set_prompt", reactor, "set_prompt", {"prompt": PROMPT})
        t_start = rec.now_ms()
        await rec.command("start", reactor, "start", {})
        await rec.wait_frames(10, t_start, 20.0, "frames on the adopted session")
        facts["frames"] = len(rec.frames)
    finally:
        await asyncio.wait_for(reactor.disconnect(), timeout=10)
        reactor.close()

    async def refused_http() -> dict[str, Any]:
        status, body = call(
            "GET", f"{url}/sessions/{sid}", headers={"Authorization": f"Bearer {tokens['other']}"}
        )
        return {"status": status, "detail": (body or {}).get("detail")}

    http = await rec.step("other_account_http", refused_http)
    rec.expect_equal(http["status"], 403, "GET /sessions/{sid} with another account's token")
    facts["other_account_status"] = http["status"]

    intruder = Reactor("helios", jwt=tokens["other"], api_url=url)
    try:

        async def refused_sdk() -> dict[str, Any]:
            started = time.monotonic()
            try:
                await asyncio.wait_for(intruder.connect(session_id=sid), timeout=20)
            except Exception as exc:  # the SDK's error for a 403
                return {
                    "refused": True,
                    "error": f"{type(exc).__name__}: {exc}",
                    "s": time.monotonic() - started,
                }
            return {"refused": False, "status": intruder.status.value}

        sdk = await rec.step("other_account_sdk", refused_sdk)
        rec.check(sdk["refused"], f"another account's token adopted the session: {sdk}")
        facts["other_account_sdk"] = sdk
    finally:
        try:
            if intruder.status != "disconnected":
                await asyncio.wait_for(intruder.disconnect(), timeout=10)
        finally:
            intruder.close()
    status, desc = call(
        "GET", f"{url}/sessions/{sid}", headers={"Authorization": f"Bearer {tokens['bound']}"}
    )
    rec.check(status == 200 and desc["state"] == "ACTIVE", f"session after the refusal: {status} {desc}")


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--speed", type=float, default=4.0)
    parser.add_argument("--timeout", type=float, default=90.0)
    args = parser.parse_args()
    rec = Recorder(Path(args.out), "py-bound")
    facts: dict[str, Any] = {}
    error: BaseException | None = None
    try:
        await asyncio.wait_for(run(rec, args, facts), timeout=args.timeout)
    except Exception as exc:
        error = exc
    return rec.finish(error, {"facts": facts})


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

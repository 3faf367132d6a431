"""Python SDK half of the mixed session: adopt the local session a JS SDK client started, then share it.

Usage (second client of ns_scenario.py, next to ``node tests/js/driver.cjs``)::

    python mixed_session.py --out DIR [--speed 4] [--js-prompt TEXT] [--js-chunk N]

JS 2.9.0 always creates a new session in connect() (no way to pass an existing session id), so the mixed
session is a local one: JS starts it (POST /start_session, legacy flat signalling, v0 JSON) and this program
adopts it with ``connect(session_id="local")`` (GET /session, a registered connection, v1 protobuf).

Steps: wait until GET /session reports STREAMING (JS is connected); connect; set_prompt (answer only here);
wait for JS's schedule_prompt to show in a ``state`` broadcast; start; save_snapshot (answer only here);
watch chunks 0..5; disconnect, which must not end the session (this client did not create it).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from common import Recorder, ScenarioFailed, api_url, http_json
from reactor_sdk import Reactor

PY_PROMPT = "A python swims through a neon reef"
SNAPSHOT_LABEL = "py-snapshot"
LAST_CHUNK = 5


async def run(rec: Recorder, reactor: Reactor, args: argparse.Namespace, facts: dict[str, Any]) -> None:
    chunk_s = 33 / (24 * args.speed)
    url = api_url()

    def count_session_get(descriptor: dict[str, Any]) -> None:
        """The server records a GET /session under the session only if one runs ("READY" = none yet)."""
        if descriptor.get("state") != "READY":
            facts["own_session_gets"] += 1

    async def js_connected() -> dict[str, Any]:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            descriptor = await asyncio.to_thread(http_json, f"{url}/session")
            count_session_get(descriptor)
            if descriptor.get("state") == "STREAMING":
                return {"descriptor_state": descriptor["state"], "session_id": descriptor.get("session_id")}
            await asyncio.sleep(0.1)
        raise ScenarioFailed("the JS client never connected (GET /session never reported STREAMING)")

    await rec.step("wait_js", js_connected)

    async def connect() -> dict[str, Any]:
        started = time.monotonic()
        await reactor.connect(session_id="local")
        ms = (time.monotonic() - started) * 1000
        rec.timing("connect_to_ready_ms", ms)
        return {
            "connect_to_ready_ms": round(ms, 1),
            "session_id": reactor.session_id,
            "status": reactor.status.value,
        }

    since = len(rec.statuses)
    result = await rec.step("connect", connect)
    rec.require(result["status"] == "ready", f"status after connect(session_id='local'): {result['status']}")
    rec.expect_equal(result["session_id"], "local", "adopted session id")
    await rec.settle_status("ready", since)
    await rec.wait_message("state", save_as="initial_state")

    mark = rec.mark()
    await rec.command("set_prompt", reactor, "set_prompt", {"prompt": PY_PROMPT})
    rec.expect_equal(
        rec.replies["set_prompt"],
        {"type": "prompt_accepted", "data": {"prompt": PY_PROMPT, "chunk": 0}},
        "reply to set_prompt",
    )
    await rec.wait_message("conditions_ready", after=mark)

    # the JS client answers our conditions_ready broadcast with a schedule_prompt of its own
    want = {"0": PY_PROMPT, str(args.js_chunk): args.js_prompt}
    await rec.wait_message(
        "state", {"scheduled_prompts": want}, after=mark, timeout=20, save_as="js_scheduled"
    )
    rec.check(
        len(rec.of_type("conditions_ready", after=mark)) >= 2, "conditions_ready of JS's command not seen"
    )

    mark = rec.mark()
    await rec.command("start", reactor, "start", {})
    rec.expect_equal(rec.replies["start"], None, "reply to start")
    gs = await rec.wait_message("generation_started", after=mark)
    rec.expect_equal(gs["data"], {"prompt": PY_PROMPT, "chunk_index": 0}, "generation_started")

    await rec.command("save_snapshot", reactor, "save_snapshot", {"label": SNAPSHOT_LABEL})
    reply = rec.replies["save_snapshot"]
    rec.check(
        isinstance(reply, dict)
        and reply.get("type") == "snapshot_saved"
        and reply["data"].get("label") == SNAPSHOT_LABEL
        and reply["data"].get("count") == 1,
        f"reply to save_snapshot: {reply}",
    )

    for chunk in range(LAST_CHUNK + 1):
        cc = await rec.wait_message(
            "chunk_complete", {"chunk_index": chunk}, timeout=5 * chunk_s + 10, save_as=f"cc{chunk}"
        )
        want_prompt = args.js_prompt if chunk >= args.js_chunk else PY_PROMPT
        rec.expect_equal(cc["data"]["active_prompt"], want_prompt, f"active_prompt of chunk {chunk}")

    # what the JS client's commands answered must not have reached this connection
    foreign = [m for m in rec.messages if m["type"] == "snapshot_list"]
    foreign += [m for m in rec.of_type("prompt_accepted") if m["data"].get("prompt") == args.js_prompt]
    rec.check(not foreign, f"answers meant for the JS client arrived here: {foreign}")

    async def disconnect() -> dict[str, Any]:
        await reactor.disconnect()
        return {"status": reactor.status.value}

    since = len(rec.statuses)
    result = await rec.step("disconnect", disconnect)
    rec.expect_equal(result["status"], "disconnected", "status after disconnect()")
    await rec.settle_status("disconnected", since)
    after = await asyncio.to_thread(http_json, f"{url}/session")
    count_session_get(after)
    facts["session_state_after_disconnect"] = after.get("state")
    rec.check(
        after.get("state") not in ("READY", "CLOSING"), f"session ended by the adopting client: {after}"
    )
    facts["schedule"] = {0: PY_PROMPT, args.js_chunk: args.js_prompt}


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--speed", type=float, default=4.0)
    parser.add_argument("--js-prompt", default="A jellyfish drifts past a lantern")
    parser.add_argument("--js-chunk", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=90.0)
    args = parser.parse_args()
    rec = Recorder(Path(args.out), "py-mixed")
    reactor = Reactor("helios", local=True, api_url=api_url())
    rec.attach(reactor)
    facts: dict[str, Any] = {
        "py_prompt": PY_PROMPT,
        "js_prompt": args.js_prompt,
        "js_chunk": args.js_chunk,
        "own_session_gets": 0,  # GET /session made by this program itself (not the SDK) while a session ran
    }
    error: BaseException | None = None
    try:
        await asyncio.wait_for(run(rec, reactor, args, facts), timeout=args.timeout)
    except Exception as exc:
        error = exc
    finally:
        try:
            if reactor.status != "disconnected":
                await asyncio.wait_for(reactor.disconnect(), timeout=10)
        except Exception as exc:  # best effort after a failure
            rec.note(f"disconnect after failure: {exc}")
        reactor.close()
    return rec.finish(error, {"facts": facts})


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

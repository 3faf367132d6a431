"""One fault against the published Python SDK (reactor-sdk 1.13.0): what the client shows, and how fast.

Usage (through tests/e2e/ns_scenario.py; the server was started with ``--faults FILE`` arming the fault for
the first session)::

    python fault_run.py --out DIR --kind KIND [--mode production|local] [--speed 4] [--observe 40]

Steps: connect (a creation fault shows here: the error, or how long connect() took); set_prompt + start; wait
for chunk_complete 1 (generation faults are armed at chunk 2, which begins right after it); for command_error
send set_seed and keep the reply or the error; then watch status changes for up to ``--observe`` seconds. For
transport_drop, reconnect() once the status has left ready. facts: the statuses with their times, the time
from chunk_complete 1 to the first status change (``noticed_ms``), errors, runtime messages.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

from common import Recorder, ScenarioFailed, api_url
from reactor_sdk import Reactor

CREATION_KINDS = ("session_refused", "queue_wait", "session_closed")


async def _connect(rec: Recorder, reactor: Reactor, facts: dict[str, Any]) -> bool:
    started = time.monotonic()
    try:
        await reactor.connect()
    except Exception as exc:
        facts["connect_error"] = f"{type(exc).__name__}: {exc}"
        facts["connect_failed_after_ms"] = round((time.monotonic() - started) * 1000, 1)
        return False
    facts["connect_ms"] = round((time.monotonic() - started) * 1000, 1)
    return True


async def _generate(rec: Recorder, reactor: Reactor, facts: dict[str, Any]) -> float:
    """set_prompt + start; the time (ms) chunk_complete 1 arrived."""
    await reactor.send_command("set_prompt", {"prompt": "a quiet harbour"})
    await reactor.send_command("start", {})
    done = await rec.wait_message("chunk_complete", {"chunk_index": 1}, timeout=30)
    facts["chunk1_ms"] = done["t"]
    return float(done["t"])


async def _watch(rec: Recorder, reactor: Reactor, args: argparse.Namespace, facts: dict[str, Any]) -> None:
    since = len(rec.statuses)
    t_ref = facts.get("chunk1_ms", rec.now_ms())
    try:
        await rec.wait_for(lambda: len(rec.statuses) > since, args.observe, "a status change")
    except ScenarioFailed:
        facts["status_after_observe"] = reactor.status.value
        return
    facts["noticed_ms"] = round(rec.now_ms() - t_ref, 1)
    facts["first_status"] = rec.statuses[since]
    if args.kind == "transport_drop":
        started = time.monotonic()
        try:
            await reactor.reconnect()
            facts["reconnect_ms"] = round((time.monotonic() - started) * 1000, 1)
            mark = rec.mark()
            await rec.wait_message("chunk_complete", after=mark, timeout=20)
            facts["chunks_after_reconnect"] = True
        except Exception as exc:
            facts["reconnect_error"] = f"{type(exc).__name__}: {exc}"
    await asyncio.sleep(1.0)  # let trailing events in


async def run(rec: Recorder, reactor: Reactor, args: argparse.Namespace, facts: dict[str, Any]) -> None:
    if not await _connect(rec, reactor, facts) or args.kind in CREATION_KINDS:
        return
    await _generate(rec, reactor, facts)
    if args.kind == "command_error":
        try:
            facts["set_seed_reply"] = await reactor.send_command("set_seed", {"seed": 3})
        except Exception as exc:
            facts["set_seed_error"] = f"{type(exc).__name__}: {exc}"
        await asyncio.sleep(0.5)
        facts["command_error_messages"] = [m["data"] for m in rec.of_type("command_error")]
        return
    await _watch(rec, reactor, args, facts)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--kind", required=True)
    parser.add_argument("--mode", choices=("local", "production"), default="production")
    parser.add_argument("--speed", type=float, default=4.0)
    parser.add_argument("--observe", type=float, default=40.0)
    args = parser.parse_args()
    from pathlib import Path

    rec = Recorder(Path(args.out), "py")
    url = api_url()
    if args.mode == "local":
        reactor = Reactor("helios", local=True, api_url=url)
    else:
        reactor = Reactor("helios", jwt="e2e-test-token", api_url=url)
    rec.attach(reactor)
    runtime: list[Any] = []
    reactor.on("runtime_message", runtime.append)
    facts: dict[str, Any] = {"kind": args.kind}
    error: BaseException | None = None
    try:
        await asyncio.wait_for(run(rec, reactor, args, facts), timeout=args.observe + 60)
    except Exception as exc:
        error = exc
    finally:
        facts["statuses"] = rec.statuses
        facts["errors"] = [str(e) for e in rec.errors]
        facts["runtime_messages"] = [str(m) for m in runtime]
        try:
            if reactor.status.value != "disconnected":
                await asyncio.wait_for(reactor.disconnect(), timeout=10)
        except Exception as exc:
            rec.note(f"disconnect: {exc}")
        reactor.close()
    return rec.finish(error, {"facts": facts})


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

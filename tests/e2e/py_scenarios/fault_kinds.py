"""Fault kinds against the published Python SDK (reactor-sdk 1.13.0): one server, one kind after another.

Usage (through tests/e2e/ns_scenario.py; the server runs in production mode without faults)::

    python fault_kinds.py --out DIR --group signalling|generation [--speed 4]

Each kind is armed over HTTP (``POST /admin/faults``) just before the step it hits, the SDK is driven, and the
program keeps what the SDK showed the app (exception class, code and message, statuses, errors, messages)
and how long it took. After each kind it waits until the server is clean (``GET /health`` says ``available``,
every session in ``GET /admin/record`` is closed, no connection open in ``/metrics``) and notes how long.

* ``signalling``: ``session_closed``, ``sdp_slow``, ``sdp_timeout``, ``ice_failure``, each on a new session
  (a fault without ``session_id`` binds to the next session created), then a plain session that streams.
* ``generation``: one session generating; ``slow_chunks``, ``stall`` and ``media_loss`` armed on it at a chunk
  (``at_chunk``), ``internal_error`` on a command, ``upload_failure`` (403, then 500) on uploads; then the
  session ends and a next session streams.

``results.json`` carries ``facts`` = {kind: what was seen}; the frames (with their decoded markers) and every
message with its time are in ``frames.jsonl`` / ``events.jsonl``, for the test to prove timing from them.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from common import Recorder, ScenarioFailed, api_url, png_bytes
from prometheus_client.parser import text_string_to_metric_families
from reactor_sdk import Reactor, ReactorError

CLEAN_TIMEOUT = 20.0  # seconds the server gets to settle after each kind
Facts = dict[str, Any]


def _error(exc: BaseException) -> dict[str, Any]:
    """What the app sees of an exception."""
    out: dict[str, Any] = {"class": type(exc).__name__, "text": str(exc)}
    if isinstance(exc, ReactorError):
        out |= {"code": exc.code, "message": exc.message, "recoverable": exc.recoverable}
        out["status"] = exc.status
    return out


class Run:
    """The program's state: the recorder, the admin HTTP client, the facts per kind."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rec = Recorder(Path(args.out), "py")
        self.url = api_url()
        self.http = httpx.AsyncClient(base_url=self.url, trust_env=False, timeout=10.0)
        self.facts: dict[str, Facts] = {}
        self.reactors: list[Reactor] = []

    # ── server side ───────────────────────────────────────────────────────────────────────────────────

    async def arm(self, body: dict[str, Any]) -> dict[str, Any]:
        resp = await self.http.post("/admin/faults", json=body)
        self.rec.require(resp.status_code == 201, f"arming {body}: HTTP {resp.status_code} {resp.text}")
        fault: dict[str, Any] = resp.json()
        self.rec.event("fault_armed", fault=fault)
        return fault

    async def server_state(self) -> dict[str, Any]:
        health = (await self.http.get("/health")).json()
        record = (await self.http.get("/admin/record")).json()
        metrics = (await self.http.get("/metrics")).text
        connections = sum(
            s.value
            for fam in text_string_to_metric_families(metrics)
            if fam.name == "helios_mock_connections"
            for s in fam.samples
        )
        return {
            "health": health.get("state"),
            "open_sessions": [s["session_id"] for s in record["sessions"] if not s["closed"]],
            "sessions": len(record["sessions"]),
            "connections": connections,
        }

    async def wait_clean(self, facts: Facts) -> None:
        """Wait (bounded) until no session runs and no connection is open; note how long it took."""
        started = time.monotonic()
        state: dict[str, Any] = {}
        while time.monotonic() - started < CLEAN_TIMEOUT:
            state = await self.server_state()
            if state["health"] == "available" and not state["open_sessions"] and state["connections"] == 0:
                facts["clean_after_ms"] = round((time.monotonic() - started) * 1000, 1)
                break
            await asyncio.sleep(0.1)
        facts["server_after"] = state

    # ── client side ───────────────────────────────────────────────────────────────────────────────────

    def reactor(self) -> Reactor:
        reactor = Reactor("helios", jwt="e2e-test-token", api_url=self.url)
        self.rec.attach(reactor)
        self.reactors.append(reactor)
        return reactor

    async def connect(self, reactor: Reactor, facts: Facts) -> bool:
        """connect(); facts: connect_ms, or the error and how long it took to come."""
        started, since = time.monotonic(), len(self.rec.statuses)
        try:
            await reactor.connect()
        except Exception as exc:
            facts["connect_error"] = _error(exc)
            facts["connect_failed_after_ms"] = round((time.monotonic() - started) * 1000, 1)
            facts["status_after"] = reactor.status.value
            # the status_changed event is dispatched apart from the raise: wait (bounded) for it
            await self.rec.settle_status("disconnected", since, timeout=5.0)
            facts["disconnected_event_after_ms"] = round((time.monotonic() - started) * 1000, 1)
            ok = False
        else:
            facts["connect_ms"] = round((time.monotonic() - started) * 1000, 1)
            facts["session_id"] = reactor.session_id
            ok = True
        return ok

    async def stream_one_chunk(self, reactor: Reactor, facts: Facts) -> None:
        """set_prompt + start; chunk_complete 0 and frames of chunk 0 arrive."""
        mark, t0 = self.rec.mark(), self.rec.now_ms()
        await reactor.send_command("set_prompt", {"prompt": "a quiet harbour"})
        await reactor.send_command("start", {})
        await self.rec.wait_message("chunk_complete", {"chunk_index": 0}, after=mark, timeout=20)
        await self.rec.wait_frames(1, t0, 10, "after start")
        facts["streamed"] = True

    async def end(self, reactor: Reactor, facts: Facts) -> None:
        """disconnect() when connected, close the handle, wait until the server is clean."""
        try:
            if reactor.status.value not in ("disconnected", "error"):
                await asyncio.wait_for(reactor.disconnect(), timeout=10)
        except Exception as exc:
            facts["disconnect_error"] = _error(exc)
        reactor.close()
        await self.wait_clean(facts)

    async def kind(self, name: str, body: Callable[[Facts], Awaitable[None]]) -> None:
        """Run one kind's steps; an unexpected failure is kept in its facts and the next kind still runs."""
        facts: Facts = {"t_start_ms": self.rec.now_ms()}
        self.facts[name] = facts
        self.rec.note(f"── {name}")
        statuses, errors = len(self.rec.statuses), len(self.rec.errors)
        try:
            await body(facts)
        except (ScenarioFailed, ReactorError, TimeoutError) as exc:
            facts["failed"] = _error(exc)
            self.rec.check(False, f"{name}: {exc}")
        facts["t_end_ms"] = self.rec.now_ms()
        facts["statuses"] = self.rec.statuses[statuses:]  # status_changed events during this kind
        facts["errors"] = [_error(e) for e in self.rec.errors[errors:]]  # on("error") events


# ── signalling group ──────────────────────────────────────────────────────────────────────────────────────


async def connect_fault(run: Run, fault: dict[str, Any], facts: Facts, *, stream: bool = False) -> None:
    """Arm a fault for the next session, connect (and stream one chunk when connected), end, check clean."""
    facts["fault"] = await run.arm(fault)
    reactor = run.reactor()
    if await run.connect(reactor, facts) and stream:
        await run.stream_one_chunk(reactor, facts)
    await run.end(reactor, facts)


async def signalling(run: Run) -> None:
    kinds: dict[str, dict[str, Any]] = {
        "session_closed": {"kind": "session_closed", "params": {"seconds": 1, "reason": "no capacity"}},
        "sdp_slow": {"kind": "sdp_slow", "params": {"seconds": 2}},
        "sdp_timeout": {"kind": "sdp_timeout"},
        "ice_failure": {"kind": "ice_failure"},
    }
    for name, fault in kinds.items():
        stream = name == "sdp_slow"  # the one that connects: it streams too
        await run.kind(name, lambda facts, f=fault, s=stream: connect_fault(run, f, facts, stream=s))
    await run.kind("next_session", lambda facts: connect_fault_free(run, facts))


async def connect_fault_free(run: Run, facts: Facts) -> None:
    """A plain session after the faults: connects, streams, ends."""
    reactor = run.reactor()
    run.rec.require(await run.connect(reactor, facts), f"next session: {facts.get('connect_error')}")
    await run.stream_one_chunk(reactor, facts)
    await run.end(reactor, facts)


# ── generation group ──────────────────────────────────────────────────────────────────────────────────────


class Generating:
    """One session generating, with faults armed on it chunk by chunk."""

    def __init__(self, run: Run, reactor: Reactor) -> None:
        self.run = run
        self.rec = run.rec
        self.reactor = reactor
        self.session_id = reactor.session_id or ""

    def last_cc(self) -> int:
        return max((int(m["data"]["chunk_index"]) for m in self.rec.of_type("chunk_complete")), default=-1)

    async def wait_cc(self, chunk: int, timeout: float = 20.0) -> dict[str, Any]:
        return await self.rec.wait_message("chunk_complete", {"chunk_index": chunk}, timeout=timeout)

    async def arm_at_next_chunk(self, kind: str, params: dict[str, Any], facts: Facts) -> int:
        """Right after a chunk_complete, arm `kind` for the next chunk that begins; returns that chunk."""
        done = self.last_cc()
        await self.wait_cc(done + 1)
        at_chunk = done + 3  # chunk done+2 is in progress (chunks run back to back): the one after it
        body = {"kind": kind, "session_id": self.session_id, "at_chunk": at_chunk, "params": params}
        facts["fault"] = await self.run.arm(body)
        facts["at_chunk"] = at_chunk
        facts["status_before"] = self.reactor.status.value
        return at_chunk

    async def slow_chunks(self, facts: Facts) -> None:
        count, factor = 2, 3.0
        at = await self.arm_at_next_chunk("slow_chunks", {"count": count, "factor": factor}, facts)
        await self.wait_cc(at + count + 2, timeout=30)
        facts["status_after"] = self.reactor.status.value

    async def stall(self, facts: Facts) -> None:
        seconds = 2.0
        at = await self.arm_at_next_chunk("stall", {"seconds": seconds}, facts)
        await self.wait_cc(at - 1)
        # the stall begins as chunk `at` begins, right after chunk_complete at-1: a request on the control
        # channel answers while no frame comes (the data channels stay open), and is the barrier for
        # "no frame of the stalled chunk yet"
        started = time.monotonic()
        await self.reactor.request_schema()
        facts["schema_during_stall_ms"] = round((time.monotonic() - started) * 1000, 1)
        facts["schema_answered_at_ms"] = self.rec.now_ms()
        await self.wait_cc(at + 1, timeout=20)
        facts["status_after"] = self.reactor.status.value

    async def media_loss(self, facts: Facts) -> None:
        seconds = 1.0
        at = await self.arm_at_next_chunk("media_loss", {"percent": 100, "seconds": seconds}, facts)
        chunk_s = 33 / (24 * self.run.args.speed)
        after = at + int(seconds / chunk_s) + 3  # two whole chunks after the window
        await self.wait_cc(after, timeout=30)
        facts["chunk_after_window"] = after
        facts["status_after"] = self.reactor.status.value

    async def internal_error(self, facts: Facts) -> None:
        body = {
            "kind": "internal_error",
            "session_id": self.session_id,
            "on_command": "set_seed",
            "params": {"message": "the seed handler crashed"},
        }
        facts["fault"] = await self.run.arm(body)
        facts["first"] = await self._send("set_seed", {"seed": 7})
        facts["second"] = await self._send("set_seed", {"seed": 7})
        facts["status_after"] = self.reactor.status.value

    async def _send(self, name: str, params: dict[str, Any]) -> dict[str, Any]:
        started = time.monotonic()
        try:
            reply = await self.reactor.send_command(name, params)
        except Exception as exc:
            return {"error": _error(exc), "after_ms": round((time.monotonic() - started) * 1000, 1)}
        return {"reply": reply, "after_ms": round((time.monotonic() - started) * 1000, 1)}

    async def upload_failure(self, facts: Facts) -> None:
        png = png_bytes()
        for status in (403, 500):
            body = {"kind": "upload_failure", "session_id": self.session_id, "params": {"status": status}}
            facts[f"fault_{status}"] = await self.run.arm(body)
            facts[f"upload_{status}"] = await self._upload(png)
        facts["upload_after"] = await self._upload(png)
        ref = facts["upload_after"].pop("ref", None)
        if ref is not None:
            facts["set_image"] = await self._send("set_image", {"image": ref})
        facts["status_after"] = self.reactor.status.value

    async def _upload(self, png: bytes) -> dict[str, Any]:
        started = time.monotonic()
        try:
            ref = await self.reactor.upload_file(png, name="ref.png", mime_type="image/png")
        except Exception as exc:
            return {"error": _error(exc), "after_ms": round((time.monotonic() - started) * 1000, 1)}
        return {"ref": ref, "size": ref.size, "after_ms": round((time.monotonic() - started) * 1000, 1)}


async def generation(run: Run) -> None:
    reactor = run.reactor()
    setup: Facts = {}
    run.facts["setup"] = setup
    run.rec.require(await run.connect(reactor, setup), f"connect: {setup.get('connect_error')}")
    await run.stream_one_chunk(reactor, setup)
    gen = Generating(run, reactor)
    await run.kind("slow_chunks", gen.slow_chunks)
    await run.kind("stall", gen.stall)
    await run.kind("media_loss", gen.media_loss)
    await run.kind("internal_error", gen.internal_error)
    await run.kind("upload_failure", gen.upload_failure)
    await run.end(reactor, setup)
    await run.kind("next_session", lambda facts: connect_fault_free(run, facts))


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--group", choices=("signalling", "generation"), required=True)
    parser.add_argument("--speed", type=float, default=4.0)
    args = parser.parse_args()
    run = Run(args)
    error: BaseException | None = None
    try:
        await asyncio.wait_for((signalling if args.group == "signalling" else generation)(run), timeout=240)
    except Exception as exc:
        error = exc
    finally:
        for reactor in run.reactors:
            reactor.close()
        await run.http.aclose()
    return run.rec.finish(error, {"facts": run.facts})


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

"""The whole Helios workflow through the published Python SDK (reactor-sdk 1.13.0), run inside the namespace.

Usage (through tests/e2e/ns_scenario.py, which sets HELIOS_E2E_API_URL)::

    python helios_workflow.py --out DIR --mode local|production [--auth jwt|api_key] [--speed 4] [--short]

Full run: connect -> ready, request_schema, upload a PNG, set_seed, set_prompt, start, schedule_prompt at a
future chunk, set_prompt mid-stream, set_image, set_image_strength, set_sr_scale "off", pause, set_prompt
while paused, resume, save_snapshot, list_snapshots, rewind, refused commands (command_error), invalid ones
(ReactorError invalid_command), track pause/resume, reset, a second generation, reconnect, disconnect.
Every reply is checked here; the frame-level checks are made by tests/e2e/test_python_sdk.py from the logs.
``--short``: connect, set_prompt, start, two chunks, disconnect (used for the api_key run).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from common import Recorder, ScenarioFailed, api_url, png_bytes
from reactor_sdk import Reactor

from conformance.reference_model import INITIAL_STATE
from mock_server.model.images import image_id_of

SEED = 1234
P0 = "A red fox trotting through snow"
P1 = "The fox stops and looks at the camera"  # schedule_prompt at a future chunk
P2 = "Snow begins to fall heavily"  # set_prompt mid-stream
P3 = "Night falls over the forest"  # set_prompt while paused
P4 = "A lighthouse on a cliff at dawn"  # after reset
IMAGE_SIZE = (50, 30)
SCHEDULE_AHEAD = 4  # schedule_prompt this many chunks after chunk_complete 0
SNAPSHOT_LABEL = "before-rewind"
ADVERTISED = (
    "set_prompt",
    "schedule_prompt",
    "set_image",
    "set_conditioning",
    "set_image_strength",
    "set_sr_scale",
    "set_seed",
    "start",
    "pause",
    "resume",
    "reset",
    "rewind",
    "save_snapshot",
    "list_snapshots",
)


class Workflow:
    """One scripted session; ``facts`` collects what the frame checks need (chunks and times)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.mode: str = args.mode
        self.rec = Recorder(Path(args.out), f"py-{args.mode}-{args.auth}")
        self.chunk_s = 33 / (24 * args.speed)
        self.mid_s = 0.4 * self.chunk_s
        self.facts: dict[str, Any] = {"mode": args.mode, "auth": args.auth, "speed": args.speed}
        url = api_url()
        if args.mode == "local":
            self.reactor = Reactor("helios", local=True, api_url=url)
        elif args.auth == "api_key":
            self.reactor = Reactor("helios", api_key="rk_e2e_test_key", api_url=url)
        else:
            self.reactor = Reactor("helios", jwt="e2e-test-token", api_url=url)
        self.track = self.reactor.track("main_video")
        self.rec.attach(self.reactor)

    # ── helpers ───────────────────────────────────────────────────────────────────────────────────────

    async def cmd(self, step_id: str, name: str, params: dict[str, Any] | None = None) -> Any:
        return await self.rec.command(step_id, self.reactor, name, params or {})

    def reply_is(self, step_id: str, want: Any) -> None:
        self.rec.expect_equal(self.rec.replies[step_id], want, f"reply to {step_id}")

    def last_cc(self) -> int:
        """Index of the latest chunk_complete received (-1 before any)."""
        done = self.rec.of_type("chunk_complete")
        return int(done[-1]["data"]["chunk_index"]) if done else -1

    async def wait_cc(self, chunk: int, after: int = 0, save_as: str | None = None) -> dict[str, Any]:
        ahead = max(1, chunk - self.last_cc())
        return await self.rec.wait_message(
            "chunk_complete",
            {"chunk_index": chunk},
            after=after,
            timeout=(ahead + 3) * self.chunk_s + 5,
            save_as=save_as or f"cc{chunk}",
        )

    async def mid_chunk(self) -> None:
        """Right after a chunk_complete, sleep into the middle of the next chunk."""
        await asyncio.sleep(self.mid_s)

    # ── scenario ──────────────────────────────────────────────────────────────────────────────────────

    async def connect(self) -> None:
        since = len(self.rec.statuses)

        async def do() -> dict[str, Any]:
            started = time.monotonic()
            await self.reactor.connect()
            ms = (time.monotonic() - started) * 1000
            self.rec.timing("connect_to_ready_ms", ms)
            return {
                "connect_to_ready_ms": round(ms, 1),
                "session_id": self.reactor.session_id,
                "status": self.reactor.status.value,
            }

        result = await self.rec.step("connect", do)
        self.rec.require(result["status"] == "ready", f"status after connect(): {result['status']}")
        await self.rec.settle_status("ready", since)
        sid = result["session_id"] or ""
        if self.mode == "local":
            self.rec.expect_equal(sid, "local", "session id")
        else:
            self.rec.check(sid.startswith("sess_"), f"production session id {sid!r}")
        self.facts["session_id"] = sid
        state = await self.rec.wait_message("state", save_as="initial_state")
        self.rec.check(state["data"].get("started") is False, f"first state: {state['data']}")

    async def schema(self) -> None:
        async def do() -> dict[str, Any]:
            doc = await self.reactor.request_schema()
            return {"openapi": doc.get("openapi"), "paths": sorted(doc.get("paths", {})), "keys": sorted(doc)}

        result = await self.rec.step("request_schema", do)
        self.rec.check(str(result["openapi"]).startswith("3.1"), f"openapi version {result['openapi']!r}")
        missing = [c for c in ADVERTISED if f"/events/{c}" not in result["paths"]]
        self.rec.check(not missing, f"schema lacks paths for {missing}")

    async def generation_one(self) -> None:
        rec = self.rec
        png = png_bytes(IMAGE_SIZE)
        (rec.out_dir / "ref.png").write_bytes(png)
        self.facts["image_id"] = image_id_of(png)

        async def upload() -> Any:
            return await self.reactor.upload_file(png, name="ref.png", mime_type="image/png")

        ref = await rec.step("upload", upload)
        rec.check(ref.size == len(png) and ref.mime_type == "image/png", f"FileRef {ref}")

        mark = rec.mark()
        await self.cmd("set_seed", "set_seed", {"seed": SEED})
        self.reply_is("set_seed", None)
        await rec.wait_message("state", after=mark)

        mark = rec.mark()
        await self.cmd("set_prompt_p0", "set_prompt", {"prompt": P0})
        self.reply_is("set_prompt_p0", {"type": "prompt_accepted", "data": {"prompt": P0, "chunk": 0}})
        await rec.wait_message("conditions_ready", {"has_prompt": True, "has_image": False}, after=mark)
        await rec.wait_message("state", {"scheduled_prompts": {"0": P0}}, after=mark)

        mark = rec.mark()
        await self.cmd("start", "start")
        self.reply_is("start", None)
        gs = await rec.wait_message("generation_started", after=mark, save_as="gs1")
        rec.expect_equal(gs["data"], {"prompt": P0, "chunk_index": 0}, "generation_started")
        await rec.wait_message("state", {"started": True, "running": True}, after=mark)
        self.facts["t_start_ms"] = rec.now_ms()

        # schedule_prompt at a future chunk, then set_prompt (next chunk) before it
        await self.wait_cc(0)
        await self.mid_chunk()
        p1_chunk = SCHEDULE_AHEAD
        await self.cmd("schedule_p1", "schedule_prompt", {"prompt": P1, "chunk": p1_chunk})
        self.reply_is("schedule_p1", {"type": "prompt_accepted", "data": {"prompt": P1, "chunk": p1_chunk}})
        expected_p2 = self.last_cc() + 2  # running: the chunk after the one in progress
        reply = await self.cmd("set_prompt_p2", "set_prompt", {"prompt": P2})
        rec.require(
            isinstance(reply, dict) and reply.get("type") == "prompt_accepted", f"set_prompt reply {reply}"
        )
        p2_chunk = int(reply["data"]["chunk"])
        rec.expect_equal(reply["data"], {"prompt": P2, "chunk": expected_p2}, "set_prompt mid-stream")
        rec.require(0 < p2_chunk < p1_chunk, f"set_prompt chunk {p2_chunk} not before {p1_chunk}")
        cc = await self.wait_cc(p1_chunk)
        rec.expect_equal(cc["data"]["active_prompt"], P1, f"active_prompt of chunk {p1_chunk}")

        # set_image mid-chunk: takes effect at the next chunk
        await self.mid_chunk()
        mark = rec.mark()
        await self.cmd("set_image", "set_image", {"image": ref})
        self.reply_is(
            "set_image", {"type": "image_accepted", "data": {"width": IMAGE_SIZE[0], "height": IMAGE_SIZE[1]}}
        )
        await rec.wait_message("conditions_ready", {"has_prompt": True, "has_image": True}, after=mark)
        state = await rec.wait_message("state", {"image_set": True}, after=mark, save_as="image_state")
        image_chunk = int(state["data"]["current_chunk"]) + 1

        # set_image_strength one chunk later: the blend weight changes at the next chunk boundary
        await self.wait_cc(image_chunk)
        await self.mid_chunk()
        mark = rec.mark()
        await self.cmd("set_image_strength", "set_image_strength", {"image_strength": 0.5})
        self.reply_is("set_image_strength", None)
        state = await rec.wait_message("state", {"image_strength": 0.5}, after=mark, save_as="strength_state")
        strength_chunk = int(state["data"]["current_chunk"]) + 1

        # set_sr_scale "off" one chunk later: the frame size halves at a chunk boundary
        await self.wait_cc(strength_chunk)
        await self.mid_chunk()
        mark = rec.mark()
        await self.cmd("set_sr_scale", "set_sr_scale", {"sr_scale": "off"})
        self.reply_is("set_sr_scale", None)
        state = await rec.wait_message("state", after=mark, save_as="sr_state")
        sr_chunk = int(state["data"]["current_chunk"]) + 1
        await self.wait_cc(sr_chunk)

        # pause mid-chunk: the chunk in progress completes, nothing after it until resume
        await self.mid_chunk()
        paused_chunk = self.last_cc() + 1
        await self.cmd("pause", "pause")
        self.reply_is(
            "pause",
            {"type": "generation_paused", "data": {"frame": 33 * paused_chunk, "chunk": paused_chunk}},
        )
        await self.wait_cc(paused_chunk)
        await rec.wait_message("state", {"paused": True, "running": False, "current_chunk": paused_chunk + 1})
        await self.cmd("set_prompt_p3", "set_prompt", {"prompt": P3})
        self.reply_is(
            "set_prompt_p3", {"type": "prompt_accepted", "data": {"prompt": P3, "chunk": paused_chunk + 1}}
        )
        await rec.no_message("chunk_complete", 3 * self.chunk_s)
        self.facts["t_resume_sent_ms"] = rec.now_ms()
        mark = rec.mark()
        await self.cmd("resume", "resume")
        nxt = paused_chunk + 1
        self.reply_is("resume", {"type": "generation_resumed", "data": {"frame": 33 * nxt, "chunk": nxt}})
        cc = await self.wait_cc(nxt, after=mark)
        rec.expect_equal(cc["data"]["active_prompt"], P3, f"active_prompt of chunk {nxt} (set while paused)")

        # snapshots and rewind
        await self.mid_chunk()
        snap_chunk = self.last_cc() + 1
        await self.cmd("save_snapshot", "save_snapshot", {"label": SNAPSHOT_LABEL})
        snap = {"snapshot_index": 0, "label": SNAPSHOT_LABEL, "chunk": snap_chunk, "frame": 33 * snap_chunk}
        self.reply_is("save_snapshot", {"type": "snapshot_saved", "data": {**snap, "count": 1}})
        await self.cmd("list_snapshots", "list_snapshots")
        self.reply_is(
            "list_snapshots",
            {"type": "snapshot_list", "data": {"snapshots": [snap], "count": 1, "capacity": 50}},
        )
        await self.wait_cc(snap_chunk + 1)
        await self.mid_chunk()
        rewound_from = self.last_cc() + 1
        mark = rec.mark()
        self.facts["t_rewind_sent_ms"] = rec.now_ms()
        await self.cmd("rewind", "rewind", {"snapshot_index": -1})
        self.reply_is("rewind", {"type": "rewind_complete", "data": snap})
        cc = await self.wait_cc(rewound_from, after=mark)  # the chunk in progress still completes
        state = await rec.wait_message("state", after=cc["index"], save_as="rewound_state")
        rec.expect_equal(state["data"]["current_chunk"], snap_chunk, "current_chunk right after the rewind")
        cc = await self.wait_cc(snap_chunk, after=mark, save_as="cc_after_rewind")
        rec.expect_equal(cc["data"]["active_prompt"], P3, "active_prompt after rewind (prompt not restored)")

        self.facts.update(
            p1_chunk=p1_chunk,
            p2_chunk=p2_chunk,
            image_chunk=image_chunk,
            strength_chunk=strength_chunk,
            sr_chunk=sr_chunk,
            paused_chunk=paused_chunk,
            snap_chunk=snap_chunk,
            rewound_from=rewound_from,
            schedule={0: P0, p2_chunk: P2, p1_chunk: P1, paused_chunk + 1: P3},
        )

    async def refusals_and_rejections(self) -> None:
        rec = self.rec
        mark = rec.mark()
        await self.cmd("start_again", "start")
        self.reply_is("start_again", None)
        err = await rec.wait_message("command_error", {"command": "start"}, after=mark)
        rec.check(bool(err["data"].get("reason")), f"command_error without a reason: {err['data']}")
        mark = rec.mark()
        await self.cmd("schedule_past", "schedule_prompt", {"prompt": P1, "chunk": 0})
        self.reply_is("schedule_past", None)
        await rec.wait_message("command_error", {"command": "schedule_prompt"}, after=mark)

        mark = rec.mark()
        for step_id, name, params in (
            ("strength_out_of_range", "set_image_strength", {"image_strength": 1.5}),
            ("unknown_command", "fly_to_the_moon", {}),
            ("missing_parameter", "set_prompt", {}),
            ("bad_enum", "set_sr_scale", {"sr_scale": "8x"}),
        ):
            error = await rec.rejected(step_id, self.reactor, name, params)
            rec.expect_equal(error.code, "invalid_command", f"{step_id}: error code ({error.message})")
        await asyncio.sleep(0.1)
        errors = rec.of_type("command_error", after=mark)
        rec.check(not errors, f"runtime rejections must not broadcast command_error: {errors}")

    async def track_pause_resume(self) -> None:
        rec = self.rec

        async def pause() -> dict[str, Any]:
            await self.track.pause()
            return {"paused_tracks": sorted(self.reactor.paused_tracks)}

        result = await rec.step("track_pause", pause)
        rec.expect_equal(result["paused_tracks"], ["main_video"], "paused_tracks after track.pause()")
        await asyncio.sleep(0.3)  # frames already in flight may still arrive
        t_from = rec.now_ms()
        mark = rec.mark()
        await asyncio.sleep(3 * self.chunk_s)
        t_to = rec.now_ms()
        late = rec.frames_since(t_from)
        rec.check(not late, f"{len(late)} frames arrived while main_video was paused")
        done = rec.of_type("chunk_complete", after=mark)
        rec.check(len(done) >= 2, f"generation should go on while the track is paused: {len(done)} chunks")

        async def resume() -> dict[str, Any]:
            await self.track.resume()
            return {"paused_tracks": sorted(self.reactor.paused_tracks)}

        t_resume = rec.now_ms()
        result = await rec.step("track_resume", resume)
        rec.expect_equal(result["paused_tracks"], [], "paused_tracks after track.resume()")
        await rec.wait_frames(10, t_resume, 3.0, "after track.resume()")
        self.facts.update(track_paused_window_ms=[t_from, t_to], t_track_resume_ms=t_resume)

    async def reset_and_generation_two(self) -> None:
        rec = self.rec
        before = self.last_cc()
        mark = rec.mark()
        self.facts["t_reset_sent_ms"] = rec.now_ms()
        await self.cmd("reset", "reset")
        self.reply_is("reset", None)
        grs = await rec.wait_message("generation_reset", after=mark, save_as="generation_reset")
        rec.check(
            int(grs["data"]["chunk"]) >= before + 1, f"generation_reset {grs['data']} after chunk {before}"
        )
        rec.expect_equal(grs["data"]["frame"], 33 * grs["data"]["chunk"], "generation_reset frame")
        state = await rec.wait_message("state", {"started": False}, after=mark, save_as="reset_state")
        want = INITIAL_STATE
        rec.expect_equal({k: state["data"].get(k) for k in want}, want, "state after reset")

        await self.cmd("set_prompt_p4", "set_prompt", {"prompt": P4})
        self.reply_is("set_prompt_p4", {"type": "prompt_accepted", "data": {"prompt": P4, "chunk": 0}})
        mark = rec.mark()
        await self.cmd("start2", "start")
        self.reply_is("start2", None)
        gs = await rec.wait_message("generation_started", after=mark, save_as="gs2")
        rec.expect_equal(gs["data"], {"prompt": P4, "chunk_index": 0}, "second generation_started")
        await self.wait_cc(0, after=mark, save_as="cc2_0")

    async def reconnect(self) -> None:
        rec = self.rec
        mark = rec.mark()
        since = len(rec.statuses)

        async def do() -> dict[str, Any]:
            started = time.monotonic()
            await self.reactor.reconnect()
            ms = (time.monotonic() - started) * 1000
            self.rec.timing("reconnect_to_ready_ms", ms)
            return {"reconnect_to_ready_ms": round(ms, 1), "status": self.reactor.status.value}

        result = await rec.step("reconnect", do)
        rec.require(result["status"] == "ready", f"status after reconnect(): {result['status']}")
        await rec.settle_status("ready", since)
        t_ready = rec.now_ms()
        self.facts["t_reconnected_ms"] = t_ready
        await rec.wait_message("state", after=mark, save_as="state_after_reconnect")
        await rec.wait_message("chunk_complete", after=rec.mark(), timeout=5 * self.chunk_s + 5)
        await rec.wait_frames(10, t_ready, 5.0, "after reconnect()")
        await self.cmd("list_after_reconnect", "list_snapshots")  # a command round trip on the new peer
        self.reply_is(
            "list_after_reconnect",
            {"type": "snapshot_list", "data": {"snapshots": [], "count": 0, "capacity": 50}},
        )

    async def disconnect(self) -> None:
        since = len(self.rec.statuses)

        async def do() -> dict[str, Any]:
            await self.reactor.disconnect()
            return {"status": self.reactor.status.value}

        result = await self.rec.step("disconnect", do)
        self.rec.expect_equal(result["status"], "disconnected", "status after disconnect()")
        await self.rec.settle_status("disconnected", since)

    async def short(self) -> None:
        rec = self.rec
        await self.cmd("set_prompt_p0", "set_prompt", {"prompt": P0})
        self.reply_is("set_prompt_p0", {"type": "prompt_accepted", "data": {"prompt": P0, "chunk": 0}})
        mark = rec.mark()
        await self.cmd("start", "start")
        self.reply_is("start", None)
        await rec.wait_message("generation_started", {"prompt": P0, "chunk_index": 0}, after=mark)
        await self.wait_cc(1)
        self.facts["schedule"] = {0: P0}

    async def run(self) -> None:
        await self.connect()
        if self.args.short:
            await self.short()
        else:
            await self.schema()
            await self.generation_one()
            await self.refusals_and_rejections()
            await self.track_pause_resume()
            await self.reset_and_generation_two()
            await self.reconnect()
        await self.disconnect()


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--mode", choices=("local", "production"), required=True)
    parser.add_argument("--auth", choices=("jwt", "api_key"), default="jwt", help="production only")
    parser.add_argument("--speed", type=float, default=4.0, help="the server's --speed")
    parser.add_argument("--short", action="store_true")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    flow = Workflow(args)
    error: BaseException | None = None
    try:
        await asyncio.wait_for(flow.run(), timeout=args.timeout)
    except (ScenarioFailed, Exception) as exc:
        error = exc
    finally:
        try:
            if flow.reactor.status != "disconnected":
                await asyncio.wait_for(flow.reactor.disconnect(), timeout=10)
        except Exception as exc:  # best effort after a failure
            flow.rec.note(f"disconnect after failure: {exc}")
        flow.reactor.close()
    return flow.rec.finish(error, {"facts": flow.facts})


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

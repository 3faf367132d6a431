"""One measured Helios session over the real wire, and the scenarios the Locust user plays.

:class:`LoadSession` drives a :class:`conformance.wire_client.WireClient` (production mode: one session per
client, so any number of them can share a server) and receives its video through the cheap path of
:mod:`load.video`. Every measurement goes to a ``report(name, milliseconds, length, error)`` callback, which
the Locust agent turns into Locust request events and the benchmark ignores or aggregates.

Names reported: ``connect→ready`` (POST /sessions until the peer is connected and every data channel is
open), ``first frame`` (``start`` sent until the first decoded frame), ``command→answer <cmd>`` (v1: the
correlated reply; v0: the command's answer message, or the next ``state`` for commands that have none),
``command→effect <cmd>`` (sent until the first frame whose marker band shows the change; ``length`` =
chunk delta, the chunk of that frame minus the chunk on screen when the command was sent), ``upload``,
``chunk video`` (per chunk: span of its frames in ms, ``length`` = frames received), ``late frames`` (per
chunk with late frames: worst lateness in ms, ``length`` = late frames) and ``session`` (the whole
session, ``length`` = frames received).

Every scenario uses the same seed, prompts and image bytes in every session, so all sessions show the same
content (what a shared-encoding media path can exploit).
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from conformance.wire_client import Received, WireClient
from mock_server.constants import CHUNK_FRAMES
from mock_server.media.markers import Markers, prompt_id
from mock_server.model.images import image_id_of
from mock_server.wire import reactor_wire_pb as pb

from .accounting import Failure, attribute, fault_kinds
from .video import FrameTimeline, attach, install

install()  # before any peer connection exists (see load.video.install)

Report = Callable[[str, float, int, "str | None"], None]

SCENARIOS = ("prompts", "upload", "pause", "mixed", "hold")
PROMPTS = tuple(
    f"load test prompt {i}: a lighthouse on a cliff at dusk, waves, seagulls, camera drifting left"
    for i in range(64)
)
SEED = 424242
PING_INTERVAL = 5.0
WATCH_INTERVAL = 0.2  # seconds between two looks for a server-side end or a dropped transport
DROP_GRACE = 0.6  # a closed transport waits this long for a sessionEnded notice that explains it
RETRY_AFTER_MAX = 30.0  # at most this long is a Retry-After honoured
SESSION_BODY = {
    "model": {"name": "helios"},
    "client_info": {"sdk_version": "0", "sdk_type": "helios-mock-load"},
    "supported_transports": [{"protocol": "webrtc", "version": "1.0"}],
}
# v0 has no correlation: the message that answers each command (others: the next `state`).
V0_ANSWERS = {
    "set_prompt": "prompt_accepted",
    "schedule_prompt": "prompt_accepted",
    "set_image": "image_accepted",
    "set_conditioning": "conditions_ready",
    "start": "generation_started",
    "pause": "generation_paused",
    "resume": "generation_resumed",
    "reset": "generation_reset",
    "save_snapshot": "snapshot_saved",
    "list_snapshots": "snapshot_list",
    "rewind": "rewind_complete",
}


class SessionFailed(Exception):
    """A step of the scenario failed; recorded in `LoadSession.failures` (reported when the session ends)."""


class StepFailed(SessionFailed):
    """A step failed but the session is fine (a refused command, an effect not shown): it goes on."""


class CommandRefused(StepFailed):
    """A command was refused (command_error / runtime error): the session goes on."""


@dataclass
class SessionConfig:
    url: str
    wire: str = "v0"  # "v0" (JSON, flat signalling) | "v1" (protobuf, registered connection)
    token: str = "load-test"
    speed: float = 1.0  # the server's --speed (needed for the frame timeline)
    fps: float = 24.0
    sr_scale: str = "off"
    seed: int = SEED
    decode: bool = True  # False: count frames from RTP without decoding (no markers, no effects)
    timeout: float = 20.0
    queue_timeout: float = 60.0  # longest wait for a queued session to become ready
    stall_seconds: float = 3.0  # no frame for this long while generating is a stall
    late_limit: float = 2.0  # a frame later than this behind the schedule makes the session "late frames"
    admin: bool = True  # read the session's record after a failure to name its cause (the mock's admin API)
    admin_token: str = ""

    @property
    def frame_interval(self) -> float:
        return 1.0 / (self.fps * self.speed)

    @property
    def chunk_seconds(self) -> float:
        return CHUNK_FRAMES * self.frame_interval


def _null_report(name: str, ms: float, length: int, error: str | None) -> None:
    return None


@dataclass
class _FrameWaiter:
    predicate: Callable[[Markers], bool]
    future: asyncio.Future[tuple[float, Markers]]


@dataclass
class _ChunkTally:
    chunk: int
    first_t: float
    last_t: float
    frames: int = 0
    late: int = 0
    worst: float = 0.0


class LoadSession:
    """One Helios session: connect, commands with answer/effect timing, video accounting, keep-alive."""

    def __init__(self, config: SessionConfig, report: Report | None = None) -> None:
        self.config = config
        self.report: Report = report or _null_report
        self.client = WireClient(config.url, wire=config.wire, mode="production", token=config.token)
        self.timeline = FrameTimeline(config.frame_interval, judge=config.decode)
        self.video: Any = None
        self.connect_seconds: float | None = None
        self.errors: list[str] = []
        self.failures: list[Failure] = []
        self.outcome: str | None = None  # ok | degraded | cut | the kind that ended the session
        self.retry_after: float | None = None  # from a refused creation (429/503)
        self.lost: asyncio.Future[Failure] | None = None  # set when the server ends the session
        self._waiters: list[_FrameWaiter] = []
        self._tally: _ChunkTally | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._first = asyncio.Event()  # set by the first video frame
        self._closed = False
        self._holding = False  # paused on purpose: a gap in the video is no stall
        self._last_frame: float | None = None
        self._terminate_notice = False  # a moderation `terminate` arrived

    @property
    def session_id(self) -> str | None:
        return self.client.session_id

    # ------------------------------------------------------------------ failures

    def _ok(self, name: str, seconds: float, length: int = 0) -> None:
        self.report(name, seconds * 1000.0, length, None)

    def _fail(self, step: str, seconds: float, error: str, kind: str = "client error") -> SessionFailed:
        """Record a failure that ends the session; the caller raises what this returns."""
        self._note(Failure(kind, step, error, seconds * 1000.0))
        return SessionFailed(f"{step}: {error}")

    def _note(self, failure: Failure) -> None:
        self.errors.append(f"{failure.kind}: {failure.error}")
        self.failures.append(failure)

    def _lose(self, failure: Failure) -> None:
        """The session is gone (server end, dropped transport): wake `play`."""
        if self.lost is not None and not self.lost.done():
            self._note(failure)
            self.lost.set_result(failure)

    async def _timed(self, name: str, awaitable: Awaitable[Any], kind: str = "client error") -> Any:
        t0 = time.monotonic()
        try:
            result = await awaitable
        except SessionFailed:
            raise
        except Exception as exc:  # any wire/HTTP/timeout problem fails this step
            raise self._fail(name, time.monotonic() - t0, f"{type(exc).__name__}: {exc}", kind) from exc
        self._ok(name, time.monotonic() - t0)
        return result

    # ------------------------------------------------------------------ video

    def _on_frame(self, t: float, markers: Markers | None) -> None:
        lateness = self.timeline.add(t, markers)
        self._first.set()
        if self._last_frame is not None and not self._holding:
            gap = t - self._last_frame
            if gap > self.config.stall_seconds:
                self._note(
                    Failure(
                        "stall",
                        "video",
                        "no video frame for longer than the stall limit",
                        gap * 1000.0,
                        terminal=False,
                    )
                )
        self._last_frame = t
        if markers is None or lateness is None:
            return
        tally = self._tally
        if tally is None or markers.chunk != tally.chunk:
            if tally is not None:
                self._flush_tally(tally)
            tally = self._tally = _ChunkTally(markers.chunk, t, t)
        tally.frames += 1
        tally.last_t = t
        if lateness > self.timeline.interval:
            tally.late += 1
            tally.worst = max(tally.worst, lateness)
        if self._waiters:
            for waiter in list(self._waiters):
                if not waiter.future.done() and waiter.predicate(markers):
                    waiter.future.set_result((t, markers))
                    self._waiters.remove(waiter)

    def _flush_tally(self, tally: _ChunkTally) -> None:
        self.report("chunk video", (tally.last_t - tally.first_t) * 1000.0, tally.frames, None)
        if tally.late:
            self.report("late frames", tally.worst * 1000.0, tally.late, None)

    def expect_frame(self, predicate: Callable[[Markers], bool]) -> asyncio.Future[tuple[float, Markers]]:
        """A future resolved with (arrival, markers) of the first frame from now on matching `predicate`."""
        future: asyncio.Future[tuple[float, Markers]] = asyncio.get_running_loop().create_future()
        self._waiters.append(_FrameWaiter(predicate, future))
        return future

    async def wait_frame(self, predicate: Callable[[Markers], bool]) -> tuple[float, Markers]:
        """The next frame matching `predicate` (bounded by a few chunks)."""
        t0 = time.monotonic()
        try:
            return await asyncio.wait_for(self.expect_frame(predicate), 3 * self.config.chunk_seconds + 10)
        except TimeoutError:
            raise self._fail(
                "video", time.monotonic() - t0, "the expected frame never came", "stall"
            ) from None

    @property
    def screen_chunk(self) -> int | None:
        """Chunk of the newest frame received (what the viewer sees)."""
        g = self.timeline.last_g
        return None if g is None else g // CHUNK_FRAMES

    # ------------------------------------------------------------------ lifecycle

    async def connect(self) -> None:
        """Create the session, wait until it is ready, connect; reports `session ready`, `connect→ready`."""
        t0 = time.monotonic()
        await self._create()
        await self._wait_ready(t0)
        await self._connect_transport(t0)
        self.connect_seconds = time.monotonic() - t0
        self._ok("connect→ready", self.connect_seconds)
        assert self.client.pc is not None
        self.video = attach(self.client.pc, self._on_frame, decode=self.config.decode)
        if self.config.wire == "v1":  # registered connections start with main_video paused (RT2 rule)
            self.client.notify_control("resume_track", pb.ResumeTrack(name="main_video"))
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._ping()), loop.create_task(self._watch())]

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.config.token}"}

    async def _create(self) -> None:
        """POST /sessions. A stop while it is in flight still learns the id, so `close` deletes it."""
        t0 = time.monotonic()
        post = asyncio.ensure_future(
            self.client.http.post("/sessions", json=SESSION_BODY, headers=self._auth())
        )
        try:
            resp = await asyncio.shield(post)
        except asyncio.CancelledError:
            done, _ = await asyncio.wait([post], timeout=10)
            if done and not post.cancelled() and post.exception() is None and post.result().status_code < 300:
                self.client.session_id = post.result().json().get("session_id")
            raise
        except httpx.HTTPError as exc:
            raise self._fail(
                "POST /sessions", time.monotonic() - t0, f"{type(exc).__name__}: {exc}", "signalling error"
            ) from exc
        if resp.status_code >= 300:
            self.retry_after = _retry_after(resp)
            raise self._fail(
                "POST /sessions", time.monotonic() - t0, _detail(resp), f"refused {resp.status_code}"
            )
        self.client.session_id = str(resp.json()["session_id"])

    async def _wait_ready(self, t0: float) -> None:
        """Poll the session until it has capabilities (0.2 s doubling to 0.5 s, docs/PROTOCOL.md §1.10)."""
        delay = 0.2
        while True:
            try:
                resp = await self.client.http.get(f"/sessions/{self.session_id}", headers=self._auth())
            except httpx.HTTPError as exc:
                raise self._fail(
                    "session ready", time.monotonic() - t0, f"{type(exc).__name__}: {exc}", "signalling error"
                ) from exc
            if resp.status_code != 200:
                raise self._fail("session ready", time.monotonic() - t0, _detail(resp), "signalling error")
            descriptor = resp.json()
            if descriptor.get("capabilities") and descriptor.get("selected_transport"):
                self._ok("session ready", time.monotonic() - t0)
                return
            waited = time.monotonic() - t0
            if descriptor.get("state") == "CLOSED":
                raise self._fail(
                    "session ready", waited, "the session closed while pending", "closed pending"
                )
            if waited > self.config.queue_timeout:
                state = descriptor.get("state")
                raise self._fail(
                    "session ready", waited, f"still {state} after the queue budget", "queue timeout"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)

    async def _connect_transport(self, t0: float) -> None:
        """Offer, get the answer, connect: no answer is an SDP timeout, no connection an ICE failure."""
        try:
            await self.client.connect(start=False, timeout=self.config.timeout)
        except Exception as exc:
            pc = self.client.pc
            if pc is None or pc.remoteDescription is None:
                kind = "sdp timeout" if isinstance(exc, TimeoutError) else "signalling error"
            else:
                kind = "ice failure" if not self.client.ready else "client error"
            raise self._fail(
                "connect→ready", time.monotonic() - t0, f"{type(exc).__name__}: {exc}", kind
            ) from exc

    async def _ping(self) -> None:
        ping_v0 = json.dumps({"scope": "runtime", "data": {"type": "ping", "data": {}}})
        while True:
            await asyncio.sleep(PING_INTERVAL)
            try:
                if self.config.wire == "v0":
                    self.client.send_raw("data", ping_v0)
                else:
                    self.client.notify_control("ping")
            except Exception:  # channel closed: the session is ending
                return

    async def _watch(self) -> None:
        """Notice a server-side end (`sessionEnded`) or a transport that closed without one."""
        seen, gone_since = 0, None
        while not self._closed:
            await asyncio.sleep(WATCH_INTERVAL)
            received = self.client.received
            for item in received[seen:]:
                self._notice(item)
            seen = len(received)
            if self.lost is not None and self.lost.done():
                return
            if not self._transport_gone():
                gone_since = None
            elif gone_since is None:
                gone_since = time.monotonic()
            elif time.monotonic() - gone_since >= DROP_GRACE:
                detail = "the peer connection closed without a sessionEnded notice"
                self._lose(Failure("transport dropped", "session", detail))
                return

    def _transport_gone(self) -> bool:
        pc = self.client.pc
        if pc is None:
            return False
        return pc.connectionState in ("failed", "closed") or any(
            channel.readyState == "closed" for channel in self.client.channels.values()
        )

    def _notice(self, item: Received) -> None:
        """Act on a runtime/control notice: moderation (warn: a row; terminate: remembered), sessionEnded."""
        data = item.data if isinstance(item.data, dict) else {}
        if item.type == "moderation":
            action = str(data.get("action", "")).lower()
            if "terminate" in action:
                self._terminate_notice = True
            else:
                self._ok("moderation warning", 0.0)
        elif item.type in ("sessionEnded", "session_ended"):
            reason = str(data.get("reason") or "no reason given")
            if self._terminate_notice:
                kind = "ended moderation"
            elif "maximum duration" in reason:
                kind = "ended session_expiry"
            else:
                kind = "ended by server"
            self._lose(Failure(kind, "session", f"sessionEnded: {reason}"))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._tally is not None:
            self._flush_tally(self._tally)
            self._tally = None
        for task in self._tasks:
            task.cancel()
        for waiter in self._waiters:
            waiter.future.cancel()
        try:
            await asyncio.wait_for(self.client.close(), timeout=10)
        except Exception:  # closing is best effort
            pass

    async def finish(self, *, cut: bool) -> None:
        """End the session: media verdicts, close (DELETE), name causes from the record, report failures."""
        self._media_verdicts()
        await self.close()
        if self.failures and self.session_id and self.config.admin:
            attribute(self.failures, await self._fired_faults())
        for failure in self.failures:
            self.report(failure.kind, failure.ms, failure.length, failure.error)
        ending = next((f for f in self.failures if f.terminal), None)
        if ending is not None:
            self.outcome = ending.kind
        elif cut:
            self.outcome = "cut"
        else:
            self.outcome = "degraded" if self.failures else "ok"

    def _media_verdicts(self) -> None:
        """Per session: missing frames are media loss; lateness past the limit (no stall) is late frames."""
        ended = any(f.terminal for f in self.failures)
        if not ended and not self._holding and self._last_frame is not None:
            gap = time.monotonic() - self._last_frame
            if gap > self.config.stall_seconds:  # the session ends in the middle of a stall
                self._note(
                    Failure(
                        "stall",
                        "video",
                        "no video frame for longer than the stall limit",
                        gap * 1000.0,
                        terminal=False,
                    )
                )
        timeline = self.timeline
        if timeline.missing:
            lost = self.video is not None and self.video.lost_packets > 0
            detail = "frames missing, RTP packets lost" if lost else "frames missing, skipped by the server"
            self._note(Failure("media loss", "video", detail, 0.0, timeline.missing, terminal=False))
        stalled = any(f.kind == "stall" for f in self.failures)
        if timeline.max_lateness > self.config.late_limit and not stalled:
            detail = "frames arrived later than the limit behind the schedule"
            self._note(
                Failure(
                    "late frames",
                    "video",
                    detail,
                    timeline.max_lateness * 1000.0,
                    timeline.late,
                    terminal=False,
                )
            )

    async def _fired_faults(self) -> list[str] | None:
        """The fault kinds the server recorded in this session (None: the record cannot be read)."""
        headers = {"X-Helios-Admin-Token": self.config.admin_token} if self.config.admin_token else {}
        try:
            async with httpx.AsyncClient(base_url=self.config.url.rstrip("/"), timeout=10.0) as http:
                resp = await http.get(f"/admin/sessions/{self.session_id}/transcript", headers=headers)
        except httpx.HTTPError:
            return None
        return fault_kinds(resp.json()) if resp.status_code == 200 else None

    # ------------------------------------------------------------------ commands

    async def command(
        self,
        name: str,
        params: dict[str, Any] | None = None,
        uploads: dict[str, dict[str, Any]] | None = None,
    ) -> Received | None:
        """Send a command, report `command→answer <name>`.

        A refusal (`command_error`) or runtime error (v1 `Error`) raises `CommandRefused` (the session goes
        on); no answer in time fails the session (`command timeout`)."""
        label = f"command→answer {name}"
        since = self.client.now()
        t0 = time.monotonic()
        try:
            answer = await self._send_and_wait(name, params, uploads, since)
        except Exception as exc:
            raise self._fail(
                label, time.monotonic() - t0, f"{type(exc).__name__}: {exc}", "command timeout"
            ) from exc
        if answer.scope == "error":
            kind = "internal_error" if answer.type == "internal_error" else "command rejected"
            raise self._refused(label, answer.t - since, f"{kind}: {answer.data}", kind)
        refusal = next(
            (
                m
                for m in self.client.messages("command_error", since)
                if (m.data or {}).get("command") == name
            ),
            None,
        )
        if refusal is not None:
            reason = (refusal.data or {}).get("reason")
            raise self._refused(label, refusal.t - since, f"refused: {reason}", "command_error")
        self._ok(label, answer.t - since)
        return answer

    def _step_failed(self, step: str, seconds: float, error: str) -> StepFailed:
        self._note(Failure("no effect", step, error, seconds * 1000.0, terminal=False))
        return StepFailed(f"{step}: {error}")

    def _refused(self, step: str, seconds: float, error: str, kind: str) -> CommandRefused:
        self._note(Failure(kind, step, error, seconds * 1000.0, terminal=False))
        return CommandRefused(f"{step}: {error}")

    async def _send_and_wait(
        self,
        name: str,
        params: dict[str, Any] | None,
        uploads: dict[str, dict[str, Any]] | None,
        since: float,
    ) -> Received:
        """v1: the correlated reply; v0: the command's answer message or a `command_error` for it."""
        client, timeout = self.client, self.config.timeout
        if self.config.wire == "v1":
            answer = await client.command(name, params, uploads, timeout=timeout)
            assert answer is not None
            return answer
        client.send_command(name, params, uploads)
        waits = [
            asyncio.ensure_future(
                client.wait_message(V0_ANSWERS.get(name, "state"), since=since, timeout=timeout)
            ),
            asyncio.ensure_future(
                client.wait_message(
                    "command_error", lambda d: (d or {}).get("command") == name, since=since, timeout=timeout
                )
            ),
        ]
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            return next(iter(done)).result()
        finally:
            for wait in waits:
                if wait.done() and not wait.cancelled():
                    wait.exception()  # retrieved (both may have timed out)
                wait.cancel()

    async def _effect(
        self,
        name: str,
        send: Callable[[], Awaitable[Received | None]],
        predicate: Callable[[Markers], bool],
        expected_chunk: Callable[[Received | None], int | None] | None = None,
    ) -> None:
        """Send via `send`, then report `command→effect <name>` when a frame matches `predicate`."""
        label = f"command→effect {name}"
        future = self.expect_frame(predicate)
        screen = self.screen_chunk
        t0 = time.monotonic()
        try:
            answer = await send()
        except BaseException:
            future.cancel()
            raise
        try:
            t, markers = await asyncio.wait_for(future, timeout=4 * self.config.chunk_seconds + 10)
        except TimeoutError:
            raise self._step_failed(
                label, time.monotonic() - t0, "the video never showed the change"
            ) from None
        delta = markers.chunk - screen if screen is not None else 0
        want = expected_chunk(answer) if expected_chunk is not None else None
        if want is not None and markers.chunk != want:
            raise self._step_failed(label, t - t0, "took effect at another chunk than announced")
        self._ok(label, t - t0, max(0, delta))

    async def start(self, prompt: str) -> None:
        """set_seed, set_sr_scale, set_prompt, start (each retried once if refused); reports `first frame`."""
        await self.command_retried("set_seed", {"seed": self.config.seed})
        await self.command_retried("set_sr_scale", {"sr_scale": self.config.sr_scale})
        await self.command_retried("set_prompt", {"prompt": prompt})
        t0 = time.monotonic()
        await self.command_retried("start")
        try:
            await asyncio.wait_for(
                self._first.wait(), timeout=self.config.chunk_seconds + self.config.timeout
            )
        except TimeoutError:
            raise self._fail(
                "first frame", time.monotonic() - t0, "no video frame after start", "stall"
            ) from None
        self._ok("first frame", self.timeline.first_t - t0 if self.timeline.first_t else 0.0)

    async def command_retried(self, name: str, params: dict[str, Any] | None = None) -> Received | None:
        """A command the session cannot do without: a refusal is reported and the command sent once more."""
        try:
            return await self.command(name, params)
        except CommandRefused:
            return await self.command(name, params)

    async def set_prompt(self, prompt: str) -> None:
        pid = prompt_id(prompt)
        await self._effect(
            "set_prompt",
            lambda: self.command("set_prompt", {"prompt": prompt}),
            lambda m: m.prompt_id == pid,
            lambda answer: _int_field(answer, "chunk"),
        )

    async def set_image(self, png: bytes) -> None:
        ref = await self._timed(
            "upload", self.client.upload(png, name="load.png", mime_type="image/png"), "upload failure"
        )
        image_id = image_id_of(png)
        await self._effect(
            "set_image",
            lambda: self.command("set_image", uploads={"image": ref}),
            lambda m: m.image_id == image_id,
        )

    async def pause_resume(self, hold: float) -> None:
        """pause; wait for the chunk in progress to complete and `hold` seconds; resume (effect measured)."""
        since = self.client.now()
        self._holding = True  # from here to the resume, a gap in the video is on purpose
        try:
            paused = await self.command("pause")
            chunk = _int_field(paused, "chunk")
            if chunk is not None:
                await self.wait_chunk_complete(chunk, since=since)
            await asyncio.sleep(hold)
        except BaseException:
            self._holding = False
            raise
        self.timeline.rebase()
        self._last_frame, self._holding = None, False
        await self._effect("resume", lambda: self.command_retried("resume"), lambda m: m.frame == 0)

    async def wait_chunk_complete(
        self, chunk: int, *, since: float = 0.0, timeout: float | None = None
    ) -> None:
        """Wait for `chunk_complete` of chunk `chunk` (or a later one)."""
        budget = timeout if timeout is not None else (chunk + 2) * self.config.chunk_seconds + 10
        t0 = time.monotonic()
        try:
            await self.client.wait_message(
                "chunk_complete",
                lambda data: int((data or {}).get("chunk_index", -1)) >= chunk,
                since=since,
                timeout=budget,
            )
        except TimeoutError:
            raise self._fail(
                "chunk_complete", time.monotonic() - t0, "no chunk_complete in time", "stall"
            ) from None

    def summary(self) -> dict[str, Any]:
        return {
            **self.timeline.counters(),
            "lost_packets": self.video.lost_packets if self.video is not None else 0,
            "dropped_frames": self.video.dropped_frames if self.video is not None else 0,
            "max_lateness_ms": round(self.timeline.max_lateness * 1000.0, 1),
            "errors": list(self.errors),
            "session_id": self.session_id,
            "outcome": self.outcome,
            "kinds": [f.kind for f in self.failures],
            "retry_after": self.retry_after,
        }


def _detail(resp: httpx.Response) -> str:
    """`<status> <detail>` of an error answer (the detail clipped)."""
    try:
        detail = resp.json().get("detail")
    except ValueError:
        detail = resp.text
    return f"{resp.status_code} {str(detail)[:200]}"


def _retry_after(resp: httpx.Response) -> float | None:
    try:
        return min(RETRY_AFTER_MAX, max(0.0, float(resp.headers["Retry-After"])))
    except (KeyError, ValueError):
        return None


def _int_field(answer: Received | None, key: str) -> int | None:
    if answer is None or not isinstance(answer.data, dict):
        return None
    value = answer.data.get(key)
    return int(value) if isinstance(value, int | float) else None


def reference_png() -> bytes:
    """The same small PNG for every session (so every session shows the same image id)."""
    import numpy as np
    from PIL import Image

    y, x = np.mgrid[0:120, 0:200]
    rgb = np.stack([(x * 255 // 199), (y * 255 // 119), ((x + y) * 255 // 318)], axis=-1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


@dataclass
class ScenarioResult:
    ok: bool
    summary: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


async def run_scenario(
    config: SessionConfig,
    scenario: str,
    chunks: int,
    report: Report | None = None,
    *,
    stop: asyncio.Event | None = None,
) -> ScenarioResult:
    """Play `scenario` for `chunks` chunks in a fresh session (see :func:`play`)."""
    return await play(LoadSession(config, report), scenario, chunks, stop=stop)


async def play(
    session: LoadSession, scenario: str, chunks: int, *, stop: asyncio.Event | None = None
) -> ScenarioResult:
    """Connect `session`, play `scenario` for `chunks` chunks, then end the session (DELETE).

    Scenarios: ``prompts`` (a new prompt every other chunk), ``upload`` (upload + set_image), ``pause``
    (pause, hold half a chunk, resume), ``mixed`` (all three), ``hold`` (start and just watch). Steps run one
    after the other, each a quarter into the chunk after the previous step's effect (so the command lands
    mid-chunk and must show at the next chunk: chunk delta 1); the session ends after chunk ``chunks - 1``.
    A refused command skips its step; a server-side end or a dropped transport stops the scenario at once.
    Failures are reported by kind when the session has ended (load/accounting.py). If cancelled, the session
    is still closed and its outcome is ``cut``; ``session.summary()`` then has what was received.
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose from {', '.join(SCENARIOS)}")
    if not session.config.decode and scenario != "hold":
        raise ValueError(f"scenario {scenario!r} reads the marker band: it needs decoded video")
    loop = asyncio.get_running_loop()
    session.lost = loop.create_future()
    body = loop.create_task(_scenario(session, scenario, chunks, stop))
    t0 = time.monotonic()
    cut = True
    try:
        await asyncio.wait([body, session.lost], return_when=asyncio.FIRST_COMPLETED)
        cut = False
        if body.done():
            body.result()
        error = None
    except SessionFailed as exc:
        if isinstance(exc, StepFailed) and session.failures:
            session.failures[-1].terminal = True  # a command the session could not do without
        error = str(exc)
    except Exception as exc:  # anything unexpected still ends the session cleanly and is reported
        error = f"{type(exc).__name__}: {exc}"
        session.failures.append(Failure("client error", "session", error))
    finally:
        await _to_the_end(_wind_up(session, body, cut))
    if session.lost.done():
        error = session.lost.result().error
    if session.outcome in ("ok", "degraded"):
        session.report("session", (time.monotonic() - t0) * 1000.0, session.timeline.received, None)
    return ScenarioResult(session.outcome in ("ok", "degraded"), session.summary(), error)


async def _wind_up(session: LoadSession, body: asyncio.Task[None], cut: bool) -> None:
    await _stop_task(body)
    await session.finish(cut=cut)


async def _to_the_end(work: Awaitable[None]) -> None:
    """Await `work` to its end even if this task is cancelled meanwhile, then re-raise the cancellation.

    A Locust user stopped while its session is winding up (closing, DELETE, reading its record) must not
    cut that short: the session would stay open on the server or report no outcome to the accounting.
    The wind-up is bounded by its own timeouts."""
    task = asyncio.ensure_future(work)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:  # ours (the wind-up goes on), or the wind-up's own (result() raises)
            cancelled = True
    task.result()
    if cancelled:
        raise asyncio.CancelledError


async def _stop_task(task: asyncio.Task[None]) -> None:
    if not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=10)
    if task.done() and not task.cancelled():
        task.exception()  # retrieved: already handled through the session's failures


async def _scenario(session: LoadSession, scenario: str, chunks: int, stop: asyncio.Event | None) -> None:
    config = session.config
    await session.connect()
    await session.start(PROMPTS[0])
    steps: list[Callable[[], Awaitable[None]]] = []
    if scenario in ("upload", "mixed"):
        png = reference_png()
        steps.append(lambda: session.set_image(png))
    if scenario in ("pause", "mixed"):
        steps.append(lambda: session.pause_resume(0.5 * config.chunk_seconds))
    if scenario in ("prompts", "mixed"):
        steps += [_prompt_step(session, PROMPTS[i]) for i in range(1, chunks)]
    last = chunks - 1
    for step in steps:
        shown = session.screen_chunk or 0
        if shown + 3 > last or (stop is not None and stop.is_set()):
            break  # no room left for this step's effect before the session's last chunk
        # act a quarter into the next chunk on screen, so "next chunk" is unambiguous (delta 1)
        await session.wait_frame(lambda m, c=shown: m.chunk > c and m.frame >= CHUNK_FRAMES // 4)
        try:
            await step()
        except StepFailed:
            continue  # reported; the session goes on with the next step
    if stop is None or not stop.is_set():
        await session.wait_chunk_complete(last)


def _prompt_step(session: LoadSession, prompt: str) -> Callable[[], Awaitable[None]]:
    return lambda: session.set_prompt(prompt)

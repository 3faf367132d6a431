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

from conformance.wire_client import Received, WireClient
from mock_server.constants import CHUNK_FRAMES
from mock_server.media.markers import Markers, prompt_id
from mock_server.model.images import image_id_of
from mock_server.wire import reactor_wire_pb as pb

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
    """A step of the scenario failed; already reported under the step's name."""


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
        self._waiters: list[_FrameWaiter] = []
        self._tally: _ChunkTally | None = None
        self._keepalive: asyncio.Task[None] | None = None
        self._first = asyncio.Event()  # set by the first video frame
        self._closed = False

    # ------------------------------------------------------------------ reporting helpers

    def _ok(self, name: str, seconds: float, length: int = 0) -> None:
        self.report(name, seconds * 1000.0, length, None)

    def _fail(self, name: str, seconds: float, error: str) -> SessionFailed:
        self.errors.append(f"{name}: {error}")
        self.report(name, seconds * 1000.0, 0, error)
        return SessionFailed(f"{name}: {error}")

    async def _timed(self, name: str, awaitable: Awaitable[Any]) -> Any:
        t0 = time.monotonic()
        try:
            result = await awaitable
        except SessionFailed:
            raise
        except Exception as exc:  # any wire/HTTP/timeout problem fails this step
            raise self._fail(name, time.monotonic() - t0, f"{type(exc).__name__}: {exc}") from exc
        self._ok(name, time.monotonic() - t0)
        return result

    # ------------------------------------------------------------------ video

    def _on_frame(self, t: float, markers: Markers | None) -> None:
        lateness = self.timeline.add(t, markers)
        self._first.set()
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
        return await asyncio.wait_for(self.expect_frame(predicate), 3 * self.config.chunk_seconds + 10)

    @property
    def screen_chunk(self) -> int | None:
        """Chunk of the newest frame received (what the viewer sees)."""
        g = self.timeline.last_g
        return None if g is None else g // CHUNK_FRAMES

    # ------------------------------------------------------------------ lifecycle

    async def connect(self) -> None:
        """Create the session and connect; reports `connect→ready`."""
        t0 = time.monotonic()
        try:
            await self.client.connect(timeout=self.config.timeout)
        except Exception as exc:
            raise self._fail("connect→ready", time.monotonic() - t0, f"{type(exc).__name__}: {exc}") from exc
        self.connect_seconds = self.client.timings["connect_to_ready"]
        self._ok("connect→ready", self.connect_seconds)
        assert self.client.pc is not None
        self.video = attach(self.client.pc, self._on_frame, decode=self.config.decode)
        if self.config.wire == "v1":  # registered connections start with main_video paused (RT2 rule)
            self.client.notify_control("resume_track", pb.ResumeTrack(name="main_video"))
        self._keepalive = asyncio.get_running_loop().create_task(self._ping())

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

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._tally is not None:
            self._flush_tally(self._tally)
            self._tally = None
        if self._keepalive is not None:
            self._keepalive.cancel()
        for waiter in self._waiters:
            waiter.future.cancel()
        try:
            await asyncio.wait_for(self.client.close(), timeout=10)
        except Exception:  # closing is best effort
            pass

    # ------------------------------------------------------------------ commands

    async def command(
        self,
        name: str,
        params: dict[str, Any] | None = None,
        uploads: dict[str, dict[str, Any]] | None = None,
    ) -> Received | None:
        """Send a command, report `command→answer <name>`; a refusal or rejection fails the step."""
        client = self.client
        label = f"command→answer {name}"
        since = client.now()
        t0 = time.monotonic()
        try:
            if self.config.wire == "v1":
                answer = await client.command(name, params, uploads, timeout=self.config.timeout)
                assert answer is not None
                if answer.scope == "error":
                    raise self._fail(label, answer.t - since, f"rejected [{answer.type}] {answer.data}")
            else:
                client.send_command(name, params, uploads)
                answer = await client.wait_message(
                    V0_ANSWERS.get(name, "state"), since=since, timeout=self.config.timeout
                )
        except SessionFailed:
            raise
        except Exception as exc:
            raise self._fail(label, time.monotonic() - t0, f"{type(exc).__name__}: {exc}") from exc
        refusal = next(
            (m for m in client.messages("command_error", since) if (m.data or {}).get("command") == name),
            None,
        )
        if refusal is not None:
            raise self._fail(label, refusal.t - since, f"refused: {(refusal.data or {}).get('reason')}")
        self._ok(label, answer.t - since)
        return answer

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
            raise self._fail(label, time.monotonic() - t0, "the video never showed the change") from None
        delta = markers.chunk - screen if screen is not None else 0
        want = expected_chunk(answer) if expected_chunk is not None else None
        if want is not None and markers.chunk != want:
            raise self._fail(label, t - t0, f"took effect at chunk {markers.chunk}, announced {want}")
        self._ok(label, t - t0, max(0, delta))

    async def start(self, prompt: str) -> None:
        """set_seed, set_sr_scale, set_prompt, start; reports `first frame`."""
        await self.command("set_seed", {"seed": self.config.seed})
        await self.command("set_sr_scale", {"sr_scale": self.config.sr_scale})
        await self.command("set_prompt", {"prompt": prompt})
        t0 = time.monotonic()
        await self.command("start")
        try:
            await asyncio.wait_for(
                self._first.wait(), timeout=self.config.chunk_seconds + self.config.timeout
            )
        except TimeoutError:
            raise self._fail("first frame", time.monotonic() - t0, "no video frame after start") from None
        self._ok("first frame", self.timeline.first_t - t0 if self.timeline.first_t else 0.0)

    async def set_prompt(self, prompt: str) -> None:
        pid = prompt_id(prompt)
        await self._effect(
            "set_prompt",
            lambda: self.command("set_prompt", {"prompt": prompt}),
            lambda m: m.prompt_id == pid,
            lambda answer: _int_field(answer, "chunk"),
        )

    async def set_image(self, png: bytes) -> None:
        ref = await self._timed("upload", self.client.upload(png, name="load.png", mime_type="image/png"))
        image_id = image_id_of(png)
        await self._effect(
            "set_image",
            lambda: self.command("set_image", uploads={"image": ref}),
            lambda m: m.image_id == image_id,
        )

    async def pause_resume(self, hold: float) -> None:
        """pause; wait for the chunk in progress to complete and `hold` seconds; resume (effect measured)."""
        since = self.client.now()
        paused = await self.command("pause")
        chunk = _int_field(paused, "chunk")
        if chunk is not None:
            await self.wait_chunk_complete(chunk, since=since)
        await asyncio.sleep(hold)
        self.timeline.rebase()
        await self._effect("resume", lambda: self.command("resume"), lambda m: m.frame == 0)

    async def wait_chunk_complete(
        self, chunk: int, *, since: float = 0.0, timeout: float | None = None
    ) -> None:
        """Wait for `chunk_complete` of chunk `chunk` (or a later one)."""
        budget = timeout if timeout is not None else (chunk + 2) * self.config.chunk_seconds + 10
        await self.client.wait_message(
            "chunk_complete",
            lambda data: int((data or {}).get("chunk_index", -1)) >= chunk,
            since=since,
            timeout=budget,
        )

    def summary(self) -> dict[str, Any]:
        return {
            **self.timeline.counters(),
            "lost_packets": self.video.lost_packets if self.video is not None else 0,
            "dropped_frames": self.video.dropped_frames if self.video is not None else 0,
            "max_lateness_ms": round(self.timeline.max_lateness * 1000.0, 1),
            "errors": list(self.errors),
        }


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
    If cancelled, the session is still closed; ``session.summary()`` then has what was received.
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose from {', '.join(SCENARIOS)}")
    if not session.config.decode and scenario != "hold":
        raise ValueError(f"scenario {scenario!r} reads the marker band: it needs decoded video")
    config = session.config
    t0 = time.monotonic()
    try:
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
            await step()
        if stop is None or not stop.is_set():
            await session.wait_chunk_complete(last)
        session.report("session", (time.monotonic() - t0) * 1000.0, session.timeline.received, None)
        return ScenarioResult(True, session.summary())
    except SessionFailed as exc:
        return ScenarioResult(False, session.summary(), str(exc))
    except Exception as exc:  # anything unexpected still ends the session cleanly and is reported
        error = f"{type(exc).__name__}: {exc}"
        session.report("session", (time.monotonic() - t0) * 1000.0, session.timeline.received, error)
        return ScenarioResult(False, session.summary(), error)
    finally:
        await session.close()


def _prompt_step(session: LoadSession, prompt: str) -> Callable[[], Awaitable[None]]:
    return lambda: session.set_prompt(prompt)

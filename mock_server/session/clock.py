"""The chunk clock: 33 frames per chunk at fps × speed, chunks back to back while a client is live."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from mock_server.config import Settings
from mock_server.constants import CHUNK_FRAMES
from mock_server.logging_setup import SessionLogger
from mock_server.media.feed import FrameFeed, FrameRef
from mock_server.media.frames import ChunkRenderer
from mock_server.model.helios import Helios, Message
from mock_server.model.plan import ChunkPlan

log = logging.getLogger("helios_mock.session")

PREDICT_FROM_FRAME = 4  # at this frame of a chunk the next chunk's plan is announced (and again after each
# command), so its frames are encoded ahead of time, one chunk after another
PLAN_HISTORY = 256  # plans of the latest chunks kept per session (the inspector renders their frames)


class ChunkClock:
    """Drives Helios chunk by chunk and publishes each frame to the feed the video tracks read."""

    def __init__(
        self,
        session_id: str,
        settings: Settings,
        helios: Helios,
        feed: FrameFeed,
        *,
        has_live_client: Callable[[], bool],
        broadcast: Callable[[Message], None],
        on_chunk_begin: Callable[[int], Awaitable[None]] | None = None,
        on_chunk_generated: Callable[[], None] = lambda: None,
    ) -> None:
        self._session_id = session_id
        self._log = SessionLogger(log, session=session_id)
        self._on_chunk_generated = on_chunk_generated  # the chunks metric
        self._settings = settings
        self._helios = helios
        self._feed = feed
        self._has_live_client = has_live_client
        self._broadcast = broadcast
        self._wake_event = asyncio.Event()
        self._stopped = False
        self._on_chunk_begin = on_chunk_begin
        self._commands_since = False  # a command arrived since the next chunk was last announced
        self._stall_for = 0.0  # seconds of stall still to serve before the next frame
        self._slow_chunks = 0  # chunks still to pace slower
        self._slow_factor = 1.0
        self.chunks_generated = 0
        self.plans: deque[tuple[float, ChunkPlan]] = deque(maxlen=PLAN_HISTORY)  # (monotonic begin, plan)
        self.on_chunk_done: Callable[[ChunkPlan], None] = lambda plan: None  # the recording's feed

    def stall(self, seconds: float) -> None:
        """No frame and no chunk_complete for `seconds` (wall clock), starting before the next frame."""
        self._stall_for += seconds

    def slow(self, count: int, factor: float) -> None:
        """The next `count` chunks (the one in progress counts when it has frames left) take `factor` x."""
        self._slow_chunks = count
        self._slow_factor = factor

    def wake(self) -> None:
        """Something changed (a client became live, a command arrived): look again."""
        self._commands_since = True  # the next chunk's plan may have changed: announce it again
        self._wake_event.set()

    def stop(self) -> None:
        self._stopped = True
        self._wake_event.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        next_t: float | None = None
        while not self._stopped:
            plan = self._helios.begin_chunk() if self._has_live_client() else None
            if plan is None:
                next_t = None
                self._wake_event.clear()
                await self._wake_event.wait()
                continue
            self._log.info("chunk %d begins (prompt %r)", plan.chunk_index, plan.prompt[:60])
            self.plans.append((time.monotonic(), plan))
            if self._on_chunk_begin is not None:
                await self._on_chunk_begin(plan.chunk_index)
                if self._stopped:
                    return
            start = loop.time() if next_t is None else next_t
            next_t = await self._play(plan, start)

    async def _play(self, plan: ChunkPlan, next_t: float) -> float | None:
        """Publish the chunk's frames on time; the next chunk's start, or None when a reset dropped it."""
        loop = asyncio.get_running_loop()
        # frames are rendered only if raw frames are needed, at most once each
        renderer = functools.cache(functools.partial(ChunkRenderer, plan, self._settings.native_size))
        for frame_index in range(CHUNK_FRAMES):
            if self._stall_for > 0:
                next_t = await self._serve_stall(next_t)
            self._feed.publish(FrameRef(plan, frame_index, _cached(renderer, frame_index)))
            next_t += self._frame_interval()
            if frame_index == PREDICT_FROM_FRAME or (
                frame_index > PREDICT_FROM_FRAME and self._commands_since
            ):
                self._announce_next(next_t + (CHUNK_FRAMES - 1 - frame_index) * self._frame_interval())
            await asyncio.sleep(max(0.0, next_t - loop.time()))
            if not self._helios.chunk_in_progress:  # reset dropped the chunk
                self._feed.chunk_over = True
                return None
        self._feed.chunk_over = True
        if self._slow_chunks > 0:
            self._slow_chunks -= 1
        if self._stall_for > 0:  # a stall that began after the last frame holds chunk_complete back
            next_t = await self._serve_stall(next_t)
        self.chunks_generated += 1
        self._on_chunk_generated()
        self.on_chunk_done(plan)
        for message in self._helios.complete_chunk():
            self._broadcast(message)
        return next_t

    def _announce_next(self, loop_due: float) -> None:
        """Tell the tracks what the next chunk will show (as of now) and when, so they can encode it ahead."""
        self._commands_since = False
        upcoming = self._helios.predict_next_plan()
        if upcoming != self._feed.upcoming:
            loop = asyncio.get_running_loop()
            self._feed.upcoming = upcoming
            self._feed.upcoming_at = time.monotonic() + max(0.0, loop_due - loop.time())

    def _frame_interval(self) -> float:
        factor = self._slow_factor if self._slow_chunks > 0 else 1.0
        return self._settings.frame_interval * factor

    async def _serve_stall(self, next_t: float) -> float:
        """Sit out the pending stall; the schedule moves on by its length."""
        loop = asyncio.get_running_loop()
        seconds, self._stall_for = self._stall_for, 0.0
        self._log.info("generation stalls for %g s", seconds)
        await asyncio.sleep(seconds)
        return max(next_t, loop.time() - seconds) + seconds


def _cached(renderer: Callable[[], ChunkRenderer], frame_index: int) -> Callable[[], Any]:
    """Render a frame at most once, however many connections send it (never, with shared media)."""
    cache: list[Any] = []

    def render() -> Any:
        if not cache:
            cache.append(renderer().frame(frame_index))
        return cache[0]

    return render

"""The chunk clock: 33 frames per chunk at fps × speed, chunks back to back while a client is live."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import Any

from mock_server.config import Settings
from mock_server.constants import CHUNK_FRAMES
from mock_server.media.feed import FrameFeed, FrameRef
from mock_server.media.frames import ChunkRenderer
from mock_server.model.helios import Helios, Message
from mock_server.model.plan import ChunkPlan

log = logging.getLogger("helios_mock.session")


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
    ) -> None:
        self._session_id = session_id
        self._settings = settings
        self._helios = helios
        self._feed = feed
        self._has_live_client = has_live_client
        self._broadcast = broadcast
        self._wake_event = asyncio.Event()
        self._stopped = False
        self.chunks_generated = 0
        self.on_chunk_done: Callable[[ChunkPlan], None] = lambda plan: None  # the recording's feed

    def wake(self) -> None:
        """Something changed (a client became live, a command arrived): look again."""
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
            log.info(
                "session %s: chunk %d begins (prompt %r)",
                self._session_id,
                plan.chunk_index,
                plan.prompt[:60],
            )
            start = loop.time() if next_t is None else next_t
            next_t = await self._play(plan, start)

    async def _play(self, plan: ChunkPlan, next_t: float) -> float | None:
        """Publish the chunk's frames on time; the next chunk's start, or None when a reset dropped it."""
        loop = asyncio.get_running_loop()
        interval = self._settings.frame_interval
        # frames are rendered only if raw frames are needed, at most once each
        renderer = functools.cache(functools.partial(ChunkRenderer, plan, self._settings.native_size))
        for frame_index in range(CHUNK_FRAMES):
            self._feed.publish(FrameRef(plan, frame_index, _cached(renderer, frame_index)))
            next_t += interval
            await asyncio.sleep(max(0.0, next_t - loop.time()))
            if not self._helios.chunk_in_progress:  # reset dropped the chunk
                self._feed.chunk_over = True
                return None
        self._feed.chunk_over = True
        self.chunks_generated += 1
        self.on_chunk_done(plan)
        for message in self._helios.complete_chunk():
            self._broadcast(message)
        return next_t


def _cached(renderer: Callable[[], ChunkRenderer], frame_index: int) -> Callable[[], Any]:
    """Render a frame at most once, however many connections send it (never, with shared media)."""
    cache: list[Any] = []

    def render() -> Any:
        if not cache:
            cache.append(renderer().frame(frame_index))
        return cache[0]

    return render

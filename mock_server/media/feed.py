"""The session's frame feed: the chunk clock publishes each frame once; every output track reads it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from aiortc.mediastreams import MediaStreamError

from mock_server.model.plan import ChunkPlan


@dataclass(frozen=True)
class FrameRef:
    """Frame `index` of the chunk `plan`; `pixels()` renders it (once, however many tracks ask)."""

    plan: ChunkPlan
    index: int
    pixels: Callable[[], np.ndarray]


class FrameFeed:
    """Latest-frame mailbox shared by all output tracks of a session."""

    def __init__(self) -> None:
        self.seq = 0
        self.latest: FrameRef | None = None
        self.chunk_over = False  # the latest frame's chunk completed (or was dropped): nothing to join
        self.upcoming: ChunkPlan | None = None  # the next chunk's plan as predicted now (to encode ahead)
        self.upcoming_at = 0.0  # time.monotonic() at which the upcoming chunk's first frame is due
        self._changed = asyncio.Event()
        self.closed = False

    def publish(self, ref: FrameRef) -> None:
        self.seq += 1
        self.latest = ref
        self.chunk_over = False
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def close(self) -> None:
        self.closed = True
        self._changed.set()

    async def wait_beyond(self, seq: int) -> None:
        """Return once a frame newer than `seq` was published (MediaStreamError when the feed closed)."""
        while self.seq <= seq and not self.closed:
            await self._changed.wait()
        if self.closed:
            raise MediaStreamError

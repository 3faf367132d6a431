"""The `main_video` output track: a MediaStreamTrack fed by the session's frame feed.

The chunk clock publishes each frame once per session; every connection's track takes the newest frame
when its encoder is ready for one. A track that falls behind skips frames (counted), it never queues.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from collections.abc import Callable

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

VIDEO_CLOCK_RATE = 90_000
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK_RATE)


class FrameFeed:
    """Latest-frame mailbox shared by all output tracks of a session."""

    def __init__(self) -> None:
        self._seq = 0
        self._latest: Callable[[], np.ndarray] | None = None
        self._changed = asyncio.Event()
        self._closed = False

    @property
    def seq(self) -> int:
        return self._seq

    def publish(self, render: Callable[[], np.ndarray]) -> None:
        """Offer a new frame; `render` returns its (H, W, 3) RGB pixels (called lazily, cached by caller)."""
        self._seq += 1
        self._latest = render
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def close(self) -> None:
        self._closed = True
        self._changed.set()

    async def next_after(self, seq: int) -> tuple[int, Callable[[], np.ndarray]]:
        while self._seq <= seq:
            if self._closed:
                raise MediaStreamError
            await self._changed.wait()
        if self._closed:
            raise MediaStreamError
        assert self._latest is not None
        return self._seq, self._latest


class HeliosVideoTrack(MediaStreamTrack):
    """Sends the session's frames to one connection; `paused` gates it (PauseTrack/ResumeTrack)."""

    kind = "video"

    def __init__(self, feed: FrameFeed, *, paused: bool = False) -> None:
        super().__init__()
        self._feed = feed
        self._seen = feed.seq  # frames published before this track existed are not replayed
        self._resumed = asyncio.Event()
        if not paused:
            self._resumed.set()
        self._t0: float | None = None
        self.frames_sent = 0
        self.frames_skipped = 0

    @property
    def paused(self) -> bool:
        return not self._resumed.is_set()

    def set_paused(self, paused: bool) -> None:
        if paused:
            self._resumed.clear()
        else:
            self._resumed.set()

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        while True:
            await self._resumed.wait()
            seq, render = await self._feed.next_after(self._seen)
            if self.paused:  # paused while waiting: drop this frame, wait for resume
                self._seen = seq
                continue
            break
        if self.frames_sent:
            self.frames_skipped += max(0, seq - self._seen - 1)
        self._seen = seq
        frame = av.VideoFrame.from_ndarray(render(), format="rgb24")
        now = time.monotonic()
        if self._t0 is None:
            self._t0 = now
        frame.pts = int((now - self._t0) * VIDEO_CLOCK_RATE)
        frame.time_base = VIDEO_TIME_BASE
        self.frames_sent += 1
        return frame

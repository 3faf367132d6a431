"""The session's recording of main_video, and the clip windows cut from it.

A chunk's frames are a pure function of its plan (media.frames), so the recording keeps the plan of every
completed chunk in the order the session generated them: that is the whole recording, losslessly, at a few
hundred bytes a chunk (a reference image is shared with Helios, and counted once). The clip routes encode
fragments from these plans through the process-wide fragment cache (media.fmp4).

Media time counts the frames of recorded chunks: the chunk at position `seq` (0, 1, 2, ... in generation
order) covers frames [33·seq, 33·seq + 33) of the recording, whatever its `chunk_index` (a rewind or reset
makes chunk indices repeat; media time only moves forward). A chunk dropped by `reset` before it completed
is not recorded. Retention keeps the newest `recording_retention` seconds; clips stay whole chunks.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from mock_server.constants import CHUNK_FRAMES
from mock_server.logging_setup import SessionLogger
from mock_server.model.plan import ChunkPlan

log = logging.getLogger("helios_mock.session")

RECORDER_DISABLED = "recorder disabled"  # the reason text reactor-sdk maps to RecorderDisabledError
NOTHING_RECORDED = "nothing recorded yet: start generation and ask again once the first frames are out"
MAX_IMAGE_BYTES = 64 << 20  # reference-image pixels one recording may hold; older chunks go first
PLAN_BYTES = 400  # measured size of one recorded chunk without its image (tests/test_clips_unit.py)


class ClipRefused(Exception):
    """A clip or recording request that cannot be served; `reason` goes into clipFailed as is."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ClipWindow:
    """Whole chunks [first_seq, last_seq] of one recording, as cut when the client asked."""

    recording_id: str
    session_id: str
    kind: str  # "clip" | "recording"
    first_seq: int
    last_seq: int
    now_frames: int  # media position (frames) when the request arrived
    fps: float
    asked_at: float  # wall clock (time.time()) of the request

    @property
    def start_marker(self) -> float:
        return self.first_seq * CHUNK_FRAMES / self.fps

    @property
    def end_marker(self) -> float:
        return (self.last_seq + 1) * CHUNK_FRAMES / self.fps

    @property
    def now_marker(self) -> float:
        return self.now_frames / self.fps

    def predicted_ready_at_ms(self, speed: float) -> int:
        """Wall-clock ms when the chunk holding the end of the window completes, at the clock's speed."""
        pending = (self.last_seq + 1) * CHUNK_FRAMES - self.now_frames
        return round((self.asked_at + pending / (self.fps * speed)) * 1000)


def _nothing_in_progress() -> int:
    return 0


def valid_duration(duration: float) -> float:
    """The requested clip length in seconds; `ClipRefused` unless it is a positive finite number."""
    if not isinstance(duration, int | float) or not math.isfinite(duration) or duration <= 0:
        raise ClipRefused(
            f"invalid duration: duration_seconds must be a positive number of seconds, got {duration!r}"
        )
    return float(duration)


class Recording:
    """The plans of the session's completed chunks, newest `retention` seconds, in media order."""

    def __init__(
        self,
        session_id: str,
        *,
        enabled: bool,
        fps: float,
        retention: float,
        in_progress: Callable[[], int],
    ) -> None:
        self.id = secrets.token_urlsafe(12)
        self.session_id = session_id
        self.enabled = enabled
        self.fps = fps
        self.max_chunks = max(1, math.ceil(retention * fps / CHUNK_FRAMES))
        self._in_progress = in_progress  # frames of the chunk being generated that are already out
        self._chunks: deque[ChunkPlan] = deque()
        self.next_seq = 0  # media position of the next chunk to complete
        self.base_url = ""  # scheme://host[:port] clients reach this session on (set by the HTTP layer)
        self.keep_until = 0.0  # wall clock: the last clip URL handed out expires then
        self.released = False

    @property
    def first_seq(self) -> int:
        return self.next_seq - len(self._chunks)

    def add_chunk(self, plan: ChunkPlan) -> None:
        """The chunk clock completed a chunk: append it, drop what falls out of retention."""
        if not self.enabled or self.released:
            return
        self._chunks.append(plan)
        self.next_seq += 1
        while len(self._chunks) > self.max_chunks or (
            len(self._chunks) > 1 and self.image_bytes() > MAX_IMAGE_BYTES
        ):
            self._chunks.popleft()

    def plan(self, seq: int) -> ChunkPlan | None:
        """The plan recorded at media position `seq`; None when not yet recorded or no longer retained."""
        first = self.first_seq
        if self.released or not first <= seq < self.next_seq:
            return None
        return self._chunks[seq - first]

    def cut(self, kind: str, duration: float | None, link_ttl: float) -> ClipWindow:
        """The window a clip (the last `duration` s) or recording (all retained) request gets; ClipRefused."""
        if not self.enabled:
            raise ClipRefused(RECORDER_DISABLED)
        seconds = valid_duration(duration) if kind == "clip" and duration is not None else None
        now_frames = self.next_seq * CHUNK_FRAMES + self._in_progress()
        if now_frames == 0 or self.released:
            raise ClipRefused(NOTHING_RECORDED)
        last_seq = (now_frames - 1) // CHUNK_FRAMES
        first_seq = self.first_seq
        if seconds is not None:
            start_frame = max(0, now_frames - round(seconds * self.fps))
            first_seq = max(first_seq, min(start_frame // CHUNK_FRAMES, last_seq))
        asked_at = time.time()
        self.keep_until = max(self.keep_until, asked_at + link_ttl)
        return ClipWindow(self.id, self.session_id, kind, first_seq, last_seq, now_frames, self.fps, asked_at)

    def image_bytes(self) -> int:
        images = {id(p.image): p.image.pixels.nbytes for p in self._chunks if p.image is not None}
        return sum(images.values())

    def nbytes(self) -> int:
        """Estimated memory the recording holds (plans plus distinct reference images)."""
        return len(self._chunks) * PLAN_BYTES + self.image_bytes()

    def session_closed(self) -> None:
        """Keep the plans while clip URLs handed out are valid, then let them go.

        The session's callback is dropped here: the closed session's summary keeps this recording, and
        the callback (a bound method) would keep the whole session alive with it. A chunk that was in
        progress at the end never completes, so nothing is in progress any more.
        """
        self._in_progress = _nothing_in_progress
        remaining = self.keep_until - time.time()
        if remaining <= 0:
            self.release()
            return
        asyncio.get_running_loop().call_later(remaining, self.release)

    def release(self) -> None:
        if not self.released:
            SessionLogger(log, session=self.session_id).info(
                "recording released (%d chunks)", len(self._chunks)
            )
        self.released = True
        self._chunks.clear()

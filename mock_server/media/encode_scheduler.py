"""Encoder threads that serve the most urgent frame first (earliest deadline first).

Each job encodes the frames of one chunk, in order, with one encoder context. A frame of a job is due at
``t0 + (index - start) * interval``. A queued job starts at its lead time (`EncodeScheduler._lead`: twice
the queued work at the measured speed, plus a margin, before its first frame is due), so a chunk announced
ahead is not encoded while a command may still change it. A thread keeps encoding its current job ahead of
time (so its encoder context is soon free again) until another queued job has a frame due within
``URGENT_FRAMES`` intervals, then switches to that one. The server runs one such thread in each encoder
worker process (``encode_workers.py``); ``EncodedChunkCache(encoders="threads")`` runs them in-process.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from mock_server.constants import CHUNK_FRAMES
from mock_server.media.encoder import ENCODERS, EncoderPool, NativeFrames, ReusedEncoder
from mock_server.model.plan import ChunkPlan

log = logging.getLogger("helios_mock.media")

URGENT_FRAMES = 2.0
LEAD_MARGIN = 0.2  # seconds: a job starts at least this long before its first frame is due
LEAD_FACTOR = 2.0  # and early enough for twice the queued work at the measured speed
Deliver = Callable[[int, "bytes | None", "str | None"], None]  # (index, packet, error); thread-safe
DeliverMany = Callable[[list[tuple[int, "bytes | None", "str | None"]]], None]  # several at once


@dataclass(eq=False)
class EncodeJob:
    """Frames ``start``..32 of ``plan``; the first one is a key frame."""

    plan: ChunkPlan
    native_size: tuple[int, int]
    mime_type: str
    deliver: Deliver
    t0: float  # time.monotonic() at which frame `start` is due
    interval: float
    start: int = 0
    wanted: Callable[[], bool] = lambda: True  # False: nobody will send the rest; stop early
    deliver_many: DeliverMany | None = None  # several packets with one call (else `deliver` for each)
    next: int = field(init=False)
    frames: NativeFrames | None = field(default=None, init=False)
    encoder: ReusedEncoder | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.next = self.start

    @property
    def due(self) -> float:
        return self.t0 + (self.next - self.start) * self.interval

    @property
    def done(self) -> bool:
        return self.next >= CHUNK_FRAMES

    def deliver_batch(self, items: list[tuple[int, bytes | None, str | None]]) -> None:
        if self.deliver_many is not None:
            self.deliver_many(items)
        else:
            for item in items:
                self.deliver(*item)


class EncodeScheduler:
    """A fixed set of worker threads (one per core by default) and a deadline-ordered job queue."""

    def __init__(self, pool: EncoderPool, workers: int | None = None) -> None:
        self.pool = pool
        self.workers = max(1, workers or os.cpu_count() or 1)
        self._queue: list[tuple[float, int, EncodeJob]] = []
        self._order = itertools.count()
        self._cv = threading.Condition()
        self._threads: list[threading.Thread] = []
        self.frames_encoded = 0
        self.on_encoded: Callable[[float], None] = lambda seconds: None  # encode time of one frame (metrics)
        self.abandoned = 0  # jobs stopped early because no track wanted the rest
        self.frame_seconds = 0.005  # moving average of rendering + encoding one frame
        self.on_pause: Callable[[], None] = lambda: None  # a worker leaves its job (switches or waits)

    def submit(self, job: EncodeJob) -> None:
        with self._cv:
            if not self._threads:
                self._start_workers()
            heapq.heappush(self._queue, (job.due, next(self._order), job))
            self._cv.notify()

    def _start_workers(self) -> None:
        for n in range(self.workers):
            thread = threading.Thread(target=self._work, name=f"helios-encoder-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _take(self) -> EncodeJob:
        """The most urgent job, once it is time to start it (see `_lead`)."""
        with self._cv:
            while True:
                if not self._queue:
                    self._cv.wait()
                    continue
                wait = self._queue[0][0] - self._lead() - time.monotonic()
                if wait <= 0:
                    return heapq.heappop(self._queue)[2]
                self._cv.wait(wait)  # a job announced ahead: a command may still change it

    def _lead(self) -> float:
        """How long before its first frame is due the next job starts: the queued work at the measured
        seconds per frame, with room to spare. Starting earlier would only waste work when a command
        changes the chunk before it begins (the clock announces chunks about a second ahead)."""
        frames = sum(CHUNK_FRAMES - job.next for _, _, job in self._queue)
        return LEAD_MARGIN + LEAD_FACTOR * frames * self.frame_seconds

    def _switch(self, job: EncodeJob) -> EncodeJob:
        """Keep `job` unless a queued job is due within URGENT_FRAMES intervals and sooner than it."""
        with self._cv:
            if not self._queue:
                return job
            due, _, other = self._queue[0]
            if due > time.monotonic() + URGENT_FRAMES * other.interval or due >= job.due:
                return job
            heapq.heapreplace(self._queue, (job.due, next(self._order), job))
            return other

    def _work(self) -> None:
        job = self._take()
        while True:
            self._step(job)
            if job.done:
                self.on_pause()
                job = self._take()
            else:
                other = self._switch(job)
                if other is not job:
                    self.on_pause()
                job = other

    def behind(self) -> bool:
        """True when a queued frame is already overdue by more than URGENT_FRAMES intervals."""
        with self._cv:
            if not self._queue:
                return False
            due, _, job = self._queue[0]
            return due < time.monotonic() - URGENT_FRAMES * job.interval

    def _step(self, job: EncodeJob) -> None:
        """Encode the next frame of `job` (and release its encoder after the last one)."""
        name = ENCODERS[job.mime_type]
        if not job.wanted():
            self.abandoned += 1
            job.next = CHUNK_FRAMES
            if job.encoder is not None:  # the next chunk on it starts with a key frame anyway
                self.pool.give_back(name, job.encoder)
            job.encoder, job.frames = None, None
            return
        try:
            if job.frames is None:
                job.frames = NativeFrames(job.plan, job.native_size)
                job.encoder = self.pool.take(name, *job.frames.output_size)
            assert job.encoder is not None
            began = time.perf_counter()
            frame = job.frames.frame(job.next)
            started = time.perf_counter()
            data = job.encoder.encode(frame, key=job.next == job.start)
            ended = time.perf_counter()
            self.on_encoded(ended - started)
            self.frame_seconds += 0.05 * (ended - began - self.frame_seconds)
        except Exception as exc:  # never leave a sender waiting forever
            log.exception("encoding chunk %d frame %d failed", job.plan.chunk_index, job.next)
            error = f"encoding chunk {job.plan.chunk_index} failed: {exc}"
            for index in range(job.next, CHUNK_FRAMES):
                job.deliver(index, None, error)
            job.next = CHUNK_FRAMES
            job.encoder = None  # its state is unknown: not reused
            return
        job.deliver(job.next, data, None)
        job.next += 1
        with self._cv:
            self.frames_encoded += 1
        if job.done and job.encoder is not None:
            self.pool.give_back(name, job.encoder)
            job.encoder, job.frames = None, None

"""Encode each distinct chunk once; every session showing that chunk sends the same packets.

Frames are a deterministic function of the chunk plan, so the encoded chunk is too. A chunk starts with a
key frame, so its 33 packets decode on their own. Encoding runs in worker processes
(``encode_workers.py``; ``encoders="threads"`` runs the same scheduler on threads of this process instead),
frame by frame, most urgent first; a sender can take packet i as soon as it exists. Only encoded packets
are kept (no raw frames), and only while they may still be asked for: a chunk no track asked for in
``keep_seconds`` is dropped. The cache holds a chunk for as long as a track sends it (weakly: the tracks own
it), and keeps the most recently used chunks besides, up to `RECENT_BYTES` of packets, so sessions showing
the same content a little later find it encoded while memory stays flat under churn of sessions that each
show content of their own (docs/LIMITS.md, "Memory under churn").

A connection that asks for a key frame mid-chunk (RTCP PLI/FIR) gets a private ``recovery`` chunk: the rest
of the current chunk, re-encoded from the frame it is at, starting with a key frame.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable

from aiortc.codecs.vpx import DEFAULT_BITRATE

from mock_server.constants import CHUNK_FRAMES
from mock_server.media.encode_scheduler import EncodeJob, EncodeScheduler
from mock_server.media.encode_workers import ProcessEncoders
from mock_server.media.encoder import ENCODERS, EncoderPool
from mock_server.model.plan import ChunkPlan, ReferenceImage

EVICT_INTERVAL = 0.05  # seconds between two looks at the cache's size
RECENT_BYTES = 4 << 20  # packet bytes of recently used chunks kept beyond those a track is sending
_image_digests: weakref.WeakKeyDictionary[ReferenceImage, bytes] = weakref.WeakKeyDictionary()

__all__ = ["ENCODERS", "ChunkCancelled", "EncodedChunk", "EncodedChunkCache", "content_key"]


def _image_digest(image: ReferenceImage | None) -> bytes:
    if image is None:
        return b""
    digest = _image_digests.get(image)
    if digest is None:
        digest = hashlib.sha256(image.pixels.tobytes()).digest()
        _image_digests[image] = digest
    return digest


def content_key(plan: ChunkPlan, native_size: tuple[int, int], mime_type: str) -> Hashable:
    """Everything the encoded chunk depends on."""
    return (
        mime_type,
        native_size,
        plan.chunk_index,
        plan.prompt,
        plan.seed,
        _image_digest(plan.image),
        plan.image_strength if plan.image is not None else None,
        plan.sr_scale,
    )


class ChunkCancelled(Exception):
    """The awaited packet will never come: every reader left the chunk (the reader asks for the next one)."""


class EncodedChunk:
    """The packets of one chunk for one codec (from frame `start` on), filled progressively by a worker."""

    def __init__(self, loop: asyncio.AbstractEventLoop, start: int = 0) -> None:
        self._loop = loop
        self.start = start
        self.packets: list[bytes | None] = [None] * CHUNK_FRAMES
        self._available = [asyncio.Event() for _ in range(CHUNK_FRAMES)]
        self.error: str | None = None
        self.nbytes = 0
        self.last_used = time.monotonic()
        self.readers = 0  # tracks sending from this chunk now
        self.cancelled = False  # every reader left before the chunk was complete: the worker stops
        self.on_cancel: Callable[[], None] = lambda: None

    def acquire(self) -> None:
        self.readers += 1

    def release(self) -> None:
        self.readers -= 1
        if self.readers <= 0 and not self._available[CHUNK_FRAMES - 1].is_set() and not self.cancelled:
            self.cancelled = True
            self.on_cancel()
            for available in self._available:  # a reader still awaiting a packet gets ChunkCancelled
                available.set()

    def wanted(self) -> bool:
        """Read by the worker thread (a plain attribute read)."""
        return not self.cancelled

    async def packet(self, index: int) -> bytes:
        if index < self.start:
            raise IndexError(f"this chunk holds frames {self.start}..{CHUNK_FRAMES - 1}, not {index}")
        await self._available[index].wait()
        data = self.packets[index]
        if data is None:
            if self.cancelled and self.error is None:
                raise ChunkCancelled(f"chunk left by every reader before packet {index} was encoded")
            raise RuntimeError(self.error or "chunk encoding failed")
        return data

    def deliver_threadsafe(self, index: int, data: bytes | None, error: str | None) -> None:
        """One packet, from an encoder thread."""
        self.deliver_many_threadsafe([(index, data, error)])

    def deliver_many_threadsafe(self, items: list[tuple[int, bytes | None, str | None]]) -> None:
        """Several packets at once (one wake-up of the event loop), from an encoder or reader thread; nothing
        to do once the event loop is gone (server shutting down)."""
        try:
            self._loop.call_soon_threadsafe(self._deliver_many, items)
        except RuntimeError:  # the loop is closed
            pass

    def _deliver_many(self, items: list[tuple[int, bytes | None, str | None]]) -> None:
        for index, data, error in items:
            self._deliver(index, data, error)

    def _deliver(self, index: int, data: bytes | None, error: str | None) -> None:
        if self.cancelled:
            return  # encoded before the worker heard of the cancellation: nobody reads it
        self.packets[index] = data
        self.nbytes += len(data or b"")
        if error is not None:
            self.error = error
        self._available[index].set()


class EncodedChunkCache:
    """Process-wide, byte- and age-bounded LRU of encoded chunks, shared by all sessions."""

    def __init__(
        self,
        native_size: tuple[int, int],
        *,
        frame_interval: float = 1 / 24,
        max_bytes: int = RECENT_BYTES,
        keep_seconds: float = 30.0,
        evict_every: float = EVICT_INTERVAL,
        bitrate: int = DEFAULT_BITRATE,
        workers: int | None = None,
        encoders: str = "processes",
        on_encoded: Callable[[float], None] = lambda seconds: None,
    ) -> None:
        """`encoders`: "processes" (default) or "threads" (in this process, shares its GIL).

        `on_encoded(seconds)`: called (from a worker or reader thread) with each frame's encode time."""
        self.native_size = native_size
        self.frame_interval = frame_interval
        self.max_bytes = max_bytes
        self.keep_seconds = keep_seconds
        self.scheduler: EncodeScheduler | ProcessEncoders
        if encoders == "threads":
            self.scheduler = EncodeScheduler(EncoderPool(bitrate), workers)
        elif encoders == "processes":
            self.scheduler = ProcessEncoders(bitrate, workers)
        else:
            raise ValueError(f"encoders must be 'processes' or 'threads', not {encoders!r}")
        self.scheduler.on_encoded = on_encoded
        self._chunks: OrderedDict[Hashable, EncodedChunk] = OrderedDict()  # recent ones (strong)
        self._in_use: weakref.WeakValueDictionary[Hashable, EncodedChunk] = weakref.WeakValueDictionary()
        self.evict_every = evict_every
        self._evicted_at = -evict_every
        self.hits = 0
        self.misses = 0
        self.recoveries = 0
        self.recoveries_refused = 0

    @property
    def frames_encoded(self) -> int:
        return self.scheduler.frames_encoded

    def chunk(self, plan: ChunkPlan, mime_type: str, due: float | None = None) -> EncodedChunk:
        """The encoded chunk for this plan and codec; starts encoding it on first use.

        `due`: time.monotonic() at which its first frame is due (default now); a chunk asked for ahead of
        time is encoded when the encoders have nothing more urgent."""
        key = content_key(plan, self.native_size, mime_type)
        found = self._chunks.get(key) or self._in_use.get(key)
        if found is not None and not found.cancelled:
            self.hits += 1
            found.last_used = time.monotonic()
            self._chunks[key] = found
            self._chunks.move_to_end(key)
            self._evict()
            return found
        self.misses += 1
        chunk = self._encode(plan, mime_type, 0, due)
        self._chunks[key] = chunk
        self._in_use[key] = chunk
        self._evict()
        return chunk

    def recovery(self, plan: ChunkPlan, mime_type: str, start: int) -> EncodedChunk | None:
        """Frames `start`..32 of the chunk for one connection, starting with a key frame (not cached).

        None while the encoders are behind schedule: extra work then would make every session late (the
        connection gets its key frame at the next chunk start instead)."""
        if self.scheduler.behind():
            self.recoveries_refused += 1
            return None
        self.recoveries += 1
        return self._encode(plan, mime_type, start)

    def _encode(self, plan: ChunkPlan, mime_type: str, start: int, due: float | None = None) -> EncodedChunk:
        if mime_type not in ENCODERS:
            raise ValueError(f"no encoder for {mime_type}")
        chunk = EncodedChunk(asyncio.get_running_loop(), start)
        job = EncodeJob(
            plan,
            self.native_size,
            mime_type,
            chunk.deliver_threadsafe,
            t0=time.monotonic() if due is None else due,
            interval=self.frame_interval,
            start=start,
            wanted=chunk.wanted,
            deliver_many=chunk.deliver_many_threadsafe,
        )
        if isinstance(self.scheduler, ProcessEncoders):
            chunk.on_cancel = self.scheduler.submit(job, _image_digest(plan.image))
        else:
            self.scheduler.submit(job)
        return chunk

    def start(self) -> None:
        """Start the worker processes now rather than at the first chunk."""
        if isinstance(self.scheduler, ProcessEncoders):
            self.scheduler.start()

    def close(self) -> None:
        """Stop the worker processes (threads are daemons and stop with the process)."""
        if isinstance(self.scheduler, ProcessEncoders):
            self.scheduler.close()

    def _evict(self) -> None:
        """Drop idle chunks and keep the recent ones within `max_bytes` (summed at most every
        EVICT_INTERVAL: a sum over every cached chunk at each call cost the event loop with 100 sessions)."""
        now = time.monotonic()
        if now - self._evicted_at < self.evict_every:
            return
        self._evicted_at = now
        stale = now - self.keep_seconds
        while len(self._chunks) > 1:
            oldest = next(iter(self._chunks.values()))
            if oldest.last_used >= stale:
                break
            self._chunks.popitem(last=False)
        total = sum(c.nbytes for c in self._chunks.values())
        while total > self.max_bytes and len(self._chunks) > 1:
            _, oldest = self._chunks.popitem(last=False)
            total -= oldest.nbytes

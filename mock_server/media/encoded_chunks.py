"""Encode each distinct chunk once; every session showing that chunk sends the same packets.

Frames are a deterministic function of the chunk plan, so the encoded chunk is too. A chunk is encoded
with a fresh encoder, so its first frame is a key frame and its 33 packets decode on their own. Encoding
runs in a worker thread, frame by frame; a sender can take packet i as soon as it exists.

The cache holds a chunk for as long as a track sends it (weakly: the tracks own it), and keeps the most
recently used chunks besides, up to `RECENT_BYTES` of packets, so sessions that show the same content a
little later (a load test, a suite replaying prompts) find it encoded. Memory therefore stays flat under
churn of sessions that each show content of their own (docs/LIMITS.md, "Memory under churn").
"""

from __future__ import annotations

import asyncio
import fractions
import hashlib
import logging
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable

import av
from aiortc.codecs.vpx import DEFAULT_BITRATE

from mock_server.constants import CHUNK_FRAMES
from mock_server.media.frames import ChunkRenderer
from mock_server.model.plan import ChunkPlan, ReferenceImage

log = logging.getLogger("helios_mock.media")

ENCODERS = {"video/VP8": "libvpx", "video/H264": "libx264"}
RECENT_BYTES = 4 << 20  # packet bytes of recently used chunks kept beyond those a track is sending
_image_digests: weakref.WeakKeyDictionary[ReferenceImage, bytes] = weakref.WeakKeyDictionary()


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


class EncodedChunk:
    """The packets of one chunk for one codec, filled progressively by a worker thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.packets: list[bytes | None] = [None] * CHUNK_FRAMES
        self._available = [asyncio.Event() for _ in range(CHUNK_FRAMES)]
        self.error: str | None = None
        self.nbytes = 0

    async def packet(self, index: int) -> bytes:
        available = self._available
        if available:  # emptied once every packet is in: nothing to wait for any more
            await available[index].wait()
        data = self.packets[index]
        if data is None:
            raise RuntimeError(self.error or "chunk encoding failed")
        return data

    def _deliver(self, index: int, data: bytes | None) -> None:
        self.packets[index] = data
        self.nbytes += len(data or b"")
        self._available[index].set()
        if index == CHUNK_FRAMES - 1:  # packets arrive in order: the chunk is complete
            self._available = []  # the events are set; waiters hold their own; a cached chunk needs none

    def _fail(self, error: str) -> None:
        self.error = error
        for index in range(CHUNK_FRAMES):
            if self._available and not self._available[index].is_set():
                self._deliver(index, None)


class EncodedChunkCache:
    """Encoded chunks shared by all sessions: those being sent, plus a byte-bounded LRU of recent ones."""

    def __init__(
        self,
        native_size: tuple[int, int],
        *,
        max_bytes: int = RECENT_BYTES,
        bitrate: int = DEFAULT_BITRATE,
        on_encoded: Callable[[float], None] = lambda seconds: None,
    ) -> None:
        """`on_encoded(seconds)`: called (from the worker thread) with each frame's encode time."""
        self.native_size = native_size
        self._on_encoded = on_encoded
        self.max_bytes = max_bytes
        self.bitrate = bitrate
        self._chunks: OrderedDict[Hashable, EncodedChunk] = OrderedDict()  # recent ones (strong)
        self._in_use: weakref.WeakValueDictionary[Hashable, EncodedChunk] = weakref.WeakValueDictionary()
        self.hits = 0
        self.misses = 0
        self.frames_encoded = 0
        self._lock = threading.Lock()

    def chunk(self, plan: ChunkPlan, mime_type: str) -> EncodedChunk:
        """The encoded chunk for this plan and codec; starts encoding it on first use."""
        key = content_key(plan, self.native_size, mime_type)
        found = self._chunks.get(key) or self._in_use.get(key)
        if found is not None:
            self.hits += 1
            self._chunks[key] = found
            self._chunks.move_to_end(key)
            self._evict()
            return found
        self.misses += 1
        loop = asyncio.get_running_loop()
        chunk = EncodedChunk(loop)
        self._chunks[key] = chunk
        self._in_use[key] = chunk
        loop.run_in_executor(None, self._encode, plan, mime_type, chunk)
        self._evict()
        return chunk

    def _evict(self) -> None:
        total = sum(c.nbytes for c in self._chunks.values())
        while total > self.max_bytes and len(self._chunks) > 1:
            _, oldest = self._chunks.popitem(last=False)
            total -= oldest.nbytes

    def _encode(self, plan: ChunkPlan, mime_type: str, chunk: EncodedChunk) -> None:
        """Worker thread: render and encode the 33 frames, handing each packet to the loop as it is made."""
        try:
            renderer = ChunkRenderer(plan, self.native_size)
            codec = None
            for index in range(CHUNK_FRAMES):
                pixels = renderer.frame(index)
                frame = av.VideoFrame.from_ndarray(pixels, format="rgb24").reformat(format="yuv420p")
                if codec is None:
                    codec = _open_encoder(ENCODERS[mime_type], frame.width, frame.height, self.bitrate)
                frame.pts = index
                started = time.perf_counter()
                data = b"".join(bytes(p) for p in codec.encode(frame))
                self._on_encoded(time.perf_counter() - started)
                with self._lock:
                    self.frames_encoded += 1
                chunk._loop.call_soon_threadsafe(chunk._deliver, index, data)
        except Exception as exc:  # never leave a sender waiting forever
            log.exception("encoding chunk %d failed", plan.chunk_index)
            chunk._loop.call_soon_threadsafe(chunk._fail, f"encoding chunk {plan.chunk_index} failed: {exc}")


def _open_encoder(name: str, width: int, height: int, bitrate: int) -> av.VideoCodecContext:
    codec = av.CodecContext.create(name, "w")
    if not isinstance(codec, av.VideoCodecContext):  # ENCODERS names only video encoders
        raise TypeError(f"{name} is not a video encoder")
    codec.width = width
    codec.height = height
    codec.pix_fmt = "yuv420p"
    codec.bit_rate = bitrate
    codec.time_base = fractions.Fraction(1, 24)
    if name == "libvpx":
        codec.gop_size = 3000  # one key frame per chunk: the first
        codec.qmin, codec.qmax = 2, 56
        codec.options = {
            "deadline": "realtime",
            "cpu-used": "8",
            "lag-in-frames": "0",
            "bufsize": str(bitrate),
            "minrate": str(bitrate),
            "maxrate": str(bitrate),
            "static-thresh": "1",
            "undershoot-pct": "100",
            "overshoot-pct": "15",
        }
    else:
        codec.options = {"preset": "ultrafast", "tune": "zerolatency", "profile": "baseline"}
    codec.thread_count = 1
    return codec

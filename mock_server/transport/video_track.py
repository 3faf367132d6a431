"""The `main_video` output track, fed by the session's frame feed.

The chunk clock publishes each frame once per session (a `FrameRef`). Two ways to send it:

* `EncodedVideoTrack` (default, "shared" media): returns pre-encoded packets from the process-wide
  `EncodedChunkCache`; aiortc only packetizes them. A track that falls behind, joins mid-chunk or resumes
  restarts at the newest chunk's key frame and catches up through it. A key-frame request from the
  receiver (RTCP PLI/FIR, see `watch_keyframe_requests`) is answered at the next frame with a private
  re-encode of the rest of the current chunk that starts with a key frame (at most one per
  `KEYFRAME_MIN_GAP` seconds); the track rejoins the shared packets at the next chunk.
* `RawVideoTrack` ("per-session" media): returns raw frames; aiortc encodes them for this connection alone.
  A track that falls behind skips to the newest frame.
"""

from __future__ import annotations

import asyncio
import fractions
import random
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

import av
from aiortc import RTCPeerConnection, RTCRtpSender
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtp import is_rtcp

from mock_server.constants import CHUNK_FRAMES
from mock_server.media.encoded_chunks import ChunkCancelled, EncodedChunk, EncodedChunkCache
from mock_server.media.feed import FrameFeed
from mock_server.model.plan import ChunkPlan

KEYFRAME_MIN_GAP = 0.25  # seconds: at most one recovery key frame per this interval and track
VIDEO_CLOCK_RATE = 90_000
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK_RATE)


class _GatedTrack(MediaStreamTrack):
    kind = "video"

    def __init__(self, feed: FrameFeed, *, paused: bool) -> None:
        super().__init__()
        self._feed = feed
        self._resumed = asyncio.Event()
        if not paused:
            self._resumed.set()
        self._t0: float | None = None
        self.mime_type = "video/VP8"  # set from the negotiated codec once the offer is answered
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

    def _pts(self) -> int:
        now = time.monotonic()
        if self._t0 is None:
            self._t0 = now
        return int((now - self._t0) * VIDEO_CLOCK_RATE)

    async def _live(self) -> None:
        if self.readyState != "live":
            raise MediaStreamError
        await self._resumed.wait()


class RawVideoTrack(_GatedTrack):
    """Raw frames, encoded by aiortc for this connection alone."""

    def __init__(self, feed: FrameFeed, *, paused: bool = False) -> None:
        super().__init__(feed, paused=paused)
        self._seen = feed.seq  # frames published before this track existed are not replayed

    async def recv(self) -> av.VideoFrame:
        while True:
            await self._live()
            await self._feed.wait_beyond(self._seen)
            if not self.paused:
                break
        if self.frames_sent:
            self.frames_skipped += max(0, self._feed.seq - self._seen - 1)
        self._seen = self._feed.seq
        ref = self._feed.latest
        assert ref is not None
        frame = av.VideoFrame.from_ndarray(ref.pixels(), format="rgb24")
        frame.pts = self._pts()
        frame.time_base = VIDEO_TIME_BASE
        self.frames_sent += 1
        return frame


class EncodedVideoTrack(_GatedTrack):
    """Pre-encoded packets shared across sessions; per connection only packetizing and sending remain."""

    def __init__(self, feed: FrameFeed, cache: EncodedChunkCache, *, paused: bool = False) -> None:
        super().__init__(feed, paused=paused)
        self._cache = cache
        self._plan: ChunkPlan | None = None
        self._chunk: EncodedChunk | None = None
        self._next = 0  # index of the next packet of the current chunk to send
        self._keyframe_wanted = False
        self._ahead_plan: ChunkPlan | None = None
        self._ahead: EncodedChunk | None = None  # the next chunk, encoded ahead (see `_encode_ahead`)
        self._last_recovery = -KEYFRAME_MIN_GAP
        self.keyframes_requested = 0
        self.keyframes_recovered = 0

    def request_keyframe(self) -> None:
        """The receiver lost the picture (PLI/FIR): send a key frame as the next frame."""
        self.keyframes_requested += 1
        self._keyframe_wanted = True

    def _recover(self) -> None:
        """Switch to a private re-encode of the current chunk from the next frame, key frame first."""
        self._keyframe_wanted = False
        if self._plan is None or self._next == 0 or self._next >= CHUNK_FRAMES:
            return  # the next packet is a chunk start (a key frame) anyway
        now = time.monotonic()
        if now - self._last_recovery < KEYFRAME_MIN_GAP:
            return
        self._last_recovery = now
        recovery = self._cache.recovery(self._plan, self.mime_type, self._next)
        if recovery is not None:
            self._use(recovery)
            self.keyframes_recovered += 1

    def _encode_ahead(self) -> None:
        """Hold the chunk the clock announced as the next one, so it is encoded before it is due."""
        upcoming = self._feed.upcoming
        if upcoming is self._ahead_plan:
            return
        self._ahead_plan = upcoming
        ahead = (
            None if upcoming is None else self._cache.chunk(upcoming, self.mime_type, self._feed.upcoming_at)
        )
        self._ahead = _hold(ahead, self._ahead)  # a prediction overtaken by a command: its encoding stops

    def _use(self, chunk: EncodedChunk | None) -> None:
        """Send from `chunk` now; the chunk left is released (its encoding stops if nobody else reads it)."""
        self._chunk = _hold(chunk, self._chunk)

    def stop(self) -> None:
        self._use(None)
        self._forget_ahead()
        super().stop()

    def _forget_ahead(self) -> None:
        self._ahead, self._ahead_plan = _hold(None, self._ahead), None

    def set_paused(self, paused: bool) -> None:
        super().set_paused(paused)
        if not paused:
            self._plan = None  # after a gap the decoder needs a key frame: chunk start
            self._use(None)
            self._forget_ahead()

    async def recv(self) -> av.Packet:
        while True:
            await self._next_frame_due()
            self._encode_ahead()
            if self._keyframe_wanted:
                self._recover()
            chunk = self._chunk
            assert chunk is not None
            try:
                data = await chunk.packet(self._next)
            except ChunkCancelled:  # released while waiting (paused, then resumed): pick the chunk again
                continue
            break
        self._next += 1
        packet = av.Packet(data)
        packet.pts = self._pts()
        packet.time_base = VIDEO_TIME_BASE
        self.frames_sent += 1
        return packet

    async def _next_frame_due(self) -> None:
        """Wait until the feed has published the frame this track sends next (switching chunks as needed)."""
        while True:
            await self._live()
            ref = self._feed.latest
            joining = self._plan is None and self._feed.chunk_over  # don't replay a finished chunk
            if ref is not None and ref.plan is not self._plan and not joining:
                if self._plan is not None and self._next < CHUNK_FRAMES:
                    self.frames_skipped += CHUNK_FRAMES - self._next
                self._plan = ref.plan
                self._use(self._cache.chunk(ref.plan, self.mime_type))  # the chunk encoded ahead, if right
                self._next = 0
            if ref is not None and self._next <= ref.index and self._chunk is not None:
                break
            seq = self._feed.seq
            await self._feed.wait_beyond(seq)


def _hold(chunk: EncodedChunk | None, held: EncodedChunk | None) -> EncodedChunk | None:
    """Hold `chunk` instead of `held` (acquired before the release: the same chunk again must not be
    cancelled in between); returns `chunk`."""
    if chunk is not None:
        chunk.acquire()
    if held is not None:
        held.release()
    return chunk


class PacketLoss:
    """Drops a share of the outgoing video RTP packets for a while (the `media_loss` fault).

    While a loss window is open it wraps `_send_rtp` of each watched peer's video transports, through which
    aiortc sends every RTP packet after packetizing: a dropped packet never reaches the network (RTCP always
    passes), so the receiver sees real loss (gaps in sequence numbers, NACK/PLI, artefacts). The first
    packet after the window removes the wrapper, so outside a fault the send path is aiortc's own.
    """

    def __init__(self, seed: int | None = None) -> None:
        self._rng = random.Random(seed)
        self._percent = 0.0
        self._until = 0.0
        self._peers: weakref.WeakSet[RTCPeerConnection] = weakref.WeakSet()
        self.dropped = 0
        self.passed = 0

    def watch(self, pc: RTCPeerConnection) -> None:
        """A peer of this session (an answered offer); wrapped at once when a window is open."""
        self._peers.add(pc)
        if self.active:
            self._wrap(pc)

    def start(self, percent: float, seconds: float) -> None:
        self._percent = percent
        self._until = time.monotonic() + seconds
        for pc in list(self._peers):
            self._wrap(pc)

    @property
    def active(self) -> bool:
        return self._percent > 0 and time.monotonic() < self._until

    def drops(self, data: bytes) -> bool:
        """Whether this packet is dropped now (never RTCP)."""
        if not self.active or is_rtcp(data):
            return False
        if self._rng.random() * 100.0 < self._percent:
            self.dropped += 1
            return True
        self.passed += 1
        return False

    def _wrap(self, pc: RTCPeerConnection) -> None:
        for sender in pc.getSenders():
            transport = sender.transport
            if sender.kind != "video" or transport is None or "_send_rtp" in vars(transport):
                continue
            send = transport._send_rtp

            async def lossy(
                data: bytes, _send: Callable[[bytes], Awaitable[None]] = send, _t: Any = transport
            ) -> None:
                if not self.active:  # the window is over: aiortc's own method again
                    vars(_t).pop("_send_rtp", None)
                    await _send(data)
                elif not self.drops(data):
                    await _send(data)

            setattr(transport, "_send_rtp", lossy)  # noqa: B010 - an instance wrapper of aiortc's method


def watch_keyframe_requests(sender: RTCRtpSender, track: EncodedVideoTrack) -> None:
    """Forward the sender's key-frame requests (RTCP PLI/FIR) to a pre-encoded track.

    aiortc asks its own encoder for a key frame, which pre-encoded packets bypass; the track answers instead.
    """
    ask_encoder = sender._send_keyframe

    def send_keyframe() -> None:
        ask_encoder()
        if sender.track is track:
            track.request_keyframe()

    sender._send_keyframe = send_keyframe  # type: ignore[method-assign]


def count_sent_frames(pc: RTCPeerConnection, on_sent: Callable[[int], None]) -> None:
    """Report every video frame `pc` sends, with its encoded size in bytes (the frames/bytes metrics).

    Wraps each video sender's `_next_encoded_frame`, the step where aiortc has the frame's RTP payloads in
    hand (pre-encoded packets, or raw frames it has just encoded), so both track kinds are measured alike.
    """
    for sender in pc.getSenders():
        if sender.kind != "video" or getattr(sender, "_sent_counted", False):
            continue
        next_frame = sender._next_encoded_frame

        async def counted(codec: Any, _next: Callable[[Any], Awaitable[Any]] = next_frame) -> Any:
            frame = await _next(codec)
            if frame is not None:
                on_sent(sum(len(payload) for payload in frame.payloads))
            return frame

        setattr(sender, "_next_encoded_frame", counted)  # noqa: B010 - an instance wrapper of aiortc's method
        setattr(sender, "_sent_counted", True)  # noqa: B010

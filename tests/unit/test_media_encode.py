"""Encode-once path: fast encoder settings keep the marker band, reused encoders, recovery key frames."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable

import av
import numpy as np
import pytest

from mock_server.constants import CHUNK_FRAMES
from mock_server.media.encode_scheduler import EncodeJob, EncodeScheduler
from mock_server.media.encoded_chunks import EncodedChunkCache
from mock_server.media.encoder import EncoderPool, NativeFrames
from mock_server.media.feed import FrameFeed, FrameRef
from mock_server.media.frames import ChunkRenderer
from mock_server.media.markers import Markers, decode_markers, prompt_id
from mock_server.model.plan import ChunkPlan
from mock_server.transport.video_track import EncodedVideoTrack

DECODERS = {"video/VP8": "libvpx", "video/H264": "h264"}


def plan(chunk: int = 2, sr: str = "off", prompt: str = "a fox in the snow", seed: int = 7) -> ChunkPlan:
    return ChunkPlan(chunk, prompt, seed, None, 1.0, sr)


def expected(p: ChunkPlan, frame: int) -> Markers:
    return Markers(p.chunk_index, frame, prompt_id(p.prompt), p.seed, 0)


def decode(mime: str, packets: list[bytes]) -> list[np.ndarray]:
    """Luma planes of `packets` decoded by a fresh decoder (so the first packet must be a key frame)."""
    decoder = av.CodecContext.create(DECODERS[mime], "r")
    out = []
    for data in packets:
        for frame in decoder.decode(av.Packet(data)):
            out.append(frame.to_ndarray(format="gray"))
    return out


async def packets_of(chunk: object, start: int = 0) -> list[bytes]:
    return [await chunk.packet(i) for i in range(start, CHUNK_FRAMES)]  # type: ignore[attr-defined]


def test_native_frames_match_the_output_size_rendering() -> None:
    p = plan(sr="2x")
    native = NativeFrames(p, (160, 96)).frame(5).to_ndarray(format="rgb24")
    direct = ChunkRenderer(p, (160, 96)).frame(5)
    assert native.shape == direct.shape == (192, 320, 3)
    assert np.abs(native.astype(int) - direct.astype(int)).mean() < 3  # I420 round trip only
    assert decode_markers(native) == expected(p, 5)


@pytest.mark.parametrize("mime", ["video/VP8", "video/H264"])
@pytest.mark.parametrize(("native", "sr"), [((160, 96), "off"), ((320, 192), "2x")])
async def test_every_frame_of_an_encoded_chunk_reads_back(
    mime: str, native: tuple[int, int], sr: str
) -> None:
    cache = EncodedChunkCache(native, frame_interval=0.001)
    p = plan(sr=sr)
    frames = decode(mime, await packets_of(cache.chunk(p, mime)))
    assert [decode_markers(f) for f in frames] == [expected(p, i) for i in range(CHUNK_FRAMES)]


@pytest.mark.parametrize("mime", ["video/VP8", "video/H264"])
async def test_a_reused_encoder_starts_each_chunk_with_a_key_frame(mime: str) -> None:
    cache = EncodedChunkCache((160, 96), frame_interval=0.001, workers=1, encoders="threads")
    first = await packets_of(cache.chunk(plan(chunk=1), mime))
    second = await packets_of(cache.chunk(plan(chunk=2, seed=8), mime))
    assert cache.scheduler.pool.opened == 1  # the second chunk reused the first one's encoder
    assert first and [decode_markers(f) for f in decode(mime, second)] == [
        expected(plan(chunk=2, seed=8), i) for i in range(CHUNK_FRAMES)
    ]


@pytest.mark.parametrize("mime", ["video/VP8", "video/H264"])
async def test_recovery_chunk_decodes_on_its_own_from_the_frame_asked(mime: str) -> None:
    cache = EncodedChunkCache((160, 96), frame_interval=0.001)
    p = plan()
    chunk = cache.recovery(p, mime, 20)
    frames = decode(mime, await packets_of(chunk, 20))
    assert [decode_markers(f) for f in frames] == [expected(p, i) for i in range(20, CHUNK_FRAMES)]
    with pytest.raises(IndexError):
        await chunk.packet(3)


async def test_identical_content_is_encoded_once_and_idle_chunks_are_dropped() -> None:
    cache = EncodedChunkCache((160, 96), frame_interval=0.001, keep_seconds=0.0, evict_every=0.0)
    a = cache.chunk(plan(), "video/VP8")
    assert cache.chunk(plan(), "video/VP8") is a and (cache.hits, cache.misses) == (1, 1)
    await packets_of(a)
    cache.chunk(plan(chunk=3), "video/VP8")
    cache.chunk(plan(chunk=4), "video/VP8")
    assert len(cache._chunks) == 1  # idle longer than keep_seconds: only the newest stays


class Deliveries:
    """Records (job name, frame index) as a scheduler delivers; `done` is set once `until` holds."""

    def __init__(self, until: Callable[[list[tuple[str, int]]], bool]) -> None:
        self.order: list[tuple[str, int]] = []
        self.done = asyncio.Event()
        self._until = until
        self._loop = asyncio.get_running_loop()

    def recorder(self, name: str) -> Callable[[int, bytes | None, str | None], None]:
        def deliver(index: int, data: bytes | None, error: str | None) -> None:
            self.order.append((name, index))
            if self._until(self.order):
                self._loop.call_soon_threadsafe(self.done.set)

        return deliver


async def test_scheduler_serves_the_most_urgent_frame_first() -> None:
    seen = Deliveries(lambda order: len(order) == 2 * CHUNK_FRAMES)
    recorder, loop = seen.recorder, asyncio.get_running_loop()
    scheduler = EncodeScheduler(EncoderPool(300_000), workers=1)
    # "late" is due soon (early enough to be started at once); "urgent" now, submitted afterwards: it is
    # served first.
    far = loop.time() + 0.5
    late = EncodeJob(plan(chunk=1), (160, 96), "video/VP8", recorder("late"), t0=far, interval=1)
    urgent = EncodeJob(plan(chunk=2), (160, 96), "video/VP8", recorder("urgent"), t0=0.0, interval=1e-6)
    with scheduler._cv:  # queue both before a worker can pick one
        scheduler.submit(late)
        scheduler.submit(urgent)
    await asyncio.wait_for(seen.done.wait(), 30)
    assert seen.order[:CHUNK_FRAMES] == [("urgent", i) for i in range(CHUNK_FRAMES)]


async def test_a_job_announced_long_ahead_waits_until_its_lead_time() -> None:
    """A chunk announced a minute ahead is not started while a command could still change it; an urgent
    job submitted after it runs to the end meanwhile (the barrier: nothing of the early job by then)."""
    seen = Deliveries(lambda order: order[-1] == ("urgent", CHUNK_FRAMES - 1))
    recorder, loop = seen.recorder, asyncio.get_running_loop()
    scheduler = EncodeScheduler(EncoderPool(300_000), workers=1)
    ahead = EncodeJob(
        plan(chunk=1), (160, 96), "video/VP8", recorder("ahead"), t0=loop.time() + 60, interval=1
    )
    urgent = EncodeJob(plan(chunk=2), (160, 96), "video/VP8", recorder("urgent"), t0=0.0, interval=1e-6)
    scheduler.submit(ahead)
    scheduler.submit(urgent)
    await asyncio.wait_for(seen.done.wait(), 30)
    assert seen.order == [("urgent", i) for i in range(CHUNK_FRAMES)]
    assert 0 < scheduler._lead() < 1.0  # one queued chunk at the measured speed, plus the margin


async def test_track_answers_a_keyframe_request_with_a_key_frame_at_the_next_frame() -> None:
    cache = EncodedChunkCache((160, 96), frame_interval=0.001)
    feed = FrameFeed()
    track = EncodedVideoTrack(feed, cache)
    p = plan()
    received = []
    for index in range(12):
        feed.publish(FrameRef(p, index, lambda: np.zeros(1)))
        received.append(bytes(await track.recv()))
    track.request_keyframe()
    feed.publish(FrameRef(p, 12, lambda: np.zeros(1)))
    packet = bytes(await track.recv())
    assert packet[0] & 1 == 0  # VP8 frame tag: key frame
    assert all(data[0] & 1 == 1 for data in received[1:])  # the shared chunk's inter frames
    assert track.keyframes_recovered == 1
    frames = decode("video/VP8", [packet])
    assert decode_markers(frames[0]) == expected(p, 12)


async def test_a_chunk_every_reader_left_stops_encoding_and_is_not_served_again() -> None:
    cache = EncodedChunkCache((160, 96), frame_interval=10.0, workers=1, encoders="threads")
    p = dataclasses.replace(plan(), seed=9)
    chunk = cache.chunk(p, "video/VP8")
    chunk.acquire()
    chunk.release()  # before frame 32 arrived (delivery needs this loop to run)
    assert chunk.cancelled and not chunk.wanted()
    assert cache.chunk(p, "video/VP8") is not chunk  # encoded afresh for the next reader
    job = EncodeJob(p, (160, 96), "video/VP8", lambda *_: None, t0=0.0, interval=1.0, wanted=chunk.wanted)
    cache.scheduler._step(job)  # what a worker does with the job's next frame
    assert job.done and cache.scheduler.abandoned >= 1

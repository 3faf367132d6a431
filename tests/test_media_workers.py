"""Encoder worker processes: images cross once, cancelled jobs stop, a dead worker fails its senders."""

from __future__ import annotations

import asyncio
import os
import signal

import av
import numpy as np
import pytest

from mock_server.constants import CHUNK_FRAMES
from mock_server.media.encoded_chunks import ChunkCancelled, EncodedChunkCache
from mock_server.media.frames import ChunkRenderer
from mock_server.media.markers import decode_markers
from mock_server.model.plan import ChunkPlan, ReferenceImage

NATIVE = (160, 96)


def image(colour: int) -> ReferenceImage:
    pixels = np.full((NATIVE[1], NATIVE[0], 3), colour, dtype=np.uint8)
    pixels[:, : NATIVE[0] // 2] = 255 - colour
    return ReferenceImage(pixels, NATIVE, 100 + colour)


def luma(packets: list[bytes]) -> list[np.ndarray]:
    decoder = av.CodecContext.create("libvpx", "r")
    return [f.to_ndarray(format="gray") for p in packets for f in decoder.decode(av.Packet(p))]


async def all_packets(chunk: object) -> list[bytes]:
    return [await chunk.packet(i) for i in range(CHUNK_FRAMES)]  # type: ignore[attr-defined]


async def test_a_reference_image_renders_the_same_when_sent_once_per_worker() -> None:
    cache = EncodedChunkCache(NATIVE, frame_interval=0.001, workers=1)
    try:
        ref = image(40)
        plans = [ChunkPlan(n, "a lake", 3, ref, 0.8, "off") for n in (1, 2)]
        first = await all_packets(cache.chunk(plans[0], "video/VP8"))
        second = await all_packets(cache.chunk(plans[1], "video/VP8"))  # image not re-sent
        for p, packets in zip(plans, (first, second), strict=True):
            frames = luma(packets)
            assert len(frames) == CHUNK_FRAMES
            want = ChunkRenderer(p, NATIVE).frame(20).astype(float).mean(axis=2)
            assert abs(frames[20].astype(float).mean() - want.mean()) < 12
            assert decode_markers(frames[20]).image_id == ref.image_id  # type: ignore[union-attr]
        assert cache.frames_encoded == 2 * CHUNK_FRAMES
    finally:
        cache.close()


async def test_a_chunk_every_reader_left_is_cancelled_in_the_worker() -> None:
    cache = EncodedChunkCache(NATIVE, frame_interval=10.0, workers=1)  # frames due far apart: no rush
    try:
        p = ChunkPlan(4, "a field", 11, None, 1.0, "off")
        chunk = cache.chunk(p, "video/VP8")
        chunk.acquire()
        await chunk.packet(0)
        chunk.release()
        assert chunk.cancelled and cache.scheduler.abandoned == 1
        again = cache.chunk(p, "video/VP8")
        assert again is not chunk
        assert len(luma(await all_packets(again))) == CHUNK_FRAMES  # the worker still serves new jobs
    finally:
        cache.close()


async def test_a_worker_that_dies_fails_its_waiting_senders_and_is_replaced() -> None:
    cache = EncodedChunkCache(NATIVE, frame_interval=10.0, workers=1)
    try:
        cache.start()
        scheduler = cache.scheduler
        worker = scheduler._workers[0]  # type: ignore[union-attr]
        os.kill(worker.process.pid, signal.SIGSTOP)  # the job stays unfinished until the worker dies
        chunk = cache.chunk(ChunkPlan(5, "a hill", 2, None, 1.0, "off"), "video/VP8")
        chunk.acquire()
        worker.process.kill()
        with pytest.raises(RuntimeError, match="worker process exited"):
            await asyncio.wait_for(chunk.packet(CHUNK_FRAMES - 1), 20)
        fresh = cache.chunk(ChunkPlan(6, "a hill", 2, None, 1.0, "off"), "video/VP8")
        assert len(luma(await asyncio.wait_for(all_packets(fresh), 30))) == CHUNK_FRAMES
    finally:
        cache.close()


@pytest.mark.parametrize("encoders", ["processes", "threads"])
async def test_a_reader_waiting_on_a_chunk_it_left_is_told_so(encoders: str) -> None:
    cache = EncodedChunkCache(NATIVE, frame_interval=10.0, workers=1, encoders=encoders)
    try:
        chunk = cache.chunk(ChunkPlan(7, "a cave", 4, None, 1.0, "off"), "video/VP8")
        chunk.acquire()
        waiting = asyncio.create_task(chunk.packet(CHUNK_FRAMES - 1))
        await asyncio.sleep(0)
        chunk.release()  # e.g. the track was paused, then resumed, while it waited
        with pytest.raises(ChunkCancelled):
            await asyncio.wait_for(waiting, 5)
    finally:
        cache.close()

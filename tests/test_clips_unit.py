"""Clip parts without a server: the recording's windows and retention, signed links, fMP4 fragments."""

from __future__ import annotations

import asyncio
import io
import json
import tracemalloc

import av
import pytest

from mock_server.errors import Forbidden
from mock_server.media.fmp4 import TICKS_PER_FRAME, FragmentCache, place_fragment
from mock_server.media.markers import decode_markers
from mock_server.model.plan import ChunkPlan
from mock_server.session import clip_links
from mock_server.session.recording import PLAN_BYTES, ClipRefused, Recording

FPS = 24.0


def plan(index: int, prompt: str = "a quiet harbour", sr_scale: str = "off") -> ChunkPlan:
    return ChunkPlan(index, prompt, 42, None, 0.5, sr_scale)


def recording(chunks: int, in_progress: int = 0, retention: float = 600.0) -> Recording:
    rec = Recording("local", enabled=True, fps=FPS, retention=retention, in_progress=lambda: in_progress)
    for index in range(chunks):
        rec.add_chunk(plan(index))
    return rec


def test_a_clip_is_the_whole_chunks_around_the_last_seconds() -> None:
    window = recording(10, in_progress=5).cut("clip", 4.0, 60)
    now = 10 * 33 + 5
    assert window.now_frames == now and window.last_seq == 10  # the chunk still generating
    assert window.first_seq == (now - 96) // 33 == 7
    assert window.start_marker == 7 * 33 / FPS and window.end_marker == 11 * 33 / FPS
    between = recording(10).cut("clip", 33 / FPS, 60)  # between chunks: ends with the last completed one
    assert (between.first_seq, between.last_seq) == (9, 9)


def test_a_recording_starts_at_the_start_of_retention() -> None:
    assert recording(5, in_progress=1).cut("recording", None, 60).first_seq == 0
    kept = recording(40, retention=10.0)  # 10 s = 7.3 chunks -> 8 kept
    assert kept.first_seq == 32 and kept.plan(31) is None and kept.plan(32) == plan(32)
    assert kept.cut("recording", None, 60).first_seq == 32
    assert kept.cut("clip", 1e9, 60).first_seq == 32  # clamped to what is retained


@pytest.mark.parametrize("duration", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_durations_are_refused(duration: float) -> None:
    with pytest.raises(ClipRefused, match="^invalid duration"):
        recording(3).cut("clip", duration, 60)


def test_nothing_recorded_and_recording_off() -> None:
    with pytest.raises(ClipRefused, match="^nothing recorded yet"):
        recording(0).cut("clip", 4.0, 60)
    off = Recording("local", enabled=False, fps=FPS, retention=600, in_progress=lambda: 0)
    off.add_chunk(plan(0))
    with pytest.raises(ClipRefused, match="^recorder disabled$"):
        off.cut("clip", 4.0, 60)


def test_links_are_signed_and_expire() -> None:
    window = recording(4).cut("clip", 2.0, 60)
    query = clip_links.sign(window, ttl=60)
    params = dict(p.split("=", 1) for p in query.split("&"))
    link = clip_links.verify(params)
    assert link.seqs(FPS) == (window.first_seq, window.last_seq)
    with pytest.raises(Forbidden, match="expired"):
        clip_links.verify(params, now=link.expires)
    with pytest.raises(Forbidden, match="signature"):
        clip_links.verify({**params, "end": "99.000"})


def test_recording_memory_per_chunk_is_a_few_hundred_bytes() -> None:
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    rec = Recording("local", enabled=True, fps=FPS, retention=600, in_progress=lambda: 0)
    plans = [ChunkPlan(i, f"prompt {i % 7}", 42, None, 0.5, "2x") for i in range(400)]
    for p in plans:
        rec.add_chunk(p)
    grown = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(before, "filename"))
    tracemalloc.stop()
    assert grown / 400 <= PLAN_BYTES, grown / 400  # plans, their strings and the deque, per chunk


async def test_fragments_are_encoded_once_per_distinct_chunk_and_placed_on_the_timeline() -> None:
    cache = FragmentCache((160, 96), FPS)
    a, b, again = await asyncio.gather(
        cache.fragment(plan(3)), cache.fragment(plan(4, sr_scale="2x")), cache.fragment(plan(3))
    )
    assert cache.encodes == 2 and a is again and (a.size, b.size) == ((160, 96), (320, 192))
    assert (await cache.fragment(plan(3))) is a and cache.hits == 1
    data = a.init + place_fragment(a.media, 1, 0) + place_fragment(b.media, 2, 33 * TICKS_PER_FRAME)
    with av.open(io.BytesIO(data)) as container:
        frames = [
            (f.pts, f.width, decode_markers(f.to_ndarray(format="rgb24"))) for f in container.decode(video=0)
        ]
    assert [pts for pts, _, _ in frames] == [i * TICKS_PER_FRAME for i in range(66)]
    assert [(m.chunk, m.frame) for _, _, m in frames if m] == [(c, f) for c in (3, 4) for f in range(33)]
    assert [w for _, w, _ in frames] == [160] * 33 + [320] * 33  # in-band SPS/PPS: one init is enough


def test_clip_ready_encodes_on_both_wires() -> None:
    from mock_server.wire import reactor_wire_pb as pb
    from mock_server.wire.common import ClipReadyOut
    from mock_server.wire.v0 import V0Codec
    from mock_server.wire.v1 import V1Codec

    out = ClipReadyOut("sess_1", "clip", 2.75, 6.875, 6.0, 1_700_000_000_000, "http://h/clips?x=1", "ctrl_7")
    channel, text = V0Codec().encode(out) or ("", "")
    assert channel == "data" and json.loads(text) == {
        "scope": "runtime",
        "data": {
            "type": "clipReady",
            "data": {k: getattr(out, k) for k in pb.ClipReady.DESCRIPTOR.fields_by_name},
        },
    }
    channel, frame = V1Codec().encode(out) or ("", b"")
    msg = pb.ControlServerMessage.FromString(frame)
    assert channel == "control" and msg.request_id == "ctrl_7" and msg.WhichOneof("payload") == "clip_ready"
    assert (msg.clip_ready.end_marker, msg.clip_ready.playlist_url) == (6.875, "http://h/clips?x=1")

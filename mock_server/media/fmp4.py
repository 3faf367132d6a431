"""H.264 fragmented-MP4 fragments for clips: one fragment per chunk, encoded once per distinct chunk.

A chunk's frames are a pure function of its plan, so its fragment is too: every recording that holds the same
chunk (same `content_key`) shares one encode. A fragment is stored with sequence number 1 and decode time 0;
`place_fragment` stamps the real ones (its position in a recording) when it is served, a few bytes' patch.

Each fragment starts with a key frame that carries its SPS/PPS in band (x264 `repeat-headers`), so a decoder
given any init segment follows a size change (`sr_scale`) at a fragment boundary: the SDK's download, which
keeps one init segment, stays decodable. Playlists still mark size changes properly (see services.clips).
"""

from __future__ import annotations

import asyncio
import fractions
import io
import logging
import struct
from collections import OrderedDict
from collections.abc import Hashable, Iterator
from dataclasses import dataclass

import av

from mock_server.constants import CHUNK_FRAMES
from mock_server.media.encoded_chunks import content_key
from mock_server.media.frames import ChunkRenderer
from mock_server.model.plan import ChunkPlan

log = logging.getLogger("helios_mock.media")

TICKS_PER_FRAME = 1000  # track timescale = fps x 1000, so every frame lasts exactly 1000 ticks
MIME = "video/mp4; codecs=avc1"
DEFAULT_MAX_BYTES = 64 << 20  # process-wide bound on cached fragments (about 1,600 chunks at 640x384)
_X264 = {"preset": "ultrafast", "crf": "23", "profile": "baseline", "x264-params": "repeat-headers=1"}
_MOVFLAGS = "frag_keyframe+empty_moov+default_base_moof"


@dataclass(frozen=True)
class ChunkFragment:
    """One chunk as fMP4: the init segment of its size and its one media fragment (moof + mdat)."""

    init: bytes  # ftyp + moov
    media: bytes  # moof + mdat, sequence number 1, base media decode time 0
    size: tuple[int, int]  # (width, height)

    @property
    def nbytes(self) -> int:
        return len(self.init) + len(self.media)


def timescale(fps: float) -> int:
    """Ticks per second of the clip's video track."""
    return max(1, round(fps * TICKS_PER_FRAME))


def _boxes(
    data: bytes | bytearray, start: int = 0, end: int | None = None
) -> Iterator[tuple[bytes, int, int]]:
    """(type, offset, size) of the ISO-BMFF boxes in data[start:end] (32-bit sizes, as ffmpeg writes them)."""
    end = len(data) if end is None else end
    offset = start
    while offset + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, offset)
        if size < 8:
            raise ValueError(f"box {kind!r} at {offset} has an invalid size {size}")
        yield kind, offset, size
        offset += size


def _split(mp4: bytes) -> tuple[bytes, bytes]:
    """(init, media) of a one-fragment fMP4 file: ftyp+moov, then moof+mdat (the trailing mfra is dropped)."""
    spans = {kind: (offset, size) for kind, offset, size in _boxes(mp4)}
    if not {b"ftyp", b"moov", b"moof", b"mdat"} <= spans.keys():
        raise ValueError(f"fragmented MP4 without the expected boxes: {sorted(spans)}")
    moov_at, moov_size = spans[b"moov"]
    moof_at, _ = spans[b"moof"]
    mdat_at, mdat_size = spans[b"mdat"]
    return mp4[: moov_at + moov_size], mp4[moof_at : mdat_at + mdat_size]


def encode_fragment(plan: ChunkPlan, native_size: tuple[int, int], fps: float) -> ChunkFragment:
    """Render and encode the chunk's 33 frames as one fMP4 fragment (blocking: run it in a worker thread)."""
    renderer = ChunkRenderer(plan, native_size)
    width, height = renderer.output_size
    scale = timescale(fps)
    buffer = io.BytesIO()
    options = {"movflags": _MOVFLAGS, "video_track_timescale": str(scale)}
    with av.open(buffer, "w", format="mp4", options=options) as container:
        stream = container.add_stream("libx264", rate=fractions.Fraction(scale, TICKS_PER_FRAME))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = fractions.Fraction(1, scale)
        stream.codec_context.options = dict(_X264)
        stream.codec_context.thread_count = 1
        for index in range(CHUNK_FRAMES):
            frame = av.VideoFrame.from_ndarray(renderer.frame(index), format="rgb24").reformat(
                format="yuv420p"
            )
            frame.pts = index * TICKS_PER_FRAME
            frame.time_base = stream.time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    init, media = _split(buffer.getvalue())
    return ChunkFragment(init=init, media=media, size=(width, height))


def place_fragment(media: bytes, sequence: int, decode_time: int) -> bytes:
    """A copy of a stored fragment with its moof sequence number and base media decode time set."""
    data = bytearray(media)
    for kind, offset, size in _boxes(data):
        if kind != b"moof":
            continue
        for inner, at, inner_size in _boxes(data, offset + 8, offset + size):
            if inner == b"mfhd":
                struct.pack_into(">I", data, at + 12, sequence)
            elif inner == b"traf":
                for leaf, leaf_at, _ in _boxes(data, at + 8, at + inner_size):
                    if leaf == b"tfdt":
                        if data[leaf_at + 8] == 1:
                            struct.pack_into(">Q", data, leaf_at + 12, decode_time)
                        else:
                            struct.pack_into(">I", data, leaf_at + 12, decode_time & 0xFFFFFFFF)
    return bytes(data)


class FragmentCache:
    """Process-wide, byte-bounded LRU of chunk fragments; concurrent askers of one chunk share its encode."""

    def __init__(
        self, native_size: tuple[int, int], fps: float, *, max_bytes: int = DEFAULT_MAX_BYTES
    ) -> None:
        self.native_size = native_size
        self.fps = fps
        self.max_bytes = max_bytes
        self._done: OrderedDict[Hashable, ChunkFragment] = OrderedDict()
        self._pending: dict[Hashable, asyncio.Future[ChunkFragment]] = {}
        self.nbytes = 0
        self.hits = 0
        self.encodes = 0

    def key(self, plan: ChunkPlan) -> Hashable:
        return (content_key(plan, self.native_size, MIME), self.fps)

    async def fragment(self, plan: ChunkPlan) -> ChunkFragment:
        """The chunk's fragment; encodes it (in a worker thread) on first use. Encoder errors propagate."""
        key = self.key(plan)
        found = self._done.get(key)
        if found is not None:
            self.hits += 1
            self._done.move_to_end(key)
            return found
        pending = self._pending.get(key)
        if pending is None:
            loop = asyncio.get_running_loop()
            pending = asyncio.ensure_future(
                loop.run_in_executor(None, encode_fragment, plan, self.native_size, self.fps)
            )
            self._pending[key] = pending
            pending.add_done_callback(lambda done: self._settle(key, done))
            self.encodes += 1
        return await asyncio.shield(pending)

    def _settle(self, key: Hashable, done: asyncio.Future[ChunkFragment]) -> None:
        self._pending.pop(key, None)
        if done.cancelled() or done.exception() is not None:
            return
        fragment = done.result()
        self._done[key] = fragment
        self.nbytes += fragment.nbytes
        while self.nbytes > self.max_bytes and len(self._done) > 1:
            _, oldest = self._done.popitem(last=False)
            self.nbytes -= oldest.nbytes

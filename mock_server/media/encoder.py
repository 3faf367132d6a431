"""Fast encoder settings and frame preparation for the encode-once path.

Settings were measured on rendered chunks (``load/bench.py --encoders``, README "Capacity"): libvpx
real-time with ``cpu-used 16`` is about 2x faster than ``cpu-used 8`` at 1280x768 for the same bitrate;
libx264 ``ultrafast``/``zerolatency`` is the fastest preset. The marker band reads back after both.

Frames are rendered at the native size and scaled to the output size by swscale with point sampling while
converting to I420: the same picture as rendering at the output size (nearest-neighbour ``sr_scale``
upscale), at a quarter of the rendering and conversion work for ``2x``.
"""

from __future__ import annotations

import dataclasses
import fractions
import threading
from collections import defaultdict

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from mock_server.media.frames import ChunkRenderer
from mock_server.model.plan import ChunkPlan, output_size

ENCODERS = {"video/VP8": "libvpx", "video/H264": "libx264"}
TIME_BASE = fractions.Fraction(1, 24)
VP8_OPTIONS = {
    "deadline": "realtime",
    "cpu-used": "16",  # measured fastest; marker band still reads back on every frame
    "lag-in-frames": "0",
    "static-thresh": "1",
    "undershoot-pct": "100",
    "overshoot-pct": "15",
}
H264_OPTIONS = {"preset": "ultrafast", "tune": "zerolatency", "profile": "baseline", "forced-idr": "1"}
IDLE_ENCODERS_PER_SHAPE = 4  # encoder contexts kept for reuse per (codec, size); more are freed


def open_encoder(
    name: str, width: int, height: int, bitrate: int, options: dict[str, str] | None = None
) -> av.VideoCodecContext:
    """An opened-on-first-frame encoder context with the measured fast settings (one thread)."""
    codec = av.CodecContext.create(name, "w")
    if not isinstance(codec, av.VideoCodecContext):  # ENCODERS names only video encoders
        raise TypeError(f"{name} is not a video encoder")
    codec.width = width
    codec.height = height
    codec.pix_fmt = "yuv420p"
    codec.bit_rate = bitrate
    codec.time_base = TIME_BASE
    codec.gop_size = 3000  # key frames only where asked for (chunk starts, key frame requests)
    if name == "libvpx":
        codec.qmin, codec.qmax = 2, 56
        rate = str(bitrate)
        codec.options = {"bufsize": rate, "minrate": rate, "maxrate": rate, **VP8_OPTIONS, **(options or {})}
    else:
        codec.options = {**H264_OPTIONS, **(options or {})}
    codec.thread_count = 1  # chunks are encoded in parallel instead
    return codec


class ReusedEncoder:
    """An encoder context lent for one chunk; its pts keep counting across chunks."""

    def __init__(self, codec: av.VideoCodecContext) -> None:
        self.codec = codec
        self.pts = 0

    def encode(self, frame: av.VideoFrame, *, key: bool) -> bytes:
        frame.pts = self.pts
        self.pts += 1
        if key:
            frame.pict_type = av.video.frame.PictureType.I
        return b"".join(bytes(p) for p in self.codec.encode(frame))


class EncoderPool:
    """Encoder contexts per (codec, size), reused across chunks: opening one costs time and memory churn.

    A reused context starts each chunk with a forced key frame, which refreshes every reference buffer, so
    the chunk still decodes on its own.
    """

    def __init__(self, bitrate: int) -> None:
        self.bitrate = bitrate
        self._idle: dict[tuple[str, int, int], list[ReusedEncoder]] = defaultdict(list)
        self._lock = threading.Lock()
        self.opened = 0

    def take(self, name: str, width: int, height: int) -> ReusedEncoder:
        with self._lock:
            idle = self._idle[(name, width, height)]
            if idle:
                return idle.pop()
            self.opened += 1
        return ReusedEncoder(open_encoder(name, width, height, self.bitrate))

    def give_back(self, name: str, encoder: ReusedEncoder) -> None:
        key = (name, encoder.codec.width, encoder.codec.height)
        with self._lock:
            if len(self._idle[key]) < IDLE_ENCODERS_PER_SHAPE:
                self._idle[key].append(encoder)


class NativeFrames:
    """I420 frames of one chunk at the output size, rendered at the native size and scaled by swscale."""

    def __init__(self, plan: ChunkPlan, native_size: tuple[int, int]) -> None:
        self._renderer = ChunkRenderer(dataclasses.replace(plan, sr_scale="off"), native_size)
        self.output_size = output_size(plan.sr_scale, native_size)
        self._reformatter = VideoReformatter()

    def frame(self, index: int) -> av.VideoFrame:
        return self.convert(self._renderer.frame(index))

    def convert(self, native_rgb: np.ndarray) -> av.VideoFrame:
        width, height = self.output_size
        return self._reformatter.reformat(
            av.VideoFrame.from_ndarray(native_rgb, format="rgb24"),
            format="yuv420p",
            width=width,
            height=height,
            interpolation="POINT",
        )

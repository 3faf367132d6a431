"""Fast encoder settings and frame drawing for the encode-once path.

Settings were measured on rendered chunks (``scripts/encoder_settings.py``, README "Capacity"): libvpx
real-time with ``cpu-used 16`` is about 2x faster than ``cpu-used 8`` at 1280x768 for the same bitrate,
and ``static-thresh 500`` skips the macroblocks of the still backdrop; libx264 ``ultrafast``/
``zerolatency`` is the fastest preset. The marker band reads back after every one of them.

Frames are drawn directly in I420 (:class:`NativeFrames`): the chunk's backdrop once per chunk, then only
what moves per frame.
"""

from __future__ import annotations

import dataclasses
import fractions
import threading
from collections import defaultdict
from functools import lru_cache

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from mock_server.media.frames import MARKER_COLOUR, ChunkRenderer, disc
from mock_server.model.plan import ChunkPlan, output_size

ENCODERS = {"video/VP8": "libvpx", "video/H264": "libx264"}
TIME_BASE = fractions.Fraction(1, 24)
VP8_OPTIONS = {
    "deadline": "realtime",
    "cpu-used": "16",  # measured fastest; marker band still reads back on every frame
    "lag-in-frames": "0",
    "static-thresh": "500",  # skip macroblocks that barely change: the backdrop holds still within a chunk
    "undershoot-pct": "100",
    "overshoot-pct": "15",
}
H264_OPTIONS = {"preset": "ultrafast", "tune": "zerolatency", "profile": "baseline", "forced-idr": "1"}
IDLE_ENCODERS_PER_SHAPE = 1  # encoder contexts kept for reuse per (codec, size) and worker; more are freed


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
        picture_type = av.video.frame.PictureType
        frame.pict_type = picture_type.I if key else picture_type.NONE  # frames may be reused objects
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


# BT.601 limited range, as swscale converts rgb24 to yuv420p by default.
_RGB_TO_YUV = np.array(
    [[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]], dtype=np.float32
) / np.float32(255.0)
_YUV_OFFSET = np.array([16.0, 128.0, 128.0], dtype=np.float32)
_BAND_LUMA = np.array([16, 235], dtype=np.uint8)  # black and white cells


def _yuv(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) RGB -> (..., 3) float32 Y, U, V."""
    return rgb.astype(np.float32) @ _RGB_TO_YUV.T + _YUV_OFFSET


_MARKER_YUV = np.round(_yuv(MARKER_COLOUR)).astype(np.uint8)


def _halve(a: np.ndarray) -> np.ndarray:
    """Average 2x2 blocks of the first two axes (odd sizes padded by repeating the edge)."""
    h, w = a.shape[:2]
    a = np.pad(a, [(0, h % 2), (0, w % 2)] + [(0, 0)] * (a.ndim - 2), mode="edge")
    return (a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2]) / 4


class _DiscSprite:
    """The disc at the output size in I420: luma and chroma values with their 0..256 alphas (uint16)."""

    def __init__(self, rgb: np.ndarray, alpha: np.ndarray) -> None:
        yuv = _yuv(rgb)
        a = alpha[..., 0].astype(np.float32)
        self.y = np.round(yuv[..., 0]).astype(np.uint16)
        self.a = alpha[..., 0].astype(np.uint16)
        chroma_alpha = _halve(a)
        premultiplied = _halve(yuv[..., 1:] * a[..., None]) / np.maximum(chroma_alpha, 1.0)[..., None]
        self.uv = np.round(premultiplied).astype(np.uint16)  # (h/2, w/2, 2)
        self.ca = np.round(chroma_alpha).astype(np.uint16)


_thread_state = threading.local()


def _reformatter() -> VideoReformatter:
    """One swscale context holder per thread: PyAV keeps its context between calls of the same shape."""
    reformatter = getattr(_thread_state, "reformatter", None)
    if reformatter is None:
        reformatter = _thread_state.reformatter = VideoReformatter()
    return reformatter


def _plane_array(plane: av.video.plane.VideoPlane) -> np.ndarray:
    """A writable (height, width) view of a frame plane's pixels (rows may be padded to `line_size`)."""
    rows = np.frombuffer(memoryview(plane), dtype=np.uint8).reshape(-1, plane.line_size)
    return rows[: plane.height, : plane.width]


@lru_cache(maxsize=64)
def _disc_sprite(seed: int, native_size: tuple[int, int], factor: int) -> _DiscSprite:
    rgb, alpha = disc(seed, native_size)
    return _DiscSprite(*(np.repeat(np.repeat(a, factor, 0), factor, 1) for a in (rgb, alpha)))


class NativeFrames:
    """I420 frames of one chunk at the output size, drawn directly in I420.

    The chunk's backdrop is rendered at the native size and converted once per chunk by swscale (point
    upscale to the output size while converting); each frame puts the backdrop back where the previous
    frame drew, then draws the disc, the progress marker and the band in Y, U and V. Same picture as
    :class:`ChunkRenderer` up to rounding in the colour conversion."""

    def __init__(self, plan: ChunkPlan, native_size: tuple[int, int]) -> None:
        self._renderer = r = ChunkRenderer(dataclasses.replace(plan, sr_scale="off"), native_size)
        self.output_size = width, height = output_size(plan.sr_scale, native_size)
        self.f = width // native_size[0]
        if width % 2 or height % 2:  # I420 wants even sizes; convert every frame instead
            self._planes = None
            return
        backdrop = self.convert(r.backdrop).to_ndarray()  # (H * 3 / 2, W): Y, then U, then V
        u, v = backdrop[height:].reshape(2, height // 2, width // 2)
        self._backdrop = (backdrop[:height], u, v)
        self._frame = av.VideoFrame(width, height, "yuv420p")  # drawn into in place, frame after frame
        self._planes = tuple(_plane_array(plane) for plane in self._frame.planes)
        self._drawn: list[tuple[int, int, int, int, int]] | None = None  # regions drawn over the backdrop
        self._disc = _disc_sprite(plan.seed, tuple(native_size), self.f)
        self._band_rows, self._band_widths = r.cell_rows * self.f, r.cell_widths * self.f

    def frame(self, index: int) -> av.VideoFrame:
        """Frame `index`; the same VideoFrame object each call (encode it before asking for the next)."""
        if self._planes is None:
            return self.convert(self._renderer.frame(index))
        self._restore_backdrop()
        y_plane, u_plane, v_plane = self._planes
        self._draw_disc(y_plane, (u_plane, v_plane), index)
        self._draw_marker(y_plane, (u_plane, v_plane), index)
        rows, cells = self._band_rows, _BAND_LUMA[self._renderer.cells(index)]
        for row in range(cells.shape[0]):  # the band's rows are drawn whole every frame
            y_plane[rows[row] : rows[row + 1]] = np.repeat(cells[row], self._band_widths)
        return self._frame

    def _restore_backdrop(self) -> None:
        """Put the backdrop back where the previous frame drew (all of it before the first frame)."""
        assert self._planes is not None
        if self._drawn is None:
            for plane, backdrop in zip(self._planes, self._backdrop, strict=True):
                np.copyto(plane, backdrop)
        else:
            for p, y0, y1, x0, x1 in self._drawn:
                self._planes[p][y0:y1, x0:x1] = self._backdrop[p][y0:y1, x0:x1]
        self._drawn = []

    def _draw_disc(self, y_plane: np.ndarray, chroma: tuple[np.ndarray, np.ndarray], index: int) -> None:
        dx, dy = self._renderer.disc_origin(index)
        x, y, sprite = dx * self.f, dy * self.f, self._disc
        self._blend(0, y_plane, y, x, sprite.y, sprite.a)
        for p, (plane, values) in enumerate(zip(chroma, (sprite.uv[..., 0], sprite.uv[..., 1]), strict=True)):
            self._blend(p + 1, plane, y // 2, x // 2, values, sprite.ca)

    def _blend(self, p: int, plane: np.ndarray, y: int, x: int, value: np.ndarray, alpha: np.ndarray) -> None:
        """Alpha-blend `value` onto plane `p` at (y, x), clipped to the plane; remembers the region."""
        h = min(value.shape[0], plane.shape[0] - y)
        w = min(value.shape[1], plane.shape[1] - x)
        if h <= 0 or w <= 0:
            return
        region = plane[y : y + h, x : x + w]
        a = alpha[:h, :w]
        region[:] = (region * (256 - a) + value[:h, :w] * a) >> 8
        self._note(p, y, y + h, x, x + w)

    def _draw_marker(self, y_plane: np.ndarray, chroma: tuple[np.ndarray, np.ndarray], index: int) -> None:
        m0, m1 = (c * self.f for c in self._renderer.marker_span(index))
        t0, t1 = (t * self.f for t in self._renderer.track)
        y_plane[t0:t1, m0:m1] = _MARKER_YUV[0]
        self._note(0, t0, t1, m0, m1)
        c0, c1, r0, r1 = m0 // 2, (m1 + 1) // 2, t0 // 2, (t1 + 1) // 2
        for p, (plane, value) in enumerate(zip(chroma, _MARKER_YUV[1:], strict=True)):
            plane[r0:r1, c0:c1] = value
            self._note(p + 1, r0, r1, c0, c1)

    def _note(self, p: int, y0: int, y1: int, x0: int, x1: int) -> None:
        assert self._drawn is not None
        self._drawn.append((p, y0, y1, x0, x1))

    def convert(self, native_rgb: np.ndarray) -> av.VideoFrame:
        width, height = self.output_size
        return _reformatter().reformat(
            av.VideoFrame.from_ndarray(native_rgb, format="rgb24"),
            format="yuv420p",
            width=width,
            height=height,
            interpolation="POINT",
        )

"""Cheap video reception for load clients, and the frame-timeline ("late frame") bookkeeping.

**Cheap path.** aiortc's stock receiver re-assembles frames in a Python jitter buffer that releases a frame
only when the *next* frame's first packet arrives (one frame interval of extra latency), feeds NACK/REMB
machinery, and decodes in one thread per track that hands every frame back to the loop with
``run_coroutine_threadsafe``. :func:`attach` replaces that, for one peer connection, with: parse the VP8
payload descriptor, collect the packets of a frame until the RTP marker bit, decode it inline (libvpx via
PyAV, one single-threaded context per stream) and read the marker band straight from the Y plane (no RGB
conversion) with :func:`read_markers_luma`. Nothing is queued and no thread is involved. A sequence gap
drops the frame, asks for a key frame (RTCP PLI) and skips decoding until one arrives, so a corrupted
picture is never read. ``decode=False`` counts frames from the RTP marker bit without decoding at all (then
no markers, so no lateness).

**Late frames.** Frame ``g = chunk*33 + frame`` of a session is *scheduled* at ``A + g*T`` where ``T`` is
the frame interval (1/24 s at speed 1) and the anchor ``A`` is the first frame's arrival minus ``g*T``, moved
earlier whenever a later frame arrives ahead of that schedule (so a slow first frame cannot hide lateness).
A received frame is **late** when it arrives more than one interval after its scheduled time
(``arrival > A + g*T + T``). Frames never received (a gap in ``g``) are **missing**.
:meth:`FrameTimeline.rebase` starts a new segment (after ``resume``: frames continue the chunk count after a
pause, so the old schedule no longer applies).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import av
import numpy as np
from aiortc import rtcrtpreceiver as _rtcrtpreceiver
from aiortc.rtcrtpreceiver import RTCRtpReceiver

from mock_server.constants import CHUNK_FRAMES
from mock_server.media import markers as _mk
from mock_server.media.markers import Markers

FrameCallback = Callable[[float, "Markers | None"], None]

_original_handle = RTCRtpReceiver._handle_rtp_packet
_PLI_MIN_INTERVAL = 0.25  # seconds between two key-frame requests of one receiver


@dataclass
class FrameTimeline:
    """Per-session frame accounting on the session's own 24 fps timeline (see the module docstring)."""

    interval: float  # seconds per frame at the server's speed
    judge: bool = True  # False: frames are only counted (video not decoded, no markers)
    received: int = 0  # frames delivered to the callback, with or without readable markers
    unreadable: int = 0  # decoded frames whose marker band did not read (no index, not judged)
    late: int = 0
    missing: int = 0
    max_lateness: float = 0.0  # seconds past the schedule, worst received frame
    window_max_lateness: float = 0.0  # the same since a caller last reset it (measurement windows)
    first_t: float | None = None
    last_t: float | None = None
    last_g: int | None = None
    _anchor: float | None = None
    _segment_last_g: int | None = None

    def rebase(self) -> None:
        """Start a new segment: the next frame defines the schedule again (after pause/resume)."""
        self._anchor = None
        self._segment_last_g = None

    def add(self, t: float, markers: Markers | None) -> float | None:
        """Account one received frame; its lateness in seconds (late if > interval), None without markers."""
        self.received += 1
        if self.first_t is None:
            self.first_t = t
        self.last_t = t
        if markers is None:
            self.unreadable += self.judge
            return None
        g = markers.chunk * CHUNK_FRAMES + markers.frame
        implied = t - g * self.interval
        if self._anchor is None or implied < self._anchor:
            self._anchor = implied
        prev = self._segment_last_g
        if prev is not None and g > prev + 1:
            self.missing += g - prev - 1
        if prev is None or g > prev:
            self._segment_last_g = g
        self.last_g = g
        lateness = implied - self._anchor
        if lateness > self.max_lateness:
            self.max_lateness = lateness
        if lateness > self.window_max_lateness:
            self.window_max_lateness = lateness
        if lateness > self.interval:
            self.late += 1
        return lateness

    def counters(self) -> dict[str, int]:
        return {
            "received": self.received,
            "late": self.late,
            "missing": self.missing,
            "unreadable": self.unreadable,
        }


@dataclass
class _VideoState:
    """Per-receiver state of the cheap path."""

    on_frame: FrameCallback
    decode: bool
    codec: Any = None  # av.CodecContext (VP8 decoder), created lazily
    parts: list[bytes] = field(default_factory=list)
    timestamp: int | None = None
    last_seq: int | None = None
    broken: bool = False  # lost data (or nothing decoded yet): skip until the next key frame
    keyframe: bool = False  # the frame being collected starts with a key frame
    lost_packets: int = 0
    dropped_frames: int = 0
    decode_errors: int = 0
    last_pli: float = 0.0
    want_pli: bool = False  # a decode error asks for a key frame with the next packet


def _no_estimator() -> None:
    return None


def install() -> None:
    """Route RTP of receivers that have a cheap-path state through it (idempotent; others unchanged).

    Also drops the receive-side bandwidth estimator of new receivers (aiortc then sends no REMB, as for
    audio): building it allocates a 1000-bucket rate window per receiver, a visible cost in connect bursts,
    and the cheap path never feeds it.
    """
    if RTCRtpReceiver._handle_rtp_packet is not _patched_handle:
        RTCRtpReceiver._handle_rtp_packet = _patched_handle  # type: ignore[method-assign]
        _rtcrtpreceiver.RemoteBitrateEstimator = _no_estimator  # type: ignore[assignment]


def attach(pc: Any, on_frame: FrameCallback, *, decode: bool = True) -> _VideoState:
    """Use the cheap path for the video receiver of `pc` (before media flows, e.g. right after connect)."""
    install()
    for transceiver in pc.getTransceivers():
        if transceiver.kind == "video":
            state = _VideoState(on_frame=on_frame, decode=decode, broken=decode)
            transceiver.receiver._helios_video = state
            return state
    raise RuntimeError("the peer connection has no video transceiver")


def _decode_frame(state: _VideoState, data: bytes) -> list[Markers | None]:
    if state.codec is None:
        try:
            state.codec = av.CodecContext.create("libvpx", "r")  # ~7 % cheaper than FFmpeg's own vp8 here
        except av.FFmpegError:
            state.codec = av.CodecContext.create("vp8", "r")
        state.codec.thread_count = 1  # one stream of tiny frames: decoder threads only add overhead
    try:
        frames = state.codec.decode(av.Packet(data))
    except av.FFmpegError:
        state.decode_errors += 1
        state.broken = True
        state.want_pli = True
        return []
    return [read_markers_yuv(frame) for frame in frames]


async def _patched_handle(self: RTCRtpReceiver, packet: Any, arrival_time_ms: int) -> None:
    state: _VideoState | None = self.__dict__.get("_helios_video")
    if state is None:
        await _original_handle(self, packet, arrival_time_ms)
        return
    codecs = self._RTCRtpReceiver__codecs  # type: ignore[attr-defined]
    codec = codecs.get(packet.payload_type)
    if codec is None or codec.name != "VP8" or not packet.payload:
        return  # RTX (never asked for: no NACKs are sent), padding, unknown
    if not _in_sequence(state, packet.sequence_number):
        return  # duplicate or reordered old packet
    start, data = _vp8_descriptor(packet.payload)
    if start:
        if state.parts:  # the previous frame never saw its marker bit
            state.dropped_frames += 1
        state.parts = [data]
        state.timestamp = packet.timestamp
        state.keyframe = bool(data) and not (data[0] & 1)
    elif state.timestamp == packet.timestamp and state.parts:
        state.parts.append(data)
    else:
        state.parts.clear()
        state.timestamp = None
        return
    if not packet.marker:
        return
    frame_bytes = b"".join(state.parts)
    keyframe = state.keyframe
    state.parts = []
    state.timestamp = None
    now = time.monotonic()
    if state.want_pli or (state.broken and not keyframe):
        if state.broken and not keyframe:
            state.dropped_frames += 1
        if now - state.last_pli > _PLI_MIN_INTERVAL:
            state.want_pli = False
            state.last_pli = now
            await self._send_rtcp_pli(packet.ssrc)
        if state.broken and not keyframe:
            return
    state.broken = False
    if not state.decode:
        state.on_frame(now, None)
        return
    for markers in _decode_frame(state, frame_bytes):
        state.on_frame(now, markers)


def _in_sequence(state: _VideoState, seq: int) -> bool:
    """Track RTP sequence numbers: False for a duplicate or a late packet; a gap breaks the frame."""
    if state.last_seq is not None:
        gap = (seq - state.last_seq) & 0xFFFF
        if gap == 0 or gap > 0x8000:
            return False
        if gap > 1:
            state.lost_packets += gap - 1
            state.broken = True
            state.parts.clear()
            state.timestamp = None
    state.last_seq = seq
    return True


def _vp8_descriptor(payload: bytes) -> tuple[bool, bytes]:
    """(starts a frame, VP8 data) from an RTP VP8 payload (RFC 7741 §4.2)."""
    b0 = payload[0]
    pos = 1
    if b0 & 0x80:
        ext = payload[1]
        pos = 2
        if ext & 0x80:  # PictureID, 7 or 15 bits
            pos += 2 if payload[pos] & 0x80 else 1
        if ext & 0x40:  # TL0PICIDX
            pos += 1
        if ext & 0x30:  # TID / KEYIDX
            pos += 1
    start = bool(b0 & 0x10) and (b0 & 0x0F) == 0
    return start, payload[pos:]


def read_markers_yuv(frame: av.VideoFrame) -> Markers | None:
    """Marker band of a decoded YUV frame, read from its luma plane (no colour conversion)."""
    plane = frame.planes[0]
    rows = np.frombuffer(plane, np.uint8, count=plane.line_size * plane.height)
    return read_markers_luma(rows.reshape(plane.height, plane.line_size)[:, : plane.width])


# ---------------------------------------------------------------------- fast marker band reader
# Same sampling, thresholds and checks as mock_server.media.markers.decode_markers on a luma plane, with the
# geometry cached per frame size and the CRC and fields computed with precomputed tables (about 10x cheaper).

_PAYLOAD_BITS = sum(n for _, n in _mk._FIELDS)
# CRC-8 is affine over GF(2): crc(bits) = crc(0) ^ XOR of the columns of the bits that are set.
_CRC_ZERO = _mk._crc8(np.zeros(_PAYLOAD_BITS, dtype=np.uint8))
_CRC_COLUMNS = np.array(
    [_mk._crc8(np.eye(_PAYLOAD_BITS, dtype=np.uint8)[i]) ^ _CRC_ZERO for i in range(_PAYLOAD_BITS)],
    dtype=np.int64,
)
_FIELD_WEIGHTS = np.zeros((_PAYLOAD_BITS + _mk._CRC_BITS, len(_mk._FIELDS) + 1), dtype=np.int64)
_pos = 0
for _col, (_name, _n) in enumerate((*_mk._FIELDS, ("crc", _mk._CRC_BITS))):
    _FIELD_WEIGHTS[_pos : _pos + _n, _col] = 1 << np.arange(_n - 1, -1, -1, dtype=np.int64)
    _pos += _n
_SYNC_ORDER = np.array([0, 1, 2, 93, 94, 95])
assert sorted(_mk._SYNC) == _SYNC_ORDER.tolist() and _mk._SYNC_BITS.tolist() == [1, 0, 1, 0, 1, 0]
_Geometry = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.float32]
_geometry_cache: dict[tuple[int, int], _Geometry | None] = {}


def _geometry(height: int, width: int) -> _Geometry | None:
    """Patch indices of every cell and the 0/1 matrices that sum each cell's patch (R @ patch @ C)."""
    key = (height, width)
    if key not in _geometry_cache:
        if width < _mk.COLUMNS or _mk.band_height(height) < _mk.ROWS:
            _geometry_cache[key] = None
        else:
            x0, kx = _mk._centres(_mk.COLUMNS, width / _mk.COLUMNS, width)
            y0, ky = _mk._centres(_mk.ROWS, _mk.CELL_H_FRACTION * height, height)
            xs = (x0[:, None] + np.arange(kx)).ravel()
            ys = (y0[:, None] + np.arange(ky)).ravel()
            rows = np.kron(np.eye(_mk.ROWS, dtype=np.float32), np.ones((1, ky), np.float32))
            cols = np.kron(np.eye(_mk.COLUMNS, dtype=np.float32), np.ones((kx, 1), np.float32))
            _geometry_cache[key] = (ys[:, None], xs[None, :], rows, cols, np.float32(ky * kx))
    return _geometry_cache[key]


def read_markers_luma(luma: np.ndarray) -> Markers | None:
    """decode_markers for a 2-D luma plane, optimised for reading every frame of many streams."""
    geometry = _geometry(*luma.shape)
    if geometry is None:
        return None
    ys, xs, rows, cols, count = geometry
    flat = (rows @ luma[ys, xs] @ cols).ravel() / count  # == the float32 means decode_markers computes
    s0, s1, s2, s93, s94, s95 = flat[_SYNC_ORDER].tolist()
    white, black = (s0 + s2 + s94) / 3, (s1 + s93 + s95) / 3
    contrast = white - black
    if contrast < _mk._MIN_CONTRAST:
        return None
    threshold = (white + black) / 2
    if np.count_nonzero(np.abs(flat - threshold) < _mk._UNCERTAIN * contrast) > _mk._MAX_UNCERTAIN:
        return None
    bits = flat > threshold
    if not (bits[0] and not bits[1] and bits[2] and not bits[93] and bits[94] and not bits[95]):
        return None
    data = bits[_mk._DATA_CELLS]
    values = (data @ _FIELD_WEIGHTS).tolist()
    crc = _CRC_ZERO ^ int(np.bitwise_xor.reduce(_CRC_COLUMNS[data[:_PAYLOAD_BITS]], initial=0))
    if crc != values[-1]:
        return None
    return Markers(*values[:-1])

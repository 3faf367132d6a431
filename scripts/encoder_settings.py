"""Encoder settings side by side on rendered chunks: ms per frame, bitrate, marker band after decoding.

    python scripts/encoder_settings.py                 # 160x96 and 1280x768 (640x384 sr 2x), 4 chunks each

Each setting encodes the same distinct chunks (own prompt and seed per chunk, a key frame at each chunk
start) twice on one thread with a reused context; the faster pass counts (ms per frame covers drawing the
frame in I420 and encoding it). Every frame is then decoded and its marker band read back.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import av

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mock_server.media.encoder import NativeFrames, ReusedEncoder, open_encoder  # noqa: E402
from mock_server.media.markers import decode_markers  # noqa: E402
from mock_server.model.plan import ChunkPlan  # noqa: E402

SIZES = {"160x96": ((160, 96), "off"), "1280x768": ((640, 384), "2x")}
SETTINGS = [
    ("libvpx", {"cpu-used": "8", "static-thresh": "1"}),
    ("libvpx", {"cpu-used": "16", "static-thresh": "1"}),
    ("libvpx", {"cpu-used": "16", "static-thresh": "500"}),  # used
    ("libx264", {"preset": "ultrafast"}),  # used for H264
    ("libx264", {"preset": "veryfast"}),
]
DECODERS = {"libvpx": "libvpx", "libx264": "h264"}
BITRATE = 500_000
CHUNKS = 4


def measure(name: str, options: dict[str, str], native: tuple[int, int], sr: str) -> str:
    chunks = [
        NativeFrames(ChunkPlan(c, f"a fox, take {c}", 1000 + c, None, 0.5, sr), native) for c in range(CHUNKS)
    ]
    width, height = chunks[0].output_size
    encoder = ReusedEncoder(open_encoder(name, width, height, BITRATE, options))
    packets: list[bytes] = []
    passes = []
    for _ in range(2):
        started = time.perf_counter()
        for frames in chunks:
            packets += [encoder.encode(frames.frame(i), key=i == 0) for i in range(33)]
        passes.append((time.perf_counter() - started) / (33 * CHUNKS))
    decoder = av.CodecContext.create(DECODERS[name], "r")
    unreadable = sum(
        decode_markers(frame.to_ndarray(format="gray")) is None
        for data in packets[: 33 * CHUNKS]
        for frame in decoder.decode(av.Packet(data))
    )
    kbps = sum(map(len, packets)) * 8 / len(packets) * 24 / 1000
    return (
        f"{min(passes) * 1000:6.2f} ms/frame  {kbps:5.0f} kbps  unreadable bands {unreadable}/{33 * CHUNKS}"
    )


def main() -> None:
    for label, (native, sr) in SIZES.items():
        for name, options in SETTINGS:
            print(f"{label:>9} {name:8} {options}: {measure(name, options, native, sr)}")


if __name__ == "__main__":
    main()

"""The JS harness's decodeMarkers (js/helios-mock/markers.cjs) and Python's decode_markers agree: the same
rendered frames — several plans and sizes, clean, rescaled, noisy, VP8-damaged and band-less — as RGB, RGBA
and I420 (PyAV) files, decoded by both, give identical markers (or None on both sides)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from PIL import Image

from mock_server.media.frames import render_frame
from mock_server.media.markers import COLUMNS, ROWS, Markers, cell_edges, decode_markers
from mock_server.model.plan import ChunkPlan

REPO = Path(__file__).resolve().parent.parent
DECODER = REPO / "tests" / "js_harness" / "decode_frames.cjs"
PLANS = [
    ChunkPlan(0, "A red fox trotting through snow", 0, None, 1.0, "off"),
    ChunkPlan(7, "A lighthouse on a cliff at dawn", 0xFFFFFFFF, None, 0.5, "2x"),
    ChunkPlan(65539, "ünïcødé ☃ prompt", 123456789, None, 1.0, "off"),
]
NATIVE_SIZES = [(160, 96), (320, 192), (64, 32)]


def _frames() -> dict[str, np.ndarray]:
    """name -> RGB (H, W, 3) uint8: clean, rescaled (also non-uniformly), noisy and band-less variants."""
    rng = np.random.default_rng(14)
    frames: dict[str, np.ndarray] = {}
    for p, plan in enumerate(PLANS):
        for native in NATIVE_SIZES:
            for index in (0, 16, 32):
                frames[f"p{p}-{native[0]}x{native[1]}-f{index}"] = render_frame(plan, index, native)
    base = frames["p1-160x96-f16"]
    for width, height in [(333, 177), (97, 61), (1000, 200), (32, 7), (31, 100)]:
        frames[f"resized-{width}x{height}"] = np.asarray(Image.fromarray(base).resize((width, height)))
    for sigma in (10, 30, 45, 60, 80):
        noisy = base.astype(np.float64) + rng.normal(0, sigma, base.shape)
        frames[f"noise-{sigma}"] = np.clip(noisy, 0, 255).astype(np.uint8)
    frames["blank"] = np.full_like(base, 128)
    frames["inverted"] = 255 - base
    frames |= _greyed_cells(frames["p2-320x192-f32"], rng)
    return frames | _vp8_damaged([render_frame(PLANS[0], i, (320, 192)) for i in range(33)])


def _greyed_cells(rgb: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Frames with 1-5 cells pulled towards grey: ambiguous cells, the erasure retry, CRC failures."""
    xs, ys = cell_edges(rgb.shape[1], rgb.shape[0])
    out = {}
    for n in range(40):
        frame = rgb.copy()
        for cell in rng.choice(COLUMNS * ROWS, size=1 + n % 5, replace=False):
            row, col = divmod(int(cell), COLUMNS)
            patch = frame[ys[row] : ys[row + 1], xs[col] : xs[col + 1]].astype(np.float64)
            alpha = rng.uniform(0.3, 1.0)
            frame[ys[row] : ys[row + 1], xs[col] : xs[col + 1]] = (patch * (1 - alpha) + 128 * alpha).round()
        out[f"grey-{n}"] = frame
    return out


def _vp8_damaged(rgbs: list[np.ndarray]) -> dict[str, np.ndarray]:
    """A chunk's frames through a starved VP8 encoder: stale and smeared cells as on a real stream."""
    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height, codec.pix_fmt = rgbs[0].shape[1], rgbs[0].shape[0], "yuv420p"
    codec.bit_rate, codec.options = 30_000, {"deadline": "realtime", "cpu-used": "8"}
    decoder = av.CodecContext.create("vp8", "r")
    packets = [pkt for rgb in rgbs for pkt in codec.encode(av.VideoFrame.from_ndarray(rgb, "rgb24"))]
    packets += codec.encode(None)
    decoded = [frame for packet in packets for frame in decoder.decode(packet)]
    return {f"vp8-{n}": frame.to_ndarray(format="rgb24") for n, frame in enumerate(decoded)}


def _i420(rgb: np.ndarray) -> np.ndarray:
    """Planar I420 (Y, then U, then V) as @roamhq/wrtc's RTCVideoSink delivers it, converted by PyAV."""
    return av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p").to_ndarray()


def _as_dict(m: Markers | None) -> dict[str, int] | None:
    if m is None:
        return None
    return {
        "chunk": m.chunk,
        "frame": m.frame,
        "promptId": m.prompt_id,
        "seed": m.seed,
        "imageId": m.image_id,
    }


def test_js_and_python_decoders_agree(tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    manifest: list[dict[str, Any]] = []
    expected: dict[str, dict[str, int] | None] = {}
    for name, rgb in _frames().items():
        height, width = rgb.shape[:2]
        rgba = np.dstack([rgb, np.full((height, width), 255, np.uint8)])
        layouts = {"rgb": (rgb, rgb), "rgba": (rgba, rgba)}
        if width % 2 == 0 and height % 2 == 0:
            planes = _i420(rgb)
            layouts["i420"] = (planes, planes[:height])  # Python decodes the Y plane
        for layout, (raw, for_python) in layouts.items():
            key = f"{name}.{layout}"
            path = tmp_path / f"{key}.bin"
            path.write_bytes(np.ascontiguousarray(raw).tobytes())
            manifest.append({"name": key, "path": str(path), "width": width, "height": height})
            expected[key] = _as_dict(decode_markers(for_python))
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    proc = subprocess.run(
        [node, str(DECODER), str(tmp_path / "manifest.json")], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    differ = {k: (expected[k], got.get(k)) for k in expected if got.get(k) != expected[k]}
    assert not differ, f"JS and Python decoders differ on {len(differ)}/{len(expected)} frames: {differ}"
    decoded = [k for k, v in expected.items() if v is not None]
    rejected = [k for k, v in expected.items() if v is None]
    # the comparison covers both outcomes: frames read, and frames refused (blank, too noisy, too small)
    assert len(decoded) > 100 and len(rejected) >= 6, (len(decoded), rejected)
    clean = got["p1-160x96-f16.i420"]
    assert (clean["chunk"], clean["frame"], clean["seed"], clean["imageId"]) == (7, 16, 0xFFFFFFFF, 0)

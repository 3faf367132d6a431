"""Deterministic synthetic frames for the mock Helios (docs/HELIOS.md §11).

A frame is a pure function of (prompt, seed, reference image + strength, chunk index, frame index, size):

* background: a gradient whose colour is derived from a hash of the prompt, with the reference image blended
  over it with weight ``image_strength``, and the prompt text in a box at the bottom (all static per chunk);
* a seed-dependent, colour-tinted cloud texture, shifted by the chunk index (it moves from chunk to chunk and
  holds still within one, so an encoder codes little besides the moving parts), plus a seed-coloured disc
  bouncing around the frame with the global frame number ``chunk*33 + frame``;
* a progress track under the band with a yellow marker in slot ``frame`` of 33 (frame-in-chunk 0-32) and a
  small "chunk N" label;
* the marker band (``markers.py``) along the top.

Everything is rendered at the native size and upscaled by the integer ``sr_scale`` factor with nearest
neighbour. :class:`ChunkRenderer` composes everything static within a chunk once (the backdrop) directly at
the output size, so each frame costs one copy plus a few small blits; the result is bit-identical to
rendering at native size and repeating pixels.
"""

from __future__ import annotations

import colorsys
import hashlib
import textwrap
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mock_server.constants import CHUNK_FRAMES, NATIVE_SIZE, SR_FACTORS
from mock_server.media.markers import ROWS, Markers, band_height, cell_bits, cell_edges, prompt_id
from mock_server.model.plan import ChunkPlan, ReferenceImage, output_size

NOISE_AMPLITUDE = 56  # grey levels of the drifting texture; the static layer is scaled into [0, 255 - this]
_TRACK_COLOUR = np.array([24, 24, 28], dtype=np.uint8)
MARKER_COLOUR = np.array([255, 214, 0], dtype=np.uint8)

Size = tuple[int, int]  # (width, height)


def _hash_int(*parts: object) -> int:
    """Stable 64-bit integer from the repr of ``parts``."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode("utf-8")).digest()[:8], "big")


def _upscale(a: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour integer upscale of the first two axes."""
    if factor == 1:
        return np.ascontiguousarray(a)
    return np.repeat(np.repeat(a, factor, axis=1), factor, axis=0)  # columns first: faster


LAYER_CACHE_BYTES = 16 << 20  # native layers kept per (prompt, image) and seed (each serves whole chunks)


class _LayerCache:
    """LRU of native-size numpy layers bounded by bytes (a session's layers stay while it streams)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable, make: Callable[[], Any]) -> Any:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                return found
        value = make()  # outside the lock: rendering threads build different layers in parallel
        with self._lock:
            if key not in self._items:
                self._items[key] = value
                self._bytes += _nbytes(value)
            while self._bytes > self.max_bytes and len(self._items) > 1:
                _, old = self._items.popitem(last=False)
                self._bytes -= _nbytes(old)
        return value


def _nbytes(value: Any) -> int:
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, tuple):
        return sum(_nbytes(v) for v in value)
    return 64


_layers = _LayerCache(LAYER_CACHE_BYTES)


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _layout(native_size: Size) -> dict[str, int]:
    """Native-pixel geometry shared by the static and per-frame layers."""
    width, height = native_size
    band = band_height(height)
    track_top = band + max(1, round(height / 96))
    track_bottom = track_top + max(3, round(height / 32))
    return {"band": band, "track_top": track_top, "track_bottom": track_bottom}


@lru_cache(maxsize=4)
def _background(prompt: str, native_size: Size) -> np.ndarray:
    """(H, W, 3) float32 gradient whose hue, saturation and value derive from the prompt text."""
    width, height = native_size
    if prompt:
        h = _hash_int("background", prompt)
        hue = (h & 0xFFFF) / 65536
        sat = 0.45 + 0.4 * ((h >> 16) & 0xFF) / 255
        val = 0.5 + 0.3 * ((h >> 24) & 0xFF) / 255
        left = np.array(colorsys.hsv_to_rgb(hue, sat, val), dtype=np.float32)
        right = np.array(colorsys.hsv_to_rgb((hue + 0.09) % 1.0, sat, val * 0.9), dtype=np.float32)
    else:
        left = right = np.array([0.18, 0.18, 0.2], dtype=np.float32)
    u = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :, None]
    v = np.linspace(1.15, 0.6, height, dtype=np.float32)[:, None, None]
    return np.clip((left * (1 - u) + right * u) * v * 255.0, 0, 255)


@lru_cache(maxsize=4)
def _image_layer(image: ReferenceImage, native_size: Size) -> np.ndarray:
    """The conditioned reference image as (H, W, 3) float32, resized if the native size is not 640x384."""
    pixels = image.pixels
    if pixels.shape[1::-1] != native_size:
        resized = Image.fromarray(pixels).convert("RGB").resize(native_size, Image.Resampling.BILINEAR)
        pixels = np.asarray(resized)
    return pixels.astype(np.float32)


@lru_cache(maxsize=8)
def _char_width(size: int) -> float:
    """Mean width of a lower-case letter in the default font at `size` (for wrapping prompts)."""
    probe = ImageDraw.Draw(Image.new("RGBA", (1, 1)))
    return max(1.0, probe.textlength("abcdefghij", font=_font(size)) / 10)


@lru_cache(maxsize=16)
def _text_overlay(prompt: str, native_size: Size) -> tuple[int, int, np.ndarray, np.ndarray] | None:
    """Prompt text in a translucent box: (y, x, rgb (h, w, 3) float32, alpha (h, w, 1) float32) or None."""
    if not prompt:
        return None
    width, height = native_size
    size = max(8, round(height / 16))
    margin = max(2, round(height / 32))
    font = _font(size)
    probe = ImageDraw.Draw(Image.new("RGBA", (1, 1)))
    chars = max(8, int((width - 4 * margin) / _char_width(size)))
    lines = textwrap.wrap(" ".join(prompt.split()), width=chars) or [""]
    if len(lines) > 3:
        lines = lines[:2] + [textwrap.shorten(" ".join(lines[2:]), width=chars, placeholder="...")]
    text = "\n".join(lines)
    # Pillow types bounding boxes as floats; with a FreeType font they are whole pixels.
    left, top, right, bottom = map(int, probe.multiline_textbbox((0, 0), text, font=font, spacing=size // 4))
    box_w = min(width - 2 * margin, right - left + 2 * margin)
    box_h = min(height // 2, bottom - top + 2 * margin)
    layer = Image.new("RGBA", (box_w, box_h), (0, 0, 0, 140))
    ImageDraw.Draw(layer).multiline_text(
        (margin - left, margin - top), text, font=font, fill=(255, 255, 255, 255), spacing=size // 4
    )
    rgba = np.asarray(layer).astype(np.float32)
    return height - margin - box_h, margin, rgba[..., :3], rgba[..., 3:] / 255.0


@lru_cache(maxsize=8)
def _static_layer(
    prompt: str, image: ReferenceImage | None, strength: float, native_size: Size
) -> np.ndarray:
    """Native (H, W, 3) uint8: background, image blend and prompt text, scaled into [0, 255 - amplitude]."""
    base = _background(prompt, native_size)
    if image is not None:
        s = float(np.clip(strength, 0.0, 1.0))
        base = base * (1.0 - s) + _image_layer(image, native_size) * s
    overlay = _text_overlay(prompt, native_size)
    if overlay is not None:
        y, x, rgb, alpha = overlay
        base = base.copy()
        region = base[y : y + rgb.shape[0], x : x + rgb.shape[1]]
        region[:] = region * (1.0 - alpha) + rgb * alpha
    scale = (255 - NOISE_AMPLITUDE) / 255.0
    return np.round(base * scale).astype(np.uint8)


def _periodic_noise(rng: np.random.Generator, grid: Size, native_size: Size) -> np.ndarray:
    """Smooth value noise in [0, 1], periodic over the frame, from a random (gh, gw) lattice."""
    gw, gh = grid
    width, height = native_size
    lattice = rng.random((gh, gw), dtype=np.float32)

    def axis(n: int, g: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = (np.arange(n, dtype=np.float32) + 0.5) * (g / n) - 0.5
        i0 = np.floor(pos).astype(int)
        t = pos - i0
        return i0 % g, (i0 + 1) % g, (t * t * (3 - 2 * t)).astype(np.float32)

    y0, y1, ty = axis(height, gh)
    x0, x1, tx = axis(width, gw)
    rows = lattice[y0] * (1 - ty[:, None]) + lattice[y1] * ty[:, None]
    noise = rows[:, x0] * (1 - tx) + rows[:, x1] * tx
    return (noise - noise.min()) / max(1e-6, float(noise.max() - noise.min()))


@lru_cache(maxsize=8)
def _noise_texture(seed: int, native_size: Size) -> np.ndarray:
    """Native (H, W, 3) uint8 in [0, amplitude]: two tinted cloud octaves, periodic over the frame."""
    rng = np.random.default_rng(_hash_int("noise", seed))
    coarse = _periodic_noise(rng, (5, 3), native_size)
    fine = _periodic_noise(rng, (20, 12), native_size)
    tint_a = rng.uniform(0.35, 1.0, 3).astype(np.float32)
    tint_b = rng.uniform(0.35, 1.0, 3).astype(np.float32)
    mix = 0.7 * coarse[..., None] * tint_a + 0.3 * fine[..., None] * tint_b
    return np.ascontiguousarray(np.round(mix * NOISE_AMPLITUDE), dtype=np.uint8)


@lru_cache(maxsize=8)
def _motion(seed: int, native_size: Size) -> tuple[int, int, int, int, int, int]:
    """Seed-dependent drift velocity (vx, vy) and disc velocity/phase (dvx, dvy, px, py), native px/frame."""
    width, height = native_size
    h = _hash_int("motion", seed)
    vx = (1 + (h & 1)) * max(1, round(width / 320)) * (1 if h & 2 else -1)
    vy = max(1, round(height / 384)) * (1 if h & 4 else -1)
    dvx = (2 + ((h >> 3) & 3)) * max(1, round(width / 640))
    dvy = (2 + ((h >> 5) & 3)) * max(1, round(height / 384))
    return vx, vy, dvx, dvy, (h >> 8) & 0xFFFF, (h >> 24) & 0xFFFF


@lru_cache(maxsize=8)
def disc(seed: int, native_size: Size) -> tuple[np.ndarray, np.ndarray]:
    """Native disc sprite: colour (d, d, 3) uint16 and alpha (d, d, 1) uint16 in 0..256."""
    height = native_size[1]
    d = max(4, round(height * 0.16))
    h = _hash_int("disc", seed)
    colour = np.array(colorsys.hsv_to_rgb((h & 0xFFFF) / 65536, 0.55, 1.0)) * 255
    r = d / 2
    yy, xx = np.mgrid[0:d, 0:d].astype(np.float32) + 0.5 - r
    dist = np.sqrt(xx * xx + yy * yy)
    shade = np.clip(1.15 - 0.45 * np.sqrt((xx + r / 3) ** 2 + (yy + r / 3) ** 2) / r, 0.5, 1.0)
    rgb = np.clip(colour[None, None, :] * shade[..., None], 0, 255).astype(np.uint16)
    alpha = np.round(np.clip(r - dist + 0.5, 0.0, 1.0) * 256 * 0.85).astype(np.uint16)[..., None]
    return rgb, alpha


def _bounce(t: int, span: int) -> int:
    """Triangle wave over [0, span]."""
    if span <= 0:
        return 0
    t %= 2 * span
    return t if t <= span else 2 * span - t


def _label(chunk_index: int, native_size: Size) -> np.ndarray:
    """Small opaque "chunk N" label (h, w, 3) uint8 at native size."""
    height = native_size[1]
    size = max(8, round(height / 24))
    font = _font(size)
    text = f"chunk {chunk_index}"
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    left, top, right, bottom = map(int, probe.textbbox((0, 0), text, font=font))
    pad = max(1, size // 4)
    img = Image.new("RGB", (right + 2 * pad, bottom - top + 2 * pad), tuple(int(c) for c in _TRACK_COLOUR))
    ImageDraw.Draw(img).text((pad, pad - top), text, font=font, fill=(230, 230, 230))
    return np.asarray(img)


def _wrapped_spans(start: int, stop: int, offset: int, period: int) -> list[tuple[int, int, int]]:
    """Split [start, stop) into (dst_start, dst_stop, src_start) runs where src = (dst + offset) % period."""
    spans = []
    pos = start
    while pos < stop:
        src = (pos + offset) % period
        n = min(stop - pos, period - src)
        spans.append((pos, pos + n, src))
        pos += n
    return spans


class ChunkRenderer:
    """Renders the 33 frames of one :class:`ChunkPlan`; build once per chunk, then call :meth:`frame`.

    Everything that stays the same for the whole chunk (static layer, the texture at the chunk's offset, the
    progress track and the chunk label) is composed once into a backdrop; a frame is a copy of it with the
    disc, the progress marker and the marker band drawn on top."""

    def __init__(self, plan: ChunkPlan, native_size: Size = NATIVE_SIZE) -> None:
        self.plan = plan
        self.native_size = (int(native_size[0]), int(native_size[1]))
        self.output_size = output_size(plan.sr_scale, self.native_size)
        self.factor = f = SR_FACTORS[plan.sr_scale]
        layout = _layout(self.native_size)
        self.band = layout["band"]
        self.track = (layout["track_top"], layout["track_bottom"])
        size = self.native_size
        disc_rgb, disc_alpha = _layers.get(("disc", plan.seed, size), lambda: disc(plan.seed, size))
        self.disc_size = disc_rgb.shape[0]
        self._disc_rgb, self._disc_alpha = _upscale(disc_rgb, f), _upscale(disc_alpha, f)
        self._disc_inv = np.uint16(256) - self._disc_alpha
        self._motion = _motion(plan.seed, self.native_size)
        self._prompt_id = prompt_id(plan.prompt)
        xs, ys = cell_edges(*self.native_size)
        self.cell_widths = np.diff(xs) * f
        self.cell_rows = ys * f
        self.backdrop = self._compose_backdrop()

    def _compose_backdrop(self) -> np.ndarray:
        """(H, W, 3) uint8 at the output size: everything but the disc, the marker and the band (black)."""
        plan, f, size = self.plan, self.factor, self.native_size
        width, height = size
        out_w, out_h = self.output_size
        base = _upscale(
            _layers.get(
                ("static", plan.prompt, plan.image, float(plan.image_strength), size),
                lambda: _static_layer(plan.prompt, plan.image, float(plan.image_strength), size),
            ),
            f,
        )
        texture = _upscale(
            _layers.get(("noise", plan.seed, size), lambda: _noise_texture(plan.seed, size)), f
        )
        out = np.zeros((out_h, out_w, 3), dtype=np.uint8)
        g = plan.chunk_index * CHUNK_FRAMES  # the texture moves from chunk to chunk, not within one
        vx, vy = self._motion[:2]
        top = self.track[0] * f
        oy, ox = ((-g * vy) % height) * f, ((-g * vx) % width) * f
        for r0, r1, sr in _wrapped_spans(top, out_h, oy, out_h):
            for c0, c1, sc in _wrapped_spans(0, out_w, ox, out_w):
                np.add(
                    base[r0:r1, c0:c1], texture[sr : sr + r1 - r0, sc : sc + c1 - c0], out=out[r0:r1, c0:c1]
                )
        out[self.band * f : self.track[1] * f] = _TRACK_COLOUR
        label = _layers.get(("label", plan.chunk_index, size), lambda: _label(plan.chunk_index, size))
        label = _upscale(label[: max(0, height - self.track[1] - 1), : width // 2], f)
        ly, lx = self.track[1] + 1, width - label.shape[1] // f - max(1, width // 80)
        out[ly * f : ly * f + label.shape[0], lx * f : lx * f + label.shape[1]] = label
        return out

    @property
    def disc_sprite(self) -> tuple[np.ndarray, np.ndarray]:
        """The disc at the output size: colour (d, d, 3) and alpha (d, d, 1) in 0..256, both uint16."""
        return self._disc_rgb, self._disc_alpha

    def disc_origin(self, frame_index: int) -> tuple[int, int]:
        """Native (x, y) of the disc's top-left corner in this frame."""
        width, height = self.native_size
        d = self.disc_size
        g = self.plan.chunk_index * CHUNK_FRAMES + frame_index
        dvx, dvy, px, py = self._motion[2:]
        y_min = self.track[1] + 1
        return _bounce(px + g * dvx, width - d), y_min + _bounce(py + g * dvy, height - d - y_min)

    def marker_span(self, frame_index: int) -> tuple[int, int]:
        """Native columns [m0, m1) of the progress marker for this frame-in-chunk."""
        width = self.native_size[0]
        return round(frame_index * width / CHUNK_FRAMES), round((frame_index + 1) * width / CHUNK_FRAMES)

    def cells(self, frame_index: int) -> np.ndarray:
        """(3, 32) 0/1 cells of this frame's marker band."""
        plan = self.plan
        markers = Markers(plan.chunk_index, frame_index, self._prompt_id, plan.seed, plan.image_id)
        return cell_bits(markers)

    def frame(self, frame_index: int) -> np.ndarray:
        """Frame ``frame_index`` (0-32) of the chunk as a new (H, W, 3) uint8 RGB array at the output size."""
        if not 0 <= frame_index < CHUNK_FRAMES:
            raise ValueError(f"frame_index must be in 0..{CHUNK_FRAMES - 1}, got {frame_index}")
        f = self.factor
        out = self.backdrop.copy()
        d = self.disc_size
        dx, dy = self.disc_origin(frame_index)
        region = out[dy * f : (dy + d) * f, dx * f : (dx + d) * f]
        if region.shape[:2] == self._disc_rgb.shape[:2]:
            region[:] = (region * self._disc_inv + self._disc_rgb * self._disc_alpha) >> 8
        m0, m1 = self.marker_span(frame_index)
        out[self.track[0] * f : self.track[1] * f, m0 * f : m1 * f] = MARKER_COLOUR
        cells = self.cells(frame_index) * np.uint8(255)
        rows, out_w = self.cell_rows, self.output_size[0]
        for r in range(ROWS):  # same pixels as markers.encode_markers + upscale
            out[rows[r] : rows[r + 1]] = np.repeat(np.repeat(cells[r], self.cell_widths), 3).reshape(out_w, 3)
        return out


@lru_cache(maxsize=2)
def _renderer(plan: ChunkPlan, native_size: Size) -> ChunkRenderer:
    return ChunkRenderer(plan, native_size)


def render_frame(plan: ChunkPlan, frame_index: int, native_size: Size = NATIVE_SIZE) -> np.ndarray:
    """Frame ``frame_index`` (0-32) of ``plan`` as (H, W, 3) uint8 RGB at ``output_size(plan.sr_scale)``.

    Keeps the last two :class:`ChunkRenderer` objects; a long-lived caller (one per session) should hold its
    own ``ChunkRenderer`` per chunk instead.
    """
    return _renderer(plan, (int(native_size[0]), int(native_size[1]))).frame(frame_index)

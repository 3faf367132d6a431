"""Machine-readable marker band drawn along the top of every synthetic frame.

Layout (all geometry is relative to the frame, so it survives any rescaling, even a non-uniform one):

* 32 columns x 3 rows of binary cells (white = 1, black = 0) covering the top ``15/96`` of the frame;
  a cell is ``W/32`` wide and ``5H/96`` high, i.e. exactly square on a 5:3 frame (20 x 20 px at 640 x 384).
* Cells are numbered row-major 0..95. Cells 0-2 hold the sync pattern 1,0,1 and cells 93-95 hold 0,1,0.
* Cells 3..92 hold 90 bits, MSB first: chunk (16, mod 65536), frame-in-chunk (6), prompt_id (16),
  seed (32, ``seed & 0xFFFFFFFF``), image_id (12), then a CRC-8 (poly 0x2F, init/xorout 0xFF) of the
  preceding 82 bits.

Decoding averages a small patch at the centre of every cell (RGB is converted to luma; a 2-D luma plane such
as the Y plane of I420 is used as is) and thresholds half-way between the mean of the white and black sync
cells. It returns ``None`` when the contrast is too low, more than 3 cells are ambiguous, the sync pattern
does not match or the CRC fails (after one retry with the least certain cell flipped, if it was ambiguous).

VP8 note: aiortc's real-time VP8 encoder (temporal denoiser on) occasionally leaves part of a just-toggled
cell stale. Measured on rendered frames: about 1 frame in 1000 at 320x192 then reads as ``None``; none at
160x96, 640x384 or 1280x768 in 2,640 frames each; never a wrong value. Callers should skip ``None`` frames.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

COLUMNS = 32
ROWS = 3
CELL_H_FRACTION = 5 / 96  # of the frame height; with W/32 columns, square on a 5:3 frame

_SYNC = {0: 1, 1: 0, 2: 1, 93: 0, 94: 1, 95: 0}
_DATA_CELLS = np.array([i for i in range(COLUMNS * ROWS) if i not in _SYNC])
_SYNC_CELLS = np.array(sorted(_SYNC))
_SYNC_BITS = np.array([_SYNC[i] for i in sorted(_SYNC)], dtype=bool)
_FIELDS = (("chunk", 16), ("frame", 6), ("prompt_id", 16), ("seed", 32), ("image_id", 12))
_PAYLOAD_BITS = sum(n for _, n in _FIELDS)  # 82
_CRC_BITS = 8
assert _PAYLOAD_BITS + _CRC_BITS == len(_DATA_CELLS)

_MIN_CONTRAST = 64.0  # grey levels between the white and black sync means
# A cell is uncertain when it lies in the middle half between the black and white levels. The CRC detects
# every pattern of up to 3 wrong bits (Hamming distance 4 over the 90 data + CRC cells), so up to 3 uncertain
# cells are tolerated; more than that means the band is absent or too damaged to trust.
_UNCERTAIN = 0.25
_MAX_UNCERTAIN = 3
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass(frozen=True)
class Markers:
    """Values carried by the band of one frame."""

    chunk: int
    frame: int
    prompt_id: int
    seed: int
    image_id: int


def prompt_id(prompt: str) -> int:
    """16-bit id of a prompt text (sha256 of its UTF-8 bytes); 1..65535 for any non-empty prompt, 0 for ""."""
    if not prompt:
        return 0
    digest = hashlib.sha256(prompt.encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") % 0xFFFF + 1


def _crc8(bits: np.ndarray) -> int:
    """CRC-8/AUTOSAR (poly 0x2F, init 0xFF, xorout 0xFF) over a bit sequence, MSB first."""
    crc = 0xFF
    for bit in bits:
        crc ^= int(bit) << 7
        crc = ((crc << 1) ^ 0x2F) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc ^ 0xFF


def _crc8_columns() -> tuple[int, np.ndarray]:
    """CRC-8 is affine over GF(2): crc(bits) = crc(zeros) XOR the columns of the bits that are set."""
    zeros = np.zeros(_PAYLOAD_BITS, dtype=np.uint8)
    base = _crc8(zeros)
    columns = []
    for k in range(_PAYLOAD_BITS):
        one = zeros.copy()
        one[k] = 1
        columns.append(_crc8(one) ^ base)
    return base, np.array(columns, dtype=np.uint8)


_CRC_BASE, _CRC_COLUMNS = _crc8_columns()


def _payload_crc8(payload: np.ndarray) -> int:
    """_crc8 of the 82 payload bits, by table (the frame renderer calls this for every frame)."""
    return _CRC_BASE ^ int(np.bitwise_xor.reduce(_CRC_COLUMNS[payload.astype(bool)], initial=0))


def _to_bits(value: int, n: int) -> list[int]:
    return [(value >> (n - 1 - k)) & 1 for k in range(n)]


def _payload_bits(m: Markers) -> np.ndarray:
    for name, n in (("frame", 6), ("prompt_id", 16), ("image_id", 12)):
        value = getattr(m, name)
        if not 0 <= value < (1 << n):
            raise ValueError(f"Markers.{name}={value} does not fit in {n} bits")
    values = {
        "chunk": m.chunk % 65536,
        "frame": m.frame,
        "prompt_id": m.prompt_id,
        "seed": m.seed & 0xFFFFFFFF,
        "image_id": m.image_id,
    }
    bits: list[int] = []
    for name, n in _FIELDS:
        bits += _to_bits(values[name], n)
    return np.array(bits, dtype=np.uint8)


def band_height(height: int) -> int:
    """Rows of a frame of this height covered by the band."""
    return int(cell_edges(COLUMNS, height)[1][-1])


def cell_bits(m: Markers) -> np.ndarray:
    """(3, 32) uint8 array of the 0/1 cell values encoding ``m``."""
    payload = _payload_bits(m)
    cells = np.zeros(COLUMNS * ROWS, dtype=np.uint8)
    cells[_SYNC_CELLS] = _SYNC_BITS
    cells[_DATA_CELLS] = np.concatenate([payload, _to_bits(_payload_crc8(payload), _CRC_BITS)])
    return cells.reshape(ROWS, COLUMNS)


def cell_edges(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel edges of the cells when drawing: 33 column edges and 4 row edges."""
    xs = np.round(np.arange(COLUMNS + 1) * (width / COLUMNS)).astype(int)
    ys = np.round(np.arange(ROWS + 1) * (CELL_H_FRACTION * height)).astype(int)
    return xs, ys


def band_image(m: Markers, width: int, height: int) -> np.ndarray:
    """The band for a (height, width) frame as a (band_height, width) uint8 array of 0/255."""
    xs, ys = cell_edges(width, height)
    cells = cell_bits(m) * np.uint8(255)
    return np.repeat(np.repeat(cells, np.diff(ys), axis=0), np.diff(xs), axis=1)


def encode_markers(canvas: np.ndarray, m: Markers) -> None:
    """Draw the band for ``m`` in place onto an RGB (H, W, 3) uint8 canvas."""
    height, width = canvas.shape[:2]
    band = band_image(m, width, height)
    canvas[: band.shape[0]] = band[:, :, None]


def _centres(n: int, pitch: float, size: int) -> tuple[np.ndarray, int]:
    """Start indices and length of the central patch of ``n`` cells of ``pitch`` px along an axis."""
    k = max(1, 2 * int(pitch * 0.25) + 1)
    centres = (np.arange(n) + 0.5) * pitch
    starts = np.floor(centres - k / 2 + 0.5).astype(int)
    return np.clip(starts, 0, max(0, size - k)), min(k, size)


def _sample_cells(frame: np.ndarray) -> np.ndarray | None:
    """Mean luma of the central patch of every cell, shape (3, 32), or None if the frame is unusable."""
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if frame.ndim == 3 and frame.shape[2] >= 3:
        rgb = True
    elif frame.ndim == 2:
        rgb = False
    else:
        return None
    height, width = frame.shape[:2]
    if width < COLUMNS or band_height(height) < ROWS:
        return None
    x0, kx = _centres(COLUMNS, width / COLUMNS, width)
    y0, ky = _centres(ROWS, CELL_H_FRACTION * height, height)
    xs = (x0[:, None] + np.arange(kx)).ravel()
    ys = (y0[:, None] + np.arange(ky)).ravel()
    patch = frame[ys[:, None], xs[None, :]].astype(np.float32)
    if rgb:
        patch = patch[..., :3] @ _LUMA
    return patch.reshape(ROWS, ky, COLUMNS, kx).mean(axis=(1, 3))


def decode_markers(frame: np.ndarray) -> Markers | None:
    """Read the band from an RGB (H, W, 3) or luma (H, W) frame at any scale; None if absent or corrupt."""
    means = _sample_cells(np.asarray(frame))
    if means is None:
        return None
    flat = means.ravel()
    sync = flat[_SYNC_CELLS]
    white, black = sync[_SYNC_BITS].mean(), sync[~_SYNC_BITS].mean()
    contrast = white - black
    if contrast < _MIN_CONTRAST:
        return None
    threshold = (white + black) / 2
    if np.count_nonzero(np.abs(flat - threshold) < _UNCERTAIN * contrast) > _MAX_UNCERTAIN:
        return None
    bits = flat > threshold
    if not np.array_equal(bits[_SYNC_CELLS], _SYNC_BITS):
        return None
    data = bits[_DATA_CELLS]
    found = _parse(data)
    if found is None:
        # One erasure: VP8 sometimes leaves part of a just-toggled cell stale, which reads as a grey cell.
        # Retry with the least certain data cell flipped; a wrong result would now need >= 3 other bit errors
        # and a CRC collision.
        margins = np.abs(flat[_DATA_CELLS] - threshold)
        weakest = int(np.argmin(margins))
        if margins[weakest] < _UNCERTAIN * contrast:
            data = data.copy()
            data[weakest] = not data[weakest]
            found = _parse(data)
    return found


def _parse(data: np.ndarray) -> Markers | None:
    """Markers from the 90 data-cell bits, or None if the CRC does not match."""
    bits = data.astype(np.uint8)
    payload, crc = bits[:_PAYLOAD_BITS], bits[_PAYLOAD_BITS:]
    if _crc8(payload) != int("".join(map(str, crc)), 2):
        return None
    values: dict[str, int] = {}
    pos = 0
    for name, n in _FIELDS:
        values[name] = int("".join(map(str, payload[pos : pos + n])), 2)
        pos += n
    return Markers(**values)

"use strict";
// decodeMarkers: the marker band of helios-mock frames, read from frames as JavaScript sees them — I420 from
// @roamhq/wrtc's RTCVideoSink ({width, height, data}), RGBA from a canvas / VideoFrame (ImageData), RGB or a
// bare luma plane. The same algorithm as Python's mock_server/media/markers.py `decode_markers` (band
// geometry, patch sampling, thresholds, one-erasure retry, CRC-8, fields); browser-safe (no Node imports).
//
// Arithmetic: means are rounded to float32 (Math.fround) as NumPy's float32 reduction does, so luma and I420
// input give bit-identical means; for RGB(A) input the per-pixel luma is summed in another order than NumPy's
// float32 matmul, which can differ only for a cell within ~0.001 grey levels of a decision threshold.

const COLUMNS = 32;
const ROWS = 3;
const CELL_H_FRACTION = 5 / 96;
const SYNC = new Map([[0, 1], [1, 0], [2, 1], [93, 0], [94, 1], [95, 0]]);
const SYNC_CELLS = [...SYNC.keys()].sort((a, b) => a - b);
const DATA_CELLS = [];
for (let i = 0; i < COLUMNS * ROWS; i += 1) if (!SYNC.has(i)) DATA_CELLS.push(i);
const FIELDS = [["chunk", 16], ["frame", 6], ["promptId", 16], ["seed", 32], ["imageId", 12]];
const PAYLOAD_BITS = 82;
const CRC_BITS = 8;
const MIN_CONTRAST = 64.0;
const UNCERTAIN = 0.25;
const MAX_UNCERTAIN = 3;
const LUMA = [Math.fround(0.299), Math.fround(0.587), Math.fround(0.114)];
const f32 = Math.fround;

/** NumPy's np.round: half to even. */
function roundHalfEven(x) {
  const r = Math.round(x);
  return Math.abs(x - Math.trunc(x)) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Rows of a frame of this height covered by the band. */
function bandHeight(height) {
  return roundHalfEven(ROWS * (CELL_H_FRACTION * height));
}

/** Start indices and length of the central patch of `n` cells of `pitch` px along an axis of `size` px. */
function centres(n, pitch, size) {
  const k = Math.max(1, 2 * Math.trunc(pitch * 0.25) + 1);
  const starts = [];
  for (let i = 0; i < n; i += 1) {
    const start = Math.floor((i + 0.5) * pitch - k / 2 + 0.5);
    starts.push(Math.min(Math.max(start, 0), Math.max(0, size - k)));
  }
  return [starts, Math.min(k, size)];
}

/** "rgba" | "rgb" | "i420" | "luma" from the data length (or the explicit `format`). */
function layoutOf(frame, format) {
  const { width, height, data } = frame;
  if (format) return format;
  const pixels = width * height;
  const chroma = 2 * Math.ceil(width / 2) * Math.ceil(height / 2);
  if (data.length === pixels * 4) return "rgba";
  if (data.length === pixels * 3) return "rgb";
  if (data.length === pixels + chroma) return "i420";
  if (data.length === pixels) return "luma";
  throw new TypeError(
    `decodeMarkers: ${data.length} bytes fit no layout of a ${width}x${height} frame (RGBA, RGB, I420, luma)`,
  );
}

/** Mean luma of the central patch of every cell (96 values, row-major), or null if the frame is too small. */
function sampleCells(frame, format) {
  const { width, height, data } = frame;
  const layout = layoutOf(frame, format);
  if (width < COLUMNS || bandHeight(height) < ROWS) return null;
  const [x0, kx] = centres(COLUMNS, width / COLUMNS, width);
  const [y0, ky] = centres(ROWS, CELL_H_FRACTION * height, height);
  const channels = layout === "rgba" ? 4 : layout === "rgb" ? 3 : 1;
  const means = new Array(COLUMNS * ROWS);
  for (let r = 0; r < ROWS; r += 1) {
    for (let c = 0; c < COLUMNS; c += 1) {
      let sum = 0;
      for (let y = y0[r]; y < y0[r] + ky; y += 1) {
        for (let x = x0[c]; x < x0[c] + kx; x += 1) {
          const p = (y * width + x) * channels;
          sum += channels === 1 ? data[p] : f32(data[p] * LUMA[0] + data[p + 1] * LUMA[1] + data[p + 2] * LUMA[2]);
        }
      }
      means[r * COLUMNS + c] = f32(sum / (kx * ky));
    }
  }
  return means;
}

/** CRC-8/AUTOSAR (poly 0x2F, init 0xFF, xorout 0xFF) over bits, MSB first. */
function crc8(bits) {
  let crc = 0xff;
  for (const bit of bits) {
    crc ^= bit << 7;
    crc = crc & 0x80 ? ((crc << 1) ^ 0x2f) & 0xff : (crc << 1) & 0xff;
  }
  return crc ^ 0xff;
}

function parse(bits) {
  const payload = bits.slice(0, PAYLOAD_BITS);
  let crc = 0;
  for (const bit of bits.slice(PAYLOAD_BITS, PAYLOAD_BITS + CRC_BITS)) crc = crc * 2 + bit;
  if (crc8(payload) !== crc) return null;
  const out = {};
  let pos = 0;
  for (const [name, n] of FIELDS) {
    let value = 0;
    for (let k = 0; k < n; k += 1) value = value * 2 + payload[pos + k];
    out[name] = value;
    pos += n;
  }
  return out;
}

const mean3 = (a, b, c) => f32(f32(f32(a + b) + c) / 3);

/**
 * The markers of one frame — {chunk, frame, promptId, seed, imageId} — or null when the band is absent,
 * too faint, ambiguous or fails its CRC (skip such frames).
 * @param {{width: number, height: number, data: ArrayLike<number>}} frame
 * @param {{format?: "rgba"|"rgb"|"i420"|"luma"}} [options]
 */
function decodeMarkers(frame, options = {}) {
  const flat = sampleCells(frame, options.format);
  if (flat === null) return null;
  const [s0, s1, s2, s93, s94, s95] = SYNC_CELLS.map((i) => flat[i]);
  const white = mean3(s0, s2, s94);
  const black = mean3(s1, s93, s95);
  const contrast = f32(white - black);
  if (contrast < MIN_CONTRAST) return null;
  const threshold = f32(f32(white + black) / 2);
  const margin = (v) => Math.abs(f32(v - threshold));
  const limit = f32(UNCERTAIN * contrast);
  if (flat.filter((v) => margin(v) < limit).length > MAX_UNCERTAIN) return null;
  if (SYNC_CELLS.some((i) => (flat[i] > threshold ? 1 : 0) !== SYNC.get(i))) return null;
  const data = DATA_CELLS.map((i) => (flat[i] > threshold ? 1 : 0));
  let found = parse(data);
  if (found === null) {
    // one erasure: VP8 sometimes leaves part of a just-toggled cell stale; flip the least certain data cell
    const margins = DATA_CELLS.map((i) => margin(flat[i]));
    const weakest = margins.indexOf(Math.min(...margins));
    if (margins[weakest] < limit) {
      data[weakest] = 1 - data[weakest];
      found = parse(data);
    }
  }
  return found;
}

/** 16-bit id of a prompt (as the band carries it): sha256 of its UTF-8 bytes; 0 for "". */
async function promptId(prompt) {
  if (!prompt) return 0;
  const subtle = globalThis.crypto && globalThis.crypto.subtle;
  if (!subtle) throw new Error("promptId needs WebCrypto (globalThis.crypto.subtle)");
  const digest = new Uint8Array(await subtle.digest("SHA-256", new TextEncoder().encode(prompt)));
  const head = ((digest[0] << 24) >>> 0) + (digest[1] << 16) + (digest[2] << 8) + digest[3];
  return (head % 0xffff) + 1;
}

module.exports = { decodeMarkers, promptId, bandHeight, COLUMNS, ROWS, CELL_H_FRACTION };

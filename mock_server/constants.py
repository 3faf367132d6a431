"""Numbers the whole server agrees on (docs/HELIOS.md §4, §5): one source, imported everywhere."""

from __future__ import annotations

CHUNK_FRAMES = 33  # frames per chunk; every command takes effect at the start of the next chunk
FPS = 24.0  # frames per second of the generated stream at speed 1
NATIVE_SIZE = (640, 384)  # (width, height) at sr_scale "off"
SR_FACTORS = {"off": 1, "2x": 2, "4x": 4}
SNAPSHOT_CAPACITY = 50  # snapshots kept per session; the oldest is evicted

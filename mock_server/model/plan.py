"""Value objects shared by the Helios state machine and frame synthesis."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mock_server.constants import NATIVE_SIZE, SR_FACTORS


@dataclass(frozen=True, eq=False)
class ReferenceImage:
    """A decoded reference image, conditioned to the native size (centre-crop 5:3, resize)."""

    pixels: np.ndarray  # (384, 640, 3) uint8 RGB
    source_size: tuple[int, int]  # (width, height) of the decoded upload
    image_id: int  # 12-bit id derived from the uploaded bytes, 1..4095 (0 means "no image")


@dataclass(frozen=True)
class ChunkPlan:
    """Everything frame synthesis needs to render the 33 frames of one chunk."""

    chunk_index: int
    prompt: str
    seed: int
    image: ReferenceImage | None
    image_strength: float
    sr_scale: str  # "off" | "2x" | "4x"

    @property
    def image_id(self) -> int:
        return self.image.image_id if self.image is not None else 0


def output_size(sr_scale: str, native_size: tuple[int, int] = NATIVE_SIZE) -> tuple[int, int]:
    """(width, height) of frames for an sr_scale, given the native (sr "off") size."""
    factor = SR_FACTORS[sr_scale]
    return native_size[0] * factor, native_size[1] * factor

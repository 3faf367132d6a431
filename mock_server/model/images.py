"""Uploaded files and reference-image conditioning (docs/HELIOS.md §5.2 set_image)."""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image

from mock_server.constants import NATIVE_SIZE
from mock_server.model.limits import IMAGE_MAX_PIXELS
from mock_server.model.plan import ReferenceImage
from mock_server.textlimits import clip

ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP")
ASPECT = (5, 3)  # width : height of the native frame


@dataclass(frozen=True)
class UploadedFile:
    """The bytes of one upload, with what the client declared about them."""

    upload_id: str
    name: str
    mime_type: str
    data: bytes


class ImageRejected(Exception):
    """An upload that cannot be used as a reference image; ``reason`` is the refusal text."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def image_id_of(data: bytes) -> int:
    """12-bit id (1..4095) of an image's bytes, stable across runs and processes."""
    digest = hashlib.sha256(data).digest()
    return 1 + int.from_bytes(digest[:2], "big") % 4095


def _crop_box(width: int, height: int) -> tuple[int, int, int, int]:
    """Centred box of aspect 5:3 inside a width x height image."""
    aw, ah = ASPECT
    if width * ah > height * aw:  # too wide: crop the sides
        crop_w, crop_h = max(1, round(height * aw / ah)), height
    else:  # too tall (or exact): crop top and bottom
        crop_w, crop_h = width, max(1, round(width * ah / aw))
    left = (width - crop_w) // 2
    top = (height - crop_h) // 2
    return left, top, left + crop_w, top + crop_h


def _too_large(width: int, height: int) -> ImageRejected:
    return ImageRejected(
        f"image is {width}x{height} pixels; the limit is {IMAGE_MAX_PIXELS} pixels (e.g. 4096x4096)"
    )


def _open(data: bytes) -> Image.Image:
    """Open (not decode) an image; Pillow's own decompression-bomb check answers as ours does."""
    with warnings.catch_warnings():
        # Pillow warns from its MAX_IMAGE_PIXELS (89 M) and refuses from twice that; ours is lower and
        # checked right after opening, so its warning adds nothing.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            return Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
        except Image.DecompressionBombError:
            raise ImageRejected(
                f"image is over {IMAGE_MAX_PIXELS} pixels, the limit (e.g. 4096x4096)"
            ) from None


def condition_image(upload: UploadedFile) -> ReferenceImage:
    """Decode a PNG/JPEG/WebP upload, centre-crop it to 5:3 and resize it to 640x384 RGB.

    Raises ImageRejected("unsupported image type: <mime>") for a non-image MIME type,
    ImageRejected("image is WxH pixels; the limit is ...") when the header announces more than
    IMAGE_MAX_PIXELS (checked before any pixel is decoded) and ImageRejected("image could not be decoded")
    for bytes Pillow cannot decode as one of those formats.
    """
    mime = upload.mime_type or ""
    if not mime.lower().startswith("image/"):
        raise ImageRejected(f"unsupported image type: {clip(mime, 64)}")
    try:
        with _open(upload.data) as img:
            source_size = (int(img.width), int(img.height))
            if source_size[0] * source_size[1] > IMAGE_MAX_PIXELS:
                raise _too_large(*source_size)
            if img.format == "JPEG":
                img.draft("RGB", NATIVE_SIZE)  # decode at a reduced scale when much larger than needed
            rgb = img.convert("RGB")
        scale_x = rgb.width / source_size[0]
        scale_y = rgb.height / source_size[1]
        left, top, right, bottom = _crop_box(*source_size)
        box = (left * scale_x, top * scale_y, right * scale_x, bottom * scale_y)
        conditioned = rgb.resize(NATIVE_SIZE, Image.Resampling.BILINEAR, box=box)
    except ImageRejected:
        raise
    except Exception as exc:  # Pillow raises many types (OSError, ValueError, DecompressionBombError, ...)
        raise ImageRejected("image could not be decoded") from exc
    pixels = np.array(conditioned, dtype=np.uint8)
    pixels.setflags(write=False)
    return ReferenceImage(pixels=pixels, source_size=source_size, image_id=image_id_of(upload.data))

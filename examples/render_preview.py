"""Render a few mock Helios frames for two prompts and save them as a PNG contact sheet.

Usage: python examples/render_preview.py OUT.png [--native WxH]

Rows: prompt A (chunk 0), prompt A (chunk 1), prompt B with a synthetic reference image at strength 0.5.
Columns: frames 0, 8, 16, 24 and 32 of the chunk. Each tile is labelled with the values decoded from its band.
"""

from __future__ import annotations

import argparse

import numpy as np
from PIL import Image, ImageDraw

from mock_server.media.frames import render_frame
from mock_server.media.markers import decode_markers
from mock_server.model.plan import ChunkPlan, ReferenceImage

FRAMES = (0, 8, 16, 24, 32)


def _reference_image() -> ReferenceImage:
    """A synthetic 640x384 'photo': concentric rings."""
    yy, xx = np.mgrid[0:384, 0:640].astype(np.float32)
    r = np.hypot(xx - 320, yy - 192)
    pixels = np.stack([128 + 127 * np.sin(r / 9), 128 + 127 * np.cos(r / 23), 255 - r / 3], axis=-1)
    return ReferenceImage(np.clip(pixels, 0, 255).astype(np.uint8), (640, 384), image_id=7)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="path of the PNG to write")
    parser.add_argument("--native", default="640x384", help="native size WxH (default 640x384)")
    args = parser.parse_args()
    native = tuple(int(v) for v in args.native.lower().split("x"))
    prompt_a = "A red fox runs through a snowy forest at dawn, cinematic"
    prompt_b = "Neon city street in the rain at night, reflections on wet asphalt"
    plans = [
        ChunkPlan(0, prompt_a, 42, None, 1.0, "off"),
        ChunkPlan(1, prompt_a, 42, None, 1.0, "off"),
        ChunkPlan(5, prompt_b, 1234567, _reference_image(), 0.5, "off"),
    ]
    tile_w, tile_h = native
    caption = 14
    sheet = Image.new("RGB", (tile_w * len(FRAMES), (tile_h + caption) * len(plans)), (0, 0, 0))
    draw = ImageDraw.Draw(sheet)
    for row, plan in enumerate(plans):
        for col, index in enumerate(FRAMES):
            frame = render_frame(plan, index, native)
            x, y = col * tile_w, row * (tile_h + caption)
            sheet.paste(Image.fromarray(frame), (x, y))
            m = decode_markers(frame)
            text = f"c{m.chunk} f{m.frame} p{m.prompt_id} s{m.seed} i{m.image_id}" if m else "no band"
            draw.text((x + 4, y + tile_h + 1), text, fill=(200, 200, 200))
    sheet.save(args.out)
    print(f"wrote {args.out} ({sheet.width}x{sheet.height})")


if __name__ == "__main__":
    main()

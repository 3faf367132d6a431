"""Frame synthesis: determinism, sizes, visible structure, marker band, VP8 survival."""

from __future__ import annotations

import fractions
from collections.abc import Iterable, Iterator

import av
import numpy as np
import pytest
from aiortc.codecs.vpx import Vp8Decoder, Vp8Encoder, vp8_depayload
from aiortc.jitterbuffer import JitterFrame

from mock_server.constants import CHUNK_FRAMES, NATIVE_SIZE
from mock_server.media.frames import ChunkRenderer, render_frame
from mock_server.media.markers import Markers, band_height, decode_markers, prompt_id
from mock_server.model.plan import ChunkPlan, ReferenceImage, output_size

PROMPT = "A red fox runs through a snowy forest at dawn"


def reference_image(seed: int = 1, image_id: int = 7) -> ReferenceImage:
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (12, 20, 3), dtype=np.uint8)
    pixels = np.repeat(np.repeat(coarse, 32, axis=0), 32, axis=1)
    return ReferenceImage(pixels, (640, 384), image_id)


IMAGE = reference_image()


def plan(**changes: object) -> ChunkPlan:
    values: dict[str, object] = dict(
        chunk_index=3, prompt=PROMPT, seed=42, image=None, image_strength=1.0, sr_scale="off"
    )
    values.update(changes)
    return ChunkPlan(**values)  # type: ignore[arg-type]


def expected_markers(p: ChunkPlan, frame: int) -> Markers:
    return Markers(p.chunk_index % 65536, frame, prompt_id(p.prompt), p.seed & 0xFFFFFFFF, p.image_id)


def below_band(frame: np.ndarray) -> np.ndarray:
    return frame[band_height(frame.shape[0]) :]


def vp8_roundtrip(frames: Iterable[np.ndarray]) -> Iterator[av.VideoFrame]:
    """Encode RGB frames with aiortc's Vp8Encoder (default bitrate) and decode them with its Vp8Decoder."""
    encoder, decoder = Vp8Encoder(), Vp8Decoder()
    for index, array in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(array, format="rgb24")
        frame.pts, frame.time_base = index, fractions.Fraction(1, 24)
        payloads, timestamp = encoder.encode(frame)
        data = b"".join(vp8_depayload(p) for p in payloads)
        yield from decoder.decode(JitterFrame(data, timestamp))


# --- shape and determinism ---------------------------------------------------------------------------


@pytest.mark.parametrize("sr_scale", ["off", "2x", "4x"])
@pytest.mark.parametrize("native", [NATIVE_SIZE, (160, 96)])
def test_output_size(sr_scale: str, native: tuple[int, int]) -> None:
    frame = render_frame(plan(sr_scale=sr_scale), 0, native)
    width, height = output_size(sr_scale, native)
    assert frame.shape == (height, width, 3)
    assert frame.dtype == np.uint8 and frame.flags["C_CONTIGUOUS"]


def test_default_size_is_native_640x384() -> None:
    assert render_frame(plan(), 0).shape == (384, 640, 3)
    assert render_frame(plan(sr_scale="2x"), 0).shape == (768, 1280, 3)


@pytest.mark.parametrize("image", [None, IMAGE])
def test_deterministic(image: ReferenceImage | None) -> None:
    p = plan(image=image, image_strength=0.6)
    first = [render_frame(p, i).tobytes() for i in (0, 16, 32)]
    fresh = ChunkRenderer(plan(image=image, image_strength=0.6))
    assert [fresh.frame(i).tobytes() for i in (0, 16, 32)] == first
    assert [render_frame(p, i).tobytes() for i in (0, 16, 32)] == first


def test_frames_are_independent_arrays() -> None:
    renderer = ChunkRenderer(plan())
    a = renderer.frame(5)
    a[:] = 0
    assert renderer.frame(5).any()


@pytest.mark.parametrize(
    "change",
    [
        {"seed": 43},
        {"prompt": PROMPT + "!"},
        {"image": IMAGE},
        {"chunk_index": 4},
    ],
    ids=["seed", "prompt", "image", "chunk"],
)
def test_inputs_change_the_picture(change: dict[str, object]) -> None:
    """Each input changes the picture itself (below the band), not only the band."""
    base, other = render_frame(plan(), 10), render_frame(plan(**change), 10)
    diff = np.abs(below_band(base).astype(int) - below_band(other)).mean()
    assert diff > 3


def test_image_strength_blends() -> None:
    p0 = render_frame(plan(image=IMAGE, image_strength=0.0), 7)
    p5 = render_frame(plan(image=IMAGE, image_strength=0.5), 7)
    p1 = render_frame(plan(image=IMAGE, image_strength=1.0), 7)
    plain = render_frame(plan(), 7)
    # Strength 0 shows only the background: identical to no image except the image_id in the band.
    assert np.array_equal(below_band(p0), below_band(plain))
    assert not np.array_equal(p0[: band_height(384)], plain[: band_height(384)])
    d05, d01 = (np.abs(below_band(p0).astype(int) - below_band(x)).mean() for x in (p5, p1))
    assert 0 < d05 < d01


def test_other_native_size_resizes_the_image() -> None:
    frame = render_frame(plan(image=IMAGE), 0, (320, 192))
    assert frame.shape == (192, 320, 3)
    assert decode_markers(frame) == expected_markers(plan(image=IMAGE), 0)


@pytest.mark.parametrize("native", [(160, 96), (640, 384)])
def test_upscale_is_exact_pixel_repeat(native: tuple[int, int]) -> None:
    for index in (0, 11, 32):
        small = render_frame(plan(image=IMAGE, image_strength=0.4), index, native)
        for sr_scale, factor in (("2x", 2), ("4x", 4)):
            big = render_frame(plan(image=IMAGE, image_strength=0.4, sr_scale=sr_scale), index, native)
            assert np.array_equal(big, np.repeat(np.repeat(small, factor, 0), factor, 1))


def test_frame_index_range() -> None:
    renderer = ChunkRenderer(plan())
    for bad in (-1, CHUNK_FRAMES):
        with pytest.raises(ValueError):
            renderer.frame(bad)


# --- what a person (or a test) sees ------------------------------------------------------------------


def _marker_columns(frame: np.ndarray) -> np.ndarray:
    """Columns of the progress track holding the yellow frame marker."""
    height = frame.shape[0]
    row = frame[band_height(height) + max(1, round(height / 96)) + 1]
    yellow = (row[:, 0] > 240) & (row[:, 1] > 200) & (row[:, 2] < 20)
    return np.flatnonzero(yellow)


@pytest.mark.parametrize("native", [(160, 96), (640, 384)])
def test_marker_position_encodes_frame_index(native: tuple[int, int]) -> None:
    renderer = ChunkRenderer(plan(), native)
    width = native[0]
    for index in range(CHUNK_FRAMES):
        cols = _marker_columns(renderer.frame(index))
        assert cols.size > 0
        assert cols[0] == round(index * width / CHUNK_FRAMES)
        assert cols[-1] == round((index + 1) * width / CHUNK_FRAMES) - 1


def test_picture_moves_every_frame_and_across_chunks() -> None:
    sequence = [(3, 31), (3, 32), (4, 0), (4, 1)]
    frames = [below_band(render_frame(plan(chunk_index=c), i)) for c, i in sequence]
    for a, b in zip(frames, frames[1:], strict=False):
        assert not np.array_equal(a, b)


def test_background_follows_prompt_not_seed() -> None:
    """Mean colour is dominated by the prompt: seeds move it a little, prompts a lot."""

    def mean(p: ChunkPlan) -> np.ndarray:
        return below_band(render_frame(p, 0)).reshape(-1, 3).mean(axis=0)

    same_prompt = np.abs(mean(plan(seed=1)) - mean(plan(seed=2))).max()
    prompts = [np.abs(mean(plan(prompt=f"prompt {i}")) - mean(plan())).max() for i in range(5)]
    assert max(prompts) > 2 * same_prompt


# --- marker band -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "p",
    [
        plan(),
        plan(chunk_index=70000, seed=2**40 + 5, prompt="", image=IMAGE, image_strength=0.3),
        plan(sr_scale="2x", image=reference_image(2, 4095)),
    ],
    ids=["plain", "wrapping", "2x"],
)
def test_markers_decode_from_every_frame(p: ChunkPlan) -> None:
    renderer = ChunkRenderer(p)
    for index in range(CHUNK_FRAMES):
        assert decode_markers(renderer.frame(index)) == expected_markers(p, index)


VP8_CASES = {
    "160x96": ((160, 96), "off"),
    "320x192": ((320, 192), "off"),
    "640x384": ((640, 384), "off"),
    "1280x768": ((640, 384), "2x"),
}


@pytest.mark.parametrize("case", VP8_CASES)
def test_vp8_roundtrip_every_frame(case: str) -> None:
    """Two chunks through aiortc's Vp8Encoder/Vp8Decoder at its default bitrate: a prompt switch, then an
    image appears; every decoded frame (RGB and Y plane) carries exactly the values that were rendered."""
    native, sr_scale = VP8_CASES[case]
    plans = [
        plan(chunk_index=8, sr_scale=sr_scale),
        plan(chunk_index=9, prompt="Neon city street in the rain", sr_scale=sr_scale),
        plan(chunk_index=10, prompt="Neon city street in the rain", sr_scale=sr_scale, image=IMAGE),
    ]
    sequence = [(p, i) for p in plans for i in range(CHUNK_FRAMES)]
    renderers = {p: ChunkRenderer(p, native) for p in plans}
    decoded = list(vp8_roundtrip(renderers[p].frame(i) for p, i in sequence))
    assert len(decoded) == len(sequence)
    height = output_size(sr_scale, native)[1]
    for (p, i), out in zip(sequence, decoded, strict=True):
        expected = expected_markers(p, i)
        assert decode_markers(out.to_ndarray(format="rgb24")) == expected
        assert decode_markers(out.reformat(format="yuv420p").to_ndarray()[:height]) == expected

"""Tests of the sample app against the Helios mock, using only the installed helios-mock package.

Fixtures come from its pytest plugin (`helios`: a fresh mock per test); `--helios-strict` (pyproject.toml)
also fails a test when the app broke a client rule (conformance.client_rules).
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator

import numpy as np
import pytest
from PIL import Image
from sample_client import HeliosApp, NotReady

from conformance.helpers import assert_no_violations
from conformance.server import HeliosServer
from mock_server import decode_markers
from mock_server.media.markers import Markers, prompt_id


class Recorder:
    """Decodes the marker band of every frame the app renders."""

    def __init__(self) -> None:
        self.markers: list[Markers] = []
        self._arrived = asyncio.Event()

    def __call__(self, frame: np.ndarray) -> None:
        found = decode_markers(frame)
        if found is not None:
            self.markers.append(found)
            self._arrived.set()

    def chunks(self, predicate) -> set[int]:
        return {m.chunk for m in self.markers if predicate(m)}

    async def until_chunk(self, chunk: int, timeout: float = 15.0) -> None:
        async with asyncio.timeout(timeout):
            while not any(m.chunk >= chunk for m in self.markers):
                self._arrived.clear()
                await self._arrived.wait()


@pytest.fixture
def frames() -> Recorder:
    return Recorder()


@pytest.fixture
async def app(helios: HeliosServer, frames: Recorder) -> AsyncIterator[HeliosApp]:
    app = HeliosApp(helios.url, on_frame=frames)
    await app.connect()
    yield app
    await app.close()


def png(color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (100, 60), color).save(buf, format="PNG")
    return buf.getvalue()


async def test_storyboard_prompts_switch_at_their_chunks(app: HeliosApp, frames: Recorder) -> None:
    await app.play({0: "dawn over the harbour", 2: "noon, boats leaving"})
    await app.wait_for("chunk_complete", lambda d: d["chunk_index"] == 2, timeout=15)
    await frames.until_chunk(3)
    dawn, noon = prompt_id("dawn over the harbour"), prompt_id("noon, boats leaving")
    # a receiver that falls behind skips frames (even whole chunks at test speed): judge every decoded one
    assert frames.chunks(lambda m: m.prompt_id == dawn) <= {0, 1}
    noon_chunks = frames.chunks(lambda m: m.prompt_id == noon)
    assert max(noon_chunks) >= 3 and min(noon_chunks) >= 2
    assert app.state["current_prompt"] == "noon, boats leaving"


async def test_reference_image_reaches_the_video(app: HeliosApp, frames: Recorder) -> None:
    await app.play({0: "a red kite"})
    accepted = await app.set_image(png((250, 200, 20)))
    assert accepted == {"width": 100, "height": 60}
    # the image was accepted while chunk k was in progress (the next chunk_complete names k): from k + 1 on
    accepted_at = next(i for i, m in enumerate(app.messages) if m["type"] == "image_accepted")
    k = (await app.wait_for("chunk_complete", after=accepted_at, timeout=15))["chunk_index"]
    await frames.until_chunk(k + 2)
    with_image = frames.chunks(lambda m: m.image_id != 0)
    assert max(with_image) >= k + 2 and min(with_image) >= k + 1
    assert max(frames.chunks(lambda m: m.image_id == 0), default=k) <= k


async def test_the_app_pings_while_connected(helios: HeliosServer, frames: Recorder) -> None:
    app = HeliosApp(helios.url, ping_interval=0.3, on_frame=frames)
    await app.connect()
    await asyncio.sleep(1.0)
    transcript = helios.transcript(str(app.session_id))
    await app.close()
    assert sum(e["kind"] == "Ping" for e in transcript["entries"]) >= 2
    assert_no_violations(helios)


async def test_commands_before_connect_are_refused_by_the_app(helios: HeliosServer) -> None:
    app = HeliosApp(helios.url)
    with pytest.raises(NotReady):
        app.send("start")
    with pytest.raises(ValueError, match="chunk 0"):
        await app.play({1: "no opening prompt"})
    await app.close()

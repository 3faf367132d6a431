"""Generation semantics (docs/HELIOS.md §4, §5.2): chunk cadence, the next-chunk rule, pause, reset,
snapshots.

Frame checks against helios-mock read its marker band (chunk, frame, prompt id, seed, image id) and fail
when no marked frame arrives. Other servers draw no marker band: there the video must flow, and the
per-frame checks are skipped.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

import httpx
import pytest

from conformance.wire_client import WireClient
from mock_server.media.markers import Markers, prompt_id
from mock_server.model.images import image_id_of

from .support import CHUNK_FRAMES, INITIAL_STATE, Stream, Target, markers_by_chunk, png

pytestmark = pytest.mark.asyncio

FOX, TURN, CAMERA = "A red fox trotting through snow", "The fox turns its head", "The fox looks at the camera"


async def _start(s: Stream, prompt: str = FOX) -> None:
    await s.accepted("set_prompt", {"prompt": prompt})
    reply, state = await s.accepted("start")
    assert reply.kind == "ack", reply.reply
    assert [(b.type, b.data) for b in reply.broadcasts] == [
        ("generation_started", {"prompt": prompt, "chunk_index": 0})
    ]
    assert (state["started"], state["running"], state["paused"]) == (True, True, False)


async def _frames_past(client: WireClient, target: Target, chunk: int, timeout: float) -> None:
    """Wait until the video has delivered what it will of chunks up to ``chunk`` (it lags the data channel).

    helios-mock: until a frame marked with a later chunk is decoded. Other servers (no marker band): until
    a video frame arrives after this call. Nothing within ``timeout`` fails the test.
    """
    if target.is_mock:
        await _marked_frame(client, lambda m: m.chunk > chunk, f"a chunk after {chunk}", timeout)
        return
    now = client.now()
    try:
        await client.wait_frames(lambda f: f.t > now, timeout=timeout)
    except TimeoutError:
        raise AssertionError(
            f"no video frame within {timeout:g} s after chunk {chunk} ({len(client.frames)} frames in all)"
        ) from None


async def _marked_frame(
    client: WireClient, where: Callable[[Markers], bool], what: str, timeout: float
) -> None:
    """A frame whose marker band (helios-mock) shows ``what`` arrives in ``timeout`` s, else a failure."""
    try:
        await client.wait_frames(lambda f: f.markers is not None and where(f.markers), timeout=timeout)
    except TimeoutError:
        marked = sorted({f.markers.chunk for f in client.frames if f.markers is not None})
        raise AssertionError(
            f"no video frame marked with {what} within {timeout:g} s "
            f"({len(client.frames)} frames, marked chunks {marked or 'none'})"
        ) from None


def _skipped_frames(target: Target, client: WireClient) -> int | None:
    """helios-mock's count of frames its video track skipped for this connection (admin record)."""
    if not target.is_mock:
        return None
    record = httpx.get(target.url + "/admin/record", timeout=10).json()
    for session in record["sessions"]:
        if session["session_id"] == client.session_id and not session["closed"]:
            for conn in session["connections"]:
                if conn["connection_id"] == client.connection_id:
                    return int(conn["frames_skipped"])
    return None


async def test_chunk_cadence(session: tuple[WireClient, Stream], target: Target) -> None:
    """One chunk_complete per 33 frames, indices 0, 1, 2, … each followed by its state (§4, §6)."""
    client, s = session
    await _start(s)
    events = [await s.chunk(k, timeout=target.timeout(2)) for k in range(4)]
    for k, (done, state) in enumerate(events):
        assert done.data == {"chunk_index": k, "frames_emitted": CHUNK_FRAMES, "active_prompt": FOX}
        assert (state["current_chunk"], state["current_frame"]) == (k + 1, CHUNK_FRAMES * (k + 1))
        assert state["current_prompt"] == FOX and state["running"] is True
    if target.speed_known:
        gaps = [b[0].t - a[0].t for a, b in zip(events, events[1:], strict=False)]
        mean = statistics.fmean(gaps)
        fps = 24 * target.speed
        assert 0.5 * target.chunk_seconds < mean < 2.0 * target.chunk_seconds, (
            f"a chunk every {mean:.3f} s, expected {target.chunk_seconds:.3f} s (33 frames at {fps:g} fps)"
        )

    await _frames_past(client, target, 3, target.timeout(1))
    marks = markers_by_chunk(client)
    if target.is_mock:  # the frames carry helios-mock's marker band
        assert set(marks) >= {1, 2, 3}, f"no decoded frame of some of chunks 1-3: {sorted(marks)}"
        order = [f.markers.chunk for f in client.frames if f.markers is not None]
        assert order == sorted(order), "frames of a chunk arrived after frames of a later chunk"
        for chunk, items in marks.items():
            indices = [m.frame for m in items]
            assert all(0 <= i < CHUNK_FRAMES for i in indices), indices
            assert indices == sorted(set(indices)), f"chunk {chunk}: frame indices {indices} not increasing"
            assert {m.prompt_id for m in items} == {prompt_id(FOX)}
        skipped = _skipped_frames(target, client)
        assert skipped is not None, "helios-mock's admin record has no entry for this connection"
        if skipped == 0:  # the server sent every frame: a chunk seen from start to end has 33 of them
            for chunk in (1, 2, 3):
                assert [m.frame for m in marks.get(chunk, [])] == list(range(CHUNK_FRAMES)), chunk
    else:
        first, last = events[0][0].t, events[-1][0].t
        during = sum(first < f.t <= last for f in client.frames)
        assert 0.75 * 3 * CHUNK_FRAMES <= during <= 1.25 * 3 * CHUNK_FRAMES, f"{during} frames in 3 chunks"


async def test_next_chunk_rule(session: tuple[WireClient, Stream], target: Target) -> None:
    """set_prompt while chunk N is generated takes effect at chunk N + 1 exactly; schedule_prompt at its
    chunk exactly; a chunk in the past is refused (§4 E, §5.2)."""
    client, s = session
    await _start(s)
    await s.chunk(1, timeout=target.timeout(3))
    reply, state = await s.accepted("set_prompt", {"prompt": TURN})
    switch = s.last_chunk + 2  # chunk last+1 is in progress when the command is handled
    assert reply.reply.data == {"prompt": TURN, "chunk": switch}
    assert state["scheduled_prompts"] == {str(switch): TURN}
    reply, state = await s.accepted("schedule_prompt", {"prompt": CAMERA, "chunk": switch + 2})
    assert reply.reply.data == {"prompt": CAMERA, "chunk": switch + 2}
    past = await s.command("schedule_prompt", {"prompt": "too late", "chunk": s.last_chunk + 1})
    assert [(b.type, b.data["command"]) for b in past.broadcasts] == [("command_error", "schedule_prompt")]

    expected = {k: FOX for k in range(switch)} | {switch: TURN, switch + 1: TURN, switch + 2: CAMERA}
    for k, prompt in expected.items():
        done, state = await s.chunk(k, timeout=target.timeout(4))
        assert done.data["active_prompt"] == prompt, (k, done.data)
        assert str(k) not in state["scheduled_prompts"], "an applied entry stays pending"

    await _frames_past(client, target, switch + 2, target.timeout(1))
    marks = markers_by_chunk(client)
    if target.is_mock:
        for k, prompt in expected.items():
            assert {m.prompt_id for m in marks.get(k, [])} <= {prompt_id(prompt)}, (
                f"chunk {k} shows another prompt"
            )
        assert any(marks.get(k) for k in (switch, switch + 1)), "no frame of the switched chunks was decoded"


async def test_pause_finishes_the_current_chunk(session: tuple[WireClient, Stream], target: Target) -> None:
    client, s = session
    await _start(s)
    await s.chunk(0, timeout=target.timeout(2))
    reply, state = await s.accepted("pause")
    current = s.last_chunk + 1
    assert (reply.kind, reply.reply.type) == ("answer", "generation_paused")
    assert reply.reply.data == {"frame": CHUNK_FRAMES * current, "chunk": current}
    assert (state["started"], state["paused"], state["running"]) == (True, True, False)

    done, state = await s.next_chunk(timeout=target.timeout(2))  # the chunk in progress still completes
    assert done.data["chunk_index"] == current
    assert (state["current_chunk"], state["paused"]) == (current + 1, True)
    if target.is_mock:  # the video shows the chunk that completed after the pause
        await _marked_frame(client, lambda m: m.chunk >= current, f"chunk {current}", target.timeout(1))
    after = await s.quiet(max(0.4, 4 * target.chunk_seconds))  # and no new chunk starts
    assert after == state, "the state changed while paused"
    marks = markers_by_chunk(client)
    assert not [c for c in marks if c > current], "frames of a chunk that should not exist"

    reply, state = await s.accepted("resume")
    assert reply.reply.type == "generation_resumed"
    assert reply.reply.data == {"frame": CHUNK_FRAMES * (current + 1), "chunk": current + 1}
    assert state["running"] is True
    done, _ = await s.next_chunk(timeout=target.timeout(2))
    assert done.data["chunk_index"] == current + 1


async def test_reset(session: tuple[WireClient, Stream], target: Target) -> None:
    """reset halts at once (no chunk_complete for the dropped chunk) and clears everything (§5.2)."""
    _, s = session
    await _start(s)
    await s.accepted("set_image_strength", {"image_strength": 0.5})
    await s.accepted("schedule_prompt", {"prompt": CAMERA, "chunk": 40})
    await s.chunk(1, timeout=target.timeout(3))
    reply, state = await s.accepted("reset")
    current = s.last_chunk + 1
    assert reply.kind == "ack"
    assert [(b.type, b.data) for b in reply.broadcasts] == [
        ("generation_reset", {"frame": CHUNK_FRAMES * current, "chunk": current})
    ]
    assert state == INITIAL_STATE
    assert await s.quiet(max(0.4, 3 * target.chunk_seconds)) == INITIAL_STATE
    refused = await s.command("start")  # the prompt at chunk 0 is gone too
    assert [b.type for b in refused.broadcasts] == ["command_error"]


async def test_snapshots_and_rewind(session: tuple[WireClient, Stream], target: Target) -> None:
    """save_snapshot captures the chunk boundary; rewind restores it when the chunk in progress completes;
    the prompt is not restored (§5.2)."""
    _, s = session
    await _start(s)
    await s.chunk(1, timeout=target.timeout(3))
    reply, _ = await s.accepted("save_snapshot", {"label": "turn"})
    saved = s.last_chunk + 1
    entry = {"snapshot_index": 0, "label": "turn", "chunk": saved, "frame": CHUNK_FRAMES * saved}
    assert reply.reply.data == {**entry, "count": 1}
    reply, _ = await s.accepted("set_prompt", {"prompt": TURN})
    switch = reply.reply.data["chunk"]
    await s.chunk(switch, timeout=target.timeout(4))
    reply, _ = await s.accepted("list_snapshots")
    assert reply.reply.data == {"snapshots": [entry], "count": 1, "capacity": 50}
    for bad in (5, -2):
        refused = await s.command("rewind", {"snapshot_index": bad})
        assert [(b.type, b.data["command"]) for b in refused.broadcasts] == [("rewind_failed", "rewind")]

    reply, state = await s.accepted("rewind")  # default -1 = newest
    in_progress = s.last_chunk + 1
    assert reply.reply.data == entry
    assert state["current_chunk"] == in_progress, "counters change only when the chunk in progress completes"
    done, state = await s.next_chunk(timeout=target.timeout(2))
    assert done.data["chunk_index"] == in_progress
    assert (state["current_chunk"], state["current_frame"]) == (saved, CHUNK_FRAMES * saved)
    assert state["current_prompt"] == TURN, "rewind must not restore the prompt"
    done, _ = await s.next_chunk(timeout=target.timeout(2))
    assert done.data == {"chunk_index": saved, "frames_emitted": CHUNK_FRAMES, "active_prompt": TURN}
    reply, _ = await s.accepted("list_snapshots")
    assert reply.reply.data["count"] == 1, "the snapshot stays in the buffer"


async def test_images_via_uploads(session: tuple[WireClient, Stream], target: Target) -> None:
    """set_image / set_conditioning with uploaded files; a non-image is refused and changes nothing."""
    client, s = session
    data = png((64, 48), (220, 30, 30))
    ref = await client.upload(data, name="ref.png", mime_type="image/png")
    reply, state = await s.accepted("set_image", {}, uploads={"image": ref})
    assert [(b.type, b.data) for b in reply.broadcasts] == [
        ("conditions_ready", {"has_prompt": False, "has_image": True})
    ]
    assert (reply.reply.type, reply.reply.data) == ("image_accepted", {"width": 64, "height": 48})
    assert state["image_set"] is True

    text = await client.upload(b"just text", name="notes.txt", mime_type="text/plain")
    before = await s.read_only_barrier()
    refused = await s.command("set_image", {}, uploads={"image": text})
    assert [(b.type, b.data["command"]) for b in refused.broadcasts] == [("command_error", "set_image")]
    assert await s.read_only_barrier() == before

    other = png((90, 30), (20, 200, 90))
    ref = await client.upload(other, name="wide.png", mime_type="image/png")
    reply, state = await s.accepted("set_conditioning", {"prompt": FOX}, uploads={"image": ref})
    assert [(b.type, b.data) for b in reply.broadcasts] == [
        ("prompt_accepted", {"prompt": FOX, "chunk": 0}),
        ("image_accepted", {"width": 90, "height": 30}),
    ]
    assert (reply.reply.type, reply.reply.data) == (
        "conditions_ready",
        {"has_prompt": True, "has_image": True},
    )
    assert state["scheduled_prompts"] == {"0": FOX} and state["image_set"] is True

    if target.is_mock:  # the frames carry the conditioning image's id from chunk 0
        await s.accepted("start")
        await s.chunk(1, timeout=target.timeout(3))
        await _frames_past(client, target, 1, target.timeout(1))
        marks = markers_by_chunk(client)
        assert {m.image_id for m in marks.get(0, []) + marks.get(1, [])} == {image_id_of(other)}


@pytest.mark.mock_only
async def test_sr_scale_changes_frame_size_at_the_next_chunk(
    session: tuple[WireClient, Stream], target: Target
) -> None:
    client, s = session
    await _start(s)
    await s.chunk(0, timeout=target.timeout(2))
    await s.accepted("set_sr_scale", {"sr_scale": "off"})
    boundary = s.last_chunk + 2
    await s.chunk(boundary + 1, timeout=target.timeout(5))
    await _frames_past(client, target, boundary, target.timeout(1))
    sizes: dict[int, set[tuple[int, int]]] = {}
    for f in client.frames:
        if f.markers is not None:
            sizes.setdefault(f.markers.chunk, set()).add((f.width, f.height))
    before = set().union(*(v for c, v in sizes.items() if c < boundary))
    after = set().union(*(v for c, v in sizes.items() if c >= boundary))
    assert len(before) == 1 and len(after) == 1, sizes
    (w2, h2), (w1, h1) = before.pop(), after.pop()
    assert (w2, h2) == (2 * w1, 2 * h1), f"2x {w2}x{h2} vs off {w1}x{h1}"
    if target.native_size is not None:
        assert (w1, h1) == target.native_size


@pytest.mark.mock_only
async def test_seed_is_read_at_start_and_survives_reset(
    session: tuple[WireClient, Stream], target: Target
) -> None:
    client, s = session
    await s.accepted("set_seed", {"seed": 4242})
    seeds = []
    for _ in range(2):
        await _start(s)
        first = s.last_chunk + 1
        await s.next_chunk(timeout=target.timeout(2))
        await _frames_past(client, target, first, target.timeout(1))
        seeds.append({m.seed for m in markers_by_chunk(client).get(first, [])})
        await s.accepted("reset")
        client.frames.clear()
        s.chunk_events.clear()
    assert seeds == [{4242}, {4242}]


async def test_request_schema(session: tuple[WireClient, Stream]) -> None:
    """The model schema on the v1 control channel: an OpenAPI document (docs/HELIOS.md §7)."""
    client, _ = session
    reply = await client.reply(client.request_control("request_schema"))
    assert (reply.scope, reply.type) == ("control", "model_schema"), reply
    schema = reply.data
    assert str(schema.get("openapi", "")).startswith("3.")
    paths = schema.get("paths", {})
    for command in ("set_prompt", "schedule_prompt", "start", "pause", "resume", "reset"):
        assert f"/events/{command}" in paths, command

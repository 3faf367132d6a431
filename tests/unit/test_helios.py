"""The Helios state machine (docs/HELIOS.md §3-6, §9)."""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterable
from typing import Any

import numpy as np
import pytest
from PIL import Image

from conformance.reference_model import INITIAL_STATE
from mock_server.constants import CHUNK_FRAMES, SNAPSHOT_CAPACITY
from mock_server.model.commands import CommandRejected, validate_command
from mock_server.model.helios import Helios, Message, Outcome
from mock_server.model.images import UploadedFile, condition_image, image_id_of
from mock_server.model.messages import MESSAGES
from mock_server.model.plan import ChunkPlan

UPLOAD_REF = {"upload_id": "u-1", "name": "ref.png", "mime_type": "image/png", "size": 1}


def encode(size: tuple[int, int], fmt: str = "PNG", colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format=fmt)
    return buf.getvalue()


PNG = UploadedFile("u-1", "ref.png", "image/png", encode((100, 60)))
JPEG = UploadedFile("u-2", "ref.jpg", "image/jpeg", encode((300, 400), "JPEG", (10, 200, 10)))


def make(seeds: Iterable[int] = itertools.count(1000)) -> Helios:
    it = iter(seeds)
    return Helios(draw_seed=lambda: next(it))


def send(h: Helios, name: str, uploads: dict[str, Any] | None = None, **params: Any) -> Outcome:
    if name in ("set_image", "set_conditioning"):
        params.setdefault("image", UPLOAD_REF)
    out = h.handle(name, validate_command(name, params), uploads or {})
    check_outcome(h, out)
    return out


def check_message(msg: Message) -> None:
    """Every message matches its pydantic model; ints are ints, booleans are bools."""
    model = MESSAGES[msg.type]
    assert model.model_validate(msg.data).model_dump() == msg.data
    assert set(msg.data) == set(model.model_fields)
    for name, info in model.model_fields.items():
        value = msg.data[name]
        if info.annotation is int:
            assert type(value) is int, (msg.type, name, value)
        if info.annotation is float:
            assert type(value) is float, (msg.type, name, value)


def check_outcome(h: Helios, out: Outcome) -> None:
    for msg in out.broadcasts:
        check_message(msg)
    if out.answer is not None:
        check_message(out.answer)
    if out.accepted:
        assert out.state == h.state_message()
    else:
        assert out.state is None and out.answer is None
        assert len(out.broadcasts) == 1
        assert out.broadcasts[0].type in ("command_error", "rewind_failed")


def state(h: Helios) -> dict[str, Any]:
    return h.state_message().data


def refused(h: Helios, name: str, reason: str, uploads: dict[str, Any] | None = None, **params: Any) -> None:
    before = state(h)
    out = send(h, name, uploads, **params)
    assert not out.accepted
    kind = "rewind_failed" if name in ("rewind", "save_snapshot") else "command_error"
    assert out.broadcasts == (Message(kind, {"command": name, "reason": reason}),)
    assert state(h) == before


def run_chunk(h: Helios) -> tuple[ChunkPlan, tuple[Message, ...]]:
    plan = h.begin_chunk()
    assert plan is not None
    done = h.complete_chunk()
    for msg in done:
        check_message(msg)
    return plan, done


def started(prompt: str = "a red fox", seed: int | None = 7) -> Helios:
    h = make()
    if seed is not None:
        send(h, "set_seed", seed=seed)
    send(h, "set_prompt", prompt=prompt)
    assert send(h, "start").accepted
    return h


# ----------------------------------------------------------------------------------------- initial state


def test_initial_state() -> None:
    h = make()
    assert h.state_message() == Message("state", INITIAL_STATE)
    assert not h.started and not h.running and not h.paused and not h.chunk_in_progress
    assert h.current_chunk == 0 and h.current_frame == 0
    assert h.earliest_chunk == 0
    assert h.begin_chunk() is None
    assert h.complete_chunk() == ()


def test_constants() -> None:
    assert CHUNK_FRAMES == 33
    assert SNAPSHOT_CAPACITY == 50


# ----------------------------------------------------------------------------------------- prompts


def test_set_prompt_before_start_targets_chunk_0() -> None:
    h = make()
    out = send(h, "set_prompt", prompt="a red fox")
    assert out.accepted
    assert out.broadcasts == (Message("conditions_ready", {"has_prompt": True, "has_image": False}),)
    assert out.answer == Message("prompt_accepted", {"prompt": "a red fox", "chunk": 0})
    assert out.state is not None and out.state.data["scheduled_prompts"] == {"0": "a red fox"}
    assert out.state.data["current_prompt"] is None
    send(h, "set_prompt", prompt="a blue fox")
    assert state(h)["scheduled_prompts"] == {"0": "a blue fox"}


@pytest.mark.parametrize("prompt", ["", " ", "\t\n "])
def test_empty_prompts_are_refused(prompt: str) -> None:
    h = make()
    refused(h, "set_prompt", "empty prompt", prompt=prompt)
    refused(h, "schedule_prompt", "empty prompt", prompt=prompt, chunk=0)
    refused(h, "set_conditioning", "empty prompt", {"image": PNG}, prompt=prompt)


def test_schedule_prompt_before_start() -> None:
    h = make()
    out = send(h, "schedule_prompt", prompt="later", chunk=5)
    assert out.answer == Message("prompt_accepted", {"prompt": "later", "chunk": 5})
    # no entry at chunk 0 yet -> start could not find a prompt
    assert out.broadcasts == (Message("conditions_ready", {"has_prompt": False, "has_image": False}),)
    refused(h, "start", "no prompt scheduled at chunk 0")
    out = send(h, "schedule_prompt", prompt="first", chunk=0)
    assert out.broadcasts[0].data["has_prompt"] is True
    assert state(h)["scheduled_prompts"] == {"0": "first", "5": "later"}
    send(h, "schedule_prompt", prompt="replaced", chunk=5)
    assert state(h)["scheduled_prompts"] == {"0": "first", "5": "replaced"}


def test_schedule_prompt_in_the_past_is_refused() -> None:
    h = started()
    for _ in range(10):
        run_chunk(h)
    assert h.current_chunk == 10
    send(h, "pause")
    refused(h, "schedule_prompt", "chunk 5 is in the past (earliest is 10)", prompt="p", chunk=5)
    assert send(h, "schedule_prompt", prompt="now", chunk=10).accepted
    send(h, "resume")
    h.begin_chunk()  # chunk 10 in progress -> earliest is 11
    refused(h, "schedule_prompt", "chunk 10 is in the past (earliest is 11)", prompt="p", chunk=10)
    assert send(h, "schedule_prompt", prompt="next", chunk=11).answer == Message(
        "prompt_accepted", {"prompt": "next", "chunk": 11}
    )


def test_scheduled_prompts_apply_at_their_chunk_and_leave_the_schedule() -> None:
    h = make()
    send(h, "set_prompt", prompt="p0")
    send(h, "schedule_prompt", prompt="p2", chunk=2)
    send(h, "start")
    prompts = []
    for k in range(4):
        plan, done = run_chunk(h)
        assert plan.chunk_index == k
        prompts.append(plan.prompt)
        assert done[0] == Message(
            "chunk_complete", {"chunk_index": k, "frames_emitted": 33, "active_prompt": plan.prompt}
        )
    assert prompts == ["p0", "p0", "p2", "p2"]
    assert state(h)["scheduled_prompts"] == {}
    assert state(h)["current_prompt"] == "p2"


def test_earliest_chunk_rule() -> None:
    h = make()
    assert h.earliest_chunk == 0
    send(h, "set_prompt", prompt="p")
    send(h, "start")
    assert h.earliest_chunk == 0  # started, chunk 0 not begun yet
    h.begin_chunk()
    assert h.earliest_chunk == 1  # chunk 0 in progress
    send(h, "pause")
    assert h.earliest_chunk == 1  # pause requested, chunk not finished
    assert send(h, "set_prompt", prompt="q").answer.data["chunk"] == 1  # type: ignore[union-attr]
    h.complete_chunk()
    assert h.earliest_chunk == 1  # paused, no chunk in progress -> current chunk
    assert send(h, "set_prompt", prompt="r").answer.data["chunk"] == 1  # type: ignore[union-attr]
    assert state(h)["scheduled_prompts"] == {"1": "r"}


# ----------------------------------------------------------------------------------------- chunk boundary


def test_command_during_chunk_n_takes_effect_at_chunk_n_plus_1_exactly() -> None:
    h = started(prompt="first")
    run_chunk(h)
    run_chunk(h)
    plan_n = h.begin_chunk()
    assert plan_n is not None and plan_n.chunk_index == 2
    assert send(h, "set_prompt", prompt="second").answer == Message(
        "prompt_accepted", {"prompt": "second", "chunk": 3}
    )
    send(h, "set_image", {"image": PNG})
    send(h, "set_image_strength", image_strength=0.25)
    send(h, "set_sr_scale", sr_scale="4x")
    # the plan of chunk N is unaffected
    assert (plan_n.prompt, plan_n.image, plan_n.image_strength, plan_n.sr_scale) == ("first", None, 1.0, "2x")
    # the stored strength shows in state at once; current_prompt is still chunk N's
    assert state(h)["image_strength"] == 0.25
    assert state(h)["current_prompt"] == "first"
    assert state(h)["image_set"] is True
    done = h.complete_chunk()
    assert done[0].data == {"chunk_index": 2, "frames_emitted": 33, "active_prompt": "first"}
    plan = h.begin_chunk()
    assert plan is not None and plan.chunk_index == 3
    assert plan.prompt == "second"
    assert plan.image is not None and plan.image.image_id == condition_image(PNG).image_id
    assert plan.image_strength == 0.25
    assert plan.sr_scale == "4x"
    assert state(h)["current_prompt"] == "second"


def test_schedule_changes_before_start_apply_to_chunk_0() -> None:
    h = make()
    send(h, "set_prompt", prompt="p")
    send(h, "set_sr_scale", sr_scale="off")
    send(h, "set_image_strength", image_strength=0.5)
    send(h, "set_image", {"image": JPEG})
    send(h, "start")
    plan = h.begin_chunk()
    assert plan is not None
    assert (plan.chunk_index, plan.prompt, plan.sr_scale, plan.image_strength) == (0, "p", "off", 0.5)
    assert plan.image is not None and plan.image.source_size == (300, 400)


def test_chunk_cycle_messages_and_counters() -> None:
    h = started(prompt="p")
    assert h.begin_chunk() is not None
    assert h.chunk_in_progress
    assert h.begin_chunk() is None  # one chunk at a time
    done = h.complete_chunk()
    assert [m.type for m in done] == ["chunk_complete", "state"]
    assert done[1] == h.state_message()
    assert done[1].data["current_chunk"] == 1 and done[1].data["current_frame"] == 33
    assert h.complete_chunk() == ()  # nothing in progress
    for _ in range(3):
        run_chunk(h)
    assert (h.current_chunk, h.current_frame) == (4, 4 * 33)


# ----------------------------------------------------------------------------------------- start


def test_start() -> None:
    h = make()
    send(h, "set_seed", seed=99)
    send(h, "set_prompt", prompt="a red fox")
    out = send(h, "start")
    assert out.accepted
    assert out.broadcasts == (Message("generation_started", {"prompt": "a red fox", "chunk_index": 0}),)
    assert out.answer is None
    assert out.state is not None
    assert out.state.data == {
        **INITIAL_STATE,
        "started": True,
        "running": True,
        "current_prompt": "a red fox",
        "scheduled_prompts": {"0": "a red fox"},
    }
    plan = h.begin_chunk()
    assert plan == ChunkPlan(0, "a red fox", 99, None, 1.0, "2x")
    assert state(h)["scheduled_prompts"] == {}


def test_start_refusals() -> None:
    h = make()
    refused(h, "start", "no prompt scheduled at chunk 0")
    send(h, "set_prompt", prompt="p")
    send(h, "start")
    refused(h, "start", "already started; reset first")
    send(h, "pause")
    refused(h, "start", "already started; reset first")


def test_image_is_not_required_for_start() -> None:
    h = make()
    send(h, "set_prompt", prompt="p")
    assert send(h, "start").accepted


# ----------------------------------------------------------------------------------------- seed


def test_seed_is_read_at_start() -> None:
    h = make()
    send(h, "set_seed", seed=42)
    send(h, "set_prompt", prompt="p")
    send(h, "start")
    assert h.effective_seed == 42
    plan, _ = run_chunk(h)
    assert plan.seed == 42
    send(h, "set_seed", seed=5)  # while started: only for the next start
    plan, _ = run_chunk(h)
    assert plan.seed == 42
    send(h, "reset")
    assert h.seed == 5  # reset keeps the requested seed
    send(h, "set_prompt", prompt="p")
    send(h, "start")
    assert h.begin_chunk().seed == 5  # type: ignore[union-attr]


def test_seed_minus_one_draws_at_each_start() -> None:
    calls: list[int] = []

    def draw() -> int:
        calls.append(len(calls))
        return 100 + len(calls)

    h = Helios(draw_seed=draw)
    send(h, "set_prompt", prompt="p")
    assert calls == []
    send(h, "start")
    assert h.begin_chunk().seed == 101  # type: ignore[union-attr]
    h.complete_chunk()
    assert h.begin_chunk().seed == 101  # type: ignore[union-attr]
    send(h, "reset")
    send(h, "set_prompt", prompt="p")
    send(h, "start")
    assert h.begin_chunk().seed == 102  # type: ignore[union-attr]
    assert len(calls) == 2


def test_explicit_seed_does_not_draw() -> None:
    def draw() -> int:
        raise AssertionError("draw_seed must not be called")

    h = Helios(draw_seed=draw)
    send(h, "set_seed", seed=0)
    send(h, "set_prompt", prompt="p")
    send(h, "start")
    assert h.begin_chunk().seed == 0  # type: ignore[union-attr]


# ----------------------------------------------------------------------------------------- pause / resume


def test_pause_answers_at_once_and_lets_the_chunk_finish() -> None:
    h = started()
    run_chunk(h)
    h.begin_chunk()
    out = send(h, "pause")
    assert out.accepted and out.broadcasts == ()
    assert out.answer == Message("generation_paused", {"frame": 33, "chunk": 1})
    assert out.state is not None
    assert out.state.data["paused"] is True and out.state.data["running"] is False
    assert out.state.data["started"] is True
    assert h.chunk_in_progress
    done = h.complete_chunk()
    assert [m.type for m in done] == ["chunk_complete", "state"]
    assert done[1].data["current_chunk"] == 2 and done[1].data["paused"] is True
    assert h.begin_chunk() is None


def test_pause_and_resume_refusals() -> None:
    h = make()
    refused(h, "pause", "not running")
    refused(h, "resume", "not paused")
    send(h, "set_prompt", prompt="p")
    send(h, "start")
    refused(h, "resume", "not paused")
    send(h, "pause")
    refused(h, "pause", "not running")


def test_resume() -> None:
    h = started()
    run_chunk(h)
    send(h, "pause")
    assert h.begin_chunk() is None
    out = send(h, "resume")
    assert out.accepted and out.broadcasts == ()
    assert out.answer == Message("generation_resumed", {"frame": 33, "chunk": 1})
    assert out.state is not None and out.state.data["running"] is True
    plan = h.begin_chunk()
    assert plan is not None and plan.chunk_index == 1


def test_resume_before_the_paused_chunk_finished() -> None:
    h = started()
    h.begin_chunk()
    send(h, "pause")
    send(h, "resume")
    assert h.begin_chunk() is None  # chunk 0 still in progress
    h.complete_chunk()
    assert h.begin_chunk().chunk_index == 1  # type: ignore[union-attr]


# ----------------------------------------------------------------------------------------- reset


def test_reset_before_start_is_accepted() -> None:
    h = make()
    out = send(h, "reset")
    assert out.accepted
    assert out.broadcasts == (Message("generation_reset", {"frame": 0, "chunk": 0}),)
    assert out.answer is None
    assert out.state == Message("state", INITIAL_STATE)


def test_reset_clears_everything_but_the_seed_and_drops_the_chunk_in_progress() -> None:
    h = started(seed=11)
    send(h, "set_image", {"image": PNG})
    send(h, "set_image_strength", image_strength=0.3)
    send(h, "set_sr_scale", sr_scale="off")
    for _ in range(3):
        run_chunk(h)
    send(h, "save_snapshot", label="s")
    send(h, "schedule_prompt", prompt="later", chunk=9)
    h.begin_chunk()
    out = send(h, "reset")
    assert out.broadcasts == (Message("generation_reset", {"frame": 99, "chunk": 3}),)
    assert out.state == Message("state", INITIAL_STATE)
    assert not h.chunk_in_progress
    assert h.complete_chunk() == ()  # no chunk_complete for the dropped chunk
    assert h.begin_chunk() is None
    assert h.seed == 11
    assert h.sr_scale == "2x" and h.image is None
    assert send(h, "list_snapshots").answer.data["count"] == 0  # type: ignore[union-attr]
    refused(h, "start", "no prompt scheduled at chunk 0")
    send(h, "set_prompt", prompt="again")
    send(h, "start")
    plan = h.begin_chunk()
    assert plan == ChunkPlan(0, "again", 11, None, 1.0, "2x")


def test_reset_while_paused() -> None:
    h = started()
    run_chunk(h)
    send(h, "pause")
    out = send(h, "reset")
    assert out.broadcasts[0].data == {"frame": 33, "chunk": 1}
    assert state(h) == INITIAL_STATE


# ----------------------------------------------------------------------------------------- image


def test_set_image() -> None:
    h = make()
    out = send(h, "set_image", {"image": JPEG})
    assert out.accepted
    assert out.answer == Message("image_accepted", {"width": 300, "height": 400})
    assert out.broadcasts == (Message("conditions_ready", {"has_prompt": False, "has_image": True}),)
    assert state(h)["image_set"] is True
    assert h.image is not None and h.image.pixels.shape == (384, 640, 3)


def test_set_image_accepts_a_preconditioned_image() -> None:
    h = make()
    image = condition_image(PNG)
    out = send(h, "set_image", {"image": image})
    assert out.answer == Message("image_accepted", {"width": 100, "height": 60})
    assert h.image is image


def test_set_image_refusals() -> None:
    h = make()
    send(h, "set_image", {"image": PNG})
    image = h.image
    text = UploadedFile("u", "a.txt", "text/plain", b"hello")
    refused(h, "set_image", "unsupported image type: text/plain", {"image": text})
    garbage = UploadedFile("u", "a.png", "image/png", b"\x89PNG not really")
    refused(h, "set_image", "image could not be decoded", {"image": garbage})
    gif = io.BytesIO()
    Image.new("RGB", (8, 8)).save(gif, format="GIF")
    refused(
        h,
        "set_image",
        "image could not be decoded",
        {"image": UploadedFile("u", "a", "image/gif", gif.getvalue())},
    )
    refused(h, "set_image", "no image", {})
    assert h.image is image


def test_clear_image() -> None:
    h = make()
    send(h, "set_image", {"image": PNG})
    out = send(h, "clear_image")
    assert out.accepted and out.answer is None
    assert out.broadcasts == (Message("conditions_ready", {"has_prompt": False, "has_image": False}),)
    assert state(h)["image_set"] is False
    assert send(h, "clear_image").accepted  # also without an image


def test_set_conditioning() -> None:
    h = make()
    out = send(h, "set_conditioning", {"image": PNG}, prompt="a fox")
    assert out.accepted
    assert out.broadcasts == (
        Message("prompt_accepted", {"prompt": "a fox", "chunk": 0}),
        Message("image_accepted", {"width": 100, "height": 60}),
    )
    assert out.answer == Message("conditions_ready", {"has_prompt": True, "has_image": True})
    assert state(h)["scheduled_prompts"] == {"0": "a fox"} and state(h)["image_set"] is True


def test_set_conditioning_mid_stream_targets_next_chunk() -> None:
    h = started(prompt="p")
    run_chunk(h)
    h.begin_chunk()
    out = send(h, "set_conditioning", {"image": JPEG}, prompt="q")
    assert out.broadcasts[0].data == {"prompt": "q", "chunk": 2}
    h.complete_chunk()
    plan = h.begin_chunk()
    assert plan is not None and plan.prompt == "q" and plan.image is not None


def test_set_conditioning_is_transactional() -> None:
    h = make()
    send(h, "set_prompt", prompt="old")
    bad = UploadedFile("u", "a.png", "image/png", b"nope")
    refused(h, "set_conditioning", "image could not be decoded", {"image": bad}, prompt="new")
    refused(
        h,
        "set_conditioning",
        "unsupported image type: application/pdf",
        {"image": UploadedFile("u", "a", "application/pdf", PNG.data)},
        prompt="new",
    )
    refused(h, "set_conditioning", "no image", {}, prompt="new")
    refused(h, "set_conditioning", "empty prompt", {"image": PNG}, prompt="  ")
    assert h.image is None
    assert state(h)["scheduled_prompts"] == {"0": "old"}


def test_has_prompt_is_always_true_after_start() -> None:
    h = started()
    run_chunk(h)  # schedule now empty
    assert state(h)["scheduled_prompts"] == {}
    out = send(h, "set_image", {"image": PNG})
    assert out.broadcasts[0].data == {"has_prompt": True, "has_image": True}


# ----------------------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("set_image_strength", {"image_strength": 0.5}),
        ("set_sr_scale", {"sr_scale": "off"}),
        ("set_seed", {"seed": 3}),
    ],
)
def test_settings_have_no_answer_and_no_broadcast(name: str, params: dict[str, Any]) -> None:
    h = make()
    out = send(h, name, **params)
    assert out.accepted and out.broadcasts == () and out.answer is None and out.state is not None


def test_image_strength_shows_in_state_as_float() -> None:
    h = make()
    send(h, "set_image_strength", image_strength=0)
    assert state(h)["image_strength"] == 0.0 and type(state(h)["image_strength"]) is float
    send(h, "set_image_strength", image_strength=-0.0)
    assert str(state(h)["image_strength"]) == "0.0"


# ----------------------------------------------------------------------------------------- snapshots


def test_snapshot_refusals_before_start() -> None:
    h = make()
    refused(h, "save_snapshot", "generation has not started", label="x")
    refused(h, "rewind", "generation has not started")
    h = started()
    refused(h, "rewind", "no snapshots")
    send(h, "save_snapshot")
    refused(h, "rewind", "snapshot index out of range", snapshot_index=1)
    refused(h, "rewind", "snapshot index out of range", snapshot_index=-2)


def test_save_and_list_snapshots() -> None:
    h = started()
    out = send(h, "save_snapshot", label="start")
    assert out.broadcasts == ()
    assert out.answer == Message(
        "snapshot_saved", {"snapshot_index": 0, "label": "start", "chunk": 0, "frame": 0, "count": 1}
    )
    run_chunk(h)
    run_chunk(h)
    send(h, "pause")  # allowed while paused
    assert send(h, "save_snapshot").answer == Message(
        "snapshot_saved", {"snapshot_index": 1, "label": "", "chunk": 2, "frame": 66, "count": 2}
    )
    out = send(h, "list_snapshots")
    assert out.broadcasts == ()
    assert out.answer == Message(
        "snapshot_list",
        {
            "snapshots": [
                {"snapshot_index": 0, "label": "start", "chunk": 0, "frame": 0},
                {"snapshot_index": 1, "label": "", "chunk": 2, "frame": 66},
            ],
            "count": 2,
            "capacity": 50,
        },
    )
    assert out.state == h.state_message()  # read-only commands are followed by state too


def test_list_snapshots_before_start() -> None:
    out = send(make(), "list_snapshots")
    assert out.accepted
    assert out.answer == Message("snapshot_list", {"snapshots": [], "count": 0, "capacity": 50})


def test_snapshot_buffer_drops_the_oldest_and_renumbers() -> None:
    h = started()
    for i in range(SNAPSHOT_CAPACITY + 5):
        out = send(h, "save_snapshot", label=f"s{i}")
        assert out.answer is not None
        assert out.answer.data["snapshot_index"] == min(i, SNAPSHOT_CAPACITY - 1)
        assert out.answer.data["count"] == min(i + 1, SNAPSHOT_CAPACITY)
        run_chunk(h)
    listing = send(h, "list_snapshots").answer
    assert listing is not None
    snaps = listing.data["snapshots"]
    assert len(snaps) == SNAPSHOT_CAPACITY == listing.data["count"]
    assert [s["snapshot_index"] for s in snaps] == list(range(SNAPSHOT_CAPACITY))
    assert snaps[0]["label"] == "s5" and snaps[0]["chunk"] == 5
    assert snaps[-1]["label"] == f"s{SNAPSHOT_CAPACITY + 4}"


def test_rewind_at_once_when_no_chunk_in_progress() -> None:
    h = started(prompt="p")
    run_chunk(h)
    send(h, "save_snapshot", label="one")
    run_chunk(h)
    run_chunk(h)
    send(h, "schedule_prompt", prompt="future", chunk=7)
    send(h, "pause")
    out = send(h, "rewind")
    assert out.broadcasts == ()
    assert out.answer == Message(
        "rewind_complete", {"snapshot_index": 0, "label": "one", "chunk": 1, "frame": 33}
    )
    assert out.state is not None
    assert (out.state.data["current_chunk"], out.state.data["current_frame"]) == (1, 33)
    # the prompt is not restored; the pending schedule stays
    assert out.state.data["current_prompt"] == "p"
    assert out.state.data["scheduled_prompts"] == {"7": "future"}
    assert send(h, "list_snapshots").answer.data["count"] == 1  # type: ignore[union-attr]
    send(h, "resume")
    assert h.begin_chunk().chunk_index == 1  # type: ignore[union-attr]


def test_rewind_waits_for_the_chunk_in_progress() -> None:
    h = started(prompt="p")
    send(h, "save_snapshot", label="zero")
    for _ in range(3):
        run_chunk(h)
    send(h, "save_snapshot", label="three")
    run_chunk(h)
    h.begin_chunk()  # chunk 4 in progress
    out = send(h, "rewind", snapshot_index=-2)
    assert out.answer == Message(
        "rewind_complete", {"snapshot_index": 0, "label": "zero", "chunk": 0, "frame": 0}
    )
    assert out.state is not None and out.state.data["current_chunk"] == 4  # not yet restored
    assert h.earliest_chunk == 0  # a prompt sent now reaches the chunk generation continues from
    done = h.complete_chunk()
    assert done[0] == Message(
        "chunk_complete", {"chunk_index": 4, "frames_emitted": 33, "active_prompt": "p"}
    )
    assert (done[1].data["current_chunk"], done[1].data["current_frame"]) == (0, 0)
    assert done[1] == h.state_message()
    plan = h.begin_chunk()
    assert plan is not None and plan.chunk_index == 0 and plan.prompt == "p"


def test_resend_prompt_after_rewind_reaches_the_restored_chunk() -> None:
    h = started(prompt="p")
    run_chunk(h)
    send(h, "save_snapshot")
    run_chunk(h)
    h.begin_chunk()  # chunk 2 in progress
    send(h, "rewind")
    out = send(h, "set_prompt", prompt="again")
    assert out.answer == Message("prompt_accepted", {"prompt": "again", "chunk": 1})
    h.complete_chunk()
    assert h.begin_chunk().prompt == "again"  # type: ignore[union-attr]


def test_rewind_forward_drops_unreachable_schedule_entries() -> None:
    h = started(prompt="p")
    send(h, "save_snapshot", label="zero")
    for _ in range(5):
        run_chunk(h)
    send(h, "save_snapshot", label="five")
    send(h, "pause")
    send(h, "rewind", snapshot_index=0)
    assert h.current_chunk == 0
    send(h, "schedule_prompt", prompt="at2", chunk=2)
    send(h, "schedule_prompt", prompt="at8", chunk=8)
    send(h, "rewind", snapshot_index=1)
    assert h.current_chunk == 5
    assert state(h)["scheduled_prompts"] == {"8": "at8"}


def test_reset_cancels_a_pending_rewind() -> None:
    h = started()
    send(h, "save_snapshot")
    run_chunk(h)
    h.begin_chunk()
    send(h, "rewind")
    send(h, "reset")
    send(h, "set_prompt", prompt="p")
    send(h, "start")
    run_chunk(h)
    assert h.current_chunk == 1


# ----------------------------------------------------------------------------------------- handle() API


def test_unknown_command_raises_invalid_command() -> None:
    with pytest.raises(CommandRejected) as info:
        make().handle("fly", {}, {})
    assert info.value.code == "invalid_command"


def test_handle_accepts_a_dict_and_validates_it() -> None:
    h = make()
    assert h.handle("set_prompt", {"prompt": "p"}, {}).accepted
    with pytest.raises(CommandRejected):
        h.handle("set_seed", {"seed": 1.5}, {})


def test_handle_rejects_the_wrong_params_model() -> None:
    with pytest.raises(TypeError):
        make().handle("set_prompt", validate_command("set_seed", {"seed": 1}), {})


# ------------------------------------------------------------------------------- ordering, determinism


def test_outcome_order_fields() -> None:
    h = make()
    out = send(h, "set_conditioning", {"image": PNG}, prompt="p")
    # broadcasts, then the answer, then state
    assert [m.type for m in out.broadcasts] == ["prompt_accepted", "image_accepted"]
    assert out.answer is not None and out.answer.type == "conditions_ready"
    assert out.state is not None and out.state.type == "state"


def script(h: Helios) -> list[Any]:
    log: list[Any] = []
    log.append(send(h, "set_prompt", prompt="a"))
    log.append(send(h, "set_image", {"image": PNG}))
    log.append(send(h, "start"))
    for i in range(6):
        plan = h.begin_chunk()
        log.append((plan.chunk_index, plan.prompt, plan.seed, plan.image_strength, plan.sr_scale))  # type: ignore[union-attr]
        if i == 2:
            log.append(send(h, "set_prompt", prompt="b"))
            log.append(send(h, "save_snapshot"))
        if i == 4:
            log.append(send(h, "rewind"))
        log.append(h.complete_chunk())
    log.append(send(h, "reset"))
    log.append(send(h, "set_prompt", prompt="c"))
    log.append(send(h, "start"))
    log.append(h.begin_chunk().seed)  # type: ignore[union-attr]
    return log


def test_determinism() -> None:
    first = script(make(itertools.count(7)))
    second = script(make(itertools.count(7)))
    assert first == second
    assert script(make(itertools.count(8))) != first


def test_conditioned_pixels_are_deterministic() -> None:
    a = condition_image(PNG)
    b = condition_image(PNG)
    assert np.array_equal(a.pixels, b.pixels)


# ----------------------------------------------------------------------------------------- reference images


def halves(size: tuple[int, int], split: str, fmt: str) -> UploadedFile:
    """Red first half, blue second half (left/right or top/bottom)."""
    img = Image.new("RGB", size, (255, 0, 0))
    w, h = size
    img.paste((0, 0, 255), (w // 2, 0, w, h) if split == "x" else (0, h // 2, w, h))
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return UploadedFile("u", "x", f"image/{fmt.lower()}", buf.getvalue())


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_condition_image_centre_crops_wide_images(fmt: str) -> None:
    # 4000x1200 is wider than 5:3: the sides are cropped, the red/blue split stays in the middle
    ref = condition_image(halves((4000, 1200), "x", fmt))
    assert ref.source_size == (4000, 1200)
    assert ref.pixels.shape == (384, 640, 3) and ref.pixels.dtype == np.uint8
    assert ref.pixels[192, 300, 0] > 200 and ref.pixels[192, 300, 2] < 50
    assert ref.pixels[192, 340, 2] > 200 and ref.pixels[192, 340, 0] < 50


def test_condition_image_centre_crops_tall_images() -> None:
    ref = condition_image(halves((600, 2000), "y", "PNG"))
    assert ref.source_size == (600, 2000)
    assert tuple(ref.pixels[180, 320]) == (255, 0, 0)
    assert tuple(ref.pixels[204, 320]) == (0, 0, 255)


def test_condition_image_at_native_size_keeps_the_pixels() -> None:
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (384, 640, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    ref = condition_image(UploadedFile("u", "x", "image/png", buf.getvalue()))
    assert np.array_equal(ref.pixels, pixels)
    assert not ref.pixels.flags.writeable


@pytest.mark.parametrize("mode", ["RGBA", "L", "P", "1"])
def test_condition_image_converts_to_rgb(mode: str) -> None:
    buf = io.BytesIO()
    Image.new(mode, (3, 5)).save(buf, format="PNG")
    ref = condition_image(UploadedFile("u", "x", "IMAGE/PNG", buf.getvalue()))
    assert ref.pixels.shape == (384, 640, 3) and ref.source_size == (3, 5)


def test_image_ids() -> None:
    assert image_id_of(b"") == 959  # stable across runs and processes
    assert image_id_of(b"helios") == 2141
    ids = {image_id_of(bytes([i, j])) for i in range(64) for j in range(64)}
    assert min(ids) >= 1 and max(ids) <= 4095
    assert condition_image(PNG).image_id == image_id_of(PNG.data)

"""Property tests: random command sequences interleaved with the chunk cycle keep Helios consistent."""

from __future__ import annotations

import io
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from mock_server.constants import CHUNK_FRAMES, SNAPSHOT_CAPACITY
from mock_server.model.commands import validate_command
from mock_server.model.helios import Helios, Message
from mock_server.model.images import UploadedFile, image_id_of
from mock_server.model.messages import MESSAGES


def _png(colour: tuple[int, int, int], size: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


UPLOAD_REF = {"upload_id": "u", "name": "f", "mime_type": "image/png", "size": 1}
GOOD = [
    UploadedFile("a", "a.png", "image/png", _png((250, 0, 0), (40, 24))),
    UploadedFile("b", "b.png", "image/png", _png((0, 0, 250), (24, 40))),
]
BAD = [
    UploadedFile("t", "t.txt", "text/plain", b"hello"),
    UploadedFile("g", "g.png", "image/png", b"garbage"),
    None,  # upload not passed
]

prompts = st.sampled_from(["a fox", "a cat", "snow", "a dog", ""])
uploads = st.sampled_from(GOOD + BAD)

commands = st.one_of(
    st.tuples(st.just("set_prompt"), st.fixed_dictionaries({"prompt": prompts}), st.none()),
    st.tuples(
        st.just("schedule_prompt"),
        st.fixed_dictionaries({"prompt": prompts, "chunk": st.integers(0, 12)}),
        st.none(),
    ),
    st.tuples(st.just("set_image"), st.just({}), uploads),
    st.tuples(st.just("set_conditioning"), st.fixed_dictionaries({"prompt": prompts}), uploads),
    st.tuples(
        st.just("set_image_strength"),
        st.fixed_dictionaries({"image_strength": st.floats(0, 1)}),
        st.none(),
    ),
    st.tuples(
        st.just("set_sr_scale"),
        st.fixed_dictionaries({"sr_scale": st.sampled_from(["off", "2x", "4x"])}),
        st.none(),
    ),
    st.tuples(st.just("set_seed"), st.fixed_dictionaries({"seed": st.integers(-1, 3)}), st.none()),
    st.tuples(st.just("rewind"), st.fixed_dictionaries({"snapshot_index": st.integers(-3, 3)}), st.none()),
    st.tuples(
        st.just("save_snapshot"), st.fixed_dictionaries({"label": st.sampled_from(["", "x"])}), st.none()
    ),
    st.tuples(
        st.sampled_from(["start", "start", "pause", "resume", "reset", "list_snapshots", "clear_image"]),
        st.just({}),
        st.none(),
    ),
)
chunk_steps = st.sampled_from([("begin",), ("complete",)])
actions = st.lists(st.one_of(chunk_steps, st.tuples(st.just("cmd"), commands)), min_size=10, max_size=120)
# most runs start generating first, so that the running/paused/rewind paths get explored
PRELUDE = [("cmd", ("set_prompt", {"prompt": "a fox"}, None)), ("cmd", ("start", {}, None))]


def check_message(msg: Message) -> None:
    model = MESSAGES[msg.type]
    assert model.model_validate(msg.data).model_dump() == msg.data
    for name, info in model.model_fields.items():
        if info.annotation is int:
            assert type(msg.data[name]) is int
        if info.annotation is float:
            assert type(msg.data[name]) is float


class Shadow:
    """What the plans should contain, derived only from the messages Helios emitted."""

    def __init__(self) -> None:
        self.seed = -1
        self.reset()

    def reset(self) -> None:
        self.schedule: dict[int, str] = {}
        self.prompt: str | None = None
        self.image_id = 0
        self.strength = 1.0
        self.sr_scale = "2x"
        self.effective_seed: int | None = None
        self.rewind_pending = False


def check_invariants(h: Helios, shadow: Shadow) -> None:
    s = h.state_message().data
    check_message(h.state_message())
    assert s["running"] == (s["started"] and not s["paused"]) == h.running
    assert (s["started"], s["paused"]) == (h.started, h.paused)
    assert s["current_chunk"] == h.current_chunk and s["current_frame"] == h.current_frame
    assert s["current_frame"] == CHUNK_FRAMES * s["current_chunk"]
    earliest = h.earliest_chunk
    assert all(int(k) >= earliest for k in s["scheduled_prompts"])
    if not shadow.rewind_pending:
        assert earliest == h.current_chunk + (1 if h.chunk_in_progress else 0)
    if not h.started:
        assert earliest == 0 and s["current_chunk"] == 0 and not h.paused and not h.chunk_in_progress
        assert s["current_prompt"] is None
    assert s["current_prompt"] == shadow.prompt
    shadow.schedule = {k: v for k, v in shadow.schedule.items() if k >= earliest}
    assert s["scheduled_prompts"] == {str(k): v for k, v in sorted(shadow.schedule.items())}
    assert s["image_strength"] == shadow.strength
    assert s["image_set"] == (shadow.image_id != 0)
    assert h.seed == shadow.seed


@settings(max_examples=400, deadline=None)
@given(st.sampled_from([True, True, False]), actions)
def test_random_sequences_keep_helios_consistent(prelude: bool, steps: list[tuple[Any, ...]]) -> None:
    drawn: list[int] = []

    def draw() -> int:
        drawn.append(7000 + len(drawn))
        return drawn[-1]

    h = Helios(draw_seed=draw)
    shadow = Shadow()
    check_invariants(h, shadow)
    for step in (PRELUDE if prelude else []) + steps:
        if step[0] == "begin":
            _check_begin(h, shadow)
        elif step[0] == "complete":
            _check_complete(h, shadow)
        else:
            _check_command(h, shadow, step[1], drawn)
        check_invariants(h, shadow)


def _check_begin(h: Helios, shadow: Shadow) -> None:
    can_begin = h.running and not h.chunk_in_progress
    k = h.current_chunk
    plan = h.begin_chunk()
    assert (plan is not None) == can_begin
    if plan is None:
        return
    if k in shadow.schedule:
        shadow.prompt = shadow.schedule.pop(k)
    assert plan.chunk_index == k
    assert plan.prompt == shadow.prompt
    assert plan.seed == shadow.effective_seed
    assert plan.image_id == shadow.image_id
    assert plan.image_strength == shadow.strength
    assert plan.sr_scale == shadow.sr_scale
    assert h.chunk_in_progress


def _check_complete(h: Helios, shadow: Shadow) -> None:
    was = h.chunk_in_progress
    k = h.current_chunk
    done = h.complete_chunk()
    if not was:
        assert done == ()
    else:
        assert [m.type for m in done] == ["chunk_complete", "state"]
        assert done[0].data == {"chunk_index": k, "frames_emitted": 33, "active_prompt": shadow.prompt}
        assert done[1] == h.state_message()
        for msg in done:
            check_message(msg)
        shadow.rewind_pending = False
    assert not h.chunk_in_progress


def _check_command(h: Helios, shadow: Shadow, action: Any, drawn: list[int]) -> None:
    name, params, upload = action
    if name in ("set_image", "set_conditioning"):
        params = {**params, "image": UPLOAD_REF}
    files = {"image": upload} if upload is not None else {}
    before = h.state_message()
    in_progress = h.chunk_in_progress
    out = h.handle(name, validate_command(name, params), files)
    for msg in out.broadcasts + tuple(m for m in (out.answer, out.state) if m is not None):
        check_message(msg)
    if not out.accepted:
        assert out.answer is None and out.state is None
        assert len(out.broadcasts) == 1
        assert out.broadcasts[0].type in ("command_error", "rewind_failed")
        assert out.broadcasts[0].data["command"] == name
        assert h.state_message() == before  # a refusal changes nothing
        return
    assert out.state == h.state_message()
    for msg in out.broadcasts + ((out.answer,) if out.answer else ()):
        if msg.type == "prompt_accepted":
            shadow.schedule[msg.data["chunk"]] = msg.data["prompt"]
    _follow_accepted(h, shadow, name, params, upload, out, in_progress, drawn)


def _follow_accepted(
    h: Helios,
    shadow: Shadow,
    name: str,
    params: dict[str, Any],
    upload: Any,
    out: Any,
    in_progress: bool,
    drawn: list[int],
) -> None:
    """Apply an accepted command to the shadow model, checking its answer on the way."""
    if name in ("set_image", "set_conditioning"):
        assert upload is not None
        shadow.image_id = image_id_of(upload.data)
    elif name == "clear_image":
        shadow.image_id = 0
    elif name == "set_image_strength":
        shadow.strength = float(params["image_strength"])
    elif name == "set_sr_scale":
        shadow.sr_scale = params["sr_scale"]
    elif name == "set_seed":
        shadow.seed = params["seed"]
    elif name == "start":
        shadow.effective_seed = shadow.seed if shadow.seed != -1 else drawn[-1]
        shadow.prompt = shadow.schedule[0]
    elif name == "reset":
        shadow.reset()
    elif name == "rewind":
        shadow.rewind_pending = in_progress
        assert out.answer is not None
        if not in_progress:
            assert h.current_chunk == out.answer.data["chunk"]
    elif name == "save_snapshot":
        assert out.answer is not None
        assert out.answer.data["count"] <= SNAPSHOT_CAPACITY
        assert out.answer.data["chunk"] == h.current_chunk

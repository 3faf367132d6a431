"""The Helios state machine (docs/HELIOS.md §3-6, §9): pure, no I/O, no clock, no randomness of its own.

The session drives it: ``handle`` for each validated command, ``begin_chunk`` / ``complete_chunk`` around the
33 frames of each chunk. Every result is a list of messages in wire order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from mock_server.constants import CHUNK_FRAMES, SNAPSHOT_CAPACITY
from mock_server.model import messages as m
from mock_server.model.commands import COMMANDS, validate_command
from mock_server.model.images import ImageRejected, UploadedFile, condition_image
from mock_server.model.limits import SCHEDULE_MAX_CHARS, SCHEDULE_MAX_ENTRIES
from mock_server.model.plan import ChunkPlan, ReferenceImage

__all__ = [
    "CHUNK_FRAMES",
    "SNAPSHOT_CAPACITY",
    "DEFAULT_IMAGE_STRENGTH",
    "DEFAULT_SR_SCALE",
    "ChunkPlan",
    "Helios",
    "Message",
    "Outcome",
    "ReferenceImage",
]

DEFAULT_IMAGE_STRENGTH = 1.0
DEFAULT_SR_SCALE = "2x"


@dataclass(frozen=True)
class Message:
    """One model -> client message; codecs turn it into wire frames."""

    type: str
    data: dict[str, Any]


@dataclass(frozen=True)
class Outcome:
    """Result of one command, in wire order (docs/HELIOS.md §3.4)."""

    accepted: bool
    broadcasts: tuple[Message, ...]  # 1. to every connection
    answer: Message | None  # 2. to the sender only (None -> bodyless ack on v1, nothing on v0)
    state: Message | None  # 3. state broadcast, present iff accepted


@dataclass(frozen=True)
class _Snapshot:
    label: str
    chunk: int


def _msg(payload: BaseModel) -> Message:
    return Message(type(payload).TYPE, payload.model_dump())  # type: ignore[attr-defined]


class Helios:
    """One Helios model instance, shared by all connections of a session."""

    def __init__(self, draw_seed: Callable[[], int]) -> None:
        self._draw_seed = draw_seed
        self._seed = -1  # requested seed, survives reset
        self._clear()

    def _clear(self) -> None:
        self._started = False
        self._paused = False
        self._chunk = 0  # current_chunk
        self._in_progress = False
        self._schedule: dict[int, str] = {}
        self._current_prompt: str | None = None
        self._image: ReferenceImage | None = None
        self._image_strength = DEFAULT_IMAGE_STRENGTH
        self._sr_scale = DEFAULT_SR_SCALE
        self._snapshots: list[_Snapshot] = []
        self._pending_rewind: _Snapshot | None = None
        self._effective_seed: int | None = None

    # ------------------------------------------------------------------------------------- read-only view

    @property
    def started(self) -> bool:
        return self._started

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def running(self) -> bool:
        return self._started and not self._paused

    @property
    def chunk_in_progress(self) -> bool:
        return self._in_progress

    @property
    def current_chunk(self) -> int:
        return self._chunk

    @property
    def current_frame(self) -> int:
        return CHUNK_FRAMES * self._chunk

    @property
    def earliest_chunk(self) -> int:
        """E of docs/HELIOS.md §4: the first chunk a prompt change can still reach.

        While a rewind waits for the chunk in progress, that is the chunk generation continues from.
        """
        if self._pending_rewind is not None:
            return self._pending_rewind.chunk
        return self._chunk + 1 if self._in_progress else self._chunk

    @property
    def seed(self) -> int:
        """The requested seed (-1 = draw at each start)."""
        return self._seed

    @property
    def effective_seed(self) -> int | None:
        """The seed chosen at the last start; None when not started."""
        return self._effective_seed

    @property
    def sr_scale(self) -> str:
        return self._sr_scale

    @property
    def image(self) -> ReferenceImage | None:
        return self._image

    def state_message(self) -> Message:
        return _msg(
            m.State(
                started=self._started,
                running=self.running,
                paused=self._paused,
                image_set=self._image is not None,
                current_chunk=self._chunk,
                current_frame=self.current_frame,
                current_prompt=self._current_prompt,
                image_strength=float(self._image_strength),
                scheduled_prompts={str(k): self._schedule[k] for k in sorted(self._schedule)},
            )
        )

    # ------------------------------------------------------------------------------------- chunk cycle

    def begin_chunk(self) -> ChunkPlan | None:
        """Start chunk ``current_chunk`` if running and idle: apply its pending changes, return its plan."""
        if not self.running or self._in_progress:
            return None
        index = self._chunk
        if index in self._schedule:
            self._current_prompt = self._schedule.pop(index)
        self._in_progress = True
        return self._plan(index, self._current_prompt)

    def predict_next_plan(self) -> ChunkPlan | None:
        """The plan `begin_chunk` will return after the chunk in progress, if nothing changes before then.

        None when that is not known yet (no chunk in progress, not running, a rewind pending). A command
        that arrives later changes the real plan: a prediction is a hint (to encode ahead), never a promise.
        """
        if not self.running or not self._in_progress or self._pending_rewind is not None:
            return None
        index = self._chunk + 1
        return self._plan(index, self._schedule.get(index, self._current_prompt))

    def _plan(self, index: int, prompt: str | None) -> ChunkPlan:
        seed = self._effective_seed if self._effective_seed is not None else 0
        return ChunkPlan(
            chunk_index=index,
            prompt=prompt or "",
            seed=seed,
            image=self._image,
            image_strength=float(self._image_strength),
            sr_scale=self._sr_scale,
        )

    def complete_chunk(self) -> tuple[Message, ...]:
        """Finish the chunk in progress: ``chunk_complete``, a pending rewind's restore, then ``state``.

        Returns () when no chunk is in progress (e.g. it was dropped by ``reset``).
        """
        if not self._in_progress:
            return ()
        index = self._chunk
        self._in_progress = False
        self._chunk = index + 1
        done = _msg(
            m.ChunkComplete(
                chunk_index=index, frames_emitted=CHUNK_FRAMES, active_prompt=self._current_prompt or ""
            )
        )
        if self._pending_rewind is not None:
            self._restore(self._pending_rewind)
        return done, self.state_message()

    def _restore(self, snapshot: _Snapshot) -> None:
        self._pending_rewind = None
        self._chunk = snapshot.chunk
        self._drop_schedule_before(snapshot.chunk)

    def _drop_schedule_before(self, chunk: int) -> None:
        # Entries before the chunk generation continues from (only after a rewind "forward") could never
        # apply: drop them.
        self._schedule = {k: v for k, v in self._schedule.items() if k >= chunk}

    # ------------------------------------------------------------------------------------- commands

    def handle(
        self,
        command: str,
        params: BaseModel | Mapping[str, Any],
        uploads: Mapping[str, UploadedFile | ReferenceImage] | None = None,
    ) -> Outcome:
        """Apply one command. ``params`` is the model from ``validate_command`` (a dict is validated here);
        ``uploads`` maps an upload parameter name to its bytes (or an already conditioned image).

        Raises CommandRejected("invalid_command") for an unknown command or parameters that fail validation.
        """
        model = COMMANDS.get(command)
        if model is None or not isinstance(params, model):
            if isinstance(params, BaseModel) and model is not None:
                raise TypeError(f"{command}: expected {model.__name__}, got {type(params).__name__}")
            params = validate_command(command, params if isinstance(params, Mapping) else None)
        handler = getattr(self, f"_cmd_{command}")
        return handler(params, uploads or {})

    def _accept(self, broadcasts: tuple[Message, ...] = (), answer: Message | None = None) -> Outcome:
        return Outcome(True, broadcasts, answer, self.state_message())

    @staticmethod
    def _refuse(command: str, reason: str) -> Outcome:
        return Outcome(False, (_msg(m.CommandError(command=command, reason=reason)),), None, None)

    @staticmethod
    def _refuse_snapshot(command: Literal["rewind", "save_snapshot"], reason: str) -> Outcome:
        return Outcome(False, (_msg(m.RewindFailed(command=command, reason=reason)),), None, None)

    def _has_prompt(self) -> bool:
        return self._started or 0 in self._schedule

    def _conditions(self) -> Message:
        return _msg(m.ConditionsReady(has_prompt=self._has_prompt(), has_image=self._image is not None))

    @staticmethod
    def _image_of(uploads: Mapping[str, UploadedFile | ReferenceImage], name: str) -> ReferenceImage:
        item = uploads.get(name)
        if isinstance(item, ReferenceImage):
            return item
        if isinstance(item, UploadedFile):
            return condition_image(item)
        raise ImageRejected("no image")

    # prompts and image

    def _schedule_problem(self, chunk: int, prompt: str) -> str | None:
        """Why ``prompt`` at ``chunk`` would overflow the schedule (docs/LIMITS.md), or None.

        An entry already at ``chunk`` is replaced, so it frees its place and its characters.
        """
        replaced = self._schedule.get(chunk)
        if replaced is None and len(self._schedule) >= SCHEDULE_MAX_ENTRIES:
            return (
                f"schedule is full ({SCHEDULE_MAX_ENTRIES} pending prompts); wait until some apply, "
                "replace one, or reset"
            )
        total = sum(map(len, self._schedule.values())) - len(replaced or "") + len(prompt)
        if total > SCHEDULE_MAX_CHARS:
            return f"pending prompts would total {total} characters; the limit is {SCHEDULE_MAX_CHARS}"
        return None

    def _cmd_set_prompt(self, p: Any, uploads: Mapping[str, Any]) -> Outcome:
        if not p.prompt.strip():
            return self._refuse("set_prompt", "empty prompt")
        chunk = self.earliest_chunk
        problem = self._schedule_problem(chunk, p.prompt)
        if problem is not None:
            return self._refuse("set_prompt", problem)
        self._schedule[chunk] = p.prompt
        answer = _msg(m.PromptAccepted(prompt=p.prompt, chunk=chunk))
        return self._accept((self._conditions(),), answer)

    def _cmd_schedule_prompt(self, p: Any, uploads: Mapping[str, Any]) -> Outcome:
        if not p.prompt.strip():
            return self._refuse("schedule_prompt", "empty prompt")
        earliest = self.earliest_chunk
        if p.chunk < earliest:
            return self._refuse("schedule_prompt", f"chunk {p.chunk} is in the past (earliest is {earliest})")
        problem = self._schedule_problem(p.chunk, p.prompt)
        if problem is not None:
            return self._refuse("schedule_prompt", problem)
        self._schedule[p.chunk] = p.prompt
        answer = _msg(m.PromptAccepted(prompt=p.prompt, chunk=p.chunk))
        return self._accept((self._conditions(),), answer)

    def _cmd_set_image(self, p: Any, uploads: Mapping[str, Any]) -> Outcome:
        try:
            image = self._image_of(uploads, "image")
        except ImageRejected as exc:
            return self._refuse("set_image", exc.reason)
        self._image = image
        width, height = image.source_size
        answer = _msg(m.ImageAccepted(width=width, height=height))
        return self._accept((self._conditions(),), answer)

    def _cmd_set_conditioning(self, p: Any, uploads: Mapping[str, Any]) -> Outcome:
        if not p.prompt.strip():
            return self._refuse("set_conditioning", "empty prompt")
        chunk = self.earliest_chunk
        problem = self._schedule_problem(chunk, p.prompt)
        if problem is not None:
            return self._refuse("set_conditioning", problem)
        try:
            image = self._image_of(uploads, "image")
        except ImageRejected as exc:
            return self._refuse("set_conditioning", exc.reason)
        self._schedule[chunk] = p.prompt
        self._image = image
        width, height = image.source_size
        broadcasts = (
            _msg(m.PromptAccepted(prompt=p.prompt, chunk=chunk)),
            _msg(m.ImageAccepted(width=width, height=height)),
        )
        return self._accept(broadcasts, self._conditions())

    def _cmd_clear_image(self, p: Any, uploads: Mapping[str, Any]) -> Outcome:
        self._image = None
        return self._accept((self._conditions(),))

    # settings

    def _cmd_set_image_strength(self, p: Any, uploads: Mapping[str, Any]) -> Outcome:
        self._image_strength = float(p.image_strength) + 0.0  # + 0.0 turns -0.0 into 0.0
        return self._accept()

    def _cmd_set_sr_scale(self, p: Any, uploads: Mapping[str, Any]) -> Outcome:
        self._sr_scale = p.sr_scale
        return self._accept()

    def _cmd_set_seed(self, p: Any, uploads: Mapping[str, Any]) -> Outcome:
        self._seed = int(p.seed)
        return self._accept()

    # generation control

    def _cmd_start(self, p: Any, uploads: Mapping[str, Any]) -> Outcome:
        if self._started:
            return self._refuse("start", "already started; reset first")
        if 0 not in self._schedule:
            return self._refuse("start", "no prompt scheduled at chunk 0")
        self._started = True
        self._paused = False
        self._effective_seed = self._seed if self._seed != -1 else int(self._draw_seed())
        # The prompt chunk 0 will use; its schedule entry stays pending until chunk 0 begins.
        self._current_prompt = self._schedule[0]
        started = _msg(m.GenerationStarted(prompt=self._schedule[0], chunk_index=0))
        return self._accept((started,))

    def _cmd_pause(self, p: Any, uploads: Mapping[str, Any]) -> Outcome:
        if not self.running:
            return self._refuse("pause", "not running")
        self._paused = True
        return self._accept(answer=_msg(m.GenerationPaused(frame=self.current_frame, chunk=self._chunk)))

    def _cmd_resume(self, p: Any, uploads: Mapping[str, Any]) -> Outcome:
        if not self._paused:
            return self._refuse("resume", "not paused")
        self._paused = False
        return self._accept(answer=_msg(m.GenerationResumed(frame=self.current_frame, chunk=self._chunk)))

    def _cmd_reset(self, p: Any, uploads: Mapping[str, Any]) -> Outcome:
        before = _msg(m.GenerationReset(frame=self.current_frame, chunk=self._chunk))
        self._clear()
        return self._accept((before,))

    # snapshots

    def _entry(self, index: int) -> dict[str, Any]:
        snap = self._snapshots[index]
        return {
            "snapshot_index": index,
            "label": snap.label,
            "chunk": snap.chunk,
            "frame": CHUNK_FRAMES * snap.chunk,
        }

    def _cmd_save_snapshot(self, p: Any, uploads: Mapping[str, Any]) -> Outcome:
        if not self._started:
            return self._refuse_snapshot("save_snapshot", "generation has not started")
        self._snapshots.append(_Snapshot(label=p.label, chunk=self._chunk))
        del self._snapshots[:-SNAPSHOT_CAPACITY]
        index = len(self._snapshots) - 1
        answer = _msg(m.SnapshotSaved(**self._entry(index), count=len(self._snapshots)))
        return self._accept(answer=answer)

    def _cmd_list_snapshots(self, p: Any, uploads: Mapping[str, Any]) -> Outcome:
        entries = [m.SnapshotEntry(**self._entry(i)) for i in range(len(self._snapshots))]
        answer = _msg(m.SnapshotList(snapshots=entries, count=len(entries), capacity=SNAPSHOT_CAPACITY))
        return self._accept(answer=answer)

    def _cmd_rewind(self, p: Any, uploads: Mapping[str, Any]) -> Outcome:
        if not self._started:
            return self._refuse_snapshot("rewind", "generation has not started")
        count = len(self._snapshots)
        if count == 0:
            return self._refuse_snapshot("rewind", "no snapshots")
        index = p.snapshot_index
        if not -count <= index < count:
            return self._refuse_snapshot("rewind", "snapshot index out of range")
        index %= count
        answer = _msg(m.RewindComplete(**self._entry(index)))
        target = self._snapshots[index]
        if self._in_progress:
            self._pending_rewind = target  # restored when the chunk in progress completes
            self._drop_schedule_before(target.chunk)
        else:
            self._restore(target)
        return self._accept(answer=answer)

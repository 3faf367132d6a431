"""An independent reference model of Helios, written from docs/HELIOS.md §3-6 alone (it shares no code with
``mock_server.model.helios``), used by the state-machine tests to predict every reply, broadcast and plan.

It predicts *what* a command produces; the driver decides *when* chunks begin and complete (in process:
explicit ``begin_chunk``/``complete_chunk``; over the wire: as ``chunk_complete`` messages arrive).

Where docs/HELIOS.md leaves a detail open, the choice below is the mock's documented behaviour or the reading
that keeps "every command takes effect at the next chunk" true; each is marked *interpretation*.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mock_server.constants import CHUNK_FRAMES

__all__ = [
    "CAPACITY",
    "CHUNK_FRAMES",
    "PARAM_SPECS",
    "Expected",
    "ImageOK",
    "ImageRefused",
    "Msg",
    "Param",
    "Plan",
    "RefRejected",
    "ReferenceHelios",
    "check_params",
]

CAPACITY = 50  # snapshot buffer
DEFAULT_STRENGTH = 1.0
INITIAL_STATE: dict[str, Any] = {  # the `state` payload of a fresh or reset session (docs/HELIOS.md §6)
    "started": False,
    "running": False,
    "paused": False,
    "image_set": False,
    "current_chunk": 0,
    "current_frame": 0,
    "current_prompt": None,
    "image_strength": DEFAULT_STRENGTH,
    "scheduled_prompts": {},
}
DEFAULT_SR = "2x"
# Limits of docs/LIMITS.md (stated again here, not imported, to keep the reference independent).
PROMPT_MAX, LABEL_MAX, UPLOAD_FIELD_MAX = 2_000, 200, 256
SCHEDULE_ENTRIES, SCHEDULE_CHARS = 16, 14_000
_CONTROL = set(map(chr, [*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F]))
LEGACY: dict[str, dict[str, tuple[str, ...]]] = {"set_image": {"transition": ("cut", "blend")}}


# ------------------------------------------------------------------------------------------ parameters


@dataclass(frozen=True)
class Param:
    """One command parameter as docs/HELIOS.md §5.1 / §7 describe it."""

    kind: str  # "string" | "text" (no control characters) | "integer" | "number" | "enum" | "upload"
    required: bool = True
    minimum: float | None = None
    maximum: float | None = None
    enum: tuple[str, ...] = ()
    default: Any = None
    max_length: int | None = None


_PROMPT = Param("text", max_length=PROMPT_MAX)
PARAM_SPECS: dict[str, dict[str, Param]] = {
    "set_prompt": {"prompt": _PROMPT},
    "schedule_prompt": {"prompt": _PROMPT, "chunk": Param("integer", minimum=0, maximum=1_000_000)},
    "set_image": {"image": Param("upload")},
    "set_conditioning": {"prompt": _PROMPT, "image": Param("upload")},
    "set_image_strength": {"image_strength": Param("number", minimum=0, maximum=1)},
    "set_sr_scale": {"sr_scale": Param("enum", enum=("off", "2x", "4x"))},
    "set_seed": {"seed": Param("integer", minimum=-1, maximum=2**53 - 1)},
    "start": {},
    "pause": {},
    "resume": {},
    "reset": {},
    "rewind": {"snapshot_index": Param("integer", required=False, default=-1)},
    "save_snapshot": {"label": Param("text", required=False, default="", max_length=LABEL_MAX)},
    "list_snapshots": {},
    "clear_image": {},
}

_UPLOAD_FIELDS = {"upload_id": "string", "name": "string", "mime_type": "string", "size": "integer"}


class RefRejected(Exception):
    """The reference's runtime-level rejection (docs/HELIOS.md §3.3)."""


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _coerce(kind: str, value: Any, where: str) -> Any:
    if kind in ("string", "text"):
        if not isinstance(value, str):
            raise RefRejected(f"{where}: wrong type, expected a string")
        if kind == "text" and _CONTROL.intersection(value):
            raise RefRejected(f"{where}: holds a control character")
        return value
    if kind == "integer":
        if isinstance(value, float) and value.is_integer():
            return int(value)  # v1 numbers are doubles: 3.0 is the integer 3
        if not isinstance(value, int) or isinstance(value, bool):
            raise RefRejected(f"{where}: wrong type, expected an integer")
        return value
    if kind == "number":
        if not _is_number(value):
            raise RefRejected(f"{where}: wrong type, expected a number")
        return float(value)
    if kind == "enum":
        return value  # checked by the caller against the enum
    if kind == "upload":
        if not isinstance(value, Mapping):
            raise RefRejected(f"{where}: wrong type, expected an upload reference")
        ref = {}
        for key, key_kind in _UPLOAD_FIELDS.items():
            if key not in value:
                raise RefRejected(f"missing required parameter {where}.{key}")
            ref[key] = _coerce(key_kind, value[key], f"{where}.{key}")
            if key_kind == "string" and len(ref[key]) > UPLOAD_FIELD_MAX:
                raise RefRejected(f"{where}.{key}: longer than {UPLOAD_FIELD_MAX} characters")
        return ref
    raise AssertionError(kind)


def check_params(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Validate like the runtime: unknown name, missing, wrong type, range, enum -> :class:`RefRejected`.

    Returns the normalised parameters (defaults filled, integral doubles as ints). An unexpected key is
    rejected (as reactor-runtime does), except a legacy one with one of its documented values.
    """
    spec = PARAM_SPECS.get(name)
    if spec is None:
        raise RefRejected(f"unknown command {name!r}")
    legacy = LEGACY.get(name, {})
    for key in params:
        if key in legacy and params[key] in legacy[key]:
            continue
        if key not in spec:
            raise RefRejected(f"unexpected parameter {key!r}")
    out: dict[str, Any] = {}
    for key, param in spec.items():
        if key not in params:
            if param.required:
                raise RefRejected(f"missing required parameter {key}")
            out[key] = param.default
            continue
        value = _coerce(param.kind, params[key], key)
        if param.kind == "enum" and value not in param.enum:
            raise RefRejected(f"{key}: not one of {param.enum}")
        if param.minimum is not None and not (value >= param.minimum):  # NaN fails both bounds
            raise RefRejected(f"{key}: below {param.minimum}")
        if param.maximum is not None and not (value <= param.maximum):
            raise RefRejected(f"{key}: above {param.maximum}")
        if isinstance(value, float) and math.isnan(value):
            raise RefRejected(f"{key}: not a number")
        if param.max_length is not None and len(value) > param.max_length:
            raise RefRejected(f"{key}: longer than {param.max_length} characters")
        out[key] = value
    return out


# ------------------------------------------------------------------------------------------ results


@dataclass(frozen=True)
class Msg:
    """A model -> client message, ``{type, data}``."""

    type: str
    data: dict[str, Any]

    def pair(self) -> tuple[str, dict[str, Any]]:
        return self.type, self.data


@dataclass(frozen=True)
class Expected:
    """What one command must produce, in wire order (docs/HELIOS.md §3.4)."""

    accepted: bool
    broadcasts: tuple[Msg, ...]
    answer: Msg | None  # None: bodyless ack on v1, nothing on v0
    state: Msg | None  # present iff accepted


@dataclass(frozen=True)
class ImageOK:
    """An upload the model can decode: its source size and the 12-bit id the frames carry."""

    width: int
    height: int
    image_id: int = 0


@dataclass(frozen=True)
class ImageRefused:
    """An upload the model refuses, with the refusal text."""

    reason: str


@dataclass(frozen=True)
class Plan:
    """What the reference expects chunk ``chunk_index`` to be generated with."""

    chunk_index: int
    prompt: str
    seed: int | None  # None: drawn by the server (seed -1) and not known to the reference
    image_id: int
    image_strength: float
    sr_scale: str


@dataclass
class _Snapshot:
    label: str
    chunk: int


@dataclass
class ReferenceHelios:
    """The Helios model state of docs/HELIOS.md §4 and the command rules of §5.2.

    ``draw_seed`` stands for the server's random seed source (in process the test shares it with the
    model); without it a drawn seed is unknown (``None``).
    """

    draw_seed: Callable[[], int] | None = None
    seed: int = -1
    started: bool = False
    paused: bool = False
    current_chunk: int = 0
    in_progress: bool = False
    schedule: dict[int, str] = field(default_factory=dict)
    current_prompt: str | None = None
    image: ImageOK | None = None
    image_strength: float = DEFAULT_STRENGTH
    sr_scale: str = DEFAULT_SR
    snapshots: list[_Snapshot] = field(default_factory=list)
    pending_rewind: _Snapshot | None = None
    effective_seed: int | None = None
    plans: list[Plan] = field(default_factory=list)  # every chunk begun, in order (a log, not state)

    # ------------------------------------------------------------------ derived

    @property
    def running(self) -> bool:
        return self.started and not self.paused

    @property
    def earliest(self) -> int:
        """E of docs/HELIOS.md §4. *Interpretation*: while a rewind waits for the chunk in progress, E is the
        snapshot's chunk — the chunk generation continues from — so a prompt still lands on the next chunk."""
        if self.pending_rewind is not None:
            return self.pending_rewind.chunk
        return self.current_chunk + 1 if self.in_progress else self.current_chunk

    @property
    def current_frame(self) -> int:
        return CHUNK_FRAMES * self.current_chunk

    def state(self) -> Msg:
        return Msg(
            "state",
            {
                "started": self.started,
                "running": self.running,
                "paused": self.paused,
                "image_set": self.image is not None,
                "current_chunk": self.current_chunk,
                "current_frame": self.current_frame,
                "current_prompt": self.current_prompt,
                "image_strength": self.image_strength,
                "scheduled_prompts": {str(k): v for k, v in sorted(self.schedule.items())},
            },
        )

    def fingerprint(self) -> tuple[Any, ...]:
        """Everything a command can change (to prove that a rejection changed nothing)."""
        return (
            self.seed, self.started, self.paused, self.current_chunk, self.in_progress,
            tuple(sorted(self.schedule.items())), self.current_prompt, self.image, self.image_strength,
            self.sr_scale, tuple((s.label, s.chunk) for s in self.snapshots),
            None if self.pending_rewind is None else (self.pending_rewind.label, self.pending_rewind.chunk),
            self.effective_seed,
        )  # fmt: skip

    # ------------------------------------------------------------------ chunk cycle

    def begin_chunk(self) -> Plan | None:
        """Chunk ``current_chunk`` starts if running and idle: its schedule entry becomes the prompt."""
        if not self.running or self.in_progress:
            return None
        k = self.current_chunk
        if k in self.schedule:
            self.current_prompt = self.schedule.pop(k)
        self.in_progress = True
        plan = Plan(
            chunk_index=k,
            prompt=self.current_prompt or "",
            seed=self.effective_seed,
            image_id=self.image.image_id if self.image else 0,
            image_strength=self.image_strength,
            sr_scale=self.sr_scale,
        )
        self.plans.append(plan)
        return plan

    def complete_chunk(self) -> tuple[Msg, ...]:
        """``chunk_complete``, a pending rewind's restore, then ``state``; () when no chunk is in progress."""
        if not self.in_progress:
            return ()
        k = self.current_chunk
        self.in_progress = False
        self.current_chunk = k + 1
        done = Msg(
            "chunk_complete",
            {"chunk_index": k, "frames_emitted": CHUNK_FRAMES, "active_prompt": self.current_prompt or ""},
        )
        if self.pending_rewind is not None:
            self._restore(self.pending_rewind)
        return done, self.state()

    def _restore(self, snap: _Snapshot) -> None:
        self.pending_rewind = None
        self.current_chunk = snap.chunk
        self._drop_unreachable(snap.chunk)

    def _drop_unreachable(self, chunk: int) -> None:
        # *Interpretation*: after a rewind "forward", entries before the chunk generation continues from
        # could never apply; they are dropped (the mock does the same). Entries at or after it stay.
        self.schedule = {k: v for k, v in self.schedule.items() if k >= chunk}

    # ------------------------------------------------------------------ commands

    def apply(
        self, name: str, params: Mapping[str, Any], image: ImageOK | ImageRefused | None = None
    ) -> Expected:
        """Apply one command whose parameters passed :func:`check_params` (raises RefRejected otherwise).

        ``image``: what the upload of an image command turned out to be (None: no upload given).
        """
        p = check_params(name, params)
        return getattr(self, f"_{name}")(p, image)

    def _accept(self, broadcasts: tuple[Msg, ...] = (), answer: Msg | None = None) -> Expected:
        return Expected(True, broadcasts, answer, self.state())

    @staticmethod
    def _refuse(command: str, reason: str) -> Expected:
        return Expected(False, (Msg("command_error", {"command": command, "reason": reason}),), None, None)

    @staticmethod
    def _refuse_snapshot(command: str, reason: str) -> Expected:
        return Expected(False, (Msg("rewind_failed", {"command": command, "reason": reason}),), None, None)

    def _conditions(self) -> Msg:
        has_prompt = self.started or 0 in self.schedule
        return Msg("conditions_ready", {"has_prompt": has_prompt, "has_image": self.image is not None})

    @staticmethod
    def _image_problem(image: ImageOK | ImageRefused | None) -> str | None:
        if image is None:
            return "no image"
        if isinstance(image, ImageRefused):
            return image.reason
        return None

    def _overflow(self, chunk: int, prompt: str) -> str | None:
        """The schedule limits of docs/LIMITS.md: an entry at ``chunk`` is replaced, freeing its share."""
        old = self.schedule.get(chunk)
        if old is None and len(self.schedule) >= SCHEDULE_ENTRIES:
            return (
                f"schedule is full ({SCHEDULE_ENTRIES} pending prompts); wait until some apply, "
                "replace one, or reset"
            )
        total = sum(len(v) for k, v in self.schedule.items() if k != chunk) + len(prompt)
        if total > SCHEDULE_CHARS:
            return f"pending prompts would total {total} characters; the limit is {SCHEDULE_CHARS}"
        return None

    def _set_prompt(self, p: dict[str, Any], image: Any) -> Expected:
        if not p["prompt"].strip():
            return self._refuse("set_prompt", "empty prompt")
        chunk = self.earliest
        if (overflow := self._overflow(chunk, p["prompt"])) is not None:
            return self._refuse("set_prompt", overflow)
        self.schedule[chunk] = p["prompt"]
        return self._accept(
            (self._conditions(),), Msg("prompt_accepted", {"prompt": p["prompt"], "chunk": chunk})
        )

    def _schedule_prompt(self, p: dict[str, Any], image: Any) -> Expected:
        if not p["prompt"].strip():
            return self._refuse("schedule_prompt", "empty prompt")
        if p["chunk"] < self.earliest:
            return self._refuse(
                "schedule_prompt", f"chunk {p['chunk']} is in the past (earliest is {self.earliest})"
            )
        if (overflow := self._overflow(p["chunk"], p["prompt"])) is not None:
            return self._refuse("schedule_prompt", overflow)
        self.schedule[p["chunk"]] = p["prompt"]
        answer = Msg("prompt_accepted", {"prompt": p["prompt"], "chunk": p["chunk"]})
        return self._accept((self._conditions(),), answer)

    def _set_image(self, p: dict[str, Any], image: ImageOK | ImageRefused | None) -> Expected:
        problem = self._image_problem(image)
        if problem is not None:
            return self._refuse("set_image", problem)
        assert isinstance(image, ImageOK)
        self.image = image
        answer = Msg("image_accepted", {"width": image.width, "height": image.height})
        return self._accept((self._conditions(),), answer)

    def _set_conditioning(self, p: dict[str, Any], image: ImageOK | ImageRefused | None) -> Expected:
        if not p["prompt"].strip():
            return self._refuse("set_conditioning", "empty prompt")
        chunk = self.earliest
        if (overflow := self._overflow(chunk, p["prompt"])) is not None:
            return self._refuse("set_conditioning", overflow)
        problem = self._image_problem(image)
        if problem is not None:
            return self._refuse("set_conditioning", problem)
        assert isinstance(image, ImageOK)
        self.schedule[chunk] = p["prompt"]
        self.image = image
        broadcasts = (
            Msg("prompt_accepted", {"prompt": p["prompt"], "chunk": chunk}),
            Msg("image_accepted", {"width": image.width, "height": image.height}),
        )
        return self._accept(broadcasts, self._conditions())

    def _clear_image(self, p: dict[str, Any], image: Any) -> Expected:
        self.image = None
        return self._accept((self._conditions(),))

    def _set_image_strength(self, p: dict[str, Any], image: Any) -> Expected:
        self.image_strength = p["image_strength"] + 0.0  # -0.0 reads as 0.0
        return self._accept()

    def _set_sr_scale(self, p: dict[str, Any], image: Any) -> Expected:
        self.sr_scale = p["sr_scale"]
        return self._accept()

    def _set_seed(self, p: dict[str, Any], image: Any) -> Expected:
        self.seed = p["seed"]
        return self._accept()

    def _start(self, p: dict[str, Any], image: Any) -> Expected:
        if self.started:
            return self._refuse("start", "already started; reset first")
        if 0 not in self.schedule:
            return self._refuse("start", "no prompt scheduled at chunk 0")
        self.started, self.paused = True, False
        if self.seed != -1:
            self.effective_seed = self.seed
        else:
            self.effective_seed = self.draw_seed() if self.draw_seed is not None else None
        # *Interpretation* (the mock's): the state right after start already names chunk 0's prompt; the
        # schedule entry itself stays pending until chunk 0 begins.
        self.current_prompt = self.schedule[0]
        return self._accept((Msg("generation_started", {"prompt": self.schedule[0], "chunk_index": 0}),))

    def _pause(self, p: dict[str, Any], image: Any) -> Expected:
        if not self.running:
            return self._refuse("pause", "not running")
        self.paused = True
        answer = Msg("generation_paused", {"frame": self.current_frame, "chunk": self.current_chunk})
        return self._accept(answer=answer)

    def _resume(self, p: dict[str, Any], image: Any) -> Expected:
        if not self.paused:
            return self._refuse("resume", "not paused")
        self.paused = False
        answer = Msg("generation_resumed", {"frame": self.current_frame, "chunk": self.current_chunk})
        return self._accept(answer=answer)

    def _reset(self, p: dict[str, Any], image: Any) -> Expected:
        before = Msg("generation_reset", {"frame": self.current_frame, "chunk": self.current_chunk})
        self.started = self.paused = self.in_progress = False
        self.current_chunk = 0
        self.schedule = {}
        self.current_prompt = None
        self.image = None
        self.image_strength = DEFAULT_STRENGTH
        self.sr_scale = DEFAULT_SR
        self.snapshots = []
        self.pending_rewind = None
        self.effective_seed = None  # the requested seed survives
        return self._accept((before,))

    def _entry(self, i: int) -> dict[str, Any]:
        s = self.snapshots[i]
        return {"snapshot_index": i, "label": s.label, "chunk": s.chunk, "frame": CHUNK_FRAMES * s.chunk}

    def _save_snapshot(self, p: dict[str, Any], image: Any) -> Expected:
        if not self.started:
            return self._refuse_snapshot("save_snapshot", "generation has not started")
        self.snapshots.append(_Snapshot(p["label"], self.current_chunk))
        if len(self.snapshots) > CAPACITY:
            self.snapshots.pop(0)  # oldest dropped, indices renumber from 0
        i = len(self.snapshots) - 1
        return self._accept(answer=Msg("snapshot_saved", {**self._entry(i), "count": len(self.snapshots)}))

    def _list_snapshots(self, p: dict[str, Any], image: Any) -> Expected:
        entries = [self._entry(i) for i in range(len(self.snapshots))]
        data = {"snapshots": entries, "count": len(entries), "capacity": CAPACITY}
        return self._accept(answer=Msg("snapshot_list", data))

    def _rewind(self, p: dict[str, Any], image: Any) -> Expected:
        if not self.started:
            return self._refuse_snapshot("rewind", "generation has not started")
        n = len(self.snapshots)
        if n == 0:
            return self._refuse_snapshot("rewind", "no snapshots")
        i = p["snapshot_index"]
        i = i + n if i < 0 else i
        if not 0 <= i < n:
            return self._refuse_snapshot("rewind", "snapshot index out of range")
        answer = Msg("rewind_complete", self._entry(i))
        target = _Snapshot(self.snapshots[i].label, self.snapshots[i].chunk)
        if self.in_progress:  # restored when the chunk in progress completes
            self.pending_rewind = target
            self._drop_unreachable(target.chunk)
        else:
            self._restore(target)
        return self._accept(answer=answer)

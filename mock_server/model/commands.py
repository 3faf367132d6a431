"""Parameter models of the Helios commands (docs/HELIOS.md §5.1) and their runtime-level validation (§3.3).

Typing rules (v1 numbers are doubles, v0 is JSON):

* integers accept ints and integral floats (``3.0`` -> ``3``); ``3.5``, booleans and strings are rejected;
* numbers accept ints and floats, not booleans or strings;
* strings must be strings (no coercion); prompts and labels are bounded and hold no control characters
  other than tab, line feed and carriage return (model/limits.py, docs/LIMITS.md);
* an unexpected parameter is rejected, as reactor-runtime's contract does ("unexpected argument"), except
  the legacy ``transition`` of ``set_image`` (docs/HELIOS.md §5.2), which is accepted and ignored.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from mock_server.model.limits import (
    CHUNK_MAX,
    LABEL_MAX_CHARS,
    PROMPT_MAX_CHARS,
    SEED_MAX,
    TEXT_PATTERN,
    UPLOAD_FIELD_MAX_CHARS,
)
from mock_server.textlimits import clip


def _integral_float_to_int(value: Any) -> Any:
    """Turn an integral float (3.0) into an int; everything else goes to the strict int check unchanged."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


StrictInt = Annotated[int, BeforeValidator(_integral_float_to_int), Field(strict=True)]
StrictNumber = Annotated[float, Field(strict=True)]
UploadStr = Annotated[str, Field(strict=True, max_length=UPLOAD_FIELD_MAX_CHARS)]
PromptText = Annotated[str, Field(strict=True, max_length=PROMPT_MAX_CHARS, pattern=TEXT_PATTERN)]
LabelText = Annotated[str, Field(strict=True, max_length=LABEL_MAX_CHARS, pattern=TEXT_PATTERN)]
SrScale = Literal["off", "2x", "4x"]


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UploadReference(BaseModel):
    """Reference to a file uploaded via the Reactor upload protocol (docs/HELIOS.md §7)."""

    # The reference's own extra keys are dropped: the codecs carry exactly these four fields.
    model_config = ConfigDict(extra="ignore", frozen=True)

    upload_id: UploadStr = Field(description="Id of the uploaded file.")
    name: UploadStr = Field(description="File name given by the client.")
    mime_type: UploadStr = Field(description="MIME type given by the client.")
    size: StrictInt = Field(description="Size in bytes.")


# ------------------------------------------------------------------------------------------ field helpers

_PROMPT_DESC = (
    f"Text prompt describing the video (at most {PROMPT_MAX_CHARS} characters; tab and line breaks are "
    "the only control characters allowed)."
)
_IMAGE_DESC = "Uploaded reference image (PNG, JPEG or WebP); centre-cropped to 5:3 and resized to 640x384."


def _prompt() -> Any:
    return Field(description=_PROMPT_DESC)


def _image() -> Any:
    return Field(description=_IMAGE_DESC)


# ------------------------------------------------------------------------------------------ the commands


class SetPrompt(_Params):
    """Set the prompt from the next chunk (chunk 0 before start, the current chunk while paused)."""

    prompt: PromptText = _prompt()


class SchedulePrompt(_Params):
    """Schedule a prompt to take effect at a given chunk; an entry already at that chunk is replaced."""

    prompt: PromptText = _prompt()
    chunk: StrictInt = Field(
        ge=0, le=CHUNK_MAX, description="Chunk at which the prompt takes effect (not in the past)."
    )


class SetImage(_Params):
    """Set the reference image from the next chunk."""

    image: UploadReference = _image()


class SetConditioning(_Params):
    """Set the prompt and the reference image together, in one transaction."""

    prompt: PromptText = _prompt()
    image: UploadReference = _image()


class SetImageStrength(_Params):
    """Set how strongly the reference image anchors the output, from the next chunk."""

    image_strength: StrictNumber = Field(
        ge=0, le=1, description="Image anchoring strength: 0 = none, 1 = strongest."
    )


class SetSrScale(_Params):
    """Set the output super-resolution scale for chunks starting after the command."""

    sr_scale: SrScale = Field(description="Output scale: off = 640x384, 2x = 1280x768, 4x = 2560x1536.")


class SetSeed(_Params):
    """Set the seed read at the next start (kept across reset)."""

    seed: StrictInt = Field(
        ge=-1, le=SEED_MAX, description="Random seed; -1 draws a fresh seed at each start."
    )


class Start(_Params):
    """Start generation; a prompt must be scheduled at chunk 0."""


class Pause(_Params):
    """Pause generation once the chunk in progress has finished."""


class Resume(_Params):
    """Resume a paused generation."""


class Reset(_Params):
    """Stop generation and clear prompts, image, snapshots, settings and counters (the seed is kept)."""


class Rewind(_Params):
    """Return generation to a saved snapshot; the prompt is not restored."""

    snapshot_index: StrictInt = Field(
        default=-1,
        description="Snapshot to return to: >= 0 from the oldest, negative from the newest (-1 = newest).",
    )


class SaveSnapshot(_Params):
    """Save the current chunk boundary in the rewind buffer (50 entries, oldest dropped when full)."""

    label: LabelText = Field(
        default="",
        description=f"Free-form label stored with the snapshot (at most {LABEL_MAX_CHARS} characters).",
    )


class ListSnapshots(_Params):
    """List the saved snapshots, oldest first."""


class ClearImage(_Params):
    """Remove the reference image; generation continues text-only (legacy, not advertised)."""


COMMANDS: dict[str, type[BaseModel]] = {
    "set_prompt": SetPrompt,
    "schedule_prompt": SchedulePrompt,
    "set_image": SetImage,
    "set_conditioning": SetConditioning,
    "set_image_strength": SetImageStrength,
    "set_sr_scale": SetSrScale,
    "set_seed": SetSeed,
    "start": Start,
    "pause": Pause,
    "resume": Resume,
    "reset": Reset,
    "rewind": Rewind,
    "save_snapshot": SaveSnapshot,
    "list_snapshots": ListSnapshots,
    "clear_image": ClearImage,
}

ADVERTISED: tuple[str, ...] = tuple(name for name in COMMANDS if name != "clear_image")

DESCRIPTIONS: dict[str, str] = {name: (model.__doc__ or "").strip() for name, model in COMMANDS.items()}

UPLOAD_PARAMS: dict[str, tuple[str, ...]] = {
    name: tuple(
        field_name for field_name, info in model.model_fields.items() if info.annotation is UploadReference
    )
    for name, model in COMMANDS.items()
}


# ------------------------------------------------------------------------------------------ validation

# Parameters a command accepts and ignores although they are not in its model: set_image's legacy
# ``transition`` (older Helios docs, docs/HELIOS.md §5.2), with the values those docs list.
LEGACY_PARAMS: dict[str, dict[str, tuple[str, ...]]] = {"set_image": {"transition": ("cut", "blend")}}

MESSAGE_MAX_CHARS = 1_000  # a rejection message (it quotes client text) in a reply and a log line


class CommandRejected(Exception):
    """A runtime-level rejection, before the model sees the command (docs/HELIOS.md §3.3)."""

    def __init__(self, code: str, message: str) -> None:
        message = clip(message, MESSAGE_MAX_CHARS)
        super().__init__(message)
        self.code = code  # "invalid_command" | "unresolved_upload" | "internal_error"
        self.message = message


def _show(value: Any, limit: int = 40) -> str:
    if isinstance(value, dict | list):
        return type(value).__name__
    text = repr(value[: limit + 1]) if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _bounds(model: type[BaseModel], name: str) -> tuple[Any, Any]:
    info = model.model_fields.get(name)
    lower = upper = None
    for item in info.metadata if info is not None else ():
        lower = getattr(item, "ge", lower)
        upper = getattr(item, "le", upper)
    return lower, upper


def _range_text(model: type[BaseModel], loc: list[str]) -> str:
    lower, upper = _bounds(model, loc[0]) if len(loc) == 1 else (None, None)
    if lower is not None and upper is not None:
        return f"must be between {lower} and {upper}"
    if lower is not None:
        return f"must be at least {lower}"
    if upper is not None:
        return f"must be at most {upper}"
    return "is out of range"


_PLAIN: dict[str, str] = {
    "int_type": "must be an integer",
    "float_type": "must be a number",
    "string_type": "must be a string",
    "model_type": "must be an upload reference (upload_id, name, mime_type, size)",
    "model_attributes_type": "must be an upload reference (upload_id, name, mime_type, size)",
    "dict_type": "must be an upload reference (upload_id, name, mime_type, size)",
    "string_pattern_mismatch": (
        "must not hold control characters (tab, line feed and carriage return are the only ones allowed)"
    ),
}


def _describe(model: type[BaseModel], error: Mapping[str, Any]) -> str:
    """One pydantic error in plain words: "<param> <what is wrong> (got <value>)"."""
    loc = [clip(str(part), 40) for part in error.get("loc", ())]
    param = ".".join(loc) or "parameters"
    kind = error.get("type", "")
    value = error.get("input")
    ctx = error.get("ctx") or {}
    if kind == "missing":
        return f"missing required parameter '{param}'"
    if kind == "extra_forbidden":
        return f"unexpected parameter '{param}'"
    if kind == "string_too_long":
        length = len(value) if isinstance(value, str) else "?"
        return f"{param} is {length} characters; the limit is {ctx.get('max_length')}"
    if kind in _PLAIN:
        return f"{param} {_PLAIN[kind]} (got {_show(value)})"
    if kind == "literal_error":
        return f"{param} must be one of {ctx.get('expected', '')} (got {_show(value)})"
    if kind in ("greater_than_equal", "less_than_equal"):
        return f"{param} {_range_text(model, loc)} (got {_show(value)})"
    return f"{param}: {error.get('msg', 'invalid value')} (got {_show(value)})"


def _plain(value: Any) -> Any:
    """Accept upload references given as dataclasses (e.g. wire UploadRef) as well as dicts."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return value


def _without_legacy(name: str, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` minus the command's legacy parameters, after checking their values."""
    legacy = LEGACY_PARAMS.get(name, {})
    for key, allowed in legacy.items():
        if key in data and data.pop(key) not in allowed:
            choices = ", ".join(repr(v) for v in allowed)
            raise CommandRejected(
                "invalid_command", f"{name}: {key} must be one of {choices} (a legacy parameter, ignored)"
            )
    return data


def _check_unexpected(name: str, model: type[BaseModel], data: Mapping[str, Any]) -> None:
    unexpected = [key for key in data if key not in model.model_fields]
    if not unexpected:
        return
    shown = ", ".join(f"'{clip(str(key), 40)}'" for key in unexpected[:5])
    more = f" and {len(unexpected) - 5} more" if len(unexpected) > 5 else ""
    takes = ", ".join(model.model_fields) or "no parameters"
    raise CommandRejected(
        "invalid_command", f"{name}: unexpected parameter {shown}{more}; {name} takes {takes}"
    )


def validate_command(name: str, params: Mapping[str, Any] | None) -> BaseModel:
    """Validate a command's parameters; raise CommandRejected("invalid_command", ...) when they fail."""
    model = COMMANDS.get(name)
    if model is None:
        known = ", ".join(COMMANDS)
        raise CommandRejected(
            "invalid_command", f"unknown command '{clip(name, 64)}'; known commands: {known}"
        )
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        raise CommandRejected("invalid_command", f"{name}: parameters must be an object")
    data = _without_legacy(name, {key: _plain(value) for key, value in params.items()})
    _check_unexpected(name, model, data)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        message = f"{name}: " + "; ".join(_describe(model, error) for error in errors[:3])
        raise CommandRejected("invalid_command", message) from None

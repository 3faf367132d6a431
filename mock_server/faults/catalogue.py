"""The fault catalogue: one parameter model per fault kind, the `FaultSpec` body, and its validation.

A fault is described by the body of ``POST /admin/faults`` (and by each item of a ``--faults`` file)::

    {"kind": "...", "session_id": null, "at_chunk": null, "after_seconds": null, "on_command": null,
     "count": null, "probability": null, "params": {...}}

`parse_fault` turns such a body into a `FaultSpec` or raises `FaultInvalid` (HTTP 422) whose ``detail``
holds one plain-words sentence per problem. `fault_schema()` is the JSON Schema of the body.
Pure: no I/O, no clock.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from mock_server.errors import ApiError, Unprocessable

# ---------------------------------------------------------------------------------------------- limits

MAX_COUNT = 10_000  # firings (or sessions) one fault may take
MAX_AT_CHUNK = 1_000_000
MAX_AFTER_SECONDS = 86_400.0  # one day of session age
MAX_SECONDS = 600.0  # upper bound of every duration parameter
MAX_TEXT = 500  # reason / message / detail strings
MAX_PATTERN = 200  # moderation prompt_pattern (a regular expression)
MAX_MATCH_ENTRIES = 10  # command parameter filters
MAX_CATEGORIES = 10

SESSION_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
COMMAND_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"


class FaultInvalid(Unprocessable):
    """A fault body the mock cannot arm (HTTP 422). `problems` lists one plain sentence per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


# ---------------------------------------------------------------------------------------- kind params


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)  # no bool-as-number: as the schema


def _text(default: str, description: str) -> Any:
    return Field(default, min_length=1, max_length=MAX_TEXT, description=description)


class QueueWaitParams(_Params):
    """The session stays in `state` (no capabilities, not ready) for `seconds`, then becomes ACTIVE."""

    state: Literal["PENDING", "WAITING", "SUSPENDED"] = Field(
        "PENDING", description="State reported by GET /sessions/{id} while queued."
    )
    seconds: float = Field(5.0, gt=0, le=MAX_SECONDS, description="How long the session stays queued.")


class SessionRefusedParams(_Params):
    """POST /sessions (or a new local session) answers `status` with `{"detail"}`."""

    status: Literal[429, 500, 503] = Field(503, description="HTTP status of the refusal.")
    retry_after: int | None = Field(
        None, ge=1, le=3600, description="Retry-After seconds (429 and 503 only; 429 defaults to 5)."
    )
    detail: str | None = Field(
        None, min_length=1, max_length=MAX_TEXT, description="Error text; a default per status if absent."
    )

    def error(self) -> ApiError:
        """The refusal to raise from the route: status, `{"detail"}` and Retry-After (429 default 5 s)."""
        retry = self.retry_after if self.retry_after is not None else (5 if self.status == 429 else None)
        headers = {"Retry-After": str(retry)} if retry is not None else {}
        return ApiError(self.status, self.detail or DEFAULT_DETAIL[self.status], headers)


class SessionClosedParams(_Params):
    """The session stays PENDING for `seconds`, then reports CLOSED (never ready)."""

    seconds: float = Field(1.0, ge=0, le=MAX_SECONDS, description="Time PENDING before CLOSED.")
    reason: str = _text("the session was closed before it became active", "Why the session closed.")


class NoParams(_Params):
    """This kind takes no parameters."""


class SdpSlowParams(_Params):
    """The SDP answer becomes available only `seconds` after the offer (clients give up after ≈ 6.2 s)."""

    seconds: float = Field(5.0, gt=0, le=60.0, description="Delay before the answer is served.")


class GpuFailureParams(_Params):
    """The session ends with `reason` (sessionEnded / SessionEnded), transports close, state CLOSED."""

    reason: str = _text("the GPU worker failed", "Reason sent in sessionEnded / SessionEnded.")


MatchValue = str | int | float | bool | None


class _CommandMatch(_Params):
    match: dict[str, MatchValue] = Field(
        default_factory=dict,
        max_length=MAX_MATCH_ENTRIES,
        description="Only commands whose parameters equal all these values match (numbers compare by value).",
    )


class CommandErrorParams(_CommandMatch):
    """The model refuses the command: broadcast `command_error {command, reason}` (+ ack on v1); no change."""

    reason: str = _text("refused by an injected fault", "Reason in the command_error message.")


class InternalErrorParams(_CommandMatch):
    """The runtime fails the command: v1 `Error{code: internal_error}` reply; v0 dropped (as the runtime)."""

    message: str = _text("the command handler raised an exception", "Message of the internal_error.")


class SlowChunksParams(_Params):
    """The next `count` chunks take `factor` times their duration."""

    count: int = Field(3, ge=1, le=1000, description="How many chunks are slowed.")
    factor: float = Field(2.0, gt=1.0, le=20.0, description="Duration multiplier of each slowed chunk.")


class StallParams(_Params):
    """Generation stops for `seconds` (no frames, no chunk_complete), then continues."""

    seconds: float = Field(5.0, gt=0, le=MAX_SECONDS, description="Length of the stall.")


class MediaLossParams(_Params):
    """Drop `percent` of outgoing video RTP packets for `seconds`."""

    percent: float = Field(20.0, gt=0, le=100.0, description="Share of video RTP packets dropped.")
    seconds: float = Field(10.0, gt=0, le=MAX_SECONDS, description="How long packets are dropped.")


Category = Annotated[str, StringConstraints(min_length=1, max_length=64)]
_NESTED_QUANTIFIER = re.compile(r"\((?:[^()\\]|\\.)*[*+}](?:[^()\\]|\\.)*\)\s*[*+{]")


class ModerationParams(_Params):
    """A `moderation` message to every connection; `terminate` then ends the session."""

    action: Literal["warn", "terminate"] = Field("warn", description="terminate ends the session.")
    categories: list[Category] = Field(
        default_factory=lambda: ["violence"],
        max_length=MAX_CATEGORIES,
        description="Moderation categories reported.",
    )
    message: str = _text("content flagged by moderation", "Human-readable moderation message.")
    input_kind: Literal["text", "image"] = Field("text", description="Which input was flagged.")
    prompt_pattern: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_PATTERN,
        description="Regular expression (case-insensitive) searched in a command's `prompt`; "
        "when given, the fault fires on the first matching command instead of at a chunk or time.",
    )

    @field_validator("prompt_pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression ({exc})") from None
        if _NESTED_QUANTIFIER.search(value):
            raise ValueError("nested quantifiers like (a+)+ are not allowed (they can take exponential time)")
        return value


class UploadFailureParams(_Params):
    """The next presigned upload PUT answers `status` with `{"detail"}`."""

    status: Literal[403, 500] = Field(403, description="403 = the upload URL expired; 500 = storage error.")
    detail: str | None = Field(
        None, min_length=1, max_length=MAX_TEXT, description="Error text; a default per status if absent."
    )

    def error(self) -> ApiError:
        """The failure to raise from the upload PUT route."""
        return ApiError(self.status, self.detail or UPLOAD_DETAIL[self.status])


# ------------------------------------------------------------------------------------------ the kinds

PARAMS: dict[str, type[_Params]] = {
    "queue_wait": QueueWaitParams,
    "session_refused": SessionRefusedParams,
    "session_closed": SessionClosedParams,
    "sdp_timeout": NoParams,
    "sdp_slow": SdpSlowParams,
    "ice_failure": NoParams,
    "gpu_failure": GpuFailureParams,
    "command_error": CommandErrorParams,
    "internal_error": InternalErrorParams,
    "slow_chunks": SlowChunksParams,
    "stall": StallParams,
    "media_loss": MediaLossParams,
    "transport_drop": NoParams,
    "moderation": ModerationParams,
    "session_expiry": NoParams,
    "upload_failure": UploadFailureParams,
}
KINDS = tuple(PARAMS)
FaultKind = Literal[
    "queue_wait",
    "session_refused",
    "session_closed",
    "sdp_timeout",
    "sdp_slow",
    "ice_failure",
    "gpu_failure",
    "command_error",
    "internal_error",
    "slow_chunks",
    "stall",
    "media_loss",
    "transport_drop",
    "moderation",
    "session_expiry",
    "upload_failure",
]

# Where each kind acts. CREATION kinds act when a session is created and never target a session id.
CREATION_KINDS = frozenset({"session_refused", "queue_wait", "session_closed"})
OFFER_KINDS = frozenset({"sdp_timeout", "sdp_slow", "ice_failure"})
UPLOAD_KINDS = frozenset({"upload_failure"})
COMMAND_KINDS = frozenset({"command_error", "internal_error", "moderation"})
TIMED_KINDS = frozenset(
    {"gpu_failure", "slow_chunks", "stall", "media_loss", "transport_drop", "moderation", "session_expiry"}
)

DEFAULT_DETAIL = {
    429: "too many sessions; retry later",
    500: "the coordinator failed to create the session",
    503: "no GPU is available for this model right now",
}
UPLOAD_DETAIL = {  # an upload PUT is not a session creation: its own default texts
    403: "upload URL expired",
    500: "the upload storage failed; upload the file again",
}


# ---------------------------------------------------------------------------------------------- body


class FaultSpec(BaseModel):
    """One fault to arm: what (`kind` + `params`), where (`session_id` or the next sessions) and when."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)  # no bool-as-number: as the schema

    kind: FaultKind = Field(description="Fault kind (see docs/FAULTS.md).")
    session_id: str | None = Field(
        None,
        pattern=SESSION_ID_PATTERN,
        description="Only this session. Absent: the next `count` sessions created (or, with `probability`, "
        "each new session with that probability).",
    )
    at_chunk: int | None = Field(
        None, ge=0, le=MAX_AT_CHUNK, description="Fire when a chunk with index ≥ at_chunk begins."
    )
    after_seconds: float | None = Field(
        None,
        ge=0,
        le=MAX_AFTER_SECONDS,
        description="Fire once the session is this old in seconds (with `session_id`: seconds after arming).",
    )
    on_command: str | None = Field(
        None, pattern=COMMAND_NAME_PATTERN, description="Fire on the next command with this name."
    )
    count: int | None = Field(
        None,
        ge=1,
        le=MAX_COUNT,
        description="Firings before the fault expires (default 1). Without `session_id`: how many new "
        "sessions it applies to, once each. With `probability`: a cap on firings (default: no cap).",
    )
    probability: float | None = Field(
        None, ge=0.0, le=1.0, description="Chaos: each new session (or request) is hit with this probability."
    )
    params: dict[str, Any] = Field(default_factory=dict, description="Parameters of the kind (see $defs).")

    @model_validator(mode="after")
    def _rules(self) -> FaultSpec:
        problems = trigger_problems(self)
        try:
            parsed = PARAMS[self.kind].model_validate(self.params)
        except ValidationError as exc:
            problems += [describe_error(err, params_of=self.kind) for err in exc.errors()]
        else:
            problems += params_problems(self, parsed)
            object.__setattr__(self, "params", parsed.model_dump())
        if problems:
            raise PydanticCustomError(
                "fault_rules", "{detail}", {"detail": "; ".join(problems), "problems": problems}
            )
        return self

    @property
    def kind_params(self) -> Any:
        """The params as the kind's typed model (e.g. `StallParams`)."""
        return PARAMS[self.kind].model_validate(self.params)

    @property
    def acts_on_command(self) -> bool:
        """True when the fault fires from the command hook (command kinds, and pattern/named moderation)."""
        if self.kind == "moderation":
            return self.on_command is not None or self.params.get("prompt_pattern") is not None
        return self.kind in COMMAND_KINDS


def _names(kinds: frozenset[str]) -> str:
    return ", ".join(k for k in KINDS if k in kinds)


def trigger_problems(spec: FaultSpec) -> list[str]:
    """Cross-field rules between kind and triggers, each broken rule as one sentence."""
    problems: list[str] = []
    kind = spec.kind
    given = [n for n in ("at_chunk", "after_seconds", "on_command") if getattr(spec, n) is not None]
    if len(given) > 1:
        problems.append(
            f"give at most one of at_chunk, after_seconds, on_command (got {' and '.join(given)})"
        )
    if kind in CREATION_KINDS and spec.session_id is not None:
        problems.append(
            f"{kind} acts when a session is created, before it has an id: drop session_id "
            "(use count for the next N sessions, or probability)"
        )
    if spec.session_id is not None and spec.probability is not None:
        problems.append("probability applies to every new session: give either session_id or probability")
    for name in ("at_chunk", "after_seconds"):
        if getattr(spec, name) is not None and kind not in TIMED_KINDS:
            problems.append(
                f"{name} only applies to kinds that act during generation ({_names(TIMED_KINDS)})"
            )
    if spec.on_command is not None and kind not in COMMAND_KINDS:
        problems.append(f"on_command only applies to command kinds ({_names(COMMAND_KINDS)})")
    return problems


def params_problems(spec: FaultSpec, params: BaseModel) -> list[str]:
    """Rules inside one kind's params, or between params and triggers, that a field cannot express."""
    problems: list[str] = []
    if isinstance(params, SessionRefusedParams) and params.status == 500 and params.retry_after is not None:
        problems.append("params.retry_after only applies to status 429 or 503")
    if isinstance(params, ModerationParams) and params.prompt_pattern is not None:
        if spec.at_chunk is not None or spec.after_seconds is not None:
            problems.append(
                "a moderation with params.prompt_pattern fires on commands: drop at_chunk/after_seconds"
            )
    return problems


# --------------------------------------------------------------------------------------------- errors


PATTERN_HINTS = {
    SESSION_ID_PATTERN: "must be a session id: 1 to 64 letters, digits or _ . : -",
    COMMAND_NAME_PATTERN: "must be a command name: a letter or _, then letters, digits or _ (at most 64)",
}


def _shown(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe_error(err: ErrorDetails, params_of: str | None = None) -> str:
    """One pydantic error as one sentence naming the field, the problem and the value given.

    `params_of` names the kind when the error comes from validating that kind's params.
    """
    where = ".".join(str(part) for part in err["loc"])
    if params_of is not None:
        where = f"params.{where} ({params_of})" if where else f"params ({params_of})"
    kind = err["type"]
    if kind == "fault_rules":
        return str(err.get("ctx", {}).get("detail", err["msg"]))
    if kind == "extra_forbidden":
        return f"{where}: unknown field"
    if kind == "missing":
        return f"{where}: required"
    if kind == "literal_error" and where == "kind":
        return f"kind: unknown kind {err['input']!r}; choose one of {', '.join(KINDS)}"
    msg = err["msg"]
    if kind == "string_pattern_mismatch":
        msg = PATTERN_HINTS.get(str(err.get("ctx", {}).get("pattern")), msg)
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    return f"{where}: {msg} (got {_shown(err['input'])})"


def _allowed_fields(kind: str | None, problem: str) -> str:
    """Add the allowed names to an 'unknown field' problem so the fix is obvious."""
    if not problem.endswith("unknown field"):
        return problem
    if problem.startswith("params.") and kind in PARAMS:
        allowed = ", ".join(PARAMS[kind].model_fields) or "no parameters"
        return f"{problem}; {kind} takes: {allowed}"
    return f"{problem}; a fault takes: {', '.join(FaultSpec.model_fields)}"


def parse_fault(body: Any) -> FaultSpec:
    """Validate a fault body; raise `FaultInvalid` with one plain sentence per problem."""
    if not isinstance(body, Mapping):
        raise FaultInvalid([f"a fault must be a JSON object, got {type(body).__name__}"])
    try:
        spec = FaultSpec.model_validate(dict(body))
    except ValidationError as exc:
        kind = body.get("kind") if isinstance(body.get("kind"), str) else None
        problems: list[str] = []
        for err in exc.errors():
            if err["type"] == "fault_rules":
                problems.extend(err.get("ctx", {}).get("problems", [err["msg"]]))
            else:
                problems.append(describe_error(err))
        raise FaultInvalid([_allowed_fields(kind, p) for p in problems]) from None
    return spec


# --------------------------------------------------------------------------------------------- schema


def fault_schema() -> dict[str, Any]:
    """JSON Schema (2020-12) of the fault body, with the params of each kind tied to its `kind`."""
    schema = FaultSpec.model_json_schema()
    defs: dict[str, Any] = schema.setdefault("$defs", {})
    branches = []
    for kind, model in PARAMS.items():
        sub = model.model_json_schema()
        defs.update(sub.pop("$defs", {}))
        name = model.__name__
        defs[name] = sub
        branches.append(
            {
                "if": {"properties": {"kind": {"const": kind}}, "required": ["kind"]},
                "then": {"properties": {"params": {"$ref": f"#/$defs/{name}"}}},
            }
        )
    schema["allOf"] = branches
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$comment": "Body of POST /admin/faults and each item of a --faults file (docs/FAULTS.md). "
        "Cross-field rules (which triggers fit which kind) are checked by the server and reported as 422. "
        "Generated by `helios-mock schemas`; do not edit.",
        **schema,
        "title": "fault",
        "x-model": f"{FaultSpec.__module__}.{FaultSpec.__qualname__}",
    }

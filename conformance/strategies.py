"""Hypothesis strategies for Helios commands (docs/HELIOS.md §5.1, §3.3).

* :func:`valid_commands` — commands whose parameters pass the runtime's contract (the model may still refuse
  them: an empty prompt, an undecodable image, a chunk in the past are *valid* commands).
* :func:`invalid_commands` — commands the runtime rejects before the model (``Error invalid_command`` /
  ``unresolved_upload`` on v1), each tagged with why.
* :func:`command_sequences` — lists mixing both, weighted so that prompts, start, pause, resume and reset
  happen often.

Upload parameters are never real references here: a case carries an :class:`UploadPlaceholder` per upload
parameter, and the driver uploads :meth:`UploadPlaceholder.payload` (or, in process, wraps the bytes) and
puts the resulting reference into the command.
"""

from __future__ import annotations

import functools
import io
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from hypothesis import strategies as st
from PIL import Image

__all__ = [
    "COMMAND_WEIGHTS",
    "INVALID_CATEGORIES",
    "CommandCase",
    "Invalid",
    "UploadPlaceholder",
    "command_sequences",
    "invalid_commands",
    "prompts",
    "upload_placeholders",
    "valid_commands",
]

UploadKind = Literal[
    "png", "jpeg", "webp", "mislabelled", "octet", "text", "undecodable", "gif", "unresolved"
]

INVALID_CATEGORIES = (
    "unknown_command",
    "missing_param",
    "wrong_type",
    "out_of_range",
    "non_integral",
    "bad_enum",
    "unexpected_param",
    "unresolved_upload",
)

# Relative frequency of each command in sequences: the generation-control commands and prompts dominate.
COMMAND_WEIGHTS: dict[str, int] = {
    "set_prompt": 6,
    "start": 5,
    "schedule_prompt": 3,
    "pause": 3,
    "resume": 3,
    "reset": 2,
    "save_snapshot": 2,
    "rewind": 2,
    "list_snapshots": 1,
    "set_image": 1,
    "set_conditioning": 1,
    "set_image_strength": 1,
    "set_sr_scale": 1,
    "set_seed": 1,
    "clear_image": 1,
}
COMMAND_NAMES = tuple(COMMAND_WEIGHTS)


# ------------------------------------------------------------------------------------------ uploads


@dataclass(frozen=True)
class UploadPlaceholder:
    """Stands for one upload parameter; the driver uploads :meth:`payload` and references it.

    ``kind``: ``png``/``jpeg``/``webp`` decodable images; ``mislabelled`` PNG bytes declared ``image/jpeg``
    (accepted: the bytes decide); ``octet`` PNG bytes declared ``application/octet-stream`` and ``text`` a
    text file (refused: not ``image/*``); ``undecodable`` garbage and ``gif`` an unsupported format declared
    as images (refused: cannot be decoded); ``unresolved`` a reference to an upload that was never created
    (rejected by the runtime as ``unresolved_upload``).
    """

    kind: UploadKind
    width: int = 40
    height: int = 24
    colour: tuple[int, int, int] = (200, 40, 40)

    def payload(self) -> tuple[bytes, str, str]:
        """(bytes, file name, declared MIME type) to upload."""
        return _payload(self.kind, self.width, self.height, self.colour)

    @property
    def decodable(self) -> bool:
        """The model accepts this upload as a reference image."""
        return self.kind in ("png", "jpeg", "webp", "mislabelled")

    @property
    def refusal(self) -> str | None:
        """The mock's refusal text for this upload (docs/HELIOS.md §6), None when accepted or unresolved."""
        if self.kind in ("octet", "text"):
            return f"unsupported image type: {self.payload()[2]}"
        if self.kind in ("undecodable", "gif"):
            return "image could not be decoded"
        return None


def _encode(fmt: str, width: int, height: int, colour: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buf, format=fmt)
    return buf.getvalue()


@functools.lru_cache(maxsize=512)
def _payload(kind: str, width: int, height: int, colour: tuple[int, int, int]) -> tuple[bytes, str, str]:
    if kind == "png":
        return _encode("PNG", width, height, colour), "ref.png", "image/png"
    if kind == "jpeg":
        return _encode("JPEG", width, height, colour), "ref.jpg", "image/jpeg"
    if kind == "webp":
        return _encode("WEBP", width, height, colour), "ref.webp", "image/webp"
    if kind == "mislabelled":
        return _encode("PNG", width, height, colour), "ref.jpg", "image/jpeg"
    if kind == "octet":
        return _encode("PNG", width, height, colour), "ref.bin", "application/octet-stream"
    if kind == "text":
        return b"not an image at all\n", "notes.txt", "text/plain"
    if kind == "undecodable":
        return b"\x89PNG\r\n\x1a\n" + bytes(colour) * 8, "broken.png", "image/png"
    if kind == "gif":
        return _encode("GIF", width, height, colour), "ref.gif", "image/gif"
    if kind == "unresolved":
        return b"", "ghost.png", "image/png"
    raise ValueError(f"unknown upload kind {kind!r}")


def upload_placeholders(*, good: bool | None = None) -> st.SearchStrategy[UploadPlaceholder]:
    """Resolvable upload placeholders; ``good=True`` only decodable images, ``False`` only refused ones."""
    good_kinds = ["png", "png", "jpeg", "webp", "mislabelled"]
    bad_kinds = ["octet", "text", "undecodable", "gif"]
    kinds = good_kinds if good else bad_kinds if good is False else good_kinds * 2 + bad_kinds
    return st.builds(
        UploadPlaceholder,
        kind=st.sampled_from(kinds),
        width=st.integers(8, 96),
        height=st.integers(8, 96),
        colour=st.tuples(st.integers(0, 255), st.integers(0, 255), st.integers(0, 255)),
    )


# ------------------------------------------------------------------------------------------ cases


@dataclass(frozen=True)
class Invalid:
    """Why a case is rejected by the runtime: a category of :data:`INVALID_CATEGORIES` and a detail."""

    category: str
    detail: str

    @property
    def code(self) -> str:
        """The v1 ``Error.code`` expected for it."""
        return "unresolved_upload" if self.category == "unresolved_upload" else "invalid_command"


@dataclass(frozen=True)
class CommandCase:
    """One command to send: ``params`` is the JSON ``data``; ``uploads`` maps upload parameters to
    placeholders the driver replaces by real references; ``invalid`` is None for valid cases."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    uploads: dict[str, UploadPlaceholder] = field(default_factory=dict)
    invalid: Invalid | None = None

    @property
    def valid(self) -> bool:
        return self.invalid is None

    def merged(self, refs: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """``params`` with the upload references filled in (what the runtime validates)."""
        return {**self.params, **refs}

    def __repr__(self) -> str:  # short, for Hypothesis' falsifying-example output
        parts = [repr(self.name), repr(self.params)]
        if self.uploads:
            parts.append(f"uploads={self.uploads!r}")
        if self.invalid is not None:
            parts.append(f"invalid={self.invalid.category}:{self.invalid.detail}")
        return f"CommandCase({', '.join(parts)})"


# ------------------------------------------------------------------------------------------ values

REALISTIC_PROMPTS = (
    "A red fox trotting through snow",
    "The fox stops and looks at the camera",
    "a calm lake at dawn, mist rising",
    "neon city street in the rain",
    "a cat",
    "snow",
)


# Prompts and labels hold no control characters but tab and line breaks (docs/LIMITS.md).
_TEXT = st.characters(exclude_categories=("Cs", "Cc"))


def prompts(*, blank: bool = True) -> st.SearchStrategy[str]:
    """Mostly realistic prompts, some arbitrary text, and (``blank``) some empty/whitespace ones."""
    realistic = st.sampled_from(REALISTIC_PROMPTS)
    text = st.text(_TEXT, min_size=1, max_size=40).filter(lambda s: s.strip() != "")
    options = [realistic, realistic, realistic, text]
    if blank:
        options.append(st.sampled_from(["", " ", "\t\n "]))
    return st.one_of(*options)


def _ints(lo: int | None, hi: int | None) -> st.SearchStrategy[int | float]:
    """Integers, sometimes as integral doubles (v1 numbers are doubles: 3.0 is the integer 3)."""
    ints = st.integers(lo, hi)
    return st.one_of(ints, ints, ints.map(float))


# Named builders (not lambdas) so that Hypothesis prints falsifying cases as CommandCase('start', {...}).
def _case(name: str, params: dict[str, Any]) -> CommandCase:
    return CommandCase(name, params)


def _case_with_uploads(name: str, pu: tuple[dict[str, Any], dict[str, UploadPlaceholder]]) -> CommandCase:
    return CommandCase(name, pu[0], pu[1])


_strengths = st.one_of(st.floats(0, 1), st.sampled_from([0.0, 1.0, 0, 1, 0.5]))
_seeds = st.one_of(st.just(-1), st.just(-1.0), _ints(0, 2**32))
_chunks = st.one_of(_ints(0, 12), _ints(0, 12), _ints(13, 10**6))
_labels = st.one_of(st.sampled_from(["", "before the turn", "a"]), st.text(_TEXT, max_size=12))


def _valid(name: str) -> st.SearchStrategy[CommandCase]:
    def case(params: st.SearchStrategy[dict[str, Any]], **uploads: Any) -> st.SearchStrategy[CommandCase]:
        if not uploads:
            return params.map(functools.partial(_case, name))
        pu = st.tuples(params, st.fixed_dictionaries(uploads))
        return pu.map(functools.partial(_case_with_uploads, name))

    match name:
        case "set_prompt":
            return case(st.fixed_dictionaries({"prompt": prompts()}))
        case "schedule_prompt":
            return case(st.fixed_dictionaries({"prompt": prompts(), "chunk": _chunks}))
        case "set_image":
            transition: st.SearchStrategy[dict[str, Any]] = st.one_of(
                st.just({}), st.fixed_dictionaries({"transition": st.sampled_from(["cut", "blend"])})
            )
            return case(transition, image=upload_placeholders())
        case "set_conditioning":
            return case(st.fixed_dictionaries({"prompt": prompts()}), image=upload_placeholders())
        case "set_image_strength":
            return case(st.fixed_dictionaries({"image_strength": _strengths}))
        case "set_sr_scale":
            return case(st.fixed_dictionaries({"sr_scale": st.sampled_from(["off", "2x", "4x"])}))
        case "set_seed":
            return case(st.fixed_dictionaries({"seed": _seeds}))
        case "rewind":
            index = st.one_of(_ints(-4, 4), _ints(-4, 4), _ints(-(2**31), 2**31))
            return case(st.fixed_dictionaries({}, optional={"snapshot_index": index}))
        case "save_snapshot":
            return case(st.fixed_dictionaries({}, optional={"label": _labels}))
        case "start" | "pause" | "resume" | "reset" | "list_snapshots" | "clear_image":
            return case(st.just({}))
    raise ValueError(f"unknown command {name!r}")


def valid_commands(
    names: tuple[str, ...] | None = None, *, weights: dict[str, int] | None = None
) -> st.SearchStrategy[CommandCase]:
    """Valid commands (per the parameter contract of docs/HELIOS.md §5.1), weighted by ``weights``
    (default :data:`COMMAND_WEIGHTS`); ``names`` restricts the commands."""
    table = weights or COMMAND_WEIGHTS
    chosen = [n for n in COMMAND_NAMES if names is None or n in names]

    def build() -> st.SearchStrategy[CommandCase]:
        return st.one_of(*(_valid(n) for n in chosen for _ in range(max(1, table.get(n, 1)))))

    return st.deferred(build)  # deferred: a one-line repr in Hypothesis' reports, not the whole tree


# ------------------------------------------------------------------------------------------ invalid


_REQUIRED: dict[str, dict[str, str]] = {  # command -> required parameter -> JSON kind
    "set_prompt": {"prompt": "string"},
    "schedule_prompt": {"prompt": "string", "chunk": "integer"},
    "set_image": {"image": "upload"},
    "set_conditioning": {"prompt": "string", "image": "upload"},
    "set_image_strength": {"image_strength": "number"},
    "set_sr_scale": {"sr_scale": "enum"},
    "set_seed": {"seed": "integer"},
}
_OPTIONAL: dict[str, dict[str, str]] = {
    "rewind": {"snapshot_index": "integer"},
    "save_snapshot": {"label": "string"},
}
_GOOD_VALUE: dict[str, Any] = {
    "prompt": "a cat",
    "chunk": 3,
    "image_strength": 0.5,
    "sr_scale": "off",
    "seed": 7,
    "snapshot_index": -1,
    "label": "x",
}
_NEAR_MISS_NAMES = (
    "Set_Prompt",
    "set_prompt ",
    "setPrompt",
    "stop",
    "play",
    "clear_prompt",
    "event",
    "",
    "START",
)

_wrong_for_kind: dict[str, st.SearchStrategy[Any]] = {
    "string": st.one_of(st.integers(-3, 3), st.booleans(), st.none(), st.just(["a"]), st.just({"a": 1})),
    "integer": st.one_of(
        st.text(max_size=4), st.booleans(), st.none(), st.just([1]), st.sampled_from(["3", "-1"])
    ),
    "number": st.one_of(st.text(max_size=4), st.booleans(), st.none(), st.just([0.5]), st.just("0.5")),
    "enum": st.one_of(st.integers(1, 4), st.booleans(), st.none(), st.just(["2x"])),
    "upload": st.one_of(st.text(max_size=8), st.integers(0, 3), st.just([]), st.just(True)),
}


def _base(name: str, *, drop: str | None = None) -> tuple[dict[str, Any], dict[str, UploadPlaceholder]]:
    """Valid parameters of ``name`` (uploads as good placeholders), without ``drop``."""
    params: dict[str, Any] = {}
    uploads: dict[str, UploadPlaceholder] = {}
    for param, kind in _REQUIRED.get(name, {}).items():
        if param == drop:
            continue
        if kind == "upload":
            uploads[param] = UploadPlaceholder("png")
        else:
            params[param] = _GOOD_VALUE[param]
    return params, uploads


def _unknown_command() -> st.SearchStrategy[CommandCase]:
    names = st.one_of(st.sampled_from(_NEAR_MISS_NAMES), st.text(max_size=16)).filter(
        lambda n: n not in COMMAND_NAMES
    )

    def build(t: tuple[str, dict[str, Any]]) -> CommandCase:
        return CommandCase(t[0], t[1], invalid=Invalid("unknown_command", f"no command named {t[0]!r}"))

    params = st.dictionaries(st.sampled_from(["prompt", "chunk"]), st.just(1), max_size=1)
    return st.tuples(names, params).map(build)


def _missing_param() -> st.SearchStrategy[CommandCase]:
    pairs = [(n, p) for n, req in _REQUIRED.items() for p in req]

    def build(pair: tuple[str, str]) -> CommandCase:
        name, param = pair
        params, uploads = _base(name, drop=param)
        return CommandCase(name, params, uploads, Invalid("missing_param", f"{param} is required"))

    return st.sampled_from(pairs).map(build)


def _wrong_type() -> st.SearchStrategy[CommandCase]:
    triples = [(n, p, k) for n, req in (_REQUIRED | _OPTIONAL).items() for p, k in req.items()]

    def build(triple: tuple[str, str, str], value: Any) -> CommandCase:
        name, param, kind = triple
        params, uploads = _base(name, drop=param)
        params[param] = value  # an upload given as a plain value in data is the wrong type too
        return CommandCase(
            name, params, uploads, Invalid("wrong_type", f"{param} must be a {kind}, got {value!r}")
        )

    return st.sampled_from(triples).flatmap(lambda t: _wrong_for_kind[t[2]].map(lambda v: build(t, v)))


def _out_of_range() -> st.SearchStrategy[CommandCase]:
    cases = st.one_of(
        st.tuples(st.just("schedule_prompt"), st.just("chunk"), _ints(-(2**31), -1)),
        st.tuples(st.just("set_seed"), st.just("seed"), _ints(-(2**31), -2)),
        st.tuples(
            st.just("set_image_strength"),
            st.just("image_strength"),
            st.one_of(
                st.floats(max_value=-1e-9, allow_nan=False),
                st.floats(min_value=1.000001, allow_nan=False),
                st.sampled_from([-1, 2, -0.001, 1.0001, math.nan, math.inf, -math.inf]),
            ),
        ),
    )

    def build(t: tuple[str, str, Any]) -> CommandCase:
        name, param, value = t
        params, uploads = _base(name)
        params[param] = value
        return CommandCase(name, params, uploads, Invalid("out_of_range", f"{param}={value!r}"))

    return cases.map(build)


def _non_integral() -> st.SearchStrategy[CommandCase]:
    fractions = st.one_of(
        st.tuples(st.integers(-(10**6), 10**6), st.sampled_from([0.5, 0.25, 0.001])).map(sum),
        st.sampled_from([0.5, 2.5, -0.5, 3.25, 1e-9]),
    )
    triples = [("schedule_prompt", "chunk"), ("set_seed", "seed"), ("rewind", "snapshot_index")]

    def build(pair: tuple[str, str], value: float) -> CommandCase:
        name, param = pair
        params, uploads = _base(name)
        params[param] = value
        return CommandCase(name, params, uploads, Invalid("non_integral", f"{param}={value!r}"))

    return st.tuples(st.sampled_from(triples), fractions).map(lambda t: build(*t))


def _bad_enum() -> st.SearchStrategy[CommandCase]:
    values = st.one_of(
        st.sampled_from(["8x", "2X", "", " 2x", "OFF", "1x", "x2"]), st.text(max_size=4)
    ).filter(lambda v: v not in ("off", "2x", "4x"))
    return values.map(
        lambda v: CommandCase("set_sr_scale", {"sr_scale": v}, invalid=Invalid("bad_enum", f"sr_scale={v!r}"))
    )


def _unexpected_param() -> st.SearchStrategy[CommandCase]:
    """A valid command plus a parameter it does not take (reactor-runtime: "unexpected argument")."""
    junk = st.one_of(st.integers(-5, 5), st.text(max_size=5), st.booleans(), st.none(), st.just([1, "a"]))

    def build(t: tuple[str, Any]) -> CommandCase:
        params, uploads = _base(t[0])
        params["x_extra"] = t[1]
        return CommandCase(t[0], params, uploads, Invalid("unexpected_param", f"x_extra={t[1]!r}"))

    return st.tuples(st.sampled_from(COMMAND_NAMES), junk).map(build)


def _unresolved_upload() -> st.SearchStrategy[CommandCase]:
    def build(name: str, prompt: str) -> CommandCase:
        params = {"prompt": prompt} if name == "set_conditioning" else {}
        why = Invalid("unresolved_upload", "image names an upload that was never created")
        return CommandCase(name, params, {"image": UploadPlaceholder("unresolved")}, why)

    return st.tuples(st.sampled_from(["set_image", "set_conditioning"]), prompts()).map(lambda t: build(*t))


_INVALID_BUILDERS = {
    "unknown_command": _unknown_command,
    "missing_param": _missing_param,
    "wrong_type": _wrong_type,
    "out_of_range": _out_of_range,
    "non_integral": _non_integral,
    "bad_enum": _bad_enum,
    "unexpected_param": _unexpected_param,
    "unresolved_upload": _unresolved_upload,
}


def invalid_commands(categories: tuple[str, ...] = INVALID_CATEGORIES) -> st.SearchStrategy[CommandCase]:
    """Commands the runtime rejects (docs/HELIOS.md §3.3), each tagged with ``invalid`` (category + detail).

    ``unresolved_upload`` cases only make sense over a wire with an upload store; leave that category out
    when driving the pure model.
    """
    return st.deferred(lambda: st.one_of(*(_INVALID_BUILDERS[c]() for c in categories)))


def command_sequences(
    *, min_size: int = 1, max_size: int = 30, invalid_every: int = 8, unresolved: bool = True
) -> st.SearchStrategy[list[CommandCase]]:
    """Lists of commands, about one in ``invalid_every`` invalid, the valid ones weighted by
    :data:`COMMAND_WEIGHTS`; ``unresolved=False`` leaves out ``unresolved_upload`` cases."""
    categories = (
        INVALID_CATEGORIES if unresolved else tuple(c for c in INVALID_CATEGORIES if c != "unresolved_upload")
    )
    valid = valid_commands()
    one = st.one_of(*([valid] * max(1, invalid_every - 1)), invalid_commands(categories))
    return st.lists(one, min_size=min_size, max_size=max_size)

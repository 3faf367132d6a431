"""Seeded generator of hostile data-channel frames for both encodings, and an independent verdict per frame.

Every frame is built from a ``random.Random`` seeded with (seed, wire, index), so a run is reproducible
frame by frame. Each frame carries what the server is obliged to do with it:

* ``must_reject`` — malformed or invalid (bad JSON/protobuf, wrong types, unknown command, out of range,
  unresolvable upload): the server must reject it, record the rejection, and leave the Helios ``state``
  exactly as it was;
* otherwise the frame is valid (possibly extreme: huge prompts, hundreds of schedule entries): the server
  may accept or refuse it, but it must not crash and must record it.

The verdict comes from :func:`verdict`, which decodes the frame with the stock ``json`` / protobuf
libraries and checks commands with ``conformance.reference_model.check_params`` (written from docs/HELIOS.md,
sharing no code with the server's validation).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import DecodeError

from conformance.reference_model import PARAM_SPECS, RefRejected, check_params
from mock_server.wire import reactor_wire_pb as pb
from mock_server.wire.v1 import dict_to_struct, struct_to_dict

REQUEST = pb.MessageKind.MESSAGE_KIND_REQUEST
NOTIFICATION = pb.MessageKind.MESSAGE_KIND_NOTIFICATION
TRANSPORT_MAX = 262_144  # the data channels' max-message-size (SDP a=max-message-size of both peers)
UPLOAD_COMMANDS = ("set_image", "set_conditioning")
V0_RUNTIME_TYPES = ("ping", "requestSchema", "requestCapabilities", "requestRecording", "requestClip")
# `start` would set the chunk clock running (state moves on its own); `list_snapshots` is the barrier
SAFE_COMMANDS = tuple(name for name in PARAM_SPECS if name not in ("start", "list_snapshots"))
NON_ASCII = "雪狐é🦊ñ漢字ß"
SURROGATE_PROMPT = "fox \ud800 snow"


@dataclass(frozen=True)
class Frame:
    """One frame to send on a channel, with the server's obligation towards it."""

    category: str
    channel: str  # "data" | "control"
    payload: str | bytes
    must_reject: bool
    note: str = ""  # what is special about it, for failure reports

    @property
    def size(self) -> int:
        return len(
            self.payload.encode("utf-8", "surrogatepass") if isinstance(self.payload, str) else self.payload
        )

    @property
    def oversize(self) -> bool:
        """Bigger than the transport's max-message-size: the sender has to bypass its own check."""
        return self.size > TRANSPORT_MAX

    def describe(self) -> str:
        head = self.payload[:80] if isinstance(self.payload, str) else self.payload[:40].hex(" ")
        note = f", {self.note}" if self.note else ""
        return f"{self.category} on {self.channel} ({self.size} bytes{note}): {head!r}"


@dataclass(frozen=True)
class Item:
    """What the fuzzer sends before one barrier: one frame, or a burst of valid frames.

    ``check_generation``: after the barrier, start the session and prove from the video that it still
    generates (then reset it), because this item leaves a state the chunk clock must live with.
    """

    frames: tuple[Frame, ...]
    check_generation: bool = False


# ---------------------------------------------------------------------------------------------- verdicts


def verdict(wire: str, channel: str, payload: str | bytes) -> tuple[bool, str]:
    """(must_reject, command name or "") of a frame, decided with stock decoders and the reference model."""
    if wire == "v0":
        return _v0_verdict(payload)
    if isinstance(payload, str):
        return True, ""
    if channel == "control":
        return _v1_control_verdict(payload)
    return _v1_data_verdict(payload)


def _v0_verdict(payload: str | bytes) -> tuple[bool, str]:
    try:
        text = payload.decode("utf-8") if isinstance(payload, bytes) else payload
        obj = json.loads(text)
    except (ValueError, RecursionError):
        return True, ""
    if not isinstance(obj, dict) or not isinstance(obj.get("data"), dict):
        return True, ""
    inner = obj["data"]
    if obj.get("scope") == "runtime":
        ok = inner.get("type") in V0_RUNTIME_TYPES and isinstance(inner.get("data"), dict | None)
        return not ok, ""
    if obj.get("scope") != "application":
        return True, ""
    name = inner.get("type")
    if not isinstance(name, str) or not name:
        return True, ""
    params, uploads = inner.get("data"), inner.get("uploads")
    if not isinstance(params, dict | None) or not isinstance(uploads, dict | None):
        return True, name
    return _command_verdict(name, params or {}, uploads or {}), name


def _command_verdict(name: str, params: dict[str, Any], uploads: dict[str, Any]) -> bool:
    """True when the command must be rejected. No upload is ever created, so upload commands must be."""
    if name in UPLOAD_COMMANDS or "image" in params:
        return True
    for ref in uploads.values():
        if not (isinstance(ref, dict) and isinstance(ref.get("upload_id"), str) and ref["upload_id"]):
            return True
    try:
        check_params(name, {**params, **uploads})
    except RefRejected:
        return True
    except OverflowError:  # an integer past any double where a number in a range belongs (e.g. 10**400)
        return True
    return False


def _v1_data_verdict(payload: bytes) -> tuple[bool, str]:
    msg = pb.DataClientMessage()
    try:
        msg.ParseFromString(payload)
    except (DecodeError, RecursionError, ValueError):
        return True, ""
    if msg.kind == REQUEST and not msg.request_id:
        return True, ""
    which = msg.WhichOneof("payload")
    if which == "error":
        return False, ""  # a client-sent error notice: recorded, no action
    if which != "command" or not msg.command.type:
        return True, ""
    uploads = {k: {"upload_id": v.upload_id} for k, v in msg.command.uploads.items()}
    return _command_verdict(msg.command.type, struct_to_dict(msg.command.data), uploads), msg.command.type


def _v1_control_verdict(payload: bytes) -> tuple[bool, str]:
    msg = pb.ControlClientMessage()
    try:
        msg.ParseFromString(payload)
    except (DecodeError, RecursionError, ValueError):
        return True, ""
    if msg.kind == REQUEST and not msg.request_id:
        return True, ""
    which = msg.WhichOneof("payload")
    return which is None, ""


# ---------------------------------------------------------------------------------------------- building


def v0_command(name: Any, params: Any = None, uploads: Any = None, *, ascii_only: bool = False) -> str:
    """A v0 command frame as the JS SDK writes it (UTF-8 JSON; `ascii_only` escapes, e.g. for surrogates)."""
    inner: dict[str, Any] = {"type": name, "data": {} if params is None else params}
    if uploads is not None:
        inner["uploads"] = uploads
    return json.dumps({"scope": "application", "data": inner}, ensure_ascii=ascii_only)


def v1_command(name: str, params: dict[str, Any] | None = None, request_id: str = "fz_1") -> bytes:
    msg = pb.DataClientMessage(request_id=request_id, kind=REQUEST)
    msg.command.type = name
    msg.command.data.CopyFrom(dict_to_struct(params or {}))
    return msg.SerializeToString()


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, body: bytes) -> bytes:
    """A length-delimited protobuf field, written by hand (for bytes the library refuses to produce)."""
    return _varint(number << 3 | 2) + _varint(len(body)) + body


def _v1_raw_command(name_bytes: bytes, data_struct: bytes = b"", request_id: str = "fz_raw") -> bytes:
    command = _field(1, name_bytes) + (_field(2, data_struct) if data_struct else b"")
    return _field(1, request_id.encode()) + bytes([2 << 3, REQUEST]) + _field(10, command)


def _nested_value(depth: int, leaf: bytes) -> bytes:
    """google.protobuf.Value nested `depth` levels of list_value, built iteratively (no recursion)."""
    value = _field(3, leaf)  # string_value
    for level in range(depth):
        if level % 2:
            value = _field(6, _field(1, value))  # list_value { values: [value] }
        else:
            value = _field(5, _field(1, _field(1, b"k") + _field(2, value)))  # struct_value {fields {k: v}}
    return value


def _nested_json(depth: int, rng: random.Random) -> str:
    """JSON nested `depth` levels of arrays and objects around a string."""
    kinds = [rng.random() < 0.5 for _ in range(depth)]  # True: array, False: object
    opens = "".join("[" if array else '{"k":' for array in kinds)
    closes = "".join("]" if array else "}" for array in reversed(kinds))
    return opens + '"leaf"' + closes


# ---------------------------------------------------------------------------------------------- values


def _text(rng: random.Random, length: int, alphabet: str = "abcdefghij klmnop") -> str:
    return "".join(rng.choice(alphabet) for _ in range(length))


def _valid_params(rng: random.Random, name: str) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for key, spec in PARAM_SPECS[name].items():
        if not spec.required and rng.random() < 0.5:
            continue
        if spec.kind == "string":
            params[key] = _text(rng, rng.randint(1, 60))
        elif spec.kind == "integer":
            params[key] = rng.randint(int(spec.minimum or 0), 40)
        elif spec.kind == "number":
            params[key] = rng.choice((0, 1, 0.5, rng.random()))
        elif spec.kind == "enum":
            params[key] = rng.choice(spec.enum)
    if rng.random() < 0.2:
        params["extra_" + _text(rng, 4, "xyz")] = rng.choice((1, "x", None, [1], {"a": 1}))
    return params


WRONG_VALUES: tuple[Any, ...] = (
    None, True, False, 7, -3, 2.5, 1e308, -1e308, float("nan"), float("inf"), 10**400, "", "7", "x" * 300,
    [], [1, 2], {}, {"a": {"b": [None]}},
)  # fmt: skip


def _wrong_value(rng: random.Random, kind: str) -> Any:
    """A value of another JSON type than `kind` (mostly; the verdict decides what the frame really is)."""
    while True:
        value = rng.choice(WRONG_VALUES)
        if kind == "string" and isinstance(value, str):
            continue
        return value


def _invalid_params(rng: random.Random) -> tuple[str, dict[str, Any]]:
    """A known command with one parameter missing, of a wrong type, or out of range."""
    name = rng.choice([n for n in SAFE_COMMANDS if PARAM_SPECS[n] and n not in UPLOAD_COMMANDS])
    params = _valid_params(rng, name)
    key, spec = rng.choice(list(PARAM_SPECS[name].items()))
    how = rng.choice(("wrong", "wrong", "range", "missing") if spec.required else ("wrong", "range"))
    if how == "missing":
        params.pop(key, None)
    elif how == "range" and spec.kind in ("integer", "number"):
        params[key] = rng.choice((-(10**6), -2, 1.5, 10**6)) if spec.maximum is not None else -(10**9)
        if spec.minimum is None:
            params[key] = rng.choice(("nope", [], {}))
    elif how == "range" and spec.kind == "enum":
        params[key] = rng.choice(("8x", "OFF", " 2x", "1x"))
    else:
        params[key] = _wrong_value(rng, spec.kind)
    return name, params


# ---------------------------------------------------------------------------------------------- generators


class FrameFactory:
    """Builds the frames of one category for one wire; every builder returns (category, channel, payload)."""

    def __init__(self, wire: str, rng: random.Random) -> None:
        self.wire = wire
        self.rng = rng
        self._ids = 0

    def _rid(self) -> str:
        self._ids += 1
        return f"fz_{self._ids}"

    def command(self, name: Any, params: Any = None) -> str | bytes:
        if self.wire == "v0":
            return v0_command(name, params)
        return v1_command(name, params, self._rid())

    def valid_command(self) -> str | bytes:
        name = self.rng.choice(SAFE_COMMANDS)
        while name in UPLOAD_COMMANDS:
            name = self.rng.choice(SAFE_COMMANDS)
        return self.command(name, _valid_params(self.rng, name))

    # ---- categories

    def random_bytes(self) -> tuple[str, str | bytes]:
        size = self.rng.choice((0, 1, 2, 5, 17, 64, 300, 2048))
        data = self.rng.randbytes(size)
        if self.wire == "v0" and self.rng.random() < 0.5:
            return "data", data.decode("latin-1")  # random text
        return "data", data

    def truncated(self) -> tuple[str, str | bytes]:
        full = self.valid_command()
        cut = self.rng.randrange(0, max(1, len(full) - 1))
        return "data", full[:cut]

    def duplicated(self) -> tuple[str, str | bytes]:
        first, second = self.valid_command(), self.valid_command()
        if isinstance(first, str) and isinstance(second, str):
            return "data", first + self.rng.choice(("", "\n", " ")) + second
        assert isinstance(first, bytes) and isinstance(second, bytes)
        return "data", first + second  # protobuf concatenation merges: usually still a valid message

    def wrong_types(self) -> tuple[str, str | bytes]:
        if self.wire == "v0" and self.rng.random() < 0.35:
            return "data", self._v0_wrong_envelope()
        name, params = _invalid_params(self.rng)
        if self.wire == "v1":
            params = _struct_safe(params)
        return "data", self.command(name, params)

    def _v0_wrong_envelope(self) -> str:
        rng = self.rng
        shape = rng.randrange(8)
        good = {"type": "set_prompt", "data": {"prompt": "x"}}
        if shape == 0:
            return json.dumps({"scope": rng.choice((7, None, [], "Application", "")), "data": good})
        if shape == 1:
            return json.dumps({"scope": "application", "data": rng.choice((None, [good], "set_prompt", 3))})
        if shape == 2:
            return json.dumps({"scope": "application", "data": {"type": rng.choice((None, 7, [], "", {}))}})
        if shape == 3:
            return json.dumps({"scope": "application", "data": {"type": "set_prompt", "data": [1]}})
        if shape == 4:
            return v0_command(
                "set_image", {}, {"image": rng.choice(([], "x", {"name": "a"}, {"upload_id": 5}))}
            )
        if shape == 5:
            return json.dumps({"scope": "runtime", "data": {"type": rng.choice(("teleport", "", 7))}})
        if shape == 6:
            return json.dumps(rng.choice(([], "text", 7, None, [{"scope": "application"}])))
        return json.dumps({"scope": "runtime", "data": {"type": "requestClip", "data": "5s"}})

    def huge_string(self) -> tuple[str, str | bytes]:
        size = self.rng.choice((20_000, 60_000, 120_000))
        where = self.rng.randrange(3)
        if where == 0:  # a valid but huge prompt (replaces the prompt at chunk 0)
            return "data", self.command("set_prompt", {"prompt": _text(self.rng, 50) * (size // 50)})
        if where == 1:  # a huge unknown command name
            return "data", self.command("x" * size, {})
        return "data", self.command("set_seed", {"seed": "9" * size})  # a huge string where an int belongs

    def surrogate(self) -> tuple[str, str | bytes]:
        where = self.rng.randrange(4)
        if self.wire == "v0":
            if where == 0:
                return "data", v0_command("set_prompt", {"prompt": SURROGATE_PROMPT}, ascii_only=True)
            if where == 1:
                return "data", v0_command("set_\udc00prompt", {"prompt": "x"}, ascii_only=True)
            if where == 2:
                return "data", v0_command("set_prompt", {"prompt": "ok", "\udbff": 1}, ascii_only=True)
            return "data", SURROGATE_PROMPT.encode("utf-8", "surrogatepass")  # CESU bytes: not UTF-8
        bad = SURROGATE_PROMPT.encode("utf-8", "surrogatepass")
        if where in (0, 1):
            value = _field(3, bad)  # Value.string_value with the surrogate's bytes
            struct = _field(1, _field(1, b"prompt") + _field(2, value))
            return "data", _v1_raw_command(b"set_prompt", struct, self._rid())
        if where == 2:
            return "data", _v1_raw_command(b"set_\xed\xb0\x80prompt", b"", self._rid())
        return "control", _field(1, bad) + bytes([2 << 3, REQUEST]) + _field(11, b"")

    def deep_nesting(self) -> tuple[str, str | bytes]:
        depth = self.rng.randint(500, 999)
        if self.wire == "v0":
            nested = _nested_json(depth, self.rng)
            place = self.rng.randrange(3)
            if place == 0:
                return (
                    "data",
                    '{"scope":"application","data":{"type":"set_prompt","data":{"prompt":' + nested + "}}}",
                )
            if place == 1:
                return (
                    "data",
                    '{"scope":"application","data":{"type":"set_prompt","data":{"prompt":"ok","x":'
                    + nested
                    + "}}}",
                )
            return "data", nested
        struct = _field(1, _field(1, b"prompt") + _field(2, _nested_value(depth, b"leaf")))
        return "data", _v1_raw_command(b"set_prompt", struct, self._rid())

    def unknown_command(self) -> tuple[str, str | bytes]:
        name = self.rng.choice(
            ("warp_speed", "SET_PROMPT", "set_prompt ", "setPrompt", "start!", "__class__", "",
             "rm -rf /", "set_prompt\x00", "a" * 64, "\u202eprompt")
        )  # fmt: skip
        if not name and self.wire == "v1":
            name = "_"
        return "data", self.command(name, _valid_params(self.rng, "set_prompt"))

    def oversize(self) -> tuple[str, str | bytes]:
        size = self.rng.choice((TRANSPORT_MAX + 1_000, 400_000, 1_000_000))
        if self.wire == "v0":
            return "data", v0_command("set_prompt", {"prompt": "ü" * (size // 2)})
        return "data", v1_command("set_prompt", {"prompt": "ü" * (size // 2)}, self._rid())

    def control(self) -> tuple[str, str | bytes]:
        """v1 control channel: random bytes, requests without ids, unknown payloads, harmless requests."""
        rng = self.rng
        shape = rng.randrange(5)
        if self.wire == "v0" or shape == 0:
            return self.random_bytes()
        if shape == 1:
            return "control", pb.ControlClientMessage(
                kind=REQUEST, request_schema=pb.RequestSchema()
            ).SerializeToString()
        if shape == 2:
            return "control", pb.ControlClientMessage(
                request_id=self._rid(), kind=REQUEST
            ).SerializeToString()
        if shape == 3:
            return "control", pb.ControlClientMessage(kind=NOTIFICATION, ping=pb.Ping()).SerializeToString()
        return "control", rng.randbytes(rng.randint(1, 40))

    def valid(self) -> tuple[str, str | bytes]:
        return "data", self.valid_command()

    # ---- the listed extremes (each appears at least once per run)

    def long_non_ascii_prompt(self) -> tuple[str, str | bytes]:
        prompt = (NON_ASCII * (66_000 // len(NON_ASCII) + 1))[:66_000]
        return "data", self.command("set_prompt", {"prompt": prompt})

    def long_command_name(self) -> tuple[str, str | bytes]:
        return "data", self.command("n" * 262_000, {})

    def schedule_flood(self) -> list[tuple[str, str | bytes]]:
        prompt = _text(self.rng, 1_000)
        return [
            ("data", self.command("schedule_prompt", {"prompt": prompt, "chunk": c})) for c in range(1, 301)
        ]


def _struct_safe(value: Any) -> Any:
    """v1 Struct numbers are doubles: turn ints Python cannot put in a double into a double-sized value."""
    if isinstance(value, dict):
        return {str(k): _struct_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_struct_safe(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**1000:
        return 1e308
    return value


CATEGORIES: dict[str, float] = {  # relative weights of the random stream
    "random_bytes": 14,
    "truncated": 12,
    "duplicated": 8,
    "wrong_types": 20,
    "unknown_command": 8,
    "surrogate": 4,
    "deep_nesting": 4,
    "huge_string": 3,
    "control": 8,
    "valid": 14,
    "oversize": 0.4,
}
EXTREMES = ("surrogate", "deep_nesting", "long_non_ascii_prompt", "long_command_name", "oversize")


def _frame(wire: str, category: str, channel: str, payload: str | bytes) -> Frame:
    must_reject, name = verdict(wire, channel, payload)
    note = f"command {name[:40]!r}" if name else ""
    frame = Frame(category, channel, payload, must_reject, note)
    if frame.oversize:  # past the negotiated max-message-size: a protocol violation, whatever it says
        return Frame(category, channel, payload, True, note)
    return frame


def fuzz_items(wire: str, frames: int, seed: int) -> Iterator[Item]:
    """`frames` frames for one wire, deterministic in (wire, frames, seed).

    The run opens with each listed extreme, contains the 300-prompt flood once (when the budget allows), and
    fills the rest with the weighted random categories. A frame that would be a valid ``start`` (the only
    command that sets the chunk clock running) is drawn again, so the state stays still between barriers.
    """
    rng = random.Random(f"helios-fuzz:{seed}:{wire}")
    factory = FrameFactory(wire, rng)
    names, weights = list(CATEGORIES), list(CATEGORIES.values())
    flood_at = frames // 2 if frames >= 600 else None
    sent = 0
    extremes = list(EXTREMES)
    while sent < frames:
        if flood_at is not None and sent >= flood_at:
            flood_at = None
            burst = tuple(_frame(wire, "schedule_flood", ch, p) for ch, p in factory.schedule_flood())
            burst = burst[: frames - sent]
            sent += len(burst)
            yield Item(burst, check_generation=True)
            continue
        category = extremes.pop(0) if extremes else rng.choices(names, weights)[0]
        frame = _draw(wire, category, getattr(factory, category))
        sent += 1
        yield Item((frame,), check_generation=category in ("long_non_ascii_prompt",))


def _draw(wire: str, category: str, build: Callable[[], tuple[str, str | bytes]]) -> Frame:
    while True:
        frame = _frame(wire, category, *build())
        if not frame.must_reject and "'start'" in frame.note:
            continue
        return frame

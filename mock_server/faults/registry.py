"""The armed faults and the hook-point queries the session, services and routes ask at each moment.

Pure and deterministic: no clock (callers pass the session's age in seconds and its chunk), no I/O, and the
only randomness is one `random.Random(seed)`. Each hook returns the faults that fire *now*, already marked
fired (with hook, session id, chunk and age); the caller then performs the effect (docs/FAULTS.md).

How a fault picks its sessions (its *mode*, fixed when armed):

* ``creation`` — session_refused, queue_wait, session_closed: fire on session creation, ``count`` times
  (default 1), or per creation with ``probability`` (no end unless ``count`` caps it);
* ``session``  — ``session_id`` given: fires in that session, ``count`` times (default 1);
* ``bind``     — no ``session_id``, no ``probability``: binds to each of the next ``count`` (default 1)
  sessions created and fires once in each;
* ``chance``   — ``probability`` given: each new session is bound with that probability (one seeded draw
  per session per fault, in arming order) and the fault fires once in it; ``count`` caps total firings.

Triggers inside a bound session: ``at_chunk`` fires when a chunk with index ≥ at_chunk begins;
``after_seconds`` once the session is that old (for ``session`` mode: that long after arming); no trigger
("now") at the session's next hook of the fault's kind.
"""

from __future__ import annotations

import builtins
import random
import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from mock_server.errors import NotFound, TooMany
from mock_server.faults.catalogue import (
    COMMAND_KINDS,
    CREATION_KINDS,
    OFFER_KINDS,
    TIMED_KINDS,
    UPLOAD_KINDS,
    FaultSpec,
    parse_fault,
)

MAX_ARMED_FAULTS = 1_000  # faults not yet expired; arming one more answers 429
MAX_EXPIRED_KEPT = 1_000  # expired faults still listed; the oldest are forgotten first
MAX_FIRINGS_KEPT = 10_000  # firing history of the registry (oldest dropped first)
MAX_FIRINGS_PER_FAULT = 20  # last firings listed with each fault (fired_count keeps the total)
MAX_PROMPT_SCAN = 4_000  # characters of a prompt a moderation pattern is searched in

Hook = Literal["create_request", "session_created", "offer", "upload_put", "command", "chunk_begin", "tick"]
Mode = Literal["creation", "session", "bind", "chance"]
Status = Literal["armed", "fired", "expired"]


@dataclass(frozen=True)
class Firing:
    """One time a fault fired: the registry-wide sequence number and where it happened."""

    seq: int
    fault_id: str
    kind: str
    hook: Hook
    session_id: str | None
    chunk: int | None
    elapsed: float | None  # the session's age in seconds, as passed by the caller

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "fault_id": self.fault_id,
            "kind": self.kind,
            "hook": self.hook,
            "session_id": self.session_id,
            "chunk": self.chunk,
            "elapsed": self.elapsed,
        }


@dataclass
class _Target:
    """A session the fault applies to; `baseline` is the age from which after_seconds counts."""

    baseline: float | None


@dataclass
class Fault:
    """An armed fault: its spec, how it selects sessions, what is left, and where it fired."""

    id: str
    spec: FaultSpec
    mode: Mode
    remaining: int | None  # creation/session: firings left; bind: sessions left to bind; None = no limit
    status: Status = "armed"
    fired_count: int = 0
    expired_reason: str | None = None
    targets: dict[str, _Target] = field(default_factory=dict)
    firings: deque[Firing] = field(default_factory=lambda: deque(maxlen=MAX_FIRINGS_PER_FAULT))

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def params(self) -> Any:
        """The kind's typed params model (e.g. `StallParams`); see catalogue.PARAMS."""
        return self.spec.kind_params

    @property
    def active(self) -> bool:
        return self.status != "expired"

    def to_dict(self) -> dict[str, Any]:
        """The fault as listed by GET /admin/faults (and returned by POST)."""
        return {
            "id": self.id,
            **self.spec.model_dump(),
            "status": self.status,
            "mode": self.mode,
            "fired_count": self.fired_count,
            "remaining": self.remaining,
            "sessions": sorted(self.targets),
            "expired_reason": self.expired_reason,
            "firings": [f.to_dict() for f in self.firings],
        }


def _same_value(given: Any, wanted: Any) -> bool:
    """Parameter equality for command matching: numbers by value (3 == 3.0), booleans only equal booleans."""
    if isinstance(given, bool) or isinstance(wanted, bool):
        return type(given) is type(wanted) and given == wanted
    return bool(given == wanted)


def command_matches(spec: FaultSpec, name: str, params: Mapping[str, Any]) -> bool:
    """Does a command (name + parameters) meet the fault's on_command, params.match and prompt_pattern?"""
    if spec.on_command is not None and spec.on_command != name:
        return False
    for key, wanted in (spec.params.get("match") or {}).items():
        if key not in params or not _same_value(params[key], wanted):
            return False
    pattern = spec.params.get("prompt_pattern")
    if pattern is not None:
        prompt = params.get("prompt")
        if not isinstance(prompt, str):
            return False
        return re.search(pattern, prompt[:MAX_PROMPT_SCAN], re.IGNORECASE) is not None
    return True


def _mode_of(spec: FaultSpec) -> Mode:
    if spec.kind in CREATION_KINDS:
        return "creation"
    if spec.session_id is not None:
        return "session"
    return "chance" if spec.probability is not None else "bind"


class FaultRegistry:
    """Armed faults, their firing history, and the hook queries. One per server; not thread-safe."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._rng = random.Random(seed)
        self._faults: dict[str, Fault] = {}
        self._next_id = 1
        self._seq = 0
        self.history: deque[Firing] = deque(maxlen=MAX_FIRINGS_KEPT)

    # ------------------------------------------------------------------------------------ management

    def arm(self, spec: FaultSpec | Mapping[str, Any], *, session_age: float | None = None) -> Fault:
        """Arm one fault (a spec or a raw body). `session_age`: the target session's age now, so that
        after_seconds counts from arming; without it, from the first hook of that session."""
        if not isinstance(spec, FaultSpec):
            spec = parse_fault(spec)
        armed = sum(1 for f in self._faults.values() if f.active)
        if armed >= MAX_ARMED_FAULTS:
            raise TooMany(
                f"{armed} faults are armed, the limit is {MAX_ARMED_FAULTS}: "
                "remove some (DELETE /admin/faults/{id}) or all (DELETE /admin/faults)"
            )
        mode = _mode_of(spec)
        remaining = spec.count if spec.count is not None else (None if spec.probability is not None else 1)
        fault = Fault(id=f"flt_{self._next_id}", spec=spec, mode=mode, remaining=remaining)
        self._next_id += 1
        if mode == "session" and spec.session_id is not None:
            fault.targets[spec.session_id] = _Target(baseline=session_age)
        self._faults[fault.id] = fault
        return fault

    def get(self, fault_id: str) -> Fault:
        fault = self._faults.get(fault_id)
        if fault is None:
            raise NotFound(f"no fault with id {fault_id!r} (GET /admin/faults lists them)")
        return fault

    def list(self) -> builtins.list[Fault]:
        """Every fault still known (armed, fired and the most recent expired), oldest first."""
        return builtins.list(self._faults.values())

    def remove(self, fault_id: str) -> Fault:
        """Forget one fault (it will never fire again); NotFound if the id is unknown."""
        fault = self.get(fault_id)
        del self._faults[fault_id]
        return fault

    def clear(self) -> int:
        """Forget every fault; return how many there were. Ids keep counting; the history is kept."""
        count = len(self._faults)
        self._faults.clear()
        return count

    # ------------------------------------------------------------------------------------ bookkeeping

    def _active(self) -> builtins.list[Fault]:
        return [f for f in self._faults.values() if f.active]

    def _targeting(self, session_id: str, kinds: frozenset[str]) -> builtins.list[Fault]:
        """Active faults of these kinds aimed at the session, in arming order (a snapshot: firing may
        forget old expired faults)."""
        return [
            f
            for f in self._faults.values()
            if session_id in f.targets and f.status != "expired" and f.kind in kinds
        ]

    def _draw(self, probability: float | None) -> bool:
        return probability is None or self._rng.random() < probability

    def _expire(self, fault: Fault, reason: str) -> None:
        fault.status = "expired"
        fault.expired_reason = reason
        fault.targets.clear()
        expired = [f.id for f in self._faults.values() if not f.active]
        for old in expired[: max(0, len(expired) - MAX_EXPIRED_KEPT)]:
            del self._faults[old]

    def _fire(
        self,
        fault: Fault,
        hook: Hook,
        session_id: str | None,
        chunk: int | None = None,
        elapsed: float | None = None,
    ) -> Fault:
        self._seq += 1
        firing = Firing(self._seq, fault.id, fault.kind, hook, session_id, chunk, elapsed)
        fault.firings.append(firing)
        self.history.append(firing)
        fault.fired_count += 1
        fault.status = "fired"
        if fault.mode in ("creation", "session") and fault.remaining is not None:
            fault.remaining -= 1
            if fault.remaining <= 0:
                self._expire(fault, f"fired {fault.fired_count} time(s), its count")
        elif fault.mode in ("bind", "chance") and session_id is not None:
            fault.targets.pop(session_id, None)
            self._expire_if_done(fault)
        return fault

    def _expire_if_done(self, fault: Fault) -> None:
        if fault.mode == "bind" and fault.remaining == 0 and not fault.targets:
            self._expire(fault, f"fired in {fault.fired_count} of the sessions it was bound to")
        elif (
            fault.mode == "chance" and fault.spec.count is not None and fault.fired_count >= fault.spec.count
        ):
            self._expire(fault, f"fired {fault.fired_count} time(s), its count")

    # ---------------------------------------------------------------------------------- session life

    def on_create_request(self) -> Fault | None:
        """A client asks for a new session (POST /sessions, or /start_session creating one).
        Returns the session_refused fault to answer with, or None to create the session."""
        for fault in self._active():
            if fault.kind == "session_refused" and self._draw(fault.spec.probability):
                return self._fire(fault, "create_request", None)
        return None

    def on_session_created(self, session_id: str) -> Fault | None:
        """A session was created (age 0). Binds the faults aimed at the next sessions, and returns at most
        one creation fault for it (queue_wait or session_closed, the first armed that fires) or None."""
        fired: Fault | None = None
        for fault in self._active():
            if fault.mode == "creation" and fault.kind != "session_refused":
                if fired is None and self._draw(fault.spec.probability):
                    fired = self._fire(fault, "session_created", session_id, 0, 0.0)
            elif fault.mode == "bind" and fault.remaining:
                fault.remaining -= 1
                fault.targets[session_id] = _Target(baseline=0.0)
            elif fault.mode == "chance" and self._draw(fault.spec.probability):
                fault.targets[session_id] = _Target(baseline=0.0)
        return fired

    def on_session_closed(self, session_id: str) -> None:
        """A session ended: faults bound to it will not fire there; a session-id fault expires."""
        for fault in self._active():
            if fault.targets.pop(session_id, None) is None:
                continue
            if fault.mode == "session":
                self._expire(fault, f"session {session_id} closed")
            else:
                self._expire_if_done(fault)

    # --------------------------------------------------------------------------------------- signalling

    def on_offer(self, session_id: str, elapsed: float | None = None) -> builtins.list[Fault]:
        """An SDP offer (POST/PUT sdp_params) arrived: sdp_timeout / sdp_slow / ice_failure faults."""
        return [
            self._fire(f, "offer", session_id, None, elapsed)
            for f in self._targeting(session_id, OFFER_KINDS)
        ]

    def on_upload_put(self, session_id: str, elapsed: float | None = None) -> Fault | None:
        """A presigned upload PUT arrived for this session: the upload_failure to answer with, or None."""
        for fault in self._targeting(session_id, UPLOAD_KINDS):
            return self._fire(fault, "upload_put", session_id, None, elapsed)
        return None

    # ----------------------------------------------------------------------------------------- commands

    def on_command(
        self,
        session_id: str,
        name: str,
        params: Mapping[str, Any],
        chunk: int | None = None,
        elapsed: float | None = None,
    ) -> Fault | None:
        """A model command arrived (before validation by the model). Returns the first matching
        command_error / internal_error / command-triggered moderation fault, or None."""
        for fault in self._targeting(session_id, COMMAND_KINDS):
            if fault.spec.acts_on_command and command_matches(fault.spec, name, params):
                return self._fire(fault, "command", session_id, chunk, elapsed)
        return None

    # --------------------------------------------------------------------------------------- generation

    def on_chunk_begin(self, session_id: str, chunk: int, elapsed: float) -> builtins.list[Fault]:
        """Chunk `chunk` is about to be generated: the timed faults due now, in arming order."""
        return self._timed("chunk_begin", session_id, chunk, elapsed)

    def on_tick(self, session_id: str, elapsed: float, chunk: int | None = None) -> builtins.list[Fault]:
        """Periodic check (e.g. the session watchdog, ≤ 1 s apart): timed faults due by time or "now"."""
        return self._timed("tick", session_id, chunk, elapsed)

    def _timed(self, hook: Hook, session_id: str, chunk: int | None, elapsed: float) -> builtins.list[Fault]:
        fired: builtins.list[Fault] = []
        for fault in self._targeting(session_id, TIMED_KINDS):
            if fault.spec.acts_on_command:
                continue
            target = fault.targets[session_id]
            if target.baseline is None:
                target.baseline = elapsed
            spec = fault.spec
            if spec.at_chunk is not None:
                due = hook == "chunk_begin" and chunk is not None and chunk >= spec.at_chunk
            elif spec.after_seconds is not None:
                due = elapsed - target.baseline >= spec.after_seconds
            else:
                due = True
            if due:
                fired.append(self._fire(fault, hook, session_id, chunk, elapsed))
        return fired

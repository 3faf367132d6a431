"""Failures by kind and the end-of-run session accounting of a (chaos) load run; pure, no I/O.

**Kinds.** A load client names each failure by what it saw (the Locust row ``failure <kind>``):

=====================  ==========================================================================
kind                   the client saw
=====================  ==========================================================================
``refused <status>``   ``POST /sessions`` answered an error status (no session was created)
``queue timeout``      the session stayed queued (no capabilities) longer than the queue budget
``closed pending``     the session went ``CLOSED`` while the client waited for it to become ready
``sdp timeout``        no SDP answer within the client's polling schedule
``ice failure``        the answer came but the peer connection never became ready
``signalling error``   another HTTP error during signalling
``ended <cause>``      the server ended the session (``sessionEnded``); cause ``gpu_failure``,
                       ``session_expiry``, ``moderation`` or ``by server`` (cause not known)
``transport dropped``  the peer connection closed or failed without a ``sessionEnded`` notice
``command_error``      a command was refused (``command_error`` broadcast)
``internal_error``     a command failed in the runtime (v1 ``Error{internal_error}``; v0 is silent,
                       so a v0 answer timeout becomes ``internal_error`` when the record shows one)
``command timeout``    a command got no answer in time (no fault explains it)
``command rejected``   the runtime rejected a command with another v1 ``Error`` code
``upload failure``     an upload slot or PUT failed
``stall``              no video frame for ``stall_seconds`` while generating (reported per episode)
``media loss``         frames missing in the session (RTP packets lost, or frames the server skipped
                       because it fell behind: the error text says which); one per session
``late frames``        frames later than ``late_limit`` behind the session's own schedule
                       (and no stall explains it); one per session
``no effect``          a command was answered but the video never showed its change
``client error``       anything else (an unexpected exception in the load client)
=====================  ==========================================================================

**Attribution.** Where the client cannot tell the cause, it reads the server's record of the session after
it ended (``GET /admin/sessions/{id}/transcript``, entries with ``direction == "fault"``): a failure whose
kind a fired fault explains gets ``(fault <kind>)`` appended to its error text, otherwise
``(no fault recorded)``, so the failure table separates injected faults from genuine problems, and a few
kinds are refined (``ended by server`` + fault ``gpu_failure`` → ``ended gpu_failure``; a v0 ``command
timeout`` + fault ``internal_error`` → ``internal_error``). This needs the mock's admin API; against a
server without it the client reports symptoms only.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# Which fired faults explain each client-side kind (for the attribution suffix).
EXPLAINED_BY: dict[str, tuple[str, ...]] = {
    "queue timeout": ("queue_wait",),
    "closed pending": ("session_closed",),
    "sdp timeout": ("sdp_timeout", "sdp_slow"),
    "ice failure": ("ice_failure",),
    "ended by server": ("gpu_failure", "session_expiry", "moderation"),
    "ended gpu_failure": ("gpu_failure",),
    "ended session_expiry": ("session_expiry",),
    "ended moderation": ("moderation",),
    "transport dropped": ("transport_drop",),
    "command_error": ("command_error",),
    "internal_error": ("internal_error",),
    "command timeout": ("internal_error",),
    "upload failure": ("upload_failure",),
    "stall": ("stall",),
    "media loss": ("media_loss",),
    "late frames": ("slow_chunks", "stall"),
    "no effect": ("stall", "slow_chunks", "media_loss"),
}
# A symptom whose cause the record names more precisely.
REFINED: dict[tuple[str, str], str] = {
    ("ended by server", "gpu_failure"): "ended gpu_failure",
    ("ended by server", "session_expiry"): "ended session_expiry",
    ("ended by server", "moderation"): "ended moderation",
    ("command timeout", "internal_error"): "internal_error",
}


@dataclass
class Failure:
    """One failure a session met: its kind (the Locust row), the step it happened in, and the detail."""

    kind: str
    step: str
    detail: str
    ms: float = 0.0
    length: int = 0
    terminal: bool = True  # it ended the session (False: the session went on)

    @property
    def error(self) -> str:
        return f"{self.step}: {self.detail}"


def attribute(failures: Iterable[Failure], fired: Iterable[str] | None) -> None:
    """Refine kinds and append the fault attribution, given the fault kinds fired in the session.

    `fired` None means the record could not be read: the failures stay as the client saw them."""
    if fired is None:
        return
    kinds = set(fired)
    for failure in failures:
        for fault in EXPLAINED_BY.get(failure.kind, ()):
            if fault in kinds:
                failure.kind = REFINED.get((failure.kind, fault), failure.kind)
                failure.detail += f" (fault {fault})"
                break
        else:
            if failure.kind in EXPLAINED_BY:
                failure.detail += " (no fault recorded)"


def fault_kinds(transcript: Mapping[str, Any]) -> list[str]:
    """The fault kinds fired in a session, from its transcript (`direction == "fault"` entries)."""
    return [str(e.get("kind")) for e in transcript.get("entries") or () if e.get("direction") == "fault"]


# ---------------------------------------------------------------------- end-of-run accounting


@dataclass
class Accounting:
    """Client-side sessions of a run against the server's record of them (see :func:`reconcile`)."""

    requests: int = 0
    not_created: Counter[str] = field(default_factory=Counter)  # by outcome (refused <status>, …)
    created: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)  # ok, cut, degraded or the ending kind
    failures: Counter[str] = field(default_factory=Counter)  # every failure, by kind
    server_sessions: int = 0
    server_closed: int = 0
    still_open: list[str] = field(default_factory=list)
    unknown_to_client: list[str] = field(default_factory=list)
    unknown_to_server: list[str] = field(default_factory=list)
    no_outcome: list[str] = field(default_factory=list)
    close_reasons: Counter[str] = field(default_factory=Counter)
    faults_fired: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    @property
    def accounted(self) -> bool:
        return (
            not (self.still_open or self.unknown_to_client or self.unknown_to_server or self.no_outcome)
            and not self.problems
        )


def reconcile(
    runs: Iterable[Mapping[str, Any]], server: Iterable[Mapping[str, Any]], before: Iterable[str] = ()
) -> Accounting:
    """Compare the client's runs with the server's sessions (`GET /admin/record` ``sessions``).

    A run is what the agent reported for one creation attempt: ``session_id`` (None when no session was
    created), ``outcome`` (``ok``, ``cut``, ``degraded`` or the kind that ended it, e.g. ``refused 429``
    without a session; None if the agent never reported) and ``kinds`` (every failure kind). Server
    sessions whose id is in `before` existed before the run and are left out."""
    acc = Accounting()
    mine: dict[str, Mapping[str, Any]] = {}
    for run in runs:
        acc.requests += 1
        outcome = str(run.get("outcome") or "")
        acc.failures.update(str(k) for k in run.get("kinds") or ())
        session_id = run.get("session_id")
        if not outcome:  # the agent never reported how this run ended (it died)
            acc.no_outcome.append(str(session_id or "(no id)"))
        if not session_id:
            acc.not_created[outcome or "no outcome"] += 1
            continue
        acc.created += 1
        mine[str(session_id)] = run
        if outcome:
            acc.outcomes[outcome] += 1
    _compare_server(acc, mine, server, set(before))
    return acc


def _compare_server(
    acc: Accounting, mine: Mapping[str, Any], server: Iterable[Mapping[str, Any]], before: set[str]
) -> None:
    seen: set[str] = set()
    for view in server:
        session_id = str(view.get("session_id"))
        if session_id in before:
            continue
        seen.add(session_id)
        acc.server_sessions += 1
        acc.faults_fired.update(str(f.get("kind")) for f in view.get("faults") or ())
        if view.get("closed"):
            acc.server_closed += 1
            acc.close_reasons[str(view.get("close_reason") or "no reason given")] += 1
        else:
            acc.still_open.append(session_id)
        if session_id not in mine:
            acc.unknown_to_client.append(session_id)
    acc.unknown_to_server = sorted(set(mine) - seen)


# A session id names its instance when the server runs with --instance-id (sess_<instance>_<hex>).
_INSTANCE_ID = re.compile(r"sess_([a-z0-9]{1,16})_[0-9a-f]+")


def instance_of(session_id: str) -> str | None:
    """The instance a session id names (``sess_<instance>_<hex>``), or None for a plain ``sess_<hex>``."""
    found = _INSTANCE_ID.fullmatch(session_id)
    return found.group(1) if found else None


def instances_missing(acc: Accounting, server: Iterable[Mapping[str, Any]]) -> list[str]:
    """Instances named by sessions the server does not know, of which the record read holds no session.

    Behind a router (deploy/nginx) ``GET /admin/record`` reaches one instance only: the sessions of the
    others are then all "unknown to the server" although they exist; this names those instances."""
    read = {instance_of(str(view.get("session_id"))) for view in server}
    named = {instance_of(session_id) for session_id in acc.unknown_to_server}
    return sorted(name for name in named - read if name is not None)


def accounting_text(acc: Accounting) -> str:
    """The end-of-run table: created, completed, failed by kind, still open, unknown to either side."""
    ended = {k: n for k, n in acc.outcomes.items() if k not in ("ok", "cut", "degraded")}
    rows: list[tuple[str, object]] = [
        ("creation requests", acc.requests),
        ("no session created", _with_kinds(sum(acc.not_created.values()), acc.not_created)),
        ("sessions created", acc.created),
        ("  completed normally", acc.outcomes.get("ok", 0)),
        ("  completed with failures", acc.outcomes.get("degraded", 0)),
        ("  ended by a failure", _with_kinds(sum(ended.values()), ended)),
        ("  cut by the end of the run", acc.outcomes.get("cut", 0)),
        ("no outcome reported", _listed(acc.no_outcome)),
        ("failures, by kind", _with_kinds(sum(acc.failures.values()), acc.failures)),
        ("server: sessions of this run", f"{acc.server_sessions} ({acc.server_closed} closed)"),
        ("  still open", _listed(acc.still_open)),
        ("  unknown to the client", _listed(acc.unknown_to_client)),
        ("  created but unknown to the server", _listed(acc.unknown_to_server)),
        ("  close reasons", _with_kinds(sum(acc.close_reasons.values()), acc.close_reasons)),
        ("  faults fired, by kind", _with_kinds(sum(acc.faults_fired.values()), acc.faults_fired)),
    ]
    width = max(len(label) for label, _ in rows)
    lines = ["Helios session accounting (client runs vs GET /admin/record):"]
    lines += [f"  {label.ljust(width)}  {value}" for label, value in rows]
    lines += [f"  problem: {p}" for p in acc.problems]
    verdict = "yes" if acc.accounted else "NO"
    lines.append(f"Every session accounted for: {verdict}")
    return "\n".join(lines)


def _with_kinds(total: int, counts: Mapping[str, int]) -> str:
    if not counts:
        return str(total)
    parts = ", ".join(f"{kind}: {n}" for kind, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    return f"{total} ({parts})"


def _listed(ids: list[str]) -> str:
    if not ids:
        return "0"
    shown = ", ".join(ids[:5]) + (" …" if len(ids) > 5 else "")
    return f"{len(ids)} ({shown})"

"""Client conformance rules: judge a client from what the server recorded about it.

Input is the JSON of ``GET /admin/record`` (every session) or ``GET /admin/sessions/{id}/transcript`` (one
session): time-ordered entries ``{t, direction: in|out|http|event, kind, connection_id, channel, chunk, body,
request_id}`` plus the runtime-level ``rejections``. Each rule names one thing docs/HELIOS.md or
docs/PROTOCOL.md say a client must (not) do; ``RULES`` lists them. The model's state is followed from the
``state`` messages the server sent, so refusal rules judge a command against the state the server had when
the command arrived.

    violations = check_record(server.record())      # or check_transcript(server.transcript("local"))
    for v in violations: print(v)                   # "[start-without-prompt] start sent with no prompt …"
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mock_server.model.commands import COMMANDS, UPLOAD_PARAMS, CommandRejected, validate_command

from .reference_model import INITIAL_STATE

RULES: dict[str, str] = {
    "command-unknown": "a command name Helios does not have (docs/HELIOS.md §5.1)",
    "command-invalid": "parameters fail the command schema (missing, wrong type, out of range; §3.3)",
    "upload-in-data": "an upload parameter sent in 'data' instead of 'uploads' (docs/PROTOCOL.md §3.2)",
    "upload-not-put": (
        "a command references an upload whose bytes were not PUT before it (docs/PROTOCOL.md §1.7)"
    ),
    "upload-not-announced": "a command references an upload never announced with fileUploaded (§1.7 step 3)",
    "command-before-ready": "a command sent on a connection that was not ready (docs/HELIOS.md §2 step 1)",
    "start-without-prompt": "start sent while no prompt is scheduled at chunk 0 (docs/HELIOS.md §2 step 2)",
    "start-while-started": "start sent while already started (reset first, docs/HELIOS.md §5.2)",
    "pause-not-running": "pause sent while generation is not running (docs/HELIOS.md §5.2)",
    "resume-not-paused": "resume sent while generation is not paused (docs/HELIOS.md §5.2)",
    "snapshot-not-started": "save_snapshot or rewind sent before start (docs/HELIOS.md §5.2)",
    "prompt-in-past": (
        "schedule_prompt for a chunk earlier than the earliest schedulable one (docs/HELIOS.md §4)"
    ),
    "prompt-empty": "a prompt that is empty or only whitespace (docs/HELIOS.md §5.2)",
    "command-refused": "any other command the model refused with command_error / rewind_failed (§3.2)",
    "request-id-missing": (
        "a v1 request without request_id: no correlated reply can come (docs/PROTOCOL.md §3.4)"
    ),
    "request-id-reused": "a v1 request_id used twice on one connection and channel (docs/PROTOCOL.md §3.4)",
    "frame-malformed": "a data-channel frame the server could not decode (docs/PROTOCOL.md §3.2, §3.3, §3.6)",
    "ping-missing": "keep-alive gap longer than the client's interval × tolerance (v0 5 s, v1 10 s; §1.10)",
    "after-stop": "an HTTP call or a frame after the client stopped or deleted the session (§1.4, §1.5)",
    "track-unknown": "a track verb naming a track Helios does not have (only main_video, docs/HELIOS.md §1)",
    "track-publish": "publish_track sent to Helios, which has no input tracks (docs/HELIOS.md §1)",
    "step-request": "request_step sent to Helios, a streamed model (docs/PROTOCOL.md §3.3)",
    "http-error": "an HTTP call the server answered with a 4xx status (the client sent something wrong)",
    "command-after-end": "a command sent after the server ended the session (sessionEnded / SessionEnded)",
    "no-delete-after-end": "production: the server ended the session and the client never sent DELETE (§1.5)",
    "poll-too-fast": "GET /sessions/{id} polled faster than the documented backoff 0.2 s ×2, ≤ 10 s (§1.10)",
    "reconnect-after-grace": "a reconnect (PUT sdp_params) after the reconnect grace ended the session",
}

POLL_FIRST_GAP = 0.2  # documented readiness polling: 0.2 s, doubling, capped at 10 s (docs/PROTOCOL.md §1.10)
POLL_MAX_GAP = 10.0
POLL_TOLERANCE = 0.5  # a gap shorter than half the documented one is "too fast"
CLIENT_END_REASONS = ("session deleted by the client", "session stopped by the client")
SERVER_ADMIN_END_REASONS = ("the server was reset", "the server is shutting down")
GRACE_END_PREFIX = "no client reconnected within"

# documented client keep-alive (docs/PROTOCOL.md §1.10)
PING_INTERVALS: dict[str, float] = {"v0": 5.0, "v1": 10.0}
DEFAULT_PING_TOLERANCE = 1.5

_REFUSALS = ("command_error", "rewind_failed")
_REQUEST_KINDS = ("CommandIn", "RequestSchema", "RequestClip", "RequestRecording", "TrackVerb", "RequestStep")
_RUNTIME_KINDS = ("Ping", "FileUploaded", "RequestSchema", "RequestClip", "RequestRecording")
_V0_ONLY_KINDS = ("RequestCapabilities",)
_V1_ONLY_KINDS = ("ClientStats", "RequestStep")
_LIFETIME_ENDS = ("connection closed", "peer closed", "peer failed")
_PROMPT_COMMANDS = ("set_prompt", "schedule_prompt", "set_conditioning")


@dataclass(frozen=True)
class Violation:
    """One broken rule: its id (see RULES), a one-line explanation and the offending entry or rejection."""

    rule_id: str
    explanation: str
    entry: Mapping[str, Any] | None = None
    session_id: str | None = None

    def __str__(self) -> str:
        where = []
        if self.session_id:
            where.append(f"session {self.session_id}")
        if self.entry is not None:
            if self.entry.get("connection_id") is not None:
                where.append(f"connection {self.entry['connection_id']}")
            if self.entry.get("t") is not None:
                where.append(f"t={self.entry['t']:g}s")
        suffix = f" ({', '.join(where)})" if where else ""
        return f"[{self.rule_id}] {self.explanation}{suffix}"


def check_transcript(
    transcript: Mapping[str, Any],
    *,
    ping_tolerance: float = DEFAULT_PING_TOLERANCE,
    codecs: Mapping[int, str] | None = None,
    ignore: Iterable[str] = (),
) -> list[Violation]:
    """Violations in one session transcript (``GET /admin/sessions/{id}/transcript``), in time order.

    `codecs` (connection id -> "v0"/"v1") overrides the wire each connection is inferred to speak;
    `ping_tolerance` scales the documented keep-alive intervals; `ignore` drops rule ids.
    """
    checker = _Checker(transcript, ping_tolerance=ping_tolerance, codecs=dict(codecs or {}))
    skip = set(ignore)
    return [v for v in checker.run() if v.rule_id not in skip]


def check_record(
    record: Mapping[str, Any],
    *,
    ping_tolerance: float = DEFAULT_PING_TOLERANCE,
    ignore: Iterable[str] = (),
) -> list[Violation]:
    """Violations in every session of ``GET /admin/record`` (a single transcript is accepted too)."""
    if "sessions" not in record:
        return check_transcript(record, ping_tolerance=ping_tolerance, ignore=ignore)
    violations: list[Violation] = []
    for view in record["sessions"]:
        codecs = {
            int(c["connection_id"]): str(c["codec"])
            for c in view.get("connections", ())
            if c.get("connection_id") is not None and c.get("codec")
        }
        transcript = {
            "session_id": view.get("session_id"),
            "entries": view["entries"] if "entries" in view else _entries_from_summary(view),
            "rejections": view.get("rejections", []),
        }
        violations += check_transcript(
            transcript, ping_tolerance=ping_tolerance, codecs=codecs, ignore=ignore
        )
    return violations


def _entries_from_summary(view: Mapping[str, Any]) -> list[dict[str, Any]]:
    """An admin record without entries (older servers): rebuild what its http and commands lists hold."""
    entries = [
        {
            "t": h["t"],
            "direction": "http",
            "kind": f"{h['method']} {h['path']}",
            "body": {"status": h["status"]},
        }
        for h in view.get("http", ())
    ]
    entries += [
        {
            "t": c["t"],
            "direction": "in",
            "kind": "CommandIn",
            "connection_id": c.get("connection_id"),
            "chunk": c.get("chunk"),
            "body": {"type": c.get("type")},  # no parameters: parameter rules are skipped
        }
        for c in view.get("commands", ())
    ]
    return sorted(entries, key=lambda e: e["t"])


# ------------------------------------------------------------------------------------------ the checker


@dataclass
class _Conn:
    codec: str
    ready: bool = False
    ready_at: float | None = None
    lifetimes: list[tuple[float, float | None, Mapping[str, Any] | None]] = field(default_factory=list)
    pings: list[Mapping[str, Any]] = field(default_factory=list)
    request_ids: set[tuple[str, str]] = field(default_factory=set)


@dataclass
class _Pending:
    """The last command, waiting for a possible refusal broadcast."""

    entry: Mapping[str, Any]
    name: str
    flagged: bool
    refusal_rule: str = "command-refused"
    refusal_seen: bool = False


class _Checker:
    def __init__(
        self, transcript: Mapping[str, Any], *, ping_tolerance: float, codecs: dict[int, str]
    ) -> None:
        self.session_id = transcript.get("session_id")
        self.entries: list[Mapping[str, Any]] = list(transcript.get("entries", ()))
        self.rejections: list[Mapping[str, Any]] = list(transcript.get("rejections", ()))
        self.ping_tolerance = ping_tolerance
        self.codecs = _infer_codecs(self.entries, codecs)
        self.with_ready_events = {
            e.get("connection_id")
            for e in self.entries
            if e.get("direction") == "event" and e.get("kind") == "connection ready"
        }
        self.conns: dict[Any, _Conn] = {}
        self.state: dict[str, Any] = dict(INITIAL_STATE)
        self.put: set[str] = set()
        self.announced: set[str] = set()
        self.stopped: Mapping[str, Any] | None = None
        self.ended = False
        self.pending: _Pending | None = None
        self.out: list[Violation] = []

    # -------------------------------------------------------------- helpers

    def flag(self, rule_id: str, explanation: str, entry: Mapping[str, Any] | None) -> None:
        self.out.append(Violation(rule_id, explanation, entry, self.session_id))

    def conn(self, cid: Any) -> _Conn:
        if cid not in self.conns:
            self.conns[cid] = _Conn(codec=self.codecs.get(cid, "v0"))
        return self.conns[cid]

    def run(self) -> list[Violation]:
        for entry in self.entries:
            direction = entry.get("direction")
            if direction == "event":
                self.on_event(entry)
            elif direction == "http":
                self.on_http(entry)
            elif direction == "in":
                self.on_inbound(entry)
            elif direction == "out":
                self.on_outbound(entry)
        self.check_pings()
        self.check_rejections()
        self.check_lifecycle()
        return sorted(self.out, key=lambda v: (v.entry or {}).get("t", 0.0))

    # -------------------------------------------------------------- events, HTTP

    def on_event(self, entry: Mapping[str, Any]) -> None:
        kind = entry.get("kind", "")
        t = float(entry.get("t", 0.0))
        if kind == "session_ended":
            self.ended = True
            for conn in self.conns.values():
                self.end_lifetime(conn, t, entry)
            return
        cid = entry.get("connection_id")
        if cid is None:
            return
        conn = self.conn(cid)
        if kind == "answered offer":  # a (re)offer: not ready until the new transport is
            self.end_lifetime(conn, t, entry)
        elif kind == "connection ready":
            conn.ready, conn.ready_at = True, t
        elif kind in _LIFETIME_ENDS:
            self.end_lifetime(conn, t, entry)

    def end_lifetime(self, conn: _Conn, t: float, entry: Mapping[str, Any]) -> None:
        if conn.ready and conn.ready_at is not None:
            conn.lifetimes.append((conn.ready_at, t, entry))
        conn.ready, conn.ready_at = False, None

    def on_http(self, entry: Mapping[str, Any]) -> None:
        method, _, path = str(entry.get("kind", "")).partition(" ")
        status = (entry.get("body") or {}).get("status")
        ok = isinstance(status, int) and 200 <= status < 300
        if self.stopped is not None:
            self.flag("after-stop", f"{method} {path} after the client ended the session", entry)
        elif isinstance(status, int) and 400 <= status < 500 and not (method == "DELETE" and status == 404):
            self.flag("http-error", f"{method} {path} was answered {status}", entry)
        if ok and method == "PUT" and path.startswith("/uploads/"):
            self.put.add(path.removeprefix("/uploads/"))
        if ok and (
            (method == "POST" and path == "/stop_session")
            or (method == "DELETE" and path.startswith("/sessions/") and path.count("/") == 2)
        ):
            self.stopped = self.stopped or entry

    # -------------------------------------------------------------- client -> server

    def on_inbound(self, entry: Mapping[str, Any]) -> None:
        kind = entry.get("kind", "")
        body = _as_mapping(entry.get("body"))
        conn = self.conn(entry.get("connection_id"))
        if self.stopped is not None:
            self.flag("after-stop", f"{kind} sent after the session ended", entry)
        elif self.ended:
            rule = "command-after-end" if kind == "CommandIn" else "after-stop"
            self.flag(rule, f"{kind} sent after the server ended the session", entry)
        rid = entry.get("request_id") or body.get("request_id") or ""
        if rid and kind in _REQUEST_KINDS:
            key = (str(entry.get("channel") or "data"), str(rid))
            if key in conn.request_ids:
                self.flag("request-id-reused", f"request_id {rid!r} was already used on this channel", entry)
            conn.request_ids.add(key)
        if kind == "CommandIn":
            self.on_command(entry, body, conn, str(rid))
        elif kind == "Ping":
            conn.pings.append(entry)
        elif kind == "FileUploaded":
            if body.get("upload_id"):
                self.announced.add(str(body["upload_id"]))
        elif kind == "TrackVerb":
            verb, name = body.get("verb"), body.get("name")
            if verb == "publish":
                self.flag("track-publish", f"publish_track {name!r}: Helios has no input tracks", entry)
            elif name != "main_video":
                self.flag("track-unknown", f"{verb}_track names {name!r}; Helios has only main_video", entry)
        elif kind == "RequestStep":
            self.flag("step-request", "request_step sent, but Helios is a streamed model", entry)

    def on_command(self, entry: Mapping[str, Any], body: Mapping[str, Any], conn: _Conn, rid: str) -> None:
        name = str(body.get("type", ""))
        if entry.get("connection_id") in self.with_ready_events and not conn.ready:
            self.flag("command-before-ready", f"{name} sent while the connection was not ready", entry)
        if conn.codec == "v1" and not rid:
            self.flag(
                "request-id-missing", f"v1 command {name} without request_id gets no correlated reply", entry
            )
        before = len(self.out)  # rules below explain a refusal; the server's own refusal is then not repeated
        self.pending = _Pending(entry, name, flagged=False)
        if name not in COMMANDS:
            self.flag("command-unknown", f"unknown command {name!r}", entry)
            self.pending.flagged = True
            return
        if "data" not in body:  # summary-only record: parameters unknown
            self.model_rules(entry, name, None)
            self.pending.flagged = len(self.out) > before
            return
        data = _as_mapping(body.get("data"))
        uploads = _as_mapping(body.get("uploads"))
        for param in UPLOAD_PARAMS.get(name, ()):
            if param in data and param not in uploads:
                self.flag("upload-in-data", f"{name}: upload parameter {param!r} sent in data", entry)
        try:
            params = validate_command(name, {**data, **uploads})
        except CommandRejected as err:
            self.flag("command-invalid", err.message, entry)
            self.pending.flagged = True
            return
        for param in UPLOAD_PARAMS.get(name, ()):
            ref = getattr(params, param, None)
            if ref is None:
                continue
            if ref.upload_id not in self.put:
                self.flag("upload-not-put", f"{name}: upload {ref.upload_id!r} was never PUT before", entry)
            if ref.upload_id not in self.announced:
                self.flag(
                    "upload-not-announced", f"{name}: upload {ref.upload_id!r} was never announced", entry
                )
        self.model_rules(entry, name, params)
        self.pending.flagged = len(self.out) > before

    def model_rules(self, entry: Mapping[str, Any], name: str, params: Any) -> None:
        """Refusals predictable from the model state the server last broadcast (docs/HELIOS.md §4, §5.2)."""
        state = self.state
        started, running, paused = bool(state["started"]), bool(state["running"]), bool(state["paused"])
        chunk = int(state.get("current_chunk") or 0)
        if name == "start":
            if started:
                self.flag("start-while-started", "start sent while already started (reset first)", entry)
            elif "0" not in {str(k) for k in (state.get("scheduled_prompts") or {})}:
                self.flag("start-without-prompt", "start sent with no prompt scheduled at chunk 0", entry)
        elif name == "pause" and not running:
            self.flag("pause-not-running", "pause sent while generation is not running", entry)
        elif name == "resume" and not paused:
            self.flag("resume-not-paused", "resume sent while generation is not paused", entry)
        elif name in ("save_snapshot", "rewind") and not started:
            self.flag("snapshot-not-started", f"{name} sent before start", entry)
        if params is None:
            return
        if name in _PROMPT_COMMANDS and not str(getattr(params, "prompt", "")).strip():
            self.flag("prompt-empty", f"{name} with an empty prompt", entry)
        elif name == "schedule_prompt" and started:
            if params.chunk < chunk:
                self.flag(
                    "prompt-in-past",
                    f"schedule_prompt for chunk {params.chunk} while at chunk {chunk}",
                    entry,
                )
            elif params.chunk == chunk:  # past iff a chunk is in progress: the server's refusal decides
                assert self.pending is not None
                self.pending.refusal_rule = "prompt-in-past"

    # -------------------------------------------------------------- server -> client

    def on_outbound(self, entry: Mapping[str, Any]) -> None:
        if entry.get("kind") != "ModelMessageOut":
            return
        body = _as_mapping(entry.get("body"))
        data = _as_mapping(body.get("data"))
        if body.get("type") == "state":
            self.state = {**INITIAL_STATE, **data}
        elif body.get("type") in _REFUSALS:
            pending = self.pending
            if pending is None or pending.refusal_seen or data.get("command") != pending.name:
                return
            pending.refusal_seen = True
            if not pending.flagged:
                reason = data.get("reason", "")
                self.out.append(
                    Violation(
                        pending.refusal_rule,
                        f"{pending.name} was refused by the model: {reason}",
                        pending.entry,
                        self.session_id,
                    )
                )

    # -------------------------------------------------------------- after the walk

    def check_pings(self) -> None:
        end_of_transcript = max((float(e.get("t", 0.0)) for e in self.entries), default=0.0)
        for cid, conn in self.conns.items():
            lifetimes = list(conn.lifetimes)
            if conn.ready and conn.ready_at is not None:
                lifetimes.append((conn.ready_at, end_of_transcript, None))
            interval = PING_INTERVALS.get(conn.codec, PING_INTERVALS["v0"])
            limit = interval * self.ping_tolerance
            for start, end, end_entry in lifetimes:
                assert end is not None
                if end - start <= limit:
                    continue  # too short to judge
                times = [float(p["t"]) for p in conn.pings if start <= float(p["t"]) <= end]
                gaps = zip([start, *times], [*times, end], strict=True)
                previous, gap_end = next(((a, b) for a, b in gaps if b - a > limit), (None, None))
                if previous is None or gap_end is None:
                    continue
                offender = next((p for p in conn.pings if float(p["t"]) == gap_end), None)
                self.flag(
                    "ping-missing",
                    f"no ping for {gap_end - previous:.1f} s on a {conn.codec} connection "
                    f"(documented every {interval:g} s, tolerance ×{self.ping_tolerance:g})",
                    offender or end_entry or {"t": round(gap_end, 4), "connection_id": cid},
                )

    def check_lifecycle(self) -> None:
        """Session-level rules: readiness polling pace, DELETE after a server-side end, late reconnects."""
        polls: list[Mapping[str, Any]] = []
        production = deleted = False
        end_reason: str | None = None
        for entry in self.entries:
            direction, kind = entry.get("direction"), str(entry.get("kind", ""))
            if direction == "event" and kind == "session_ended":
                end_reason = str(_as_mapping(entry.get("body")).get("reason", ""))
            if direction != "http":
                continue
            method, _, path = kind.partition(" ")
            session_path = path.startswith("/sessions/") and path.count("/") == 2
            production = production or (method == "POST" and path == "/sessions")
            if method == "GET" and session_path and end_reason is None:
                polls.append(entry)
            deleted = deleted or (method == "DELETE" and session_path)
            late = (end_reason or "").startswith(GRACE_END_PREFIX)
            if method == "PUT" and path.endswith("/sdp_params") and late:
                self.flag("reconnect-after-grace", f"PUT {path} after the session ended: {end_reason}", entry)
        self.check_poll_pace(polls)
        not_errors = CLIENT_END_REASONS + SERVER_ADMIN_END_REASONS
        server_ended = end_reason is not None and end_reason not in not_errors
        if production and server_ended and not deleted:
            self.flag("no-delete-after-end", f"the session ended ({end_reason}) and no DELETE followed", None)

    def check_poll_pace(self, polls: list[Mapping[str, Any]]) -> None:
        for number, (before, after) in enumerate(zip(polls, polls[1:], strict=False)):
            documented = min(POLL_FIRST_GAP * 2**number, POLL_MAX_GAP)
            gap = float(after.get("t", 0.0)) - float(before.get("t", 0.0))
            if gap < documented * POLL_TOLERANCE:
                self.flag(
                    "poll-too-fast",
                    f"poll {number + 2} of GET /sessions/{{id}} came {gap:.2f} s after the previous one "
                    f"(documented ≥ {documented:g} s)",
                    after,
                )
                return

    def check_rejections(self) -> None:
        """Frames rejected before any entry was recorded (the codec could not decode them)."""
        for rejection in self.rejections:
            if rejection.get("command"):
                continue  # a decoded command or request: judged from its entry
            message = str(rejection.get("message", ""))
            if "has no request_id" in message:
                self.flag("request-id-missing", f"rejected: {message}", rejection)
            else:
                self.flag("frame-malformed", f"rejected ({rejection.get('code')}): {message}", rejection)


def _as_mapping(value: object) -> Mapping[str, Any]:
    """``value`` when it is a mapping (a decoded JSON object), else an empty one."""
    return value if isinstance(value, Mapping) else {}


def _infer_codecs(entries: list[Mapping[str, Any]], given: dict[int, str]) -> dict[Any, str]:
    """Which wire each connection speaks: given > evidence in its frames > the offer's provisional codec."""
    hint: dict[Any, str] = {}
    evidence: dict[Any, str] = {}
    for e in entries:
        cid, kind, direction = e.get("connection_id"), e.get("kind"), e.get("direction")
        if cid is None:
            continue
        if direction == "event" and kind == "answered offer":
            codec = (e.get("body") or {}).get("codec")
            if codec in PING_INTERVALS:
                hint[cid] = codec
        elif direction == "out" and kind == "AckOut":
            evidence[cid] = "v1"
        elif direction == "in":
            if e.get("request_id") or kind in _V1_ONLY_KINDS:
                evidence[cid] = "v1"
            elif kind in _V0_ONLY_KINDS:
                evidence[cid] = "v0"
            elif kind in _RUNTIME_KINDS:
                evidence[cid] = "v1" if e.get("channel") == "control" else "v0"
    return {**hint, **evidence, **given}

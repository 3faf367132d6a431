"""Admin views of the sessions for the conformance harness: the record, transcripts, live follow, and the
per-request HTTP record."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from typing import Any

from mock_server.errors import NotFound
from mock_server.faults import parse_fault
from mock_server.services.registry import LOCAL_ID, AnySession, ClosedSession, Registry
from mock_server.session.record import Entry
from mock_server.session.session import Session

LOCAL_PATHS = ("/start_session", "/stop_session", "/session")
FOLLOW_POLL = 1.0  # seconds between two looks at whether a followed session has ended


def record(registry: Registry) -> dict[str, Any]:
    """Every session's view (closed ones first) and the requests tied to no session."""
    return {
        "sessions": [session_view(s) for s in registry.all_sessions()],
        "http": list(registry.unbound_http),  # requests tied to no session (e.g. POST /tokens)
    }


def transcript(registry: Registry, session_id: str) -> dict[str, Any]:
    """The record of the latest session with this id (a local id may have been used more than once)."""
    matches = [s for s in registry.all_sessions() if s.id == session_id]
    if not matches:
        raise NotFound(f"unknown session {session_id!r}")
    return matches[-1].record.to_json()


def arm_fault(registry: Registry, body: Any) -> dict[str, Any]:
    """POST /admin/faults: validate (422), check the target session runs (404), arm."""
    spec = parse_fault(body)
    session_age = None
    if spec.session_id is not None:
        session = live_session(registry, spec.session_id)
        if session is None or session.closed:
            raise NotFound(f"no running session {spec.session_id!r} to arm the fault on (GET /admin/record)")
        session_age = session.faults.elapsed()
    return registry.faults.arm(spec, session_age=session_age).to_dict()


def live_session(registry: Registry, session_id: str) -> Session | None:
    return registry.sessions.get(session_id) or (registry.local if session_id == LOCAL_ID else None)


async def follow(session: Session) -> AsyncGenerator[dict[str, Any], None]:
    """The session's record so far, then each new item as it is recorded, until the session ends."""
    queue = session.record.subscribe()
    try:
        for entry in list(session.record.entries):
            yield entry.to_json()
        while not session.closed:
            try:
                item = await asyncio.wait_for(queue.get(), timeout=FOLLOW_POLL)
            except TimeoutError:
                continue
            yield item
    finally:
        session.record.unsubscribe(queue)


def session_for_path(registry: Registry, path: str) -> AnySession | None:
    """The session an HTTP request path is about, if any."""
    if path in LOCAL_PATHS:
        return registry.local
    parts = path.strip("/").split("/")
    if len(parts) == 2 and parts[0] == "uploads":
        return next((s for s in registry.sessions.values() if parts[1] in s.uploads), None)
    if len(parts) >= 2 and parts[0] == "sessions":
        if parts[1] == LOCAL_ID:
            return registry.local
        return registry.sessions.get(parts[1]) or registry.closed.get(parts[1])
    return None


def note_http(
    registry: Registry,
    session: AnySession | None,
    method: str,
    path: str,
    status: int,
    handled_ms: float | None = None,
) -> None:
    """Record one answered request: in its session's record, else (admin requests aside) as unbound.

    `handled_ms`: how long the server took from the request's arrival to the start of its answer (the
    entry's `t` is that answer's moment, so the request arrived at `t - ms / 1000`). A request that ended
    its session (e.g. `POST /stop_session`) goes into the summary kept of it."""
    if isinstance(session, Session):
        session = registry.summary_of(session) or session
    if session is not None:
        body: dict[str, Any] = {"status": status}
        if handled_ms is not None:
            body["ms"] = round(handled_ms, 3)
        session.record.add("http", f"{method} {path}", body=body)
    elif not path.startswith("/admin"):
        registry.unbound_http.append(
            {"method": method, "path": path, "status": status, "t": round(time.time(), 3)}
        )


def session_view(session: AnySession) -> dict[str, Any]:
    """What /admin/record shows of one session (running, or the summary kept of a closed one)."""
    entries = list(session.record.entries)
    if isinstance(session, Session):
        connections = [c.describe() for c in session.connections.values()]
    else:
        connections = session.connection_views
    return {
        "session_id": session.id,
        "mode": session.mode,
        "closed": session.closed,
        "close_reason": session.close_reason,
        "chunks_generated": session.chunks_generated,
        "connections": connections,
        "rejections": [r.to_json() for r in session.record.rejections],
        "record_truncated": session.record.truncation(),
        "faults": _fired_faults(session),  # faults fired in this session (kind, params, chunk, time)
        "http": [_http_view(e) for e in entries if e.direction == "http"],
        "commands": [_command_view(e) for e in entries if e.kind == "CommandIn" and isinstance(e.body, dict)],
        "entries": [e.to_json() for e in entries],  # the transcript, for conformance.client_rules
    }


def _http_view(entry: Entry) -> dict[str, Any]:
    method, path = entry.kind.split(" ", 1)
    body = entry.body or {}
    view = {"method": method, "path": path, "status": body.get("status"), "t": round(entry.t, 4)}
    if "ms" in body:
        view["ms"] = body["ms"]  # server time: arrival -> answer (arrived at t - ms / 1000)
    return view


def _command_view(entry: Entry) -> dict[str, Any]:
    return {
        "connection_id": entry.connection_id,
        "type": entry.body.get("type"),
        "chunk": entry.chunk,
        "t": round(entry.t, 4),
    }


def _fired_faults(session: AnySession) -> list[dict[str, Any]]:
    if isinstance(session, ClosedSession):
        return list(session.fired_faults)
    return list(session.faults.fired)

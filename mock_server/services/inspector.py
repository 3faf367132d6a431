"""The inspector's views of the sessions: the overview behind `/`, one session's timeline, chunk thumbnails
and the live frame; and its two actions: the fault kinds its Faults panel offers, and a clip cut for an
admin. Frames are rendered here from the chunk plans the clock keeps (watching changes nothing a client
receives); client-rule violations come from `conformance.client_rules.check_record`."""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import io
import time
import weakref
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image

from conformance.client_rules import check_record
from mock_server.config import VERSION, Settings
from mock_server.errors import Conflict, Invalid, NotFound
from mock_server.faults.catalogue import COMMAND_KINDS, CREATION_KINDS, PARAMS, TIMED_KINDS
from mock_server.media.frames import ChunkRenderer
from mock_server.media.markers import Markers, decode_markers, prompt_id
from mock_server.model.plan import ChunkPlan
from mock_server.services.admin import session_view
from mock_server.services.registry import LOCAL_ID, AnySession, ClosedSession, Registry
from mock_server.session import clip_links
from mock_server.session.record import Entry
from mock_server.session.recording import ClipRefused

THUMB_WIDTH = 192  # pixels; thumbnails keep the frame's aspect ratio
LIVE_MAX_WIDTH = 640  # the live frame is scaled down to at most this width
MAX_COLUMNS = 120  # chunk columns a timeline answers at most (the latest ones)
MAX_EVENTS = 3000  # timeline events answered at most (the latest ones)
RECENT = 8  # commands and rejections listed per session in the overview
PROMPT_ACCEPTING = ("set_prompt", "schedule_prompt", "set_conditioning")
CONNECTION_EVENTS = ("connection ready", "connection closed", "peer connected", "peer closed", "peer failed")
QUIET_MESSAGES = ("state", "chunk_complete")  # counted per chunk, not listed one by one

_violation_cache: weakref.WeakKeyDictionary[AnySession, tuple[tuple[int, int, float], list[dict[str, Any]]]]
_violation_cache = weakref.WeakKeyDictionary()


# ------------------------------------------------------------------------------------------ sessions


def session_key(session: AnySession) -> str:
    """A stable address for a session: its id, or `local-<n>` for a local one (the id `local` repeats)."""
    return session.id if session.mode != "local" else f"{LOCAL_ID}-{session.record.uid}"  # kept at close


def find_session(registry: Registry, key: str) -> AnySession:
    """The session with this key; `local` means the running (else the latest) local session."""
    sessions = registry.all_sessions()
    if key == LOCAL_ID:
        local = registry.local or next((s for s in reversed(sessions) if s.mode == "local"), None)
        if local is not None:
            return local
    for session in sessions:
        if session_key(session) == key:
            return session
    raise NotFound(f"no session {key!r} (the inspector at / lists the sessions this server knows)")


def overview(registry: Registry) -> dict[str, Any]:
    """What `/` shows: the server's settings and every session, newest first."""
    sessions = [session_summary(registry, s) for s in reversed(registry.all_sessions())]
    return {"server": server_view(registry.settings), "sessions": sessions, "time": round(time.time(), 3)}


def server_view(settings: Settings) -> dict[str, Any]:
    width, height = settings.native_size
    return {
        "version": VERSION,
        "mode": settings.mode,
        "fps": settings.fps,
        "speed": settings.speed,
        "native_size": f"{width}x{height}",
        "media": settings.media,
        "chunk_seconds": round(33 / (settings.fps * settings.speed), 3),
        "max_session_duration": settings.max_session_duration,
        "reconnect_grace": settings.reconnect_grace,
        "api_keys_required": bool(settings.api_keys),
        "admin_token_required": bool(settings.admin_token),
    }


def session_state(registry: Registry, session: AnySession) -> str:
    if session.closed:
        return "CLOSED"
    return str(registry.descriptor(session)["state"])


def session_summary(registry: Registry, session: AnySession) -> dict[str, Any]:
    """One row of `/`: mode, state, chunk, connections, commands, rejections, violations, faults."""
    entries = list(session.record.entries)
    commands = [e for e in entries if e.kind == "CommandIn" and isinstance(e.body, dict)]
    plans = _plans(session)
    latest = plans[-1][1] if plans else None
    return {
        "key": session_key(session),
        "session_id": session.id,
        "mode": session.mode,
        "state": session_state(registry, session),
        "close_reason": session.close_reason,
        "age": round(session.record.now(), 1),
        "generation": _generation(session),
        "chunk": _current_chunk(session),
        "chunks_generated": session.chunks_generated,
        "prompt": latest.prompt if latest is not None else None,
        "connections": _connection_views(session),
        "commands_total": len(commands),
        "commands": [_command_row(e) for e in commands[-RECENT:]],
        "rejections_total": len(session.record.rejections),
        "rejections": [r.to_json() for r in list(session.record.rejections)[-RECENT:]],
        "violations": violations(session),
        "faults": [e.to_json() for e in entries if e.direction == "fault"],
    }


def _plans(session: AnySession) -> list[tuple[float, ChunkPlan]]:
    """The kept (start time, plan) of recent chunks; a closed session keeps its last ones."""
    return list(session.plans) if isinstance(session, ClosedSession) else list(session.clock.plans)


def _current_chunk(session: AnySession) -> int:
    return session.current_chunk if isinstance(session, ClosedSession) else session.helios.current_chunk


def _connection_views(session: AnySession) -> list[dict[str, Any]]:
    if isinstance(session, ClosedSession):
        return list(session.connection_views)
    return [c.describe() for c in session.connections.values()]


def _generation(session: AnySession) -> str:
    if isinstance(session, ClosedSession):
        return "ended"
    helios = session.helios
    if not helios.started:
        return "not started"
    return "paused" if helios.paused else "running"


def _command_row(entry: Entry) -> dict[str, Any]:
    return {
        "t": round(entry.t, 3),
        "connection_id": entry.connection_id,
        "chunk": entry.chunk,
        "type": entry.body.get("type"),
        "data": entry.body.get("data"),
    }


def violations(session: AnySession) -> list[dict[str, Any]]:
    """Client-rule violations in this session (`check_record` over its admin view), cached per change."""
    record = session.record
    last_t = record.entries[-1].t if record.entries else 0.0
    signature = (len(record.entries), len(record.rejections), last_t)
    cached = _violation_cache.get(session)
    if cached is not None and cached[0] == signature:
        return cached[1]
    found = [
        {
            "rule_id": v.rule_id,
            "explanation": v.explanation,
            "t": (v.entry or {}).get("t"),
            "connection_id": (v.entry or {}).get("connection_id"),
            "chunk": (v.entry or {}).get("chunk"),
        }
        for v in check_record({"sessions": [session_view(session)]})
    ]
    _violation_cache[session] = (signature, found)
    return found


# ------------------------------------------------------------------------------------------ timeline


def timeline(registry: Registry, key: str) -> dict[str, Any]:
    """One session on a time axis: a column per generated chunk (latest `MAX_COLUMNS`) and its events."""
    session = find_session(registry, key)
    entries = list(session.record.entries)
    columns = _columns(session, entries)
    begins = [c["t_begin"] for c in columns]
    events = _events(session, entries, columns)
    for event in events:
        if "column" not in event:
            event["column"] = _column_at(begins, event["t"])
    return {
        "session": session_summary(registry, session),
        "columns": columns,
        "events": events[-MAX_EVENTS:],
        "events_total": len(events),
    }


def _columns(session: AnySession, entries: list[Entry]) -> list[dict[str, Any]]:
    completions: dict[int, list[float]] = {}
    for e in entries:
        if e.direction == "out" and _message_type(e) == "chunk_complete":
            index = (e.body.get("data") or {}).get("chunk_index")
            if isinstance(index, int):
                completions.setdefault(index, []).append(e.t)
    started_at = session.record.started_at
    columns: list[dict[str, Any]] = []
    previous: ChunkPlan | None = None
    for begun, plan in _plans(session):
        t_begin = round(begun - started_at, 4)
        done = completions.get(plan.chunk_index, [])
        after = bisect.bisect_left(done, t_begin)
        column = _plan_view(plan, previous)
        column.update(t_begin=t_begin, t_end=round(done[after], 4) if after < len(done) else None)
        columns.append(column)
        previous = plan
    return columns[-MAX_COLUMNS:]


def _plan_view(plan: ChunkPlan, previous: ChunkPlan | None) -> dict[str, Any]:
    changes = []
    if previous is None or plan.chunk_index != previous.chunk_index + 1:
        restart = previous is not None or plan.chunk_index == 0
        changes.append("generation starts" if restart else "earliest chunk kept")
    for name, label in (("prompt", "prompt"), ("seed", "seed"), ("image_id", "image"), ("sr_scale", "sr")):
        value = getattr(plan, name)
        if previous is not None and value != getattr(previous, name):
            changes.append(f"{label} → {value!r}")
    if previous is not None and plan.image_strength != previous.image_strength:
        changes.append(f"image strength → {plan.image_strength:g}")
    return {
        "chunk": plan.chunk_index,
        "prompt": plan.prompt,
        "prompt_id": prompt_id(plan.prompt),
        "seed": plan.seed,
        "image_id": plan.image_id,
        "image_strength": plan.image_strength,
        "sr_scale": plan.sr_scale,
        "changes": changes,
    }


def _column_at(begins: list[float], t: float) -> int | None:
    """The index of the column whose chunk was running (or last ran) at `t`; None before the first."""
    at = bisect.bisect_right(begins, t) - 1
    return at if at >= 0 else None


def _message_type(entry: Entry) -> str | None:
    body = entry.body
    return body.get("type") if isinstance(body, dict) and isinstance(body.get("type"), str) else None


def _events(session: AnySession, entries: list[Entry], columns: list[dict[str, Any]]) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for entry in entries:
        event = _entry_event(entry)
        if event is not None:
            events.append(event)
    events += _effects(entries, columns)
    for rejection in session.record.rejections:
        events.append(
            _event(rejection.t, "rejection", rejection.code, rejection.message, rejection.connection_id)
        )
    for v in violations(session):
        t = v["t"] if isinstance(v["t"], int | float) else session.record.now()
        events.append(_event(t, "violation", v["rule_id"], v["explanation"], v["connection_id"]))
    events.sort(key=lambda e: e["t"])
    return events


def _event(t: float, lane: str, label: str, detail: Any = None, connection_id: int | None = None) -> dict:
    return {"t": round(t, 4), "lane": lane, "label": label, "detail": detail, "connection_id": connection_id}


def _entry_event(entry: Entry) -> dict[str, Any] | None:
    """The timeline event of one record entry, or None for entries the timeline leaves out."""
    kind_type = _message_type(entry)
    if entry.kind == "CommandIn" and isinstance(entry.body, dict):
        event = _event(entry.t, "command", str(kind_type), entry.body.get("data"), entry.connection_id)
        event["received_chunk"] = entry.chunk
        return event
    if entry.direction == "fault":  # session/faults.py records each firing as ("fault", <kind>)
        return _event(entry.t, "fault", entry.kind, entry.body)
    if entry.direction == "event" and entry.kind in CONNECTION_EVENTS + ("session_ended",):
        return _event(entry.t, "connection", entry.kind, entry.body, entry.connection_id)
    if entry.direction == "out" and entry.kind in ("ModelMessageOut", "ErrorOut"):
        label = kind_type if entry.kind == "ModelMessageOut" else f"error {(entry.body or {}).get('code')}"
        data = (entry.body or {}).get("data") if entry.kind == "ModelMessageOut" else entry.body
        event = _event(entry.t, "message", str(label), data, entry.connection_id)
        event["quiet"] = label in QUIET_MESSAGES
        return event
    if entry.direction == "in" and entry.kind != "Ping":
        return _event(entry.t, "message-in", entry.kind, entry.body, entry.connection_id)
    return None


def _effects(entries: list[Entry], columns: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Where each prompt command took effect: the chunk its `prompt_accepted` names (docs/HELIOS.md §4)."""
    effects = []
    accepted = [e for e in entries if e.direction == "out" and _message_type(e) == "prompt_accepted"]
    used: set[int] = set()
    for command in entries:
        if command.kind != "CommandIn" or not isinstance(command.body, dict):
            continue
        name = command.body.get("type")
        if name not in PROMPT_ACCEPTING:
            continue
        reply = _accepted_for(command, accepted, used)
        if reply is None:
            continue
        chunk = int(reply.body["data"]["chunk"])
        event = _event(command.t, "effect", str(name), reply.body["data"], command.connection_id)
        event.update(received_chunk=command.chunk, effective_chunk=chunk)
        event["column"] = next(
            (i for i, c in enumerate(columns) if c["chunk"] == chunk and c["t_begin"] >= command.t), None
        )
        event["pending"] = event["column"] is None
        effects.append(event)
    return effects


def _accepted_for(command: Entry, accepted: list[Entry], used: set[int]) -> Entry | None:
    """The `prompt_accepted` answering this command: by request id (v1), else the next one on the
    connection with the command's prompt (v0 has no request ids)."""
    prompt = (command.body.get("data") or {}).get("prompt")
    for i, reply in enumerate(accepted):
        if i in used or reply.t < command.t or reply.connection_id != command.connection_id:
            continue
        data = reply.body.get("data") or {}
        by_id = bool(command.request_id) and reply.request_id == command.request_id
        if by_id or (not command.request_id and data.get("prompt") == prompt):
            used.add(i)
            return reply if isinstance(data.get("chunk"), int) else None
    return None


# ------------------------------------------------------------------------------------------ pictures


def find_plan(session: AnySession, chunk: int, t_begin: float | None) -> ChunkPlan:
    """The plan of chunk `chunk` (the latest run of it, or the one that began at `t_begin`)."""
    if chunk < 0:
        raise Invalid(f"chunk must be >= 0, got {chunk}")
    started_at = session.record.started_at
    for begun, plan in reversed(_plans(session)):
        if plan.chunk_index != chunk:
            continue
        if t_begin is None or abs((begun - started_at) - t_begin) < 0.001:
            return plan
    kept = sorted({p.chunk_index for _, p in _plans(session)})
    span = f"chunks {kept[0]}-{kept[-1]}" if kept else "no chunk yet"
    raise NotFound(f"session {session.id!r} has no kept plan for chunk {chunk} (it keeps {span})")


async def thumbnail_png(registry: Registry, key: str, chunk: int, t_begin: float | None) -> tuple[bytes, str]:
    """First frame of a chunk, `THUMB_WIDTH` wide, as PNG, and the markers decoded from those pixels."""
    session = find_session(registry, key)
    plan = find_plan(session, chunk, t_begin)
    return await asyncio.to_thread(_thumbnail, plan, registry.settings.native_size)


async def live_frame_png(registry: Registry, key: str) -> tuple[bytes, str]:
    """The frame the session published last (read from its feed; no connection joins), as PNG."""
    session = find_session(registry, key)
    latest = None if isinstance(session, ClosedSession) else session.feed.latest
    if latest is None:
        raise NotFound(f"session {session.id!r} has published no frame yet (it starts once generating)")
    return await asyncio.to_thread(
        _picture, latest.plan, latest.index, registry.settings.native_size, LIVE_MAX_WIDTH
    )


@lru_cache(maxsize=512)
def _thumbnail(plan: ChunkPlan, native_size: tuple[int, int]) -> tuple[bytes, str]:
    return _picture(plan, 0, native_size, THUMB_WIDTH)


def _picture(plan: ChunkPlan, frame: int, native_size: tuple[int, int], width: int) -> tuple[bytes, str]:
    pixels = _renderer(dataclasses.replace(plan, sr_scale="off"), native_size).frame(frame)
    image = Image.fromarray(pixels)
    if image.width > width:
        image = image.resize((width, max(1, round(image.height * width / image.width))), Image.Resampling.BOX)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue(), describe_markers(decode_markers(np.asarray(image)))


@lru_cache(maxsize=4)
def _renderer(plan: ChunkPlan, native_size: tuple[int, int]) -> ChunkRenderer:
    return ChunkRenderer(plan, native_size)


def describe_markers(markers: Markers | None) -> str:
    """`chunk=3 frame=0 prompt_id=1234 seed=42 image_id=0`, or `none` when the band did not decode."""
    if markers is None:
        return "none"
    return " ".join(f"{f.name}={getattr(markers, f.name)}" for f in dataclasses.fields(markers))


def parse_query_float(value: str | None, name: str) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except ValueError:
        raise Invalid(f"{name} must be a number of seconds, got {value!r}") from None


# ------------------------------------------------------------------------------------------ actions

FAULT_PARAMS_LEFT_OUT = ("match",)  # a {param: value} filter: arm it through POST /admin/faults directly


def fault_kinds() -> list[dict[str, Any]]:
    """The kinds the Faults panel offers (all but creation kinds, which act before a session exists): each
    with its triggers and its parameters, read from the catalogue's models (docs/FAULTS.md)."""
    kinds = []
    for kind, model in PARAMS.items():
        if kind in CREATION_KINDS:
            continue
        triggers = ["now"]
        triggers += ["at_chunk", "after_seconds"] if kind in TIMED_KINDS else []
        triggers += ["on_command"] if kind in COMMAND_KINDS else []
        properties = model.model_json_schema().get("properties", {})
        kinds.append(
            {
                "kind": kind,
                "description": (model.__doc__ or "").strip(),
                "triggers": triggers,
                "params": [
                    _param_field(name, prop)
                    for name, prop in properties.items()
                    if name not in FAULT_PARAMS_LEFT_OUT
                ],
            }
        )
    return kinds


def _param_field(name: str, prop: dict[str, Any]) -> dict[str, Any]:
    """One parameter as a form field: type (enum, number, integer, string, list), default, bounds."""
    variants = [v for v in prop.get("anyOf", [prop]) if v.get("type") != "null"]
    shape = variants[0] if variants else {}
    kind = "enum" if "enum" in shape else ("list" if shape.get("type") == "array" else shape.get("type"))
    field: dict[str, Any] = {
        "name": name,
        "type": kind,
        "default": prop.get("default"),
        "optional": len(variants) < len(prop.get("anyOf", [prop])),
        "description": prop.get("description", ""),
    }
    for key in ("enum", "minimum", "maximum", "exclusiveMinimum", "maxLength"):
        if key in shape:
            field[key] = shape[key]
    return field


def cut_clip(registry: Registry, key: str, duration_seconds: float, base_url: str) -> dict[str, Any]:
    """Cut the last `duration_seconds` of a session's recording, as a `requestClip` would, for an admin.

    The answer has clipReady's fields; its `playlist_url` is on `base_url` (the admin's own address).
    409 when the recording cannot give a clip (recorder disabled, nothing recorded yet)."""
    session = find_session(registry, key)
    recording = session.recording
    if recording is None:
        raise Conflict(f"session {session.id!r} has no recording (the server runs with --recording off)")
    ttl = registry.settings.clip_url_ttl
    try:
        window = recording.cut("clip", duration_seconds, ttl)
    except ClipRefused as refused:
        raise Conflict(f"session {session.id!r} cannot give a clip: {refused.reason}") from None
    return {
        "session_id": session.id,
        "kind": window.kind,
        "start_marker": window.start_marker,
        "end_marker": window.end_marker,
        "now_marker": window.now_marker,
        "predicted_ready_at_ms": window.predicted_ready_at_ms(registry.settings.speed),
        "playlist_url": clip_links.playlist_url(base_url, window, ttl),
        "chunks": [window.first_seq, window.last_seq],
    }

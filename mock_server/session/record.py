"""Per-session record: every HTTP request and data-channel message both ways, plus rejections.

The record is what the conformance harness reads. It lives in memory, is bounded by bytes (an entry whose
body is too large keeps a marker instead; past the session's byte budget the oldest items go, counted),
and can be followed live by subscribers (the admin WebSocket).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import zlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any

MAX_ENTRIES = 20_000
DEFAULT_MAX_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_ENTRY_BYTES = 16 * 1024
PREVIEW = 200  # characters of an elided body that are kept


def json_size(item: Any) -> int:
    """Bytes `item` takes as JSON (what /admin/record will serve)."""
    return len(json.dumps(item, default=str, separators=(",", ":")))


@dataclass(slots=True)  # slots: a closed session's summary keeps thousands of these
class Entry:
    t: float  # seconds since the session was created
    direction: str  # "in" (client -> server), "out" (server -> client), "http", "event", "fault"
    kind: str  # e.g. "command", "message", "ack", "error", "ping", "GET /session"
    connection_id: int | None = None
    channel: str | None = None
    chunk: int | None = None
    body: Any = None
    request_id: str = ""
    size: int = field(default=0, repr=False, compare=False)  # JSON bytes, counted against the budget

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"t": round(self.t, 4), "direction": self.direction, "kind": self.kind}
        for key in ("connection_id", "channel", "chunk", "body"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.request_id:
            out["request_id"] = self.request_id
        return out


@dataclass(slots=True)
class Rejection:
    """An inbound frame or command the server refused before the model (runtime level)."""

    t: float
    connection_id: int | None
    code: str
    message: str
    command: str | None = None
    raw: str = ""
    size: int = field(default=0, repr=False, compare=False)  # JSON bytes, counted against the budget

    def to_json(self) -> dict[str, Any]:
        return {
            "t": round(self.t, 4),
            "connection_id": self.connection_id,
            "code": self.code,
            "message": self.message,
            "command": self.command,
            "raw": self.raw,
        }


@dataclass
class SessionRecord:
    session_id: str
    mode: str
    max_bytes: int = DEFAULT_MAX_BYTES  # JSON bytes of entries + rejections kept (max_record_bytes)
    max_entry_bytes: int = (
        DEFAULT_MAX_ENTRY_BYTES  # an entry body past this is elided (max_record_entry_bytes)
    )
    started_at: float = field(default_factory=time.monotonic)
    uid: str = field(default_factory=lambda: secrets.token_hex(6))  # names the session for good (also closed)
    entries: deque[Entry] = field(default_factory=deque)
    rejections: deque[Rejection] = field(default_factory=deque)
    dropped_entries: int = 0
    dropped_rejections: int = 0
    elided_bodies: int = 0
    _bytes: int = 0
    _subscribers: set[asyncio.Queue[dict[str, Any]]] = field(default_factory=set)

    def now(self) -> float:
        return time.monotonic() - self.started_at

    def add(self, direction: str, kind: str, **fields: Any) -> Entry:
        entry = Entry(t=self.now(), direction=direction, kind=kind, **fields)
        item = entry.to_json()
        size = json_size(item)
        if entry.body is not None and size > self.max_entry_bytes:
            entry.body = _elided(entry.body)
            self.elided_bodies += 1
            item = entry.to_json()
            size = json_size(item)
        self.entries.append(entry)
        self._keep(entry, size)
        self._publish(item)
        return entry

    def reject(
        self, connection_id: int | None, code: str, message: str, command: str | None, raw: str
    ) -> None:
        rejection = Rejection(self.now(), connection_id, code, message[:2000], command, raw[:2000])
        self.rejections.append(rejection)
        item = rejection.to_json()
        self._keep(rejection, json_size(item))
        self._publish({"rejection": item})

    @property
    def size(self) -> int:
        """JSON bytes the kept entries and rejections take."""
        return self._bytes

    def truncation(self) -> dict[str, int]:
        """What the byte budget cost: items dropped (oldest first) and bodies elided."""
        return _truncation(self)

    def _keep(self, item: Entry | Rejection, size: int) -> None:
        """Account for a new item; drop the oldest items while over the byte budget or the entry count."""
        item.size = size
        self._bytes += size
        while len(self.entries) > MAX_ENTRIES:
            self._drop_entry()
        while self._bytes > self.max_bytes and (self.entries or self.rejections):
            older_entry = self.entries and (not self.rejections or self.entries[0].t <= self.rejections[0].t)
            if older_entry:
                self._drop_entry()
            else:
                self._bytes -= self.rejections.popleft().size
                self.dropped_rejections += 1

    def _drop_entry(self) -> None:
        self._bytes -= self.entries.popleft().size
        self.dropped_entries += 1

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=10_000)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self._subscribers.discard(queue)

    def _publish(self, item: dict[str, Any]) -> None:
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(item)
            except asyncio.QueueFull:  # a stalled follower loses entries, the session never blocks
                pass

    def to_json(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "mode": self.mode,
            "entries": [e.to_json() for e in self.entries],
            "rejections": [r.to_json() for r in self.rejections],
            "truncated": self.truncation(),
        }


def _elided(body: Any) -> dict[str, Any]:
    """The marker an oversized body is replaced with: its size and the start of its JSON."""
    text = json.dumps(body, default=str, separators=(",", ":"))
    return {"elided": True, "bytes": len(text), "preview": text[:PREVIEW]}


class ClosedRecord:
    """The record of an ended session, kept compact: its JSON, zlib-compressed (a closed session's summary
    holds this, not thousands of entry objects). Reads rebuild the entries; requests that still name the
    session (e.g. `GET /sessions/{id}`) are added as before, within the same byte budget."""

    def __init__(self, record: SessionRecord) -> None:
        self.session_id = record.session_id
        self.mode = record.mode
        self.started_at = record.started_at
        self.uid = record.uid
        self.max_bytes = record.max_bytes
        self.dropped_entries = record.dropped_entries
        self.dropped_rejections = record.dropped_rejections
        self.elided_bodies = record.elided_bodies
        self._frozen_bytes = record.size
        self._frozen_entries = len(record.entries)
        self._frozen_rejections = len(record.rejections)
        items = {
            "entries": [e.to_json() for e in record.entries],
            "rejections": [r.to_json() for r in record.rejections],
        }
        self._blob = zlib.compress(json.dumps(items, default=str, separators=(",", ":")).encode(), 6)
        self._late: deque[Entry] = deque()  # added after the end
        self._late_bytes = 0

    def now(self) -> float:
        return time.monotonic() - self.started_at

    def _items(self) -> dict[str, list[dict[str, Any]]]:
        items: dict[str, list[dict[str, Any]]] = json.loads(zlib.decompress(self._blob))
        return items

    @property
    def entries(self) -> list[Entry]:
        return [Entry(**e) for e in self._items()["entries"]] + list(self._late)

    @property
    def rejections(self) -> list[Rejection]:
        return [Rejection(**r) for r in self._items()["rejections"]]

    def add(self, direction: str, kind: str, **fields: Any) -> Entry:
        entry = Entry(t=self.now(), direction=direction, kind=kind, **fields)
        entry.size = json_size(entry.to_json())
        self._late.append(entry)
        self._late_bytes += entry.size
        while self._late and (
            self._frozen_bytes + self._late_bytes > self.max_bytes or len(self._late) > 1000
        ):
            self._late_bytes -= self._late.popleft().size
            self.dropped_entries += 1
        return entry

    @property
    def size(self) -> int:
        return self._frozen_bytes + self._late_bytes

    def truncation(self) -> dict[str, int]:
        return _truncation(self)

    def to_json(self) -> dict[str, Any]:
        items = self._items()
        return {
            "session_id": self.session_id,
            "mode": self.mode,
            "entries": items["entries"] + [e.to_json() for e in self._late],
            "rejections": items["rejections"],
            "truncated": self.truncation(),
        }


def _truncation(record: SessionRecord | ClosedRecord) -> dict[str, int]:
    return {
        "dropped_entries": record.dropped_entries,
        "dropped_rejections": record.dropped_rejections,
        "elided_bodies": record.elided_bodies,
        "max_bytes": record.max_bytes,
    }

"""Per-session record: every HTTP request and data-channel message both ways, plus rejections.

The record is what the conformance harness reads. It lives in memory, is bounded, and can be followed
live by subscribers (the admin WebSocket).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

MAX_ENTRIES = 20_000


@dataclass
class Entry:
    t: float  # seconds since the session was created
    direction: str  # "in" (client -> server), "out" (server -> client), "http", "event", "fault"
    kind: str  # e.g. "command", "message", "ack", "error", "ping", "GET /session"
    connection_id: int | None = None
    channel: str | None = None
    chunk: int | None = None
    body: Any = None
    request_id: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"t": round(self.t, 4), "direction": self.direction, "kind": self.kind}
        for key in ("connection_id", "channel", "chunk", "body"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.request_id:
            out["request_id"] = self.request_id
        return out


@dataclass
class Rejection:
    """An inbound frame or command the server refused before the model (runtime level)."""

    t: float
    connection_id: int | None
    code: str
    message: str
    command: str | None = None
    raw: str = ""

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
    started_at: float = field(default_factory=time.monotonic)
    entries: deque[Entry] = field(default_factory=lambda: deque(maxlen=MAX_ENTRIES))
    rejections: list[Rejection] = field(default_factory=list)
    _subscribers: set[asyncio.Queue[dict[str, Any]]] = field(default_factory=set)

    def now(self) -> float:
        return time.monotonic() - self.started_at

    def add(self, direction: str, kind: str, **fields: Any) -> Entry:
        entry = Entry(t=self.now(), direction=direction, kind=kind, **fields)
        self.entries.append(entry)
        self._publish(entry.to_json())
        return entry

    def reject(
        self, connection_id: int | None, code: str, message: str, command: str | None, raw: str
    ) -> None:
        rejection = Rejection(self.now(), connection_id, code, message, command, raw[:2000])
        self.rejections.append(rejection)
        self._publish({"rejection": rejection.to_json()})

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
        }

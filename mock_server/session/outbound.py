"""Outbound messages of one session: send to one connection or to every ready one, and record what left."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from mock_server.model.helios import Message
from mock_server.session.connection import Connection
from mock_server.session.record import SessionRecord
from mock_server.wire import common as w


class Outbox:
    """Sends wire-neutral outbound messages; every message that left is recorded with the current chunk."""

    def __init__(
        self,
        record: SessionRecord,
        connections: dict[int, Connection],
        current_chunk: Callable[[], int],
    ) -> None:
        self._record = record
        self._connections = connections
        self._current_chunk = current_chunk

    def send_out(self, conn: Connection, out: w.Outbound) -> None:
        if conn.send(out):
            self._record.add(
                "out",
                type(out).__name__,
                connection_id=conn.id,
                chunk=self._current_chunk(),
                body=record_body(out),
                request_id=getattr(out, "reply_to", ""),
            )

    def send(self, conn: Connection, message: Message, reply_to: str = "") -> None:
        self.send_out(conn, w.ModelMessageOut(message.type, message.data, reply_to=reply_to))

    def broadcast(self, message: Message) -> None:
        for conn in self._connections.values():
            if conn.ready:
                self.send(conn, message)


def record_body(item: Any) -> Any:
    """A message as the record stores it (dataclass fields; the schema document shortened)."""
    try:
        body = asdict(item)
    except TypeError:
        return repr(item)
    if "openapi" in body:
        body["openapi"] = "<openapi document>"
    return body

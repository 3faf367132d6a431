"""A session's WebRTC signalling: register connections, answer offers (first POST or PUT reconnect), take
trickled candidates, and say which answer a poll gets.

Two route shapes lead here (docs/PROTOCOL.md §4): the flat legacy `sdp_params` route (JS 2.9.0), whose one
connection is 1001, and the per-connection routes, where `connect(connection_id=N)` may skip registration.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from mock_server.errors import Conflict, Invalid, NotFound, TooLarge
from mock_server.logging_setup import SessionLogger
from mock_server.session.connection import Connection
from mock_server.session.faults import OfferEffect
from mock_server.session.record import SessionRecord
from mock_server.transport.peer import OfferError, PeerTransport, TrickledCandidate, offer_ufrag
from mock_server.wire import provisional_codec

log = logging.getLogger("helios_mock.session")

LEGACY_CONNECTION_ID = 1001
FIRST_REGISTERED_ID = 2000
ANSWER_TIMEOUT = 5.0  # seconds to answer one offer


@dataclass(frozen=True)
class AnswerPoll:
    """What a GET of sdp_params gets: 202 with `{}` while the answer is not ready, else 200 and the answer."""

    status: int
    body: dict[str, Any]


ConnectionFactory = Callable[[int, bool], Connection]
Spawn = Callable[[str, Coroutine[Any, Any, None]], object]
OfferHook = Callable[[], OfferEffect]
AnsweredHook = Callable[[PeerTransport], None]


class Signalling:
    """Owns the session's connections and everything signalled over HTTP for them."""

    def __init__(
        self,
        session_id: str,
        record: SessionRecord,
        make_connection: ConnectionFactory,
        spawn: Spawn,
        *,
        max_connections: int = 16,
        max_candidates: int = 256,
        on_offer: OfferHook | None = None,
        on_answered: AnsweredHook | None = None,
    ) -> None:
        self._session_id = session_id
        self._log = SessionLogger(log, session=session_id)
        self._max_connections = max_connections  # registered connections (each may hold a peer)
        self._max_candidates = max_candidates  # trickled candidates per connection
        self._on_offer = on_offer
        self._on_answered = on_answered
        self._record = record
        self._make_connection = make_connection
        self._spawn = spawn
        self.connections: dict[int, Connection] = {}
        self._next_id = FIRST_REGISTERED_ID

    # ------------------------------------------------------------------ connections

    def register(self, connection_id: int | None = None, *, legacy: bool = False) -> Connection:
        """A new connection: the next free id, or `connection_id` when the client chose one."""
        if len(self.connections) >= self._max_connections:
            raise Conflict(
                f"session {self._session_id} already has {len(self.connections)} connections, the limit "
                "(max_connections_per_session); reuse one (PUT its sdp_params) or end the session"
            )
        if connection_id is None:
            connection_id = self._next_id
            self._next_id += 1
        elif connection_id >= self._next_id:
            self._next_id = connection_id + 1
        conn = self._make_connection(connection_id, legacy)
        self.connections[connection_id] = conn
        self._log.info(
            "connection %s registered%s",
            connection_id,
            " (legacy)" if legacy else "",
            extra={"connection": connection_id},
        )
        return conn

    def _legacy(self) -> Connection | None:
        return next((c for c in self.connections.values() if c.legacy), None)

    def _for_offer(self, connection_id: int | None, legacy: bool) -> Connection:
        if legacy:
            conn = self._legacy()
            if conn is None:
                free = LEGACY_CONNECTION_ID not in self.connections
                conn = self.register(LEGACY_CONNECTION_ID if free else None, legacy=True)
            return conn
        conn = self.connections.get(connection_id) if connection_id is not None else None
        if conn is None:  # connect(connection_id=N) skips registration: register on the fly
            conn = self.register(connection_id)
        return conn

    # ------------------------------------------------------------------ offer / answer

    async def offer(
        self,
        connection_id: int | None,
        sdp_offer: str,
        track_mapping: list[dict[str, Any]],
        client_info: dict[str, Any],
        *,
        legacy: bool,
    ) -> Connection:
        """Answer an offer on the legacy route (`legacy`) or for `connection_id`; Invalid if it can't be."""
        conn = self._for_offer(connection_id, legacy)
        try:
            await self._answer_offer(conn, sdp_offer, track_mapping, client_info)
        except OfferError as exc:
            raise Invalid(str(exc)) from exc
        return conn

    async def _answer_offer(
        self,
        conn: Connection,
        sdp_offer: str,
        track_mapping: list[dict[str, Any]],
        client_info: dict[str, Any],
    ) -> None:
        """Answer an offer (first POST or PUT reconnect); the answer is kept for the GET poll."""
        old_peer = conn.peer
        effect = self._on_offer() if self._on_offer is not None else OfferEffect()
        if not conn.codec_latched:
            conn.codec = provisional_codec(
                flat_route=conn.legacy, sdk_type=client_info.get("sdk_type"), offer_sdp=sdp_offer
            )
        peer = conn.new_peer()
        if old_peer is not None:  # a reconnect: the previous peer goes
            self._spawn(f"closing connection {conn.id}'s previous peer", old_peer.close())
        ufrag = offer_ufrag(sdp_offer)
        early = [c for c in conn.early_candidates if c.ufrag in (None, ufrag)]
        early_final, conn.early_candidates, conn.early_final = conn.early_final, [], False
        try:
            assert conn.video is not None
            conn.answer_sdp = await asyncio.wait_for(
                peer.answer(sdp_offer, _video_mid(track_mapping), conn.video, early, early_final),
                timeout=ANSWER_TIMEOUT,
            )
        except (OfferError, TimeoutError) as exc:
            conn.answer_error = str(exc) or "answering the offer timed out"
            self._log.warning("connection %s: %s", conn.id, conn.answer_error, extra={"connection": conn.id})
            raise OfferError(conn.answer_error) from exc
        self._record.add("event", "answered offer", connection_id=conn.id, body={"codec": conn.codec.name})
        conn.answer_ready_at = time.monotonic() + effect.hold
        if effect.unreachable:  # ice_failure: the answer's candidates lead to a closed socket
            self._log.info(
                "connection %s: ICE made unreachable (fault)", conn.id, extra={"connection": conn.id}
            )
            self._spawn(f"making connection {conn.id}'s ICE unreachable", peer.close())
        elif self._on_answered is not None:
            self._on_answered(peer)

    def answer(self, connection_id: int | None, *, legacy: bool) -> AnswerPoll:
        """The answer for a GET poll of the legacy route (`legacy`) or of `connection_id`."""
        if legacy:
            conn = self._legacy()
        else:
            conn = self.connections.get(connection_id) if connection_id is not None else None
        if conn is None:
            if legacy:
                raise NotFound("no offer was posted for this session; POST sdp_params first")
            raise NotFound(f"unknown connection {connection_id}")
        if conn.answer_error:
            raise Invalid(f"the offer could not be answered: {conn.answer_error}")
        if conn.answer_sdp is None or time.monotonic() < conn.answer_ready_at:
            return AnswerPoll(202, {})
        body: dict[str, Any] = {"sdp_answer": conn.answer_sdp}
        if not legacy:
            body["connection_id"] = conn.id
        return AnswerPoll(200, body)

    # ------------------------------------------------------------------ trickle

    async def trickle(self, connection_id: int, candidates: list[dict[str, Any]], is_final: bool) -> None:
        """Client candidates for a connection (registered on the fly, like an offer, if unknown)."""
        conn = self.connections.get(connection_id) or self.register(connection_id)
        items = [
            TrickledCandidate(str(c.get("candidate", "")), c.get("sdp_mid"), c.get("sdp_mline_index"))
            for c in candidates
            if isinstance(c, dict)
        ]
        if conn.candidates_taken + len(items) > self._max_candidates:
            raise TooLarge(
                f"connection {conn.id} has taken {conn.candidates_taken} candidates; {len(items)} more would "
                f"pass the limit of {self._max_candidates} (max_candidates_per_connection)"
            )
        conn.candidates_taken += len(items)
        peer = conn.peer
        if peer is not None and peer.answered and all(c.ufrag in (None, peer.remote_ufrag) for c in items):
            await peer.add_candidates(items, is_final)
            return
        # Candidates of an offer not seen yet (they arrive before it, also on a reconnect): keep them.
        conn.early_candidates.extend(items)
        conn.early_final = conn.early_final or is_final


def _video_mid(track_mapping: list[dict[str, Any]]) -> str | None:
    """The mid the client mapped main_video to, if it said."""
    return next(
        (
            str(t.get("mid"))
            for t in track_mapping
            if t.get("name") == "main_video" and t.get("mid") is not None
        ),
        None,
    )

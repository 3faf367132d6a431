"""One Helios session: a small orchestrator over parts with one job each.

Parts: signalling (connections, offers, answers, candidates), uploads (the upload slots), inbound (decode,
record, dispatch), outbound (send and record), clock (the chunk clock), watchdog (ping watchdog, reconnect
grace, maximum duration), tasks (the supervisor of the background tasks), record (what happened).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

from mock_server.config import Settings
from mock_server.faults import FaultRegistry
from mock_server.logging_setup import SessionLogger
from mock_server.media.encoded_chunks import EncodedChunkCache
from mock_server.media.feed import FrameFeed
from mock_server.metrics import Metrics
from mock_server.model.helios import Helios
from mock_server.session.clock import ChunkClock
from mock_server.session.connection import Connection
from mock_server.session.faults import FaultActions, SessionFaults
from mock_server.session.inbound import RECORDER_DISABLED, TRACKS, InboundHandler
from mock_server.session.outbound import Outbox
from mock_server.session.record import SessionRecord
from mock_server.session.recording import Recording
from mock_server.session.signalling import Signalling
from mock_server.session.tasks import TaskSupervisor
from mock_server.session.uploads import Upload, UploadStore
from mock_server.session.watchdog import Watchdog, expiry_reason
from mock_server.transport.peer import PeerTransport
from mock_server.transport.video_track import PacketLoss, count_sent_frames
from mock_server.wire import common as w
from mock_server.wire import provisional_codec

__all__ = ["RECORDER_DISABLED", "TRACKS", "Session", "Upload"]

log = logging.getLogger("helios_mock.session")

FLUSH_TIMEOUT = 1.0  # seconds the goodbye notices get to leave before the transports close


class Session:
    """A running Helios session, shared by all its connections."""

    def __init__(
        self,
        session_id: str,
        *,
        mode: str,
        settings: Settings,
        schema: dict[str, Any],
        account: str | None = None,
        max_duration: float | None = None,
        chunk_cache: EncodedChunkCache | None = None,
        on_closed: Callable[[Session], None] | None = None,
        fault_registry: FaultRegistry | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.id = session_id
        self.metrics = metrics if metrics is not None else Metrics()  # the registry's, or a private one
        self.log = SessionLogger(log, session=session_id)
        self.mode = mode  # "local" | "production"
        self.settings = settings
        self.account = account
        self.max_duration = settings.max_session_duration if max_duration is None else max_duration
        self.created_at = time.monotonic()
        self.record = SessionRecord(
            session_id,
            mode,
            max_bytes=settings.max_record_bytes,
            max_entry_bytes=settings.max_record_entry_bytes,
        )
        self.helios = Helios(draw_seed=lambda: secrets.randbelow(2**31))
        self.feed = FrameFeed()
        self.chunk_cache = chunk_cache
        self.closed = False
        self.close_reason: str | None = None
        self._on_closed = on_closed
        self._closing: asyncio.Task[None] | None = None
        self.faults = SessionFaults(
            session_id, fault_registry, self.record, self.created_at, on_fired=self.metrics.fault
        )
        self.packet_loss = PacketLoss()
        self.tasks = TaskSupervisor(session_id, self.record, self._task_failed)
        self.uploads = UploadStore(session_id, settings, self.record, on_put=self.faults.on_upload_put)
        self.signalling = self._make_signalling()
        self.connections: dict[int, Connection] = self.signalling.connections
        self.outbox = Outbox(self.record, self.connections, lambda: self.helios.current_chunk)
        self.clock = self._make_clock()
        self.recording = Recording(
            session_id,
            enabled=settings.recording,
            fps=settings.fps,
            retention=settings.recording_retention,
            in_progress=self._frames_in_progress,
        )
        self.clock.on_chunk_done = self.recording.add_chunk
        self.watchdog = self._make_watchdog()
        self.inbound = self._make_inbound(schema)
        self.faults.actions = self._fault_actions()

    def _make_clock(self) -> ChunkClock:
        return ChunkClock(
            self.id,
            self.settings,
            self.helios,
            self.feed,
            has_live_client=lambda: bool(self.live_connections),
            broadcast=self.outbox.broadcast,
            on_chunk_begin=self.faults.on_chunk_begin,
            on_chunk_generated=self.metrics.chunk_generated,
        )

    def _make_watchdog(self) -> Watchdog:
        return Watchdog(
            self.id,
            self.settings,
            self.created_at,
            self.connections,
            drop=self.drop_connection,
            end=self.close,
            max_duration=self.max_duration,
            on_tick=lambda: self.faults.on_tick(self.helios.current_chunk),
        )

    def _make_inbound(self, schema: dict[str, Any]) -> InboundHandler:
        return InboundHandler(
            self.id,
            helios=self.helios,
            schema=schema,
            record=self.record,
            uploads=self.uploads,
            outbox=self.outbox,
            is_closed=lambda: self.closed,
            on_command_done=self.clock.wake,
            faults=self.faults,
            recording=self.recording,
            settings=self.settings,
            metrics=self.metrics,
        )

    # ------------------------------------------------------------------ state

    def start(self) -> None:
        self.tasks.spawn("chunk clock", self.clock.run())
        self.tasks.spawn("watchdog", self.watchdog.run())
        self.log.info("session started (%s mode)", self.mode)

    def _frames_in_progress(self) -> int:
        """Frames of the chunk being generated that are already out (0 between chunks)."""
        latest = self.feed.latest
        return 0 if latest is None or self.feed.chunk_over else latest.index + 1

    @property
    def chunks_generated(self) -> int:
        return self.clock.chunks_generated

    @property
    def live_connections(self) -> list[Connection]:
        return [c for c in self.connections.values() if c.ready]

    @property
    def local_state(self) -> str:
        """RT2-style local state names (docs/PROTOCOL.md §1.4)."""
        if self.closed:
            return "CLOSING"
        if self.live_connections:
            return "STREAMING"
        if any(c.ever_ready for c in self.connections.values()):
            return "ORPHANED"
        return "WAITING"

    # ------------------------------------------------------------------ connections

    def _new_connection(self, connection_id: int, legacy: bool) -> Connection:
        return Connection(
            connection_id,
            session_id=self.id,
            legacy=legacy,
            codec=provisional_codec(flat_route=legacy, sdk_type=None, offer_sdp=""),
            feed=self.feed,
            chunk_cache=self.chunk_cache,
            record=self.record,
            on_inbound=self.inbound.handle,
            on_change=self._connection_changed,
        )

    def _connection_changed(self, conn: Connection) -> None:
        self._count_connection(conn)
        if conn.ready:
            conn.ever_ready = True
            self.watchdog.connection_live()
            if not conn.greeted:
                conn.greeted = True
                self.record.add("event", "connection ready", connection_id=conn.id)
                self.outbox.send(conn, self.helios.state_message())  # to this one only (docs/HELIOS.md §3.5)
        elif not self.closed:
            self.watchdog.connection_lost()
        self.clock.wake()

    def _count_connection(self, conn: Connection) -> None:
        """The connections gauge: a connection counts (under its codec) from the moment it is ready with a
        latched codec until it stops being ready; a reconnect counts again."""
        if conn.ready and conn.codec_latched and conn.counted_as is None:
            conn.counted_as = conn.codec.name
            self.metrics.connection_opened(conn.counted_as)
        elif not conn.ready and conn.counted_as is not None:
            self.metrics.connection_closed(conn.counted_as)
            conn.counted_as = None

    async def drop_connection(self, conn: Connection, why: str) -> None:
        self.log.info("closing connection %s (%s)", conn.id, why, extra={"connection": conn.id})
        self.record.add("event", "connection closed", connection_id=conn.id, body={"reason": why})
        if conn.peer is not None:
            await conn.peer.close()
        self._connection_changed(conn)

    def _make_signalling(self) -> Signalling:
        finish = functools.partial(self.tasks.spawn, cancel_on_close=False)
        return Signalling(
            self.id,
            self.record,
            self._new_connection,
            finish,
            max_connections=self.settings.max_connections_per_session,
            max_candidates=self.settings.max_candidates_per_connection,
            on_offer=self.faults.on_offer,
            on_answered=self._answered,
        )

    def _answered(self, peer: PeerTransport) -> None:
        self.packet_loss.watch(peer.pc)
        count_sent_frames(peer.pc, self.metrics.frame_sent)

    # ------------------------------------------------------------------ fault effects

    def _fault_actions(self) -> FaultActions:
        return FaultActions(
            end=self._end_by_fault,
            drop_transports=self._drop_transports,
            stall=self.clock.stall,
            slow=self.clock.slow,
            media_loss=self.packet_loss.start,
            notify=self._notify_all,
            expiry_reason=lambda: expiry_reason(self.max_duration),
        )

    def _notify_all(self, out: w.Outbound) -> None:
        for conn in self.live_connections:
            self.outbox.send_out(conn, out)

    async def _drop_transports(self, why: str) -> None:
        """Close every peer as if the network dropped; the reconnect grace starts (transport_drop)."""
        for conn in list(self.connections.values()):
            if conn.peer is not None:
                await self.drop_connection(conn, why)

    async def _end_by_fault(self, reason: str) -> None:
        self.clock.stop()  # no further chunk once the end has begun
        await self.close(reason)

    # ------------------------------------------------------------------ the end

    async def close(self, reason: str) -> None:
        """End the session: tell every client why, close every peer, stop the parts, free uploads.

        The work runs in a task of its own, shielded: a caller that is itself one of the session's tasks
        (the watchdog) or an HTTP request that goes away can never cut it short. Every caller returns once
        the session has ended.
        """
        if self._closing is None:
            self.closed = True
            self.close_reason = reason
            self._closing = asyncio.get_running_loop().create_task(
                self._end(reason), name=f"{self.id}: close"
            )
        if asyncio.current_task() is not self._closing:
            await asyncio.shield(self._closing)

    async def _end(self, reason: str) -> None:
        self.log.info("session ends: %s", reason)
        self.record.add("event", "session_ended", body={"reason": reason})
        connections = list(self.connections.values())
        try:
            for conn in connections:
                conn.send(w.SessionEndedOut(reason))
            # let the notices leave (each channel's queue handed to the transport), then close transports
            await asyncio.gather(*(c.flush(FLUSH_TIMEOUT) for c in connections))
            self.clock.stop()
            self.watchdog.stop()
            self.feed.close()
            await asyncio.gather(*(c.close() for c in connections), return_exceptions=True)
            self.tasks.cancel_all()
        finally:
            for conn in connections:
                self._count_connection(conn)  # closed now, whether or not its peer reported it
            self.uploads.clear()
            self.recording.session_closed()
            if self._on_closed is not None:
                self._on_closed(self)

    async def _task_failed(self, what: str, exc: BaseException) -> None:
        await self.close(f"internal error in the {what}: {exc}")

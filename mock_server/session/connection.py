"""A registered connection: one client's peer, its data channels, its latched codec and track gating."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiortc import RTCDataChannel

from mock_server.logging_setup import SessionLogger
from mock_server.media.encoded_chunks import EncodedChunkCache
from mock_server.media.feed import FrameFeed
from mock_server.session.record import SessionRecord
from mock_server.transport.peer import PeerTransport, TrickledCandidate
from mock_server.transport.video_track import EncodedVideoTrack, RawVideoTrack
from mock_server.wire import codec_for_first_frame
from mock_server.wire.common import CONTROL, DATA, Codec, Outbound

log = logging.getLogger("helios_mock.connection")

InboundHandler = Callable[["Connection", str, "str | bytes"], Awaitable[None]]


class Connection:
    """Everything the session knows about one client connection (survives PUT reconnects)."""

    def __init__(
        self,
        connection_id: int,
        *,
        session_id: str | None = None,
        legacy: bool,
        codec: Codec,
        feed: FrameFeed,
        chunk_cache: EncodedChunkCache | None,
        record: SessionRecord,
        on_inbound: InboundHandler,
        on_change: Callable[[Connection], None],
    ) -> None:
        self.id = connection_id
        self.session_id = session_id
        self.log = SessionLogger(log, session=session_id, connection=connection_id)
        self.legacy = legacy  # the flat sdp_params route's default connection (JS 2.9.0)
        self.codec = codec
        self.codec_latched = False
        self.counted_as: str | None = None  # the encoding it counts under in the connections gauge, if live
        self._feed = feed
        self._chunk_cache = chunk_cache
        self._record = record
        self._on_inbound = on_inbound
        self._on_change = on_change
        self.peer: PeerTransport | None = None
        self.video: RawVideoTrack | EncodedVideoTrack | None = None
        self._frames_before = [0, 0]  # frames sent / skipped by the tracks of earlier peers
        # RT2 rule: registered connections start with outputs paused until ResumeTrack; legacy ones don't.
        self.video_paused = not legacy
        self.channels: dict[str, RTCDataChannel] = {}
        self.answer_sdp: str | None = None
        self.answer_ready_at = 0.0  # monotonic time the answer may be served (sdp_slow / sdp_timeout faults)
        self.early_candidates: list[TrickledCandidate] = []
        self.early_final = False
        self.candidates_taken = 0  # trickled candidates taken for the current offer, applied or buffered
        self.answer_error: str | None = None
        self.last_inbound = time.monotonic()
        self.ever_ready = False
        self.greeted = False
        self.closed = False
        self._inbox: asyncio.Queue[tuple[str, str | bytes]] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ state

    @property
    def ready(self) -> bool:
        """Connected, with the data channel open (what the clients call `ready`)."""
        peer_ok = self.peer is not None and self.peer.connection_state == "connected"
        data = self.channels.get(DATA)
        return peer_ok and data is not None and data.readyState == "open" and not self.closed

    def describe(self) -> dict[str, Any]:
        return {
            "connection_id": self.id,
            "legacy": self.legacy,
            "codec": self.codec.name,
            "ready": self.ready,
            "video_paused": self.video_paused,
            "frames_sent": self._frames_before[0] + (self.video.frames_sent if self.video else 0),
            "frames_skipped": self._frames_before[1] + (self.video.frames_skipped if self.video else 0),
        }

    # ------------------------------------------------------------------ signalling

    def new_peer(self) -> PeerTransport:
        """A fresh peer for an offer (first POST or a PUT reconnect); the old one is closed by the caller."""
        self.answer_sdp = None
        self.answer_error = None
        if self.video is not None:  # keep the totals of earlier peers (reconnects)
            self._frames_before[0] += self.video.frames_sent
            self._frames_before[1] += self.video.frames_skipped
        self.peer = PeerTransport(
            on_channel=self._channel_opened,
            on_state=self._peer_state,
            session=self.session_id,
            connection=self.id,
        )
        if self._chunk_cache is not None:
            self.video = EncodedVideoTrack(self._feed, self._chunk_cache, paused=self.video_paused)
        else:
            self.video = RawVideoTrack(self._feed, paused=self.video_paused)
        self.channels = {}
        self.greeted = False
        self.candidates_taken = len(self.early_candidates)  # the limit counts per offer
        return self.peer

    def _peer_state(self, state: str) -> None:
        self.log.info("connection %s: peer %s", self.id, state)
        self._record.add("event", f"peer {state}", connection_id=self.id)
        if state == "connected":
            self.last_inbound = time.monotonic()
        self._on_change(self)

    def _channel_opened(self, channel: RTCDataChannel) -> None:
        label = CONTROL if channel.label == CONTROL else DATA
        self.channels[label] = channel
        self.log.info("connection %s: data channel %r open", self.id, channel.label)

        @channel.on("message")
        def _message(raw: str | bytes) -> None:
            self._inbox.put_nowait((label, raw))

        @channel.on("close")
        def _closed() -> None:
            if self.channels.get(label) is channel:
                del self.channels[label]
            self._on_change(self)

        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._drain())
        self._on_change(self)

    async def _drain(self) -> None:
        """Process inbound frames strictly in arrival order."""
        while True:
            label, raw = await self._inbox.get()
            self.last_inbound = time.monotonic()
            if not self.codec_latched:
                self.codec = codec_for_first_frame(raw)
                self.codec_latched = True
                self.log.info("connection %s speaks %s", self.id, self.codec.name)
                self._on_change(self)  # now it has an encoding (the connections gauge counts it)
            try:
                await self._on_inbound(self, label, raw)
            except Exception:  # a bug while handling one frame must not stop the connection
                self.log.exception("connection %s: failed to handle an inbound frame", self.id)

    # ------------------------------------------------------------------ output

    def send(self, out: Outbound) -> bool:
        """Encode with this connection's codec and send; False when withheld, no channel is open, or the
        send failed (logged and recorded: a message over the SCTP limit or a channel closing never
        propagates to the caller, so no task dies of it)."""
        if self.closed:
            return False
        label = "?"
        try:
            encoded = self.codec.encode(out)
            if encoded is None:
                return False
            label, frame = encoded
            channel = self.channels.get(label)
            if channel is None or channel.readyState != "open":
                return False
            channel.send(frame)
        except Exception as exc:
            self._send_failed(out, label, exc)
            return False
        return True

    def _send_failed(self, out: Outbound, label: str, exc: Exception) -> None:
        kind = type(out).__name__
        self.log.warning("connection %s: could not send %s on %r: %s", self.id, kind, label, exc)
        self._record.add(
            "event",
            "send failed",
            connection_id=self.id,
            channel=label,
            body={"message": kind, "error": f"{type(exc).__name__}: {exc}"},
        )

    def set_video_paused(self, paused: bool) -> None:
        self.video_paused = paused
        if self.video is not None:
            self.video.set_paused(paused)

    async def flush(self, timeout: float) -> None:
        """Wait (at most `timeout` s) until what was queued on the open data channels has been sent."""
        if self.peer is not None:
            await self.peer.flush([c for c in self.channels.values() if c.readyState == "open"], timeout)

    async def close(self) -> None:
        """Stop for good and let go of the peer, its track, channels and buffers (totals are kept)."""
        self.closed = True
        if self._worker is not None:
            self._worker.cancel()
        if self.video is not None:
            self.video.stop()
        if self.peer is not None:
            await self.peer.close()
        if self.video is not None:
            self._frames_before[0] += self.video.frames_sent
            self._frames_before[1] += self.video.frames_skipped
        self.peer, self.video, self._worker = None, None, None
        self.channels = {}
        self.early_candidates = []
        self._inbox = asyncio.Queue()

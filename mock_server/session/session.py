"""One Helios session: the model, its connections, uploads, the chunk clock and the record.

The session is the only place that turns wire-neutral inbound messages into Helios calls and Helios
outcomes into outbound messages; it never sees JSON or protobuf.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from mock_server.config import Settings
from mock_server.constants import CHUNK_FRAMES
from mock_server.media.encoded_chunks import EncodedChunkCache
from mock_server.media.feed import FrameFeed, FrameRef
from mock_server.media.frames import ChunkRenderer
from mock_server.model.commands import UPLOAD_PARAMS, CommandRejected, validate_command
from mock_server.model.helios import Helios, Message
from mock_server.model.images import UploadedFile
from mock_server.model.model_schema import capabilities_commands
from mock_server.session.connection import Connection
from mock_server.session.record import SessionRecord
from mock_server.transport.peer import OfferError, TrickledCandidate, offer_ufrag
from mock_server.wire import common as w
from mock_server.wire import provisional_codec

log = logging.getLogger("helios_mock.session")

TRACKS = [{"name": "main_video", "kind": "video", "direction": "recvonly"}]
RECORDER_DISABLED = "recorder disabled"


@dataclass
class Upload:
    """An upload slot created by POST /sessions/{id}/uploads and filled by the presigned PUT."""

    presigned_id: str
    name: str
    mime_type: str
    size: int
    created_at: float = field(default_factory=time.monotonic)
    data: bytes | None = None
    announced: bool = False
    arrived: asyncio.Event = field(default_factory=asyncio.Event)


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
        chunk_cache: EncodedChunkCache | None = None,
        on_closed: Callable[[Session], None] | None = None,
    ) -> None:
        self.id = session_id
        self.mode = mode  # "local" | "production"
        self.settings = settings
        self.schema = schema
        self.account = account
        self.created_at = time.monotonic()
        self.record = SessionRecord(session_id, mode)
        self.helios = Helios(draw_seed=lambda: secrets.randbelow(2**31))
        self.connections: dict[int, Connection] = {}
        self.uploads: dict[str, Upload] = {}
        self.feed = FrameFeed()
        self.chunk_cache = chunk_cache
        self.closed = False
        self.close_reason: str | None = None
        self.chunks_generated = 0
        self._on_closed = on_closed
        self._next_connection_id = 2000
        self._wake = asyncio.Event()
        self._orphaned_since: float | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._command_lock = asyncio.Lock()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._clock()), loop.create_task(self._watchdog())]
        log.info("session %s started (%s mode)", self.id, self.mode)

    @property
    def live_connections(self) -> list[Connection]:
        return [c for c in self.connections.values() if c.ready]

    @property
    def local_state(self) -> str:
        """RT2-style local state names (PROTOCOL.md §1.4)."""
        if self.closed:
            return "CLOSING"
        if self.live_connections:
            return "STREAMING"
        if any(c.ever_ready for c in self.connections.values()):
            return "ORPHANED"
        return "WAITING"

    async def close(self, reason: str) -> None:
        """End the session: tell every client why, close every peer, stop the clock, free uploads."""
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        log.info("session %s ends: %s", self.id, reason)
        self.record.add("event", "session_ended", body={"reason": reason})
        for conn in self.connections.values():
            conn.send(w.SessionEndedOut(reason))
        await asyncio.sleep(0.05)  # let the notice leave before the transports close
        self.feed.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*(c.close() for c in self.connections.values()), return_exceptions=True)
        self.uploads.clear()
        if self._on_closed is not None:
            self._on_closed(self)

    # ------------------------------------------------------------------ connections & signalling

    def register_connection(self, connection_id: int | None = None, *, legacy: bool = False) -> Connection:
        if connection_id is None:
            connection_id = self._next_connection_id
            self._next_connection_id += 1
        elif connection_id >= self._next_connection_id:
            self._next_connection_id = connection_id + 1
        conn = Connection(
            connection_id,
            legacy=legacy,
            codec=provisional_codec(flat_route=legacy, sdk_type=None, offer_sdp=""),
            feed=self.feed,
            chunk_cache=self.chunk_cache,
            record=self.record,
            on_inbound=self._handle_inbound,
            on_change=self._connection_changed,
        )
        self.connections[connection_id] = conn
        log.info(
            "session %s: connection %s registered%s", self.id, connection_id, " (legacy)" if legacy else ""
        )
        return conn

    async def offer(
        self, conn: Connection, sdp_offer: str, track_mapping: list[dict], client_info: dict
    ) -> None:
        """Answer an offer (first POST or PUT reconnect); the answer is kept for the GET poll."""
        old_peer = conn.peer
        if not conn.codec_latched:
            conn.codec = provisional_codec(
                flat_route=conn.legacy, sdk_type=client_info.get("sdk_type"), offer_sdp=sdp_offer
            )
        video_mid = next(
            (
                str(t.get("mid"))
                for t in track_mapping
                if t.get("name") == "main_video" and t.get("mid") is not None
            ),
            None,
        )
        peer = conn.new_peer()
        if old_peer is not None:
            asyncio.get_running_loop().create_task(old_peer.close())
        ufrag = offer_ufrag(sdp_offer)
        early = [c for c in conn.early_candidates if c.ufrag in (None, ufrag)]
        early_final, conn.early_candidates, conn.early_final = conn.early_final, [], False
        try:
            assert conn.video is not None
            conn.answer_sdp = await asyncio.wait_for(
                peer.answer(sdp_offer, video_mid, conn.video, early, early_final), timeout=5
            )
        except (OfferError, TimeoutError) as exc:
            conn.answer_error = str(exc) or "answering the offer timed out"
            log.warning("session %s connection %s: %s", self.id, conn.id, conn.answer_error)
            raise OfferError(conn.answer_error) from exc
        self.record.add("event", "answered offer", connection_id=conn.id, body={"codec": conn.codec.name})

    async def add_candidates(self, conn: Connection, candidates: list[dict], is_final: bool) -> None:
        items = [
            TrickledCandidate(str(c.get("candidate", "")), c.get("sdp_mid"), c.get("sdp_mline_index"))
            for c in candidates
            if isinstance(c, dict)
        ]
        peer = conn.peer
        if peer is not None and peer.answered and all(c.ufrag in (None, peer.remote_ufrag) for c in items):
            await peer.add_candidates(items, is_final)
            return
        # Candidates of an offer not seen yet (they arrive before it, also on a reconnect): keep them.
        conn.early_candidates.extend(items)
        conn.early_final = conn.early_final or is_final

    def _connection_changed(self, conn: Connection) -> None:
        if conn.ready:
            conn.ever_ready = True
            self._orphaned_since = None
            if not conn.greeted:
                conn.greeted = True
                self.record.add("event", "connection ready", connection_id=conn.id)
                self._send(conn, self.helios.state_message())  # to this connection only (HELIOS.md §3.5)
        elif (
            not self.closed
            and not self.live_connections
            and self._orphaned_since is None
            and any(c.ever_ready for c in self.connections.values())
        ):
            self._orphaned_since = time.monotonic()
            log.info(
                "session %s has no live connection; kept %.0f s for a reconnect",
                self.id,
                self.settings.reconnect_grace,
            )
        self._wake.set()

    async def drop_connection(self, conn: Connection, why: str) -> None:
        log.info("session %s: closing connection %s (%s)", self.id, conn.id, why)
        self.record.add("event", "connection closed", connection_id=conn.id, body={"reason": why})
        if conn.peer is not None:
            await conn.peer.close()
        self._connection_changed(conn)

    # ------------------------------------------------------------------ uploads

    def create_upload(self, name: str, mime_type: str, size: int) -> Upload:
        upload = Upload(presigned_id=secrets.token_hex(12), name=name, mime_type=mime_type, size=size)
        self.uploads[upload.presigned_id] = upload
        return upload

    async def _resolve_uploads(self, command: str, params: Any) -> dict[str, UploadedFile]:
        resolved: dict[str, UploadedFile] = {}
        for name in UPLOAD_PARAMS.get(command, ()):
            ref = getattr(params, name, None)
            if ref is None:
                continue
            upload = self.uploads.get(ref.upload_id)
            if upload is None:
                raise CommandRejected(
                    "unresolved_upload",
                    f"{command}: upload {ref.upload_id!r} is unknown to this session; create it with "
                    f"POST /sessions/{self.id}/uploads and PUT its bytes before referencing it",
                )
            if upload.data is None:
                try:
                    await asyncio.wait_for(upload.arrived.wait(), timeout=self.settings.upload_wait)
                except TimeoutError:
                    raise CommandRejected(
                        "unresolved_upload",
                        f"{command}: the bytes of upload {ref.upload_id!r} did not arrive within "
                        f"{self.settings.upload_wait:g} s; PUT them to its presigned_url first",
                    ) from None
            assert upload.data is not None
            resolved[name] = UploadedFile(upload.presigned_id, upload.name, upload.mime_type, upload.data)
        return resolved

    # ------------------------------------------------------------------ inbound

    async def _handle_inbound(self, conn: Connection, channel: str, raw: str | bytes) -> None:
        if self.closed:
            return
        try:
            msg = conn.codec.decode(channel, raw)
        except w.WireError as err:
            self._reject(conn, err.code, err.message, None, raw, reply_to=err.request_id, channel=channel)
            return
        kind = type(msg).__name__
        # every inbound frame is recorded, pings included (the conformance rules check keep-alives)
        self.record.add(
            "in",
            kind,
            connection_id=conn.id,
            channel=channel,
            chunk=self.helios.current_chunk,
            body=_body(msg),
            request_id=getattr(msg, "request_id", ""),
        )
        match msg:
            case w.CommandIn():
                async with self._command_lock:
                    await self._handle_command(conn, msg)
            case w.Ping() | w.ClientStats():
                pass
            case w.RequestSchema(request_id=rid):
                self._send_out(conn, w.ModelSchemaOut(self.schema, reply_to=rid))
            case w.RequestCapabilities():
                caps = {"protocol_version": "1.0", "tracks": TRACKS, "commands": capabilities_commands()}
                self._send_out(conn, w.ModelCapabilitiesOut(caps))
            case w.FileUploaded(upload_id=uid):
                upload = self.uploads.get(uid)
                if upload is None:
                    log.warning(
                        "session %s: fileUploaded names %r, which no upload slot of this session has",
                        self.id,
                        uid,
                    )
                else:
                    upload.announced = True
            case w.RequestClip(request_id=rid) | w.RequestRecording(request_id=rid):
                log.info("session %s: clip/recording requested; the mock's recorder is disabled", self.id)
                self._send_out(conn, w.ClipFailedOut(RECORDER_DISABLED, reply_to=rid))
            case w.TrackVerb():
                self._handle_track_verb(conn, msg)
            case w.RequestStep(request_id=rid):
                self._reject(
                    conn,
                    "invalid_command",
                    "request_step: Helios is a streamed model; stepped generation is not offered",
                    "request_step",
                    raw,
                    reply_to=rid,
                )
            case w.Ignored(what=what):
                log.info("session %s connection %s: ignored %s", self.id, conn.id, what)

    def _handle_track_verb(self, conn: Connection, verb: w.TrackVerb) -> None:
        if verb.verb == "publish":
            self._reject(
                conn,
                "publish_refused",
                f"publish_track {verb.name!r}: Helios has no input tracks",
                "publish_track",
                repr(verb),
                reply_to=verb.request_id,
                channel=w.CONTROL,
            )
            return
        if verb.name != "main_video":
            log.warning(
                "session %s connection %s: %s_track names unknown track %r (Helios has main_video)",
                self.id,
                conn.id,
                verb.verb,
                verb.name,
            )
            return
        if verb.verb in ("pause", "resume"):
            conn.set_video_paused(verb.verb == "pause")
            log.info("session %s connection %s: main_video %sd", self.id, conn.id, verb.verb)

    async def _handle_command(self, conn: Connection, cmd: w.CommandIn) -> None:
        params: dict[str, Any] = dict(cmd.data)
        for name, ref in cmd.uploads.items():
            params[name] = asdict(ref)
        try:
            validated = validate_command(cmd.type, params)
            uploads = await self._resolve_uploads(cmd.type, validated)
            outcome = self.helios.handle(cmd.type, validated, uploads)
        except CommandRejected as err:
            self._reject(conn, err.code, err.message, cmd.type, repr(cmd), reply_to=cmd.request_id)
            return
        except Exception as exc:
            log.exception("session %s: %s crashed", self.id, cmd.type)
            self._reject(
                conn,
                "internal_error",
                f"{cmd.type}: the mock failed to handle it ({exc})",
                cmd.type,
                repr(cmd),
                reply_to=cmd.request_id,
            )
            return
        verdict = "accepted" if outcome.accepted else "refused"
        log.info(
            "session %s connection %s: %s %s (chunk %d)",
            self.id,
            conn.id,
            cmd.type,
            verdict,
            self.helios.current_chunk,
        )
        for message in outcome.broadcasts:
            self._broadcast(message)
        if outcome.answer is not None:
            self._send(conn, outcome.answer, reply_to=cmd.request_id)
        elif cmd.request_id:
            self._send_out(conn, w.AckOut(cmd.request_id))
        if outcome.state is not None:
            self._broadcast(outcome.state)
        self._wake.set()

    def _reject(
        self,
        conn: Connection,
        code: str,
        message: str,
        command: str | None,
        raw: str | bytes,
        *,
        reply_to: str = "",
        channel: str = w.DATA,
    ) -> None:
        """Runtime-level rejection: logged in plain words, recorded, and answered as the wire allows."""
        raw_text = raw if isinstance(raw, str) else raw.hex(" ")
        log.warning("session %s connection %s rejected a frame [%s]: %s", self.id, conn.id, code, message)
        self.record.reject(conn.id, code, message, command, raw_text)
        if reply_to or channel == w.DATA:
            self._send_out(conn, w.ErrorOut(code, message, reply_to=reply_to, channel=channel))

    # ------------------------------------------------------------------ outbound

    def _send_out(self, conn: Connection, out: w.Outbound) -> None:
        if conn.send(out):
            self.record.add(
                "out",
                type(out).__name__,
                connection_id=conn.id,
                chunk=self.helios.current_chunk,
                body=_body(out),
                request_id=getattr(out, "reply_to", ""),
            )

    def _send(self, conn: Connection, message: Message, reply_to: str = "") -> None:
        self._send_out(conn, w.ModelMessageOut(message.type, message.data, reply_to=reply_to))

    def _broadcast(self, message: Message) -> None:
        for conn in self.connections.values():
            if conn.ready:
                self._send(conn, message)

    # ------------------------------------------------------------------ time

    async def _clock(self) -> None:
        """The chunk clock: 33 frames per chunk at fps × speed, chunks back to back while running."""
        loop = asyncio.get_running_loop()
        interval = self.settings.frame_interval
        native = self.settings.native_size
        next_t: float | None = None
        while not self.closed:
            plan = self.helios.begin_chunk() if self.live_connections else None
            if plan is None:
                next_t = None
                self._wake.clear()
                await self._wake.wait()
                continue
            renderer = functools.cache(
                functools.partial(ChunkRenderer, plan, native)
            )  # only if raw frames are needed
            log.info("session %s: chunk %d begins (prompt %r)", self.id, plan.chunk_index, plan.prompt[:60])
            if next_t is None:
                next_t = loop.time()
            for frame_index in range(CHUNK_FRAMES):
                self.feed.publish(FrameRef(plan, frame_index, _cached(renderer, frame_index)))
                next_t += interval
                await asyncio.sleep(max(0.0, next_t - loop.time()))
                if not self.helios.chunk_in_progress:  # reset dropped the chunk
                    break
            else:
                self.feed.chunk_over = True
                self.chunks_generated += 1
                for message in self.helios.complete_chunk():
                    self._broadcast(message)
                continue
            self.feed.chunk_over = True
            next_t = None

    async def _watchdog(self) -> None:
        """Close silent connections, orphaned sessions past the grace period, and expired sessions."""
        settings = self.settings
        while not self.closed:
            await asyncio.sleep(min(1.0, settings.ping_timeout / 4, settings.reconnect_grace / 4))
            now = time.monotonic()
            if now - self.created_at > settings.max_session_duration:
                await self.close(
                    f"session reached its maximum duration of {settings.max_session_duration:g} s"
                )
                return
            for conn in list(self.connections.values()):
                if conn.ready and now - conn.last_inbound > settings.ping_timeout:
                    await self.drop_connection(
                        conn, f"no frame from the client for {settings.ping_timeout:g} s (ping watchdog)"
                    )
            if self._orphaned_since is not None and now - self._orphaned_since > settings.reconnect_grace:
                await self.close(f"no client reconnected within {settings.reconnect_grace:g} s")
                return


def _cached(renderer: Callable[[], ChunkRenderer], frame_index: int) -> Callable[[], Any]:
    """Render a frame at most once, however many connections send it (never, with shared media)."""
    cache: list[Any] = []

    def render() -> Any:
        if not cache:
            cache.append(renderer().frame(frame_index))
        return cache[0]

    return render


def _body(item: Any) -> Any:
    try:
        body = asdict(item)
    except TypeError:
        return repr(item)
    if "openapi" in body:
        body["openapi"] = "<openapi document>"
    return body

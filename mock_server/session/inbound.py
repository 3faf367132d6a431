"""Inbound frames of one session: decode, record, and dispatch (commands, track verbs, schema, clip requests).

The only place that turns wire-neutral inbound messages into Helios calls and Helios outcomes into outbound
messages; it never sees JSON or protobuf.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from mock_server.config import Settings
from mock_server.logging_setup import SessionLogger
from mock_server.metrics import Metrics
from mock_server.model.commands import CommandRejected, validate_command
from mock_server.model.helios import Helios, Message, Outcome
from mock_server.model.messages import CommandError
from mock_server.model.model_schema import capabilities_commands
from mock_server.session import clip_links
from mock_server.session.connection import Connection
from mock_server.session.faults import SessionFaults
from mock_server.session.outbound import Outbox, record_body
from mock_server.session.record import SessionRecord
from mock_server.session.recording import RECORDER_DISABLED, ClipRefused, Recording
from mock_server.session.uploads import UploadStore
from mock_server.wire import common as w

log = logging.getLogger("helios_mock.session")

TRACKS = [{"name": "main_video", "kind": "video", "direction": "recvonly"}]
__all__ = ["RECORDER_DISABLED", "TRACKS", "InboundHandler"]


class InboundHandler:
    """Handles every inbound frame of every connection of one session, in arrival order per connection."""

    def __init__(
        self,
        session_id: str,
        *,
        helios: Helios,
        schema: dict[str, Any],
        record: SessionRecord,
        uploads: UploadStore,
        outbox: Outbox,
        is_closed: Callable[[], bool],
        on_command_done: Callable[[], None],
        recording: Recording,
        settings: Settings,
        faults: SessionFaults | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._session_id = session_id
        self._log = SessionLogger(log, session=session_id)
        self._metrics = metrics if metrics is not None else Metrics()
        self._helios = helios
        self._schema = schema
        self._record = record
        self._uploads = uploads
        self._outbox = outbox
        self._is_closed = is_closed
        self._on_command_done = on_command_done
        self._command_lock = asyncio.Lock()
        self._recording = recording
        self._settings = settings
        self._faults = faults

    async def handle(self, conn: Connection, channel: str, raw: str | bytes) -> None:
        """Decode one frame, record it (pings included: the conformance rules check keep-alives), dispatch."""
        closed = self._is_closed()
        try:
            msg = conn.codec.decode(channel, raw)
        except w.WireError as err:
            if not closed:
                self._reject(conn, err.code, err.message, None, raw, reply_to=err.request_id, channel=channel)
            return
        self._record.add(
            "in",
            type(msg).__name__,
            connection_id=conn.id,
            channel=channel,
            chunk=self._helios.current_chunk,
            body=record_body(msg),
            request_id=getattr(msg, "request_id", ""),
        )
        if not closed:  # a frame after the end is recorded (the client rules judge it), never run
            await self._dispatch(conn, msg, raw)

    async def _dispatch(self, conn: Connection, msg: Any, raw: str | bytes) -> None:
        match msg:
            case w.CommandIn():
                async with self._command_lock:
                    outcome = await self._command(conn, msg)
                self._metrics.command(msg.type, outcome)
            case w.Ping() | w.ClientStats():
                pass
            case w.RequestSchema(request_id=rid):
                self._outbox.send_out(conn, w.ModelSchemaOut(self._schema, reply_to=rid))
            case w.RequestCapabilities():
                caps = {"protocol_version": "1.0", "tracks": TRACKS, "commands": capabilities_commands()}
                self._outbox.send_out(conn, w.ModelCapabilitiesOut(caps))
            case w.FileUploaded(upload_id=uid):
                self._uploads.announce(uid)
            case w.RequestClip() | w.RequestRecording():
                self._clip(conn, msg)
            case w.TrackVerb():
                self._track_verb(conn, msg)
            case w.RequestStep(request_id=rid):
                why = "request_step: Helios is a streamed model; stepped generation is not offered"
                self._reject(conn, "invalid_command", why, "request_step", raw, reply_to=rid)
            case w.Ignored(what=what):
                self._log.info("connection %s: ignored %s", conn.id, what, extra={"connection": conn.id})

    def _clip(self, conn: Connection, msg: w.RequestClip | w.RequestRecording) -> None:
        """Cut the window from the recording and answer clipReady (with its playlist URL) or clipFailed."""
        kind, duration = (
            ("clip", msg.duration_seconds) if isinstance(msg, w.RequestClip) else ("recording", None)
        )
        ttl = self._settings.clip_url_ttl
        try:
            window = self._recording.cut(kind, duration, ttl)
        except ClipRefused as refused:
            self._log.info(
                "connection %s: %s refused: %s", conn.id, kind, refused.reason, extra={"connection": conn.id}
            )
            self._outbox.send_out(conn, w.ClipFailedOut(refused.reason, reply_to=msg.request_id))
            return
        base = self._recording.base_url or f"http://{self._settings.host}:{self._settings.port}"
        ready = w.ClipReadyOut(
            session_id=self._session_id,
            kind=kind,
            start_marker=window.start_marker,
            end_marker=window.end_marker,
            now_marker=window.now_marker,
            predicted_ready_at_ms=window.predicted_ready_at_ms(self._settings.speed),
            playlist_url=clip_links.playlist_url(base, window, ttl),
            reply_to=msg.request_id,
        )
        self._log.info(
            "connection %s: %s of chunks %d-%d (media %.3f-%.3f s)",
            conn.id,
            kind,
            window.first_seq,
            window.last_seq,
            window.start_marker,
            window.end_marker,
            extra={"connection": conn.id},
        )
        self._outbox.send_out(conn, ready)

    def _track_verb(self, conn: Connection, verb: w.TrackVerb) -> None:
        if verb.verb == "publish":
            why = f"publish_track {verb.name!r}: Helios has no input tracks"
            self._reject(
                conn,
                "publish_refused",
                why,
                "publish_track",
                repr(verb),
                reply_to=verb.request_id,
                channel=w.CONTROL,
            )
            return
        if verb.name != "main_video":
            self._log.warning(
                "connection %s: %s_track names unknown track %r (Helios has main_video)",
                conn.id,
                verb.verb,
                verb.name,
                extra={"connection": conn.id},
            )
            return
        if verb.verb in ("pause", "resume"):
            conn.set_video_paused(verb.verb == "pause")
            self._log.info("connection %s: main_video %sd", conn.id, verb.verb, extra={"connection": conn.id})

    async def _command(self, conn: Connection, cmd: w.CommandIn) -> str:
        """Run one model command; its outcome for the metrics: accepted | refused (the model's
        command_error) | rejected (a runtime error reply) | moderated (a moderation fault withheld it)."""
        params: dict[str, Any] = dict(cmd.data)
        for name, ref in cmd.uploads.items():
            params[name] = asdict(ref)
        if self._faults is not None:
            withheld = await self._command_fault(conn, cmd, params)
            if withheld is not None:
                return withheld
        try:
            validated = validate_command(cmd.type, params)
            uploads = await self._uploads.resolve(cmd.type, validated)
            outcome = self._helios.handle(cmd.type, validated, uploads)
        except CommandRejected as err:
            self._reject(conn, err.code, err.message, cmd.type, repr(cmd), reply_to=cmd.request_id)
            return "rejected"
        except Exception as exc:
            self._log.exception("%s crashed", cmd.type, extra={"connection": conn.id})
            why = f"{cmd.type}: the mock failed to handle it ({exc})"
            self._reject(conn, "internal_error", why, cmd.type, repr(cmd), reply_to=cmd.request_id)
            return "rejected"
        self._log_outcome(conn, cmd.type, outcome)
        for message in outcome.broadcasts:
            self._outbox.broadcast(message)
        if outcome.answer is not None:
            self._outbox.send(conn, outcome.answer, reply_to=cmd.request_id)
        elif cmd.request_id:
            self._outbox.send_out(conn, w.AckOut(cmd.request_id))
        if outcome.state is not None:
            self._outbox.broadcast(outcome.state)
        self._on_command_done()
        return "accepted" if outcome.accepted else "refused"

    def _log_outcome(self, conn: Connection, command: str, outcome: Outcome) -> None:
        """``set_prompt accepted at chunk 0, takes effect at chunk 2`` (the chunk from prompt_accepted)."""
        current = self._helios.current_chunk
        told = (*outcome.broadcasts, *([outcome.answer] if outcome.answer is not None else []))
        effective = next((m.data.get("chunk") for m in told if m.type == "prompt_accepted"), None)
        when = f"at chunk {current}"
        if effective is not None:
            when += f", takes effect at chunk {effective}"
        verdict = "accepted" if outcome.accepted else "refused"
        self._log.info(
            "connection %s: %s %s %s", conn.id, command, verdict, when, extra={"connection": conn.id}
        )

    async def _command_fault(self, conn: Connection, cmd: w.CommandIn, params: dict[str, Any]) -> str | None:
        """Ask the fault registry about this command and perform a fired fault: None = run the command,
        else the outcome of withholding it (refused, rejected, moderated)."""
        assert self._faults is not None
        fault = self._faults.on_command(cmd.type, params, self._helios.current_chunk)
        if fault is None:
            return None
        if fault.kind == "command_error":  # as a model refusal: broadcast, then the v1 ack; no state
            refusal = CommandError(command=cmd.type, reason=fault.params.reason)
            self._outbox.broadcast(Message(refusal.TYPE, refusal.model_dump()))
            if cmd.request_id:
                self._outbox.send_out(conn, w.AckOut(cmd.request_id))
            return "refused"
        if fault.kind == "internal_error":  # as a crashing handler: v1 Error reply, v0 nothing
            why = f"{cmd.type}: {fault.params.message}"
            self._reject(conn, "internal_error", why, cmd.type, repr(cmd), reply_to=cmd.request_id)
            return "rejected"
        await self._faults.apply(fault, command=cmd.type)  # moderation
        runs = fault.params.action == "warn" and not self._is_closed()
        return None if runs else "moderated"

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
        self._log.warning(
            "connection %s rejected a frame [%s]: %s", conn.id, code, message, extra={"connection": conn.id}
        )
        self._record.reject(conn.id, code, message, command, raw_text)
        self._metrics.rejection(code)
        if reply_to or channel == w.DATA:
            self._outbox.send_out(conn, w.ErrorOut(code, message, reply_to=reply_to, channel=channel))

"""A raw Reactor wire client (aiortc) that can speak v0 JSON or v1 protobuf — and send anything, even garbage.

Used by the server conformance suite, the bad-input tests, the Hypothesis state machine and the load
scenarios. It follows the same signalling as the public clients (docs/PROTOCOL.md §4), so it works against the
mock or any Reactor-compatible server. Like the libwebrtc clients, it needs a non-loopback address to
gather a host candidate (run it inside a network namespace with a veth pair, as the tests do).
"""

from __future__ import annotations

import asyncio
import functools
import json
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from mock_server.media.markers import Markers, decode_markers
from mock_server.wire import reactor_wire_pb as pb
from mock_server.wire.v1 import dict_to_struct, struct_to_dict

REQUEST = pb.MessageKind.MESSAGE_KIND_REQUEST


@dataclass
class Received:
    """One server frame as the client understood it."""

    t: float
    channel: str
    scope: str  # "application" | "runtime" | "reply" | "ack" | "error" | "control" | "raw"
    type: str
    data: Any
    request_id: str = ""


@dataclass
class FrameSample:
    t: float
    width: int
    height: int
    markers: Markers | None


@dataclass
class WireClient:
    base_url: str
    wire: str = "v0"  # "v0" (JS-like: one "data" channel, JSON) | "v1" (PY-like: data + control, protobuf)
    mode: str = "local"  # "local" | "production"
    token: str = "test-token"
    keep_frames: bool = False
    session_id: str | None = None
    connection_id: int | None = None
    received: list[Received] = field(default_factory=list)
    frames: list[FrameSample] = field(default_factory=list)
    raw_frames: list[np.ndarray] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.http = httpx.AsyncClient(base_url=self.base_url.rstrip("/"), timeout=10.0, verify=_ssl_context())
        self.pc: RTCPeerConnection | None = None
        self.channels: dict[str, Any] = {}
        self._counters = {"data": 0, "control": 0}
        self._pending: dict[str, asyncio.Future[Received]] = {}
        self._changed = asyncio.Event()
        self._video_task: asyncio.Task[None] | None = None
        self._t0 = time.monotonic()

    # ------------------------------------------------------------------ HTTP

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.mode == "production" else {}

    async def start_session(self, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """Create the session (local: POST /start_session; production: POST /sessions + poll until ready)."""
        if self.mode == "local":
            resp = await self.http.post("/start_session", json=body or {})
            resp.raise_for_status()
            descriptor = resp.json()
            self.session_id = descriptor["session_id"]
            return descriptor
        payload = {
            "model": {"name": "helios"},
            "client_info": {"sdk_version": "0", "sdk_type": "conformance"},
            "supported_transports": [{"protocol": "webrtc", "version": "1.0"}],
            **(body or {}),
        }
        resp = await self.http.post("/sessions", json=payload, headers=self._headers())
        resp.raise_for_status()
        self.session_id = resp.json()["session_id"]
        delay = 0.2  # the documented readiness backoff: 0.2 s, doubling (docs/PROTOCOL.md §1.10)
        for _ in range(100):
            resp = await self.http.get(f"/sessions/{self.session_id}", headers=self._headers())
            resp.raise_for_status()
            descriptor = resp.json()
            if descriptor.get("capabilities") and descriptor.get("selected_transport"):
                return descriptor
            if descriptor.get("state") == "CLOSED":
                raise RuntimeError(f"session {self.session_id} closed while pending")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)
        raise TimeoutError("session never became ready")

    def _transport(self, suffix: str) -> str:
        return f"/sessions/{self.session_id}/transport/webrtc{suffix}"

    async def upload(
        self, data: bytes, name: str = "ref.png", mime_type: str = "image/png"
    ) -> dict[str, Any]:
        """Create an upload slot, PUT the bytes, announce it; return the upload reference for a command."""
        resp = await self.http.post(
            f"/sessions/{self.session_id}/uploads",
            headers=self._headers(),
            json={"name": name, "size": len(data), "mime_type": mime_type},
        )
        resp.raise_for_status()
        slot = resp.json()
        put = await self.http.put(slot["presigned_url"], content=data, headers={"Content-Type": mime_type})
        put.raise_for_status()
        ref = {"upload_id": slot["presigned_id"], "name": name, "mime_type": mime_type, "size": len(data)}
        if self.wire == "v0":
            self.send_raw(
                "data", json.dumps({"scope": "runtime", "data": {"type": "fileUploaded", "data": ref}})
            )
        else:
            msg = pb.ControlClientMessage(kind=pb.MessageKind.MESSAGE_KIND_NOTIFICATION)
            msg.file_uploaded.CopyFrom(pb.FileUploaded(**ref))
            self.send_raw("control", msg.SerializeToString())
        return ref

    # ------------------------------------------------------------------ WebRTC

    async def connect(self, *, start: bool = True, wait_state: bool = True, timeout: float = 20.0) -> None:
        """Start (or adopt) the session, offer, and wait until connected with every channel open."""
        t0 = time.monotonic()
        if start:
            await self.start_session()
        await self.http.get(self._transport("/ice_servers"), headers=self._headers())
        if self.wire == "v1" and self.connection_id is None:
            resp = await self.http.post(self._transport("/connections"), json={}, headers=self._headers())
            resp.raise_for_status()
            self.connection_id = int(resp.json()["connection_id"])
        await self._offer(method="POST")
        await self._wait(lambda: self.ready, timeout, "transport readiness")
        self.timings["connect_to_ready"] = time.monotonic() - t0
        if wait_state:  # Helios greets every new connection with its state (docs/HELIOS.md §3.5)
            await self.wait_message("state", timeout=timeout)

    async def reconnect(self, timeout: float = 20.0) -> None:
        if self.pc is not None:
            await self.pc.close()
        await self._offer(method="PUT")
        await self._wait(lambda: self.ready, timeout, "transport readiness after reconnect")

    @property
    def ready(self) -> bool:
        labels = ("data", "control") if self.wire == "v1" else ("data",)
        return (
            self.pc is not None
            and self.pc.connectionState == "connected"
            and all(label in self.channels and self.channels[label].readyState == "open" for label in labels)
        )

    async def _offer(self, method: str) -> None:
        self.pc = pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.channels = {}
        labels = ("data", "control") if self.wire == "v1" else ("data",)
        for label in labels:
            channel = pc.createDataChannel(label)
            self._wire_channel(label, channel)
        pc.addTransceiver("video", direction="recvonly")

        @pc.on("track")
        def _track(track: Any) -> None:
            self._video_task = asyncio.get_running_loop().create_task(self._read_video(track))

        @pc.on("connectionstatechange")
        def _state() -> None:
            self._changed.set()

        await pc.setLocalDescription(await pc.createOffer())
        video_mid = next(t.mid for t in pc.getTransceivers() if t.kind == "video")
        body = {
            "sdp_offer": pc.localDescription.sdp,
            "client_info": {"sdk_version": "0", "sdk_type": "python" if self.wire == "v1" else "js"},
            "track_mapping": [
                {"mid": video_mid, "name": "main_video", "kind": "video", "direction": "recvonly"}
            ],
        }
        path = "/sdp_params" if self.wire == "v0" else f"/connections/{self.connection_id}/sdp_params"
        resp = await self.http.request(method, self._transport(path), json=body, headers=self._headers())
        if resp.status_code != 202:
            raise RuntimeError(f"{method} sdp_params answered {resp.status_code}: {resp.text}")
        delay = 0.05
        for _ in range(60):
            resp = await self.http.get(self._transport(path), headers=self._headers())
            if resp.status_code == 200:
                await pc.setRemoteDescription(RTCSessionDescription(resp.json()["sdp_answer"], "answer"))
                return
            if resp.status_code != 202:
                raise RuntimeError(f"GET sdp_params answered {resp.status_code}: {resp.text}")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.4)
        raise TimeoutError("no SDP answer")

    def _wire_channel(self, label: str, channel: Any) -> None:
        @channel.on("open")
        def _open() -> None:
            self.channels[label] = channel
            self._changed.set()

        @channel.on("message")
        def _message(raw: str | bytes) -> None:
            self._on_frame(label, raw)

    async def _read_video(self, track: Any) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            rgb = frame.to_ndarray(format="rgb24")
            self.frames.append(FrameSample(self._now(), frame.width, frame.height, decode_markers(rgb)))
            if self.keep_frames:
                self.raw_frames.append(rgb)
            self._changed.set()

    # ------------------------------------------------------------------ sending

    def send_raw(self, channel: str, frame: str | bytes) -> None:
        """Send any frame, valid or not, on a channel ("data" or "control")."""
        self.channels[channel].send(frame)

    def send_command(
        self,
        name: str,
        params: dict[str, Any] | None = None,
        uploads: dict[str, dict[str, Any]] | None = None,
    ) -> str:
        """Send a command the way the public client of this wire does; returns the request_id (v1) or ""."""
        params = dict(params or {})
        if self.wire == "v0":
            inner: dict[str, Any] = {"type": name, "data": params}
            if uploads:
                inner["uploads"] = uploads
            self.send_raw("data", json.dumps({"scope": "application", "data": inner}))
            return ""
        self._counters["data"] += 1
        request_id = f"data_{self._counters['data']}"
        msg = pb.DataClientMessage(request_id=request_id, kind=REQUEST)
        msg.command.type = name
        msg.command.data.CopyFrom(dict_to_struct(params))
        for key, ref in (uploads or {}).items():
            msg.command.uploads[key].CopyFrom(pb.UploadReference(**ref))
        self.send_raw("data", msg.SerializeToString())
        return request_id

    async def command(
        self,
        name: str,
        params: dict[str, Any] | None = None,
        uploads: dict[str, dict[str, Any]] | None = None,
        timeout: float = 10.0,
    ) -> Received | None:
        """v1: send and await the correlated reply. v0: send and return None (no correlation exists)."""
        request_id = self.send_command(name, params, uploads)
        if not request_id:
            return None
        return await self.reply(request_id, timeout)

    async def reply(self, request_id: str, timeout: float = 10.0) -> Received:
        for item in self.received:
            if item.request_id == request_id:
                return item
        future: asyncio.Future[Received] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        return await asyncio.wait_for(future, timeout)

    def request_control(self, field_name: str, payload: Any = None) -> str:
        """Send a v1 control request (request_schema, request_clip, publish_track, ...); returns its id."""
        self._counters["control"] += 1
        request_id = f"ctrl_{self._counters['control']}"
        msg = pb.ControlClientMessage(request_id=request_id, kind=REQUEST)
        getattr(msg, field_name).CopyFrom(
            payload if payload is not None else getattr(pb, _pascal(field_name))()
        )
        self.send_raw("control", msg.SerializeToString())
        return request_id

    def notify_control(self, field_name: str, payload: Any = None) -> None:
        msg = pb.ControlClientMessage(kind=pb.MessageKind.MESSAGE_KIND_NOTIFICATION)
        getattr(msg, field_name).CopyFrom(
            payload if payload is not None else getattr(pb, _pascal(field_name))()
        )
        self.send_raw("control", msg.SerializeToString())

    # ------------------------------------------------------------------ receiving

    def _now(self) -> float:
        return time.monotonic() - self._t0

    def _on_frame(self, channel: str, raw: str | bytes) -> None:
        item = self._decode(channel, raw)
        self.received.append(item)
        if item.request_id and item.request_id in self._pending:
            future = self._pending.pop(item.request_id)
            if not future.done():
                future.set_result(item)
        self._changed.set()

    def _decode(self, channel: str, raw: str | bytes) -> Received:
        now = self._now()
        if isinstance(raw, str):
            if self.wire == "v1":
                return Received(now, channel, "raw", "text-frame-on-v1", raw)
            try:
                envelope = json.loads(raw)
                scope, inner = envelope["scope"], envelope["data"]
                return Received(now, channel, scope, inner["type"], inner.get("data"))
            except (ValueError, KeyError, TypeError):
                return Received(now, channel, "raw", "unparseable", raw)
        if self.wire == "v0":
            return Received(now, channel, "raw", "binary-frame-on-v0", raw)
        cls = pb.ControlServerMessage if channel == "control" else pb.DataServerMessage
        msg = cls()
        try:
            msg.ParseFromString(raw)
        except Exception:
            return Received(now, channel, "raw", "unparseable", raw)
        payload = msg.WhichOneof("payload")
        rid = msg.request_id
        if payload is None:
            return Received(now, channel, "ack", "ack", None, rid)
        body = getattr(msg, payload)
        if payload == "message":
            scope = "reply" if rid else "application"
            return Received(now, channel, scope, body.type, struct_to_dict(body.data), rid)
        if payload == "error":
            return Received(now, channel, "error", body.code, body.message, rid)
        if payload == "model_schema":
            return Received(now, channel, "control", "model_schema", struct_to_dict(body.openapi), rid)
        fields = {f.name: v for f, v in body.ListFields()}
        return Received(now, channel, "control", payload, fields, rid)

    def messages(self, type_: str | None = None, since: float = 0.0) -> list[Received]:
        """Model messages (answers and broadcasts) received, optionally of one type, after time `since`."""
        return [
            r
            for r in self.received
            if r.scope in ("application", "reply") and r.t >= since and (type_ is None or r.type == type_)
        ]

    async def wait_message(
        self,
        type_: str,
        where: Callable[[Any], bool] | None = None,
        *,
        since: float = 0.0,
        timeout: float = 10.0,
    ) -> Received:
        def match() -> Received | None:
            for item in self.messages(type_, since):
                if where is None or where(item.data):
                    return item
            return None

        await self._wait(lambda: match() is not None, timeout, f"message {type_}")
        found = match()
        assert found is not None
        return found

    async def _wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
            self._changed.clear()
            try:  # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel that races the event
                async with asyncio.timeout(min(remaining, 0.25)):
                    await self._changed.wait()
            except TimeoutError:
                pass

    async def wait_frames(
        self, predicate: Callable[[FrameSample], bool], *, timeout: float = 10.0
    ) -> FrameSample:
        await self._wait(lambda: any(predicate(f) for f in self.frames), timeout, "a matching video frame")
        return next(f for f in self.frames if predicate(f))

    def now(self) -> float:
        return self._now()

    async def close(self, *, stop_session: bool = True) -> None:
        if stop_session and self.session_id:
            try:
                if self.mode == "local":
                    await self.http.post("/stop_session")
                else:
                    await self.http.delete(f"/sessions/{self.session_id}", headers=self._headers())
            except httpx.HTTPError:
                pass
        if self._video_task is not None:
            self._video_task.cancel()
        if self.pc is not None:
            await self.pc.close()
        await self.http.aclose()


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """One default SSL context per process: loading the CA bundle costs ~20 ms of CPU per client."""
    return ssl.create_default_context()


def _pascal(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))

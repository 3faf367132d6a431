"""A small Helios client: local-mode HTTP signalling + aiortc, JSON ("v0") data channel, as the JS SDK does.

app = HeliosApp("http://localhost:8080", on_frame=show)
await app.connect()
await app.play({0: "dawn over the harbour", 3: "noon, boats leaving"})
...
await app.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

Message = dict[str, Any]  # {"type": ..., "data": {...}}


class NotReady(RuntimeError):
    """A command was attempted before the connection was ready (the JS SDK drops those)."""


class HeliosApp:
    """One connection to a Helios session; keeps the model state the server broadcasts."""

    def __init__(
        self,
        base_url: str,
        *,
        ping_interval: float = 5.0,
        on_frame: Callable[[np.ndarray], None] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.ping_interval = ping_interval
        self.on_frame = on_frame
        self.session_id: str | None = None
        self.messages: list[Message] = []
        self.state: dict[str, Any] = {}
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=10.0)
        self._pc: RTCPeerConnection | None = None
        self._channel: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._changed = asyncio.Event()

    # ------------------------------------------------------------------ connection

    @property
    def ready(self) -> bool:
        return (
            self._pc is not None
            and self._pc.connectionState == "connected"
            and self._channel is not None
            and self._channel.readyState == "open"
        )

    async def connect(self, timeout: float = 20.0) -> None:
        """Start the local session, offer (non-trickle, flat route) and wait until ready."""
        resp = await self._http.post("/start_session", json={})
        resp.raise_for_status()
        self.session_id = resp.json()["session_id"]
        base = f"/sessions/{self.session_id}/transport/webrtc"
        (await self._http.get(base + "/ice_servers")).raise_for_status()
        self._pc = pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self._channel = channel = pc.createDataChannel("data")
        channel.on("message", self._on_data)
        channel.on("open", self._changed.set)
        pc.on("connectionstatechange", self._changed.set)
        pc.on("track", lambda track: self._tasks.append(asyncio.create_task(self._read_video(track))))
        pc.addTransceiver("video", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        mid = next(t.mid for t in pc.getTransceivers() if t.kind == "video")
        offer = {
            "sdp_offer": pc.localDescription.sdp,
            "client_info": {"sdk_version": "0.1.0", "sdk_type": "js"},
            "track_mapping": [{"mid": mid, "name": "main_video", "kind": "video", "direction": "recvonly"}],
        }
        resp = await self._http.post(base + "/sdp_params", json=offer)
        if resp.status_code != 202:
            raise RuntimeError(f"offer answered {resp.status_code}: {resp.text}")
        for delay in (0.0, 0.2, 0.4, 0.8, 1.6, 3.2):
            await asyncio.sleep(delay)
            resp = await self._http.get(base + "/sdp_params")
            if resp.status_code == 200:
                await pc.setRemoteDescription(RTCSessionDescription(resp.json()["sdp_answer"], "answer"))
                break
            if resp.status_code != 202:
                raise RuntimeError(f"answer poll answered {resp.status_code}: {resp.text}")
        else:
            raise TimeoutError("no SDP answer")
        await self._until(lambda: self.ready, timeout, "ready")
        self._tasks.append(asyncio.create_task(self._keepalive()))

    async def close(self) -> None:
        """Stop the session (local mode: POST /stop_session) and release everything."""
        for task in self._tasks:
            task.cancel()
        with contextlib.suppress(httpx.HTTPError):
            await self._http.post("/stop_session")
        if self._pc is not None:
            await self._pc.close()
        await self._http.aclose()

    # ------------------------------------------------------------------ commands

    def send(self, command: str, params: dict[str, Any] | None = None, uploads: dict[str, Any] | None = None):
        """Send a model command (fire and forget: v0 has no replies; watch the messages instead)."""
        if not self.ready:
            raise NotReady(f"cannot send {command!r}: not connected")
        inner: dict[str, Any] = {"type": command, "data": params or {}}
        if uploads:
            inner["uploads"] = uploads
        self._channel.send(json.dumps({"scope": "application", "data": inner}))

    async def play(self, storyboard: dict[int, str], timeout: float = 10.0) -> None:
        """Schedule one prompt per chunk (chunk 0 required) and start generating."""
        if 0 not in storyboard:
            raise ValueError("a storyboard needs a prompt at chunk 0")
        for chunk, prompt in sorted(storyboard.items()):
            mark = len(self.messages)
            self.send("schedule_prompt", {"prompt": prompt, "chunk": chunk})
            await self.wait_for(
                "prompt_accepted", lambda d, c=chunk: d["chunk"] == c, after=mark, timeout=timeout
            )
        mark = len(self.messages)
        self.send("start")
        await self.wait_for("generation_started", after=mark, timeout=timeout)

    async def upload_image(
        self, data: bytes, name: str = "reference.png", mime_type: str = "image/png"
    ) -> dict:
        """Upload bytes (slot, PUT, fileUploaded notice) and return the reference for a command's uploads."""
        resp = await self._http.post(
            f"/sessions/{self.session_id}/uploads",
            json={"name": name, "size": len(data), "mime_type": mime_type},
        )
        resp.raise_for_status()
        slot = resp.json()
        (
            await self._http.put(slot["presigned_url"], content=data, headers={"Content-Type": mime_type})
        ).raise_for_status()
        ref = {"upload_id": slot["presigned_id"], "name": name, "mime_type": mime_type, "size": len(data)}
        self._channel.send(json.dumps({"scope": "runtime", "data": {"type": "fileUploaded", "data": ref}}))
        return ref

    async def set_image(self, data: bytes, timeout: float = 10.0) -> dict[str, Any]:
        """Set the reference image; returns the image_accepted data (size of the decoded upload)."""
        ref = await self.upload_image(data)
        mark = len(self.messages)
        self.send("set_image", uploads={"image": ref})
        return await self.wait_for("image_accepted", after=mark, timeout=timeout)

    # ------------------------------------------------------------------ receiving

    async def wait_for(
        self,
        type_: str,
        where: Callable[[dict[str, Any]], bool] | None = None,
        *,
        after: int = 0,
        timeout: float = 10.0,
    ) -> dict[str, Any]:
        """The data of the first `type_` message (index >= `after`) matching `where`."""

        def find() -> dict[str, Any] | None:
            for message in self.messages[after:]:
                if message.get("type") == type_ and (where is None or where(message.get("data") or {})):
                    return message.get("data") or {}
            return None

        await self._until(lambda: find() is not None, timeout, type_)
        found = find()
        assert found is not None
        return found

    def _on_data(self, raw: str | bytes) -> None:
        try:
            envelope = json.loads(raw)
        except ValueError:
            return
        if envelope.get("scope") == "application":
            message = envelope.get("data") or {}
            self.messages.append(message)
            if message.get("type") == "state":
                self.state = message.get("data") or {}
        self._changed.set()

    async def _read_video(self, track: Any) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if self.on_frame is not None:
                self.on_frame(frame.to_ndarray(format="rgb24"))

    async def _keepalive(self) -> None:
        """The runtime ping, as the JS SDK sends it: first one interval after ready, then every interval."""
        ping = json.dumps({"scope": "runtime", "data": {"type": "ping", "data": {}}})
        while True:
            await asyncio.sleep(self.ping_interval)
            if self.ready:
                self._channel.send(ping)

    async def _until(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"timed out waiting for {what}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.25))

"""Helpers of the server conformance suite: the target description and an ordered reader of server frames."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from typing import Any

import httpx

from conformance.reference_model import INITIAL_STATE  # noqa: F401 - re-exported for the suite modules
from conformance.server import HeliosServer
from conformance.wire_client import Received, WireClient
from mock_server.constants import CHUNK_FRAMES  # noqa: F401 - re-exported for the suite modules
from mock_server.media.markers import Markers
from mock_server.model.messages import MESSAGES

FPS = 24.0
STATE_FIELDS = {
    "started",
    "running",
    "paused",
    "image_set",
    "current_chunk",
    "current_frame",
    "current_prompt",
    "image_strength",
    "scheduled_prompts",
}


@dataclass
class Target:
    """The server under test and what the suite knows about it."""

    url: str
    token: str
    is_mock: bool  # helios-mock (marker band, admin endpoints, [mock] decisions)
    local: bool  # local-mode routes (POST /start_session) are served
    production: bool  # production routes (POST /sessions) are served
    mode: str  # the mode the WebRTC tests use: "local" | "production"
    speed: float  # chunk clock speed factor (1 for a real service)
    speed_known: bool
    native_size: tuple[int, int] | None  # frame size at sr_scale "off", when known

    @property
    def chunk_seconds(self) -> float:
        return CHUNK_FRAMES / (FPS * self.speed)

    def timeout(self, chunks: float = 1.0) -> float:
        """A generous wait for ``chunks`` chunks of generation."""
        return max(10.0, 3.0 * chunks * self.chunk_seconds + 2.0)

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def _arg(server: HeliosServer, flag: str) -> str | None:
    return server.args[server.args.index(flag) + 1] if flag in server.args else None


def describe_target(server: HeliosServer) -> Target:
    """Probe the server: is it helios-mock, which route families does it serve, how fast is its clock.

    Environment: HELIOS_SUITE_MODE (local | production) forces the mode of the WebRTC tests;
    HELIOS_SUITE_SPEED gives the chunk clock speed of an external mock started with --speed;
    HELIOS_SUITE_MOCK (1 | 0) overrides the helios-mock detection (GET /admin/record).
    """
    started = server.process is not None
    with httpx.Client(base_url=server.url, timeout=10) as http:
        is_mock = started or _answers(http, "/admin/record", "sessions")
        local = _answers(http, "/session", "state")
    if os.environ.get("HELIOS_SUITE_MOCK") in ("0", "1"):
        is_mock = os.environ["HELIOS_SUITE_MOCK"] == "1"
    production = is_mock or not local or os.environ.get("HELIOS_SUITE_MODE") == "production"
    mode = os.environ.get("HELIOS_SUITE_MODE") or ("local" if local else "production")
    speed_text = _arg(server, "--speed") if started else os.environ.get("HELIOS_SUITE_SPEED")
    resolution = _arg(server, "--resolution") if started else os.environ.get("HELIOS_SUITE_RESOLUTION")
    native = tuple(int(v) for v in resolution.lower().split("x")) if resolution else None
    return Target(
        url=server.url,
        token=server.token,
        is_mock=is_mock,
        local=local,
        production=production,
        mode=mode,
        speed=float(speed_text or 1.0),
        speed_known=speed_text is not None or not is_mock,
        native_size=native if native is None or len(native) == 2 else None,  # type: ignore[arg-type]
    )


def _answers(http: httpx.Client, path: str, key: str) -> bool:
    try:
        resp = http.get(path)
        return resp.status_code == 200 and isinstance(resp.json(), dict) and key in resp.json()
    except (httpx.HTTPError, ValueError):
        return False


def check_message(type_: str, data: Any) -> None:
    """A model message matches its HELIOS.md §6 model (unknown fields are errors; numbers may be doubles)."""
    model = MESSAGES.get(type_)
    assert model is not None, f"unknown model message type {type_!r}"
    model.model_validate(data)
    for name, info in model.model_fields.items():
        if info.annotation is int:
            value = data[name]
            assert float(value).is_integer(), f"{type_}.{name} must be an integer, got {value!r}"


@dataclass
class Reply:
    """What one v1 command produced: its broadcasts (before the reply), the reply, and chunk events seen."""

    reply: Received
    broadcasts: list[Received]
    chunks: list[Received] = field(default_factory=list)

    @property
    def kind(self) -> str:
        """ "answer", "ack" or "error"."""
        return {"reply": "answer", "ack": "ack", "error": "error"}.get(self.reply.scope, self.reply.scope)


class Stream:
    """Reads one client's frames in arrival order (data-channel order is the server's send order)."""

    def __init__(self, client: WireClient) -> None:
        self.client = client
        self.cursor = 0
        self.chunk_events: list[
            tuple[Received, dict[str, Any]]
        ] = []  # (chunk_complete, state data behind it)

    def skip_all(self) -> None:
        """Forget what has arrived so far."""
        self.cursor = len(self.client.received)

    async def next(self, timeout: float = 10.0) -> Received:
        await self.client._wait(lambda: len(self.client.received) > self.cursor, timeout, "a server frame")
        item = self.client.received[self.cursor]
        self.cursor += 1
        if item.scope in ("application", "reply"):
            check_message(item.type, item.data)
        return item

    async def _chunk(self, done: Received) -> None:
        state = await self.next()
        assert (state.scope, state.type) == ("application", "state"), f"after chunk_complete came {state}"
        self.chunk_events.append((done, state.data))

    async def model_message(self, timeout: float = 10.0) -> Received:
        """The next frame that is not a chunk event (chunk events are recorded in ``chunk_events``)."""
        while True:
            item = await self.next(timeout)
            if item.scope == "application" and item.type == "chunk_complete":
                await self._chunk(item)
                continue
            return item

    async def command(
        self,
        name: str,
        params: dict[str, Any] | None = None,
        uploads: dict[str, dict[str, Any]] | None = None,
        timeout: float = 10.0,
    ) -> Reply:
        """Send a v1 command; read up to its correlated reply (HELIOS.md §3.4 order)."""
        first_chunk = len(self.chunk_events)
        request_id = self.client.send_command(name, params, uploads)
        await self.client.reply(request_id, timeout)
        broadcasts: list[Received] = []
        while True:
            item = await self.model_message(timeout)
            if item.request_id == request_id:
                return Reply(item, broadcasts, [c for c, _ in self.chunk_events[first_chunk:]])
            assert item.scope == "application", f"unexpected frame before the reply to {name}: {item}"
            assert item.type != "state", f"a state before the reply to {name}"
            broadcasts.append(item)

    async def state(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next model message, which must be a ``state``."""
        item = await self.model_message(timeout)
        assert (item.scope, item.type) == ("application", "state"), f"expected a state, got {item}"
        assert set(item.data) == STATE_FIELDS
        return item.data

    async def accepted(
        self, name: str, params: dict[str, Any] | None = None, **kw: Any
    ) -> tuple[Reply, dict]:
        """A command that must be accepted: its reply, then its state."""
        reply = await self.command(name, params, **kw)
        assert reply.kind != "error", f"{name} rejected: {reply.reply.type} {reply.reply.data}"
        assert not [b for b in reply.broadcasts if b.type in ("command_error", "rewind_failed")], reply
        return reply, await self.state()

    async def chunk(self, index: int, timeout: float = 10.0) -> tuple[Received, dict[str, Any]]:
        """Read until ``chunk_complete`` of chunk ``index`` (and its state); fails on other model messages."""
        for done, state in self.chunk_events:
            if done.data["chunk_index"] == index:
                return done, state
        while True:
            item = await self.next(timeout)
            assert (item.scope, item.type) == ("application", "chunk_complete"), f"while waiting: {item}"
            await self._chunk(item)
            if item.data["chunk_index"] == index:
                return self.chunk_events[-1]

    async def next_chunk(self, timeout: float = 10.0) -> tuple[Received, dict[str, Any]]:
        """The next ``chunk_complete`` not read yet (and its state); fails on other model messages."""
        item = await self.next(timeout)
        assert (item.scope, item.type) == ("application", "chunk_complete"), f"while waiting: {item}"
        await self._chunk(item)
        return self.chunk_events[-1]

    @property
    def last_chunk(self) -> int:
        """Index of the last chunk_complete read (-1 if none)."""
        return int(self.chunk_events[-1][0].data["chunk_index"]) if self.chunk_events else -1

    async def quiet(self, seconds: float) -> None:
        """Nothing at all arrives for ``seconds``."""
        seen = len(self.client.received)
        await asyncio.sleep(seconds)
        extra = self.client.received[seen:]
        assert not extra, f"expected silence, got {[(r.type, r.data) for r in extra]}"

    async def read_only_barrier(self) -> dict[str, Any]:
        """list_snapshots (read-only) as a barrier: all sent before it has arrived; returns its state."""
        reply = await self.command("list_snapshots")
        assert (reply.kind, reply.reply.type) == ("answer", "snapshot_list"), reply
        return await self.state()


def markers_by_chunk(client: WireClient) -> dict[int, list[Markers]]:
    """Decoded marker bands per chunk index, in arrival order."""
    out: dict[int, list[Markers]] = {}
    for frame in client.frames:
        if frame.markers is not None:
            out.setdefault(frame.markers.chunk, []).append(frame.markers)
    return out

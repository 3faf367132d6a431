"""Helpers of the server conformance suite (shared by the repository's wire tests too): the target
description, message checks, an ordered reader of server frames and the round-trip barrier."""

from __future__ import annotations

import asyncio
import io
import json
import os
from dataclasses import dataclass, field
from typing import Any

import httpx
from PIL import Image

from conformance.helpers import markers_by_chunk  # noqa: F401 - re-exported for the suite modules
from conformance.reference_model import INITIAL_STATE  # noqa: F401 - re-exported for the suite modules
from conformance.server import HeliosServer
from conformance.wire_client import Received, WireClient
from mock_server.constants import CHUNK_FRAMES  # noqa: F401 - re-exported for the suite modules
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


def server_arg(server: HeliosServer, flag: str) -> str | None:
    """The value of ``flag`` on the command line of a helios-mock the plugin started (None if absent)."""
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
    speed_text = server_arg(server, "--speed") if started else os.environ.get("HELIOS_SUITE_SPEED")
    resolution = server_arg(server, "--resolution") if started else os.environ.get("HELIOS_SUITE_RESOLUTION")
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
        native_size=native if native is None or len(native) == 2 else None,
    )


def _answers(http: httpx.Client, path: str, key: str) -> bool:
    try:
        resp = http.get(path)
        return resp.status_code == 200 and isinstance(resp.json(), dict) and key in resp.json()
    except (httpx.HTTPError, ValueError):
        return False


def check_message(type_: str, data: Any) -> None:
    """A model message matches its docs/HELIOS.md §6 model: unknown fields are errors, nothing is coerced (the
    parsed message equals what came), and integer fields hold integral numbers (v1 numbers are doubles)."""
    model = MESSAGES.get(type_)
    assert model is not None, f"unknown model message type {type_!r}"
    parsed = model.model_validate(data)
    assert parsed.model_dump() == data, f"{type_}: {data!r} holds values of the wrong type"
    for name, info in model.model_fields.items():
        if info.annotation is int:
            value = data[name]
            assert isinstance(value, int | float) and float(value).is_integer(), (
                f"{type_}.{name} must be an integer, got {value!r}"
            )


def png(size: tuple[int, int], colour: tuple[int, int, int]) -> bytes:
    """A plain PNG image of one colour."""
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


async def reply_to(client: WireClient, request_id: str, what: str, timeout: float = 10.0) -> Received:
    """The correlated v1 reply to ``request_id``; no reply within ``timeout`` fails, naming what was sent."""
    try:
        return await client.reply(request_id, timeout)
    except TimeoutError:
        raise AssertionError(f"no reply to {what} (request {request_id}) within {timeout:g} s") from None


async def v1_command(
    client: WireClient,
    name: str,
    params: dict[str, Any] | None = None,
    uploads: dict[str, dict[str, Any]] | None = None,
    timeout: float = 10.0,
) -> Received:
    """Send a v1 command and return its correlated reply (a failure, naming the command, if none comes)."""
    assert client.wire == "v1", "only v1 correlates replies with commands"
    return await reply_to(client, client.send_command(name, params, uploads), name, timeout)


def _barrier_reply(client: WireClient, start: int) -> int | None:
    for index in range(start, len(client.received)):
        item = client.received[index]
        if (item.scope, item.type) == ("runtime", "modelSchema"):
            return index
    return None


async def barrier(client: WireClient, timeout: float = 10.0) -> int:
    """A round trip on the data channel; returns the index of its reply in ``client.received``.

    The server handles a connection's frames strictly in order and the data channel is ordered, so every
    data-channel frame it sent this client before handling the barrier (in answer to anything sent
    earlier, or broadcast) is in ``client.received`` before that index: "nothing else arrived" becomes
    ``client.received[mark:index] == []`` instead of a sleep. v0: a runtime ``requestSchema``, answered by
    ``modelSchema`` alone. v1 has no data-channel request without effects elsewhere: ``list_snapshots``
    (read-only) is answered by ``snapshot_list``, then a ``state`` to every connection; the barrier
    returns once that state has arrived here too (it stands after the index returned).
    """
    start = len(client.received)
    if client.wire == "v0":
        client.send_raw(
            "data", json.dumps({"scope": "runtime", "data": {"type": "requestSchema", "data": {}}})
        )
        what = "the barrier's modelSchema (answer to a v0 requestSchema)"
        await client._wait(lambda: _barrier_reply(client, start) is not None, timeout, what)
        index = _barrier_reply(client, start)
        assert index is not None
        return index
    request_id = client.send_command("list_snapshots")
    reply = await reply_to(client, request_id, "the barrier list_snapshots", timeout)
    assert (reply.scope, reply.type) == ("reply", "snapshot_list"), f"barrier list_snapshots got {reply}"
    index = index_of(client, reply)

    def state_followed() -> bool:
        return any((r.scope, r.type) == ("application", "state") for r in client.received[index + 1 :])

    await client._wait(state_followed, timeout, "the state after the barrier list_snapshots")
    return index


def index_of(client: WireClient, item: Received) -> int:
    """Where ``item`` (a frame this client received) stands in ``client.received``."""
    return next(i for i in range(len(client.received) - 1, -1, -1) if client.received[i] is item)


async def read_only_state(client: WireClient) -> dict[str, Any]:
    """The model state, asked for in a way that changes nothing (list_snapshots is read-only, then state);
    for a client read without a ``Stream`` (v0 or v1)."""
    start = client.now()
    client.send_command("list_snapshots")
    listed = await client.wait_message("snapshot_list", since=start)
    return (await client.wait_message("state", since=listed.t)).data


def described(items: list[Received]) -> list[tuple[str, str, Any]]:
    """Frames as (scope, type, data) for a failure message."""
    return [(r.scope, r.type, r.data) for r in items]


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
        """The next frame; model messages are checked against their models."""
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
        """Send a v1 command; read up to its correlated reply (docs/HELIOS.md §3.4 order)."""
        first_chunk = len(self.chunk_events)
        request_id = self.client.send_command(name, params, uploads)
        await reply_to(self.client, request_id, name, timeout)
        broadcasts: list[Received] = []
        while True:
            item = await self.model_message(timeout)
            if item.request_id == request_id:
                return Reply(item, broadcasts, [c for c, _ in self.chunk_events[first_chunk:]])
            assert item.scope == "application", f"unexpected frame before the reply to {name}: {item}"
            assert item.type != "state", f"a state before the reply to {name}: {item.data}"
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

    async def quiet(self, seconds: float) -> dict[str, Any]:
        """Nothing at all arrives for ``seconds``; returns the state behind the barrier that ends the window.

        What must stay silent is the chunk clock, which no request of the client triggers, so the check
        is a window of ``seconds``; a round-trip barrier at its end makes sure that whatever the server
        sent during the window has arrived before it is judged. Read every frame before calling.
        """
        start, chunks = self.cursor, len(self.chunk_events)
        await asyncio.sleep(seconds)
        reply = await self.command("list_snapshots")
        end = index_of(self.client, reply.reply)
        extra = self.client.received[start:end]
        assert not extra and len(self.chunk_events) == chunks, f"expected silence, got {described(extra)}"
        assert (reply.kind, reply.reply.type) == ("answer", "snapshot_list"), reply
        return await self.state()

    async def read_only_barrier(self) -> dict[str, Any]:
        """list_snapshots (read-only) as a barrier: all sent before it has arrived; returns its state."""
        reply = await self.command("list_snapshots")
        assert (reply.kind, reply.reply.type) == ("answer", "snapshot_list"), reply
        return await self.state()

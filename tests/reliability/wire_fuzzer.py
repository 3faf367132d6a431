"""Drive the wire fuzz over real data channels and count what the server did with every frame.

One :class:`FuzzSession` = one production session, one raw aiortc client (``WireClient``) and the session's
admin live feed (``WS /admin/sessions/{id}/live``), which delivers every record entry and rejection in the
order the server wrote them. After each item (one frame, or a burst) the fuzzer sends a *barrier* — a
read-only ``list_snapshots`` without parameters — and waits for its answer and the ``state`` that follows on
the wire, and for the barrier's own entry on the feed. Everything the feed shows between two barriers belongs
to the item in between, so each frame is judged on its own.

The barrier's entry on the feed is the first ``list_snapshots`` received after the previous barrier (on v1
also matched by its ``request_id``): the fuzz never sends a valid ``list_snapshots`` of its own
(``fuzz_frames.SAFE_COMMANDS``). It cannot carry its number as a parameter: a command refuses a parameter it
does not take (reactor-runtime's "unexpected argument", docs/LIMITS.md), so ``{"barrier": n}`` would be
answered with ``invalid_command`` instead of ``snapshot_list``.

* **crash** — the barrier went unanswered, the connection dropped, the session ended, the feed or an admin
  endpoint failed (5xx), or the session stopped generating video;
* **state change** — a frame that must be rejected changed the ``state`` the barrier returns;
* **unrecorded** — a frame left no trace (neither a received entry nor a rejection), or a frame that must be
  rejected was not recorded as rejected (no rejection, no ``command_error``).

A crash ends that session; the run goes on in a fresh one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import websockets.asyncio.client
from fuzz_frames import Frame, Item

from conformance.helpers import resume_video
from conformance.wire_client import WireClient

BARRIER_TIMEOUT = 5.0  # seconds for a barrier's answer (a 1 MB frame takes well under a second on loopback)
MAX_CRASHES = 20  # a run stops after this many crashed sessions (the server is too broken to go on)
GENERATION_TIMEOUT = 15.0
REFUSALS = ("command_error", "rewind_failed")


class SessionCrashed(Exception):
    """The session under fuzz can no longer be used; the message says why."""


@dataclass
class Tally:
    """What one run did and found (the figures the suite prints)."""

    wire: str
    frames: int = 0
    bytes_sent: int = 0
    rejected: int = 0  # frames recorded as rejected (runtime rejection or model refusal)
    sessions: int = 0
    generation_checks: int = 0
    crashes: list[str] = field(default_factory=list)
    state_changes: list[str] = field(default_factory=list)
    unrecorded: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def line(self) -> str:
        return (
            f"wire fuzz {self.wire}: {self.frames} frames ({self.bytes_sent / 1e6:.1f} MB, {self.rejected} "
            f"rejected) in {self.sessions} sessions, {self.generation_checks} generation checks, "
            f"{self.seconds:.1f} s: crashes {len(self.crashes)}, state changes {len(self.state_changes)}, "
            f"unrecorded {len(self.unrecorded)}"
        )


@dataclass
class Window:
    """What the record shows between two barriers."""

    entries: list[dict[str, Any]]

    @property
    def received(self) -> list[dict[str, Any]]:
        return [e for e in self.entries if e.get("direction") == "in"]

    @property
    def rejections(self) -> list[dict[str, Any]]:
        return [e["rejection"] for e in self.entries if "rejection" in e]

    @property
    def refusals(self) -> list[dict[str, Any]]:
        return [
            e
            for e in self.entries
            if e.get("direction") == "out" and (e.get("body") or {}).get("type") in REFUSALS
        ]

    @property
    def frames_seen(self) -> int:
        """Frames the record accounts for: each is received (maybe rejected after), or rejected undecoded."""
        return len(self.received) + sum(r.get("command") is None for r in self.rejections)

    @property
    def ended(self) -> bool:
        return any(e.get("kind") == "session_ended" for e in self.entries)


class FuzzSession:
    """A connected session under fuzz, its admin live feed, and the last state a barrier returned."""

    def __init__(self, url: str, wire: str, token: str) -> None:
        self.url = url
        self.wire = wire
        self.client = WireClient(url, wire=wire, mode="production", token=token, keep_frames=False)
        self.feed: list[dict[str, Any]] = []
        self._feed_error: str | None = None
        self._feed_changed = asyncio.Event()
        self._feed_task: asyncio.Task[None] | None = None
        self._feed_pos = 0
        self._barriers = 0
        self.state: dict[str, Any] = {}

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        await self.client.connect()
        ws_url = self.url.replace("http", "ws", 1) + f"/admin/sessions/{self.client.session_id}/live"
        ws = await websockets.asyncio.client.connect(ws_url, max_size=None)
        self._feed_task = asyncio.get_running_loop().create_task(self._follow(ws))
        self.client.send_command("set_prompt", {"prompt": "fuzz baseline"})
        await self.barrier()

    async def _follow(self, ws: Any) -> None:
        try:
            async for message in ws:
                self.feed.append(json.loads(message))
                self._feed_changed.set()
            self._feed_error = f"the server closed the admin live feed (code {ws.close_code})"
        except Exception as exc:  # noqa: BLE001 - any end of the feed is a finding
            self._feed_error = f"the admin live feed failed: {type(exc).__name__}: {exc}"
        finally:
            self._feed_changed.set()
            await ws.close()

    async def close(self) -> int | None:
        """Fetch the session's transcript (its status is returned: 5xx is a crash) and end the session."""
        status = None
        with contextlib.suppress(httpx.HTTPError):
            resp = await self.client.http.get(f"/admin/sessions/{self.client.session_id}/transcript")
            status = resp.status_code
        if self._feed_task is not None:
            self._feed_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._feed_task
        with contextlib.suppress(Exception):
            await self.client.close()
        return status

    # ------------------------------------------------------------------ sending

    def send(self, frame: Frame) -> None:
        sctp = self.client.pc.sctp if self.client.pc is not None else None
        if frame.oversize and sctp is not None:
            # The raw client refuses frames above the peer's max-message-size; a hostile client would not.
            saved = sctp._remote_max_message_size  # noqa: SLF001
            sctp._remote_max_message_size = 0  # noqa: SLF001 - 0 = no limit
            try:
                self.client.send_raw(frame.channel, frame.payload)
            finally:
                sctp._remote_max_message_size = saved  # noqa: SLF001
            return
        self.client.send_raw(frame.channel, frame.payload)

    # ------------------------------------------------------------------ barrier

    async def barrier(self) -> Window:
        """Round trip behind everything sent so far: returns the record window since the last barrier."""
        self._barriers += 1
        n = self._barriers
        start = len(self.client.received)
        try:
            request_id = self.client.send_command("list_snapshots")
        except Exception as exc:  # noqa: BLE001 - a closed channel is a crash
            raise SessionCrashed(f"the data channel refused the barrier: {exc}") from None
        try:
            state = await self._wire_answer(start, request_id)
        except TimeoutError:
            raise SessionCrashed(
                self._silence(f"barrier {n} unanswered within {BARRIER_TIMEOUT:g} s")
            ) from None
        self.state = state
        return await self._feed_window(n, request_id)

    async def _wire_answer(self, start: int, request_id: str) -> dict[str, Any]:
        received = self.client.received

        def answer_at() -> int | None:
            for i in range(start, len(received)):
                item = received[i]
                if item.type == "snapshot_list" and (not request_id or item.request_id == request_id):
                    return i
            return None

        def state_after() -> dict[str, Any] | None:
            index = answer_at()
            if index is None:
                return None
            for item in received[index + 1 :]:
                if item.type == "state" and item.scope in ("application", "reply"):
                    return item.data
            return None

        await self.client._wait(lambda: state_after() is not None, BARRIER_TIMEOUT, "the barrier's state")  # noqa: SLF001
        state = state_after()
        assert state is not None
        return state

    async def _feed_window(self, n: int, request_id: str) -> Window:
        deadline = time.monotonic() + BARRIER_TIMEOUT
        while True:
            for i in range(self._feed_pos, len(self.feed)):
                entry = self.feed[i]
                body = entry.get("body")
                if (
                    entry.get("direction") == "in"
                    and isinstance(body, dict)
                    and body.get("type") == "list_snapshots"
                    and not body.get("data")
                    and entry.get("request_id", "") == request_id
                ):
                    window = Window(self.feed[self._feed_pos : i])
                    self._feed_pos = i + 1
                    return window
            if self._feed_error is not None:
                raise SessionCrashed(self._feed_error)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SessionCrashed(f"barrier {n} never appeared on the admin live feed")
            self._feed_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._feed_changed.wait(), min(remaining, 0.25))

    def _silence(self, what: str) -> str:
        pc = self.client.pc
        connection = pc.connectionState if pc is not None else "none"
        channel = self.client.channels.get("data")
        ended = any(r.type in ("sessionEnded", "session_ended") for r in self.client.received)
        return f"{what} (peer {connection}, data channel {getattr(channel, 'readyState', 'none')}" + (
            ", session ended)" if ended else ")"
        )

    def check_alive(self) -> None:
        if not self.client.ready:
            raise SessionCrashed(self._silence("the connection dropped"))

    # ------------------------------------------------------------------ generation

    async def check_generation(self, label: str) -> None:
        """Start, and prove from the video that chunks 0-2 are generated; then reset to a still baseline.

        The schedule limits (docs/LIMITS.md: 16 pending prompts, 14 000 characters) may leave no room for
        the check's own prompt after an item that filled the schedule (the 300-prompt flood stops at the
        limit), and without a prompt at chunk 0 ``start`` is refused too. Both refusals are documented
        answers, not crashes: the check then makes room the documented way (``reset``) and starts again.
        """
        client = self.client
        resume_video(client)
        if not await self._generates(label):
            client.send_command("reset")
            if not await self._generates(label):
                raise SessionCrashed(self._silence(f"the session stopped generating after {label}"))
        client.send_command("reset")
        client.send_command("set_prompt", {"prompt": "fuzz baseline"})
        await self.barrier()

    async def _generates(self, label: str) -> bool:
        """set_prompt + start: True once a frame of chunk 2 is decoded, False when ``start`` is refused.

        SessionCrashed when neither happens within GENERATION_TIMEOUT."""
        client = self.client
        since = len(client.received)
        first = len(client.frames)
        client.send_command("set_prompt", {"prompt": f"generation check {label}"})
        client.send_command("start")

        def start_refused() -> bool:
            return any(
                r.type == "command_error" and isinstance(r.data, dict) and r.data.get("command") == "start"
                for r in client.received[since:]
            )

        def generated() -> bool:
            return any(f.markers is not None and f.markers.chunk >= 2 for f in client.frames[first:])

        try:
            await client._wait(  # noqa: SLF001
                lambda: generated() or start_refused(), GENERATION_TIMEOUT, "a decoded frame of chunk 2"
            )
        except TimeoutError:
            raise SessionCrashed(self._silence(f"the session stopped generating after {label}")) from None
        return generated()


# ---------------------------------------------------------------------------------------------- the run


class WireFuzzer:
    """Send every item of a run to a session, barrier after each, judge the window; recover from crashes."""

    def __init__(self, url: str, wire: str, token: str = "fuzz-token") -> None:
        self.url = url
        self.wire = wire
        self.token = token
        self.tally = Tally(wire)
        self.session: FuzzSession | None = None

    async def _session(self) -> FuzzSession:
        if self.session is None:
            session = FuzzSession(self.url, self.wire, self.token)
            self.tally.sessions += 1
            try:
                await session.open()
            except SessionCrashed as exc:
                await session.close()
                raise SessionCrashed(f"a fresh session failed to start: {exc}") from None
            self.session = session
        return self.session

    async def _drop(self, why: str) -> None:
        if self.session is not None:
            session, self.session = self.session, None
            status = await session.close()
            if status is not None and status >= 500:
                why += f"; its transcript (GET /admin/sessions/{{id}}/transcript) answered {status}"
        self.tally.crashes.append(why)

    async def run(self, items: list[Item]) -> Tally:
        t0 = time.monotonic()
        for index, item in enumerate(items):
            if len(self.tally.crashes) >= MAX_CRASHES:
                self.tally.crashes.append(
                    f"run stopped after {MAX_CRASHES} crashes, {index} of {len(items)} items"
                )
                break
            try:
                session = await self._session()
            except SessionCrashed as exc:
                self.tally.crashes.append(str(exc))
                break
            await self._item(session, index, item)
        session = self.session
        if session is not None:
            try:
                await session.check_generation("the last frame")
                self.tally.generation_checks += 1
            except SessionCrashed as exc:
                await self._drop(str(exc))
        if self.session is not None:
            status = await self.session.close()
            if status is not None and status >= 500:
                self.tally.crashes.append(f"GET /admin/sessions/{{id}}/transcript answered {status}")
            self.session = None
        self.tally.seconds = time.monotonic() - t0
        return self.tally

    async def _item(self, session: FuzzSession, index: int, item: Item) -> None:
        tally = self.tally
        before = session.state
        label = f"item {index}: {item.frames[0].describe()}" + (
            f" (+{len(item.frames) - 1} more)" if len(item.frames) > 1 else ""
        )
        try:
            for frame in item.frames:
                session.send(frame)
                tally.frames += 1
                tally.bytes_sent += frame.size
            window = await session.barrier()
            session.check_alive()
        except SessionCrashed as exc:
            await self._drop(f"{label}: {exc}")
            return
        except Exception as exc:  # noqa: BLE001 - the client could not even send it
            await self._drop(f"{label}: sending failed: {type(exc).__name__}: {exc}")
            return
        self._judge(label, item, window, before, session.state)
        if window.ended:
            await self._drop(f"{label}: the session ended")
            return
        if item.check_generation:
            try:
                await session.check_generation(label)
                tally.generation_checks += 1
            except SessionCrashed as exc:
                await self._drop(f"{label}: {exc}")

    def _judge(
        self, label: str, item: Item, window: Window, before: dict[str, Any], after: dict[str, Any]
    ) -> None:
        tally = self.tally
        rejected = len(window.rejections) + len(window.refusals)
        tally.rejected += min(rejected, len(item.frames))
        missing = len(item.frames) - window.frames_seen
        if missing > 0:
            tally.unrecorded.append(f"{label}: {missing} frame(s) left no trace in the record")
        must_reject = all(f.must_reject for f in item.frames)
        if must_reject and rejected == 0 and missing <= 0:
            tally.unrecorded.append(f"{label}: must be rejected, but no rejection was recorded")
        if must_reject and after != before:
            changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
            tally.state_changes.append(f"{label}: state changed ({', '.join(changed)})")

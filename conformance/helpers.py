"""Test helpers for raw wire clients (`conformance.wire_client.WireClient`) and server records.

client = await helios_client(wire="v1")
client.send_command("set_prompt", {"prompt": "a fox"}); client.send_command("start")
await wait_for_chunk(client, 2)                                   # chunk 2 completed
msg = await expect_message(client, "state", where={"current_chunk": 3})
assert prompt_ids_by_chunk(client)[1] == {prompt_id("a fox")}     # proven from the pixels
assert_no_violations(helios)                                      # the client kept the contract
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any

from mock_server.media.markers import Markers, prompt_id

from .client_rules import DEFAULT_PING_TOLERANCE, PING_INTERVALS, Violation, check_record
from .wire_client import FrameSample, Received, WireClient

Where = Callable[[Any], bool] | Mapping[str, Any] | None

__all__ = [
    "assert_no_violations",
    "chunks_with_prompt",
    "expect_message",
    "keepalive",
    "markers_by_chunk",
    "prompt_ids_by_chunk",
    "resume_video",
    "send_ping",
    "violations",
    "wait_for_chunk",
    "wait_for_frame",
]


def _matches(where: Where, data: Any) -> bool:
    if where is None:
        return True
    if callable(where):
        return bool(where(data))
    return isinstance(data, Mapping) and all(
        key in data and data[key] == value for key, value in where.items()
    )


async def expect_message(
    client: WireClient, type_: str, where: Where = None, *, timeout: float = 10.0, since: float = 0.0
) -> Received:
    """The first model message of `type_` received after `since` whose data matches `where`.

    `where` is a predicate on the data or a dict of expected fields (numbers compare numerically, so
    v1's ``33.0`` equals ``33``). Fails the test (AssertionError) after `timeout` s, listing what came.
    """
    try:
        return await client.wait_message(
            type_, lambda data: _matches(where, data), since=since, timeout=timeout
        )
    except TimeoutError:
        seen = [f"{r.type} {json.dumps(r.data, default=str)[:80]}" for r in client.messages(since=since)[-8:]]
        condition = f" matching {where!r}" if where is not None and not callable(where) else ""
        raise AssertionError(
            f"no {type_!r} message{condition} within {timeout:g} s; last received: {seen or 'nothing'}"
        ) from None


async def wait_for_chunk(
    client: WireClient, n: int, *, timeout: float = 15.0, since: float = 0.0, frames: bool = False
) -> Received:
    """Wait until chunk `n` has completed (its ``chunk_complete``); with `frames`, also until a video
    frame of a later chunk was decoded (so every frame of chunk `n` that will arrive has arrived)."""
    done = await expect_message(client, "chunk_complete", {"chunk_index": n}, timeout=timeout, since=since)
    if frames:
        await wait_for_frame(client, lambda m: m.chunk > n, timeout=timeout)
    return done


async def wait_for_frame(
    client: WireClient, where: Callable[[Markers], bool], *, timeout: float = 15.0
) -> FrameSample:
    """The first decoded video frame whose markers satisfy `where` (e.g. ``lambda m: m.chunk == 3``)."""
    try:
        return await client.wait_frames(lambda f: f.markers is not None and where(f.markers), timeout=timeout)
    except TimeoutError:
        last = next((f.markers for f in reversed(client.frames) if f.markers is not None), None)
        hint = " (a v1 client gets video only after resume_video(client))" if not client.frames else ""
        raise AssertionError(
            f"no matching video frame within {timeout:g} s ({len(client.frames)} frames, last markers {last})"
            + hint
        ) from None


def markers_by_chunk(client: WireClient) -> dict[int, list[Markers]]:
    """Markers of every decoded video frame, grouped by chunk index, in arrival order."""
    out: dict[int, list[Markers]] = {}
    for sample in client.frames:
        if sample.markers is not None:
            out.setdefault(sample.markers.chunk, []).append(sample.markers)
    return dict(sorted(out.items()))


def prompt_ids_by_chunk(client: WireClient) -> dict[int, set[int]]:
    """Prompt ids (``mock_server.media.markers.prompt_id``) seen in the frames of each chunk."""
    return {chunk: {m.prompt_id for m in marks} for chunk, marks in markers_by_chunk(client).items()}


def chunks_with_prompt(client: WireClient, prompt: str) -> list[int]:
    """Chunks whose frames carry `prompt` (every decoded frame of the chunk)."""
    wanted = prompt_id(prompt)
    return [chunk for chunk, ids in prompt_ids_by_chunk(client).items() if ids == {wanted}]


def resume_video(client: WireClient) -> None:
    """Let video flow to a v1 client: registered connections start with main_video paused until the
    client sends ResumeTrack, as the Python SDK does at connect (docs/PROTOCOL.md §4.2). No-op on v0."""
    if client.wire == "v1":
        from mock_server.wire import reactor_wire_pb as pb

        client.notify_control("resume_track", pb.ResumeTrack(name="main_video"))


def send_ping(client: WireClient) -> None:
    """One keep-alive the way the public client of this wire sends it (v0 runtime ping, v1 control Ping)."""
    if client.wire == "v1":
        client.notify_control("ping")
    else:
        client.send_raw("data", json.dumps({"scope": "runtime", "data": {"type": "ping", "data": {}}}))


@contextlib.asynccontextmanager
async def keepalive(client: WireClient, interval: float | None = None) -> AsyncIterator[None]:
    """Ping at the documented interval (v0 5 s, v1 10 s) while the block runs, as the real clients do."""
    period = interval if interval is not None else PING_INTERVALS[client.wire]

    async def loop() -> None:
        while True:
            with contextlib.suppress(Exception):  # a closed channel ends nothing but this ping
                send_ping(client)
            await asyncio.sleep(period)

    task = asyncio.get_running_loop().create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _record_of(target: Any) -> Mapping[str, Any]:
    if isinstance(target, Mapping):
        return target
    if hasattr(target, "record"):  # a HeliosServer
        return target.record()
    raise TypeError(f"expected a HeliosServer, an admin record or a transcript, got {type(target).__name__}")


def violations(
    target: Any, *, ignore: Iterable[str] = (), ping_tolerance: float = DEFAULT_PING_TOLERANCE
) -> list[Violation]:
    """Client-rule violations of a HeliosServer's current record, an admin record, or a transcript."""
    return check_record(_record_of(target), ignore=ignore, ping_tolerance=ping_tolerance)


def assert_no_violations(
    target: Any,
    *,
    ignore: Iterable[str] = (),
    ping_tolerance: float = DEFAULT_PING_TOLERANCE,
) -> None:
    """Fail (AssertionError) if the client(s) broke a rule of `conformance.client_rules.RULES`.

    `target`: the `helios`/`helios_server` fixture, ``server.record()`` or ``server.transcript(id)``;
    `ignore`: rule ids to accept; `ping_tolerance` scales the documented keep-alive intervals.
    """
    found = violations(target, ignore=ignore, ping_tolerance=ping_tolerance)
    assert not found, "client violated the Helios contract:\n" + "\n".join(f"  {v}" for v in found)

"""The parts of a session, one at a time: task supervisor, upload store, signalling answers, watchdog, and
the session's end (supervised failures end it with a reason; close never cancels the task it runs in)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest

from mock_server.config import Settings
from mock_server.errors import Conflict, Forbidden, Invalid, NotFound
from mock_server.model.commands import CommandRejected
from mock_server.session.record import SessionRecord
from mock_server.session.session import Session
from mock_server.session.signalling import LEGACY_CONNECTION_ID, Signalling
from mock_server.session.tasks import TaskSupervisor
from mock_server.session.uploads import UploadStore
from mock_server.session.watchdog import Watchdog

SETTINGS = Settings(upload_wait=0.05)


def _session(settings: Settings = SETTINGS) -> tuple[Session, asyncio.Event]:
    ended = asyncio.Event()
    session = Session("s1", mode="local", settings=settings, schema={}, on_closed=lambda _: ended.set())
    return session, ended


async def _body(data: bytes) -> AsyncIterator[bytes]:  # a streamed body like Request.stream()
    yield data


# ---------------------------------------------------------------------------------------- task supervisor


async def test_a_task_that_dies_is_logged_recorded_and_handed_to_the_failure_handler(
    caplog: pytest.LogCaptureFixture,
) -> None:
    record = SessionRecord("s1", "local")
    failures: list[tuple[str, str]] = []

    async def failed(what: str, exc: BaseException) -> None:
        failures.append((what, str(exc)))

    async def boom() -> None:
        raise RuntimeError("boom")

    supervisor = TaskSupervisor("s1", record, failed)
    with caplog.at_level(logging.ERROR, "helios_mock.session"):
        await supervisor.spawn("chunk clock", boom())
    assert failures == [("chunk clock", "boom")]
    [logged] = [r for r in caplog.records if "chunk clock died" in r.getMessage()]
    assert logged.exc_info is not None  # the traceback is in the log
    [event] = [e for e in record.entries if e.kind == "task failed"]
    assert event.body == {"task": "chunk clock", "error": "RuntimeError: boom"}


async def test_cancel_all_spares_the_calling_task_and_tasks_left_to_finish() -> None:
    supervisor = TaskSupervisor("s1", SessionRecord("s1", "local"), _never_fails)
    forever = supervisor.spawn("sleeper", asyncio.sleep(3600))
    finishing = supervisor.spawn("closing an old peer", asyncio.sleep(0.01), cancel_on_close=False)
    survived = asyncio.Event()

    async def cancel_from_inside() -> None:
        supervisor.cancel_all()
        await asyncio.sleep(0)
        survived.set()

    await supervisor.spawn("canceller", cancel_from_inside())
    await asyncio.wait([forever, finishing], timeout=5)
    assert survived.is_set()
    assert forever.cancelled() and not finishing.cancelled()
    assert supervisor.running == 0


async def _never_fails(what: str, exc: BaseException) -> None:
    raise AssertionError(f"{what} failed: {exc}")


# ---------------------------------------------------------------------------------------- session end


async def test_a_dead_chunk_clock_ends_the_session_with_the_reason() -> None:
    session, ended = _session()

    async def broken_clock() -> None:
        raise ValueError("frame index out of range")

    session.clock.run = broken_clock  # type: ignore[method-assign]
    session.start()
    await asyncio.wait_for(ended.wait(), 5)
    assert session.closed
    assert session.close_reason == "internal error in the chunk clock: frame index out of range"
    kinds = [e.kind for e in session.record.entries]
    assert kinds.index("task failed") < kinds.index("session_ended")


async def test_close_from_the_watchdog_task_finishes_the_whole_close() -> None:
    """Issue 9: close called from a session task must not be cut short by cancelling that task."""
    session, ended = _session(replace(SETTINGS, max_session_duration=0.0, reconnect_grace=0.2))
    peers_closed: list[int] = []

    class FakeConnection:
        id = 7
        ready = ever_ready = False
        counted_as = None  # never counted in the connections gauge
        channels: dict[str, Any] = {}
        peer = None

        def send(self, out: Any) -> bool:
            return False

        async def flush(self, timeout: float) -> None:
            await asyncio.sleep(0)

        async def close(self) -> None:
            await asyncio.sleep(0.01)  # an await after the supervised tasks could have been cancelled
            peers_closed.append(self.id)

    session.connections[7] = FakeConnection()  # type: ignore[assignment]
    session.start()
    await asyncio.wait_for(ended.wait(), 5)
    assert peers_closed == [7]
    assert session.close_reason == "session reached its maximum duration of 0 s"
    await asyncio.sleep(0)
    assert session.tasks.running == 0


async def test_close_is_idempotent_and_every_caller_waits_for_the_end() -> None:
    session, ended = _session()
    session.start()
    await asyncio.gather(session.close("first"), session.close("second"))
    assert ended.is_set() and session.close_reason == "first"
    await session.close("third")
    assert session.close_reason == "first"


# ---------------------------------------------------------------------------------------- uploads


def _store(**changes: Any) -> UploadStore:
    return UploadStore("s1", replace(SETTINGS, **changes), SessionRecord("s1", "local"))


@pytest.mark.parametrize(
    ("name", "mime", "size"), [(" ", "image/png", 3), ("a.png", "", 3), ("a.png", "x", 0)]
)
def test_an_upload_needs_a_name_a_mime_type_and_a_positive_size(name: str, mime: str, size: int) -> None:
    with pytest.raises(Invalid, match="non-empty name and mime_type and a size > 0"):
        _store().create(name, mime, size)


async def test_an_upload_is_filled_once_with_exactly_the_declared_bytes() -> None:
    store = _store()
    upload = store.create("a.png", "image/png", 3)
    with pytest.raises(Invalid, match="declared 3 bytes but 2 arrived"):
        await store.fill(upload.presigned_id, _body(b"ab"))
    await store.fill(upload.presigned_id, _body(b"abc"))
    assert upload.data == b"abc" and upload.arrived.is_set()
    with pytest.raises(Conflict, match="already uploaded"):
        await store.fill(upload.presigned_id, _body(b"abc"))


async def test_an_expired_upload_url_is_refused_before_its_body_is_read() -> None:
    store = _store(upload_url_ttl=0.0)
    upload = store.create("a.png", "image/png", 3)
    upload.created_at = time.monotonic() - 1

    async def never() -> AsyncIterator[bytes]:
        raise AssertionError("the body was read")
        yield b""

    with pytest.raises(Forbidden, match="upload URL expired"):
        await store.fill(upload.presigned_id, never())


async def test_a_command_naming_an_unknown_or_unfilled_upload_is_rejected() -> None:
    store = _store()
    params = SimpleNamespace(image=SimpleNamespace(upload_id="nope"))
    with pytest.raises(CommandRejected, match="unknown to this session") as unknown:
        await store.resolve("set_image", params)
    assert unknown.value.code == "unresolved_upload"
    upload = store.create("a.png", "image/png", 3)
    params.image.upload_id = upload.presigned_id
    with pytest.raises(CommandRejected, match="did not arrive within 0.05 s"):
        await store.resolve("set_image", params)
    await store.fill(upload.presigned_id, _body(b"abc"))
    resolved = await store.resolve("set_image", params)
    assert resolved["image"].data == b"abc"


# ---------------------------------------------------------------------------------------- signalling


def _signalling() -> Signalling:
    def make(connection_id: int, legacy: bool) -> Any:
        return SimpleNamespace(
            id=connection_id, legacy=legacy, answer_error=None, answer_sdp=None, answer_ready_at=0.0
        )

    return Signalling("s1", SessionRecord("s1", "local"), make, lambda what, work: work.close())


def test_answer_polls_before_an_offer_are_not_found() -> None:
    signalling = _signalling()
    with pytest.raises(NotFound, match="POST sdp_params first"):
        signalling.answer(None, legacy=True)
    with pytest.raises(NotFound, match="unknown connection 5"):
        signalling.answer(5, legacy=False)


def test_an_answer_poll_is_202_until_answered_then_200() -> None:
    signalling = _signalling()
    conn = signalling.register()
    assert conn.id == 2000 and signalling.register(2005).id == 2005 and signalling.register().id == 2006
    assert signalling.answer(2000, legacy=False).status == 202
    conn.answer_sdp = "v=0"
    poll = signalling.answer(2000, legacy=False)
    assert (poll.status, poll.body) == (200, {"sdp_answer": "v=0", "connection_id": 2000})
    conn.answer_error = "bad SDP"
    with pytest.raises(Invalid, match="could not be answered: bad SDP"):
        signalling.answer(2000, legacy=False)


async def test_a_legacy_offer_uses_connection_1001_and_an_unparseable_offer_is_invalid() -> None:
    signalling = Signalling(
        "s1", SessionRecord("s1", "local"), _real_connection, lambda what, work: work.close()
    )
    with pytest.raises(Invalid, match="the SDP offer"):
        await signalling.offer(None, "not sdp", [], {}, legacy=True)
    assert list(signalling.connections) == [LEGACY_CONNECTION_ID]
    with pytest.raises(Invalid, match="could not be answered"):
        signalling.answer(None, legacy=True)
    await signalling.connections[LEGACY_CONNECTION_ID].close()


def _real_connection(connection_id: int, legacy: bool) -> Any:
    session, _ = _session()
    return session._new_connection(connection_id, legacy)


# ---------------------------------------------------------------------------------------- watchdog


async def test_watchdog_ends_an_expired_session_and_drops_silent_connections() -> None:
    dropped: list[tuple[int, str]] = []

    async def drop(conn: Any, why: str) -> None:
        dropped.append((conn.id, why))

    async def end(reason: str) -> None:
        raise AssertionError(reason)

    silent = SimpleNamespace(id=3, ready=True, ever_ready=True, last_inbound=0.0)
    settings = replace(SETTINGS, ping_timeout=5.0, reconnect_grace=10.0, max_session_duration=100.0)
    start = silent.last_inbound = time.monotonic()
    watchdog = Watchdog("s1", settings, start, {3: silent}, drop=drop, end=end)  # type: ignore[dict-item]
    assert await watchdog._check(start + 4) is None and dropped == []
    assert await watchdog._check(start + 6) is None
    assert dropped == [(3, "no frame from the client for 5 s (ping watchdog)")]
    assert await watchdog._check(start + 101) == "session reached its maximum duration of 100 s"
    silent.ready = False
    watchdog.connection_lost()
    assert watchdog._orphaned_since is not None
    assert await watchdog._check(watchdog._orphaned_since + 9) is None
    assert await watchdog._check(watchdog._orphaned_since + 11) == "no client reconnected within 10 s"
    watchdog.connection_live()
    assert watchdog._orphaned_since is None

"""Session registry: the local session, production sessions (with their owners) and platform limits.

Tokens are minted and verified by `services.tokens`; who may use which session is `services.access`.

Errors are raised as `mock_server.errors` classes; the HTTP layer turns them into `{"detail": ...}`.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import secrets
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any

from mock_server.config import SERVER_VERSION, VERSION, Settings
from mock_server.errors import ApiError, Conflict, NotFound
from mock_server.faults import Fault, FaultRegistry, chaos_preset, load_faults
from mock_server.media.encoded_chunks import EncodedChunkCache
from mock_server.metrics import Metrics
from mock_server.model.model_schema import build_model_schema
from mock_server.model.plan import ChunkPlan
from mock_server.services.access import (
    SessionBudgets,
    SessionOwner,
    check_creation,
    check_session_access,
    owner_for,
    session_duration_limit,
)
from mock_server.services.tokens import Principal, TokenService
from mock_server.session.record import ClosedRecord
from mock_server.session.recording import Recording
from mock_server.session.session import TRACKS, Session

log = logging.getLogger("helios_mock.registry")

LOCAL_ID = "local"
MODEL_NAMES = {"helios", "reactor/helios"}
MAX_REASON = 64  # characters of a client's stop reason that are kept
COLLECT_DELAY = 2.0  # seconds after a session closes before the full collection that frees its cycles


@dataclass(eq=False)  # identity: a summary is a key of weak caches (the inspector's violations)
class ClosedSession:
    """What is kept of an ended session: no peer, track, encoder or buffer, only the facts the descriptor,
    /admin/record and the transcript routes need, and the record (bounded by bytes)."""

    id: str
    mode: str
    account: str | None
    close_reason: str | None
    chunks_generated: int
    connection_views: list[dict[str, Any]]
    record: ClosedRecord
    fired_faults: list[dict[str, Any]]
    plans: tuple[tuple[float, ChunkPlan], ...] = ()  # the last chunk plans (inspector thumbnails)
    recording: Recording | None = None  # clips already cut keep working after the end (until they expire)
    current_chunk: int = 0
    closed: bool = True
    local_state: str = "CLOSING"

    @classmethod
    def of(cls, session: Session) -> ClosedSession:
        return cls(
            id=session.id,
            mode=session.mode,
            account=session.account,
            close_reason=session.close_reason,
            chunks_generated=session.chunks_generated,
            connection_views=[c.describe() for c in session.connections.values()],
            record=ClosedRecord(session.record),
            fired_faults=list(session.faults.fired),
            plans=tuple(session.clock.plans)[-KEEP_CLOSED_PLANS:],
            current_chunk=session.helios.current_chunk,
            recording=session.recording,
        )


AnySession = Session | ClosedSession


def closed_key(session: Session) -> str:
    """The session's key among the closed summaries (a local session's id is always "local")."""
    return session.id if session.mode == "production" else f"local#{session.record.uid}"


KEEP_CLOSED_PLANS = 64  # chunk plans a closed session's summary keeps for the inspector


def new_session_id(instance_id: str = "") -> str:
    """sess_<hex>, or sess_<instance>_<hex> when this server is one of several behind a router."""
    prefix = f"sess_{instance_id}_" if instance_id else "sess_"
    return prefix + secrets.token_hex(8)


class Registry:
    """Owns every session; the HTTP routes only talk to this."""

    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics if metrics is not None else Metrics()
        self.schema = build_model_schema(VERSION)
        self.local: Session | None = None
        self.sessions: dict[str, Session] = {}
        self.closed: OrderedDict[str, ClosedSession] = OrderedDict()
        self.token_service = TokenService(settings)
        self.budgets = SessionBudgets()
        self.owners: dict[str, SessionOwner] = {}  # production session id -> who created it
        self._creations: deque[float] = deque()
        self.unbound_http: deque[dict[str, Any]] = deque(maxlen=1000)
        self._ready_at: dict[str, float] = {}
        self.chunk_cache = (
            EncodedChunkCache(
                settings.native_size, frame_interval=settings.frame_interval, on_encoded=self.metrics.encoded
            )
            if settings.media == "shared"
            else None
        )
        self._collect_pending = False
        self.faults = new_fault_registry(settings)
        self._queued: dict[str, tuple[str, float]] = {}  # session id -> (state, until): creation faults

    # ------------------------------------------------------------------ descriptors

    def descriptor(self, session: AnySession | None) -> dict[str, Any]:
        """The session object both clients parse (docs/PROTOCOL.md §1.4); a production one may be pending."""
        base: dict[str, Any] = {
            "session_id": session.id if session else LOCAL_ID,
            "cluster": "local" if session is None or session.mode == "local" else "mock",
            "model": {"name": "helios"},
            "server_info": {"server_version": SERVER_VERSION},
        }
        if session is None:
            return {**base, "state": "READY"}
        if session.mode == "local":
            state = session.local_state
        elif session.closed:
            state = "CLOSED"
        elif session.id in self._queued and time.monotonic() < self._queued[session.id][1]:
            return {**base, "state": self._queued[session.id][0]}
        elif time.monotonic() < self._ready_at.get(session.id, 0.0):
            return {**base, "state": "PENDING"}
        else:
            state = "ACTIVE"
        if session.closed:
            return {**base, "state": state}
        return {
            **base,
            "state": state,
            "selected_transport": {"protocol": "webrtc", "version": "1.0"},
            "capabilities": {
                "protocol_version": "1.0",
                "tracks": TRACKS,
                "commands": [],
                "emission_fps": None,
            },
            "schema": self.schema,
        }

    # ------------------------------------------------------------------ local mode

    async def start_local(self, body: dict[str, Any]) -> Session:
        _note_generation(body)
        if self.local is not None and not self.local.closed:
            return self.local  # idempotent, as RT2 (RT3: 409); see docs/DECISIONS.md
        self._refusal_fault()
        self.local = self._new_session(LOCAL_ID, "local", account=None)
        self._creation_fault(self.local)
        return self.local

    async def stop_local(self, reason: object = None) -> None:
        """POST /stop_session: end the local session with the client's reason (≤ 64 characters).

        With no session running: 409, as the real runtime answers."""
        if self.local is None or self.local.closed:
            raise Conflict("no local session is running (nothing to stop)")
        session, self.local = self.local, None
        await session.close(str(reason or "session stopped by the client")[:MAX_REASON])

    def health(self) -> dict[str, Any]:
        """GET /health: the runtime is "serving" while any session runs, else "available"."""
        return {
            "status": "healthy",
            "state": "serving" if self.sessions else "available",
            "model": "helios",
            "detail": None,
        }

    # ------------------------------------------------------------------ production mode

    def mint_token(self, api_key: str | None, body: Any) -> dict[str, Any]:
        """`POST/GET /tokens` -> `{"jwt", "expires_at"}` (body None for GET)."""
        return self.token_service.mint(api_key, body, open_session_account=self._open_session_account)

    def authenticate(self, authorization: str | None) -> Principal:
        """`Authorization: Bearer <token>` -> the caller, or `Unauthorized`."""
        return self.token_service.authenticate(authorization)

    def _open_session_account(self, session_id: str) -> str | None:
        owner = self.owners.get(session_id)
        session = self.sessions.get(session_id)
        return owner.account if owner is not None and session is not None and not session.closed else None

    async def create_session(self, authorization: str | None, body: dict[str, Any]) -> Session:
        principal = self.authenticate(authorization)
        model = (body.get("model") or {}).get("name") if isinstance(body.get("model"), dict) else None
        if model not in MODEL_NAMES:
            raise ApiError(
                404, f"unknown model {model!r}; this mock serves only 'helios' (or 'reactor/helios')"
            )
        check_creation(principal, model)
        _note_generation(body)
        self._refusal_fault()
        now = time.monotonic()
        self._check_rate_limits(principal.account, now)
        self.budgets.charge(principal, time.time())
        self._creations.append(now)
        session_id = new_session_id(self.settings.instance_id)
        self.owners[session_id] = owner_for(principal, session_id)
        session = self._new_session(
            session_id,
            "production",
            account=principal.account,
            max_duration=session_duration_limit(principal, self.settings),
        )
        self._ready_at[session.id] = now + self.settings.pending_delay
        session.record.add("http", "POST /sessions", body={"status": 201})
        self._creation_fault(session)
        return session

    def _check_rate_limits(self, account: str, now: float) -> None:
        """429 when the creation rate or the account's concurrent sessions are at their limits."""
        limit = self.settings.max_creations_per_minute
        while self._creations and now - self._creations[0] > 60:
            self._creations.popleft()
        if limit and len(self._creations) >= limit:
            retry = max(1, int(60 - (now - self._creations[0])) + 1)
            raise ApiError(
                429,
                f"at most {limit} sessions may be created per minute; retry in {retry} s",
                {"Retry-After": str(retry)},
            )
        concurrent = self.settings.max_sessions_per_account
        running = [s for s in self.sessions.values() if s.account == account and not s.closed]
        if concurrent and len(running) >= concurrent:
            raise ApiError(
                429,
                f"this account already runs {len(running)} sessions (limit {concurrent}); DELETE one first",
                {"Retry-After": "5"},
            )

    def production_session(self, session_id: str, authorization: str | None) -> AnySession:
        """A production session (running or closed) the caller may use: 401, 404, then 403."""
        principal = self.authenticate(authorization)
        session: AnySession | None = self.sessions.get(session_id) or self.closed.get(session_id)
        owner = self.owners.get(session_id)
        if session is None or session.mode != "production" or owner is None:
            raise NotFound(f"unknown session {session_id!r}")
        check_session_access(principal, owner)
        return session

    async def delete_session(self, session_id: str, authorization: str | None) -> None:
        session = self.production_session(session_id, authorization)
        if not isinstance(session, Session) or session.closed:
            raise ApiError(404, f"session {session_id!r} is already closed")
        await session.close("session deleted by the client")

    # ------------------------------------------------------------------ shared

    def running(self, session_id: str, authorization: str | None) -> Session:
        """A running session for transport/upload routes. Local needs no auth; production needs a bearer."""
        if session_id == LOCAL_ID:
            if self.local is None or self.local.closed:
                raise ApiError(400, "No session running; POST /start_session first")
            return self.local
        session = self.production_session(session_id, authorization)
        if not isinstance(session, Session) or session.closed:
            raise ApiError(404, f"session {session_id!r} is closed")
        return session

    def upload_owner(self, presigned_id: str) -> Session:
        """The running session that created upload slot `presigned_id`."""
        for session in list(self.sessions.values()):
            if presigned_id in session.uploads:
                return session
        raise NotFound(f"unknown upload {presigned_id!r} (uploads are freed when their session ends)")

    def state_counts(self) -> dict[str, int]:
        """How many open sessions are in each state (the `state` of their descriptor), for /metrics."""
        counts: dict[str, int] = {}
        for session in list(self.sessions.values()):
            state = self.descriptor(session)["state"]
            counts[state] = counts.get(state, 0) + 1
        return counts

    def all_sessions(self) -> list[AnySession]:
        return list(self.closed.values()) + list(self.sessions.values())

    def _new_session(
        self, session_id: str, mode: str, account: str | None, max_duration: float | None = None
    ) -> Session:
        session = Session(
            session_id,
            mode=mode,
            chunk_cache=self.chunk_cache,
            settings=self.settings,
            schema=self.schema,
            account=account,
            max_duration=max_duration,
            on_closed=self._closed,
            fault_registry=self.faults,
            metrics=self.metrics,
        )
        self.sessions[session_id] = session
        session.start()
        return session

    def _closed(self, session: Session) -> None:
        self.faults.on_session_closed(session.id)
        self._queued.pop(session.id, None)
        self.sessions.pop(session.id, None)
        if self.local is session:
            self.local = None
        self.closed[closed_key(session)] = ClosedSession.of(session)  # the Session (peers, tracks, feed) goes
        budget = self.settings.max_closed_record_bytes
        kept = sum(c.record.size for c in self.closed.values())
        while len(self.closed) > self.settings.keep_closed_sessions or (
            kept > budget and len(self.closed) > 1
        ):
            forgotten, summary = self.closed.popitem(last=False)
            kept -= summary.record.size
            self.owners.pop(forgotten, None)
        self._collect_soon()

    def summary_of(self, session: Session) -> ClosedSession | None:
        """The summary kept of a session that has ended (None while it runs, or once forgotten)."""
        return self.closed.get(closed_key(session)) if session.closed else None

    def _collect_soon(self) -> None:
        """One full collection a little after sessions close (batched): frees their reference cycles."""
        if self._collect_pending:
            return
        self._collect_pending = True
        asyncio.get_running_loop().call_later(COLLECT_DELAY, self._collect)

    def _collect(self) -> None:
        self._collect_pending = False
        started = time.perf_counter()
        freed = gc.collect()
        log.debug("collected %d objects in %.1f ms", freed, 1000 * (time.perf_counter() - started))

    async def reset(self) -> None:
        """Close every session and forget all records (the test fixture's reset)."""
        await self.shutdown("the server was reset")
        self.closed.clear()
        self.unbound_http.clear()
        self.owners.clear()
        self.budgets.clear()
        self._creations.clear()
        self.faults = new_fault_registry(self.settings)
        self._queued.clear()

    def start_media(self) -> None:
        """Start the encoder worker processes before the first session needs them."""
        if self.chunk_cache is not None:
            self.chunk_cache.start()

    async def shutdown(self, reason: str = "the server is shutting down") -> None:
        await asyncio.gather(*(s.close(reason) for s in list(self.sessions.values())), return_exceptions=True)
        if self.chunk_cache is not None:
            await asyncio.to_thread(self.chunk_cache.close)

    # ------------------------------------------------------------------ creation faults

    def _refusal_fault(self) -> None:
        """A session_refused fault answers this creation request with its HTTP error."""
        fault = self.faults.on_create_request()
        if fault is not None:
            self.metrics.fault(fault.kind)
            log.warning("fault %s: session creation refused with %s", fault.id, fault.params.status)
            raise fault.params.error()

    def _creation_fault(self, session: Session) -> None:
        """Bind the next-session faults to a new session and perform its queue_wait / session_closed."""
        fault = self.faults.on_session_created(session.id)
        if fault is None:
            return
        session.faults.note(fault, 0)
        params = fault.params
        if fault.kind == "queue_wait":
            if session.mode == "local":
                log.warning("fault %s: queue_wait does not apply to a local session (no polling)", fault.id)
                return
            self._queued[session.id] = (params.state, time.monotonic() + params.seconds)
        elif fault.kind == "session_closed":
            self._queued[session.id] = ("PENDING", float("inf"))
            session.tasks.spawn("session_closed fault", _close_later(session, params.seconds, params.reason))


async def _close_later(session: Session, seconds: float, reason: str) -> None:
    await asyncio.sleep(seconds)
    await session.close(reason)


def new_fault_registry(settings: Settings) -> FaultRegistry:
    """A fresh fault registry seeded by --fault-seed, with the start-up faults (--faults, --chaos) armed."""
    registry = FaultRegistry(settings.fault_seed)
    armed: list[Fault] = []
    if settings.faults_file:
        armed += [registry.arm(spec) for spec in load_faults(settings.faults_file)]
    if settings.chaos:
        armed += [registry.arm(spec) for spec in chaos_preset(settings.chaos)]
    if armed:
        log.info("armed %d start-up fault(s): %s", len(armed), ", ".join(f.kind for f in armed))
    return registry


def _note_generation(body: dict[str, Any]) -> None:
    if body.get("generation") == "stepped":
        log.warning(
            "a client asked for stepped generation; Helios is a streamed model, so the session is "
            "created streamed (a stepped-only client will refuse it, as with the real service)"
        )

"""A session's side of fault injection: ask the server's fault registry at each hook point, record every
firing, and perform the effect the fired fault asks for (docs/FAULTS.md, *Hook points*)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from mock_server.faults import Fault, FaultRegistry
from mock_server.logging_setup import SessionLogger
from mock_server.session.record import SessionRecord
from mock_server.wire import common as w

log = logging.getLogger("helios_mock.faults")

END_KINDS = ("gpu_failure", "session_expiry")
SDP_KINDS = ("sdp_timeout", "sdp_slow", "ice_failure")


@dataclass
class FaultActions:
    """What the session lets a fired generation fault do."""

    end: Callable[[str], Awaitable[None]]  # end the session with this reason
    drop_transports: Callable[[str], Awaitable[None]]  # close every peer as if the network dropped
    stall: Callable[[float], None]  # no frames / no chunk_complete for this many seconds
    slow: Callable[[int, float], None]  # the next n chunks take factor x their duration
    media_loss: Callable[[float, float], None]  # drop percent% of video RTP packets for seconds
    notify: Callable[[w.Outbound], None]  # send a runtime notice to every connection
    expiry_reason: Callable[[], str]  # the reason a session ends at its maximum duration


@dataclass(frozen=True)
class OfferEffect:
    """How an offer is answered under the offer faults that fired: publish the answer after `hold`
    seconds (inf = never); `unreachable` = the answer's candidates lead nowhere."""

    hold: float = 0.0
    unreachable: bool = False


class SessionFaults:
    """The fault hooks of one session. Without a registry every hook is a no-op."""

    def __init__(
        self,
        session_id: str,
        registry: FaultRegistry | None,
        record: SessionRecord,
        created_at: float,
        on_fired: Callable[[str], None] = lambda kind: None,
    ) -> None:
        self._session_id = session_id
        self._log = SessionLogger(log, session=session_id)
        self._on_fired = on_fired  # the faults metric, by kind
        self._registry = registry
        self._record = record
        self._created_at = created_at
        self.actions: FaultActions | None = None
        self.fired: list[dict[str, Any]] = []

    def elapsed(self) -> float:
        return round(time.monotonic() - self._created_at, 4)

    def note(self, fault: Fault, chunk: int | None = None) -> None:
        """Record one firing in the session's record (visible live) and log it in plain words."""
        firing = fault.firings[-1] if fault.firings else None
        body = {
            "fault_id": fault.id,
            "kind": fault.kind,
            "hook": firing.hook if firing else None,
            "params": fault.spec.model_dump()["params"],
            "elapsed": firing.elapsed if firing else self.elapsed(),
        }
        if chunk is None and firing is not None:
            chunk = firing.chunk
        self.fired.append({**body, "chunk": chunk})
        self._record.add("fault", fault.kind, chunk=chunk, body=body)
        self._on_fired(fault.kind)
        self._log.warning("fault %s (%s) fired at chunk %s", fault.id, fault.kind, chunk)

    # ------------------------------------------------------------------ HTTP hooks

    def on_offer(self) -> OfferEffect:
        """An offer arrived: how its answer is published."""
        if self._registry is None:
            return OfferEffect()
        hold, unreachable = 0.0, False
        for fault in self._registry.on_offer(self._session_id, self.elapsed()):
            self.note(fault)
            if fault.kind == "sdp_timeout":
                hold = math.inf
            elif fault.kind == "sdp_slow":
                hold = max(hold, float(fault.params.seconds))
            elif fault.kind == "ice_failure":
                unreachable = True
        return OfferEffect(hold, unreachable)

    def on_upload_put(self) -> None:
        """A presigned PUT arrived: raise the upload_failure's HTTP error if one fires."""
        if self._registry is None:
            return
        fault = self._registry.on_upload_put(self._session_id, self.elapsed())
        if fault is not None:
            self.note(fault)
            raise fault.params.error()

    # ------------------------------------------------------------------ commands

    def on_command(self, name: str, params: dict[str, Any], chunk: int) -> Fault | None:
        """A model command arrived (before validation): the command fault that fired, recorded."""
        if self._registry is None:
            return None
        fault = self._registry.on_command(self._session_id, name, params, chunk, self.elapsed())
        if fault is not None:
            self.note(fault, chunk)
        return fault

    # ------------------------------------------------------------------ generation

    async def on_chunk_begin(self, chunk: int) -> None:
        if self._registry is not None:
            fired = self._registry.on_chunk_begin(self._session_id, chunk, self.elapsed())
            await self._apply(fired, chunk)

    async def on_tick(self, chunk: int | None) -> None:
        if self._registry is not None:
            await self._apply(self._registry.on_tick(self._session_id, self.elapsed(), chunk), chunk)

    async def _apply(self, faults: list[Fault], chunk: int | None) -> None:
        for fault in faults:
            self.note(fault, chunk)
            await self.apply(fault, command="")

    async def apply(self, fault: Fault, *, command: str) -> None:
        """Perform a generation fault (or a moderation notice) now."""
        act = self.actions
        if act is None:
            return
        p = fault.params
        match fault.kind:
            case "gpu_failure":
                await act.end(p.reason)
            case "session_expiry":
                await act.end(act.expiry_reason())
            case "slow_chunks":
                act.slow(int(p.count), float(p.factor))
            case "stall":
                act.stall(float(p.seconds))
            case "media_loss":
                act.media_loss(float(p.percent), float(p.seconds))
            case "transport_drop":
                await act.drop_transports("the network dropped (transport_drop fault)")
            case "moderation":
                act.notify(moderation_notice(fault, command))
                if p.action == "terminate":
                    await act.end(p.message)


def moderation_notice(fault: Fault, command: str) -> w.ModerationOut:
    p = fault.params
    return w.ModerationOut(p.action, p.input_kind, command, tuple(p.categories), p.message)

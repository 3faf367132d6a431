"""A session's watchdog: the ping watchdog per connection, the reconnect grace, and the maximum duration."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from mock_server.config import Settings
from mock_server.logging_setup import SessionLogger
from mock_server.session.connection import Connection

log = logging.getLogger("helios_mock.session")

DropConnection = Callable[[Connection, str], Awaitable[None]]
EndSession = Callable[[str], Awaitable[None]]


class Watchdog:
    """Closes silent connections, and ends orphaned sessions past the grace period and expired sessions."""

    def __init__(
        self,
        session_id: str,
        settings: Settings,
        started_at: float,
        connections: dict[int, Connection],
        *,
        drop: DropConnection,
        end: EndSession,
        max_duration: float | None = None,
        on_tick: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """`max_duration`: seconds the session may run (a scoped token may ask for less than the server)."""
        self._session_id = session_id
        self._settings = settings
        self._started_at = started_at
        self._connections = connections
        self._drop = drop
        self._end = end
        self._max_duration = settings.max_session_duration if max_duration is None else max_duration
        self._orphaned_since: float | None = None
        self._stopped = False
        self._on_tick = on_tick

    def connection_live(self) -> None:
        """A connection became ready: the session is not orphaned."""
        self._orphaned_since = None

    def connection_lost(self) -> None:
        """A connection stopped being ready: with no live one left, the reconnect grace starts."""
        connections = self._connections.values()
        if self._orphaned_since is not None or any(c.ready for c in connections):
            return
        if not any(c.ever_ready for c in connections):
            return
        self._orphaned_since = time.monotonic()
        SessionLogger(log, session=self._session_id).info(
            "no live connection; session kept %.0f s for a reconnect", self._settings.reconnect_grace
        )

    def stop(self) -> None:
        self._stopped = True

    async def run(self) -> None:
        settings = self._settings
        period = min(1.0, settings.ping_timeout / 4, settings.reconnect_grace / 4)
        while not self._stopped:
            await asyncio.sleep(period)
            if self._on_tick is not None:
                await self._on_tick()
                if self._stopped:
                    return
            reason = await self._check(time.monotonic())
            if reason is not None:
                await self._end(reason)
                return

    async def _check(self, now: float) -> str | None:
        """Drop silent connections; the reason to end the session, if it must end."""
        settings = self._settings
        if now - self._started_at > self._max_duration:
            return expiry_reason(self._max_duration)
        for conn in list(self._connections.values()):
            if conn.ready and now - conn.last_inbound > settings.ping_timeout:
                why = f"no frame from the client for {settings.ping_timeout:g} s (ping watchdog)"
                await self._drop(conn, why)
        if self._orphaned_since is not None and now - self._orphaned_since > settings.reconnect_grace:
            return f"no client reconnected within {settings.reconnect_grace:g} s"
        return None


def expiry_reason(max_duration: float) -> str:
    """Why a session ends at its maximum duration (also the session_expiry fault's reason)."""
    return f"session reached its maximum duration of {max_duration:g} s"

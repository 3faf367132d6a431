"""ASGI middleware that records every answered HTTP request in its session's record (else as unbound).

It also notes the scheme://host[:port] a session's client last used successfully (clip URLs are absolute).
Pure ASGI, not Starlette's ``BaseHTTPMiddleware``: that one runs each request in a task group with memory
streams, which made a ``GET /health`` cost ~2 ms of server CPU (two such layers).
"""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mock_server.services.admin import AnySession, note_http, session_for_path
from mock_server.services.registry import Registry


class HttpRecord:
    """Records each request at the start of its answer: method, path, status and the server's time.

    Refused requests (401/403: another token's, or a wrong admin token) are recorded as unbound, so a
    foreign caller cannot write into a session's record."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        registry: Registry = scope["app"].state.registry
        path: str = scope["path"]
        session_before = session_for_path(registry, path)
        started = time.perf_counter()

        async def answer(message: Message) -> None:
            if message["type"] == "http.response.start":
                handled_ms = (time.perf_counter() - started) * 1000  # arrival -> start of the answer
                status = int(message["status"])
                session = session_before or session_for_path(registry, path)
                if status < 400 and path != "/clips":
                    _remember_base_url(session, scope)
                if status in (401, 403):
                    session = None  # a refused caller's request is not part of that session's history
                note_http(registry, session, scope["method"], path, status, handled_ms)
            await send(message)

        await self.app(scope, receive, answer)


def _remember_base_url(session: AnySession | None, scope: Scope) -> None:
    recording = getattr(session, "recording", None)  # closed sessions' summaries have none
    if recording is not None:
        recording.base_url = str(Request(scope).base_url).rstrip("/")

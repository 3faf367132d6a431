"""ASGI middleware that bounds every request body: bytes, read time, and JSON nesting depth.

A non-upload body is read whole (at most `max_request_bytes`, each read within `body_read_timeout`),
checked for nesting deeper than `max_json_depth`, then replayed to the app. An upload PUT is streamed
through untouched except for the read timeout (its route enforces the slot's size). Every refusal is a
`{detail}` answer naming the limit, so the HTTP record middleware outside records it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mock_server.config import Settings
from mock_server.errors import ApiError

log = logging.getLogger("helios_mock.http")

UPLOAD_PREFIX = "/uploads/"
DRAIN_FACTOR = 4  # a refused body up to 4 × max_request_bytes is read and dropped before the 413
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(rb"[\[\]{}]")


class BodyRefused(Exception):
    """A request body broke a limit; `status` and `detail` are the answer."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def json_depth(raw: bytes, limit: int) -> int:
    """Nesting depth of a JSON text, exact once it exceeds `limit` (cheap below: bracket count)."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return 0
    depth = deepest = 0
    for bracket in _BRACKET.findall(_STRING.sub(b'""', raw)):
        depth += 1 if bracket in (b"[", b"{") else -1
        deepest = max(deepest, depth)
    return deepest


class BodyGuard:
    """Bounds request bodies before the app sees them (see the module docstring)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        timed = self._timed(receive)
        if scope["path"].startswith(UPLOAD_PREFIX):
            await self.app(scope, timed, send)
            return
        try:
            body = await self._read(scope, timed)
        except BodyRefused as refused:
            log.info("%s %s -> %d: %s", scope["method"], scope["path"], refused.status, refused.detail)
            if refused.status == 413:
                await self._drain(scope, timed)
            await _answer(send, refused.status, refused.detail)
            return
        await self.app(scope, _replay(body, receive), send)

    def _timed(self, receive: Receive) -> Receive:
        timeout = self.settings.body_read_timeout

        async def timed_receive() -> Message:
            try:
                async with asyncio.timeout(timeout):
                    return await receive()
            except TimeoutError:
                raise ApiError(
                    408, f"the request body did not arrive within {timeout:g} s (limit body_read_timeout)"
                ) from None

        return timed_receive

    async def _drain(self, scope: Scope, receive: Receive) -> None:
        """Read and discard the rest of a refused body (up to DRAIN_FACTOR × max_request_bytes, within
        body_read_timeout in all), so the connection can close cleanly: closing a socket with unread
        bytes resets it, and a client still sending would see the reset instead of the 413."""
        budget = DRAIN_FACTOR * self.settings.max_request_bytes
        declared = _content_length(scope)
        if declared is not None and declared > budget:
            return
        drained = 0
        try:
            async with asyncio.timeout(self.settings.body_read_timeout):
                while drained <= budget:
                    message = await receive()
                    drained += len(message.get("body", b""))
                    if message["type"] == "http.disconnect" or not message.get("more_body", False):
                        return
        except (TimeoutError, ApiError):
            return

    async def _read(self, scope: Scope, receive: Receive) -> bytes:
        limit = self.settings.max_request_bytes
        too_large = f"request bodies are limited to {limit} bytes (max_request_bytes)"
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            raise BodyRefused(413, f"{too_large}; this one declares {declared}")
        chunks: list[bytes] = []
        size = 0
        while True:
            try:
                message = await receive()
            except ApiError as exc:
                raise BodyRefused(exc.status, exc.detail) from None
            if message["type"] == "http.disconnect":
                raise BodyRefused(499, "the client closed the connection before its body arrived")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise BodyRefused(413, too_large)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        depth = json_depth(body, self.settings.max_json_depth)
        if depth > self.settings.max_json_depth:
            raise BodyRefused(
                422,
                f"the JSON body nests {depth} levels deep; at most {self.settings.max_json_depth} "
                "are accepted (max_json_depth)",
            )
        return body


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the buffered body over once, then waits on the real one (disconnects)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _answer(send: Send, status: int, detail: str) -> None:
    payload: dict[str, Any] = {"detail": detail}
    data = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    if status in (408, 413, 499):
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})

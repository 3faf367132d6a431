"""Signed, expiring clip URLs: `/clips?session_id&start&end` plus the recording, an expiry and an HMAC.

The playlist and its segments share one query string; the HMAC (SHA-256, a key drawn per server process)
covers every part of it, so a URL cannot be widened to other chunks, another recording or a later expiry.
A server restart invalidates every link (clips do not outlive the process either).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

from mock_server.constants import CHUNK_FRAMES
from mock_server.errors import Forbidden, Invalid
from mock_server.session.recording import ClipWindow

_KEY = secrets.token_bytes(32)
PLAYLIST_PATH = "/clips"
FIELDS = ("session_id", "start", "end", "kind", "recording", "expires")


@dataclass(frozen=True)
class ClipLink:
    """A verified clip query: which recording, which chunks, which kind."""

    session_id: str
    recording_id: str
    kind: str
    start: str
    end: str
    expires: int
    query: str  # the signed query string, reused by every segment URL

    def seqs(self, fps: float) -> tuple[int, int]:
        """(first_seq, last_seq) of the window, from its start and end markers in media seconds."""
        chunk = CHUNK_FRAMES / fps
        return round(float(self.start) / chunk), round(float(self.end) / chunk) - 1


def _signature(values: Mapping[str, str]) -> str:
    message = "\n".join(values[name] for name in FIELDS).encode("utf-8")
    return hmac.new(_KEY, message, hashlib.sha256).hexdigest()


def sign(window: ClipWindow, ttl: float) -> str:
    """The query string of a window's playlist URL, valid for `ttl` seconds from the request."""
    values = {
        "session_id": window.session_id,
        "start": f"{window.start_marker:.3f}",
        "end": f"{window.end_marker:.3f}",
        "kind": window.kind,
        "recording": window.recording_id,
        "expires": str(math.ceil(window.asked_at + ttl)),
    }
    return urlencode({**values, "sig": _signature(values)})


def playlist_url(base_url: str, window: ClipWindow, ttl: float) -> str:
    return f"{base_url.rstrip('/')}{PLAYLIST_PATH}?{sign(window, ttl)}"


def verify(params: Mapping[str, str], now: float | None = None) -> ClipLink:
    """Check a clip URL's query: 400 when parts are missing, 403 when forged or expired."""
    missing = [name for name in (*FIELDS, "sig") if not params.get(name)]
    if missing:
        raise Invalid(
            f"clip URL lacks {', '.join(missing)}; use the playlist_url of a clipReady message as it is"
        )
    values = {name: params[name] for name in FIELDS}
    if not hmac.compare_digest(_signature(values), params["sig"]):
        raise Forbidden(
            "clip URL signature does not match; use the playlist_url of a clipReady message as is"
        )
    try:
        expires = int(values["expires"])
        float(values["start"]), float(values["end"])
    except ValueError:
        raise Invalid("clip URL has a malformed start, end or expires") from None
    now = time.time() if now is None else now
    if now >= expires:
        raise Forbidden(
            f"clip URL expired {now - expires:.0f} s ago (links live --clip-url-ttl seconds); "
            "request the clip again"
        )
    query = urlencode({**values, "sig": params["sig"]})
    return ClipLink(
        values["session_id"],
        values["recording"],
        values["kind"],
        values["start"],
        values["end"],
        expires,
        query,
    )

"""Wire codecs: v0 JSON (wire/v0.py) and v1 protobuf (wire/v1.py) behind one Codec interface."""

from __future__ import annotations

import re

from mock_server.wire.common import CONTROL, DATA, Codec, WireError, looks_like_json
from mock_server.wire.v0 import V0Codec
from mock_server.wire.v1 import V1Codec

__all__ = [
    "CONTROL",
    "DATA",
    "Codec",
    "V0Codec",
    "V1Codec",
    "WireError",
    "codec_for_first_frame",
    "provisional_codec",
]

# PY's session-level SDP extensions (docs/PROTOCOL.md §2.3),
# e.g. "a=x-reactor-dc-chunking:1 max-message-size=…".
_REACTOR_SDP_ATTR = re.compile(r"^a=x-reactor-(?:frame-metadata|dc-chunking)(?=[:\s]|$)", re.MULTILINE)


def codec_for_first_frame(raw: str | bytes) -> Codec:
    """RT3's rule (docs/PROTOCOL.md §3.6 step 2): text or JSON-looking binary -> v0, other binary -> v1."""
    return V0Codec() if looks_like_json(raw) else V1Codec()


def provisional_codec(*, flat_route: bool, sdk_type: str | None, offer_sdp: str) -> Codec:
    """The codec to use before the first inbound frame, from signalling hints (docs/PROTOCOL.md §3.6)."""
    if flat_route:
        return V0Codec()
    if sdk_type == "python":
        return V1Codec()
    if _REACTOR_SDP_ATTR.search(offer_sdp or ""):
        return V1Codec()
    return V0Codec()

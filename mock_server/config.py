"""Server settings: spec defaults, overridable by CLI flags or HELIOS_MOCK_* environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace

from mock_server.constants import NATIVE_SIZE

VERSION = "0.1.0"
SERVER_VERSION = f"helios-mock/{VERSION}"


def parse_resolution(text: str) -> tuple[int, int]:
    """'640x384' -> (640, 384). Both sides must be multiples of 16 (clean VP8 macroblocks)."""
    try:
        w_text, h_text = text.lower().split("x")
        width, height = int(w_text), int(h_text)
    except ValueError:
        raise ValueError(f"resolution must look like 640x384, got {text!r}") from None
    if width < 64 or height < 32 or width % 16 or height % 16:
        raise ValueError(f"resolution {text!r}: width ≥ 64 and height ≥ 32, both multiples of 16")
    return width, height


@dataclass(frozen=True)
class Settings:
    """Everything the server can be told. Times are in seconds of wall-clock time."""

    host: str = "127.0.0.1"
    port: int = 8080
    mode: str = "both"  # "local" | "production" | "both": which coordinator routes are served
    fps: float = 24.0
    speed: float = 1.0  # chunk clock speed factor: 20 = chunks 20x faster than real time
    native_size: tuple[int, int] = NATIVE_SIZE  # frame size at sr_scale "off"
    pending_delay: float = 0.5  # production: PENDING before a session becomes ACTIVE
    ping_timeout: float = 20.0  # connection watchdog: close after this long without an inbound frame
    reconnect_grace: float = 30.0  # session kept this long after its last connection left
    max_session_duration: float = 1200.0
    upload_wait: float = 10.0  # how long a command waits for announced upload bytes
    upload_url_ttl: float = 900.0
    token_ttl: float = 3600.0
    max_sessions_per_account: int = 5  # production concurrent sessions per token/API key; 0 = unlimited
    max_creations_per_minute: int = 50  # production session creations per minute per model; 0 = unlimited
    media: str = (
        "shared"  # "shared": encode each distinct chunk once; "per-session": aiortc encodes per track
    )
    ice_addresses: tuple[str, ...] = ()  # host-candidate addresses; empty = every non-loopback address
    log_level: str = "info"
    jwt_secret: str = ""  # HS256 key for minted tokens (≥ 32 chars); empty = random per process
    api_keys: tuple[str, ...] = ()  # API keys POST/GET /tokens accepts; empty = any non-empty key
    accept_opaque_tokens: bool = True  # a non-JWT bearer string is an account of its own (False: refuse)
    fault_seed: int = 0  # seed of the fault registry's random draws (chaos faults)
    faults_file: str = ""  # YAML/JSON fault file armed at start-up and after each reset
    chaos: str = ""  # chaos preset armed at start-up and after each reset ("light" | "heavy")
    admin_token: str = ""  # required by /admin/* and the live WebSocket when set; empty = same-origin only

    @property
    def frame_interval(self) -> float:
        """Wall-clock seconds between two frames of the chunk clock."""
        return 1.0 / (self.fps * self.speed)

    def with_env(self, environ: dict[str, str] | None = None) -> Settings:
        """Apply HELIOS_MOCK_<FIELD> environment overrides (e.g. HELIOS_MOCK_SPEED=20)."""
        environ = os.environ if environ is None else environ
        changes: dict[str, object] = {}
        for f in fields(self):
            raw = environ.get(f"HELIOS_MOCK_{f.name.upper()}")
            if raw is None:
                continue
            current = getattr(self, f.name)
            if f.name == "native_size":
                changes[f.name] = parse_resolution(raw)
            elif f.name in ("ice_addresses", "api_keys"):
                changes[f.name] = tuple(a.strip() for a in raw.split(",") if a.strip())
            elif isinstance(current, bool):
                changes[f.name] = raw.lower() in ("1", "true", "yes")
            else:
                changes[f.name] = type(current)(raw)
        return replace(self, **changes)

"""Server settings: spec defaults, overridable by CLI flags or HELIOS_MOCK_* environment variables.

Every setting has one parser (`parse_setting`) shared by the flags and the environment, so a bad value is
refused the same way from both, with a message that says what is accepted.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from mock_server.constants import NATIVE_SIZE

DISTRIBUTION = "helios-mock"


def _source_version() -> str:
    """The version in pyproject.toml next to a source checkout that is not installed."""
    import tomllib

    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    try:
        return str(tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "0+unknown"


def _version() -> str:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return _source_version()


VERSION = _version()
SERVER_VERSION = f"helios-mock/{VERSION}"


class SettingError(ValueError):
    """A setting's value was refused; the message names the flag or variable and what is accepted."""


def parse_resolution(text: str) -> tuple[int, int]:
    """'640x384' -> (640, 384). Both sides must be multiples of 16 (clean VP8 macroblocks)."""
    try:
        w_text, h_text = text.lower().split("x")
        width, height = int(w_text), int(h_text)
    except ValueError:
        raise ValueError("WxH, e.g. 640x384") from None
    if width < 64 or height < 32 or width % 16 or height % 16:
        raise ValueError("width ≥ 64 and height ≥ 32, both multiples of 16")
    return width, height


def _number(minimum: float, *, inclusive: bool) -> Callable[[str], float]:
    bound = f"≥ {minimum:g}" if inclusive else f"> {minimum:g}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"not a number (a number {bound})") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"a finite number {bound}")
        if value < minimum or (not inclusive and value == minimum):
            raise ValueError(f"a number {bound}")
        return value

    return parse


def _integer(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    accepted = f"an integer {minimum}–{maximum}" if maximum is not None else f"an integer ≥ {minimum}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"not an integer ({accepted})") from None
        if value < minimum or (maximum is not None and value > maximum):
            raise ValueError(accepted)
        return value

    return parse


def _choice(*options: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text.lower() not in options:
            raise ValueError("one of " + ", ".join(options))
        return text.lower()

    return parse


def _boolean(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError("one of 1, true, yes, on, 0, false, no, off")


def _host(text: str) -> str:
    if not text.strip():
        raise ValueError("a host name or IP address")
    return text.strip()


def parse_instance_id(text: str) -> str:
    """An instance id for session ids and routing: 1-16 of a-z, 0-9 (lower-cased)."""
    value = text.strip().lower()
    if not re.fullmatch(r"[a-z0-9]{1,16}", value):
        raise ValueError("1 to 16 letters a-z or digits 0-9 (it becomes part of every session id)")
    return value


def parse_addresses(text: str) -> tuple[str, ...]:
    """'127.0.0.1, ::1' -> ('127.0.0.1', '::1'); every item must be an IP address."""
    addresses = tuple(a.strip() for a in text.split(",") if a.strip())
    for address in addresses:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise ValueError(f"{address!r} is not an IP address (comma-separated IP addresses)") from None
    return addresses


PARSERS: dict[str, Callable[[str], Any]] = {
    "host": _host,
    "port": _integer(0, 65535),
    "mode": _choice("both", "local", "production"),
    "fps": _number(0, inclusive=False),
    "speed": _number(0, inclusive=False),
    "native_size": parse_resolution,
    "pending_delay": _number(0, inclusive=True),
    "ping_timeout": _number(0, inclusive=False),
    "reconnect_grace": _number(0, inclusive=True),
    "max_session_duration": _number(0, inclusive=False),
    "upload_wait": _number(0, inclusive=True),
    "upload_url_ttl": _number(0, inclusive=False),
    "token_ttl": _number(0, inclusive=False),
    "max_sessions_per_account": _integer(0),
    "max_creations_per_minute": _integer(0),
    "media": _choice("shared", "per-session"),
    "ice_addresses": parse_addresses,
    "log_level": _choice("debug", "info", "warning", "error"),
    "log_format": _choice("text", "json"),
    "max_request_bytes": _integer(1),
    "max_json_depth": _integer(1, 1000),
    "body_read_timeout": _number(0, inclusive=False),
    "keep_alive_timeout": _number(0, inclusive=False),
    "max_header_bytes": _integer(1024),
    "max_upload_bytes": _integer(1),
    "max_upload_slots": _integer(1),
    "max_connections_per_session": _integer(1),
    "max_candidates_per_connection": _integer(1),
    "max_record_bytes": _integer(1024),
    "max_record_entry_bytes": _integer(256),
    "keep_closed_sessions": _integer(0),
    "max_closed_record_bytes": _integer(0),
    "faults_file": str,
    "chaos": _choice("", "light", "heavy"),
    "fault_seed": _integer(0),
    "jwt_secret": str,
    "api_keys": lambda text: tuple(a.strip() for a in text.split(",") if a.strip()),
    "accept_opaque_tokens": _boolean,
    "admin_token": str,
    "recording": _boolean,
    "recording_retention": _number(0, inclusive=False),
    "clip_url_ttl": _number(0, inclusive=False),
    "instance_id": parse_instance_id,
}
ENV_NAMES = {"native_size": "RESOLUTION"}  # HELIOS_MOCK_RESOLUTION, like the flag


def env_name(field_name: str) -> str:
    """The environment variable of a setting: HELIOS_MOCK_SPEED, HELIOS_MOCK_RESOLUTION, ..."""
    return "HELIOS_MOCK_" + ENV_NAMES.get(field_name, field_name.upper())


def parse_setting(field_name: str, text: str) -> Any:
    """Parse one setting's text; ValueError says what is accepted."""
    return PARSERS[field_name](text)


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
    log_format: str = "text"  # "text" | "json" (one object per line)
    # ---- HTTP and session limits (docs/LIMITS.md "HTTP and session limits")
    max_request_bytes: int = 1_048_576  # body of any non-upload request
    max_json_depth: int = 32  # nesting levels of a JSON request body
    body_read_timeout: float = 30.0  # seconds one read of a request body may wait for bytes
    keep_alive_timeout: float = 5.0  # seconds an idle keep-alive connection is held (uvicorn)
    max_header_bytes: int = 65_536  # bytes of an incomplete request head (uvicorn h11)
    max_upload_bytes: int = 67_108_864  # declared size of one upload slot (64 MiB)
    max_upload_slots: int = 32  # upload slots per session
    max_connections_per_session: int = 16  # registered connections (offers, trickle targets) per session
    max_candidates_per_connection: int = 256  # trickled candidates per connection, buffered or applied
    max_record_bytes: int = 8_388_608  # JSON bytes of one session's record (entries + rejections)
    max_record_entry_bytes: int = 16_384  # JSON bytes of one record entry's body before it is elided
    keep_closed_sessions: int = 1000  # closed-session summaries kept for /admin/record and transcripts
    max_closed_record_bytes: int = 268_435_456  # JSON bytes of all closed sessions' records together
    recording: bool = True  # record main_video for clips; False: clip requests get "recorder disabled"
    recording_retention: float = 600.0  # seconds of media each session's recording keeps (the newest)
    clip_url_ttl: float = 600.0  # seconds a clip's playlist and segment URLs stay valid (then 403)
    instance_id: str = ""  # set: session ids are sess_<instance_id>_<hex>, so a router can find the owner

    @property
    def frame_interval(self) -> float:
        """Wall-clock seconds between two frames of the chunk clock."""
        return 1.0 / (self.fps * self.speed)

    def with_env(self, environ: Mapping[str, str] | None = None) -> Settings:
        """Apply HELIOS_MOCK_<FIELD> overrides (e.g. HELIOS_MOCK_SPEED=20); SettingError names a bad one."""
        environ = os.environ if environ is None else environ
        changes: dict[str, Any] = {}
        for f in fields(self):
            name = env_name(f.name)
            raw = environ.get(name)
            if raw is None:
                continue
            try:
                changes[f.name] = parse_setting(f.name, raw)
            except ValueError as exc:
                raise SettingError(f"{name}={raw}: {exc}") from None
        return replace(self, **changes)

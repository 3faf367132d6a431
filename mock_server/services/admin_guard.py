"""Admin guard: who may call `/admin/*` and open the live WebSocket, and which paths get CORS headers.

* With an admin token (`--admin-token`, `HELIOS_MOCK_ADMIN_TOKEN`): every admin request must carry it, as
  `X-Helios-Admin-Token: <token>` or `Authorization: Bearer <token>`; the WebSocket may instead pass
  `?admin_token=<token>` (browsers cannot set WebSocket headers). The token is the only check.
* Without one: admin routes answer only non-browser clients (curl, httpx, the test fixtures: no `Origin`,
  no `Sec-Fetch-Site`), addresses typed into the browser (`Sec-Fetch-Site: none`) and pages of the
  server's own origin. Cross-origin and same-site pages, sandboxed (`Origin: null`) pages, and pages that
  reach the server by a DNS name other than `localhost` (a DNS-rebinding page looks same-origin) get 403.
* CORS: `*` on the client-facing routes (docs/PROTOCOL.md §1.1); never on admin routes.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Mapping

from mock_server.config import Settings
from mock_server.errors import Forbidden, Unauthorized

ADMIN_PREFIX = "/admin"
ADMIN_TOKEN_HEADER = "x-helios-admin-token"
ADMIN_TOKEN_QUERY = "admin_token"  # WebSocket only
WS_POLICY_VIOLATION = 1008  # close code for a refused WebSocket (RFC 6455 §7.4.1)
CORS_ALLOW_HEADERS = (
    "Authorization",
    "Content-Type",
    "Reactor-API-Version",
    "Reactor-API-Accept-Version",
    "Reactor-WebRTC-Version",
    "Reactor-API-Key",
    "X-API-Key",
)
_DEFAULT_PORTS = {"http": 80, "https": 443}
_SCHEME_FOR = {"ws": "http", "wss": "https", "http": "http", "https": "https"}


def is_admin_path(path: str) -> bool:
    return path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/")


def cors_applies(path: str) -> bool:
    """Whether the CORS middleware may answer for `path` (`Access-Control-Allow-Origin: *`)."""
    return not is_admin_path(path)


def own_origin(scheme: str, host_header: str | None) -> str | None:
    """The server's origin as the client addressed it: request scheme + `Host` header, normalised."""
    if not host_header:
        return None
    return normalise_origin(f"{_SCHEME_FOR.get(scheme.lower(), scheme.lower())}://{host_header}")


def normalise_origin(origin: str) -> str | None:
    """'HTTP://LocalHost:80' -> 'http://localhost'; None for 'null' or anything that is not an origin."""
    scheme, sep, rest = origin.strip().partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in _DEFAULT_PORTS or not rest or "/" in rest or "@" in rest:
        return None
    host, port = _split_host_port(rest.lower())
    if host is None:
        return None
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def check_admin_http(headers: Mapping[str, str], own: str | None, settings: Settings) -> None:
    """Raise `Unauthorized`/`Forbidden` unless this HTTP request may use an admin route.

    `own` is `own_origin(request.url.scheme, request.headers.get("host"))`.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    if settings.admin_token:
        _require_admin_token(_presented_token(lowered), settings.admin_token)
        return
    _require_same_origin(lowered, own)


def check_admin_ws(
    headers: Mapping[str, str], query: Mapping[str, str], own: str | None, settings: Settings
) -> None:
    """Raise unless this WebSocket handshake may open the live view; call before `accept()`.

    On refusal the route closes with `WS_POLICY_VIOLATION` (Starlette then answers the handshake 403).
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    if settings.admin_token:
        _require_admin_token(_presented_token(lowered) or query.get(ADMIN_TOKEN_QUERY), settings.admin_token)
        return
    _require_same_origin(lowered, own)


def _presented_token(lowered: Mapping[str, str]) -> str | None:
    if lowered.get(ADMIN_TOKEN_HEADER):
        return lowered[ADMIN_TOKEN_HEADER].strip()
    authorization = lowered.get("authorization", "")
    if authorization[:7].lower() == "bearer ":
        return authorization[7:].strip()
    return None


def _require_admin_token(presented: str | None, expected: str) -> None:
    if not presented:
        raise Unauthorized(
            "admin routes need the admin token: send X-Helios-Admin-Token: <token> "
            "(or Authorization: Bearer <token>; ?admin_token=<token> on the WebSocket)"
        )
    if not hmac.compare_digest(presented.encode(), expected.encode()):
        raise Unauthorized("wrong admin token (it is the value given with --admin-token)")


def _require_same_origin(lowered: Mapping[str, str], own: str | None) -> None:
    site = lowered.get("sec-fetch-site", "").strip().lower()
    if site in ("cross-site", "same-site"):
        raise Forbidden(
            f"admin routes refuse {site} browser requests; open them from the mock's own origin, "
            "or start the mock with --admin-token"
        )
    origin = lowered.get("origin")
    if origin is not None:
        normalised = normalise_origin(origin)
        if normalised is None or own is None or normalised != own:
            raise Forbidden(
                f"admin routes refuse requests from other origins (Origin {origin!r}, this server is "
                f"{own or 'unknown'}); start the mock with --admin-token to allow them"
            )
    if (origin is not None or site == "same-origin") and not _rebinding_safe(own):
        raise Forbidden(
            "admin routes answer browsers only at an IP address or localhost (a DNS name could be "
            "rebound by another site); use http://127.0.0.1:<port> or start the mock with --admin-token"
        )


def _rebinding_safe(own: str | None) -> bool:
    """A host a DNS-rebinding page cannot impersonate: an IP literal, `localhost` or `*.localhost`."""
    if own is None:
        return False
    host, _ = _split_host_port(own.partition("://")[2])
    if host is None:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _split_host_port(hostport: str) -> tuple[str | None, int | None]:
    """'h:8080' -> ('h', 8080); '[::1]:80' -> ('[::1]', 80); (None, None) when malformed."""
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            return None, None
        host, rest = hostport[: end + 1], hostport[end + 1 :]
        if rest and not rest.startswith(":"):
            return None, None
        port_text = rest[1:] if rest else ""
    else:
        host, _, port_text = hostport.partition(":")
    if not host:
        return None, None
    if not port_text:
        return host, None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        return None, None
    return host, int(port_text)

"""Tokens: mint signed HS256 JWTs for `POST/GET /tokens` and turn a bearer header into a `Principal`.

Minted tokens are stateless: everything the server later needs (account, scope, budget, expiry) is in the
signed claims, so several instances given the same `jwt_secret` accept each other's tokens. Claims:

    {"iss": "helios-mock", "sub": "acct_<hex>", "iat": <unix s>, "exp": <unix s>, "jti": "tok_<hex>",
     "authorization_details": [<the request's session detail, normalised>]}   # only on scoped tokens

Bearer strings that are not JWTs are accepted as accounts of their own (`accept_opaque_tokens`, default on,
for the many tests and quick starts that pass any string); `helios-mock-test-token` always works.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from mock_server.config import Settings
from mock_server.errors import Forbidden, Invalid, NotFound, Unauthorized

log = logging.getLogger("helios_mock.tokens")

ISSUER = "helios-mock"
ALGORITHM = "HS256"
STATIC_TEST_TOKEN = "helios-mock-test-token"  # documented quick-start token: the account `acct_test`
STATIC_TEST_ACCOUNT = "acct_test"
MAX_TOKEN_TTL = 21_600  # 6 h: `expires_after` above it is clamped (docs/HELIOS.md §10)
MIN_SECRET_CHARS = 32  # HS256 keys shorter than the hash output are insecure (RFC 7518 §3.2)
MAX_BEARER_CHARS = 8192
MAX_API_KEY_CHARS = 512
MAX_DETAILS = 1  # one `{"type": "session"}` detail per token (what both SDKs send)
MAX_MODELS = 16
MAX_BIND = 100
MAX_NAME_CHARS = 128
MAX_MAX_SESSIONS = 10_000
MAX_SESSION_DURATION = 86_400  # `max_session_duration_seconds` range is 1..86 400 (rejected, not clamped)
API_KEY_HEADERS = ("reactor-api-key", "x-api-key")  # X-API-Key: an older JS `fetchInsecureJwtToken`


@dataclass(frozen=True)
class Scope:
    """What a scoped token may do (`authorization_details[0]`)."""

    models: frozenset[str] | None  # normalised model names; None = every model (`{"all": true}`)
    bound: frozenset[str]  # session ids the token is bound to (`sessions.bind`)
    max_sessions: int | None  # sessions the token may ever hold, the bound ones included
    max_session_duration: int | None  # seconds after which sessions it creates are ended

    @property
    def creation_allowance(self) -> int | None:
        """Sessions this token may still create in total: None = no token limit, 0 = none."""
        if self.max_sessions is None:
            return 0 if self.bound else None  # a bind alone cannot create sessions
        return self.max_sessions - len(self.bound)


@dataclass(frozen=True)
class Principal:
    """Who is calling: the account, the token's identity and, for scoped tokens, its scope."""

    account: str
    token_id: str  # `jti` for minted tokens; a digest of the string for opaque ones
    kind: str  # "jwt" | "static" | "opaque"
    scope: Scope | None = None  # None = unscoped: everything the account may do
    expires_at: float | None = None  # unix seconds; None for static/opaque tokens


def normalise_model(name: str) -> str:
    """'reactor/helios' and 'helios' name the same model."""
    return name.removeprefix("reactor/")


def account_for_api_key(api_key: str) -> str:
    """A stable account id for an API key that does not reveal the key (it ends up in the JWT's `sub`)."""
    return "acct_" + hashlib.sha256(b"key:" + api_key.encode()).hexdigest()[:16]


def api_key_from_headers(headers: Mapping[str, str]) -> str | None:
    """`Reactor-API-Key` (or `X-API-Key`) from request headers; header names in any case."""
    lowered = {k.lower(): v for k, v in headers.items()}
    for name in API_KEY_HEADERS:
        if lowered.get(name):
            return lowered[name]
    return None


class TokenService:
    """Mints and verifies tokens; holds the signing key and nothing per token."""

    def __init__(self, settings: Settings) -> None:
        if settings.jwt_secret and len(settings.jwt_secret) < MIN_SECRET_CHARS:
            raise ValueError(
                f"jwt_secret must be at least {MIN_SECRET_CHARS} characters (HS256 needs a 32-byte key); "
                "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        self.settings = settings
        self._key = settings.jwt_secret.encode() if settings.jwt_secret else secrets.token_bytes(32)
        self._api_keys = frozenset(settings.api_keys)

    # ------------------------------------------------------------------ minting

    def mint(
        self,
        api_key: str | None,
        body: Any,
        *,
        open_session_account: Callable[[str], str | None] = lambda _sid: None,
        now: float | None = None,
    ) -> dict[str, Any]:
        """`POST /tokens` (body as sent; None for `GET /tokens`) -> `{"jwt", "expires_at"}`.

        `open_session_account(sid)` names the account of an open session (None if unknown or closed);
        `sessions.bind` may only name open sessions of the key's own account.
        """
        account = self._check_api_key(api_key)
        body = {} if body is None else body
        if not isinstance(body, dict):
            raise Invalid("the /tokens body must be a JSON object or null")
        ttl = _ttl(body.get("expires_after"), self.settings.token_ttl)
        detail = _one_detail(body.get("authorization_details"))
        unknown = set(body) - {"expires_after", "authorization_details"}
        if unknown:
            log.info("POST /tokens: ignored unknown field(s) %s", ", ".join(sorted(unknown)))
        issued = int(time.time() if now is None else now)
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "sub": account,
            "iat": issued,
            "exp": issued + ttl,
            "jti": "tok_" + secrets.token_hex(12),
        }
        if detail is not None:
            scope = parse_scope(detail)
            for sid in sorted(scope.bound):
                _check_bind(sid, account, open_session_account(sid))
            claims["authorization_details"] = [_detail_claim(detail, scope)]
        token = jwt.encode(claims, self._key, algorithm=ALGORITHM)
        return {"jwt": token, "expires_at": claims["exp"]}

    def _check_api_key(self, api_key: str | None) -> str:
        if not api_key or not api_key.strip():
            allowed = "one of the keys given with --api-key" if self._api_keys else "any non-empty key"
            raise Unauthorized(f"/tokens needs a Reactor-API-Key header ({allowed} works on this mock)")
        if len(api_key) > MAX_API_KEY_CHARS:
            raise Unauthorized(f"API key longer than {MAX_API_KEY_CHARS} characters")
        if self._api_keys and not any(hmac.compare_digest(api_key, k) for k in self._api_keys):
            raise Unauthorized("unknown API key (this server accepts only the keys given with --api-key)")
        return account_for_api_key(api_key)

    # ------------------------------------------------------------------ verifying

    def authenticate(self, authorization: str | None, *, now: float | None = None) -> Principal:
        """`Authorization: Bearer <token>` -> Principal, or `Unauthorized` saying what to fix."""
        if not authorization or not authorization[:7].lower() == "bearer ":
            raise Unauthorized(
                "missing Authorization: Bearer <token> header; mint a token with POST /tokens "
                f"(Reactor-API-Key header) or use the static test token {STATIC_TEST_TOKEN!r}"
            )
        token = authorization[7:].strip()
        if not token:
            raise Unauthorized("empty bearer token")
        if len(token) > MAX_BEARER_CHARS:
            raise Unauthorized(f"bearer token longer than {MAX_BEARER_CHARS} characters")
        if hmac.compare_digest(token, STATIC_TEST_TOKEN):
            return Principal(account=STATIC_TEST_ACCOUNT, token_id="static", kind="static")
        if _looks_like_jwt(token):
            return self._verify(token, time.time() if now is None else now)
        if not self.settings.accept_opaque_tokens:
            raise Unauthorized(
                "this server accepts only tokens it minted (POST /tokens) and the static test token "
                f"{STATIC_TEST_TOKEN!r}; plain bearer strings are turned off"
            )
        digest = hashlib.sha256(b"bearer:" + token.encode()).hexdigest()[:16]
        return Principal(account="acct_" + digest, token_id="bearer_" + digest, kind="opaque")

    def _verify(self, token: str, now: float) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                options={
                    "verify_exp": False,
                    "verify_iat": False,
                    "require": ["exp", "iat", "sub", "jti", "iss"],
                },
            )
        except jwt.InvalidAlgorithmError:
            raise Unauthorized(
                f"token is not signed with {ALGORITHM}: only tokens minted by this server are accepted"
            ) from None
        except jwt.InvalidSignatureError:
            raise Unauthorized(
                "token signature does not verify: it was not minted by this server (several instances "
                "must share one HELIOS_MOCK_JWT_SECRET to accept each other's tokens)"
            ) from None
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(f"malformed token: {exc}; mint a new one with POST /tokens") from None
        if not isinstance(claims["exp"], int | float):
            raise Unauthorized("malformed token: exp is not a number; mint a new one with POST /tokens")
        if now >= claims["exp"]:
            when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(claims["exp"])))
            raise Unauthorized(f"token expired at {when}; mint a new one with POST /tokens")
        details = claims.get("authorization_details")
        try:
            detail = _one_detail(details)
            scope = parse_scope(detail) if detail is not None else None
        except Invalid as exc:
            raise Unauthorized(f"malformed token: {exc.detail}") from None
        return Principal(
            account=str(claims["sub"]),
            token_id=str(claims["jti"]),
            kind="jwt",
            scope=scope,
            expires_at=float(claims["exp"]),
        )


# ---------------------------------------------------------------------- request parsing


def _looks_like_jwt(token: str) -> bool:
    """Three dot-separated parts whose first decodes to a JOSE header with an `alg`."""
    if token.count(".") != 2:
        return False
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:
        return False
    return isinstance(header.get("alg"), str)


def _ttl(expires_after: Any, default: float) -> int:
    """Token lifetime in whole seconds: the request's `expires_after` (clamped to 6 h) or the default."""
    if expires_after is None:
        return max(1, min(MAX_TOKEN_TTL, int(default)))
    if isinstance(expires_after, bool) or not isinstance(expires_after, int | float):
        raise Invalid("expires_after must be a number of seconds")
    if not math.isfinite(expires_after) or expires_after < 1:
        raise Invalid("expires_after must be at least 1 second (values above 21600 are clamped to 6 h)")
    return min(MAX_TOKEN_TTL, int(expires_after))


def _one_detail(details: Any) -> dict[str, Any] | None:
    """The single session detail of `authorization_details`, or None for an unscoped token."""
    if details is None:
        return None
    if not isinstance(details, list):
        raise Invalid("authorization_details must be a list")
    if not details:
        return None
    if len(details) > MAX_DETAILS:
        raise Invalid(f"authorization_details: this mock takes at most {MAX_DETAILS} entry")
    detail = details[0]
    if not isinstance(detail, dict) or detail.get("type") != "session":
        raise Invalid('authorization_details[0] must be an object with "type": "session"')
    return detail


def parse_scope(detail: dict[str, Any]) -> Scope:
    """Check one `{"type": "session", "resources": …, "constraints": …}` detail; raise `Invalid` if bad."""
    resources = detail.get("resources")
    if not isinstance(resources, dict):
        raise Invalid('authorization_details[0].resources is required (e.g. {"models": {"all": true}})')
    models = _models(resources.get("models"))
    bound = _bind(resources.get("sessions"))
    constraints = detail.get("constraints") or {}
    if not isinstance(constraints, dict):
        raise Invalid("authorization_details[0].constraints must be an object")
    max_sessions = _int_in(constraints.get("max_sessions"), "max_sessions", 1, MAX_MAX_SESSIONS)
    duration = _int_in(
        constraints.get("max_session_duration_seconds"),
        "max_session_duration_seconds",
        1,
        MAX_SESSION_DURATION,
    )
    if max_sessions is not None and max_sessions < len(bound):
        raise Invalid(
            f"max_sessions ({max_sessions}) counts the bound sessions, so it must be ≥ {len(bound)}"
        )
    return Scope(models=models, bound=bound, max_sessions=max_sessions, max_session_duration=duration)


def _detail_claim(detail: dict[str, Any], scope: Scope) -> dict[str, Any]:
    """The detail as signed into the token: the known fields only, model names as the client gave them."""
    match = detail["resources"]["models"].get("match")
    resources: dict[str, Any] = {"models": {"all": True} if scope.models is None else {"match": list(match)}}
    if scope.bound:
        resources["sessions"] = {"bind": sorted(scope.bound)}
    constraints: dict[str, int] = {}
    if scope.max_sessions is not None:
        constraints["max_sessions"] = scope.max_sessions
    if scope.max_session_duration is not None:
        constraints["max_session_duration_seconds"] = scope.max_session_duration
    ignored = set(detail.get("constraints") or {}) - {"max_sessions", "max_session_duration_seconds"}
    if ignored:
        log.info("POST /tokens: ignored unknown constraint(s) %s", ", ".join(sorted(ignored)))
    claim: dict[str, Any] = {"type": "session", "resources": resources}
    if constraints:
        claim["constraints"] = constraints
    return claim


def _models(models: Any) -> frozenset[str] | None:
    if not isinstance(models, dict):
        raise Invalid('resources.models is required: {"match": ["reactor/helios"]} or {"all": true}')
    if models.get("all") is True:
        return None
    match = models.get("match")
    if not isinstance(match, list) or not match or len(match) > MAX_MODELS:
        raise Invalid(f"resources.models.match must list 1..{MAX_MODELS} model names")
    if not all(isinstance(m, str) and 0 < len(m) <= MAX_NAME_CHARS for m in match):
        raise Invalid(f"resources.models.match entries must be names of 1..{MAX_NAME_CHARS} characters")
    return frozenset(normalise_model(m) for m in match)


def _bind(sessions: Any) -> frozenset[str]:
    if sessions is None:
        return frozenset()
    bind = sessions.get("bind") if isinstance(sessions, dict) else None
    if not isinstance(bind, list) or not bind or len(bind) > MAX_BIND:
        raise Invalid(f"resources.sessions.bind must list 1..{MAX_BIND} session ids")
    if not all(isinstance(s, str) and 0 < len(s) <= MAX_NAME_CHARS for s in bind):
        raise Invalid("resources.sessions.bind entries must be session ids (strings)")
    return frozenset(bind)


def _int_in(value: Any, name: str, low: int, high: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise Invalid(f"constraints.{name} must be a whole number from {low} to {high}, got {value!r}")
    return value


def _check_bind(session_id: str, account: str, owner_account: str | None) -> None:
    if owner_account is None:
        raise NotFound(f"cannot bind session {session_id!r}: it is unknown or already closed")
    if owner_account != account:
        raise Forbidden(f"cannot bind session {session_id!r}: it belongs to another account")

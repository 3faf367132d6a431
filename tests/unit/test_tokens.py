"""Token minting and verification (services/tokens.py): real HS256 JWTs, scope parsing, 401s."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import jwt
import pytest

from mock_server.config import Settings
from mock_server.errors import Forbidden, Invalid, NotFound, Unauthorized
from mock_server.services.tokens import (
    MAX_TOKEN_TTL,
    STATIC_TEST_TOKEN,
    TokenService,
    account_for_api_key,
    api_key_from_headers,
)

SECRET = "s" * 40
NOW = 1_800_000_000.0


def _service(**changes: Any) -> TokenService:
    return TokenService(replace(Settings(), jwt_secret=SECRET, **changes))


def _scoped(**constraints: Any) -> dict[str, Any]:
    detail: dict[str, Any] = {"type": "session", "resources": {"models": {"match": ["reactor/helios"]}}}
    if constraints:
        detail["constraints"] = constraints
    return {"authorization_details": [detail]}


def _claims(token: str) -> dict[str, Any]:
    return jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_exp": False, "verify_iat": False})


def test_minted_token_is_a_real_jwt_with_the_asked_claims() -> None:
    body = _scoped(max_sessions=3, max_session_duration_seconds=300)
    body["expires_after"] = 120
    minted = _service().mint("rk_test", body, now=NOW)
    assert minted["jwt"].count(".") == 2
    claims = _claims(minted["jwt"])
    assert claims["sub"] == account_for_api_key("rk_test") and "rk_test" not in minted["jwt"]
    assert claims["iat"] == int(NOW) and claims["exp"] == int(NOW) + 120 == minted["expires_at"]
    assert claims["iss"] == "helios-mock" and claims["jti"].startswith("tok_")
    assert claims["authorization_details"] == [
        {
            "type": "session",
            "resources": {"models": {"match": ["reactor/helios"]}},
            "constraints": {"max_sessions": 3, "max_session_duration_seconds": 300},
        }
    ]
    assert jwt.get_unverified_header(minted["jwt"])["alg"] == "HS256"


def test_unscoped_token_and_default_ttl() -> None:
    service = _service(token_ttl=3600.0)
    bodies: list[dict[str, Any] | None] = [None, {}]
    for body in bodies:
        claims = _claims(service.mint("rk_test", body, now=NOW)["jwt"])
        assert claims["exp"] - claims["iat"] == 3600 and "authorization_details" not in claims
        principal = service.authenticate("Bearer " + service.mint("rk_test", body, now=NOW)["jwt"], now=NOW)
        assert principal.scope is None and principal.kind == "jwt"


def test_each_mint_is_a_distinct_token_of_the_same_account() -> None:
    service = _service()
    a = service.authenticate("Bearer " + service.mint("rk_a", None, now=NOW)["jwt"], now=NOW)
    b = service.authenticate("Bearer " + service.mint("rk_a", None, now=NOW)["jwt"], now=NOW)
    other = service.authenticate("Bearer " + service.mint("rk_b", None, now=NOW)["jwt"], now=NOW)
    assert a.account == b.account != other.account
    assert a.token_id != b.token_id


@pytest.mark.parametrize(
    ("asked", "granted"), [(1, 1), (21_600, 21_600), (100_000, MAX_TOKEN_TTL), (90.9, 90)]
)
def test_expires_after_is_clamped_to_six_hours(asked: float, granted: int) -> None:
    minted = _service().mint("rk", {"expires_after": asked}, now=NOW)
    assert minted["expires_at"] - int(NOW) == granted


@pytest.mark.parametrize("bad", [0, -5, "60", True, float("inf"), float("nan")])
def test_bad_expires_after_is_400(bad: Any) -> None:
    with pytest.raises(Invalid, match="expires_after"):
        _service().mint("rk", {"expires_after": bad}, now=NOW)


def test_expired_token_is_401() -> None:
    service = _service()
    token = service.mint("rk", {"expires_after": 60}, now=NOW)["jwt"]
    assert service.authenticate(f"Bearer {token}", now=NOW + 59).account == account_for_api_key("rk")
    with pytest.raises(Unauthorized, match="expired .* POST /tokens"):
        service.authenticate(f"Bearer {token}", now=NOW + 60)


def test_token_expired_on_the_wall_clock_is_401() -> None:
    service = _service()
    past = time.time() - 10
    token = service.mint("rk", {"expires_after": 5}, now=past)["jwt"]
    with pytest.raises(Unauthorized, match="expired"):
        service.authenticate(f"Bearer {token}")


def test_tampered_token_is_401() -> None:
    service = _service()
    token = service.mint("rk", _scoped(max_sessions=1), now=NOW)["jwt"]
    claims = _claims(token)
    claims["authorization_details"][0]["constraints"]["max_sessions"] = 1000
    forged = jwt.encode(claims, "x" * 40, algorithm="HS256")
    header, _, signature = token.split(".")
    swapped = ".".join([header, forged.split(".")[1], signature])
    for bad in (forged, swapped, token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")):
        with pytest.raises(Unauthorized, match="signature does not verify"):
            service.authenticate(f"Bearer {bad}", now=NOW)


def test_unsigned_and_foreign_algorithm_tokens_are_401() -> None:
    service = _service()
    claims = {"iss": "helios-mock", "sub": "acct_x", "iat": int(NOW), "exp": int(NOW) + 60, "jti": "tok_x"}
    unsigned = jwt.encode(claims, None, algorithm="none")  # type: ignore[arg-type]  # alg "none" has no key
    with pytest.raises(Unauthorized, match="not signed with HS256"):
        service.authenticate(f"Bearer {unsigned}", now=NOW)
    wrong_issuer = jwt.encode({**claims, "iss": "someone"}, SECRET, algorithm="HS256")
    with pytest.raises(Unauthorized, match="malformed token"):
        service.authenticate(f"Bearer {wrong_issuer}", now=NOW)
    missing = jwt.encode({k: v for k, v in claims.items() if k != "jti"}, SECRET, algorithm="HS256")
    with pytest.raises(Unauthorized, match="malformed token"):
        service.authenticate(f"Bearer {missing}", now=NOW)


def test_instances_sharing_a_secret_accept_each_others_tokens() -> None:
    token = _service().mint("rk", None, now=NOW)["jwt"]
    assert _service().authenticate(f"Bearer {token}", now=NOW).kind == "jwt"
    random_a, random_b = TokenService(Settings()), TokenService(Settings())
    token = random_a.mint("rk", None, now=NOW)["jwt"]
    assert random_a.authenticate(f"Bearer {token}", now=NOW).kind == "jwt"
    with pytest.raises(Unauthorized, match="HELIOS_MOCK_JWT_SECRET"):
        random_b.authenticate(f"Bearer {token}", now=NOW)


def test_short_secret_is_refused_at_startup() -> None:
    with pytest.raises(ValueError, match="at least 32"):
        TokenService(replace(Settings(), jwt_secret="short"))


def test_api_key_rules() -> None:
    with pytest.raises(Unauthorized, match="Reactor-API-Key"):
        _service().mint(None, None)
    with pytest.raises(Unauthorized, match="Reactor-API-Key"):
        _service().mint("  ", None)
    restricted = _service(api_keys=("rk_one", "rk_two"))
    assert restricted.mint("rk_two", None)["jwt"]
    with pytest.raises(Unauthorized, match="unknown API key"):
        restricted.mint("rk_three", None)
    assert api_key_from_headers({"Reactor-API-Key": "a"}) == "a"
    assert api_key_from_headers({"x-api-key": "b"}) == "b"
    assert api_key_from_headers({"accept": "x"}) is None


def test_static_and_opaque_bearer_tokens() -> None:
    service = _service()
    static = service.authenticate(f"Bearer {STATIC_TEST_TOKEN}")
    assert static.account == "acct_test" and static.kind == "static" and static.scope is None
    a, a_again, b = (service.authenticate(f"Bearer {t}") for t in ("test-token", "test-token", "other"))
    assert a == a_again and a.account != b.account and a.kind == "opaque"
    assert "test-token" not in a.account
    strict = _service(accept_opaque_tokens=False)
    assert strict.authenticate(f"bearer {STATIC_TEST_TOKEN}").kind == "static"
    with pytest.raises(Unauthorized, match="plain bearer strings are turned off"):
        strict.authenticate("Bearer test-token")


@pytest.mark.parametrize("header", [None, "", "Basic abc", "Bearer ", "Bearer " + "x" * 9000])
def test_missing_or_unusable_authorization_is_401(header: str | None) -> None:
    with pytest.raises(Unauthorized):
        _service().authenticate(header)


def test_scope_round_trips_through_the_token() -> None:
    service = _service()
    body = {
        "authorization_details": [
            {
                "type": "session",
                "resources": {"models": {"all": True}, "sessions": {"bind": ["sess_1", "sess_2"]}},
                "constraints": {"max_sessions": 4, "max_session_duration_seconds": 60},
            }
        ]
    }
    account = account_for_api_key("rk")
    token = service.mint("rk", body, open_session_account=lambda _sid: account, now=NOW)["jwt"]
    scope = service.authenticate(f"Bearer {token}", now=NOW).scope
    assert scope is not None
    assert scope.models is None and scope.bound == {"sess_1", "sess_2"}
    assert scope.max_sessions == 4 and scope.max_session_duration == 60 and scope.creation_allowance == 2
    models_only = service.mint("rk", _scoped(), now=NOW)["jwt"]
    scope = service.authenticate(f"Bearer {models_only}", now=NOW).scope
    assert scope is not None and scope.models == {"helios"} and scope.creation_allowance is None


def test_bind_must_name_open_sessions_of_the_same_account() -> None:
    service = _service()
    owners = {"sess_mine": account_for_api_key("rk"), "sess_theirs": account_for_api_key("rk_other")}
    body: dict[str, Any] = {
        "authorization_details": [
            {"type": "session", "resources": {"models": {"all": True}, "sessions": {"bind": ["sess_mine"]}}}
        ]
    }
    assert service.mint("rk", body, open_session_account=owners.get, now=NOW)["jwt"]
    body["authorization_details"][0]["resources"]["sessions"]["bind"] = ["sess_theirs"]
    with pytest.raises(Forbidden, match="another account"):
        service.mint("rk", body, open_session_account=owners.get, now=NOW)
    body["authorization_details"][0]["resources"]["sessions"]["bind"] = ["sess_gone"]
    with pytest.raises(NotFound, match="unknown or already closed"):
        service.mint("rk", body, open_session_account=owners.get, now=NOW)


@pytest.mark.parametrize(
    ("detail", "message"),
    [
        ({"type": "other", "resources": {"models": {"all": True}}}, '"type": "session"'),
        ({"type": "session"}, "resources is required"),
        ({"type": "session", "resources": {}}, "models is required"),
        ({"type": "session", "resources": {"models": {"match": []}}}, "match must list"),
        ({"type": "session", "resources": {"models": {"match": [7]}}}, "entries must be names"),
        (
            {"type": "session", "resources": {"models": {"all": True}, "sessions": {"bind": "sess_1"}}},
            "bind must list",
        ),
        (
            {"type": "session", "resources": {"models": {"all": True}}, "constraints": {"max_sessions": 0}},
            "max_sessions must be a whole number",
        ),
        (
            {
                "type": "session",
                "resources": {"models": {"all": True}},
                "constraints": {"max_session_duration_seconds": 86_401},
            },
            "from 1 to 86400",
        ),
    ],
)
def test_bad_authorization_details_are_400(detail: dict[str, Any], message: str) -> None:
    with pytest.raises(Invalid, match=message):
        _service().mint("rk", {"authorization_details": [detail]}, now=NOW)


def test_authorization_details_limits() -> None:
    with pytest.raises(Invalid, match="must be a list"):
        _service().mint("rk", {"authorization_details": {"type": "session"}}, now=NOW)
    two = _scoped()["authorization_details"] * 2
    with pytest.raises(Invalid, match="at most 1 entry"):
        _service().mint("rk", {"authorization_details": two}, now=NOW)
    with pytest.raises(Invalid, match="JSON object or null"):
        _service().mint("rk", ["not", "an", "object"], now=NOW)


def test_unknown_constraints_are_not_signed_into_the_token() -> None:
    body = _scoped(max_sessions=1, max_duration_seconds=60)
    claims = _claims(_service().mint("rk", body, now=NOW)["jwt"])
    assert claims["authorization_details"][0]["constraints"] == {"max_sessions": 1}

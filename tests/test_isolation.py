"""Issue 10: scoped tokens, per-session isolation between tokens/accounts, and the protected admin surface.

Two servers of its own: one with a known `--jwt-secret` (so PyJWT can decode what it mints), one with an
`--admin-token`. Every refusal is checked to change nothing: the victim's admin view is compared before/after.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from conformance.server import HeliosServer

SECRET = secrets.token_urlsafe(32)
ADMIN_TOKEN = "admin-" + secrets.token_hex(8)
EVIL = "http://evil.example"
SESSION_BODY = {
    "model": {"name": "helios"},
    "client_info": {"sdk_version": "2.9.0", "sdk_type": "js"},
    "supported_transports": [{"protocol": "webrtc", "version": "1.0"}],
}
OFFER = {"sdp_offer": "v=0\r\n", "track_mapping": []}
CANDIDATES = {"candidates": [], "is_final": True}
ALL_MODELS = {"models": {"all": True}}
T = "/sessions/{sid}/transport/webrtc"
# every per-session route a foreign token may try, with the body it sends
PER_SESSION_ROUTES: list[tuple[str, str, Any]] = [
    ("GET", "/sessions/{sid}", None),
    ("POST", "/sessions/{sid}/uploads", {"name": "x.png", "size": 4, "mime_type": "image/png"}),
    ("GET", T + "/ice_servers", None),
    ("POST", T + "/sdp_params", OFFER),
    ("PUT", T + "/sdp_params", OFFER),
    ("GET", T + "/sdp_params", None),
    ("POST", T + "/connections", {}),
    ("POST", T + "/connections/2000/ice_candidates", CANDIDATES),
    ("POST", T + "/connections/2000/sdp_params", OFFER),
    ("PUT", T + "/connections/2000/sdp_params", OFFER),
    ("GET", T + "/connections/2000/sdp_params", None),
    ("DELETE", "/sessions/{sid}", None),
]


def _start(tmp: Path, *extra: str) -> HeliosServer:
    return HeliosServer.start(extra=list(extra), log_path=tmp / "server.log")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HeliosServer]:
    srv = _start(tmp_path_factory.mktemp("iso"), "--jwt-secret", SECRET, "--max-creations-per-minute", "0")
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HeliosServer]:
    srv = _start(tmp_path_factory.mktemp("adm"), "--admin-token", ADMIN_TOKEN)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def http(server: HeliosServer) -> Iterator[httpx.Client]:
    server.reset()
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _mint(http: httpx.Client, key: str, details: list[dict[str, Any]] | None = None, **extra: Any) -> str:
    body: dict[str, Any] = dict(extra)
    if details is not None:
        body["authorization_details"] = details
    resp = http.post("/tokens", headers={"Reactor-API-Key": key}, json=body)
    assert resp.status_code == 200, resp.text
    return str(resp.json()["jwt"])


def _create(http: httpx.Client, token: str) -> str:
    resp = http.post("/sessions", json=SESSION_BODY, headers=_bearer(token))
    assert resp.status_code == 201, resp.text
    return str(resp.json()["session_id"])


def _view(server: HeliosServer, sid: str) -> dict[str, Any]:
    """The victim's admin view without what time alone changes (chunks, clock entries)."""
    (view,) = [s for s in server.record()["sessions"] if s["session_id"] == sid]
    keep = ("closed", "close_reason", "connections", "rejections", "http", "commands")
    return {k: view[k] for k in keep}


def _detail(resp: httpx.Response) -> str:
    return str(resp.json()["detail"])


# ---------------------------------------------------------------- isolation


@pytest.mark.parametrize("foreign", ["other-account", "scoped-same-account"])
def test_every_per_session_route_refuses_a_foreign_token(
    http: httpx.Client, server: HeliosServer, foreign: str
) -> None:
    owner = _mint(http, "key-a")
    victim = _create(http, owner)
    own = _bearer(owner)
    slot = http.post(
        f"/sessions/{victim}/uploads",
        json={"name": "a.png", "size": 4, "mime_type": "image/png"},
        headers=own,
    )
    assert slot.status_code == 201
    assert (
        http.post(T.format(sid=victim) + "/connections", json={}, headers=own).json()["connection_id"] == 2000
    )
    if foreign == "other-account":
        intruder = _mint(http, "key-b")
        _create(http, intruder)  # B has a session of its own
        needle = "another account"
    else:  # same account, but a scoped token that neither created nor is bound to the session
        intruder = _mint(http, "key-a", [{"type": "session", "resources": ALL_MODELS}])
        needle = "did not create"
    before = _view(server, victim)
    for method, path, body in PER_SESSION_ROUTES:
        resp = http.request(method, path.format(sid=victim), json=body, headers=_bearer(intruder))
        assert resp.status_code == 403, (method, path, resp.status_code, resp.text)
        assert needle in _detail(resp), (method, path)
    assert _view(server, victim) == before
    # the owner still works, and nothing the intruder tried took a connection id or ended the session
    assert http.get(f"/sessions/{victim}", headers=own).json()["state"] in ("PENDING", "ACTIVE")
    assert (
        http.post(T.format(sid=victim) + "/connections", json={}, headers=own).json()["connection_id"] == 2001
    )
    assert http.put(slot.json()["presigned_url"], content=b"abcd").status_code == 200  # capability URL
    assert http.delete(f"/sessions/{victim}", headers=own).status_code == 200


def test_unauthenticated_and_unknown_come_before_forbidden(http: httpx.Client) -> None:
    victim = _create(http, _mint(http, "key-a"))
    other = _bearer(_mint(http, "key-b"))
    for method, path, body in PER_SESSION_ROUTES:
        assert http.request(method, path.format(sid=victim), json=body).status_code == 401, (method, path)
        unknown = http.request(method, path.format(sid="sess_nope"), json=body, headers=other)
        assert unknown.status_code == 404, (method, path)


def test_bound_token_may_use_the_session_and_nothing_else(http: httpx.Client) -> None:
    creator = _mint(http, "key-a")
    sid, elsewhere = _create(http, creator), _create(http, creator)
    bound = _mint(
        http, "key-a", [{"type": "session", "resources": {**ALL_MODELS, "sessions": {"bind": [sid]}}}]
    )
    assert http.get(f"/sessions/{sid}", headers=_bearer(bound)).status_code == 200
    refused = http.get(f"/sessions/{elsewhere}", headers=_bearer(bound))
    assert refused.status_code == 403 and "bind" in _detail(refused)
    cannot_create = http.post("/sessions", json=SESSION_BODY, headers=_bearer(bound))
    assert cannot_create.status_code == 403
    foreign_bind = http.post(
        "/tokens",
        headers={"Reactor-API-Key": "key-b"},
        json={
            "authorization_details": [
                {"type": "session", "resources": {**ALL_MODELS, "sessions": {"bind": [sid]}}}
            ]
        },
    )
    assert foreign_bind.status_code == 403 and "another account" in _detail(foreign_bind)


def test_expired_token_is_401(http: httpx.Client) -> None:
    now = int(time.time())
    claims = {"iss": "helios-mock", "sub": "acct_x", "iat": now - 100, "exp": now - 10, "jti": "tok_old"}
    expired = jwt.encode(claims, SECRET, algorithm="HS256")
    resp = http.post("/sessions", json=SESSION_BODY, headers=_bearer(expired))
    assert resp.status_code == 401 and "expired" in _detail(resp)
    forged = jwt.encode({**claims, "exp": now + 100}, "x" * 32, algorithm="HS256")
    assert http.post("/sessions", json=SESSION_BODY, headers=_bearer(forged)).status_code == 401


def test_model_outside_the_scope_is_403(http: httpx.Client) -> None:
    token = _mint(http, "key-a", [{"type": "session", "resources": {"models": {"match": ["reactor/other"]}}}])
    resp = http.post("/sessions", json=SESSION_BODY, headers=_bearer(token))
    assert resp.status_code == 403 and "model" in _detail(resp)
    assert not [s for s in http.get("/admin/record").json()["sessions"] if s["mode"] == "production"]


def test_max_sessions_is_403(http: httpx.Client) -> None:
    detail = {"type": "session", "resources": ALL_MODELS, "constraints": {"max_sessions": 2}}
    token = _mint(http, "key-a", [detail])
    for _ in range(2):
        sid = _create(http, token)
        assert http.delete(f"/sessions/{sid}", headers=_bearer(token)).status_code == 200
    over = http.post("/sessions", json=SESSION_BODY, headers=_bearer(token))
    assert over.status_code == 403 and "at most 2" in _detail(over)


def test_session_duration_constraint_ends_the_session(http: httpx.Client) -> None:
    detail = {"type": "session", "resources": ALL_MODELS, "constraints": {"max_session_duration_seconds": 1}}
    token = _mint(http, "key-a", [detail])
    sid = _create(http, token)
    deadline = time.monotonic() + 10
    while (state := http.get(f"/sessions/{sid}", headers=_bearer(token)).json()["state"]) != "CLOSED":
        assert time.monotonic() < deadline, state
        time.sleep(0.2)
    (view,) = [s for s in http.get("/admin/record").json()["sessions"] if s["session_id"] == sid]
    assert "maximum duration of 1 s" in view["close_reason"]


def test_tokens_post_and_get_decode_with_the_server_secret(http: httpx.Client) -> None:
    detail = {
        "type": "session",
        "resources": {"models": {"match": ["reactor/helios"]}},
        "constraints": {"max_sessions": 3, "max_session_duration_seconds": 600},
    }
    resp = http.post(
        "/tokens",
        headers={"Reactor-API-Key": "key-a"},
        json={"expires_after": 120, "authorization_details": [detail]},
    )
    assert resp.status_code == 200
    body = resp.json()
    claims = jwt.decode(body["jwt"], SECRET, algorithms=["HS256"], issuer="helios-mock")
    assert claims["exp"] == body["expires_at"] and claims["exp"] - claims["iat"] == 120
    assert claims["authorization_details"] == [detail]
    got = http.get("/tokens", headers={"Reactor-API-Key": "key-a"})
    assert got.status_code == 200
    unscoped = jwt.decode(got.json()["jwt"], SECRET, algorithms=["HS256"], issuer="helios-mock")
    assert unscoped["sub"] == claims["sub"] and "authorization_details" not in unscoped
    assert http.get("/tokens").status_code == 401
    bad = http.post(
        "/tokens", headers={"Reactor-API-Key": "key-a"}, json={"authorization_details": [{"type": "session"}]}
    )
    assert bad.status_code == 400 and "resources" in _detail(bad)


def test_static_and_opaque_tokens_are_accounts_of_their_own(http: httpx.Client) -> None:
    sid = _create(http, "helios-mock-test-token")
    assert http.get(f"/sessions/{sid}", headers=_bearer("helios-mock-test-token")).status_code == 200
    assert http.get(f"/sessions/{sid}", headers=_bearer("some-other-string")).status_code == 403


def test_malformed_json_is_422(http: httpx.Client) -> None:
    token = _bearer(_mint(http, "key-a"))
    assert http.post("/sessions", content=b"{nope", headers=token).status_code == 422
    assert http.post("/start_session", content=b"{nope").status_code == 422


# ---------------------------------------------------------------- admin surface


def test_admin_without_token_refuses_foreign_browsers(http: httpx.Client, server: HeliosServer) -> None:
    http.post("/start_session")
    assert http.get("/admin/record").status_code == 200  # non-browser client
    same = server.url  # a page of the mock's own origin
    assert http.get("/admin/record", headers={"Origin": same}).status_code == 200
    for method, path in [("GET", "/admin/record"), ("POST", "/admin/reset")]:
        resp = http.request(method, path, headers={"Origin": EVIL})
        assert resp.status_code == 403, (method, path)
        assert "access-control-allow-origin" not in resp.headers
        site = http.request(method, path, headers={"Sec-Fetch-Site": "cross-site"})
        assert site.status_code == 403
    preflight = http.options(
        "/admin/reset", headers={"Origin": EVIL, "Access-Control-Request-Method": "POST"}
    )
    assert "access-control-allow-origin" not in preflight.headers
    assert http.get("/session").json()["state"] != "READY"  # the reset did not happen
    client_preflight = http.options(
        "/sessions", headers={"Origin": EVIL, "Access-Control-Request-Method": "POST"}
    )
    assert client_preflight.headers["access-control-allow-origin"] in ("*", EVIL)


def test_admin_with_token(guarded: HeliosServer) -> None:
    with httpx.Client(base_url=guarded.url, timeout=10) as http:
        assert http.get("/admin/record").status_code == 401
        assert http.get("/admin/record", headers={"X-Helios-Admin-Token": "wrong"}).status_code == 401
        http.post("/start_session")
        assert http.post("/admin/reset").status_code == 401
        assert http.get("/session").json()["state"] != "READY"  # refused reset changed nothing
        ok = {"X-Helios-Admin-Token": ADMIN_TOKEN}
        assert http.get("/admin/record", headers=ok).status_code == 200
        assert (
            http.get("/admin/record", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).status_code == 200
        )
        assert http.get("/admin/record", headers={**ok, "Origin": EVIL}).status_code == 200  # token decides
    guarded.reset()  # HeliosServer passes its admin token
    assert guarded.record()["sessions"] == []


async def _ws_refused(url: str, **kwargs: Any) -> int:
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(url, open_timeout=5, **kwargs):
            pass
    return int(refused.value.response.status_code)


def test_live_websocket_refuses_foreign_origin_and_missing_token(
    http: httpx.Client, server: HeliosServer, guarded: HeliosServer
) -> None:
    http.post("/start_session")
    ws = server.url.replace("http://", "ws://") + "/admin/sessions/local/live"
    assert asyncio.run(_ws_refused(ws, origin=EVIL)) == 403

    async def first_item() -> Any:
        async with websockets.connect(ws, open_timeout=5) as sock:
            return await asyncio.wait_for(sock.recv(), 5)

    assert asyncio.run(first_item())  # no Origin: a non-browser tool may follow
    gws = guarded.url.replace("http://", "ws://") + "/admin/sessions/local/live"
    assert asyncio.run(_ws_refused(gws)) == 403
    httpx.post(guarded.url + "/start_session")

    async def with_token() -> Any:
        async with websockets.connect(
            f"{gws}?admin_token={ADMIN_TOKEN}", open_timeout=5, origin=EVIL
        ) as sock:
            return await asyncio.wait_for(sock.recv(), 5)

    assert asyncio.run(with_token())
    httpx.post(guarded.url + "/stop_session")

"""HTTP API of both modes against a running mock: every route's success shape and every error status."""

from __future__ import annotations

import time

import httpx
import pytest

from conformance.server import HeliosServer

BEARER = {"Authorization": "Bearer test-token"}
SESSION_BODY = {
    "model": {"name": "helios"},
    "client_info": {"sdk_version": "2.9.0", "sdk_type": "js"},
    "supported_transports": [{"protocol": "webrtc", "version": "1.0"}],
}
JS_REQUIRED = ("session_id", "state", "cluster", "model", "server_info")


@pytest.fixture
def http(helios: HeliosServer) -> httpx.Client:
    with httpx.Client(base_url=helios.url, timeout=10) as client:
        yield client


def _detail(resp: httpx.Response) -> str:
    body = resp.json()
    assert set(body) == {"detail"}, body
    return body["detail"]


# ---------------------------------------------------------------- local mode


def test_local_start_session_descriptor_is_complete_and_idempotent(http: httpx.Client) -> None:
    first = http.post("/start_session", json={})
    assert first.status_code == 200
    desc = first.json()
    assert all(k in desc for k in JS_REQUIRED)
    assert desc["session_id"] == "local" and desc["model"]["name"] == "helios"
    assert desc["selected_transport"] == {"protocol": "webrtc", "version": "1.0"}
    assert desc["capabilities"]["tracks"] == [
        {"name": "main_video", "kind": "video", "direction": "recvonly"}
    ]
    assert desc["capabilities"]["commands"] == [] and desc["capabilities"]["emission_fps"] is None
    assert desc["schema"]["openapi"].startswith("3.1")
    assert "generation" not in desc
    again = http.post("/start_session")  # idempotent as RT2 (RT3: 409); see docs/DECISIONS.md
    assert again.status_code == 200 and again.json()["session_id"] == "local"
    assert http.get("/session").json()["state"] == "WAITING"


def test_local_stop_session_409_when_idle_and_get_session_reports_ready(http: httpx.Client) -> None:
    assert http.get("/session").json()["state"] == "READY"
    idle = http.post("/stop_session")  # nothing running: 409, as the real runtime (3.10)
    assert idle.status_code == 409 and "no local session" in _detail(idle)
    http.post("/start_session", json={})
    assert http.post("/stop_session").status_code == 200
    assert http.get("/session").json()["state"] == "READY"


def test_health_and_schema(http: httpx.Client) -> None:
    health = http.get("/health").json()
    assert health == {"status": "healthy", "state": "available", "model": "helios", "detail": None}
    http.post("/start_session")
    assert http.get("/health").json()["state"] == "serving"
    assert "/events/set_prompt" in http.get("/schema").json()["paths"]


def test_transport_without_a_session_is_400(http: httpx.Client) -> None:
    resp = http.get("/sessions/local/transport/webrtc/ice_servers")
    assert resp.status_code == 400
    assert "No session running" in _detail(resp)


def test_ice_servers_empty_and_sdp_poll_before_offer(http: httpx.Client) -> None:
    http.post("/start_session")
    assert http.get("/sessions/local/transport/webrtc/ice_servers").json() == {"ice_servers": []}
    resp = http.get("/sessions/local/transport/webrtc/sdp_params")
    assert resp.status_code == 404
    assert "POST sdp_params" in _detail(resp)


def test_bad_offers(http: httpx.Client) -> None:
    http.post("/start_session")
    resp = http.post("/sessions/local/transport/webrtc/sdp_params", json={"sdp_offer": "not sdp"})
    assert resp.status_code == 400
    assert "SDP offer" in _detail(resp)
    resp = http.post("/sessions/local/transport/webrtc/sdp_params", json={"track_mapping": []})
    assert resp.status_code == 422
    assert any("sdp_offer" in item["msg"] for item in resp.json()["detail"])
    resp = http.post("/sessions/local/transport/webrtc/sdp_params", content=b"{nope")
    assert resp.status_code == 422


def test_registered_connections_ids_and_unknown_connection(http: httpx.Client) -> None:
    http.post("/start_session")
    first = http.post("/sessions/local/transport/webrtc/connections", json={})
    second = http.post("/sessions/local/transport/webrtc/connections", json={})
    assert first.status_code == 201 and second.status_code == 201
    assert (first.json()["connection_id"], second.json()["connection_id"]) == (2000, 2001)
    resp = http.get("/sessions/local/transport/webrtc/connections/4242/sdp_params")
    assert resp.status_code == 404
    assert "4242" in _detail(resp)
    early = http.post(
        "/sessions/local/transport/webrtc/connections/2000/ice_candidates",
        json={
            "candidates": [
                {
                    "candidate": "candidate:1 1 udp 2122194687 198.18.0.1 5000 typ host",
                    "sdp_mid": "0",
                    "sdp_mline_index": 0,
                }
            ],
            "is_final": False,
        },
    )
    assert early.status_code == 202 and early.content == b""  # empty body, as the real runtime
    pending = http.get("/sessions/local/transport/webrtc/connections/2000/sdp_params")
    assert pending.status_code == 202 and pending.content == b""


# ---------------------------------------------------------------- uploads


def test_upload_slot_put_and_errors(http: httpx.Client) -> None:
    http.post("/start_session")
    resp = http.post("/sessions/local/uploads", json={"name": "ref.png", "size": 4, "mime_type": "image/png"})
    assert resp.status_code == 201
    slot = resp.json()
    assert set(slot) >= {"presigned_id", "presigned_url", "path"}
    assert slot["presigned_url"].startswith(str(http.base_url).rstrip("/") + "/uploads/")
    short = http.put(slot["presigned_url"], content=b"abc")
    assert short.status_code == 400 and "declared 4 bytes but 3 arrived" in _detail(short)
    assert http.put(slot["presigned_url"], content=b"abcd").status_code == 200
    again = http.put(slot["presigned_url"], content=b"abcd")
    assert again.status_code == 409
    assert http.put("/uploads/nope", content=b"x").status_code == 404
    png = {"mime_type": "image/png"}
    assert http.post("/sessions/local/uploads", json={"name": "", "size": 4, **png}).status_code == 400
    assert http.post("/sessions/local/uploads", json={"name": "a", "size": 0, **png}).status_code == 400
    assert http.post("/sessions/local/uploads", json={"name": "a", **png}).status_code == 422  # no size
    no_mime = http.post("/sessions/local/uploads", json={"name": "a", "size": 4})
    assert no_mime.status_code == 422  # mime_type is required, as on the real runtime
    bad_json = http.post("/sessions/local/uploads", content=b"{nope")
    assert bad_json.status_code == 422
    http.post("/stop_session")
    freed = http.put(slot["presigned_url"], content=b"abcd")
    assert freed.status_code == 404 and "freed" in _detail(freed)


# ---------------------------------------------------------------- production mode


def test_production_requires_a_bearer_token(http: httpx.Client) -> None:
    for method, path in [("POST", "/sessions"), ("GET", "/sessions/sess_x"), ("DELETE", "/sessions/sess_x")]:
        resp = http.request(method, path, json=SESSION_BODY if method == "POST" else None)
        assert resp.status_code == 401, (method, path)
        assert "Bearer" in _detail(resp)


def test_production_pending_then_active_then_closed(http: httpx.Client) -> None:
    created = http.post("/sessions", json=SESSION_BODY, headers=BEARER)
    assert created.status_code == 201
    desc = created.json()
    sid = desc["session_id"]
    assert sid.startswith("sess_") and desc["state"] == "PENDING" and "capabilities" not in desc
    assert all(k in desc for k in JS_REQUIRED)
    deadline = time.monotonic() + 5
    while "capabilities" not in (desc := http.get(f"/sessions/{sid}", headers=BEARER).json()):
        assert desc["state"] == "PENDING" and time.monotonic() < deadline
        time.sleep(0.05)
    assert desc["state"] == "ACTIVE" and desc["selected_transport"]["protocol"] == "webrtc"
    transport = f"/sessions/{sid}/transport/webrtc/ice_servers"
    assert http.get(transport).status_code == 401
    assert http.get(transport, headers=BEARER).json() == {"ice_servers": []}
    assert http.delete(f"/sessions/{sid}", headers=BEARER).status_code == 200
    assert http.get(f"/sessions/{sid}", headers=BEARER).json()["state"] == "CLOSED"
    assert http.delete(f"/sessions/{sid}", headers=BEARER).status_code == 404
    assert http.get(transport, headers=BEARER).status_code == 404


def test_production_many_sessions_have_unique_url_safe_ids(http: httpx.Client) -> None:
    ids = set()
    for n in range(5):
        headers = {"Authorization": f"Bearer account-{n}"}
        ids.add(http.post("/sessions", json=SESSION_BODY, headers=headers).json()["session_id"])
    assert len(ids) == 5
    assert all(i.replace("_", "").isalnum() for i in ids)


def test_production_unknown_model_and_unknown_session(http: httpx.Client) -> None:
    resp = http.post("/sessions", json={**SESSION_BODY, "model": {"name": "other"}}, headers=BEARER)
    assert resp.status_code == 404 and "helios" in _detail(resp)
    assert (
        http.post(
            "/sessions", json={**SESSION_BODY, "model": {"name": "reactor/helios"}}, headers=BEARER
        ).status_code
        == 201
    )
    assert http.get("/sessions/sess_unknown", headers=BEARER).status_code == 404


def test_production_concurrency_limit_is_429_with_retry_after(http: httpx.Client) -> None:
    headers = {"Authorization": "Bearer one-account"}
    for _ in range(5):
        assert http.post("/sessions", json=SESSION_BODY, headers=headers).status_code == 201
    resp = http.post("/sessions", json=SESSION_BODY, headers=headers)
    assert resp.status_code == 429
    assert int(resp.headers["Retry-After"]) > 0
    assert "limit 5" in _detail(resp)


def test_tokens(http: httpx.Client, helios: HeliosServer) -> None:
    assert http.post("/tokens").status_code == 401
    minted = http.post(
        "/tokens",
        headers={"Reactor-API-Key": "rk_test"},
        json={
            "authorization_details": [
                {
                    "type": "session",
                    "resources": {"models": {"all": True}},
                    "constraints": {"max_sessions": 1},
                }
            ]
        },
    )
    assert minted.status_code == 200
    body = minted.json()
    assert body["jwt"] and body["expires_at"] > time.time()
    headers = {"Authorization": f"Bearer {body['jwt']}"}
    assert http.post("/sessions", json=SESSION_BODY, headers=headers).status_code == 201
    over = http.post("/sessions", json=SESSION_BODY, headers=headers)
    assert over.status_code == 403 and "at most 1" in _detail(over)
    unbound = [(h["method"], h["path"], h["status"]) for h in helios.record()["http"]]
    assert unbound[:2] == [("POST", "/tokens", 401), ("POST", "/tokens", 200)]


def test_cors_preflight(http: httpx.Client) -> None:
    resp = http.options(
        "/sessions",
        headers={
            "Origin": "http://example.test",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,reactor-api-version",
        },
    )
    assert resp.status_code == 200
    assert resp.headers["access-control-allow-origin"] in ("*", "http://example.test")
    assert "authorization" in resp.headers["access-control-allow-headers"].lower()


def test_every_http_request_is_in_the_session_record(http: httpx.Client, helios: HeliosServer) -> None:
    http.post("/start_session")
    http.get("/sessions/local/transport/webrtc/ice_servers")
    http.post("/stop_session")
    (session,) = helios.record()["sessions"]
    assert [(h["method"], h["path"], h["status"]) for h in session["http"]] == [
        ("POST", "/start_session", 200),
        ("GET", "/sessions/local/transport/webrtc/ice_servers", 200),
        ("POST", "/stop_session", 200),
    ]
    assert session["closed"] and session["close_reason"] == "session stopped by the client"

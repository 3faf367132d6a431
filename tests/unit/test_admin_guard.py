"""Admin guard (services/admin_guard.py): admin token, same-origin rule, WebSocket, CORS policy."""

from __future__ import annotations

from dataclasses import replace

import pytest

from mock_server.config import Settings
from mock_server.errors import Forbidden, Unauthorized
from mock_server.services.admin_guard import (
    check_admin_http,
    check_admin_ws,
    cors_applies,
    normalise_origin,
    own_origin,
)

OPEN = Settings()
GUARDED = replace(Settings(), admin_token="admin-secret")
OWN = own_origin("http", "127.0.0.1:8080")


def test_own_origin_and_normalisation() -> None:
    assert OWN == "http://127.0.0.1:8080"
    assert own_origin("ws", "LOCALHOST:80") == "http://localhost"
    assert own_origin("wss", "[::1]:8443") == "https://[::1]:8443"
    assert own_origin("http", None) is None
    assert normalise_origin("HTTPS://Example.test:443") == "https://example.test"
    for bad in ("null", "file://", "http://a:99999", "http://a/b", "ftp://a", "http://u@a"):
        assert normalise_origin(bad) is None, bad


def test_no_origin_clients_are_allowed_without_an_admin_token() -> None:
    check_admin_http({}, OWN, OPEN)  # curl, httpx, the test fixtures
    check_admin_http({"user-agent": "curl/8"}, OWN, OPEN)
    check_admin_http({"Sec-Fetch-Site": "none"}, own_origin("http", "helios-mock:8080"), OPEN)  # typed URL
    check_admin_ws({}, {}, OWN, OPEN)


def test_same_origin_pages_are_allowed() -> None:
    check_admin_http({"Origin": "http://127.0.0.1:8080", "Sec-Fetch-Site": "same-origin"}, OWN, OPEN)
    local = own_origin("http", "localhost")
    check_admin_http({"origin": "http://localhost:80"}, local, OPEN)
    check_admin_ws({"origin": "http://127.0.0.1:8080"}, {}, own_origin("ws", "127.0.0.1:8080"), OPEN)


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.test"},
        {"Origin": "http://127.0.0.1:3000"},  # another port is another origin
        {"Origin": "https://127.0.0.1:8080"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ],
)
def test_cross_origin_browser_requests_are_refused(headers: dict[str, str]) -> None:
    with pytest.raises(Forbidden, match="--admin-token"):
        check_admin_http(headers, OWN, OPEN)
    with pytest.raises(Forbidden):
        check_admin_ws(headers, {}, own_origin("ws", "127.0.0.1:8080"), OPEN)


def test_dns_rebinding_page_is_refused() -> None:
    rebound = own_origin("http", "evil.test:8080")
    headers = {"Origin": "http://evil.test:8080", "Sec-Fetch-Site": "same-origin"}
    with pytest.raises(Forbidden, match="IP address or localhost"):
        check_admin_http(headers, rebound, OPEN)
    with pytest.raises(Forbidden, match="IP address or localhost"):
        check_admin_http({"Sec-Fetch-Site": "same-origin"}, rebound, OPEN)
    check_admin_http({**headers, "X-Helios-Admin-Token": "admin-secret"}, rebound, GUARDED)
    check_admin_http({"Origin": "http://app.localhost:8080"}, own_origin("http", "app.localhost:8080"), OPEN)


def test_admin_token_is_required_when_set() -> None:
    with pytest.raises(Unauthorized, match="need the admin token"):
        check_admin_http({}, OWN, GUARDED)
    with pytest.raises(Unauthorized, match="wrong admin token"):
        check_admin_http({"X-Helios-Admin-Token": "guess"}, OWN, GUARDED)
    with pytest.raises(Unauthorized, match="wrong admin token"):
        check_admin_http({"Authorization": "Bearer test-token"}, OWN, GUARDED)
    check_admin_http({"X-Helios-Admin-Token": "admin-secret"}, OWN, GUARDED)
    check_admin_http({"authorization": "Bearer admin-secret"}, OWN, GUARDED)
    # the token is the authority: a page of another origin holding it may call
    check_admin_http(
        {"Origin": "http://dashboard.test", "x-helios-admin-token": "admin-secret"}, OWN, GUARDED
    )


def test_websocket_admin_token_by_header_or_query() -> None:
    ws_own = own_origin("ws", "127.0.0.1:8080")
    with pytest.raises(Unauthorized):
        check_admin_ws({"Origin": "http://127.0.0.1:8080"}, {}, ws_own, GUARDED)
    with pytest.raises(Unauthorized, match="wrong"):
        check_admin_ws({}, {"admin_token": "nope"}, ws_own, GUARDED)
    check_admin_ws({}, {"admin_token": "admin-secret"}, ws_own, GUARDED)
    check_admin_ws({"X-Helios-Admin-Token": "admin-secret"}, {}, ws_own, GUARDED)


def test_cors_never_applies_to_admin_paths() -> None:
    assert cors_applies("/sessions") and cors_applies("/tokens") and cors_applies("/uploads/x")
    assert cors_applies("/administrator")  # not the admin prefix
    for path in ("/admin", "/admin/record", "/admin/reset", "/admin/sessions/sess_1/live"):
        assert not cors_applies(path), path

"""Client-rule verdicts over HTTP: GET /admin/violations and /admin/sessions/{id}/violations give what
conformance.client_rules.check_record finds in the record, with the rule selection as query parameters."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from conformance.client_rules import RULES, check_record
from conformance.helpers import expect_message
from conformance.server import HeliosServer
from conformance.wire_client import WireClient


@pytest.fixture
def http(helios: HeliosServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=helios.url, headers=helios.admin_headers, timeout=10) as client:
        yield client


def _rule_ids(body: dict) -> list[str]:
    return [v["rule_id"] for v in body["violations"]]


def test_no_session_no_violation(http: httpx.Client) -> None:
    body = http.get("/admin/violations").json()
    assert body["violations"] == [] and body["checked_sessions"] == []
    assert set(body["rules"]) == set(RULES)
    assert http.get("/admin/rules").json() == RULES


async def test_live_violations_match_the_python_engine(helios: HeliosServer, helios_client, http) -> None:
    client: WireClient = await helios_client(wire="v0")
    client.send_command("start")  # start-without-prompt
    client.send_command("pause")  # pause-not-running
    mark = client.now()
    client.send_command("set_prompt", {"prompt": "   "})  # prompt-empty
    await expect_message(client, "command_error", {"command": "set_prompt"}, since=mark)

    body = http.get("/admin/violations", params={"ignore": "ping-missing"}).json()
    python = check_record(helios.record(), ignore=("ping-missing",))
    assert _rule_ids(body) == [v.rule_id for v in python]
    assert _rule_ids(body) == ["start-without-prompt", "pause-not-running", "prompt-empty"]
    first = body["violations"][0]
    assert first["session_id"] == "local" and first["rule"] == RULES["start-without-prompt"]
    assert first["explanation"] == python[0].explanation and first["text"] == str(python[0])
    assert first["entry"]["kind"] == "CommandIn" and first["entry"]["body"]["type"] == "start"
    assert first["entry"]["connection_id"] is not None

    one = http.get("/admin/sessions/local/violations", params={"ignore": ["ping-missing"]}).json()
    assert one["violations"] == body["violations"] and one["checked_sessions"] == ["local"]
    only = http.get("/admin/violations", params={"only": "prompt-empty,pause-not-running"}).json()
    assert _rule_ids(only) == ["pause-not-running", "prompt-empty"]
    assert only["rules"] == ["pause-not-running", "prompt-empty"]
    lenient = http.get("/admin/violations", params=[("ignore", "ping-missing"), ("ignore", "prompt-empty")])
    assert _rule_ids(lenient.json()) == ["start-without-prompt", "pause-not-running"]


def test_http_only_violation_and_after_reset(http: httpx.Client) -> None:
    assert http.post("/start_session", json={}).status_code == 200
    bad = http.post("/sessions/local/uploads", json={"name": "x.png", "size": 0, "mime_type": "image/png"})
    assert 400 <= bad.status_code < 500  # http-error: the client sent something wrong
    found = http.get("/admin/violations").json()["violations"]
    assert [v["rule_id"] for v in found] == ["http-error"]
    assert found[0]["entry"]["kind"] == "POST /sessions/local/uploads"
    assert http.post("/admin/reset").status_code == 200
    assert http.get("/admin/violations").json()["violations"] == []


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"ignore": "no-such-rule"}, "ignore: unknown rule id(s) no-such-rule"),
        ({"only": "ping-missing,bogus"}, "only: unknown rule id(s) bogus"),
        ({"ping_tolerance": "0.5"}, "ping_tolerance must be between 1 and 100"),
        ({"ping_tolerance": "nan"}, "ping_tolerance must be between 1 and 100"),
    ],
)
def test_bad_selection_is_a_400(http: httpx.Client, params: dict[str, str], words: str) -> None:
    resp = http.get("/admin/violations", params=params)
    assert resp.status_code == 400 and words in resp.json()["detail"], resp.text


def test_unknown_session_is_a_404(http: httpx.Client) -> None:
    resp = http.get("/admin/sessions/nope/violations")
    assert resp.status_code == 404 and "unknown session 'nope'" in resp.json()["detail"]


def test_admin_guard_applies(helios: HeliosServer) -> None:
    resp = httpx.get(helios.url + "/admin/violations", headers={"Origin": "https://evil.example"}, timeout=10)
    assert resp.status_code == 403, resp.text

"""End-to-end: scripts/js_connect_timings.py breaks the published JS SDK's connect() -> ready down.

One short round (a fresh mock in a namespace, two connects of @reactor-team/js-sdk 2.9.0 under Node) must
give, for every connect, every SDK timing field, a timeline and an attribution that each add up to the
connect, the server's time for every request and its moments on the client's clock. No speed is asserted.
"""

from __future__ import annotations

import importlib.util
import json
import math
from types import ModuleType

import pytest
from jsclient import REPO, ensure_node_modules
from netns import require_netns

pytestmark = pytest.mark.e2e

CONNECTS = 2
TOLERANCE_MS = 0.01  # rounding of the driver's marks (µs)
Measured = tuple[ModuleType, list[dict[str, float]]]  # the script module, one breakdown per connect


def _script() -> ModuleType:
    path = REPO / "scripts" / "js_connect_timings.py"
    spec = importlib.util.spec_from_file_location("js_connect_timings", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> Measured:
    ensure_node_modules()
    require_netns()
    script = _script()
    out = tmp_path_factory.mktemp("js-connect") / "timings.json"
    script.main(["--rounds", "1", "--connects", str(CONNECTS), "--json", str(out)])
    rounds = json.loads(out.read_text())["rounds"]["this"]
    assert len(rounds) == 1
    return script, rounds[0]


def test_every_connect_has_every_field(measured: Measured) -> None:
    script, connects = measured
    assert len(connects) == CONNECTS
    expected = {*script.SDK_FIELDS, *script.TRANSPORT_FIELDS, "ready", "gathering_wait", "align_uncertainty"}
    expected |= {key for key, _ in script.TIMELINE} | {key for key, _ in script.ATTRIBUTION}
    expected |= set(script.SERVER_MS.values()) | {key for _, key in script.SERVER_EVENTS}
    for connect in connects:
        assert expected <= set(connect), expected - set(connect)
        assert all(math.isfinite(v) for v in connect.values()), connect
        assert connect["sdpPollingAttempts"] >= 1


def test_parts_add_up_to_the_connect(measured: Measured) -> None:
    script, connects = measured
    for c in connects:
        timeline = [c[key] for key, _ in script.TIMELINE]
        assert all(part >= 0 for part in timeline), c
        assert sum(timeline) == pytest.approx(c["ready"], abs=TOLERANCE_MS)
        split = ("http_round_trips", "client_gathering", "poll_waits", "ice_dtls_sctp", "client_other")
        assert sum(c[key] for key in split) == pytest.approx(c["ready"], abs=TOLERANCE_MS)
        assert c["server_handlers"] + c["http_overhead"] == pytest.approx(c["http_round_trips"])
        assert 0 < c["server_handlers"] <= c["http_round_trips"]
        assert sum(c[key] for key in script.SERVER_MS.values()) == pytest.approx(c["server_handlers"])
        assert 0 <= c["gathering_wait"] <= c["offer"]
        assert c["poll_waits"] <= c["answer_polls"]


def test_sdk_timings_agree_with_the_timeline(measured: Measured) -> None:
    """The SDK's own fields are the same moments seen from inside it: each fits the parts around it."""
    _, connects = measured
    for c in connects:
        assert c["totalMs"] <= c["ready"] + TOLERANCE_MS  # the SDK finalises totalMs just before "ready"
        assert c["ready"] - c["totalMs"] < c["to_ready"] + 1.0
        assert c["sessionCreationMs"] <= c["session"] + TOLERANCE_MS
        assert c["sessionCreationMs"] + c["transportConnectingMs"] <= c["totalMs"] + TOLERANCE_MS
        assert c["sdpPollingMs"] <= c["answer_polls"] + TOLERANCE_MS
        assert c["iceNegotiationMs"] <= c["ice_dtls"] + c["to_ready"] + TOLERANCE_MS


def test_server_moments_fall_inside_the_connect(measured: Measured) -> None:
    """Put on the client's clock, the server built the answer before the client had it, and its peer
    connected after that and (within the alignment's uncertainty) no later than "ready"."""
    _, connects = measured
    for c in connects:
        slack = c["align_uncertainty"] + 1.0
        answer_in_hand = c["ready"] - c["ice_dtls"] - c["to_ready"]
        assert c["srv_answer_ready"] <= answer_in_hand + slack
        assert c["srv_answer_ready"] <= c["srv_peer_connected"] <= c["ready"] + slack

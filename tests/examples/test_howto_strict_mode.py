"""How to: fail tests whose client breaks the Helios contract (client conformance rules).

`pytest --helios-strict` checks, after every test that uses the `helios` fixture, what the server recorded
about the test's clients (conformance/client_rules.py: RULES). The `helios_strict` marker does the same for
chosen tests; `helios_lenient` turns it off (or, with rule ids, accepts only those). `assert_no_violations`
checks at any point; `violations` returns the list.
"""

from __future__ import annotations

import pytest

from conformance.client_rules import RULES
from conformance.helpers import assert_no_violations, expect_message, keepalive, violations, wait_for_chunk
from conformance.server import HeliosServer
from conformance.server_suite.support import barrier
from conformance.wire_client import WireClient

pytestmark = pytest.mark.helios_strict  # as if run with --helios-strict, for this module only


async def test_conforming_client(helios: HeliosServer, helios_client) -> None:
    client: WireClient = await helios_client(wire="v0")
    async with keepalive(client):  # raw clients do not ping on their own; real clients do (v0 5 s, v1 10 s)
        client.send_command("set_prompt", {"prompt": "a lantern in the fog"})
        client.send_command("start")
        await wait_for_chunk(client, 1)
    assert_no_violations(helios)


@pytest.mark.helios_lenient("start-without-prompt")  # this refusal is the point of the test
async def test_accepting_one_rule(helios: HeliosServer, helios_client) -> None:
    client: WireClient = await helios_client(wire="v1")
    await client.command("start")
    await expect_message(client, "command_error", {"command": "start"})
    assert [v.rule_id for v in violations(helios)] == ["start-without-prompt"]


@pytest.mark.helios_lenient  # no check at teardown: this test inspects the violations itself
async def test_reading_violations(helios: HeliosServer, helios_client) -> None:
    client: WireClient = await helios_client(wire="v0")
    client.send_command("pause")
    client.send_command("teleport", {"to": "mars"})
    await expect_message(client, "command_error", {"command": "pause"})
    await barrier(client)  # a round trip: the server has handled "teleport" before we read the record
    found = violations(helios)
    assert [v.rule_id for v in found] == ["pause-not-running", "command-unknown"]
    assert "pause" in found[0].explanation and found[0].entry["connection_id"] == 1001
    print("\n".join(str(v) for v in found))  # "[pause-not-running] pause sent while … (session local, …)"
    with pytest.raises(AssertionError, match="command-unknown"):
        assert_no_violations(helios, ignore=["pause-not-running"])
    assert set(RULES) >= {v.rule_id for v in found}

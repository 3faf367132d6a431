"""How to: run the same tests against a server you started yourself (or any Reactor-compatible server).

    helios-mock serve --port 8080 --speed 20 --resolution 160x96 --ice-addresses 127.0.0.1   # terminal 1
    pytest --helios-url http://127.0.0.1:8080 tests/examples/test_howto_external_server.py

Without --helios-url (or HELIOS_MOCK_URL) this module is skipped. The fixtures are the same; `helios`
still resets the server before each test, so do not point it at a server other people are using.
"""

from __future__ import annotations

import os

import pytest

from conformance.helpers import expect_message, wait_for_chunk
from conformance.server import HeliosServer
from conformance.wire_client import WireClient


@pytest.fixture(autouse=True)
def _needs_external_server(request: pytest.FixtureRequest) -> None:
    if not (request.config.getoption("--helios-url") or os.environ.get("HELIOS_MOCK_URL")):
        pytest.skip("needs --helios-url (or HELIOS_MOCK_URL): an already running server")


async def test_external_server(helios: HeliosServer, helios_client) -> None:
    assert helios.process is None  # not started by the plugin
    client: WireClient = await helios_client(wire="v1")
    assert (await client.command("set_prompt", {"prompt": "a lighthouse"})).type == "prompt_accepted"
    await client.command("start")
    await wait_for_chunk(client, 0)
    await expect_message(client, "state", {"current_chunk": 1})
    assert helios.record()["sessions"][0]["chunks_generated"] >= 1

"""pytest plugin (entry point `helios`): a Helios mock server for your tests.

Fixtures:
  helios_server  session-scoped: started once on a free loopback port with a fast chunk clock
                 (or the external server given with --helios-url / HELIOS_MOCK_URL).
  helios         function-scoped: the same server, reset before the test (sessions and records cleared).
  helios_client  function-scoped factory of raw wire clients (`await helios_client(wire="v1")`),
                 closed after the test.
Options: --helios-speed (env HELIOS_MOCK_TEST_SPEED), --helios-url (HELIOS_MOCK_URL),
         --helios-resolution, --helios-strict.
Markers: helios_strict (check this test's client violations even without --helios-strict),
         helios_lenient (no check; with rule ids, e.g. helios_lenient("ping-missing"), ignore only those).
Helpers (waiting for chunks and messages, markers from frames, assert_no_violations): conformance.helpers.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import urlparse

import pytest

from .server import HeliosServer


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("helios", "Helios mock server")
    group.addoption(
        "--helios-speed",
        type=float,
        default=None,
        help="chunk clock speed factor of the started mock (default 20; env HELIOS_MOCK_TEST_SPEED)",
    )
    group.addoption(
        "--helios-url",
        default=None,
        help="use an already running server at this base URL instead (env HELIOS_MOCK_URL)",
    )
    group.addoption(
        "--helios-resolution", default=None, help="native frame size of the started mock (160x96)"
    )
    group.addoption(
        "--helios-strict",
        action="store_true",
        default=False,
        help="fail a test when the server recorded any client protocol violation during it",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "helios_lenient(*rule_ids): do not fail this test on client violations in strict mode "
        "(with rule ids: only on those)",
    )
    config.addinivalue_line(
        "markers", "helios_strict: fail this test on client violations even without --helios-strict"
    )


@pytest.fixture(scope="session")
def helios_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HeliosServer]:
    """The mock server for the whole test session."""
    url = request.config.getoption("--helios-url") or os.environ.get("HELIOS_MOCK_URL")
    if url:
        if (urlparse(url).hostname or "") in ("localhost", "127.0.0.1", "::1"):
            from mock_server.transport.ice import restrict_host_addresses

            # a server on this machine (started with --ice-addresses 127.0.0.1): meet it on loopback only
            restrict_host_addresses(["127.0.0.1"])
        yield HeliosServer(url=url.rstrip("/"), token=os.environ.get("HELIOS_MOCK_TOKEN", "test-token"))
        return
    speed = request.config.getoption("--helios-speed") or float(
        os.environ.get("HELIOS_MOCK_TEST_SPEED", "20")
    )
    resolution = request.config.getoption("--helios-resolution") or "160x96"
    from mock_server.transport.ice import restrict_host_addresses

    restrict_host_addresses(["127.0.0.1"])  # this process's raw clients and the server meet on loopback
    server = HeliosServer.start(
        speed=speed, resolution=resolution, log_path=tmp_path_factory.mktemp("helios") / "server.log"
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def helios(helios_server: HeliosServer, request: pytest.FixtureRequest) -> Iterator[HeliosServer]:
    """The session's server, reset before this test; in --helios-strict mode, violations fail the test."""
    helios_server.reset()
    yield helios_server
    strict = request.config.getoption("--helios-strict") or request.node.get_closest_marker("helios_strict")
    lenient = request.node.get_closest_marker("helios_lenient")
    if not strict or (lenient is not None and not lenient.args):
        return
    from .client_rules import check_record

    violations = check_record(helios_server.record(), ignore=lenient.args if lenient is not None else ())
    if violations:
        pytest.fail("client violated the Helios contract:\n" + "\n".join(f"  {v}" for v in violations))


@pytest.fixture
async def helios_client(helios: HeliosServer) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    """Factory: `client = await helios_client(wire="v0"|"v1", mode="local"|"production")`, connected."""
    from .wire_client import WireClient

    clients: list[WireClient] = []

    async def make(wire: str = "v0", mode: str = "local", connect: bool = True, **kwargs: Any) -> WireClient:
        client = WireClient(helios.url, wire=wire, mode=mode, token=helios.token, **kwargs)
        clients.append(client)
        if connect:
            await client.connect()
        return client

    yield make
    for client in clients:
        await client.close()

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

Works with pytest-asyncio in strict and auto mode (the async fixture is a ``pytest_asyncio.fixture``).
Hypothesis: use the session-scoped ``helios_server`` with ``helios_server.reset()`` at the start of each
example and ``async with helios_server.client(...)`` (tests/examples/test_howto_hypothesis.py).
The plugin changes nothing process-wide: its raw clients gather ICE candidates on loopback only for their own
connections (``mock_server.transport.ice.host_addresses``); the server runs in a child process.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from .server import HeliosServer

try:
    import pytest_asyncio
except ImportError:  # the plugin still loads; helios_client explains what to install
    pytest_asyncio = None  # type: ignore[assignment]

ClientFactory = Callable[..., Awaitable[Any]]


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
        yield HeliosServer(url=url.rstrip("/"), token=os.environ.get("HELIOS_MOCK_TOKEN", "test-token"))
        return
    speed = request.config.getoption("--helios-speed") or float(
        os.environ.get("HELIOS_MOCK_TEST_SPEED", "20")
    )
    resolution = request.config.getoption("--helios-resolution") or "160x96"
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


async def _client_factory(helios: HeliosServer) -> AsyncIterator[ClientFactory]:
    from .wire_client import WireClient

    clients: list[WireClient] = []

    async def make(wire: str = "v0", mode: str = "local", connect: bool = True, **kwargs: Any) -> WireClient:
        if connect:
            client = await helios.connect_client(wire=wire, mode=mode, **kwargs)
        else:  # connect it yourself (its ICE candidates then follow aioice's own choice)
            client = WireClient(helios.url, wire=wire, mode=mode, token=helios.token, **kwargs)
        clients.append(client)
        return client

    try:
        yield make
    finally:
        for client in clients:
            await client.close()


if pytest_asyncio is not None:

    @pytest_asyncio.fixture
    async def helios_client(helios: HeliosServer) -> AsyncIterator[ClientFactory]:
        """Factory: `client = await helios_client(wire="v0"|"v1", mode="local"|"production")`, connected."""
        async for make in _client_factory(helios):
            yield make

else:

    @pytest.fixture
    def helios_client(helios: HeliosServer) -> None:
        """Needs pytest-asyncio (not installed)."""
        pytest.fail("helios_client needs pytest-asyncio: pip install 'helios-mock[pytest]'", pytrace=False)

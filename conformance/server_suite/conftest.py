"""Fixtures of the server conformance suite.

The server is the ``helios`` plugin's ``helios_server``: the URL given with ``--helios-url`` (env
``HELIOS_MOCK_URL``, bearer token from ``HELIOS_MOCK_TOKEN``), or a helios-mock started on loopback.
Environment knobs for external servers: ``HELIOS_SUITE_MODE`` (``local`` | ``production``: the route family
the WebRTC tests use; default local when ``GET /session`` answers), ``HELIOS_SUITE_SPEED`` (chunk clock speed
of an external mock started with ``--speed``), ``HELIOS_SUITE_RESOLUTION`` (its ``--resolution``),
``HELIOS_SUITE_MOCK`` (``1`` | ``0``: override the helios-mock detection, which probes ``GET /admin/record``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
import pytest_asyncio

from conformance.server import HeliosServer
from conformance.wire_client import WireClient
from mock_server.wire import reactor_wire_pb as pb

from .support import Stream, Target, describe_target

ClientFactory = Callable[..., Awaitable[WireClient]]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "mock_only: needs helios-mock's marker band, admin endpoints or [mock] decisions"
    )


@pytest.fixture(scope="session")
def target(helios_server: HeliosServer) -> Target:
    """The server under test, probed once."""
    return describe_target(helios_server)


@pytest.fixture(autouse=True)
def _mock_only(request: pytest.FixtureRequest, target: Target) -> Iterator[None]:
    if request.node.get_closest_marker("mock_only") and not target.is_mock:
        pytest.skip("needs helios-mock (marker band / admin endpoints / a [mock] decision)")
    yield


@pytest.fixture
def needs_local(target: Target) -> Target:
    if not target.local:
        pytest.skip("the server does not serve local-mode routes")
    return target


@pytest.fixture
def needs_production(target: Target) -> Target:
    if not target.production:
        pytest.skip("the server does not serve production routes")
    return target


@pytest_asyncio.fixture
async def open_client(target: Target) -> AsyncIterator[ClientFactory]:
    """Factory of connected raw clients: ``client = await open_client(wire="v1")`` starts a session;
    ``await open_client(join=client)`` adds a (v1) connection to the same session. Sessions end after
    the test. v1 clients send ResumeTrack at connect, as the Python SDK does, so video flows."""
    clients: list[tuple[WireClient, bool]] = []

    async def make(wire: str = "v1", *, join: WireClient | None = None) -> WireClient:
        client = WireClient(target.url, wire=wire, mode=target.mode, token=target.token)
        clients.append((client, join is None))
        if join is not None:
            client.session_id = join.session_id
        await client.connect(start=join is None)
        if wire == "v1":
            client.notify_control("resume_track", pb.ResumeTrack(name="main_video"))
        return client

    yield make
    for client, owner in reversed(clients):
        await client.close(stop_session=owner)


@pytest_asyncio.fixture
async def session(open_client: ClientFactory) -> tuple[WireClient, Stream]:
    """One v1 client on a fresh session, with an ordered reader positioned after the greeting state."""
    client = await open_client("v1")
    stream = Stream(client)
    greeting = await stream.model_message()
    assert (greeting.scope, greeting.type) == ("application", "state"), greeting
    return client, stream

"""mock_server.transport.ice: the loopback-only ICE choice stays inside its scope (no process-wide leak)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import aioice.ice
import pytest

from mock_server.transport import ice
from mock_server.transport.ice import host_addresses, is_patched, restrict_host_addresses


@pytest.fixture(autouse=True)
def no_process_wide_choice() -> Iterator[None]:
    """In-process apps of other tests (create_app with ice_addresses) may have set a process-wide choice."""
    before = ice._process_wide
    restrict_host_addresses(None)
    yield
    restrict_host_addresses(before)


def _gathered() -> list[str]:
    return aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True)


async def test_scope_applies_to_its_context_only() -> None:
    original = aioice.ice.get_host_addresses
    outside_seen: list[list[str]] = []
    inside_scope = asyncio.Event()
    may_leave = asyncio.Event()

    async def other_task() -> None:  # started before the scope: aioice's own choice throughout
        await inside_scope.wait()
        outside_seen.append(_gathered())
        may_leave.set()

    task = asyncio.create_task(other_task())
    with host_addresses(["127.0.0.1", "::1"]):
        assert _gathered() == ["127.0.0.1", "::1"]
        inside_scope.set()
        await may_leave.wait()
        assert await asyncio.create_task(_async_gathered()) == [
            "127.0.0.1",
            "::1",
        ]  # created inside: inherits
    await task
    assert "127.0.0.1" not in outside_seen[0]
    assert not is_patched() and aioice.ice.get_host_addresses is original


async def _async_gathered() -> list[str]:
    return _gathered()


def test_process_wide_choice_and_restore() -> None:
    restrict_host_addresses(["127.0.0.1"])
    try:
        assert is_patched() and _gathered() == ["127.0.0.1"]
        with host_addresses(["::1"]):
            assert _gathered() == ["::1"]  # a scope wins over the process-wide choice
        assert _gathered() == ["127.0.0.1"]
    finally:
        restrict_host_addresses(None)
    assert not is_patched()


def test_a_typo_is_refused_before_any_peer_uses_it() -> None:
    with pytest.raises(ValueError):
        restrict_host_addresses(["127.0.0.300"])
    with pytest.raises(ValueError), host_addresses(["eth0"]):
        pass
    assert not is_patched()

"""Which local addresses ICE gathers host candidates on.

aioice gathers every non-loopback address of the machine. The mock can be told to use an explicit list
instead (e.g. only 127.0.0.1 for an all-loopback test run, or only a test namespace's veth address), so its
answers carry only candidates the client can reach.

Two scopes, so a choice never leaks into code that did not ask for it:

* ``restrict_host_addresses(addresses)`` for a whole process that is ours (the mock server process, a load
  agent); ``restrict_host_addresses(None)`` undoes it;
* ``with host_addresses(addresses):`` for the peers created and gathered inside the block (and the tasks
  it starts), e.g. the pytest plugin's raw clients; every other peer of the process keeps aioice's choice.

aioice offers no per-connection hook, so its module-level ``get_host_addresses`` is replaced by a wrapper
while (and only while) either scope is active; outside them the wrapper is removed again.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import aioice.ice

_original = aioice.ice.get_host_addresses
_process_wide: tuple[str, ...] | None = None
_scoped: ContextVar[tuple[str, ...] | None] = ContextVar("helios_ice_host_addresses", default=None)
_active_scopes = 0


def _validated(addresses: Iterable[str]) -> tuple[str, ...]:
    chosen = tuple(addresses)
    for address in chosen:
        ipaddress.ip_address(address)  # ValueError on a typo, before any session uses it
    return chosen


def _sync_patch() -> None:
    needed = _process_wide is not None or _active_scopes > 0
    aioice.ice.get_host_addresses = _gather if needed else _original


def restrict_host_addresses(addresses: Iterable[str] | None) -> None:
    """This whole process gathers host candidates only on `addresses` (None restores aioice's own choice)."""
    global _process_wide
    _process_wide = _validated(addresses) if addresses is not None else None
    _sync_patch()


@contextmanager
def host_addresses(addresses: Iterable[str]) -> Iterator[None]:
    """Peers that gather inside this block (this context and tasks it creates) use only `addresses`."""
    global _active_scopes
    token = _scoped.set(_validated(addresses))
    _active_scopes += 1
    _sync_patch()
    try:
        yield
    finally:
        _active_scopes -= 1
        _scoped.reset(token)
        _sync_patch()


def is_patched() -> bool:
    """True while aioice's address gathering is wrapped (a scope or a process-wide choice is active)."""
    return aioice.ice.get_host_addresses is not _original


def _gather(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    chosen = _scoped.get()
    if chosen is None:
        chosen = _process_wide
    if chosen is None:
        return list(_original(use_ipv4=use_ipv4, use_ipv6=use_ipv6))
    return [
        a
        for a in chosen
        if (use_ipv4 and ipaddress.ip_address(a).version == 4)
        or (use_ipv6 and ipaddress.ip_address(a).version == 6)
    ]

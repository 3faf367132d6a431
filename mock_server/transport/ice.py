"""Which local addresses ICE gathers host candidates on.

aioice gathers every non-loopback address of the machine. The mock can be told to use an explicit list
instead (e.g. only 127.0.0.1 for an all-loopback test run, or only a test namespace's veth address), so its
answers carry only candidates the client can reach.
"""

from __future__ import annotations

import ipaddress

import aioice.ice

_original = aioice.ice.get_host_addresses
_override: list[str] | None = None


def restrict_host_addresses(addresses: list[str] | None) -> None:
    """Gather host candidates only on `addresses` (None restores aioice's own choice)."""
    global _override
    if addresses is not None:
        for address in addresses:
            ipaddress.ip_address(address)  # ValueError on a typo, before any session uses it
    _override = list(addresses) if addresses is not None else None
    aioice.ice.get_host_addresses = _patched if addresses is not None else _original


def _patched(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    assert _override is not None
    return [
        a
        for a in _override
        if (use_ipv4 and ipaddress.ip_address(a).version == 4)
        or (use_ipv6 and ipaddress.ip_address(a).version == 6)
    ]

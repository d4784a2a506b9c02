"""Which local addresses bots offer as ICE host candidates.

aioice gathers on every interface except loopback. Bots that talk to a server on
this machine gather on 127.0.0.1 only, so a test mesh never sends a packet off
the loopback interface (Chromium joins it with --allow-loopback-in-peer-connection;
Firefox gathers no loopback candidates, so its tests give the bots a veth address).
"""

from __future__ import annotations

import ipaddress

from yarl import URL

from . import hooks


def use_host_addresses(addresses: list[str] | None) -> None:
    """Gather host candidates on `addresses` only; None restores aioice's default."""
    hooks.gather_on(addresses)


def is_loopback_url(server: str) -> bool:
    """True when `server` points at this machine's loopback interface."""
    host = URL(server).host or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

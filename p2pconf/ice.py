"""ICE server lists for clients, with coturn-style time-limited TURN credentials."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any


def turn_credentials(secret: str, user: str, ttl_s: int, now: float | None = None) -> tuple[str, str]:
    """TURN REST credentials as coturn's `use-auth-secret` checks them.

    username = "<expiry unix time>:<user>", password = base64(HMAC-SHA1(secret, username)).
    """
    expiry = int(now if now is not None else time.time()) + ttl_s
    username = f"{expiry}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def ice_servers_for(
    peer_id: str,
    *,
    stun_urls: list[str],
    turn_urls: list[str],
    turn_secret: str | None,
    turn_ttl_s: int,
) -> list[dict[str, Any]]:
    """The `iceServers` list (W3C RTCIceServer dicts) for one client.

    Empty when nothing is configured: never a public STUN server by default.
    """
    servers: list[dict[str, Any]] = []
    if stun_urls:
        servers.append({"urls": list(stun_urls)})
    if turn_urls and turn_secret:
        username, credential = turn_credentials(turn_secret, peer_id, turn_ttl_s)
        servers.append({"urls": list(turn_urls), "username": username, "credential": credential})
    return servers

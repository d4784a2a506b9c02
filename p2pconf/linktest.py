""""Verbindung testen": a page measures its round trip and uplink to the server (docs/api.md).

`GET /api/linktest` answers at once (the page times the round trip); `POST /api/linktest`
reads a body of up to MAX_UPLOAD bytes and says how many bytes arrived over how many
seconds. What the line carries is worked out in the page (web/static/js/linktest.js) from
the measured table that ships with it (web/static/linktable.json); the server carries no
media for it either.

Open to signed-in users and guests, and, on a guest link's page before joining, to whoever
holds a valid link (header X-Invite-Token). Each address may upload UPLOADS_BURST bodies at
once and one every 1 / UPLOADS_PER_S seconds after that: a test is a few uploads, not a way
to keep the server's downlink busy.
"""

from __future__ import annotations

import time

from aiohttp import web

from .appkeys import IDENTITY, LINKTEST, STORE
from .middleware import api_error
from .ratelimit import TokenBucket

MAX_UPLOAD = 4 * 1024 * 1024
UPLOADS_PER_S = 0.5
UPLOADS_BURST = 12
MAX_ADDRESSES = 10_000  # buckets kept; beyond that the refilled ones are forgotten
NO_STORE = {"Cache-Control": "no-store"}


class UploadLimits:
    """A token bucket of uploads per client address."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.buckets: dict[str, TokenBucket] = {}

    def take(self, address: str) -> bool:
        if len(self.buckets) >= MAX_ADDRESSES:
            self.sweep()
        bucket = self.buckets.setdefault(address, TokenBucket(UPLOADS_PER_S, UPLOADS_BURST, self.clock))
        return bucket.take()

    def sweep(self) -> int:
        """Forget the addresses whose buckets have refilled; returns how many are left."""
        for address in [a for a, bucket in self.buckets.items() if bucket.full()]:
            del self.buckets[address]
        return len(self.buckets)


def routes(app: web.Application) -> None:
    app[LINKTEST] = UploadLimits()
    app.router.add_get("/api/linktest", ping)
    app.router.add_post("/api/linktest", upload)


async def _check_caller(request: web.Request) -> None:
    identity = request[IDENTITY]
    if identity.is_user or identity.is_guest:
        return
    token = request.headers.get("X-Invite-Token", "")
    if 0 < len(token) <= 64 and (invite := await request.app[STORE].invite_by_token(token)) is not None \
            and invite.state() == "valid":
        return
    raise api_error(401, "not-signed-in", "sign in, or open a valid invitation link, to test your connection")


async def ping(request: web.Request) -> web.Response:
    await _check_caller(request)
    return web.json_response({"ok": True}, headers=NO_STORE)


async def upload(request: web.Request) -> web.Response:
    await _check_caller(request)
    if request.content_length is not None and request.content_length > MAX_UPLOAD:
        raise api_error(413, "too-large", f"a test upload is at most {MAX_UPLOAD} bytes")
    if not request.app[LINKTEST].take(request.remote or "?"):
        raise api_error(429, "too-many-tests", "too many connection tests from your address; try again in a minute")
    received, first, last = 0, None, None
    async for chunk in request.content.iter_any():
        last = time.monotonic()
        first = first or last
        received += len(chunk)
        if received > MAX_UPLOAD:
            raise api_error(413, "too-large", f"a test upload is at most {MAX_UPLOAD} bytes")
    seconds = round(last - first, 4) if first is not None else 0.0
    return web.json_response({"bytes": received, "seconds": seconds}, headers=NO_STORE)

"""Request plumbing shared by pages, API and WebSocket: proxies, origins, identity, CSRF,
security headers, errors."""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import json
import secrets
from typing import Any

from aiohttp import web
from yarl import URL

from . import audit
from .appkeys import CONFIG, IDENTITY, NEW_CSRF_COOKIE, STORE, VIA_PROXY
from .auth import CSRF_COOKIE, CSRF_HEADER, SESSION_COOKIE, Identity, Overloaded, same_token
from .store import StoreError

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def api_error(status: int, code: str, message: str, **extra: Any) -> web.HTTPException:
    """An HTTP error with the JSON body every API error has: {"code", "message"}."""
    sizes = {"max_size": 0, "actual_size": 0} if status == 413 else {}  # aiohttp's 413 requires them; our text wins
    return _BY_STATUS[status](text=json.dumps({"code": code, "message": message, **extra}), content_type="application/json",
                              **sizes)


_BY_STATUS = {
    400: web.HTTPBadRequest, 401: web.HTTPUnauthorized, 403: web.HTTPForbidden, 404: web.HTTPNotFound,
    409: web.HTTPConflict, 410: web.HTTPGone, 413: web.HTTPRequestEntityTooLarge, 429: web.HTTPTooManyRequests,
    503: web.HTTPServiceUnavailable,
}


def busy_error(retry_after_s: int, message: str) -> web.HTTPException:
    """503 with Retry-After: the server is momentarily too busy for this request."""
    error = api_error(503, "busy", message, retry_after_s=retry_after_s)
    error.headers["Retry-After"] = str(retry_after_s)
    return error


class FairStart:
    """Lets at most `per_iteration` HTTP requests start per event-loop iteration.

    The loop that parses HTTP also relays every call's signaling. A burst of requests
    arriving together (a hundred sign-in pages at once) would otherwise run all its
    handlers in one iteration, and a relayed offer waits behind all of them; started a
    few at a time, the same work spreads over many short iterations and a signal is
    never more than a few handlers behind. Throughput is unchanged: the work is the same.
    """

    def __init__(self, per_iteration: int = 4):
        self.per_iteration = per_iteration
        self._waiting: collections.deque[asyncio.Future] = collections.deque()
        self._started_this_iteration = 0
        self._admitting = False

    async def wait_turn(self) -> None:
        if not self._waiting and self._started_this_iteration < self.per_iteration:
            self._started_this_iteration += 1
            self._schedule()
            return
        turn = asyncio.get_running_loop().create_future()
        self._waiting.append(turn)
        self._schedule()
        await turn

    def _schedule(self) -> None:
        if not self._admitting:
            self._admitting = True
            asyncio.get_running_loop().call_soon(self._next_iteration)

    def _next_iteration(self) -> None:
        """Once per iteration while there is anything to do: admit the next few."""
        self._admitting = False
        self._started_this_iteration = 0
        while self._waiting and self._started_this_iteration < self.per_iteration:
            turn = self._waiting.popleft()
            if not turn.done():  # a cancelled request gave its turn away
                turn.set_result(None)
                self._started_this_iteration += 1
        if self._waiting or self._started_this_iteration:
            self._schedule()


def fair_start_middleware(fair: FairStart):
    """The outermost middleware: every request (pages, API, WebSocket upgrades) waits its turn."""
    @web.middleware
    async def fair_start(request: web.Request, handler):
        await fair.wait_turn()
        return await handler(request)
    return fair_start


@web.middleware
async def busy_middleware(request: web.Request, handler):
    """A full password pool or a locked database is a 503 with Retry-After, never a 500."""
    try:
        return await handler(request)
    except Overloaded as exc:
        audit.event("sign-in-overloaded", addr=request.remote)
        raise busy_error(exc.retry_after_s, "too many sign-ins at once; try again in a moment") from None
    except StoreError as exc:
        if exc.code != "busy":
            raise
        raise busy_error(1, str(exc)) from None


@web.middleware
async def forwarded_middleware(request: web.Request, handler):
    """Believe X-Forwarded-For/-Proto/-Host only from configured trusted proxies."""
    networks = request.app[CONFIG].trusted_networks()
    if networks and request.remote and _in_networks(request.remote, networks):
        changes: dict[str, Any] = {}
        if proto := request.headers.get("X-Forwarded-Proto"):
            changes["scheme"] = proto.split(",")[0].strip()
        if host := request.headers.get("X-Forwarded-Host"):
            changes["host"] = host.split(",")[0].strip()
        if fwd_for := request.headers.get("X-Forwarded-For"):
            changes["remote"] = fwd_for.split(",")[0].strip()
        if changes:
            request = request.clone(**changes)
            request[VIA_PROXY] = True
    return await handler(request)


def _in_networks(address: str, networks) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def site_origin(request: web.Request) -> str:
    """The origin users see: --public-url, else scheme://host of this request."""
    public = request.app[CONFIG].public_url
    url = URL(public) if public else URL.build(scheme=request.scheme, authority=request.host)
    return str(url.origin())


def host_trusted(request: web.Request) -> bool:
    """Without --public-url, only a Host that DNS rebinding cannot forge is ours:
    an IP address, `localhost`, the name the server was told to listen on, or the
    host a trusted proxy forwards (the proxy's own configuration picks the names).
    (A rebinding page's Origin and Host both name the attacker's host.)"""
    config = request.app[CONFIG]
    if config.public_url or request.get(VIA_PROXY):
        return True
    host = (URL.build(scheme="http", authority=request.host).host or "").strip("[]").lower()
    if host in ("localhost", config.host.lower()):
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def origin_allowed(request: web.Request) -> bool:
    """A browser request must come from our own origin: --public-url's, or else
    the request's own scheme and host when that host is trusted (host_trusted).

    Clients that send no Origin (bots, command-line tools) are not browsers and
    cannot be used for cross-site requests, so they are let through.
    """
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    try:
        allowed = origin.rstrip("/") == site_origin(request) and host_trusted(request)
    except ValueError:  # a Host header that is no host
        allowed = False
    if not allowed:
        audit.event("bad-origin", origin=origin, host=request.host, path=request.path, addr=request.remote)
    return allowed


def is_secure(request: web.Request) -> bool:
    return request.scheme == "https" or (request.app[CONFIG].public_url or "").startswith("https:")


async def identity_of(request: web.Request) -> Identity:
    """The Identity behind the request's session cookie, as the store has it now."""
    token = request.cookies.get(SESSION_COOKIE)
    return Identity.from_session(await request.app[STORE].session(token) if token else None)


@web.middleware
async def identity_middleware(request: web.Request, handler):
    """Put the Identity behind the session cookie (or an empty one) in request[IDENTITY]."""
    request[IDENTITY] = await identity_of(request)
    return await handler(request)


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: every answer (pages, API, static files, errors) gets these.

    No inline script or style; frames only from --frame-ancestors; no Referer (a guest
    link carries its token in the URL); camera, microphone and screen for this origin only.
    """
    ancestors = " ".join(request.app[CONFIG].frame_ancestors) or "'none'"
    try:
        ws_origin = "ws" + site_origin(request)[4:]  # http(s)://host -> ws(s)://host
    except ValueError:
        ws_origin = ""
    headers = response.headers
    headers.setdefault("Content-Security-Policy", (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        f"media-src 'self' blob:; connect-src 'self' {ws_origin}; object-src 'none'; base-uri 'none'; "
        f"form-action 'self'; frame-ancestors {ancestors}"))
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "no-referrer")
    headers.setdefault("Permissions-Policy", "camera=(self), microphone=(self), display-capture=(self)")
    if not request.app[CONFIG].frame_ancestors:
        headers.setdefault("X-Frame-Options", "DENY")


def expected_csrf(request: web.Request) -> str | None:
    """The session's CSRF token, or before sign-in the double-submit cookie."""
    return request[IDENTITY].csrf or request.cookies.get(CSRF_COOKIE)


@web.middleware
async def csrf_middleware(request: web.Request, handler):
    """Every state-changing request needs our Origin (when sent, and not "null") and the CSRF token."""
    if request.method in SAFE_METHODS or request.path == "/ws":
        return await handler(request)
    # Under Referrer-Policy: no-referrer, browsers send `Origin: null` with their own forms;
    # the CSRF token below is what stands then (a page elsewhere cannot know it).
    if request.headers.get("Origin") != "null" and not origin_allowed(request):
        raise api_error(403, "bad-origin", "cross-origin request refused")
    given = request.headers.get(CSRF_HEADER)
    if given is None and request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        given = (await request.post()).get("csrf")
    if not same_token(given, expected_csrf(request)):
        raise api_error(403, "csrf", "missing or wrong CSRF token; reload the page")
    return await handler(request)


def form_csrf(request: web.Request) -> str:
    """The token a form must send back; sets the double-submit cookie when there is no session."""
    if request[IDENTITY].csrf:
        return request[IDENTITY].csrf
    token = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
    request[NEW_CSRF_COOKIE] = token
    return token


@web.middleware
async def csrf_cookie_middleware(request: web.Request, handler):
    """Attach a double-submit cookie that a page handed out via form_csrf()."""
    response = await handler(request)
    if token := request.get(NEW_CSRF_COOKIE):
        response.set_cookie(CSRF_COOKIE, token, httponly=True, samesite="Lax", secure=is_secure(request), path="/")
    return response


def set_session_cookie(request: web.Request, response: web.StreamResponse, token: str) -> None:
    config = request.app[CONFIG]
    response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="Lax", secure=is_secure(request), path="/",
                        max_age=int(config.session_ttl_s))


def require_user(request: web.Request):
    """The signed-in user, or 401 (nobody) / 403 (a guest)."""
    identity = request[IDENTITY]
    if identity.is_user:
        return identity.user
    if identity.is_guest:
        raise api_error(403, "guest-forbidden", "guests can only take part in their own room")
    raise api_error(401, "not-signed-in", "sign in first")

"""HTML pages: sign-in, sign-out, the SSO hand-off, guest links, and the module's page."""

from __future__ import annotations

import functools
import re
import time
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from jinja2.utils import htmlsafe_json_dumps
from markupsafe import Markup

from . import __version__, audit, protocol
from .appkeys import ACCESS, CONFIG, HASHES, IDENTITY, METRICS, STORE, THROTTLE
from .auth import SESSION_COOKIE, Overloaded, SsoError, attempt_sign_in, read_sso_token
from .metrics import PROCESS
from .middleware import form_csrf, set_session_cookie
from .i18n import TEXTS, pick_language
from .protocol import ProtocolError
from .store import StoreError

TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{32}$")  # secrets.token_urlsafe(24)


def routes(app: web.Application) -> None:
    app.router.add_get("/", index)
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login_submit)
    app.router.add_post("/logout", logout)
    app.router.add_get("/sso", sso)
    app.router.add_get("/j/{token}", guest_page)
    app.router.add_post("/j/{token}", guest_submit)
    app.router.add_get("/r/{room}", room_page)


def texts(request: web.Request) -> dict[str, Any]:
    """The UI's words in the language the browser prefers (German unless English)."""
    return TEXTS[pick_language(request.headers.get("Accept-Language"))]


@functools.cache
def texts_json(lang: str) -> Markup:
    """The page scripts' word table as JSON safe inside <script>: made once per language."""
    return htmlsafe_json_dumps({k: v for k, v in TEXTS[lang].items() if isinstance(v, str)})


def render(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    words = texts(request)
    context.setdefault("t", lambda key, **kw: words[key].format(**kw) if kw else words[key])
    context.setdefault("texts_json", texts_json("en" if words is TEXTS["en"] else "de"))
    context.setdefault("lang", "en" if words is TEXTS["en"] else "de")
    context.setdefault("csrf", form_csrf(request))
    context.setdefault("identity", request[IDENTITY])
    context.setdefault("version", __version__)
    return aiohttp_jinja2.render_template(template, request, context, status=status)


def redirect(location: str) -> web.Response:
    """A 302 response that cookies can still be set on (HTTPFound would have to be raised)."""
    return web.Response(status=302, headers={"Location": location})


def wants_json(request: web.Request) -> bool:
    return "application/json" in request.headers.get("Accept", "")


async def index(request: web.Request) -> web.StreamResponse:
    identity = request[IDENTITY]
    if identity.is_guest:
        raise web.HTTPFound(f"/r/{identity.guest_room.id}")
    if not identity.is_user:
        raise web.HTTPFound("/login")
    return render(request, "index.html")


async def login_page(request: web.Request) -> web.Response:
    return render(request, "login.html", error=None)


async def login_submit(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    login, password = str(form.get("login", "")).strip(), str(form.get("password", ""))
    user, wait = await sign_in_checked(request, login, password)
    if wait:
        response = render(request, "login.html", status=429,
                          error=texts(request)["throttled"].format(minutes=int(wait / 60) + 1))
        response.headers["Retry-After"] = str(int(wait) + 1)
        return response
    if user is None:
        return render(request, "login.html", status=401, error=texts(request)["bad_credentials"])
    return await _start_session(request, user=user)


async def sign_in_checked(request: web.Request, login: str, password: str):
    """attempt_sign_in for this request, with the security log's line for each outcome."""
    app, address = request.app, request.remote or "?"
    try:
        user, wait = await attempt_sign_in(app[STORE], app[THROTTLE], app[HASHES], login[:128], password, address)
    except Overloaded:
        app[METRICS].sign_ins.labels(PROCESS, "busy").inc()
        raise
    app[METRICS].sign_ins.labels(PROCESS, "throttled" if wait else "failed" if user is None else "ok").inc()
    if wait:
        audit.event("sign-in-throttled", login=login[:64], addr=address, retry_after_s=int(wait) + 1)
    elif user is None:
        audit.event("sign-in-failed", login=login[:64], addr=address)
    else:
        audit.event("sign-in", login=user.login, addr=address)
    return user, wait


async def _start_session(request: web.Request, target: str = "/", **who: Any) -> web.StreamResponse:
    config = request.app[CONFIG]
    token, _ = await request.app[STORE].create_session(ttl_s=config.session_ttl_s, **who)
    response = redirect(target)
    set_session_cookie(request, response, token)
    return response


async def end_session(request: web.Request) -> None:
    """Sign out: the session ends, and with it (now) this person's open sockets on it."""
    if token := request.cookies.get(SESSION_COOKIE):
        await request.app[STORE].delete_session(token)
        await request.app[ACCESS].check()


async def logout(request: web.Request) -> web.StreamResponse:
    await end_session(request)
    response = redirect("/login")
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


async def sso(request: web.Request) -> web.StreamResponse:
    """The host platform's top-bar icon links here with a short-lived signed token."""
    secret = request.app[CONFIG].sso_secret
    if not secret:
        return message_page(request, 404, "sso-off")
    token = request.query.get("token", "")
    try:
        claims = read_sso_token(token, secret)
        if not await request.app[STORE].use_sso_token(token, claims["expires_at"]):
            raise SsoError("sso-replayed", "this sign-in link was used already; open the module from the platform "
                                           "again")
    except SsoError as exc:
        audit.event("sso-refused", code=exc.code, why=str(exc), addr=request.remote)
        return message_page(request, 401, exc.code, key="sso-failed", message=str(exc))
    store = request.app[STORE]
    user = await store.user_by_login(claims["login"])
    if user is None:
        try:
            user = await store.add_user(claims["login"], claims["name"], claims["email"])
        except StoreError as exc:  # the same new user signing in twice at once: the other request made them
            if exc.code != "user-exists":
                raise
            user = await store.user_by_login(claims["login"])
    if not user.active:
        audit.event("sso-refused", code="user-disabled", login=user.login, addr=request.remote)
        return message_page(request, 403, "user-disabled")
    if (user.name, user.email) != (claims["name"], claims["email"] or user.email):
        await store.update_user(user.id, name=claims["name"], email=claims["email"])
    audit.event("sign-in", login=user.login, addr=request.remote, via="sso")
    return await _start_session(request, user=user)


# -- guest links ---------------------------------------------------------------------------

INVITE_STATUS = {"malformed": 404, "unknown": 404, "expired": 410, "revoked": 410}


def message_page(request: web.Request, status: int, code: str, key: str | None = None, **fmt: str) -> web.Response:
    """A page that says what went wrong, in words; `code` is also in the page for programs."""
    title, message = texts(request)[key or code]
    return render(request, "message.html", status=status, title=title, message=message.format(**fmt), code=code)


async def _invite_or_problem(request: web.Request):
    token = request.match_info["token"]
    if not TOKEN_RE.match(token):
        return None, "malformed"
    invite = await request.app[STORE].invite_by_token(token)
    if invite is None:
        return None, "unknown"
    state = invite.state()
    return (invite, None) if state == "valid" else (None, state)


def _problem(request: web.Request, problem: str) -> web.Response:
    code, status = f"invite-{problem}", INVITE_STATUS[problem]
    if wants_json(request):
        return web.json_response({"code": code, "message": TEXTS["en"][code][1]}, status=status)
    return message_page(request, status, code)


async def guest_page(request: web.Request) -> web.Response:
    invite, problem = await _invite_or_problem(request)
    if problem:
        return _problem(request, problem)
    return render(request, "guest.html", room=invite.room, error=None, name="")


async def guest_submit(request: web.Request) -> web.StreamResponse:
    invite, problem = await _invite_or_problem(request)
    if problem:
        return _problem(request, problem)
    form = await request.post()
    try:
        name = protocol.clean_name(str(form.get("name", "")))
    except ProtocolError as exc:
        if wants_json(request):
            return web.json_response({"code": "bad-name", "message": exc.detail}, status=400)
        return render(request, "guest.html", status=400, room=invite.room, name=str(form.get("name", ""))[:80],
                      error=texts(request)["bad_name"])
    config = request.app[CONFIG]
    ttl = min(config.session_ttl_s, invite.expires_at - time.time())
    token, _ = await request.app[STORE].create_session(ttl_s=ttl, guest_room=invite.room, guest_name=name)
    target = f"/r/{invite.room.id}"
    response: web.StreamResponse
    if wants_json(request):
        response = web.json_response({"room": {"id": invite.room.id, "name": invite.room.name}, "name": name})
    else:
        response = redirect(target)
    set_session_cookie(request, response, token)
    return response


async def room_page(request: web.Request) -> web.Response:
    identity, room_id = request[IDENTITY], request.match_info["room"]
    room = await request.app[STORE].room(room_id)
    allowed = room is not None and (
        (identity.is_guest and identity.guest_room.id == room_id)
        or (identity.is_user and await request.app[STORE].is_member(room_id, identity.user.id))
    )
    if not allowed:
        return message_page(request, 403, "room-forbidden")
    return render(request, "room.html", room=room)

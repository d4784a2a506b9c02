"""The JSON API under /api (docs/api.md). Every error is {"code", "message"} with an HTTP status."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from . import audit, protocol
from .appkeys import ACCESS, CALLS, CONFIG, HUB, IDENTITY, METRICS, STORE
from .metrics import PROCESS
from .auth import SESSION_COOKIE
from .middleware import api_error, require_user, set_session_cookie, site_origin
from .pages import end_session, sign_in_checked
from .store import BadCursor, Invite, StoreError, User
from .store.search import MAX_QUERY_CHARS, PAGE_SIZE

MAX_BODY = 16 * 1024
MAX_INVITEES = 5  # a mesh of six: the caller and five others


def routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/me", me)
    r.add_post("/api/session", sign_in)
    r.add_delete("/api/session", sign_out)
    r.add_get("/api/users", directory)
    r.add_get("/api/contacts", contacts)
    r.add_put("/api/favorites/{login}", add_favorite)
    r.add_delete("/api/favorites/{login}", remove_favorite)
    r.add_post("/api/calls", start_call)
    r.add_get("/api/calls/{id}", get_call)
    r.add_post("/api/calls/{id}/invite", invite_more)
    r.add_post("/api/calls/{id}/accept", accept_call)
    r.add_post("/api/calls/{id}/decline", decline_call)
    r.add_post("/api/rooms", create_guest_room)
    r.add_get("/api/invites", list_invites)
    r.add_delete("/api/invites/{id}", revoke_invite)


async def body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object, or 400/413 with a clear code."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise api_error(413, "too-large", f"request bodies are limited to {MAX_BODY} bytes")
    raw = await request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise api_error(413, "too-large", f"request bodies are limited to {MAX_BODY} bytes")
    try:
        data = protocol.loads(raw or b"{}")
    except ValueError as exc:
        raise api_error(400, "bad-json", f"the body is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise api_error(400, "bad-json", "the body must be a JSON object")
    return data


def invite_view(request: web.Request, invite: Invite) -> dict[str, Any]:
    return {"id": invite.id, "room": {"id": invite.room.id, "name": invite.room.name},
            "expires_at": invite.expires_at, "state": invite.state()}


# -- session ---------------------------------------------------------------------------------


async def me(request: web.Request) -> web.Response:
    identity = request[IDENTITY]
    if identity.is_user:
        u = identity.user
        return web.json_response({"kind": "user", "login": u.login, "name": u.name, "email": u.email,
                                  "csrf": identity.csrf})
    if identity.is_guest:
        return web.json_response({"kind": "guest", "name": identity.guest_name, "csrf": identity.csrf,
                                  "room": {"id": identity.guest_room.id, "name": identity.guest_room.name}})
    raise api_error(401, "not-signed-in", "sign in first")


async def sign_in(request: web.Request) -> web.Response:
    data = await body(request)
    login, password = str(data.get("login", "")).strip(), str(data.get("password", ""))
    store = request.app[STORE]
    user, wait = await sign_in_checked(request, login, password)
    if wait:
        error = api_error(429, "too-many-attempts", "too many failed sign-ins; try again later",
                          retry_after_s=int(wait) + 1)
        error.headers["Retry-After"] = str(int(wait) + 1)
        raise error
    if user is None:
        raise api_error(401, "bad-credentials", "wrong login or password")
    token, csrf = await store.create_session(ttl_s=request.app[CONFIG].session_ttl_s, user=user)
    response = web.json_response({"login": user.login, "name": user.name, "csrf": csrf})
    set_session_cookie(request, response, token)
    return response


async def sign_out(request: web.Request) -> web.Response:
    await end_session(request)
    response = web.json_response({"ok": True})
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


# -- directory -----------------------------------------------------------------------------------


async def _listed(request: web.Request, me_: User, users: list[User]) -> list[dict[str, Any]]:
    """People as the start page lists them: name, presence, whether it is me or a favourite."""
    hub, favorites = request.app[HUB], {u.id for u in await request.app[STORE].favorites(me_.id)}
    return [{**u.public(), "presence": hub.presence(u.login), "me": u.id == me_.id, "favorite": u.id in favorites}
            for u in users]


async def directory(request: web.Request) -> web.Response:
    """One page (at most 50) of the people matching `q`, and the cursor of the next page."""
    me_ = require_user(request)
    query = request.query.get("q", "")
    if len(query) > MAX_QUERY_CHARS:
        raise api_error(400, "bad-request", f"q: at most {MAX_QUERY_CHARS} characters")
    limit = request.query.get("limit", str(PAGE_SIZE))
    if not (limit.isascii() and limit.isdigit() and 1 <= int(limit) <= PAGE_SIZE):
        raise api_error(400, "bad-request", f"limit: 1 to {PAGE_SIZE}")
    with request.app[METRICS].search_seconds.labels(PROCESS).time():
        users, cursor = await _search(request, query, limit)
    return web.json_response({"users": await _listed(request, me_, users), "next": cursor})


async def _search(request: web.Request, query: str, limit: str) -> tuple[list[User], str | None]:
    try:
        return await request.app[STORE].search_users(query, after=request.query.get("cursor") or None,
                                                     limit=int(limit))
    except BadCursor:
        raise api_error(400, "bad-cursor", "cursor: not from this directory; search again") from None


async def contacts(request: web.Request) -> web.Response:
    """The people the start page shows before any search: favourites, then recent calls."""
    me_ = require_user(request)
    store = request.app[STORE]
    return web.json_response({"favorites": await _listed(request, me_, await store.favorites(me_.id)),
                              "recent": await _listed(request, me_, await store.recent_contacts(me_.id))})


async def _set_favorite(request: web.Request, favorite: bool) -> web.Response:
    me_ = require_user(request)
    store = request.app[STORE]
    other = await store.user_by_login(request.match_info["login"])
    if other is None or not other.active:
        raise api_error(404, "no-such-user", "no such active user")
    try:
        await store.set_favorite(me_.id, other.id, favorite)
    except StoreError as exc:
        if exc.code != "too-many-favorites":
            raise
        raise api_error(409, exc.code, str(exc)) from None
    return web.json_response({"login": other.login, "favorite": favorite})


async def add_favorite(request: web.Request) -> web.Response:
    return await _set_favorite(request, True)


async def remove_favorite(request: web.Request) -> web.Response:
    return await _set_favorite(request, False)


# -- calls with internal users ---------------------------------------------------------------------


async def _invitees(request: web.Request, logins: Any, caller: User) -> list[User]:
    if not isinstance(logins, list) or not logins or not all(isinstance(l, str) for l in logins):
        raise api_error(400, "bad-request", "invitees must be a non-empty list of logins")
    if len(set(logins)) > MAX_INVITEES:
        raise api_error(400, "too-many-invitees", f"a call takes at most {MAX_INVITEES} invitees")
    users = []
    for login in dict.fromkeys(logins):
        user = await request.app[STORE].user_by_login(login)
        if user is None or not user.active:
            raise api_error(404, "no-such-user", f"no active user {login!r}")
        if user.login != caller.login:
            users.append(user)
    if not users:
        raise api_error(400, "bad-request", "invite someone other than yourself")
    return users


async def start_call(request: web.Request) -> web.Response:
    caller = require_user(request)
    data = await body(request)
    mode = data.get("mode", "audio+video")
    if mode not in protocol.MODES:
        raise api_error(400, "bad-request", f"mode must be one of {', '.join(protocol.MODES)}")
    invitees = await _invitees(request, data.get("invitees"), caller)
    title = data.get("name") or f"Anruf von {caller.name}"[:protocol.MAX_ROOM_CHARS]
    try:
        title = protocol.clean_room(title)
    except protocol.ProtocolError as exc:
        raise api_error(400, "bad-request", f"name: {exc.detail}") from None
    calls = request.app[CALLS]
    if not await calls.may_start(caller.login):
        audit.event("call-rate-limited", login=caller.login, addr=request.remote)
        raise api_error(429, "too-many-calls", f"at most {calls.calls_per_minute:g} calls a minute")
    room = await request.app[STORE].create_room(title, "call", mode=mode, created_by=caller.id,
                                                members=[u.id for u in invitees])
    await request.app[STORE].record_call(caller.id, [u.id for u in invitees])
    return web.json_response(await calls.start(room, caller, invitees), status=201)


async def _call_for(request: web.Request):
    call = await request.app[CALLS].get(request.match_info["id"])
    if call is None:
        raise api_error(404, "no-such-call", "no such call (it may have ended with a server restart)")
    return call


async def get_call(request: web.Request) -> web.Response:
    user = require_user(request)
    call = await _call_for(request)
    if not await request.app[STORE].is_member(call.id, user.id):
        raise api_error(404, "no-such-call", "no such call")
    return web.json_response(call.describe())


async def invite_more(request: web.Request) -> web.Response:
    user = require_user(request)
    call = await _call_for(request)
    store = request.app[STORE]
    if not await store.is_member(call.id, user.id):
        raise api_error(404, "no-such-call", "no such call")
    invitees = await _invitees(request, (await body(request)).get("invitees"), user)
    await store.add_members(call.id, [u.id for u in invitees])
    await store.record_call(user.id, [u.id for u in invitees])
    return web.json_response(await request.app[CALLS].ring(call.id, invitees))


async def _answer(request: web.Request, accepted: bool) -> web.Response:
    user = require_user(request)
    call = await _call_for(request)
    status = await request.app[CALLS].answer(call.id, user.login, accepted)
    if status is None:
        raise api_error(409, "not-ringing", "this call is not ringing for you")
    return web.json_response({"call": call.id, "room": call.id, "mode": call.room["mode"], "status": status})


async def accept_call(request: web.Request) -> web.Response:
    return await _answer(request, True)


async def decline_call(request: web.Request) -> web.Response:
    return await _answer(request, False)


# -- guest rooms and invites ------------------------------------------------------------------------


async def create_guest_room(request: web.Request) -> web.Response:
    user = require_user(request)
    data = await body(request)
    name = data.get("name")
    try:
        name = protocol.clean_room(name)
    except protocol.ProtocolError as exc:
        raise api_error(400, "bad-request", f"name: {exc.detail}") from None
    lobby = data.get("lobby", False)
    if not isinstance(lobby, bool):
        raise api_error(400, "bad-request", "lobby: true or false")
    store, config = request.app[STORE], request.app[CONFIG]
    room = await store.create_room(name, "guest", created_by=user.id, lobby=lobby)
    token, invite = await store.create_invite(room, config.invite_ttl_s, created_by=user.id)
    link = f"{site_origin(request)}/j/{token}"
    return web.json_response({"room": {"id": room.id, "name": room.name, "lobby": room.lobby},
                              "invite": {**invite_view(request, invite),
                              "link": link}}, status=201)


async def list_invites(request: web.Request) -> web.Response:
    user = require_user(request)
    invites = await request.app[STORE].invites(created_by=user.id)
    return web.json_response({"invites": [invite_view(request, i) for i in invites]})


async def revoke_invite(request: web.Request) -> web.Response:
    user = require_user(request)
    store = request.app[STORE]
    invite_id = request.match_info["id"]
    invite = await store.invite_by_id(int(invite_id)) if invite_id.isascii() and invite_id.isdigit() \
        and len(invite_id) <= 18 else None
    if invite is None or invite.created_by != user.id:
        raise api_error(404, "no-such-invite", "no such invite of yours")
    await store.revoke_invite(invite.id)
    audit.event("invite-revoked", invite=invite.id, by=user.login, addr=request.remote)
    await request.app[ACCESS].check()  # its guests leave the call now, not at the next poll
    return web.json_response(invite_view(request, await store.invite_by_id(invite.id)))

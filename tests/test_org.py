"""The organisation side: sign-in, CSRF, throttling, SSO, directory, ringing, guest links."""

from __future__ import annotations

import time

import jwt
import pytest

from p2pconf.appkeys import CALLS, STORE
from p2pconf.auth import CSRF_COOKIE
from p2pconf.server import create_app

from .conftest import both_stores
from .org import PASSWORD, SSO_SECRET, Browser, add_user, next_of, signed_in, status_of

# -- sign-in, CSRF, throttling ---------------------------------------------------------------


@both_stores
async def test_sign_in_sets_an_httponly_lax_cookie_and_sign_out_ends_it(org):
    b = org.browser()
    reply = await b.sign_in("anna")
    cookie = reply.cookies["p2pconf_session"]
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and not cookie["secure"]
    status, me = await b.json("GET", "/api/me")
    assert status == 200 and me["login"] == "anna" and me["name"] == "Anna Berg"
    stored = await org.app[STORE].fetchall("SELECT id_hash FROM sessions")
    assert cookie.value not in [row[0] for row in stored]  # only a hash is stored
    status, _ = await b.json("DELETE", "/api/session")
    assert status == 200
    assert (await b.json("GET", "/api/me"))[0] == 401


async def test_wrong_password_is_refused_and_passwords_are_argon2(org):
    b = org.browser()
    assert (await b.sign_in("anna", "wrong password")).status == 401
    assert (await b.sign_in("nobody", "whatever12")).status == 401
    row = await org.app[STORE].fetchone("SELECT password_hash FROM users WHERE login='anna'")
    assert row[0].startswith("$argon2id$")


async def test_state_changes_without_csrf_token_are_refused(org):
    b = await signed_in(org, "anna")
    status, err = await b.json("POST", "/api/rooms", {"name": "Kunde"}, csrf=False)
    assert (status, err["code"]) == (403, "csrf")
    b.csrf = "forged-token"
    status, err = await b.json("POST", "/api/rooms", {"name": "Kunde"})
    assert (status, err["code"]) == (403, "csrf")
    assert await org.app[STORE].invites() == []  # nothing was created
    # a sign-in form posted without the double-submit token is refused too
    other = org.browser()
    async with other.http.post(other.base + "/login", data={"login": "anna", "password": "x"}) as reply:
        assert reply.status == 403


async def test_cross_origin_post_is_refused(org):
    b = await signed_in(org, "anna")
    async with b.http.post(b.base + "/api/rooms", json={"name": "x"},
                           headers={"Origin": "https://evil.example", "X-CSRF-Token": b.csrf}) as reply:
        assert reply.status == 403 and (await reply.json())["code"] == "bad-origin"


async def test_repeated_failures_throttle_sign_in(aiohttp_server, org_config):
    org_config.trusted_proxies = ["127.0.0.0/8"]  # X-Forwarded-For tells the people's addresses apart
    server = await aiohttp_server(create_app(org_config))
    for login in ("anna", "bert"):
        await add_user(server.app, login, login.title())
    here = Browser(str(server.make_url("/")), headers={"X-Forwarded-For": "198.51.100.7"})
    elsewhere = Browser(str(server.make_url("/")), headers={"X-Forwarded-For": "203.0.113.9"})
    try:
        for _ in range(3):  # org_config: 3 failures per login and per address
            assert (await here.sign_in("anna", "wrong password")).status == 401
        reply = await here.sign_in("anna")  # the right password, but too soon
        assert reply.status == 429 and int(reply.headers["Retry-After"]) > 0
        here.csrf = here.cookie(CSRF_COOKIE)  # the JSON route, with its CSRF header: throttled too
        status, err = await here.json("POST", "/api/session", {"login": "anna", "password": PASSWORD})
        assert (status, err["code"]) == (429, "too-many-attempts") and err["retry_after_s"] > 0
        assert (await elsewhere.sign_in("anna")).status == 429  # anna's login is locked from anywhere
        assert (await here.sign_in("bert")).status == 429  # and this address for anyone
        assert (await elsewhere.sign_in("bert")).status == 302  # another user from elsewhere is unaffected
    finally:
        await here.close()
        await elsewhere.close()


# -- SSO -------------------------------------------------------------------------------------------


def sso_token(secret: str = SSO_SECRET, lifetime: int = 60, age: int = 0, **claims) -> str:
    now = int(time.time()) - age
    payload = {"sub": "dora", "name": "Dora Evers", "email": "dora@example.org", "iat": now, "exp": now + lifetime}
    return jwt.encode({**payload, **claims}, secret, algorithm="HS256")


async def test_sso_creates_an_unknown_user_and_signs_in(org):
    b = org.browser()
    async with b.http.get(b.base + "/sso", params={"token": sso_token()}, allow_redirects=False) as reply:
        assert reply.status == 302
    status, me = await b.json("GET", "/api/me")
    assert status == 200 and (me["login"], me["name"], me["email"]) == ("dora", "Dora Evers", "dora@example.org")
    assert (await org.app[STORE].user_by_login("dora")).has_password is False


@pytest.mark.parametrize("token, code", [
    (lambda: sso_token(age=120), "sso-expired"),
    (lambda: sso_token(secret="another-secret-another-secret-123"), "sso-invalid"),
    (lambda: sso_token(lifetime=3600), "sso-invalid"),
    (lambda: "not.a.jwt", "sso-invalid"),
])
async def test_bad_sso_tokens_are_refused_and_create_nobody(org, token, code):
    b = org.browser()
    async with b.http.get(b.base + "/sso", params={"token": token()}, allow_redirects=False) as reply:
        assert reply.status == 401
        assert f'data-code="{code}"' in await reply.text()
    assert await org.app[STORE].user_by_login("dora") is None
    assert (await b.json("GET", "/api/me"))[0] == 401


# -- directory and presence ----------------------------------------------------------------------------


async def test_directory_lists_users_with_presence_and_search(org):
    anna, bert = await signed_in(org, "anna"), await signed_in(org, "bert")
    ws = await bert.ws()
    status, listing = await anna.json("GET", "/api/users")
    assert status == 200
    presence = {u["login"]: u["presence"] for u in listing["users"]}
    assert presence == {"anna": "offline", "bert": "online", "carla": "offline"}
    status, found = await anna.json("GET", "/api/users?q=KRAUS")
    assert [u["login"] for u in found["users"]] == ["bert"]
    await ws.close()


async def test_directory_is_hidden_from_guests_and_strangers(org):
    anna = await signed_in(org, "anna")
    _, made = await anna.json("POST", "/api/rooms", {"name": "Kunde"})
    guest = org.browser()
    await guest.http.get(made["invite"]["link"])
    async with guest.http.post(made["invite"]["link"], data={"name": "Gast", "csrf": guest.cookie("p2pconf_csrf")},
                               allow_redirects=False) as reply:
        assert reply.status == 302
    status, err = await guest.json("GET", "/api/users", csrf=False)
    assert (status, err["code"]) == (403, "guest-forbidden")
    assert (await org.browser().json("GET", "/api/users"))[0] == 401


# -- ringing -----------------------------------------------------------------------------------------------


async def test_ring_accept_and_decline(org):
    anna, bert, carla = await signed_in(org, "anna"), await signed_in(org, "bert"), await signed_in(org, "carla")
    anna_ws, bert_ws, carla_ws = await anna.ws(), await bert.ws(), await carla.ws()
    status, call = await anna.json("POST", "/api/calls", {"invitees": ["bert", "carla"], "mode": "audio-only"})
    assert status == 201 and call["mode"] == "audio-only"
    ring = await next_of(bert_ws, "ring")
    assert ring["from"] == {"login": "anna", "name": "Anna Berg"} and ring["mode"] == "audio-only"
    await next_of(carla_ws, "ring")
    status, answer = await bert.json("POST", f"/api/calls/{call['id']}/accept")
    assert status == 200 and answer["status"] == "accepted"
    await status_of(anna_ws, "bert", "accepted")
    status, _ = await carla.json("POST", f"/api/calls/{call['id']}/decline")
    await status_of(anna_ws, "carla", "declined")
    status, state = await anna.json("GET", f"/api/calls/{call['id']}")
    assert {i["login"]: i["status"] for i in state["invitees"]} == {"bert": "accepted", "carla": "declined"}
    # bert joins the call room under his own name, audio-only as the call says
    await bert_ws.send_json({"type": "join", "room": call["room"]["id"], "name": "Fake Name",
                             "media": {"mode": "audio+video"}})
    joined = await next_of(bert_ws, "joined")
    assert joined["mode"] == "audio-only" and joined["title"] == call["room"]["name"]
    # carla declined but is a member; dora is not: a room that is not yours stays closed
    for ws in (anna_ws, bert_ws, carla_ws):
        await ws.close()


async def test_ring_busy_and_missed(org):
    anna, bert, carla = await signed_in(org, "anna"), await signed_in(org, "bert"), await signed_in(org, "carla")
    anna_ws, bert_ws = await anna.ws(), await bert.ws()
    # bert is in a call already
    _, first = await carla.json("POST", "/api/calls", {"invitees": ["bert"]})
    await next_of(bert_ws, "ring")
    await bert.json("POST", f"/api/calls/{first['id']}/accept")
    await bert_ws.send_json({"type": "join", "room": first["room"]["id"], "name": "x"})
    await next_of(bert_ws, "joined")
    status, call = await anna.json("POST", "/api/calls", {"invitees": ["bert", "carla"]})
    assert {i["login"]: i["status"] for i in call["invitees"]} == {"bert": "busy", "carla": "ringing"}
    # carla has no page open: nobody answers, the ring is missed after ring_timeout_s (0.6 s)
    await status_of(anna_ws, "carla", "missed")
    status, err = await carla.json("POST", f"/api/calls/{call['id']}/accept")
    assert (status, err["code"]) == (409, "not-ringing")
    await anna_ws.close(), await bert_ws.close()


async def test_a_page_opened_while_ringing_still_rings_and_members_invite_more(org):
    org.app[CALLS].ring_timeout_s = 5
    anna, bert, carla = await signed_in(org, "anna"), await signed_in(org, "bert"), await signed_in(org, "carla")
    _, call = await anna.json("POST", "/api/calls", {"invitees": ["bert"]})
    bert_ws, carla_ws = await bert.ws(), await carla.ws()  # opened after the call started
    assert (await next_of(bert_ws, "ring"))["call"] == call["id"]
    status, call = await bert.json("POST", f"/api/calls/{call['id']}/invite", {"invitees": ["carla"]})
    assert status == 200 and {i["login"] for i in call["invitees"]} == {"bert", "carla"}
    assert (await next_of(carla_ws, "ring"))["from"]["login"] == "anna"
    # someone outside the call can neither see it nor invite into it
    dora = org.browser()
    await add_user(org.app, "dora", "Dora Evers")
    await dora.sign_in("dora")
    assert (await dora.json("POST", f"/api/calls/{call['id']}/invite", {"invitees": ["anna"]}))[0] == 404
    assert (await dora.json("GET", f"/api/calls/{call['id']}"))[0] == 404
    await bert_ws.close(), await carla_ws.close()


async def test_json_sign_in_and_cookie_is_secure_behind_an_https_proxy(aiohttp_server, org_config):
    org_config.trusted_proxies = ["127.0.0.0/8"]
    server = await aiohttp_server(create_app(org_config))
    await add_user(server.app, "anna", "Anna Berg")
    b = Browser(str(server.make_url("/")))
    try:
        https = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "conf.example.org",
                 "Origin": "https://conf.example.org"}
        async with b.http.get(b.base + "/login", headers=https) as page:
            csrf = page.cookies["p2pconf_csrf"]
            assert csrf["secure"] and csrf["httponly"]
        async with b.http.post(b.base + "/api/session", json={"login": "anna", "password": PASSWORD},
                               headers={**https, "X-CSRF-Token": csrf.value,
                                        # the jar keeps Secure cookies for https; this test speaks http
                                        "Cookie": f"p2pconf_csrf={csrf.value}"}) as reply:
            assert reply.status == 200, await reply.text()
            session = reply.cookies["p2pconf_session"]
            assert session["secure"] and session["httponly"] and session["samesite"] == "Lax"
    finally:
        await b.close()


async def test_disabled_users_lose_their_sessions_and_cannot_come_back_by_sso(org):
    anna = await signed_in(org, "anna")
    await org.app[STORE].disable_user("anna")
    assert (await anna.json("GET", "/api/me"))[0] == 401
    assert (await org.browser().sign_in("anna")).status == 401
    token = sso_token(sub="anna", name="Anna Berg")
    async with anna.http.get(anna.base + "/sso", params={"token": token}, allow_redirects=False) as reply:
        assert reply.status == 403
    status, listing = await (await signed_in(org, "bert")).json("GET", "/api/users")
    assert "anna" not in {u["login"] for u in listing["users"]}

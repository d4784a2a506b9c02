"""Guest links, room access over the WebSocket, escaping, and data that survives a restart."""

from __future__ import annotations

import time

import aiohttp

import pytest

from p2pconf.appkeys import STORE
from p2pconf.protocol import CLOSE_REVOKED
from p2pconf.auth import CSRF_COOKIE
from p2pconf.bots.bot import Bot, BotOptions
from p2pconf.bots.client import ServerError
from p2pconf.config import Config
from p2pconf.server import create_app
from p2pconf.store import MIGRATIONS

from .conftest import both_stores, wait_until
from .org import Browser, add_user, next_of, signed_in


async def make_link(org, login: str = "anna", room: str = "Kunde Meier") -> tuple[Browser, dict]:
    owner = await signed_in(org, login)
    status, made = await owner.json("POST", "/api/rooms", {"name": room})
    assert status == 201
    return owner, made


async def enter(org, link: str, name: str) -> tuple[Browser, int, str]:
    guest = org.browser()
    async with guest.http.get(link) as page:
        assert page.status == 200
        assert "Anzeigename" in await page.text()
    async with guest.http.post(link, data={"name": name, "csrf": guest.cookie(CSRF_COOKIE) or ""},
                               allow_redirects=False) as reply:
        return guest, reply.status, await reply.text()


async def test_guest_link_has_128_plus_random_bits_and_a_7_day_expiry(org):
    _, made = await make_link(org)
    token = made["invite"]["link"].rsplit("/j/", 1)[1]
    assert len(token) >= 22  # 24 random bytes, url-safe base64: 192 bits
    assert 7 * 86400 - 60 < made["invite"]["expires_at"] - time.time() <= 7 * 86400
    assert made["invite"]["state"] == "valid"


async def test_guest_enters_with_a_name_and_only_their_room(org):
    _, made = await make_link(org)
    guest, status, _ = await enter(org, made["invite"]["link"], "  Frau   Meier ")
    assert status == 302
    status, me = await guest.json("GET", "/api/me")
    assert me["kind"] == "guest" and me["name"] == "Frau Meier" and me["room"]["id"] == made["room"]["id"]
    ws = await guest.ws()
    await ws.send_json({"type": "join", "room": made["room"]["id"], "name": "ignored"})
    joined = await next_of(ws, "joined")
    assert joined["title"] == "Kunde Meier"
    # a guest can open no other room, no directory, no calls
    _, other = await make_link(org, "bert", "Anderer Raum")
    ws2 = await guest.ws()
    await ws2.send_json({"type": "join", "room": other["room"]["id"], "name": "x"})
    assert (await next_of(ws2, "error"))["code"] == "forbidden"
    guest.csrf = me["csrf"]
    assert (await guest.json("POST", "/api/calls", {"invitees": ["anna"]}))[0] == 403
    assert (await guest.json("POST", "/api/rooms", {"name": "mine"}))[0] == 403
    await ws.close(), await ws2.close()


async def test_nobody_enters_a_room_that_is_not_theirs(org):
    anna, made = await make_link(org)
    stranger = org.browser()
    ws = await stranger.ws()
    await ws.send_json({"type": "join", "room": made["room"]["id"], "name": "Intruder"})
    assert (await next_of(ws, "error"))["code"] == "forbidden"
    bert = await signed_in(org, "bert")
    bws = await bert.ws()
    await bws.send_json({"type": "join", "room": made["room"]["id"], "name": "Bert"})
    assert (await next_of(bws, "error"))["code"] == "forbidden"
    async with bert.http.get(bert.base + f"/r/{made['room']['id']}") as page:
        assert page.status == 403
    await ws.close(), await bws.close()


@pytest.mark.parametrize("name", ["", "   ", "x" * 41, "bad\u0007bell"])
async def test_bad_display_names_are_refused_and_create_no_session(org, name):
    _, made = await make_link(org)
    guest, status, text = await enter(org, made["invite"]["link"], name)
    assert status == 400 and "1 bis 40 Zeichen" in text
    assert (await guest.json("GET", "/api/me"))[0] == 401


async def test_hostile_display_name_is_text_everywhere(org):
    _, made = await make_link(org)
    hostile = '<img src=x onerror="alert(1)">'
    guest, status, _ = await enter(org, made["invite"]["link"], hostile)
    assert status == 302
    async with guest.http.get(guest.base + f"/r/{made['room']['id']}") as page:
        html = await page.text()
    assert hostile not in html and "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in html
    ws = await guest.ws()
    await ws.send_json({"type": "join", "room": made["room"]["id"], "name": "x"})
    await next_of(ws, "joined")
    anna = await signed_in(org, "anna")
    aws = await anna.ws()
    await aws.send_json({"type": "join", "room": made["room"]["id"], "name": "x"})
    joined = await next_of(aws, "joined")
    assert joined["peers"][0]["name"] == hostile  # delivered verbatim, as data; pages insert it as text
    await ws.close(), await aws.close()


async def test_expired_revoked_and_malformed_links_say_which(org):
    owner, made = await make_link(org)
    link = made["invite"]["link"]
    # revoked by its creator
    status, revoked = await owner.json("DELETE", f"/api/invites/{made['invite']['id']}")
    assert status == 200 and revoked["state"] == "revoked"
    guest, status, text = await enter_expect_problem(org, link)
    assert status == 410 and "zurückgezogen" in text and 'data-code="invite-revoked"' in text
    # expired
    store = org.app[STORE]
    room = await store.room(made["room"]["id"])
    token, _ = await store.create_invite(room, ttl_s=-1)
    _, status, text = await enter_expect_problem(org, f"{owner.base}/j/{token}")
    assert status == 410 and 'data-code="invite-expired"' in text
    # malformed and unknown
    _, status, text = await enter_expect_problem(org, f"{owner.base}/j/short")
    assert status == 404 and 'data-code="invite-malformed"' in text
    _, status, text = await enter_expect_problem(org, f"{owner.base}/j/{'A' * 32}")
    assert status == 404 and 'data-code="invite-unknown"' in text
    # and nothing else changed: no guest sessions, the room still there
    (n,) = await store.fetchone("SELECT COUNT(*) FROM sessions WHERE guest_room_id IS NOT NULL")
    assert n == 0 and await store.room(room.id) is not None


async def enter_expect_problem(org, link: str):
    guest = org.browser()
    async with guest.http.get(link) as page:
        return guest, page.status, await page.text()


async def test_only_the_creator_revokes_and_revoking_signs_guests_out(org):
    owner, made = await make_link(org)
    guest, status, _ = await enter(org, made["invite"]["link"], "Gast")
    assert status == 302
    bert = await signed_in(org, "bert")
    assert (await bert.json("DELETE", f"/api/invites/{made['invite']['id']}"))[0] == 404
    assert (await guest.json("GET", "/api/me"))[0] == 200
    await owner.json("DELETE", f"/api/invites/{made['invite']['id']}")
    assert (await guest.json("GET", "/api/me"))[0] == 401


async def test_guest_room_keeps_the_six_person_cap(org):
    _, made = await make_link(org)
    sockets = []
    for i in range(7):
        guest, status, _ = await enter(org, made["invite"]["link"], f"Gast {i}")
        ws = await guest.ws()
        await ws.send_json({"type": "join", "room": made["room"]["id"], "name": "x"})
        sockets.append(ws)
    assert (await next_of(sockets[6], "error"))["code"] == "room-full"
    for ws in sockets:
        await ws.close()


async def test_users_rooms_and_invites_survive_a_restart(aiohttp_server, tmp_path):
    config = Config(data_dir=tmp_path / "data")
    first = await aiohttp_server(create_app(config))
    await add_user(first.app, "anna", "Anna Berg")
    b = Browser(str(first.make_url("/")))
    assert (await b.sign_in("anna")).status == 302
    _, made = await b.json("POST", "/api/rooms", {"name": "Bleibt"})
    await b.close()
    await first.close()

    second = await aiohttp_server(create_app(config))
    again = Browser(str(second.make_url("/")))
    try:
        assert (await again.sign_in("anna")).status == 302  # the user, with her password
        _, invites = await again.json("GET", "/api/invites")
        assert [(i["room"]["name"], i["state"]) for i in invites["invites"]] == [("Bleibt", "valid")]
        link = str(second.make_url("/j/" + made["invite"]["link"].rsplit("/j/", 1)[1]))
        async with again.http.get(link) as page:
            assert page.status == 200 and "Bleibt" in await page.text()
        assert await second.app[STORE].schema_version() == len(MIGRATIONS)
    finally:
        await again.close()


# -- bots through the guest flow -----------------------------------------------------------------


@both_stores
async def test_bots_join_by_invite_link_and_see_each_other(org, loopback):
    owner, made = await make_link(org)
    link = made["invite"]["link"]
    bots = [Bot(i, owner.base, "", BotOptions(invite=link)) for i in (1, 2)]
    try:
        for bot in bots:
            await bot.start()
        a, b = bots
        await wait_until(lambda: a.flowing() == 2 and b.flowing() == 2, timeout=15)
        assert a.room == made["room"]["id"]
        names = {link_.name for link_ in a.links.values()}
        assert names == {"bot-2"}  # each bot entered its own display name
    finally:
        for bot in bots:
            await bot.close()


async def test_bots_are_refused_on_a_revoked_link(org):
    owner, made = await make_link(org)
    await owner.json("DELETE", f"/api/invites/{made['invite']['id']}")
    bot = Bot(1, owner.base, "", BotOptions(invite=made["invite"]["link"]))
    with pytest.raises(ServerError) as err:
        await bot.start()
    assert err.value.code == "invite-revoked"
    await bot.close()


async def test_revoking_a_link_closes_its_guests_open_connections(org):
    owner, made = await make_link(org)
    guest, status, _ = await enter(org, made["invite"]["link"], "Gast")
    gws, ows = await guest.ws(), await owner.ws()
    for ws in (gws, ows):
        await ws.send_json({"type": "join", "room": made["room"]["id"], "name": "x"})
        await next_of(ws, "joined")
    await owner.json("DELETE", f"/api/invites/{made['invite']['id']}")
    left = await next_of(ows, "peer-left")
    assert left["reason"] == "closed"
    closing = await gws.receive(timeout=3)
    while closing.type == aiohttp.WSMsgType.TEXT:  # messages queued before the close
        closing = await gws.receive(timeout=3)
    assert (closing.type, closing.data) == (aiohttp.WSMsgType.CLOSE, CLOSE_REVOKED)
    await ows.close()

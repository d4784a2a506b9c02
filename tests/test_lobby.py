"""The guest lobby (docs/protocol.md, "Lobby"): guests of such a room wait until a signed-in
member lets them in or turns them away; nobody else gets past it."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from p2pconf.auth import CSRF_COOKIE
from p2pconf.bots.bot import Bot, BotOptions
from p2pconf.bots.client import Refused
from p2pconf.protocol import CLOSE_NOT_ADMITTED

from .conftest import both_stores
from .org import next_of, signed_in


async def lobby_room(org, login: str = "anna") -> tuple[aiohttp.ClientWebSocketResponse, dict]:
    """A guest room with a lobby made by `login`, who is in its call; (their socket, the API's answer)."""
    owner = await signed_in(org, login)
    status, made = await owner.json("POST", "/api/rooms", {"name": "Sprechstunde", "lobby": True})
    assert status == 201 and made["room"]["lobby"] is True
    ws = await owner.ws()
    await ws.send_json({"type": "join", "room": made["room"]["id"], "name": login})
    assert (await next_of(ws, "joined"))["peers"] == []
    return ws, made


async def guest_at_the_door(org, made: dict, name: str):
    """A guest who entered the link with `name` and sent its join: (browser, its socket)."""
    guest = org.browser()
    link = made["invite"]["link"]
    async with guest.http.get(link):
        pass
    async with guest.http.post(link, data={"name": name, "csrf": guest.cookie(CSRF_COOKIE) or ""},
                               allow_redirects=False) as reply:
        assert reply.status == 302
    ws = await guest.ws()
    await ws.send_json({"type": "join", "room": made["room"]["id"], "name": "ignored"})
    return guest, ws


@both_stores
async def test_a_guest_waits_until_a_member_lets_it_in_and_then_joins_for_good(org):
    anna, made = await lobby_room(org)
    guest, ws = await guest_at_the_door(org, made, "Frau Meier")
    assert await next_of(ws, "lobby") == {"type": "lobby", "room": made["room"]["id"], "title": "Sprechstunde"}
    knocks = await next_of(anna, "knocks")
    assert [g["name"] for g in knocks["waiting"]] == ["Frau Meier"]
    guest_id = knocks["waiting"][0]["id"]
    # while it waits it is in no room: its signals go nowhere
    await ws.send_json({"type": "offer", "to": "whoever", "sdp": "v=0"})
    assert (await next_of(ws, "error"))["code"] == "not-joined"

    await anna.send_json({"type": "admit", "peer": guest_id})
    await next_of(ws, "admitted")
    assert (await next_of(anna, "knocks"))["waiting"] == []
    await ws.send_json({"type": "join", "room": made["room"]["id"], "name": "ignored"})
    joined = await next_of(ws, "joined")
    assert [p["name"] for p in joined["peers"]] == ["Anna Berg"]
    assert (await next_of(anna, "peer-joined"))["peer"]["name"] == "Frau Meier"
    # let in once is let in: the same session joins again at once (a reload, a reconnect)
    await ws.close()
    guest_ws_again = await guest.ws()
    await guest_ws_again.send_json({"type": "join", "room": made["room"]["id"], "name": "ignored"})
    await next_of(guest_ws_again, "joined")


async def test_a_refused_guest_is_closed_for_good_and_its_session_is_gone(org):
    anna, made = await lobby_room(org)
    guest, ws = await guest_at_the_door(org, made, "Herr Unbekannt")
    await next_of(ws, "lobby")
    guest_id = (await next_of(anna, "knocks"))["waiting"][0]["id"]
    await anna.send_json({"type": "refuse", "peer": guest_id})
    closing = await ws.receive(timeout=3)
    assert closing.type == aiohttp.WSMsgType.CLOSE and closing.data == CLOSE_NOT_ADMITTED
    assert (await next_of(anna, "knocks"))["waiting"] == []
    # the same session cannot come back: it is signed out
    assert (await guest.json("GET", "/api/me"))[0] == 401
    again = await guest.ws()
    await again.send_json({"type": "join", "room": made["room"]["id"], "name": "x"})
    assert (await next_of(again, "error"))["code"] == "forbidden"


async def test_only_signed_in_members_answer_and_only_for_guests_who_wait_for_their_room(org):
    anna, made = await lobby_room(org)
    _, first = await guest_at_the_door(org, made, "Erster Gast")
    first_id = (await next_of(anna, "knocks"))["waiting"][0]["id"]
    await anna.send_json({"type": "admit", "peer": first_id})
    await next_of(first, "admitted")
    await first.send_json({"type": "join", "room": made["room"]["id"], "name": "x"})
    await next_of(first, "joined")
    await next_of(anna, "knocks")  # the list is empty again

    _, second = await guest_at_the_door(org, made, "Zweiter Gast")
    second_id = (await next_of(anna, "knocks"))["waiting"][0]["id"]
    # a guest in the room hears no knocks and may not answer them
    await first.send_json({"type": "admit", "peer": second_id})
    assert (await next_of(first, "error"))["code"] == "forbidden"
    # a waiting guest cannot let itself in; a member of another room cannot either
    await second.send_json({"type": "admit", "peer": second_id})
    assert (await next_of(second, "error"))["code"] == "not-joined"
    bert_ws, _ = await lobby_room(org, "bert")
    await bert_ws.send_json({"type": "admit", "peer": second_id})
    assert (await next_of(bert_ws, "error"))["code"] == "unknown-peer"
    for bad in (None, 7, "", "nobody"):
        await anna.send_json({"type": "refuse", "peer": bad})
        assert (await next_of(anna, "error"))["code"] == "unknown-peer"
    # none of it changed anything: the second guest still waits, and is still in no room
    await second.send_json({"type": "join", "room": made["room"]["id"], "name": "x"})
    await next_of(second, "lobby")
    await anna.send_json({"type": "link-matrix"})  # whatever anna hears before its answer
    assert (await anna.receive_json(timeout=3))["type"] == "link-matrix"  # no knocks: the list did not change
    await anna.send_json({"type": "admit", "peer": second_id})
    await next_of(second, "admitted")


async def test_a_waiting_guest_who_leaves_or_goes_away_is_taken_off_the_list(org):
    anna, made = await lobby_room(org)
    _, first = await guest_at_the_door(org, made, "Eins")
    assert [g["name"] for g in (await next_of(anna, "knocks"))["waiting"]] == ["Eins"]
    _, second = await guest_at_the_door(org, made, "Zwei")
    assert [g["name"] for g in (await next_of(anna, "knocks"))["waiting"]] == ["Eins", "Zwei"]
    await first.send_json({"type": "leave"})
    await next_of(first, "left")
    assert [g["name"] for g in (await next_of(anna, "knocks"))["waiting"]] == ["Zwei"]
    await second.close()  # 1000: gone
    assert (await next_of(anna, "knocks"))["waiting"] == []


async def test_a_member_who_joins_later_hears_who_waits(org):
    anna, made = await lobby_room(org)
    await anna.close()
    _, guest = await guest_at_the_door(org, made, "Frau Meier")
    await next_of(guest, "lobby")
    owner = await signed_in(org, "anna")
    ws = await owner.ws()
    await ws.send_json({"type": "join", "room": made["room"]["id"], "name": "anna"})
    await next_of(ws, "joined")
    assert [g["name"] for g in (await next_of(ws, "knocks"))["waiting"]] == ["Frau Meier"]


async def test_rooms_without_a_lobby_let_guests_straight_in_and_the_option_is_checked(org):
    owner = await signed_in(org, "anna")
    for bad in ("yes", 1, None, [True]):
        status, answer = await owner.json("POST", "/api/rooms", {"name": "R", "lobby": bad})
        assert (status, answer["code"]) == (400, "bad-request"), bad
    status, made = await owner.json("POST", "/api/rooms", {"name": "Offen"})
    assert status == 201 and made["room"]["lobby"] is False
    _, ws = await guest_at_the_door(org, made, "Gast")
    assert (await next_of(ws, "joined"))["title"] == "Offen"


async def test_a_bot_waits_at_the_lobby_like_a_browser_and_is_refused_or_let_in(org, loopback, bots):
    anna, made = await lobby_room(org)
    base = str(org.make_url("/")).rstrip("/")
    refused, admitted = (Bot(i, base, "", BotOptions(invite=made["invite"]["link"])) for i in (1, 2))
    bots.extend([refused, admitted])
    starting = asyncio.create_task(refused.start())
    knocks = await next_of(anna, "knocks")
    await anna.send_json({"type": "refuse", "peer": knocks["waiting"][0]["id"]})
    with pytest.raises(Refused) as err:
        await asyncio.wait_for(starting, 10)
    assert err.value.code == CLOSE_NOT_ADMITTED

    assert (await next_of(anna, "knocks"))["waiting"] == []
    starting = asyncio.create_task(admitted.start())
    knocks = await next_of(anna, "knocks")
    assert [g["name"] for g in knocks["waiting"]] == ["bot-2"]
    await anna.send_json({"type": "admit", "peer": knocks["waiting"][0]["id"]})
    await asyncio.wait_for(starting, 10)
    assert (await next_of(anna, "peer-joined"))["peer"]["name"] == "bot-2"

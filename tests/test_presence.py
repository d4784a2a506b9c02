"""Presence pushed over the signaling WebSocket (docs/protocol.md, "Presence"), on a real server."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from p2pconf import protocol
from p2pconf.appkeys import HUB
from p2pconf.protocol import ProtocolError

from .conftest import wait_until
from .org import Browser, base_of, guest_link, signed_in


async def subscribe(ws, logins: list) -> dict:
    """Send a subscribe; the answer (snapshot or error)."""
    await ws.send_json({"type": "subscribe", "logins": logins})
    return await ws.receive_json(timeout=3)


async def nothing_more(ws) -> None:
    """Everything the server queued for `ws` so far has been read: the next message is a pong."""
    await ws.send_json({"type": "ping"})
    assert await ws.receive_json(timeout=3) == {"type": "pong"}


async def room_of(b: Browser) -> str:
    status, made = await b.json("POST", "/api/rooms", {"name": "Standup"})
    assert status == 201
    return made["room"]["id"]


async def join(ws, room: str) -> None:
    await ws.send_json({"type": "join", "room": room})
    assert (await ws.receive_json(timeout=3))["type"] == "joined"


def presence(login: str, value: str) -> dict:
    return {"type": "presence", "users": {login: value}}


def test_logins_are_checked_lower_cased_and_folded():
    assert protocol.clean_logins(["Bert", "bert", "a.b_c@d-e", "BERT"]) == ["bert", "a.b_c@d-e"]
    assert protocol.clean_logins([]) == []
    for bad in ["anna", None, {"anna": 1}, [""], ["a b"], ["x" * 65], ["anna\n"], [5], [None], [["anna"]]]:
        with pytest.raises(ProtocolError) as err:
            protocol.clean_logins(bad)
        assert err.value.code == "bad-message", bad
    assert len(protocol.clean_logins([f"u{i}" for i in range(protocol.MAX_SUBSCRIPTIONS)] * 2)) == 200
    with pytest.raises(ProtocolError) as err:
        protocol.clean_logins([f"u{i}" for i in range(protocol.MAX_SUBSCRIPTIONS + 1)])
    assert err.value.code == "too-many-subscriptions" and "too-many-subscriptions" in protocol.ERRORS


async def test_the_snapshot_gives_each_login_once_lower_cased_in_the_order_sent(org):
    anna, bert, carla = await signed_in(org, "anna"), await signed_in(org, "bert"), await signed_in(org, "carla")
    bert_ws, carla_ws, anna_ws = await bert.ws(), await carla.ws(), await anna.ws()
    await join(carla_ws, await room_of(carla))
    snapshot = await subscribe(anna_ws, ["Bert", "CARLA", "bert", "nobody", "anna"])
    assert snapshot == {"type": "presence",
                        "users": {"bert": "online", "carla": "in-call", "nobody": "offline", "anna": "online"}}
    assert list(snapshot["users"]) == ["bert", "carla", "nobody", "anna"]
    await nothing_more(anna_ws)
    for ws in (anna_ws, bert_ws, carla_ws):
        await ws.close()


async def test_a_watcher_hears_online_in_call_online_in_call_offline_and_no_duplicates(org):
    anna, bert, carla = await signed_in(org, "anna"), await signed_in(org, "bert"), await signed_in(org, "carla")
    hub = org.app[HUB]
    anna_ws, carla_ws = await anna.ws(), await carla.ws()
    assert await subscribe(anna_ws, ["BERT"]) == {"type": "presence", "users": {"bert": "offline"}}
    assert await subscribe(carla_ws, ["anna"]) == {"type": "presence", "users": {"anna": "online"}}
    room = await room_of(bert)

    tab1 = await bert.ws()
    assert await anna_ws.receive_json(timeout=3) == presence("bert", "online")
    tab2 = await bert.ws()  # a second page of an online user changes nothing
    await nothing_more(anna_ws)
    await join(tab1, room)
    assert await anna_ws.receive_json(timeout=3) == presence("bert", "in-call")
    await tab1.send_json({"type": "leave"})
    assert (await tab1.receive_json(timeout=3))["type"] == "left"
    assert await anna_ws.receive_json(timeout=3) == presence("bert", "online")
    await join(tab1, room)
    assert await anna_ws.receive_json(timeout=3) == presence("bert", "in-call")
    await tab2.close()  # the page outside the call goes: bert is still in the call
    await wait_until(lambda: len(hub.sessions_of("bert")) == 1)
    await nothing_more(anna_ws)
    await tab1.close()  # the last page, in the call: straight to offline
    assert await anna_ws.receive_json(timeout=3) == presence("bert", "offline")
    await nothing_more(anna_ws)
    await nothing_more(carla_ws)  # carla follows anna only: nothing about bert
    await anna_ws.close()
    await carla_ws.close()


async def test_a_new_subscribe_replaces_the_old_one(org):
    anna, bert, carla = await signed_in(org, "anna"), await signed_in(org, "bert"), await signed_in(org, "carla")
    anna_ws = await anna.ws()
    await subscribe(anna_ws, ["bert"])
    assert await subscribe(anna_ws, ["carla"]) == {"type": "presence", "users": {"carla": "offline"}}
    bert_ws = await bert.ws()  # dropped: anna hears nothing
    await nothing_more(anna_ws)
    carla_ws = await carla.ws()
    assert await anna_ws.receive_json(timeout=3) == presence("carla", "online")
    assert await subscribe(anna_ws, []) == {"type": "presence", "users": {}}
    await carla_ws.close()
    await wait_until(lambda: not org.app[HUB].sessions_of("carla"))
    await nothing_more(anna_ws)
    assert org.app[HUB].watchers == {}
    await anna_ws.close()
    await bert_ws.close()


async def test_closed_connections_leave_nothing_in_the_hub(org):
    anna, bert = await signed_in(org, "anna"), await signed_in(org, "bert")
    hub = org.app[HUB]
    room = await room_of(bert)
    for _ in range(20):
        anna_ws, bert_ws = await anna.ws(), await bert.ws()
        await subscribe(anna_ws, ["bert", "carla", "anna"])
        await subscribe(bert_ws, ["anna"])
        await join(bert_ws, room)
        assert await anna_ws.receive_json(timeout=3) == presence("bert", "in-call")
        assert set(hub.watchers) == {"bert", "carla", "anna"} and set(hub.by_login) == {"anna", "bert"}
        await anna_ws.close()
        await bert_ws.close()
        await wait_until(lambda: not hub.sessions)
    assert hub.by_login == {} and hub.watchers == {} and hub.rooms == {}


async def test_more_than_200_logins_are_refused_and_the_old_subscription_stays(org):
    anna, bert = await signed_in(org, "anna"), await signed_in(org, "bert")
    anna_ws = await anna.ws()
    await subscribe(anna_ws, ["bert"])
    too_many = [f"user{i}" for i in range(protocol.MAX_SUBSCRIPTIONS + 1)]
    error = await subscribe(anna_ws, too_many)
    assert (error["type"], error["code"], error["ref"]) == ("error", "too-many-subscriptions", "subscribe")
    assert set(org.app[HUB].watchers) == {"bert"}
    bert_ws = await bert.ws()
    assert await anna_ws.receive_json(timeout=3) == presence("bert", "online")
    snapshot = await subscribe(anna_ws, too_many[:199] + ["bert", "BERT"])  # 200 once duplicates are folded
    assert len(snapshot["users"]) == 200 and snapshot["users"]["bert"] == "online"
    await anna_ws.close()
    await bert_ws.close()


async def test_only_signed_in_users_may_subscribe_and_the_refusal_is_not_final(org):
    link = await guest_link(org)
    guest = org.browser()
    await guest.http.get(link)
    async with guest.http.post(link, data={"name": "Gast", "csrf": guest.cookie("p2pconf_csrf")},
                               allow_redirects=False) as reply:
        assert reply.status == 302
    stranger = org.browser()
    for b in (guest, stranger):
        ws = await b.ws()
        error = await subscribe(ws, ["anna"])
        assert (error["type"], error["code"], error["ref"]) == ("error", "forbidden", "subscribe")
        await nothing_more(ws)  # the socket stays open
        await ws.close()
    assert org.app[HUB].watchers == {}


async def test_a_bad_login_is_a_bad_message_and_changes_nothing(org):
    anna, bert = await signed_in(org, "anna"), await signed_in(org, "bert")
    anna_ws = await anna.ws()
    await subscribe(anna_ws, ["bert"])
    for logins in (["bert", "no spaces"], ["x" * 65], [""], ["bert", 7], "bert", None, {"bert": True}):
        error = await subscribe(anna_ws, logins)
        assert (error["type"], error["code"], error["ref"]) == ("error", "bad-message", "subscribe"), logins
    await anna_ws.send_json({"type": "subscribe"})
    assert (await anna_ws.receive_json(timeout=3))["code"] == "bad-message"
    bert_ws = await bert.ws()
    assert await anna_ws.receive_json(timeout=3) == presence("bert", "online")
    await anna_ws.close()
    await bert_ws.close()


class ScanCounter(dict):
    """The hub's sessions, counting every walk over all of them."""

    scans = 0

    def _walked(self):
        ScanCounter.scans += 1

    def __iter__(self):
        self._walked()
        return super().__iter__()

    def values(self):
        self._walked()
        return super().values()

    def items(self):
        self._walked()
        return super().items()

    def keys(self):
        self._walked()
        return super().keys()


async def test_a_change_costs_only_the_users_own_watchers(org, monkeypatch):
    carla, bert = await signed_in(org, "carla"), await signed_in(org, "bert")
    hub = org.app[HUB]
    # 300 pages following 300 other logins, and 3 following bert (one jar: carla's session)
    http = aiohttp.ClientSession(cookie_jar=carla.http.cookie_jar, connector=aiohttp.TCPConnector(limit=0),
                                 headers={"Origin": base_of(org)})
    sockets = []

    async def page(logins: list[str]) -> None:
        ws = await http.ws_connect(base_of(org) + "/ws")
        sockets.append(ws)
        await ws.send_json({"type": "hello", "version": protocol.PROTOCOL_VERSION})
        assert (await ws.receive_json(timeout=10))["type"] == "welcome"
        assert (await subscribe(ws, logins))["type"] == "presence"

    try:
        await asyncio.gather(*(page([f"other{i}"]) for i in range(300)), *(page(["bert"]) for _ in range(3)))
        assert len(hub.watchers) == 301 and len(hub.watchers["bert"]) == 3
        sent: list[tuple] = []
        for session in hub.sessions.values():
            session.send = (lambda send, s: lambda msg: (sent.append((s, msg)), send(msg)))(session.send, session)
        monkeypatch.setattr(hub, "close_where", lambda code, predicate: [])  # the access watcher's expiry scan
        hub.sessions = ScanCounter(hub.sessions)
        ScanCounter.scans = 0

        bert_ws = await bert.ws()
        await join(bert_ws, await room_of(bert))
        await bert_ws.close()
        await wait_until(lambda: not hub.sessions_of("bert"))  # bert has gone: every change is sent
        assert {s for s, _ in sent} == hub.watchers["bert"]
        assert sorted(msg["users"]["bert"] for _, msg in sent) == ["in-call"] * 3 + ["offline"] * 3 + ["online"] * 3
        assert all(msg["type"] == "presence" for _, msg in sent)
        assert ScanCounter.scans == 0, "a presence change walked every connection"
    finally:
        for ws in sockets:
            await ws.close()
        await http.close()
    await wait_until(lambda: not hub.sessions)
    assert hub.watchers == {} and hub.by_login == {}

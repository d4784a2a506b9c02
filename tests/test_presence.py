"""Presence pushed over the signaling WebSocket (docs/protocol.md, "Presence"), on a real server."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from p2pconf import protocol
from p2pconf.appkeys import HUB
from p2pconf.config import Config
from p2pconf.protocol import ProtocolError
from p2pconf.signaling import Hub

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


# -- paced delivery (Hub.deliver_presence, server.pace_presence) ----------------------------------


def paced_hub(watchers: int) -> tuple[Hub, list, list]:
    """A hub whose changes wait for deliver_presence; `watchers` connections follow "anna"."""
    hub, inbox = Hub(), []
    hub.presence_waiting = lambda: None
    pages = []
    for _ in range(watchers):
        page = hub.connect(lambda msg, box=[]: (box.append(msg), inbox.append(msg)), login="carla")
        hub.handle(page, {"type": "hello", "version": protocol.PROTOCOL_VERSION})
        hub.handle(page, {"type": "subscribe", "logins": ["anna"]})
        pages.append(page)
    inbox.clear()
    return hub, inbox, pages


def test_a_change_waits_and_goes_out_in_slices_of_the_budget():
    hub, inbox, _ = paced_hub(70)
    anna = hub.connect(lambda msg: None, login="anna")
    hub.handle(anna, {"type": "hello", "version": protocol.PROTOCOL_VERSION})
    assert inbox == []  # waiting for the pacer
    assert hub.deliver_presence(32) is True and len(inbox) == 32
    assert hub.deliver_presence(32) is True and len(inbox) == 64
    assert hub.deliver_presence(32) is False and len(inbox) == 70
    assert inbox == [presence("anna", "online")] * 70


def test_what_waited_is_the_state_at_delivery_once_and_never_older_than_a_snapshot():
    hub, inbox, pages = paced_hub(3)
    anna = hub.connect(lambda msg: None, login="anna")
    hub.handle(anna, {"type": "hello", "version": protocol.PROTOCOL_VERSION})
    hub.handle(anna, {"type": "join", "room": "r", "name": "Anna"})  # online, then in a call: one change waits
    late = hub.connect(inbox.append, login="dora")
    hub.handle(late, {"type": "hello", "version": protocol.PROTOCOL_VERSION})
    inbox.clear()  # its welcome
    hub.handle(late, {"type": "subscribe", "logins": ["anna"]})
    assert inbox == [presence("anna", "in-call")]  # the snapshot
    assert hub.deliver_presence(None) is False
    assert inbox == [presence("anna", "in-call")] * 5  # 3 + the late page: in-call, never "online"
    hub.disconnect(pages[0])  # a watcher that left before delivery hears nothing
    hub.disconnect(anna)
    inbox.clear()
    hub.deliver_presence(None)
    assert inbox == [presence("anna", "offline")] * 3


async def test_the_server_delivers_at_most_its_budget_per_turn_of_the_loop():
    from p2pconf import server
    from p2pconf.appkeys import HUB as HUB_KEY
    app = server.create_app(Config(data_dir=None))
    hub, inbox, _ = paced_hub(100)
    app[HUB_KEY] = hub
    turns, per_turn = 0, []

    async def count_turns() -> None:
        nonlocal turns
        for _ in range(1000):  # bounded
            per_turn.append(len(inbox))
            turns += 1
            await asyncio.sleep(0)

    ctx = server.pace_presence(app)
    await ctx.__anext__()
    try:
        counter = asyncio.create_task(count_turns())
        anna = hub.connect(lambda msg: None, login="anna")
        hub.handle(anna, {"type": "hello", "version": protocol.PROTOCOL_VERSION})
        await wait_until(lambda: len(inbox) == 100)
        counter.cancel()
    finally:
        with pytest.raises(StopAsyncIteration):
            await ctx.__anext__()
    sent_per_turn = [b - a for a, b in zip(per_turn, per_turn[1:])]
    assert max(sent_per_turn) <= server.PRESENCE_PER_TURN
    assert len([n for n in sent_per_turn if n]) >= 100 // server.PRESENCE_PER_TURN

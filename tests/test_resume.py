"""Resuming a session after a broken socket (docs/protocol.md, "Resuming")."""

from __future__ import annotations

import aiohttp

from p2pconf import protocol
from p2pconf.bots.client import SignalingClient
from p2pconf.server import HUB, create_app
from p2pconf.signaling import Hub

from .conftest import Peer, wait_until

HELLO = {"type": "hello", "version": protocol.PROTOCOL_VERSION}


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def member(hub: Hub, inbox: list, name: str, room: str = "r", **who):
    """A greeted session in `room`; what it is sent goes to `inbox`. Returns (session, token)."""
    session = hub.connect(inbox.append, **who)
    session.conn = object()
    hub.handle(session, HELLO)
    token = inbox[-1]["resume"]
    hub.handle(session, {"type": "join", "room": room, "name": name})
    return session, token


def reconnect(hub: Hub, token: str | None, **who) -> tuple[object, list]:
    """A new connection's hello, with `token`: the session it now speaks for, and its inbox."""
    inbox: list = []
    fresh = hub.connect(inbox.append, **who)
    fresh.conn = object()
    return hub.handle(fresh, {**HELLO, **({"resume": token} if token else {})}), inbox


def test_a_broken_socket_keeps_its_place_and_resumes_with_what_it_missed():
    hub = Hub(resume_grace_s=30, clock=Clock())
    a_box, b_box = [], []
    a, token = member(hub, a_box, "Anna")
    b, _ = member(hub, b_box, "Bert")
    hub.detach(a, a.conn)
    assert b_box[-1]["type"] == "joined"  # Bert hears nothing of the break
    hub.handle(b, {"type": "offer", "to": a.id, "sdp": "v=0 while away"})
    c, _ = member(hub, [], "Carla")
    assert len(hub.rooms["r"].members) == 3  # Anna still counts

    resumed, inbox = reconnect(hub, token)
    assert resumed is a and len(hub.sessions) == 3
    welcome = inbox[0]
    assert welcome["resumed"] is True and welcome["id"] == a.id and welcome["room"] == "r"
    assert welcome["resume"] != token
    assert [m["type"] for m in inbox[1:]] == ["offer", "peer-joined"]  # held, in order
    assert inbox[1]["from"] == b.id and inbox[2]["peer"]["id"] == c.id
    hub.handle(b, {"type": "answer", "to": a.id, "sdp": "v=0 after"})
    assert inbox[-1]["type"] == "answer"  # straight to the new connection now
    assert not any(m["type"] == "peer-left" for m in b_box)


def test_a_token_works_once_and_only_for_its_own_session():
    hub = Hub(resume_grace_s=30, clock=Clock())
    anna, token = member(hub, [], "Anna", login="anna", auth="s1")
    hub.detach(anna, anna.conn)
    for who in ({"login": "bert", "auth": "s2"}, {"login": "anna", "auth": "s9"}, {}, {"guest_room": "g"}):
        other, inbox = reconnect(hub, token, **who)
        assert other is not anna and inbox[0]["resumed"] is False and inbox[0]["id"] != anna.id, who
    assert anna.detached and anna.id in hub.sessions  # still waiting for its own client
    resumed, inbox = reconnect(hub, token, login="anna", auth="s1")
    assert resumed is anna and inbox[0]["resumed"] is True
    hub.detach(anna, anna.conn)
    again, inbox = reconnect(hub, token, login="anna", auth="s1")  # the used token
    assert again is not anna and inbox[0]["resumed"] is False
    for junk in (5, None, "", "x" * 500, ["t"]):
        other, inbox = reconnect(hub, junk)
        assert inbox[0]["resumed"] is False


def test_when_the_grace_period_ends_the_room_hears_timeout_and_the_token_is_dead():
    clock = Clock()
    hub = Hub(resume_grace_s=30, clock=clock)
    b_box = []
    a, token = member(hub, [], "Anna")
    member(hub, b_box, "Bert")
    hub.detach(a, a.conn)
    clock.now += 29
    assert hub.expire_detached() == [] and a.id in hub.sessions
    clock.now += 2
    assert hub.expire_detached() == [a]
    assert b_box[-1] == {"type": "peer-left", "id": a.id, "reason": "timeout"}
    assert a.id not in hub.sessions and hub.detached == {} and a.resume_hash not in hub.resumable
    _, inbox = reconnect(hub, token)
    assert inbox[0]["resumed"] is False


def test_a_session_that_missed_too_much_is_not_resumed():
    hub = Hub(resume_grace_s=30, max_held=5, clock=Clock())
    a, token = member(hub, [], "Anna")
    b, _ = member(hub, [], "Bert")
    hub.detach(a, a.conn)
    for n in range(6):
        hub.handle(b, {"type": "offer", "to": a.id, "sdp": f"v=0 {n}"})
    assert len(a.held) == 5
    _, inbox = reconnect(hub, token)
    assert inbox[0]["resumed"] is False
    assert hub.expire_detached() == [a]  # at the next sweep, not after 30 s


def test_resuming_while_the_old_socket_is_still_open_closes_that_one_with_4409():
    hub = Hub(resume_grace_s=30, clock=Clock())
    closed = []
    a, token = member(hub, [], "Anna", close=closed.append)
    old_conn = a.conn
    resumed, inbox = reconnect(hub, token)
    assert resumed is a and inbox[0]["resumed"] is True and closed == [protocol.CLOSE_REPLACED]
    hub.detach(a, old_conn)  # the stale socket's end changes nothing: the session moved on
    assert not a.detached


# -- over real sockets ------------------------------------------------------------------------------


async def test_a_peer_whose_network_broke_resumes_and_the_room_never_hears_of_it(connect, client):
    a, b = await connect(), await connect()
    await a.join("r", "A")
    await b.join("r", "B")
    await a.expect("peer-joined")
    token = b.welcome["resume"]
    b.ws._response.connection.transport.abort()  # no close frame: the network is gone
    await wait_until(lambda: client.app[HUB].sessions[b.id].detached)
    await a.send(type="offer", to=b.id, sdp="v=0 while away")
    back = Peer(await client.ws_connect("/ws"))
    await back.send(type="hello", version=1, resume=token)
    welcome = await back.expect("welcome")
    assert welcome["resumed"] is True and welcome["id"] == b.id and welcome["room"] == "r"
    assert (await back.expect("offer"))["sdp"] == "v=0 while away"
    await a.send(type="offer", to=b.id, sdp="v=0 again")
    assert (await back.expect("offer"))["sdp"] == "v=0 again"
    await a.silent(0.3)  # no peer-left, no peer-joined


async def test_a_client_that_closes_with_1000_has_gone_at_once(connect, client):
    a, b = await connect(), await connect()
    await a.join("r", "A")
    await b.join("r", "B")
    await a.expect("peer-joined")
    await b.ws.close(code=aiohttp.WSCloseCode.OK)
    assert await a.expect("peer-left", timeout=1) == {"type": "peer-left", "id": b.id, "reason": "left"}


async def test_a_client_that_closes_to_reconnect_keeps_its_place(connect, client, config):
    a, b = await connect(), await connect()
    await a.join("r", "A")
    await b.join("r", "B")
    await a.expect("peer-joined")
    await b.ws.close(code=protocol.CLOSE_RECONNECTING)
    await a.silent(0.5)
    left = await a.expect("peer-left", timeout=config.resume_grace_s + 3)  # nobody came back
    assert left == {"type": "peer-left", "id": b.id, "reason": "timeout"}


async def test_the_bot_client_resumes_and_keeps_its_peer_id_after_a_restart_close(aiohttp_server, config):
    """A server restart's 1012 while the process lives on (a proxy's restart, say): the client
    comes back at once, resumed; its owner hears `resumed`, not `reconnected`."""
    config.resume_grace_s = 30
    server = await aiohttp_server(create_app(config))
    heard, other_heard = [], []

    async def on_message(msg):
        heard.append(msg)

    async def on_other(msg):
        other_heard.append(msg)

    url = str(server.make_url("/"))
    bot, other = SignalingClient(url, on_message), SignalingClient(url, on_other)
    try:
        await bot.connect()
        await bot.join("r", "Bot")
        await other.connect()
        await other.join("r", "Other")
        first_id = bot.id
        hub = server.app[HUB]
        hub.sessions[first_id].close(protocol.CLOSE_RESTART)
        await wait_until(lambda: {"type": "resumed"} in heard, timeout=5)
        assert bot.id == first_id and bot.resumes == 1 and bot.reconnects == 0
        await other.send({"type": "offer", "to": first_id, "sdp": "v=0 after the restart"})
        await wait_until(lambda: any(m.get("sdp") == "v=0 after the restart" for m in heard), timeout=5)
        assert not any(m["type"] == "peer-left" for m in other_heard)
    finally:
        await bot.close()
        await other.close()
    await wait_until(lambda: not server.app[HUB].sessions, timeout=5)

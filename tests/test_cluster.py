"""Two server processes sharing one Redis (serve --redis): rooms, signals and resumes across them.

Each "process" here is an app of its own in the test's event loop, with its own Hub and its
own name in the cluster; the restart test (test_restart.py) uses real processes.
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from p2pconf.appkeys import CALLS, CLUSTER, HUB
from p2pconf.protocol import CLOSE_NOT_ADMITTED
from p2pconf.server import create_app

from .conftest import Peer, wait_until
from .org import Browser, add_user, base_of, next_of, signed_in, status_of
from .test_lobby import guest_at_the_door, lobby_room
from .test_presence import join, presence, room_of, subscribe


@pytest.fixture
async def two(request, aiohttp_client, config, redis_url):
    """Two test clients of two apps on one Redis (grace period: the param, or 10 s)."""
    config.redis_url, config.resume_grace_s = redis_url, getattr(request, "param", 10.0)
    first = await aiohttp_client(create_app(config))
    second = await aiohttp_client(create_app(config))
    return first, second


async def die(client) -> None:
    """The process stops dead: it renews no lease, reads its channel no more, writes nothing."""
    cluster = client.app[CLUSTER]
    for task in cluster.tasks:
        task.cancel()
    await asyncio.gather(*cluster.tasks, return_exceptions=True)
    await cluster.pubsub.aclose()


async def greeted(client) -> Peer:
    peer = Peer(await client.ws_connect("/ws"))
    await peer.send(type="hello", version=1)
    peer.welcome = await peer.expect("welcome")
    peer.id = peer.welcome["id"]
    return peer


async def anna_and_bert(two) -> tuple[Peer, Peer]:
    """Anna on the first process and Bert on the second, both in room "Daily"."""
    a, b = await greeted(two[0]), await greeted(two[1])
    await a.join("Daily", "Anna")
    await b.join("Daily", "Bert")
    await a.expect("peer-joined")
    return a, b


async def test_peers_on_two_processes_meet_in_one_room_and_signal_each_other(two):
    first, second = two
    a, b = await greeted(first), await greeted(second)
    assert (await a.join("Daily", "Anna"))["peers"] == []
    joined = await b.join("Daily", "Bert")
    assert [p["id"] for p in joined["peers"]] == [a.id] and joined["peers"][0]["name"] == "Anna"
    assert (await a.expect("peer-joined"))["peer"]["id"] == b.id
    await b.send(type="offer", to=a.id, sdp="v=0 across")
    assert await a.expect("offer") == {"type": "offer", "from": b.id, "to": a.id, "sdp": "v=0 across"}
    await a.send(type="answer", to=b.id, sdp="v=0 back")
    assert (await b.expect("answer"))["from"] == a.id
    await a.send(type="media", media={"mic": False})
    assert (await b.expect("peer-media"))["media"]["mic"] is False
    await a.ws.close()
    assert await b.expect("peer-left") == {"type": "peer-left", "id": a.id, "reason": "left"}


async def test_the_link_matrix_shows_the_members_of_every_process(two):
    first, second = two
    a, b = await anna_and_bert(two)
    await a.send(type="stats", peers={b.id: {"kbpsIn": 800.0, "kbpsOut": 600.0, "lossPct": 0.5, "rttMs": 40}})
    await b.send(type="stats", peers={a.id: {"kbpsIn": 590.0, "kbpsOut": 810.0, "lossPct": 1.0}})
    await wait_until(lambda: first.app[HUB].rooms["Daily"].members[b.id].stats)  # the uploads cross over
    await wait_until(lambda: second.app[HUB].rooms["Daily"].members[a.id].stats)
    for peer in (a, b):
        await peer.send(type="link-matrix")
        matrix = await peer.expect("link-matrix")
        assert {p["name"] for p in matrix["peers"]} == {"Anna", "Bert"}
        links = {(link["from"], link["to"]): link for link in matrix["links"]}
        assert (links[b.id, a.id]["kbps"], links[b.id, a.id]["kbpsSent"]) == (800.0, 810.0)
        assert (links[a.id, b.id]["kbps"], links[a.id, b.id]["lossPct"], links[a.id, b.id]["rttMs"]) == (590.0, 1.0, 40)


async def test_a_room_is_full_across_processes(two, config):
    first, second = two
    config.max_room_size = 6
    peers = [await greeted(first if n % 2 else second) for n in range(7)]
    for n, peer in enumerate(peers[:6]):
        await peer.join("Voll", f"P{n}")
    await peers[6].send(type="join", room="Voll", name="Seventh")
    error = await peers[6].expect("error")
    assert error["code"] == "room-full"


async def test_a_session_resumes_on_the_other_process_when_its_own_is_gone(two):
    first, second = two
    a, b = await anna_and_bert(two)
    token = a.welcome["resume"]
    await die(first)
    a.ws._response.connection.transport.abort()  # and Anna's socket with it
    await b.send(type="offer", to=a.id, sdp="v=0 while gone")  # held in Redis for a
    back = Peer(await second.ws_connect("/ws"))
    await back.send(type="hello", version=1, resume=token)
    welcome = await back.expect("welcome")
    assert welcome["resumed"] is True and welcome["id"] == a.id and welcome["room"] == "Daily"
    assert (await back.expect("offer"))["sdp"] == "v=0 while gone"
    await b.send(type="offer", to=a.id, sdp="v=0 now local")
    assert (await back.expect("offer"))["sdp"] == "v=0 now local"
    await b.silent(0.3)  # Bert never heard that Anna was gone
    assert set(second.app[HUB].rooms["Daily"].members) == {a.id, b.id}


async def test_a_session_moves_to_the_other_process_while_its_own_still_runs(two):
    """A client whose balancer sends it elsewhere (its address changed) keeps its place."""
    first, second = two
    a, b, c = await greeted(first), await greeted(second), await greeted(first)
    await a.join("Daily", "Anna")
    await b.join("Daily", "Bert")
    await c.join("Daily", "Carl")
    for peer in (a, a, b):
        await peer.expect("peer-joined")
    moved = Peer(await second.ws_connect("/ws"))
    await moved.send(type="hello", version=1, resume=a.welcome["resume"])
    welcome = await moved.expect("welcome")
    assert welcome["resumed"] is True and welcome["id"] == a.id and welcome["room"] == "Daily"
    for _ in range(10):  # the first process lets the old socket go
        last = await a.ws.receive(timeout=3)
        if last.type != aiohttp.WSMsgType.TEXT:
            break
    assert (last.type, last.data) == (aiohttp.WSMsgType.CLOSE, 4409)
    for sender, sdp in ((b, "v=0 from Bert"), (c, "v=0 from Carl")):
        await sender.send(type="offer", to=a.id, sdp=sdp)
        assert (await moved.expect("offer"))["sdp"] == sdp
    await moved.send(type="answer", to=c.id, sdp="v=0 back")
    assert (await c.expect("answer"))["from"] == a.id
    await b.silent(0.3), await c.silent(0.3)  # nobody heard Anna leave or come
    assert a.id not in first.app[HUB].sessions and a.id in second.app[HUB].sessions


async def test_a_resume_token_is_handed_over_once(two):
    first, second = two
    a = await greeted(first)
    await a.join("Daily", "Anna")
    token = a.welcome["resume"]
    moved = Peer(await second.ws_connect("/ws"))
    await moved.send(type="hello", version=1, resume=token)
    assert (await moved.expect("welcome"))["resumed"] is True
    again = Peer(await first.ws_connect("/ws"))  # the same token, back on the first process
    await again.send(type="hello", version=1, resume=token)
    welcome = await again.expect("welcome")
    assert welcome["resumed"] is False and welcome["id"] != a.id


@pytest.mark.parametrize("two", [1.0], indirect=True)  # a grace period of 1 s
async def test_a_dead_process_leaves_no_ghosts(two, config):
    first, second = two
    a, b = await anna_and_bert(two)
    await die(first)
    first.app[HUB].sessions.clear()
    left = await b.expect("peer-left", timeout=config.resume_grace_s + 5)
    assert left == {"type": "peer-left", "id": a.id, "reason": "timeout"}
    await wait_until(lambda: a.id not in second.app[HUB].rooms["Daily"].members)


# -- what an organisation shares across processes: presence, rings, the sign-in throttle ------------


@pytest.fixture
async def two_offices(request, aiohttp_server, org_config, redis_url):
    """Two servers of one organisation (anna, bert, carla) on one store and one Redis
    (grace period: the param, or 10 s)."""
    org_config.redis_url, org_config.resume_grace_s = redis_url, getattr(request, "param", 10.0)
    org_config.ring_timeout_s = 5
    servers = [await aiohttp_server(create_app(org_config)) for _ in range(2)]
    await add_user(servers[0].app, "anna", "Anna Berg")
    await add_user(servers[0].app, "bert", "Bert Kraus")
    await add_user(servers[0].app, "carla", "Carla Diaz")
    browsers: list[Browser] = []
    for server in servers:
        def browser(server=server) -> Browser:
            browsers.append(Browser(str(server.make_url("/"))))
            return browsers[-1]
        server.browser = browser
    yield servers
    for b in browsers:
        await b.close()


async def test_presence_follows_a_user_on_the_other_process(two_offices):
    first, second = two_offices
    anna, bert = await signed_in(first, "anna"), await signed_in(second, "bert")
    anna_ws = await anna.ws()
    assert await subscribe(anna_ws, ["bert"]) == presence("bert", "offline")
    bert_ws = await bert.ws()
    assert await next_of(anna_ws, "presence") == presence("bert", "online")
    await join(bert_ws, await room_of(bert))
    assert await next_of(anna_ws, "presence") == presence("bert", "in-call")
    _, people = await anna.json("GET", "/api/users?q=bert")  # the directory of the first process says so too
    assert [(p["login"], p["presence"]) for p in people["users"]] == [("bert", "in-call")]
    await bert_ws.send_json({"type": "leave"})
    assert await next_of(anna_ws, "presence") == presence("bert", "online")
    await bert_ws.close()
    assert await next_of(anna_ws, "presence") == presence("bert", "offline")


async def test_a_process_that_starts_later_knows_who_is_online_already(two_offices, aiohttp_server, org_config):
    first, _ = two_offices
    bert_ws = await (await signed_in(first, "bert")).ws()
    third = await aiohttp_server(create_app(org_config))
    anna = Browser(str(third.make_url("/")))
    try:
        await anna.sign_in("anna")
        anna_ws = await anna.ws()
        assert await subscribe(anna_ws, ["bert"]) == presence("bert", "online")
    finally:
        await anna.close()
    await bert_ws.close()


@pytest.mark.parametrize("two_offices", [1.0], indirect=True)  # a grace period of 1 s
async def test_the_users_of_a_dead_process_go_offline(two_offices):
    first, second = two_offices
    bert_ws = await (await signed_in(first, "bert")).ws()
    anna_ws = await (await signed_in(second, "anna")).ws()
    assert await subscribe(anna_ws, ["bert"]) == presence("bert", "online")
    await die(first)
    assert await next_of(anna_ws, "presence", timeout=10) == presence("bert", "offline")
    await bert_ws.close()


async def test_a_call_rings_on_the_other_process_and_is_answered_there(two_offices):
    first, second = two_offices
    anna, bert = await signed_in(first, "anna"), await signed_in(second, "bert")
    anna_ws, bert_ws = await anna.ws(), await bert.ws()
    status, call = await anna.json("POST", "/api/calls", {"invitees": ["bert"]})
    assert status == 201 and call["invitees"][0]["status"] == "ringing"
    ring = await next_of(bert_ws, "ring")
    assert (ring["call"], ring["from"]["login"]) == (call["id"], "anna")
    assert (await bert.json("GET", f"/api/calls/{call['id']}"))[1]["invitees"][0]["status"] == "ringing"
    status, answer = await bert.json("POST", f"/api/calls/{call['id']}/accept")
    assert (status, answer["status"]) == (200, "accepted")
    assert (await next_of(bert_ws, "ring-ended"))["status"] == "accepted"
    await status_of(anna_ws, "bert", "accepted")
    # accepted once, on any process
    assert (await anna.json("POST", f"/api/calls/{call['id']}/decline"))[0] == 409
    status, err = await (await signed_in(first, "bert")).json("POST", f"/api/calls/{call['id']}/decline")
    assert (status, err["code"]) == (409, "not-ringing")
    await anna_ws.close(), await bert_ws.close()


async def test_a_ring_reaches_a_page_opened_on_the_other_process_and_ends_as_missed(two_offices):
    first, second = two_offices
    for server in two_offices:
        server.app[CALLS].ring_timeout_s = 1.0
    anna, bert = await signed_in(first, "anna"), await signed_in(second, "bert")
    anna_ws = await anna.ws()
    _, call = await anna.json("POST", "/api/calls", {"invitees": ["bert", "carla"]})
    bert_ws = await bert.ws()  # opened while it rings, on the other process
    assert (await next_of(bert_ws, "ring"))["call"] == call["id"]
    assert (await next_of(bert_ws, "ring-ended"))["status"] == "missed"
    await status_of(anna_ws, "bert", "missed")
    # busy across processes: bert is in a call on the second process
    await join(bert_ws, await room_of(bert))
    await wait_until(lambda: first.app[HUB].in_call("bert"))
    _, again = await anna.json("POST", "/api/calls", {"invitees": ["bert"]})
    assert again["invitees"][0]["status"] == "busy"
    await anna_ws.close(), await bert_ws.close()


async def test_failed_sign_ins_count_on_every_process(two_offices, org_config):
    first, second = two_offices
    statuses = []
    for n in range(org_config.login_limit + 1):  # org_config: 3 attempts
        server = (first, second)[n % 2]
        statuses.append((await server.browser().sign_in("anna", "wrong password")).status)
    assert statuses == [401] * org_config.login_limit + [429]
    throttled = await second.browser().sign_in("anna")  # even with the right password, for now
    assert throttled.status == 429 and 55 <= int(throttled.headers["Retry-After"]) <= 61  # org_config: 60 s window


async def test_calls_started_count_on_every_process(two_offices, org_config):
    first, second = two_offices
    callers = [await signed_in(first, "anna"), await signed_in(second, "anna")]
    statuses = [(await callers[n % 2].json("POST", "/api/calls", {"invitees": ["bert"]}))[0]
                for n in range(int(org_config.calls_per_minute) + 1)]
    assert statuses == [201] * int(org_config.calls_per_minute) + [429]


async def test_a_guest_at_the_lobby_of_one_process_is_let_in_or_turned_away_from_the_other(two_offices):
    first, second = two_offices
    anna_ws, made = await lobby_room(second)  # anna on the second process, her guests on the first
    token = made["invite"]["link"].rsplit("/", 1)[1]
    made["invite"]["link"] = f"{base_of(first)}/j/{token}"
    _, welcome = await guest_at_the_door(first, made, "Frau Meier")
    await next_of(welcome, "lobby")
    assert [g["name"] for g in (await next_of(anna_ws, "knocks"))["waiting"]] == ["Frau Meier"]
    _, stranger = await guest_at_the_door(first, made, "Herr Unbekannt")
    await next_of(stranger, "lobby")
    knocks = await next_of(anna_ws, "knocks")
    assert [g["name"] for g in knocks["waiting"]] == ["Frau Meier", "Herr Unbekannt"]
    ids = {g["name"]: g["id"] for g in knocks["waiting"]}

    await anna_ws.send_json({"type": "refuse", "peer": ids["Herr Unbekannt"]})
    closing = await stranger.receive(timeout=3)
    assert closing.type == aiohttp.WSMsgType.CLOSE and closing.data == CLOSE_NOT_ADMITTED
    assert [g["name"] for g in (await next_of(anna_ws, "knocks"))["waiting"]] == ["Frau Meier"]
    await anna_ws.send_json({"type": "admit", "peer": ids["Frau Meier"]})
    await next_of(welcome, "admitted")
    assert (await next_of(anna_ws, "knocks"))["waiting"] == []
    await welcome.send_json({"type": "join", "room": made["room"]["id"], "name": "x"})
    assert [p["name"] for p in (await next_of(welcome, "joined"))["peers"]] == ["Anna Berg"]
    assert (await next_of(anna_ws, "peer-joined"))["peer"]["name"] == "Frau Meier"


async def test_an_old_ring_timer_never_ends_a_new_ring_started_on_the_other_process(two_offices):
    first, second = two_offices
    first.app[CALLS].ring_timeout_s = 1.0  # the first ring's timer, on the first process
    second.app[CALLS].ring_timeout_s = 30.0
    anna, bert = await signed_in(first, "anna"), await signed_in(second, "bert")
    bert_ws = await bert.ws()
    _, call = await anna.json("POST", "/api/calls", {"invitees": ["bert"]})
    await next_of(bert_ws, "ring")
    assert (await bert.json("POST", f"/api/calls/{call['id']}/decline"))[0] == 200
    # anna rings him again, now through the second process
    status, again = await (await signed_in(second, "anna")).json("POST", f"/api/calls/{call['id']}/invite",
                                                                  {"invitees": ["bert"]})
    assert status == 200 and again["invitees"][0]["status"] == "ringing"
    await wait_until(lambda: not first.app[CALLS].timers and not first.app[CALLS].tasks, timeout=5)
    _, now = await bert.json("GET", f"/api/calls/{call['id']}")
    assert now["invitees"][0]["status"] == "ringing"  # the first ring's end was not the second's
    await bert_ws.close()

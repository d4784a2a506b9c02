"""Two server processes sharing one Redis (serve --redis): rooms, signals and resumes across them.

Each "process" here is an app of its own in the test's event loop, with its own Hub and its
own name in the cluster; the restart test (test_restart.py) uses real processes.
"""

from __future__ import annotations

import asyncio

import pytest

from p2pconf.appkeys import CLUSTER, HUB
from p2pconf.server import create_app

from .conftest import Peer, wait_until


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
    a, b = await greeted(first), await greeted(second)
    await a.join("Daily", "Anna")
    await b.join("Daily", "Bert")
    await a.expect("peer-joined")
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


@pytest.mark.parametrize("two", [1.0], indirect=True)  # a grace period of 1 s
async def test_a_dead_process_leaves_no_ghosts(two, config):
    first, second = two
    a, b = await greeted(first), await greeted(second)
    await a.join("Daily", "Anna")
    await b.join("Daily", "Bert")
    await a.expect("peer-joined")
    await die(first)
    first.app[HUB].sessions.clear()
    left = await b.expect("peer-left", timeout=config.resume_grace_s + 5)
    assert left == {"type": "peer-left", "id": a.id, "reason": "timeout"}
    await wait_until(lambda: a.id not in second.app[HUB].rooms["Daily"].members)

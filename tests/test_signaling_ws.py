"""The signaling WebSocket, two or three real sockets per test."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import WSMsgType

from p2pconf import protocol
from p2pconf.server import HUB, create_app

from .conftest import Peer, three_in_a_room


async def test_welcome_carries_id_version_and_no_ice_servers_by_default(connect):
    peer = await connect()
    assert peer.welcome["version"] == protocol.PROTOCOL_VERSION
    assert peer.welcome["iceServers"] == []
    assert peer.welcome["heartbeat"] == {"serverPingS": 1.0, "clientPingS": 0.5}
    assert len(peer.id) == 8


async def test_configured_turn_gets_time_limited_credentials(aiohttp_client, config):
    config.stun_urls, config.turn_urls, config.turn_secret = ["stun:s.test:3478"], ["turn:t.test:3478"], "k"
    client = await aiohttp_client(create_app(config))
    ws = await client.ws_connect("/ws")
    await ws.send_json({"type": "hello", "version": 1})
    welcome = await ws.receive_json()
    stun, turn = welcome["iceServers"]
    assert stun == {"urls": ["stun:s.test:3478"]}
    expiry, user = turn["username"].split(":")
    assert user == welcome["id"] and int(expiry) > 0 and turn["credential"]


async def test_join_lists_members_and_tells_them(connect):
    a, b = await connect(), await connect()
    joined_a = await a.join("room", "Anna", {"mode": "audio-only"})
    assert joined_a["peers"] == []
    joined_b = await b.join("room", "Bert")
    assert joined_b["peers"] == [{"id": a.id, "name": "Anna", "media": {"mode": "audio-only", "mic": True, "cam": False}, "focus": None}]
    announced = await a.expect("peer-joined")
    assert announced["peer"]["id"] == b.id and announced["peer"]["name"] == "Bert"


async def test_signal_goes_to_exactly_one_peer_with_the_sender_stamped(connect):
    a, b, c = await three_in_a_room(connect)
    await c.send(type="offer", to=a.id, sdp="v=0 offer")
    await c.send(type="candidate", to=a.id, candidate={"candidate": "candidate:1 1 udp 9 127.0.0.1 5 typ host", "sdpMid": "0"})
    await c.send(type="candidate", to=a.id, candidate=None)
    offer = await a.expect("offer")
    assert offer == {"type": "offer", "from": c.id, "to": a.id, "sdp": "v=0 offer"}
    assert (await a.expect("candidate"))["candidate"]["sdpMid"] == "0"
    assert (await a.expect("candidate"))["candidate"] is None
    await b.silent()
    await a.send(type="answer", to=c.id, sdp="v=0 answer")
    assert (await c.expect("answer"))["from"] == a.id


async def test_forged_sender_and_foreign_room_are_refused(connect):
    a, b, x = await connect(), await connect(), await connect()
    await a.join("r", "A")
    await b.join("r", "B")
    await a.expect("peer-joined")
    await x.join("elsewhere", "X")
    await x.send(type="offer", to=a.id, sdp="v=0")
    assert (await x.expect("error"))["code"] == "unknown-peer"
    await b.send(type="offer", to=a.id, sdp="v=0", **{"from": x.id})
    err = await b.expect("error")
    assert err["code"] == "forged-sender" and err["ref"] == "offer"
    await a.silent()
    # both sockets stay usable after a refused message
    await b.send(type="offer", to=a.id, sdp="v=0")
    assert (await a.expect("offer"))["from"] == b.id


async def test_bad_input_gets_a_clear_error_and_the_socket_stays_open(connect):
    a = await connect()
    await a.ws.send_str("{not json")
    assert (await a.expect("error"))["code"] == "bad-json"
    await a.ws.send_str("[1, 2]")
    assert (await a.expect("error"))["code"] == "bad-json"
    await a.send(nottype=1)
    assert (await a.expect("error"))["code"] == "bad-message"
    await a.send(type="dance")
    assert (await a.expect("error"))["code"] == "unknown-type"
    await a.send(type="offer", to="nobody", sdp="v=0")
    assert (await a.expect("error"))["code"] == "not-joined"
    await a.send(type="join", room="r", name="")
    assert (await a.expect("error"))["code"] == "bad-message"
    await a.send(type="join", room="r", name="A", media={"mode": "hologram"})
    assert (await a.expect("error"))["code"] == "bad-message"
    await a.ws.send_bytes(b"\x00\x01")
    assert (await a.expect("error"))["code"] == "bad-json"
    await a.send(type="ping")
    await a.expect("pong")


async def test_handshake_must_come_first_with_our_version(connect):
    a = await connect(hello=False)
    await a.send(type="join", room="r", name="A")
    assert (await a.expect("error"))["code"] == "bad-message"
    assert (await a.ws.receive()).type in (WSMsgType.CLOSE, WSMsgType.CLOSED)
    assert a.ws.close_code == protocol.CLOSE_PROTOCOL

    b = await connect(hello=False)
    await b.send(type="hello", version=999)
    assert (await b.expect("error"))["code"] == "version-unsupported"
    await b.ws.receive()
    assert b.ws.close_code == protocol.CLOSE_PROTOCOL


async def test_oversized_message_closes_with_1009_and_room_is_unaffected(connect, client):
    a, b = await connect(), await connect()
    await a.join("r", "A")
    await b.join("r", "B")
    await a.expect("peer-joined")
    await b.send(type="offer", to=a.id, sdp="x" * (protocol.MAX_MESSAGE_BYTES + 10))
    frame = await b.ws.receive(timeout=3)
    assert frame.type in (WSMsgType.CLOSE, WSMsgType.CLOSED)
    assert b.ws.close_code == protocol.CLOSE_TOO_LARGE
    left = await a.expect("peer-left")
    assert left == {"type": "peer-left", "id": b.id, "reason": "closed"}
    assert list(client.server.app[HUB].rooms["r"].members) == [a.id]


async def test_flood_is_cut_off_with_4029_and_others_keep_talking(aiohttp_client, config):
    config.rate_per_s, config.rate_burst = 5.0, 20
    client = await aiohttp_client(create_app(config))
    a, b, c = [Peer(await client.ws_connect("/ws")) for _ in range(3)]
    for p in (a, b, c):
        await p.send(type="hello", version=1)
        p.id = (await p.expect("welcome"))["id"]
    await a.join("r", "A"), await b.join("r", "B"), await c.join("r", "C")
    for _ in range(200):  # bounded flood
        try:
            await b.send(type="ping")
        except ConnectionError:
            break
    codes = []
    while True:
        frame = await b.ws.receive(timeout=3)
        if frame.type != WSMsgType.TEXT:
            break
        codes.append(frame.json()["type"] if frame.json()["type"] != "error" else frame.json()["code"])
    assert "rate-limited" in codes
    assert b.ws.close_code == protocol.CLOSE_FLOOD
    # a and c still work
    await c.send(type="offer", to=a.id, sdp="v=0")
    while (msg := await a.recv())["type"] != "offer":
        assert msg["type"] in ("peer-joined", "peer-left")
    assert msg["from"] == c.id


async def test_seventh_joiner_gets_room_full_and_nothing_changes(connect, client):
    peers = [await connect() for _ in range(7)]
    for i, p in enumerate(peers[:6]):
        await p.join("big", f"P{i}")
    for p in peers[:6]:  # drain announcements
        for _ in range(5 - peers.index(p)):
            await p.expect("peer-joined")
    seventh = peers[6]
    await seventh.send(type="join", room="big", name="Late")
    err = await seventh.expect("error")
    assert err["code"] == "room-full" and err["ref"] == "join"
    for p in peers[:6]:
        await p.silent(0.1)
    assert len(client.server.app[HUB].rooms["big"].members) == 6
    # the refused client can still join another room
    assert (await seventh.join("small", "Late"))["peers"] == []


async def test_media_state_reaches_the_others(connect):
    a, b = await connect(), await connect()
    await a.join("r", "A")
    await b.join("r", "B")
    await a.expect("peer-joined")
    await b.send(type="media", media={"mic": False})
    change = await a.expect("peer-media")
    assert change == {"type": "peer-media", "id": b.id, "media": {"mode": "audio+video", "mic": False, "cam": True}}
    await b.silent(0.1)


async def test_leave_and_disconnect_tell_the_room(connect):
    a, b, c = await three_in_a_room(connect)
    await b.send(type="leave")
    await b.expect("left")
    assert (await a.expect("peer-left")) == {"type": "peer-left", "id": b.id, "reason": "left"}
    await c.expect("peer-left")
    await c.ws.close()
    assert (await a.expect("peer-left"))["id"] == c.id


async def test_vanished_client_is_noticed_and_the_room_told(connect, client, config):
    a = await connect()
    silent = await connect(autoping=False)  # never answers the server's pings
    await a.join("r", "A")
    await silent.join("r", "Ghost")
    await a.expect("peer-joined")
    # heartbeat_s=1: ping after 1 s of silence, dead 0.5 s later; then the grace period of 1 s
    # for a resume, checked every second (45 s with the defaults)
    left = await a.expect("peer-left", timeout=1.5 * config.heartbeat_s + config.resume_grace_s + 2)
    assert left == {"type": "peer-left", "id": silent.id, "reason": "timeout"}


async def test_foreign_origin_is_refused(client, connect):
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        await client.ws_connect("/ws", origin="https://evil.example")
    assert err.value.status == 403
    own = f"http://{client.host}:{client.port}"
    peer = await connect(origin=own)
    assert peer.id


async def test_public_url_sets_the_allowed_origin(aiohttp_client, config):
    config.public_url = "https://conf.example.org/"
    client = await aiohttp_client(create_app(config))
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await client.ws_connect("/ws", origin=f"http://{client.host}:{client.port}")
    ws = await client.ws_connect("/ws", origin="https://conf.example.org")
    await ws.close()


async def test_forwarded_headers_only_from_trusted_proxies(aiohttp_client, config):
    proxied = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "conf.example.org"}
    untrusted = await aiohttp_client(create_app(config))
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await untrusted.ws_connect("/ws", origin="https://conf.example.org", headers=proxied)
    config.trusted_proxies = ["127.0.0.0/8"]
    trusted = await aiohttp_client(create_app(config))
    ws = await trusted.ws_connect("/ws", origin="https://conf.example.org", headers=proxied)
    await ws.close()


async def test_shutdown_closes_sockets_with_restart(aiohttp_server, config):
    server = await aiohttp_server(create_app(config))
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(server.make_url("/ws"))
        await ws.send_json({"type": "hello", "version": 1})
        await ws.receive_json()
        closing = asyncio.create_task(server.close())
        frame = await ws.receive(timeout=5)
        assert frame.type in (WSMsgType.CLOSE, WSMsgType.CLOSED)
        assert ws.close_code == protocol.CLOSE_RESTART  # 1012: resume at once
        await closing


async def test_index_and_health_pages(client, connect):
    page = await client.get("/")
    assert page.status == 200 and "Videokonferenz" in await page.text()
    await (await connect()).join("r", "A")
    health = await (await client.get("/healthz")).json()
    assert health["rooms"] == 1 and health["clients"] == 1

"""The Python protocol client: URLs, and reconnecting after the server dies or restarts."""

from __future__ import annotations

import pytest
from aiohttp import web

from p2pconf.bots.client import ServerError, SignalingClient, ws_url
from p2pconf.server import HUB, create_app

from .conftest import wait_until


def test_ws_url():
    assert ws_url("http://127.0.0.1:8080") == "ws://127.0.0.1:8080/ws"
    assert ws_url("https://conf.example.org/p2p/") == "wss://conf.example.org/p2p/ws"
    with pytest.raises(ValueError):
        ws_url("ftp://x")


async def test_client_notices_a_silent_server_and_reconnects(aiohttp_server):
    connections = []

    async def mute_server(request):  # shakes hands, then never answers again
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        connections.append(ws)
        await ws.receive_json()
        await ws.send_json({"type": "welcome", "version": 1, "id": f"p{len(connections)}",
                            "iceServers": [], "heartbeat": {"clientPingS": 0.2}})
        await ws.receive_json()
        await ws.send_json({"type": "joined", "room": "r", "id": "x", "peers": []})
        async for _ in ws:
            pass
        return ws

    app = web.Application()
    app.router.add_get("/ws", mute_server)
    server = await aiohttp_server(app)
    seen = []

    async def on_message(msg):
        seen.append(msg["type"])

    client = SignalingClient(str(server.make_url("/")), on_message, max_backoff_s=0.5)
    await client.connect()
    await client.join("r", "Bot")
    try:
        # silent for 2 ping intervals (0.4 s) -> reconnect after <= 0.6 s backoff
        await wait_until(lambda: client.reconnects >= 1, timeout=5)
        assert len(connections) >= 2 and "reconnected" in seen and client.id != "p1"
    finally:
        await client.close()


async def test_client_rejoins_after_a_server_restart(aiohttp_server, config, unused_tcp_port):
    first = await aiohttp_server(create_app(config), port=unused_tcp_port)
    events = []

    async def on_message(msg):
        events.append(msg)

    client = SignalingClient(str(first.make_url("/")), on_message, max_backoff_s=0.3)
    await client.connect()
    await client.join("standup", "Bot")
    old_id = client.id
    await first.close()
    second = await aiohttp_server(create_app(config), port=unused_tcp_port)
    try:
        await wait_until(lambda: client.reconnects == 1, timeout=10)
        hub = second.app[HUB]
        assert list(hub.rooms["standup"].members) == [client.id] and client.id != old_id
        assert events[-1]["type"] == "reconnected"
    finally:
        await client.close()


async def test_refusals_raise_server_errors(client, config):
    async def ignore(msg):
        pass

    clients = [SignalingClient(str(client.make_url("/")), ignore) for _ in range(config.max_room_size + 1)]
    try:
        for i, c in enumerate(clients[:-1]):
            await c.connect()
            await c.join("full", f"P{i}")
        await clients[-1].connect()
        with pytest.raises(ServerError) as err:
            await clients[-1].join("full", "Late")
        assert err.value.code == "room-full"
    finally:
        for c in clients:
            await c.close()

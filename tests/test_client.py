"""The Python protocol client: URLs, reconnecting after the server dies or restarts, and
refusals that are final (no reconnect at all)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any, Callable

import pytest
from aiohttp import web

from p2pconf import protocol
from p2pconf.bots.client import Refused, ServerError, SignalingClient, ws_url
from p2pconf.server import HUB, create_app

from .conftest import wait_until


def count_ws(app: web.Application) -> list[float]:
    """Server side: one entry per request to /ws (each connection attempt). Call before the app starts."""
    opened: list[float] = []

    async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
        if request.path == "/ws":
            opened.append(time.monotonic())

    app.on_response_prepare.append(on_prepare)
    return opened


async def never(predicate: Callable[[], Any], seconds: float, step: float = 0.05) -> None:
    """Watch `predicate` for `seconds` (a bounded observation); fail as soon as it holds."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert not predicate(), "it happened"
        await asyncio.sleep(step)
    assert not predicate(), "it happened"


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


async def test_forbidden_on_a_rejoin_is_final_one_connection_and_no_retries(aiohttp_server, config, unused_tcp_port):
    """Issue 9: a re-join answered with `forbidden` once led to 9 retries in 3 s."""
    first = await aiohttp_server(create_app(config), port=unused_tcp_port)
    events = []

    async def on_message(msg):
        events.append(msg)

    client = SignalingClient(str(first.make_url("/")), on_message, max_backoff_s=0.2)
    await client.connect()
    await client.join("standup", "Bot")
    await first.close()  # 1001 (server shutdown): retryable
    # The server comes back without open rooms: this anonymous client may no longer join.
    closed = create_app(dataclasses.replace(config, open_rooms=False))
    opened = count_ws(closed)
    await aiohttp_server(closed, port=unused_tcp_port)
    try:
        await wait_until(lambda: client.refused, timeout=10)
        assert client.refused.code == "forbidden" and client.reconnects == 0
        assert events[-1]["type"] == "refused" and events[-1]["code"] == "forbidden"
        # Retrying every 0.2 s would make ~15 more connections in this window.
        await never(lambda: len(opened) > 1, seconds=3.0)
        assert len(opened) == 1
    finally:
        await client.close()


async def test_forbidden_on_the_first_join_raises_refused_and_closes(aiohttp_server, config):
    app = create_app(dataclasses.replace(config, open_rooms=False))
    opened = count_ws(app)
    server = await aiohttp_server(app)
    seen = []

    async def on_message(msg):
        seen.append(msg)

    client = SignalingClient(str(server.make_url("/")), on_message, max_backoff_s=0.2)
    try:
        await client.connect()
        with pytest.raises(Refused) as err:
            await client.join("anywhere", "Bot")
        assert err.value.code == "forbidden" and isinstance(err.value, ServerError)
        assert str(err.value).startswith("forbidden: ")
        await wait_until(lambda: not server.app[HUB].sessions, timeout=5)  # the client hung up
        assert len(opened) == 1 and seen == []
    finally:
        await client.close()


def closing_server(code: int) -> web.Application:
    """Welcomes, lets the client join, then closes with `code`: every time, on every connection."""

    async def handler(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.receive_json()
        await ws.send_json({"type": "welcome", "version": 1, "id": "p", "iceServers": [],
                            "heartbeat": {"clientPingS": 5}})
        await ws.receive_json()
        await ws.send_json({"type": "joined", "room": "r", "id": "p", "peers": []})
        await ws.close(code=code)
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    return app


@pytest.mark.parametrize("code", protocol.FINAL_CLOSE_CODES)
async def test_final_close_codes_stop_the_client(aiohttp_server, code):
    app = closing_server(code)
    opened = count_ws(app)
    server = await aiohttp_server(app)
    seen = []

    async def on_message(msg):
        seen.append(msg)

    client = SignalingClient(str(server.make_url("/")), on_message, max_backoff_s=0.1)
    await client.connect()
    await client.join("r", "Bot")
    try:
        await wait_until(lambda: client.refused, timeout=5)
        assert client.refused.code == code and str(client.refused).startswith(f"{code} ")
        assert seen == [{"type": "refused", "code": code, "reason": client.refused.reason}]
        await never(lambda: len(opened) > 1, seconds=1.0)  # the first retry would come within 0.6 s
    finally:
        await client.close()


async def test_a_server_shutdown_close_is_retried(aiohttp_server):
    app = closing_server(1001)
    opened = count_ws(app)
    server = await aiohttp_server(app)

    async def ignore(msg):
        pass

    client = SignalingClient(str(server.make_url("/")), ignore, max_backoff_s=0.1)
    await client.connect()
    await client.join("r", "Bot")
    try:
        await wait_until(lambda: client.reconnects >= 2, timeout=10)
        assert client.refused is None and len(opened) >= 3
    finally:
        await client.close()


@pytest.mark.parametrize("error, code", [
    (None, protocol.CLOSE_SIGNED_OUT),  # the session behind the cookie has ended
    (protocol.error_message("version-unsupported", "server speaks version 2", ref="hello"),
     protocol.CLOSE_PROTOCOL),  # a server that speaks another version: error, then 4000
])
async def test_a_final_close_during_the_handshake_raises_refused(aiohttp_server, error, code):
    async def handler(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.receive_json()
        if error:
            await ws.send_json(error)
        await ws.close(code=code)
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    server = await aiohttp_server(app)

    async def ignore(msg):
        pass

    client = SignalingClient(str(server.make_url("/")), ignore)
    with pytest.raises(Refused) as err:
        await client.connect()
    assert err.value.code == code and (error is None or error["code"] in str(err.value))
    await client.close()

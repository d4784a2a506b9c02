"""Hostile input on the WebSocket and the HTTP surface: every refusal is clear, nothing else changes.

Each test here failed on the server before issue 9 was fixed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket

import aiohttp
import pytest
from aiohttp import WSMsgType

from p2pconf.appkeys import HUB
from p2pconf.protocol import CLOSE_FLOOD, CLOSE_PROTOCOL, MAX_MESSAGE_BYTES
from p2pconf.server import create_app

from .conftest import Peer, wait_until
from .org import Browser, add_user, signed_in


async def pair(connect, room: str = "r") -> tuple[Peer, Peer]:
    """A and B in `room`, the join announcement read."""
    a, b = await connect(), await connect()
    await a.join(room, "A")
    await b.join(room, "B")
    await a.expect("peer-joined")
    return a, b


async def still_open(peer: Peer) -> None:
    await peer.send(type="ping")
    await peer.expect("pong")


async def test_deeply_nested_json_is_bad_json_and_the_socket_stays(connect):
    a, b = await pair(connect)
    await a.ws.send_str("[" * 3000 + "]" * 3000)
    err = await a.expect("error")
    assert err["code"] == "bad-json"
    deep: list = []
    for _ in range(40):  # deeper than the protocol's 32, well within what json.loads manages
        deep = [deep]
    await a.ws.send_str(json.dumps({"type": "offer", "to": b.id, "sdp": deep}))
    assert (await a.expect("error"))["code"] == "bad-json"
    await still_open(a)
    await b.silent()


@pytest.mark.parametrize("raw", [
    '{"type": "candidate", "to": "%s", "candidate": {"candidate": "c", "sdpMid": NaN}}',
    '{"type": "candidate", "to": "%s", "candidate": {"candidate": "c", "sdpMid": "0", "sdpMLineIndex": 1e999}}',
    '{"type": "offer", "to": "%s", "sdp": "v=0\\ud800"}',
])
async def test_nan_infinity_and_lone_surrogates_are_bad_json_and_never_forwarded(connect, raw):
    a, b = await pair(connect)
    await a.ws.send_str(raw % b.id)
    assert (await a.expect("error"))["code"] == "bad-json"
    await b.silent()
    await still_open(a)


@pytest.mark.parametrize("candidate", [
    {"candidate": "c", "sdpMid": {"x": 1}},
    {"candidate": "c", "sdpMid": None, "sdpMLineIndex": True},
    {"candidate": "c", "sdpMid": None, "sdpMLineIndex": -1},
    {"candidate": "c", "sdpMLineIndex": 1.5},
    {"candidate": "c" * 2000, "sdpMid": "0"},
])
async def test_candidate_fields_have_their_types(connect, candidate):
    a, b = await pair(connect)
    await a.send(type="candidate", to=b.id, candidate=candidate)
    assert (await a.expect("error"))["code"] == "bad-message"
    await b.silent()


@pytest.mark.parametrize("version", [1.0, True, "1"])
async def test_hello_needs_the_integer_version(connect, version):
    peer = await connect(hello=False)
    await peer.send(type="hello", version=version)
    assert (await peer.expect("error"))["code"] == "version-unsupported"
    frame = await peer.ws.receive(timeout=3)
    assert frame.type == WSMsgType.CLOSE and peer.ws.close_code == CLOSE_PROTOCOL


@pytest.mark.parametrize("room", ["a\u202eb", "a\u200bb", "a\x00b", "a\nb", "a\x85b", "\u2066x\u2069", "a\ufeff"])
async def test_room_names_refuse_controls_bidi_overrides_and_zero_width(connect, room):
    a = await connect()
    await a.send(type="join", room=room, name="A")
    assert (await a.expect("error"))["code"] == "bad-message"
    await a.join("fine", "A")  # nothing changed: the socket may still join


@pytest.mark.parametrize("title", [{"html": "<b>x</b>"}, ["x"], 5, "bad\u202etitle"])
async def test_title_must_be_plain_text_and_is_never_echoed_otherwise(connect, title):
    a = await connect()
    await a.send(type="join", room="r", name="A", title=title)
    assert (await a.expect("error"))["code"] == "bad-message"
    await a.send(type="join", room="r", name="A", title="  Weekly   sync ")
    assert (await a.expect("joined"))["title"] == "Weekly sync"


async def test_a_message_of_exactly_64_kib_passes_and_one_byte_more_closes_with_1009(connect):
    a, b = await pair(connect)
    envelope = json.dumps({"type": "offer", "to": b.id, "sdp": ""})
    sdp = "v" * (MAX_MESSAGE_BYTES - len(envelope))
    exact = json.dumps({"type": "offer", "to": b.id, "sdp": sdp})
    assert len(exact.encode()) == MAX_MESSAGE_BYTES
    await a.ws.send_str(exact)
    assert (await b.expect("offer"))["sdp"] == sdp
    await a.ws.send_str(json.dumps({"type": "offer", "to": b.id, "sdp": sdp + "v"}))
    frame = await a.ws.receive(timeout=3)
    assert frame.type == WSMsgType.CLOSE and a.ws.close_code == 1009


async def test_binary_frames_count_against_the_flood_limit(aiohttp_client, config):
    config.rate_per_s, config.rate_burst = 1.0, 20
    client = await aiohttp_client(create_app(config))
    ws = await client.ws_connect("/ws")
    await ws.send_json({"type": "hello", "version": 1})
    assert (await ws.receive_json(timeout=3))["type"] == "welcome"
    codes = []
    for _ in range(60):  # bounded: the server cuts us off after 19 more
        if ws.closed:
            break
        await ws.send_bytes(b"\x00" * 16)
    for _ in range(60):
        frame = await ws.receive(timeout=3)
        if frame.type != WSMsgType.TEXT:
            break
        codes.append(json.loads(frame.data)["code"])
    assert ws.close_code == CLOSE_FLOOD
    assert codes[-1] == "rate-limited" and set(codes) == {"bad-json", "rate-limited"}


class RawSocket:
    """A WebSocket client on a bare TCP stream: it reads only when told to (a client that stalls)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> "RawSocket":
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
                     .encode())
        assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).startswith(b"HTTP/1.1 101")
        return cls(reader, writer)

    def send(self, msg: dict) -> None:
        payload, mask = json.dumps(msg).encode(), os.urandom(4)
        assert len(payload) < 126
        self.writer.write(bytes([0x81, 0x80 | len(payload)]) + mask
                          + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    async def recv(self) -> tuple[int, bytes]:
        """One frame: (opcode, payload)."""
        head = await asyncio.wait_for(self.reader.readexactly(2), 5)
        length = head[1] & 0x7F
        if length == 126:
            length = int.from_bytes(await self.reader.readexactly(2), "big")
        elif length == 127:
            length = int.from_bytes(await self.reader.readexactly(8), "big")
        return head[0] & 0x0F, await asyncio.wait_for(self.reader.readexactly(length), 5)


async def test_a_client_that_stops_reading_is_closed_with_4009_and_the_room_told(aiohttp_server, config):
    """The staller reads its welcome and joined, then nothing (a long heartbeat keeps pings out of it)."""
    config.heartbeat_s, config.rate_burst = 60.0, 2000
    server = await aiohttp_server(create_app(config))
    hub = server.app[HUB]
    async with aiohttp.ClientSession() as http:
        sender = Peer(await http.ws_connect(server.make_url("/ws")))
        await sender.send(type="hello", version=1)
        await sender.expect("welcome")
        await sender.join("r", "sender")
        staller = await RawSocket.open(server.port)
        staller.send({"type": "hello", "version": 1})
        staller_id = json.loads((await staller.recv())[1])["id"]
        staller.send({"type": "join", "room": "r", "name": "staller"})
        assert json.loads((await staller.recv())[1])["type"] == "joined"
        await sender.expect("peer-joined")
        offer = {"type": "offer", "to": staller_id, "sdp": "v=0\r\n" + "a" * 60_000}
        # 60 KB offers until the server gives up on the staller (bounded: 1000 offers, 60 MB)
        for _ in range(1000):
            if staller_id not in hub.sessions:
                break
            await sender.ws.send_json(offer)
            await asyncio.sleep(0.005)  # the sender's own rate limit
        await wait_until(lambda: staller_id not in hub.sessions, timeout=10)
        left = await sender.expect("peer-left", timeout=10)
        assert left == {"type": "peer-left", "id": staller_id, "reason": "closed"}
        await still_open(sender)
        staller.writer.close()


async def test_open_rooms_never_open_a_private_call(aiohttp_server, org_config):
    org_config.open_rooms = True
    server = await aiohttp_server(create_app(org_config))
    await add_user(server.app, "anna", "Anna Berg")
    await add_user(server.app, "bert", "Bert Kraus")
    anna = Browser(str(server.make_url("/")))
    try:
        await anna.sign_in("anna")
        status, call = await anna.json("POST", "/api/calls", {"invitees": ["bert"]})
        assert status == 201
        async with aiohttp.ClientSession() as http:
            stranger = Peer(await http.ws_connect(server.make_url("/ws")))
            await stranger.send(type="hello", version=1)
            await stranger.expect("welcome")
            await stranger.send(type="join", room=call["room"]["id"], name="Eve")
            assert (await stranger.expect("error"))["code"] == "forbidden"
            await stranger.join("any other name", "Eve")  # open rooms stay open
    finally:
        await anna.close()


async def test_dns_rebinding_origin_and_host_of_the_attacker_are_refused(client):
    port = client.server.port
    evil = f"http://evil.example:{port}"
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect("/ws", origin=evil, headers={"Host": f"evil.example:{port}"})
    assert refused.value.status == 403
    ws = await client.ws_connect("/ws", origin=f"http://127.0.0.1:{port}")  # our own page still comes in
    await ws.close()


async def test_with_public_url_only_that_origin_is_let_in(aiohttp_client, config):
    config.public_url = "https://conf.example.org"
    client = await aiohttp_client(create_app(config))
    port = client.server.port
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await client.ws_connect("/ws", origin=f"http://127.0.0.1:{port}")
    ws = await client.ws_connect("/ws", origin="https://conf.example.org")
    await ws.close()


# -- HTTP: security headers and bodies ---------------------------------------------------------------


@pytest.mark.parametrize("path", ["/login", "/api/me", "/static/js/protocol.js", "/j/not-a-token", "/nowhere"])
async def test_every_answer_has_the_security_headers(client, path):
    reply = await client.get(path, allow_redirects=False)
    csp = {d.split()[0]: d.split()[1:] for d in reply.headers["Content-Security-Policy"].split("; ")}
    assert csp["script-src"] == ["'self'"] and csp["frame-ancestors"] == ["'none'"]
    assert csp["object-src"] == ["'none'"] and "'unsafe-inline'" not in reply.headers["Content-Security-Policy"]
    assert reply.headers["X-Content-Type-Options"] == "nosniff"
    assert reply.headers["Referrer-Policy"] == "no-referrer"
    assert reply.headers["Permissions-Policy"] == "camera=(self), microphone=(self), display-capture=(self)"
    assert reply.headers["X-Frame-Options"] == "DENY"


async def test_frame_ancestors_let_the_host_platform_embed_the_module(aiohttp_client, config):
    config.frame_ancestors = ["https://intranet.example.org"]
    client = await aiohttp_client(create_app(config))
    reply = await client.get("/login")
    assert "frame-ancestors https://intranet.example.org" in reply.headers["Content-Security-Policy"]
    assert "X-Frame-Options" not in reply.headers


@pytest.mark.parametrize("path, body", [
    ("/api/session", '{"login": "anna\\ud800", "password": "x"}'),
    ("/api/rooms", '{"name": "Kunde \\udfff"}'),
    ("/api/calls", '{"invitees": ["bert"], "name": "\\ud83d"}'),
    ("/api/rooms", "[" * 5000 + "]" * 5000),
    ("/api/rooms", '{"name": NaN}'),
])
async def test_api_bodies_with_surrogates_nan_or_deep_nesting_are_bad_json(org, path, body):
    anna = await signed_in(org, "anna")
    async with anna.http.post(anna.base + path, data=body, headers={"X-CSRF-Token": anna.csrf,
                                                                   "Content-Type": "application/json"}) as reply:
        assert reply.status == 400 and (await reply.json())["code"] == "bad-json"


async def test_an_api_body_over_16_kib_is_413_too_large_and_changes_nothing(org):
    anna = await signed_in(org, "anna")
    body = json.dumps({"name": "Kunde", "pad": "x" * 17_000})
    async with anna.http.post(anna.base + "/api/rooms", data=body, headers={"X-CSRF-Token": anna.csrf,
                                                                           "Content-Type": "application/json"}) as reply:
        assert (reply.status, (await reply.json())["code"]) == (413, "too-large")
    assert (await anna.json("GET", "/api/invites"))[1]["invites"] == []


@pytest.mark.parametrize("name", ["Anruf\u202e", "Zero\u200bwidth", "Tab\x00", "x" * 65])
async def test_call_titles_and_room_names_are_plain_text(org, name):
    anna = await signed_in(org, "anna")
    status, err = await anna.json("POST", "/api/calls", {"invitees": ["bert"], "name": name})
    assert (status, err["code"]) == (400, "bad-request")
    status, err = await anna.json("POST", "/api/rooms", {"name": name})
    assert (status, err["code"]) == (400, "bad-request")


async def test_revoking_an_invite_id_beyond_64_bits_is_404(org):
    anna = await signed_in(org, "anna")
    for invite_id in ("12345678901234567890", "١٢", "-1"):
        status, err = await anna.json("DELETE", f"/api/invites/{invite_id}")
        assert (status, err["code"]) == (404, "no-such-invite")


async def test_a_form_posted_with_origin_null_still_needs_its_csrf_token(org):
    """Under Referrer-Policy: no-referrer a browser's own form says `Origin: null`."""
    b = org.browser()
    async with b.http.get(b.base + "/login"):
        pass
    null = {"Origin": "null"}
    async with b.http.post(b.base + "/login", data={"login": "anna", "password": "correct horse battery"},
                           headers=null, allow_redirects=False) as reply:
        assert reply.status == 403 and (await reply.json())["code"] == "csrf"
    form = {"login": "anna", "password": "correct horse battery", "csrf": b.cookie("p2pconf_csrf")}
    async with b.http.post(b.base + "/login", data=form, headers=null, allow_redirects=False) as reply:
        assert reply.status == 302


@pytest.mark.parametrize("first", [b"\x00binary", "not json", '{"version": 1}'])
async def test_a_first_message_that_is_no_hello_closes_with_4000(connect, first):
    peer = await connect(hello=False)
    await (peer.ws.send_bytes(first) if isinstance(first, bytes) else peer.ws.send_str(first))
    assert (await peer.expect("error"))["code"] in ("bad-json", "bad-message")
    frame = await peer.ws.receive(timeout=3)
    assert (frame.type, frame.data) == (WSMsgType.CLOSE, CLOSE_PROTOCOL)

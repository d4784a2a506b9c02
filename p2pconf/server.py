"""The aiohttp application: pages, static files and the signaling WebSocket at /ws.

Media never passes through here; the server only introduces peers (docs/protocol.md).
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import weakref
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import WSCloseCode, WSMsgType, web

from . import __version__, api, pages, protocol
from .appkeys import CALLS, CONFIG, HUB, IDENTITY, SOCKETS, STORE, THROTTLE
from .auth import Identity, LoginThrottle
from .calls import Calls
from .config import Config
from .ice import ice_servers_for
from .middleware import (
    api_error,
    csrf_cookie_middleware,
    csrf_middleware,
    forwarded_middleware,
    identity_middleware,
    origin_allowed,
)
from .ratelimit import TokenBucket
from .signaling import HandshakeError, Hub, ProtocolError
from .store import Store

log = logging.getLogger("p2pconf.server")

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
OUTBOX_LIMIT = 512  # queued messages per client before it counts as stalled

def create_app(config: Config | None = None) -> web.Application:
    """Build the application for `config` (defaults: Config())."""
    config = config or Config()
    app = web.Application(
        middlewares=[forwarded_middleware, identity_middleware, csrf_middleware, csrf_cookie_middleware],
        client_max_size=64 * 1024,
    )
    app[CONFIG] = config
    app[HUB] = Hub(
        max_room_size=config.max_room_size,
        ice_servers=lambda peer_id: ice_servers_for(
            peer_id,
            stun_urls=config.stun_urls,
            turn_urls=config.turn_urls,
            turn_secret=config.turn_secret,
            turn_ttl_s=config.turn_ttl_s,
        ),
        welcome_extra={
            "heartbeat": {"serverPingS": config.heartbeat_s, "clientPingS": config.client_ping_s},
            "uploadKbps": config.upload_kbps,
        },
    )
    app[CALLS] = Calls(app[HUB], config.ring_timeout_s)
    app[THROTTLE] = LoginThrottle(config.login_limit, config.login_window_s)
    app[SOCKETS] = weakref.WeakSet()
    app.cleanup_ctx.append(open_store)
    aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(WEB_DIR / "templates"), autoescape=True)
    pages.routes(app)
    api.routes(app)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/ws", websocket)
    app.router.add_static("/static", WEB_DIR / "static")
    app.on_shutdown.append(close_sockets)
    return app


async def open_store(app: web.Application):
    """Open the data directory's store for the app's lifetime."""
    app[STORE] = await Store.open(app[CONFIG].data_dir)
    if app[CONFIG].public_url:  # lets `p2pconf rooms invite` print links with the right origin
        await app[STORE].set_setting("public_url", app[CONFIG].public_url)
    yield
    app[CALLS].close()
    await app[STORE].close()


async def healthz(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    return web.json_response(
        {"ok": True, "version": __version__, "rooms": len(hub.rooms), "clients": len(hub.sessions)}
    )


async def authorize_join(request: web.Request, msg: dict[str, Any]) -> dict[str, Any]:
    """Resolve a `join` for this connection's identity: which room, under which name and mode.

    Users enter the call rooms they belong to and guests their one room, under the
    name the server knows; with `open_rooms`, anyone may enter any room by name.
    """
    identity: Identity = request[IDENTITY]
    store = request.app[STORE]
    room_id = msg.get("room")
    if identity.is_guest:
        if room_id != identity.guest_room.id:
            raise ProtocolError("forbidden", "a guest link opens one room only")
        room, name = identity.guest_room, identity.guest_name
    elif identity.is_user:
        room = await store.room(room_id) if isinstance(room_id, str) else None
        if room is None or not await store.is_member(room.id, identity.user.id):
            raise ProtocolError("forbidden", "this room is not yours")
        name = identity.user.name
    elif request.app[CONFIG].open_rooms:
        return msg
    else:
        raise ProtocolError("forbidden", "sign in or use an invitation link first")
    media = protocol.clean_media(msg.get("media"))
    if room.mode == "audio-only":
        media = protocol.clean_media({"mode": "audio-only"}, media)
    return {**msg, "room": room.id, "name": name, "title": room.name, "media": media}


# -- the signaling WebSocket ------------------------------------------------------


async def websocket(request: web.Request) -> web.StreamResponse:
    """One client connection: parse, rate-limit and hand each message to the hub."""
    config = request.app[CONFIG]
    if not origin_allowed(request):
        raise api_error(403, "bad-origin", "cross-origin WebSocket refused")
    ws = web.WebSocketResponse(heartbeat=config.heartbeat_s, max_msg_size=protocol.MAX_MESSAGE_BYTES)
    await ws.prepare(request)
    request.app[SOCKETS].add(ws)

    outbox: asyncio.Queue[dict[str, Any] | int] = asyncio.Queue()

    stalled = False

    def send(msg: dict[str, Any]) -> None:
        nonlocal stalled
        if stalled:
            return
        if outbox.qsize() >= OUTBOX_LIMIT:  # the client does not read: drop it
            stalled = True
            msg = protocol.CLOSE_STALLED
        outbox.put_nowait(msg)

    closed_by_us: int | None = None

    def close_after_flush(code: int) -> None:
        nonlocal closed_by_us
        closed_by_us = code
        outbox.put_nowait(code)

    hub = request.app[HUB]
    identity: Identity = request[IDENTITY]
    session = hub.connect(
        send,
        login=identity.user.login if identity.is_user else None,
        guest_room=identity.guest_room.id if identity.is_guest else None,
        close=close_after_flush,
    )
    writer = asyncio.create_task(_write(ws, outbox))
    bucket = TokenBucket(config.rate_per_s, config.rate_burst)
    reason = "left"
    try:
        async for frame in ws:
            if frame.type == WSMsgType.ERROR:  # e.g. over max_msg_size: aiohttp closes with 1009
                reason = "closed"
                break
            if frame.type != WSMsgType.TEXT:
                send(protocol.error_message("bad-json", "only text frames are accepted"))
                continue
            if not bucket.take():
                send(protocol.error_message("rate-limited"))
                close_after_flush(protocol.CLOSE_FLOOD)
                reason = "closed"
                break
            msg = _parse(frame.data)
            if isinstance(msg, str):
                send(protocol.error_message(msg))
                continue
            try:
                if msg.get("type") == "join" and session.greeted and session.room is None:
                    msg = await authorize_join(request, msg)
                hub.handle(session, msg)
                if msg.get("type") == "hello" and session.login:
                    for ring in request.app[CALLS].pending_rings(session.login):
                        send(ring)
            except HandshakeError as exc:
                send(protocol.error_message(exc.code, str(exc), ref=msg.get("type")))
                close_after_flush(protocol.CLOSE_PROTOCOL)
                reason = "closed"
                break
            except ProtocolError as exc:
                send(protocol.error_message(exc.code, exc.detail, ref=msg.get("type")))
            if stalled:
                break
    finally:
        # A missed pong closes the transport; aiohttp may then cancel this handler.
        if isinstance(ws.exception(), asyncio.TimeoutError):
            reason = "timeout"
        elif closed_by_us not in (None, WSCloseCode.OK):
            reason = "closed"
        hub.disconnect(session, reason)
        if not writer.done():
            close_after_flush(WSCloseCode.OK)
            try:
                await asyncio.wait_for(writer, 5)
            except asyncio.TimeoutError:
                writer.cancel()
        await ws.close()
    return ws


def _parse(data: str) -> dict[str, Any] | str:
    """The message as a dict, or the error code that refuses it."""
    try:
        msg = json.loads(data)
    except ValueError:
        return "bad-json"
    if not isinstance(msg, dict):
        return "bad-json"
    if not isinstance(msg.get("type"), str):
        return "bad-message"
    return msg


async def _write(ws: web.WebSocketResponse, outbox: asyncio.Queue) -> None:
    """Send queued messages in order; an int in the queue is a close code."""
    while True:
        item = await outbox.get()
        if isinstance(item, int):
            await ws.close(code=item)
            return
        try:
            await ws.send_json(item)
        except ConnectionError:
            return


async def close_sockets(app: web.Application) -> None:
    for ws in list(app[SOCKETS]):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")


# -- running -----------------------------------------------------------------------


def ssl_context(config: Config) -> ssl.SSLContext | None:
    if not config.tls_cert:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(config.tls_cert, config.tls_key)
    return ctx


async def _count_users(config: Config) -> int:
    store = await Store.open(config.data_dir)
    try:
        return await store.count_users()
    finally:
        await store.close()


def serve(config: Config) -> None:
    """Run the server until interrupted."""
    if asyncio.run(_count_users(config)) == 0:
        print(f"No users yet. Add the first one with:\n"
              f"  p2pconf users add LOGIN --name 'Display Name' --password-stdin --data {config.data_dir}")
    scheme = "https" if config.tls_cert else "http"
    print(f"p2pconf {__version__} on {scheme}://{config.host}:{config.port}/ (data in {config.data_dir})")
    web.run_app(
        create_app(config),
        host=config.host,
        port=config.port,
        ssl_context=ssl_context(config),
        print=None,
    )

"""The aiohttp application: pages, static files and the signaling WebSocket at /ws.

Media never passes through here; the server only introduces peers (docs/protocol.md).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import ssl
import weakref
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import WSCloseCode, WSMsgType, web
from yarl import URL

from . import __version__, protocol
from .config import Config
from .ice import ice_servers_for
from .ratelimit import TokenBucket
from .signaling import HandshakeError, Hub, ProtocolError

log = logging.getLogger("p2pconf.server")

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
OUTBOX_LIMIT = 512  # queued messages per client before it counts as stalled

CONFIG = web.AppKey("config", Config)
HUB = web.AppKey("hub", Hub)
SOCKETS = web.AppKey("sockets", weakref.WeakSet)


def create_app(config: Config | None = None) -> web.Application:
    """Build the application for `config` (defaults: Config())."""
    config = config or Config()
    app = web.Application(middlewares=[forwarded_middleware])
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
            "heartbeat": {"serverPingS": config.heartbeat_s, "clientPingS": config.client_ping_s}
        },
    )
    app[SOCKETS] = weakref.WeakSet()
    aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(WEB_DIR / "templates"), autoescape=True)
    app.router.add_get("/", index)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/ws", websocket)
    app.router.add_static("/static", WEB_DIR / "static")
    app.on_shutdown.append(close_sockets)
    return app


# -- reverse proxies and origins ------------------------------------------------


@web.middleware
async def forwarded_middleware(request: web.Request, handler):
    """Believe X-Forwarded-For/-Proto/-Host only from configured trusted proxies."""
    networks = request.app[CONFIG].trusted_networks()
    if networks and request.remote and _in_networks(request.remote, networks):
        changes: dict[str, Any] = {}
        if proto := request.headers.get("X-Forwarded-Proto"):
            changes["scheme"] = proto.split(",")[0].strip()
        if host := request.headers.get("X-Forwarded-Host"):
            changes["host"] = host.split(",")[0].strip()
        if fwd_for := request.headers.get("X-Forwarded-For"):
            changes["remote"] = fwd_for.split(",")[0].strip()
        if changes:
            request = request.clone(**changes)
    return await handler(request)


def _in_networks(address: str, networks) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def site_origin(request: web.Request) -> str:
    """The origin users see: --public-url, else scheme://host of this request."""
    public = request.app[CONFIG].public_url
    url = URL(public) if public else URL.build(scheme=request.scheme, authority=request.host)
    return str(url.origin())


def origin_allowed(request: web.Request) -> bool:
    """A browser's WebSocket must come from our own origin.

    Clients that send no Origin (bots, command-line tools) are not browsers and
    cannot be used for cross-site requests, so they are let through.
    """
    origin = request.headers.get("Origin")
    return origin is None or origin.rstrip("/") == site_origin(request)


# -- pages ----------------------------------------------------------------------


@aiohttp_jinja2.template("index.html")
async def index(request: web.Request) -> dict[str, Any]:
    return {"version": __version__, "origin": site_origin(request)}


async def healthz(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    return web.json_response(
        {"ok": True, "version": __version__, "rooms": len(hub.rooms), "clients": len(hub.sessions)}
    )


# -- the signaling WebSocket ------------------------------------------------------


async def websocket(request: web.Request) -> web.StreamResponse:
    """One client connection: parse, rate-limit and hand each message to the hub."""
    config = request.app[CONFIG]
    if not origin_allowed(request):
        raise web.HTTPForbidden(
            text=json.dumps({"code": "bad-origin", "message": "cross-origin WebSocket refused"}),
            content_type="application/json",
        )
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

    def close_after_flush(code: int) -> None:
        outbox.put_nowait(code)

    hub = request.app[HUB]
    session = hub.connect(send)
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
                hub.handle(session, msg)
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


def serve(config: Config) -> None:
    """Run the server until interrupted."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    scheme = "https" if config.tls_cert else "http"
    print(f"p2pconf {__version__} on {scheme}://{config.host}:{config.port}/ (data in {config.data_dir})")
    web.run_app(
        create_app(config),
        host=config.host,
        port=config.port,
        ssl_context=ssl_context(config),
        print=None,
    )

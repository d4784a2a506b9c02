"""The aiohttp application: pages, static files and the signaling WebSocket at /ws.

Media never passes through here; the server only introduces peers (docs/protocol.md).
"""

from __future__ import annotations

import asyncio
import gc
import importlib.resources
import ipaddress
import logging
import math
import secrets
import ssl
import sys
import time
import weakref
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
import redis.asyncio as redis
from aiohttp import WebSocketError, WSCloseCode, WSMsgType, web
from yarl import URL

from . import __version__, api, audit, linktest, pages, protocol
from .access import watch_access
from .appkeys import CALLS, CLUSTER, CONFIG, HASHES, HUB, IDENTITY, METRICS, SOCKETS, STORE, THROTTLE
from .auth import HashPool, Identity, LoginThrottle
from .calls import Calls
from .cluster import Cluster
from .cluster_state import RedisCallBook, RedisThrottle, RedisWindow
from .config import Config
from .ice import ice_servers_for
from .metrics import PROCESS, Metrics, metrics_app
from .middleware import (
    FairStart,
    api_error,
    busy_middleware,
    csrf_cookie_middleware,
    csrf_middleware,
    fair_start_middleware,
    forwarded_middleware,
    identity_middleware,
    identity_of,
    origin_allowed,
    security_headers,
)
from .ratelimit import TokenBucket
from .signaling import HandshakeError, Hub, ProtocolError, Session
from .store import Store, StoreError

log = logging.getLogger("p2pconf.server")

WEB_DIR = Path(str(importlib.resources.files("p2pconf.web")))  # web/ of the checkout, package data when installed


def create_app(config: Config | None = None) -> web.Application:
    """Build the application for `config` (defaults: Config())."""
    config = config or Config()
    app = web.Application(
        middlewares=[fair_start_middleware(FairStart(config.requests_per_iteration)), forwarded_middleware,
                     busy_middleware, identity_middleware, csrf_middleware,
                     csrf_cookie_middleware],
        client_max_size=64 * 1024,
        # aiohttp rounds timers of 5 s and more up to the whole second, so the heartbeat pings
        # of thousands of sockets fell due together: ~500 pings in one loop turn, a stall of
        # ~45 ms every second at 5,000 pages. Never rounded, they stay spread out.
        handler_args={"timeout_ceil_threshold": math.inf},
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
            "resumeGraceS": config.resume_grace_s,
        },
        resume_grace_s=config.resume_grace_s,
    )
    metrics = app[METRICS] = Metrics.for_hub(app[HUB])
    app[CALLS] = Calls(app[HUB], config.ring_timeout_s, config.calls_per_minute,
                       on_outcome=lambda status: metrics.rings.labels(PROCESS, status).inc())
    app[THROTTLE] = LoginThrottle(config.login_limit, config.login_window_s)
    app[HASHES] = HashPool(config.hash_workers, config.hash_waiting)
    app[SOCKETS] = weakref.WeakSet()
    app.cleanup_ctx.append(open_store)
    app.cleanup_ctx.append(watch_access)
    app.cleanup_ctx.append(pace_presence)
    app.cleanup_ctx.append(expire_detached)
    app.cleanup_ctx.append(record_lobby_answers)
    if config.metrics_port:
        app.cleanup_ctx.append(serve_metrics)
    if config.redis_url:
        app.cleanup_ctx.append(join_cluster)
    app.on_response_prepare.append(security_headers)
    aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(WEB_DIR / "templates"), autoescape=True)
    pages.routes(app)
    api.routes(app)
    linktest.routes(app)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/ws", websocket)
    app.router.add_static("/static", WEB_DIR / "static")
    app.on_shutdown.append(close_sockets)
    return app


async def open_store(app: web.Application):
    """Open the data directory's store for the app's lifetime."""
    app[STORE] = await Store.open(app[CONFIG].store_location)
    if app[CONFIG].public_url:  # lets `p2pconf rooms invite` print links with the right origin
        await app[STORE].set_setting("public_url", app[CONFIG].public_url)
    yield
    app[CALLS].close()
    app[HASHES].close()
    await app[STORE].close()


async def join_cluster(app: web.Application):
    """cleanup_ctx: share rooms, routing, resumable sessions, presence, calls and the sign-in
    throttle with the other processes."""
    config = app[CONFIG]
    # its own name in the cluster: a restarted process (same host and pid, in a container) is another one
    client = redis.from_url(config.redis_url)
    cluster = app[CLUSTER] = Cluster(client, app[HUB], f"{PROCESS}:{secrets.token_hex(3)}",
                                     grace_s=config.resume_grace_s)
    app[CALLS].book = RedisCallBook(client)
    app[CALLS].start_window = RedisWindow(client, max(1, int(config.calls_per_minute)), 60.0)
    app[THROTTLE] = RedisThrottle(client, config.login_limit, config.login_window_s)
    await cluster.start()
    yield
    app[CALLS].close()  # its ring timers use the cluster's client
    await cluster.stop()


PRESENCE_PER_TURN = 128  # presence messages sent per event-loop turn: a fan-out never holds up signaling


async def pace_presence(app: web.Application):
    """cleanup_ctx: deliver presence changes in slices, one per turn of the event loop.

    A popular user's change goes to hundreds of watchers, each a socket write; sent at
    once they would stall a relayed offer behind them for tens of milliseconds."""
    hub, waiting = app[HUB], asyncio.Event()

    async def deliver() -> None:
        while True:
            await waiting.wait()
            waiting.clear()
            while hub.deliver_presence(PRESENCE_PER_TURN):
                await asyncio.sleep(0)

    hub.presence_waiting = waiting.set
    task = asyncio.create_task(deliver())
    yield
    task.cancel()
    hub.presence_waiting = hub.deliver_presence


async def record_lobby_answers(app: web.Application):
    """cleanup_ctx: a member's answer to a waiting guest goes into the store before the guest
    hears it: let in (its session may join from now on, on any process), or turned away (the
    session ends, and with it the guest's sockets on every process: 4004)."""
    hub, pending = app[HUB], set()

    async def record(guest: Session, admit: bool) -> None:
        try:
            if admit:
                await app[STORE].admit_guest(guest.auth)
            else:
                await app[STORE].refuse_guest(guest.auth)
        except StoreError:
            log.exception("lobby: could not record the answer for %s", guest.id)
            return
        audit.event("guest-admitted" if admit else "guest-refused", peer=guest.id, room=guest.waiting)
        hub.let_in(guest, admit)

    def answer(guest: Session, admit: bool) -> None:
        task = asyncio.create_task(record(guest, admit))
        pending.add(task)
        task.add_done_callback(pending.discard)

    hub.answer_guest = answer
    yield
    hub.answer_guest = hub.let_in
    if pending:
        await asyncio.wait(pending, timeout=5)


async def expire_detached(app: web.Application):
    """cleanup_ctx: once a second, end the sessions whose grace period is over."""
    async def sweep() -> None:
        while True:
            await asyncio.sleep(1.0)
            for session in app[HUB].expire_detached():
                audit.event("resume-expired", peer=session.id, login=session.login)
                app[METRICS].resumes.labels(PROCESS, "expired").inc()

    task = asyncio.create_task(sweep())
    yield
    task.cancel()


async def serve_metrics(app: web.Application):
    """cleanup_ctx: /metrics on --metrics-host:--metrics-port, apart from the public port."""
    config = app[CONFIG]
    runner = web.AppRunner(metrics_app(app[METRICS]), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, config.metrics_host, config.metrics_port).start()
    yield
    await runner.cleanup()


async def healthz(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    return web.json_response(
        {"ok": True, "version": __version__, "rooms": len(hub.rooms), "clients": len(hub.sessions)}
    )


async def authorize_join(request: web.Request, msg: dict[str, Any]) -> dict[str, Any]:
    """Resolve a `join` for this connection's identity: which room, under which name and mode.

    Users enter the call rooms they belong to and guests their one room, under the
    name the server knows; with `open_rooms`, anyone else may enter any room by name,
    except the private rooms the store holds. The session is read again, so a right
    lost since the socket opened is lost for joins too. `lobby` in the answer: a guest
    who must wait until a member lets it in (docs/protocol.md, "Lobby").
    """
    identity = await identity_of(request)
    if identity.session_id != request[IDENTITY].session_id:
        raise ProtocolError("forbidden", "your session has ended; sign in again")
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
        if isinstance(room_id, str) and await store.room(room_id.strip()) is not None:
            raise ProtocolError("forbidden", "this room is private")
        return {**msg, "lobby": False}
    else:
        raise ProtocolError("forbidden", "sign in or use an invitation link first")
    media = protocol.clean_media(msg.get("media"))
    if room.mode == "audio-only":
        media = protocol.clean_media({"mode": "audio-only"}, media)
    lobby = identity.is_guest and room.lobby and not identity.admitted  # waits until a member lets it in
    return {**msg, "room": room.id, "name": name, "title": room.name, "media": media, "lobby": lobby}


# -- the signaling WebSocket ------------------------------------------------------


class Outbox:
    """What the server has yet to send one client, in order, bounded in bytes.

    A client that stops reading fills it; it is then closed with 4009 at once,
    whatever it still sends (pongs included), and what was queued is dropped.
    Messages are serialised when queued, so a message that cannot be valid JSON
    (NaN) fails where it is made, not in the writer.
    """

    def __init__(self, ws: web.WebSocketResponse, request: web.Request, limit_bytes: int):
        self.ws, self.request, self.limit_bytes = ws, request, limit_bytes
        self.queue: asyncio.Queue[str | int] = asyncio.Queue()
        self.queued_bytes = 0
        self.close_code: int | None = None  # set once the server decided to close
        self.writer = asyncio.create_task(self._write())
        self.closer: asyncio.Task | None = None

    def send(self, msg: dict[str, Any]) -> None:
        if self.close_code is not None:
            return
        text = protocol.encode(msg)
        if self.queued_bytes + len(text) > self.limit_bytes:
            self._close_stalled()
            return
        self.queued_bytes += len(text)
        self.queue.put_nowait(text)

    def close(self, code: int) -> None:
        """Close with `code` once what is queued has been sent."""
        if self.close_code is None:
            self.close_code = code
            self.queue.put_nowait(code)

    def _close_stalled(self) -> None:
        self.close_code = protocol.CLOSE_STALLED
        self.writer.cancel()
        self.closer = asyncio.create_task(self._close_now(protocol.CLOSE_STALLED))

    async def _close_now(self, code: int) -> None:
        """Send the close frame if the socket still takes it within a second, then cut the
        connection: a transport merely closing would wait for ever to flush to a client
        that does not read."""
        try:
            await asyncio.wait_for(self.ws.close(code=code), 1.0)
        except (asyncio.TimeoutError, ConnectionError):
            pass
        finally:
            if self.request.transport is not None:
                self.request.transport.abort()

    async def _write(self) -> None:
        while True:
            item = await self.queue.get()
            if isinstance(item, int):
                await self.ws.close(code=item)
                return
            self.queued_bytes -= len(item)
            try:
                await self.ws.send_str(item)
            except ConnectionError:
                return

    async def finish(self, timeout: float = 5.0) -> None:
        """Close (normally, unless a code was set) and wait, bounded, for the writer."""
        self.close(WSCloseCode.OK)
        await asyncio.wait([t for t in (self.writer, self.closer) if t], timeout=timeout)
        if not self.writer.done():
            self.writer.cancel()
            await self._close_now(self.close_code or WSCloseCode.OK)


async def websocket(request: web.Request) -> web.StreamResponse:
    """One client connection: parse, rate-limit and hand each message to the hub."""
    config = request.app[CONFIG]
    if not origin_allowed(request):
        raise api_error(403, "bad-origin", "cross-origin WebSocket refused")
    # aiohttp refuses a message of max_msg_size bytes or more; the protocol allows 64 KiB itself.
    ws = web.WebSocketResponse(heartbeat=config.heartbeat_s, max_msg_size=protocol.MAX_MESSAGE_BYTES + 1)
    await ws.prepare(request)
    outbox = Outbox(ws, request, config.outbox_bytes)
    request.app[SOCKETS].add(outbox)
    hub, metrics = request.app[HUB], request.app[METRICS]
    identity: Identity = request[IDENTITY]
    session = hub.connect(
        outbox.send,
        login=identity.login,
        guest_room=identity.guest_room.id if identity.is_guest else None,
        auth=identity.session_id,
        expires_at=identity.expires_at,
        close=outbox.close,
        conn=outbox,
    )
    bucket = TokenBucket(config.rate_per_s, config.rate_burst)
    try:
        async for frame in ws:
            if frame.type == WSMsgType.ERROR:  # e.g. over max_msg_size: aiohttp closes with 1009
                break
            if not bucket.take():  # every frame counts, text or not
                audit.event("flood", peer=session.id, login=session.login, addr=request.remote)
                metrics.errors.labels(PROCESS, "rate-limited").inc()
                outbox.send(protocol.error_message("rate-limited"))
                outbox.close(protocol.CLOSE_FLOOD)
                break
            if frame.type != WSMsgType.TEXT:
                outbox.send(protocol.error_message("bad-json", "only text frames are accepted"))
                if not session.greeted:  # the first message must be hello
                    outbox.close(protocol.CLOSE_PROTOCOL)
                    break
                continue
            msg = None
            try:
                msg = _parse(frame.data)
                kind = msg["type"]
                metrics.messages.labels(PROCESS, kind if kind in protocol.CLIENT_TYPES else "unknown").inc()
                joining = time.monotonic() if kind == "join" else None
                if kind == "join" and session.greeted and session.room is None:
                    msg = await authorize_join(request, msg)
                was, in_room = session, session.room
                session = await handle(request, session, msg)
                if session is not was:
                    audit.event("resume", peer=session.id, login=session.login, addr=request.remote,
                                room=session.room.name if session.room else None)
                    metrics.resumes.labels(PROCESS, "resumed").inc()
                elif session.room is not in_room:
                    audit.event("join" if session.room else "leave", peer=session.id, login=session.login,
                                addr=request.remote, room=(session.room or in_room).name)
                if joining is not None:
                    metrics.join_seconds.labels(PROCESS).observe(time.monotonic() - joining)
                if msg["type"] == "hello" and session.login:
                    for ring in await request.app[CALLS].pending_rings(session.login):
                        outbox.send(ring)
            except HandshakeError as exc:
                metrics.errors.labels(PROCESS, exc.code).inc()
                outbox.send(protocol.error_message(exc.code, str(exc), ref=msg["type"]))
                outbox.close(protocol.CLOSE_PROTOCOL)
                break
            except ProtocolError as exc:
                metrics.errors.labels(PROCESS, exc.code).inc()
                if exc.code == "forbidden" and msg and msg["type"] == "join":
                    audit.event("join-refused", peer=session.id, login=session.login, addr=request.remote,
                                why=exc.detail)
                outbox.send(protocol.error_message(exc.code, exc.detail, ref=msg["type"] if msg else None))
                if not session.greeted:  # not even a message: the handshake is broken
                    outbox.close(protocol.CLOSE_PROTOCOL)
                    break
            if outbox.close_code is not None:
                break
    finally:
        # A client that closed with 1000 has gone, and a refusal for good ends the session;
        # any other end of the socket keeps it for the grace period (docs/protocol.md, "Resuming").
        if session.conn is not outbox:
            pass  # resumed on another connection meanwhile
        elif outbox.close_code in protocol.FINAL_CLOSE_CODES or isinstance(ws.exception(), WebSocketError):
            hub.disconnect(session, "closed")  # refused for good, or broke the framing (1009: too large)
        elif outbox.close_code is None and ws.close_code == WSCloseCode.OK:
            hub.disconnect(session, "left")
        else:
            hub.detach(session, outbox)
            if session.greeted:
                audit.event("detached", peer=session.id, login=session.login, addr=request.remote,
                            code=ws.close_code, grace_s=hub.resume_grace_s)
        await outbox.finish()
        await ws.close()
    return ws


async def handle(request: web.Request, session: Session, msg: dict[str, Any]) -> Session:
    """hub.handle, and with other processes (--redis) what they must know first: a seat in a
    room before a join, and a session that lived on another process before a resume."""
    hub, cluster = request.app[HUB], request.app.get(CLUSTER)
    kind = msg["type"]
    if kind == "join" and msg.get("lobby"):
        hub.knock(session, msg)
        return session
    if cluster is None:
        return hub.handle(session, msg)
    if kind == "hello" and not session.greeted and protocol.is_version(msg.get("version")) \
            and "resume" in msg and not hub.can_resume(msg["resume"]):
        adopted = await cluster.adopt(session, msg["resume"])
        if adopted is not None:
            return adopted
    if kind == "join" and session.greeted and session.room is None:
        room = protocol.clean_room(msg.get("room"))
        await cluster.before_join(session, room, {"id": session.id, "name": protocol.clean_name(msg.get("name")),
                                                  "media": protocol.clean_media(msg.get("media")), "focus": None})
        try:
            return hub.handle(session, msg)
        finally:
            if session.room is None:
                await cluster.after_failed_join(session, room)
    return hub.handle(session, msg)


def _parse(data: str) -> dict[str, Any]:
    """The message as a dict; ProtocolError (bad-json, bad-message) refuses it."""
    try:
        msg = protocol.loads(data)
    except ValueError as exc:
        raise ProtocolError("bad-json", f"the message is not valid JSON ({exc})") from None
    if not isinstance(msg, dict):
        raise ProtocolError("bad-json")
    if not isinstance(msg.get("type"), str):
        raise ProtocolError("bad-message", "type must be a string")
    return msg


async def close_sockets(app: web.Application) -> None:
    """On shutdown: 1012 (restart) to every client, after what was queued for it; each
    resumes at once, on this server when it is back or on another process. Bounded: a
    client that does not read is cut after 2 s."""
    outboxes = list(app[SOCKETS])
    for outbox in outboxes:
        outbox.close(protocol.CLOSE_RESTART)
    await asyncio.gather(*(outbox.finish(timeout=2.0) for outbox in outboxes))


# -- running -----------------------------------------------------------------------


def ssl_context(config: Config) -> ssl.SSLContext | None:
    if not config.tls_cert:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(config.tls_cert, config.tls_key)
    return ctx


async def _count_users(config: Config) -> int:
    store = await Store.open(config.store_location)
    try:
        return await store.count_users()
    finally:
        await store.close()


async def _ping_redis(url: str) -> None:
    client = redis.from_url(url)
    try:
        await client.ping()
    finally:
        await client.aclose()


def _listens_beyond_loopback(host: str) -> bool:
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


# The young generation's size (CPython's default is 700 allocations). With thousands of
# sockets, timers and queued messages live a second or so: collected that often, they
# survived into the old generation and set off a full collection of the whole heap
# (~500,000 objects at 5,000 pages, ~350 ms with the loop stopped) every ~12 s. Collected
# less often, most die young; a middle collection then walks <= 25,000 objects (~30 ms).
GC_THRESHOLDS = (5000, 5, 10)


async def tune_garbage_collector(app: web.Application) -> None:
    """Move everything made while starting (modules, templates, the store) out of the
    garbage collector's sight, so that a full collection walks only what came later, not
    the ~50,000 objects of the imports; then collect young objects less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def _log_process(event: str, config: Config) -> None:
    audit.event(event, process=PROCESS, version=__version__, port=config.port)


def serve(config: Config) -> None:
    """Run the server until interrupted."""
    logging.getLogger("p2pconf").setLevel(min(logging.INFO, logging.getLogger().level or logging.INFO))
    logging.getLogger("aiohttp.access").addFilter(audit.RedactTokens())
    audit.use_format(config.log_format)
    if not config.public_url and _listens_beyond_loopback(config.host):
        print(f"warning: listening on {config.host} without --public-url: browsers are let in only by an IP "
              f"address or {config.host} (protection from DNS rebinding); set --public-url to the https "
              f"origin users open", file=sys.stderr)
    where = f"--database {URL(config.database).with_password(None)}" if config.database else f"--data {config.data_dir}"
    try:
        users = asyncio.run(_count_users(config))
    except StoreError as exc:  # e.g. PostgreSQL unreachable: one line, no traceback
        sys.exit(f"p2pconf serve: {exc}")
    if config.redis_url:
        try:
            asyncio.run(_ping_redis(config.redis_url))
        except (redis.RedisError, OSError) as exc:  # one line, no traceback (like an unreachable PostgreSQL)
            sys.exit(f"p2pconf serve: cannot reach Redis at {URL(config.redis_url).with_password(None)}: {exc}")
    if users == 0:
        print(f"No users yet. Add the first one with:\n"
              f"  p2pconf users add LOGIN --name 'Display Name' --password-stdin {where}")
    scheme = "https" if config.tls_cert else "http"
    print(f"p2pconf {__version__} on {scheme}://{config.host}:{config.port}/ ({where})")
    app = create_app(config)
    app.on_startup.append(tune_garbage_collector)
    app.on_startup.append(lambda app: _log_process("process-start", config))
    app.on_shutdown.append(lambda app: _log_process("process-stop", config))
    web.run_app(
        app,
        host=config.host,
        port=config.port,
        ssl_context=ssl_context(config),
        print=None,
    )

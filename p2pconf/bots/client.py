"""A Python client of docs/protocol.md: the twin of web/static/js/protocol.js.

It knows messages, not media: the owner passes one `on_message` coroutine that
receives every server message, in order. The client pings the server, notices a
dead one (no message for two ping intervals) and reconnects with backoff (at
once after a restart, 1012), resuming its session with the token of its last
`welcome`: same peer id, same room, and the owner hears {"type": "resumed"}
and keeps its peer connections. When the server no longer holds the session,
the client re-joins the same room under a new peer id; the owner hears a
synthetic {"type": "reconnected"} message and must rebuild its peer connections.

Some refusals are final (docs/protocol.md, "Closing"): a close with one of
protocol.FINAL_CLOSE_CODES, or `forbidden` in answer to `join`. After one the
client never reconnects: `refused` holds the reason and the owner hears a
synthetic {"type": "refused", "code", "reason"} message (or, for the first
connect or join, the call raises Refused).
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any, Awaitable, Callable

import aiohttp
from yarl import URL

from .. import protocol

log = logging.getLogger("p2pconf.client")
Message = dict[str, Any]


class ServerError(Exception):
    """The server refused a request; `code` is the protocol or API error code."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class Refused(ServerError):
    """A final refusal: the server closed with a code of protocol.FINAL_CLOSE_CODES (`code` is
    that int) or answered `join` with `forbidden` (`code` is "forbidden"). Never retried."""

    def __init__(self, code: int | str, reason: str):
        Exception.__init__(self, f"{code} {reason}" if isinstance(code, int) else f"{code}: {reason}")
        self.code = code
        self.message = self.reason = reason


# What each final close code means, for people (docs/protocol.md, "Closing").
CLOSE_REASONS = {
    protocol.CLOSE_PROTOCOL: "the handshake was broken (wrong first message or protocol version)",
    protocol.CLOSE_SIGNED_OUT: "the session ended (signed out, user disabled or session expired)",
    protocol.CLOSE_REVOKED: "the guest link was revoked",
    protocol.CLOSE_NOT_ADMITTED: "a member of the room did not let this guest in",
    protocol.CLOSE_STALLED: "this client stopped reading its messages",
    protocol.CLOSE_FLOOD: "this client sent too many messages",
}


def close_refusal(code: int | None, server_reason: str = "") -> Refused | None:
    """The Refused for a close with `code`, or None when a reconnect may follow (1012, 1006, ...)."""
    if code not in protocol.FINAL_CLOSE_CODES:
        return None
    return Refused(code, CLOSE_REASONS.get(code) or server_reason or "closed by the server")


CSRF_COOKIE = "p2pconf_csrf"
LOBBY_WAIT_S = 300.0  # how long a guest waits at a room's lobby to be let in


def ws_url(server: str) -> str:
    """http(s)://host[:port][/prefix] -> ws(s)://host[:port][/prefix]/ws."""
    url = URL(server)
    if url.scheme not in ("http", "https", "ws", "wss"):
        raise ValueError(f"server must be an http(s) URL, not {server!r}")
    scheme = {"http": "ws", "https": "wss"}.get(url.scheme, url.scheme)
    path = url.path.rstrip("/")
    if not path.endswith("/ws"):
        path += "/ws"
    return str(url.with_scheme(scheme).with_path(path))


async def _api_error(response: aiohttp.ClientResponse) -> ServerError:
    try:
        body = await response.json(content_type=None)
        return ServerError(body.get("code", f"http-{response.status}"), body.get("message", ""))
    except ValueError:
        return ServerError(f"http-{response.status}", response.reason or "")


class SignalingClient:
    """One connection to a p2pconf server, kept alive until `close()`."""

    def __init__(
        self,
        server: str,
        on_message: Callable[[Message], Awaitable[None]],
        *,
        max_backoff_s: float = 10.0,
    ):
        self.url = ws_url(server)
        self.on_message = on_message
        self.max_backoff_s = max_backoff_s
        self.id: str | None = None
        self.welcome: Message = {}
        self.joined: Message | None = None
        self.reconnects = 0  # re-joined under a new id
        self.resumes = 0  # resumed under the same id
        self.refused: Refused | None = None  # set once, when the server refused for good
        self._join_request: Message | None = None
        self._http_session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._task: asyncio.Task | None = None
        self._closing = False

    # -- public ----------------------------------------------------------------

    @property
    def _http(self) -> aiohttp.ClientSession:
        if self._http_session is None:
            # unsafe=True: keep cookies for servers addressed by IP, like 127.0.0.1
            self._http_session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        return self._http_session

    async def enter_invite(self, link: str, name: str) -> Message:
        """Follow a guest link as a browser does: open it, give a display name.

        Returns {"room": {"id", "name"}, "name"}; the guest session cookie is kept
        for the WebSocket. Raises ServerError (invite-expired, invite-revoked, ...).
        """
        headers = {"Accept": "application/json"}
        async with self._http.get(link, headers=headers) as page:
            if page.status != 200:
                raise await _api_error(page)
        csrf = self._http.cookie_jar.filter_cookies(URL(link)).get(CSRF_COOKIE)
        async with self._http.post(link, data={"name": name}, allow_redirects=False,
                                   headers={**headers, "X-CSRF-Token": csrf.value if csrf else ""}) as reply:
            if reply.status != 200:
                raise await _api_error(reply)
            return await reply.json()

    async def connect(self) -> Message:
        """Open the socket and shake hands; returns the `welcome` message."""
        try:
            await self._open()
        except BaseException:
            await self._http.close()
            raise
        return self.welcome

    async def join(self, room: str, name: str, media: Message | None = None) -> Message:
        """Join `room` as `name`; returns `joined` (with the peers to offer to)."""
        self._join_request = {"type": "join", "room": room, "name": name, "media": media or {}}
        await self._send_join()
        self._task = asyncio.create_task(self._run())
        return self.joined

    async def send(self, msg: Message) -> None:
        """Send one message; silently dropped while reconnecting or after a final refusal."""
        if self._ws is not None and not self._ws.closed:
            try:
                await self._ws.send_json(msg)
            except ConnectionError:
                pass

    async def close(self) -> None:
        """Leave and close for good (1000: the server ends the session at once)."""
        self._closing = True
        if self._ws is not None and not self._ws.closed:
            await self.send({"type": "leave"})
            await self._ws.close(code=aiohttp.WSCloseCode.OK)
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._http_session:
            await self._http_session.close()

    # -- internals ---------------------------------------------------------------

    async def _open(self) -> None:
        # What the server forwards may exceed 64 KiB by the `from` it stamps on: allow room for it.
        self._ws = await self._http.ws_connect(self.url, max_msg_size=2 * protocol.MAX_MESSAGE_BYTES)
        hello = {"type": "hello", "version": protocol.PROTOCOL_VERSION}
        if self.welcome.get("resume"):
            hello["resume"] = self.welcome["resume"]
        await self._ws.send_json(hello)
        self.welcome = await self._expect(("welcome",))
        self.id = self.welcome["id"]

    async def _send_join(self) -> None:
        await self._ws.send_json(self._join_request)
        try:
            answer = await self._expect(("joined", "lobby"))
            if answer["type"] == "lobby":  # a guest waits until a member lets it in (docs/protocol.md, "Lobby")
                await self._expect(("admitted",), timeout=LOBBY_WAIT_S)
                await self._ws.send_json(self._join_request)
                answer = await self._expect(("joined",))
            self.joined = answer
        except Refused:
            raise
        except ServerError as exc:
            if exc.code == "forbidden":  # not this room, not now: asking again will not help
                await self._ws.close()
                raise Refused("forbidden", exc.message) from None
            raise

    async def _expect(self, kinds: tuple[str, ...], timeout: float = 10.0) -> Message:
        frame = await self._ws.receive(timeout=timeout)
        if frame.type != aiohttp.WSMsgType.TEXT:
            raise self._closed_error(frame)
        msg = frame.json()
        if msg.get("type") == "error":
            error = ServerError(msg.get("code", "?"), msg.get("message", ""))
            if kinds == ("welcome",):  # a broken handshake: the server closes right after (4000)
                try:
                    after = await self._ws.receive(timeout=2.0)
                except asyncio.TimeoutError:
                    raise error from None
                if (refusal := self._refusal(after)) is not None:
                    raise Refused(refusal.code, f"{refusal.reason}: {error}") from None
            raise error
        if msg.get("type") not in kinds:
            raise ServerError("bad-message", f"expected {' or '.join(kinds)}, got {msg.get('type')!r}")
        return msg

    def _refusal(self, frame: aiohttp.WSMessage) -> Refused | None:
        """The Refused when `frame` is the server closing with a final code, else None."""
        if frame.type == aiohttp.WSMsgType.CLOSE:
            return close_refusal(frame.data, frame.extra if isinstance(frame.extra, str) else "")
        if frame.type in (aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
            return close_refusal(self._ws.close_code)
        return None

    def _closed_error(self, frame: aiohttp.WSMessage) -> Exception:
        """What a non-text frame during the handshake means: a final refusal or a lost connection."""
        return self._refusal(frame) or ConnectionError(f"the server closed the connection ({self._ws.close_code})")

    @property
    def _ping_s(self) -> float:
        return float(self.welcome.get("heartbeat", {}).get("clientPingS", 10.0))

    async def _run(self) -> None:
        backoff = 0.5
        while not self._closing:
            refusal = await self._pump()
            if self._closing:
                return
            if refusal is not None:
                await self._refuse(refusal)
                return
            # The server vanished or closed on us: reconnect with jittered backoff, at once
            # after a restart.
            wait = random.uniform(0, 0.1) if self._ws.close_code == protocol.CLOSE_RESTART else backoff
            while not self._closing:
                await asyncio.sleep(wait * random.uniform(0.8, 1.2))
                wait = backoff = min(backoff * 2, self.max_backoff_s)
                try:
                    await self._open()
                    if not self.welcome.get("resumed"):
                        await self._send_join()
                except Refused as exc:
                    await self._refuse(exc)
                    return
                except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError, ServerError) as exc:
                    log.info("reconnect failed: %s", exc)
                    continue
                backoff = 0.5
                if self.welcome.get("resumed"):
                    self.resumes += 1
                    await self.on_message({"type": "resumed"})
                else:
                    self.reconnects += 1
                    await self.on_message({"type": "reconnected", "joined": self.joined})
                break

    async def _refuse(self, refusal: Refused) -> None:
        """Stop for good and tell the owner why."""
        log.warning("refused by the server: %s", refusal)
        self.refused = refusal
        if self._ws is not None and not self._ws.closed:
            await self._ws.close()
        await self.on_message({"type": "refused", "code": refusal.code, "reason": refusal.reason})

    async def _pump(self) -> Refused | None:
        """Deliver messages until the connection dies; ping when idle.

        Returns the Refused when the server closed with a final code, else None (reconnect).
        """
        ws = self._ws
        while True:
            try:
                frame = await ws.receive(timeout=self._ping_s)
            except asyncio.TimeoutError:
                await self.send({"type": "ping"})
                try:
                    frame = await ws.receive(timeout=self._ping_s)
                except asyncio.TimeoutError:
                    log.warning("server silent for %.0f s, reconnecting", 2 * self._ping_s)
                    await ws.close(code=protocol.CLOSE_RECONNECTING)
                    return None
            if frame.type != aiohttp.WSMsgType.TEXT:  # closed, closing or error
                return self._refusal(frame)
            msg = frame.json()
            if msg.get("type") != "pong":
                await self.on_message(msg)

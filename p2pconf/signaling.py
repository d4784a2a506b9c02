"""Rooms and message routing, independent of aiohttp.

A `Hub` holds the rooms. Each client connection is a `Session` whose `send`
callable queues a message for that one client. The transport (server.py) parses
frames and calls `Hub.handle`; everything about who may talk to whom lives here,
so it can be unit-tested, and later fanned out over a message bus.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from . import protocol
from .protocol import ProtocolError

Message = dict[str, Any]


class HandshakeError(Exception):
    """A broken handshake: the transport answers with an error and closes (4000)."""

    def __init__(self, code: str, detail: str | None = None):
        super().__init__(detail or protocol.ERRORS[code])
        self.code = code


@dataclass(eq=False)
class Session:
    """One client connection, as the hub sees it."""

    id: str
    send: Callable[[Message], None]
    login: str | None = None  # the signed-in user behind this connection, if any
    guest_room: str | None = None  # for a guest: the one room their link opens
    auth: str | None = None  # the id hash of the sign-in session behind it (store.sessions)
    expires_at: float | None = None  # when that session ends (unix time)
    close: Callable[[int], None] = lambda code: None  # close this connection with a close code
    greeted: bool = False
    name: str = ""
    room: Room | None = None
    media: dict[str, Any] = field(default_factory=dict)
    focus: str | None = None  # the peer this participant shows in its centre
    stats: dict[str, Message] = field(default_factory=dict)  # its last stats upload, per peer id
    stats_at: float | None = None  # monotonic time of that upload
    subscriptions: set[str] = field(default_factory=set)  # lower-cased logins whose presence it follows

    def describe(self) -> Message:
        """The public view of this participant that other members receive."""
        return {"id": self.id, "name": self.name, "media": dict(self.media), "focus": self.focus}


@dataclass(eq=False)
class Room:
    name: str
    members: dict[str, Session] = field(default_factory=dict)

    def broadcast(self, msg: Message, *, exclude: Session | None = None) -> None:
        msg = protocol.Shared(msg)
        for member in list(self.members.values()):
            if member is not exclude:
                member.send(msg)


class Hub:
    """All rooms of one server process and the rules for moving messages between them."""

    def __init__(
        self,
        *,
        max_room_size: int = 6,
        ice_servers: Callable[[str], list[Message]] = lambda peer_id: [],
        welcome_extra: Message | None = None,
    ):
        self.max_room_size = max_room_size
        self.ice_servers = ice_servers
        self.welcome_extra = welcome_extra or {}
        self.sessions: dict[str, Session] = {}
        self.rooms: dict[str, Room] = {}
        # Indexes by lower-cased login, so presence costs a user's own connections and watchers:
        self.by_login: dict[str, set[Session]] = {}  # the connections of each signed-in user
        self.watchers: dict[str, set[Session]] = {}  # the connections subscribed to each login

    # -- connections -------------------------------------------------------

    def connect(self, send: Callable[[Message], None], **who: Any) -> Session:
        """Register a new connection and give it a fresh peer id (`who`: Session fields)."""
        peer_id = secrets.token_hex(4)
        while peer_id in self.sessions:
            peer_id = secrets.token_hex(4)
        session = Session(id=peer_id, send=send, **who)
        self.sessions[peer_id] = session
        if session.login:
            self.by_login.setdefault(session.login.lower(), set()).add(session)
        return session

    def sessions_of(self, login: str) -> list[Session]:
        """The greeted connections of one signed-in user (a page per tab or device)."""
        return [s for s in self.by_login.get(login.lower(), ()) if s.greeted]

    def close_where(self, code: int, predicate: Callable[[Session], bool]) -> list[Session]:
        """Close every connection `predicate` picks with `code` (a right was taken away)."""
        chosen = [s for s in self.sessions.values() if predicate(s)]
        for session in chosen:
            session.close(code)
        return chosen

    def in_call(self, login: str) -> bool:
        return any(s.room is not None for s in self.sessions_of(login))

    def presence(self, login: str) -> str:
        """"in-call", "online" or "offline"."""
        sessions = self.sessions_of(login)
        if any(s.room is not None for s in sessions):
            return "in-call"
        return "online" if sessions else "offline"

    def disconnect(self, session: Session, reason: str = "left") -> None:
        """Forget a connection; its room hears `peer-left` with `reason`, its user's watchers
        a change of presence."""
        before = self._presence_of(session)
        self._leave(session, reason)
        self.sessions.pop(session.id, None)
        self._follow(session, [])
        if session.login and (mine := self.by_login.get(session.login.lower())) is not None:
            mine.discard(session)
            if not mine:
                del self.by_login[session.login.lower()]
        self._announce(session, before)

    # -- presence ----------------------------------------------------------

    def _presence_of(self, session: Session) -> str | None:
        return self.presence(session.login) if session.login else None

    def _announce(self, session: Session, before: str | None) -> None:
        """Tell the watchers of `session`'s user its presence, if it is no longer `before`."""
        if not session.login:
            return
        login = session.login.lower()
        now = self.presence(login)
        if now != before:
            update = protocol.Shared(type="presence", users={login: now})
            for watcher in list(self.watchers.get(login, ())):
                watcher.send(update)

    def _follow(self, session: Session, logins: list[str]) -> None:
        """Make `logins` (lower-cased) the set `session` watches, in both indexes."""
        wanted = set(logins)
        for login in session.subscriptions - wanted:
            watchers = self.watchers.get(login)
            if watchers is not None:
                watchers.discard(session)
                if not watchers:
                    del self.watchers[login]
        for login in wanted - session.subscriptions:
            self.watchers.setdefault(login, set()).add(session)
        session.subscriptions = wanted

    def _subscribe(self, session: Session, msg: Message) -> None:
        """Follow the presence of the listed logins (replacing the last list); a snapshot follows."""
        if session.login is None:
            raise ProtocolError("forbidden", "only signed-in users may follow presence")
        logins = protocol.clean_logins(msg.get("logins"))
        self._follow(session, logins)
        session.send({"type": "presence", "users": {login: self.presence(login) for login in logins}})

    # -- messages ----------------------------------------------------------

    def handle(self, session: Session, msg: Message) -> None:
        """Act on one parsed message from `session`.

        Raises HandshakeError when the connection must be closed and
        ProtocolError for a refused message (the connection stays open).
        """
        kind = msg.get("type")
        if not session.greeted:
            if kind != "hello":
                raise HandshakeError("bad-message", "the first message must be hello")
            self._hello(session, msg)
            return
        if kind not in protocol.CLIENT_TYPES:
            raise ProtocolError("unknown-type", f"unknown message type {kind!r}")
        sender = msg.get("from")
        if sender is not None and sender != session.id:
            raise ProtocolError("forged-sender")
        if kind == "hello":
            raise ProtocolError("bad-message", "hello was already received")
        if kind == "ping":
            session.send({"type": "pong"})
        elif kind == "join":
            self._join(session, msg)
        elif kind == "leave":
            if session.room is None:
                raise ProtocolError("not-joined")
            before = self._presence_of(session)
            self._leave(session, "left")
            session.send({"type": "left"})
            self._announce(session, before)
        elif kind == "subscribe":
            self._subscribe(session, msg)
        elif kind == "media":
            self._media(session, msg)
        elif kind in protocol.QUALITY_TYPES:
            self._quality(session, msg)
        else:
            self._signal(session, msg)

    def _hello(self, session: Session, msg: Message) -> None:
        if not protocol.is_version(msg.get("version")):
            raise HandshakeError(
                "version-unsupported",
                f"server speaks version {protocol.PROTOCOL_VERSION}, got {msg.get('version')!r}",
            )
        before = self._presence_of(session)
        session.greeted = True
        session.send(
            {
                "type": "welcome",
                "version": protocol.PROTOCOL_VERSION,
                "id": session.id,
                "iceServers": self.ice_servers(session.id),
                "maxRoomSize": self.max_room_size,
                **self.welcome_extra,
            }
        )
        self._announce(session, before)

    def _join(self, session: Session, msg: Message) -> None:
        if session.room is not None:
            raise ProtocolError("already-joined")
        name = protocol.clean_room(msg.get("room"))
        display = protocol.clean_name(msg.get("name"))
        title = name if msg.get("title") is None else protocol.clean_text(msg["title"], "title", protocol.MAX_ROOM_CHARS)
        media = protocol.clean_media(msg.get("media"))
        room = self.rooms.get(name)
        if room is not None and len(room.members) >= self.max_room_size:
            raise ProtocolError("room-full", f"room {name!r} already has {self.max_room_size} participants")
        if room is None:
            room = self.rooms[name] = Room(name)
        session.name, session.media = display, media
        # The newcomer offers to everyone listed here (docs/protocol.md, "Negotiation").
        session.send(
            {
                "type": "joined",
                "room": name,
                "title": title,
                "mode": media["mode"],
                "id": session.id,
                "peers": [m.describe() for m in room.members.values()],
            }
        )
        room.broadcast({"type": "peer-joined", "peer": session.describe()})
        before = self._presence_of(session)
        room.members[session.id] = session
        session.room = room
        self._announce(session, before)

    def _leave(self, session: Session, reason: str) -> None:
        room = session.room
        if room is None:
            return
        room.members.pop(session.id, None)
        session.room, session.focus, session.stats, session.stats_at = None, None, {}, None
        room.broadcast({"type": "peer-left", "id": session.id, "reason": reason})
        if not room.members:
            self.rooms.pop(room.name, None)

    def _media(self, session: Session, msg: Message) -> None:
        if session.room is None:
            raise ProtocolError("not-joined")
        session.media = protocol.clean_media(msg.get("media"), session.media)
        session.room.broadcast(
            {"type": "peer-media", "id": session.id, "media": dict(session.media)}, exclude=session
        )

    def _quality(self, session: Session, msg: Message) -> None:
        """stats (store), link-matrix (answer) and focus (tell the room)."""
        room = session.room
        if room is None:
            raise ProtocolError("not-joined")
        kind = msg["type"]
        if kind == "stats":
            others = set(room.members) - {session.id}
            session.stats = protocol.clean_stats(msg.get("peers"), others)
            session.stats_at = time.monotonic()
        elif kind == "link-matrix":
            session.send(link_matrix(room))
        else:
            peer = msg.get("peer")
            if peer is not None and (not isinstance(peer, str) or peer not in room.members or peer == session.id):
                raise ProtocolError("unknown-peer", "focus needs the id of another peer in your room, or null")
            session.focus = peer
            room.broadcast({"type": "peer-focus", "id": session.id, "focus": peer}, exclude=session)

    def _signal(self, session: Session, msg: Message) -> None:
        if session.room is None:
            raise ProtocolError("not-joined")
        target_id = msg.get("to")
        if not isinstance(target_id, str):
            raise ProtocolError("bad-message", "to must be a peer id")
        target = session.room.members.get(target_id)
        if target is None or target is session:
            raise ProtocolError("unknown-peer", f"no peer {target_id!r} in your room")
        payload = protocol.check_signal(msg)
        target.send({"type": msg["type"], "from": session.id, "to": target_id, **payload})


def link_matrix(room: Room) -> Message:
    """The room's N x N links from its members' last stats uploads (docs/protocol.md).

    A link from A to B takes what B received (kbps, loss) and what A sent; the
    round-trip time and path from whichever side reported them.
    """
    now = time.monotonic()
    members = list(room.members.values())
    links = []
    for a in members:
        for b in members:
            if a is b:
                continue
            sent, got = a.stats.get(b.id, {}), b.stats.get(a.id, {})
            links.append({
                "from": a.id,
                "to": b.id,
                "kbps": got.get("kbpsIn"),
                "kbpsSent": sent.get("kbpsOut"),
                "lossPct": got.get("lossPct"),
                "rttMs": got.get("rttMs", sent.get("rttMs")),
                "path": got.get("path", sent.get("path")),
                "ageS": round(now - b.stats_at, 1) if b.stats_at is not None and got else None,
            })
    return {"type": "link-matrix", "peers": [{"id": m.id, "name": m.name} for m in members], "links": links}

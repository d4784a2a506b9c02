"""Rooms and message routing, independent of aiohttp.

A `Hub` holds the rooms. Each client connection is a `Session` whose `send`
callable queues a message for that one client. The transport (server.py) parses
frames and calls `Hub.handle`; everything about who may talk to whom lives here,
so it can be unit-tested, and later fanned out over a message bus.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from . import protocol
from .protocol import ProtocolError

Message = dict[str, Any]
PRESENCE_RANK = ("offline", "online", "in-call")  # a user's presence is the highest over their connections


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
    conn: Any = None  # the transport's handle of the connection it speaks through now
    greeted: bool = False
    name: str = ""
    room: Room | None = None
    waiting: str | None = None  # a guest at a room's lobby: the room it waits to enter
    media: dict[str, Any] = field(default_factory=dict)
    focus: str | None = None  # the peer this participant shows in its centre
    stats: dict[str, Message] = field(default_factory=dict)  # its last stats upload, per peer id
    stats_at: float | None = None  # monotonic time of that upload
    subscriptions: set[str] = field(default_factory=set)  # lower-cased logins whose presence it follows
    resume_hash: str | None = None  # sha256 of the resume token its last welcome carried
    held: list[Message] | None = None  # while its socket is gone: what it will be sent on resume
    held_until: float | None = None  # monotonic time its grace period ends
    seated_with: set[str] | None = None  # with other processes: the room's members when it took its seat
    home: str | None = None  # with other processes: for a member served by another one, its channel

    @property
    def detached(self) -> bool:
        return self.held is not None

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


class Peers:
    """What a Hub tells the other server processes (cluster.Cluster); alone, nothing."""

    def issued(self, session: Session) -> None:
        """`session` has a new resume token (and its state may have changed)."""

    def joined(self, session: Session) -> None:
        """`session` is now a member of its room, or changed what the others see of it."""

    def left(self, session: Session, room: Room) -> None:
        """`session` is no longer a member of `room`."""

    def detached(self, session: Session) -> None:
        """`session`'s socket is gone; it waits for a resume until session.held_until."""

    def gone(self, session: Session) -> None:
        """`session` has ended (it cannot be resumed any more)."""

    def stats(self, session: Session) -> None:
        """`session` uploaded its link stats (the room's copies on other processes keep them)."""

    def presence_here(self, login: str, state: str) -> None:
        """`login` (lower-cased) is `state` on this process now (it may not have changed)."""

    def presence_elsewhere(self, login: str) -> str:
        """`login`'s presence on the other processes."""
        return "offline"

    def send_to_user(self, login: str, msg: Message) -> None:
        """Send `msg` to the pages `login` (lower-cased) has open on the other processes."""

    def lobby(self, room: str, waiting: list[Session]) -> None:
        """The guests waiting on this process to enter `room` are now `waiting`."""

    def waiting_elsewhere(self, room: str) -> list[Message]:
        """The guests waiting on the other processes to enter `room`: {"id", "name", "auth", "proc"}."""
        return []

    def let_in_elsewhere(self, guest: Session, admit: bool) -> None:
        """Pass a member's recorded answer on to the process of `guest` (guest.home)."""


class Hub:
    """All rooms of one server process and the rules for moving messages between them."""

    def __init__(
        self,
        *,
        max_room_size: int = 6,
        ice_servers: Callable[[str], list[Message]] = lambda peer_id: [],
        welcome_extra: Message | None = None,
        resume_grace_s: float = 30.0,
        max_held: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.max_room_size = max_room_size
        self.ice_servers = ice_servers
        self.welcome_extra = welcome_extra or {}
        self.resume_grace_s, self.max_held, self.clock = resume_grace_s, max_held, clock
        self.sessions: dict[str, Session] = {}
        self.resumable: dict[str, Session] = {}  # resume-token hash -> its session (docs/protocol.md, "Resuming")
        self.detached: dict[str, Session] = {}  # sessions in their grace period, oldest first
        self.peers = Peers()  # the other server processes, if any (cluster.py)
        self.rooms: dict[str, Room] = {}
        self.lobbies: dict[str, dict[str, Session]] = {}  # room -> guests waiting to be let in, by arrival
        # Called with a waiting guest and True (let in) or False (turned away) once a member has
        # answered; the server records the answer in its store first. Alone: at once.
        self.answer_guest: Callable[[Session, bool], None] = self.let_in
        # Indexes by lower-cased login, so presence costs a user's own connections and watchers:
        self.by_login: dict[str, set[Session]] = {}  # the connections of each signed-in user
        self.watchers: dict[str, set[Session]] = {}  # the connections subscribed to each login
        # Presence changes not yet delivered (an ordered set of logins), and the one being delivered:
        self._changed: dict[str, None] = {}
        self._delivering: tuple[Message, list[Session]] | None = None
        # Called when a change waits: the server paces delivery (deliver_presence with a budget
        # per event-loop turn); by default it is delivered at once.
        self.presence_waiting: Callable[[], None] = self.deliver_presence

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

    def send_to_user(self, login: str, msg: Message) -> None:
        """Send `msg` to every page `login` has open, on any process."""
        self.send_here(login, msg)
        self.peers.send_to_user(login.lower(), msg)

    def send_here(self, login: str, msg: Message) -> None:
        """Send `msg` to the pages `login` has open on this process."""
        for session in self.sessions_of(login):
            session.send(msg)

    def in_call(self, login: str) -> bool:
        return self.presence(login) == "in-call"

    def presence(self, login: str) -> str:
        """"in-call", "online" or "offline", over every process."""
        return max(self.presence_here(login), self.peers.presence_elsewhere(login.lower()), key=PRESENCE_RANK.index)

    def presence_here(self, login: str) -> str:
        """`login`'s presence from this process's connections alone."""
        sessions = self.sessions_of(login)
        if any(s.room is not None for s in sessions):
            return "in-call"
        return "online" if sessions else "offline"

    def disconnect(self, session: Session, reason: str = "left") -> None:
        """Forget a connection; its room hears `peer-left` with `reason`, its user's watchers
        a change of presence."""
        before = self._presence_of(session)
        self._leave(session, reason)
        self._leave_lobby(session)
        if self.sessions.pop(session.id, None) is not None:
            self.peers.gone(session)
        self.detached.pop(session.id, None)
        self.resumable.pop(session.resume_hash, None)
        self._follow(session, [])
        if session.login and (mine := self.by_login.get(session.login.lower())) is not None:
            mine.discard(session)
            if not mine:
                del self.by_login[session.login.lower()]
        self._announce(session, before)

    def detach(self, session: Session, conn: Any = None) -> None:
        """Its socket `conn` is gone without a `leave`: keep the session for the grace period,
        in its room, holding what it is sent (at most max_held messages), so that a `hello`
        with its resume token takes it up again. A session that never shook hands is just
        forgotten; one that has moved to another connection meanwhile is left alone."""
        if session.conn is not conn or session.id not in self.sessions:
            return
        if not session.greeted or self.resume_grace_s <= 0:
            self.disconnect(session, "closed")
            return
        session.held, session.held_until = [], self.clock() + self.resume_grace_s
        session.send, session.close, session.conn = self._holder(session), lambda code: None, None
        self.detached[session.id] = session
        self.peers.detached(session)

    def _holder(self, session: Session) -> Callable[[Message], None]:
        def hold(msg: Message) -> None:
            if session.held is not None and len(session.held) < self.max_held:
                session.held.append(msg)
            elif session.held is not None:  # it could not catch up: no resume
                session.held_until = 0.0
        return hold

    def expire_detached(self) -> list[Session]:
        """End the sessions whose grace period is over (or that held too much): their rooms
        hear `peer-left` with reason "timeout". Called about once a second."""
        now, ended = self.clock(), []
        for session in list(self.detached.values()):
            if session.held_until is not None and session.held_until <= now:
                self.disconnect(session, "timeout")
                ended.append(session)
        return ended

    def take_over(self, fresh: Session, state: Message, room: Room | None, held: list[Message]) -> Session:
        """A session that lived on another process resumes here (cluster.Cluster.adopt):
        `fresh`'s connection now speaks for peer `state["id"]`, a member of `room` (this
        process's copy of it), and is sent what was held for it."""
        before = self._presence_of(fresh)
        self._forget(fresh)
        session = Session(id=state["id"], send=fresh.send, close=fresh.close, conn=fresh.conn, login=fresh.login,
                          guest_room=fresh.guest_room, auth=fresh.auth, expires_at=fresh.expires_at, greeted=True,
                          name=state.get("name", ""), media=state.get("media") or {}, focus=state.get("focus"))
        self.sessions[session.id] = session
        if session.login:
            self.by_login.setdefault(session.login.lower(), set()).add(session)
        if room is not None:
            self.rooms[room.name] = room
            room.members[session.id], session.room = session, room
        self._welcome(session, resumed=True)
        for msg in held:
            session.send(msg)
        self._announce(session, before)
        return session

    def hand_over(self, session: Session) -> list[Message]:
        """`session` resumes on another process (cluster.Cluster): forget it here without a
        word to its room (it stays a member there) and return what was held for it."""
        before = self._presence_of(session)
        if not session.detached:
            session.close(protocol.CLOSE_REPLACED)  # the client speaks through another process now
        session.conn = None  # so the end of that socket is not this session's end
        held = session.held or []
        self._forget(session)
        self.detached.pop(session.id, None)
        self.resumable.pop(session.resume_hash, None)
        self._follow(session, [])
        self._announce(session, before)
        return held

    def _forget(self, fresh: Session) -> None:
        """Drop a connection's own new session: it speaks for an older one from now on."""
        self.sessions.pop(fresh.id, None)
        if fresh.login and (mine := self.by_login.get(fresh.login.lower())) is not None:
            mine.discard(fresh)
            if not mine:
                del self.by_login[fresh.login.lower()]

    def can_resume(self, token: Any) -> bool:
        """Whether `token` is the resume token of a session of this process."""
        return isinstance(token, str) and _token_hash(token) in self.resumable

    def _resume(self, fresh: Session, token: Any) -> Session | None:
        """The detached (or not yet detached) session `token` was issued to, taken up by the
        connection of `fresh`; None when the token is unknown, used, or not this client's."""
        if not isinstance(token, str) or len(token) > 128:
            return None
        old = self.resumable.get(_token_hash(token))
        if old is None or (old.login, old.guest_room, old.auth) != (fresh.login, fresh.guest_room, fresh.auth) \
                or (old.held_until is not None and old.held_until <= self.clock()):
            return None
        if not old.detached:  # its old socket is still open on our side: that one is stale
            old.close(protocol.CLOSE_REPLACED)
        held = old.held or []
        old.send, old.close, old.conn, old.expires_at = fresh.send, fresh.close, fresh.conn, fresh.expires_at
        old.held = old.held_until = None
        self.detached.pop(old.id, None)
        self._forget(fresh)
        self._welcome(old, resumed=True)
        for msg in held:
            old.send(msg)
        return old

    # -- presence ----------------------------------------------------------

    def _presence_of(self, session: Session) -> str | None:
        return self.presence(session.login) if session.login else None

    def _announce(self, session: Session, before: str | None) -> None:
        """Note a change of `session`'s user's presence for its watchers, if it is no longer `before`."""
        if not session.login:
            return
        login = session.login.lower()
        self.peers.presence_here(login, self.presence_here(login))
        self.presence_changed(login, before)

    def presence_changed(self, login: str, before: str | None) -> None:
        """Deliver `login`'s (lower-cased) presence to its watchers if it is no longer `before`."""
        if self.presence(login) != before:
            self._changed[login] = None
            self.presence_waiting()

    def deliver_presence(self, budget: int | None = None) -> bool:
        """Send changed logins' presence to their watchers, at most `budget` messages (all
        without one); True when some are left. What is sent is the state at delivery, to the
        watchers of that moment: a change that waited is never older than a later snapshot,
        and two changes of one login that waited together reach its watchers once."""
        sent = 0
        for _ in range(len(self._changed) + 1):  # bounded: each round takes one login off
            if self._delivering is None:
                if not self._changed:
                    return False
                login = next(iter(self._changed))
                del self._changed[login]
                update = protocol.Shared(type="presence", users={login: self.presence(login)})
                self._delivering = (update, list(self.watchers.get(login, ())))
            update, watchers = self._delivering
            while watchers:
                if budget is not None and sent >= budget:
                    return True
                watchers.pop().send(update)
                sent += 1
            self._delivering = None
        return bool(self._changed)

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

    def handle(self, session: Session, msg: Message) -> Session:
        """Act on one parsed message from `session`; returns the session the connection speaks
        for from now on (another one after a `hello` that resumed it).

        Raises HandshakeError when the connection must be closed and
        ProtocolError for a refused message (the connection stays open).
        """
        kind = msg.get("type")
        if not session.greeted:
            if kind != "hello":
                raise HandshakeError("bad-message", "the first message must be hello")
            return self._hello(session, msg)
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
        elif kind == "leave" and session.waiting is not None:
            self._leave_lobby(session)
            session.send({"type": "left"})
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
        elif kind in protocol.LOBBY_TYPES:
            self.answer_guest(self._waiting_guest(session, msg), kind == "admit")
        else:
            self._signal(session, msg)
        return session

    def _hello(self, session: Session, msg: Message) -> Session:
        if not protocol.is_version(msg.get("version")):
            raise HandshakeError(
                "version-unsupported",
                f"server speaks version {protocol.PROTOCOL_VERSION}, got {msg.get('version')!r}",
            )
        if "resume" in msg and (resumed := self._resume(session, msg["resume"])) is not None:
            return resumed
        before = self._presence_of(session)
        session.greeted = True
        self._welcome(session, resumed=False)
        self._announce(session, before)
        return session

    def _welcome(self, session: Session, *, resumed: bool) -> None:
        """Send `welcome` with a fresh resume token (the last one is used up)."""
        token = secrets.token_urlsafe(24)
        self.resumable.pop(session.resume_hash, None)
        session.resume_hash = _token_hash(token)
        self.resumable[session.resume_hash] = session
        self.peers.issued(session)
        session.send(
            {
                "type": "welcome",
                "version": protocol.PROTOCOL_VERSION,
                "id": session.id,
                "iceServers": self.ice_servers(session.id),
                "maxRoomSize": self.max_room_size,
                "resume": token,
                "resumed": resumed,
                **({"room": session.room.name} if resumed and session.room else {}),
                **self.welcome_extra,
            }
        )

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
        # The newcomer offers to everyone listed here (docs/protocol.md, "Negotiation"): those in
        # the room before it, which across processes is who had a seat when it took its own
        # (whoever came after offers to it).
        before_me = [m for m in room.members.values() if session.seated_with is None or m.id in session.seated_with]
        session.seated_with = None
        session.send(
            {
                "type": "joined",
                "room": name,
                "title": title,
                "mode": media["mode"],
                "id": session.id,
                "peers": [m.describe() for m in before_me],
            }
        )
        joined = protocol.Shared(type="peer-joined", peer=session.describe())
        for member in before_me:
            member.send(joined)
        before = self._presence_of(session)
        room.members[session.id] = session
        session.room = room
        self.peers.joined(session)
        self._announce(session, before)
        if session.login and (knocks := self._knocks(name))["waiting"]:
            session.send(knocks)

    # -- the lobby: guests a member lets in one by one (docs/protocol.md, "Lobby") ----------

    def knock(self, session: Session, msg: Message) -> None:
        """Put a guest in the lobby of the room its `join` names (the server decided that the
        room lets guests in one by one); the room's signed-in members hear who waits."""
        if session.room is not None:
            raise ProtocolError("already-joined")
        name = protocol.clean_room(msg.get("room"))
        session.name = protocol.clean_name(msg.get("name"))
        session.send({"type": "lobby", "room": name, "title": msg.get("title", name)})
        if session.waiting != name:  # (a join sent again while waiting changes nothing)
            self._leave_lobby(session)
            self.lobbies.setdefault(name, {})[session.id] = session
            session.waiting = name
            self._lobby_changed(name)

    def let_in(self, guest: Session, admit: bool) -> None:
        """A member's answer, recorded: the guest may now `join` (`admitted`), or its
        connection ends for good (4004)."""
        if guest.home is not None:  # it waits on another process
            self.peers.let_in_elsewhere(guest, admit)
            return
        if guest.waiting is None:
            return  # gone meanwhile
        self._leave_lobby(guest)
        if admit:
            guest.send({"type": "admitted"})
            return
        guest.close(protocol.CLOSE_NOT_ADMITTED)
        if guest.detached:
            self.disconnect(guest, "closed")

    def _waiting_guest(self, member: Session, msg: Message) -> Session:
        """The waiting guest an `admit` or `refuse` names, when `member` may answer for it."""
        if member.room is None:
            raise ProtocolError("not-joined")
        if member.login is None:
            raise ProtocolError("forbidden", "only signed-in members let guests in")
        name, peer = member.room.name, msg.get("peer")
        if isinstance(peer, str) and (guest := self.lobbies.get(name, {}).get(peer)) is not None:
            return guest
        for other in self.peers.waiting_elsewhere(name):
            if other["id"] == peer:  # a stand-in for a guest of another process
                return Session(id=peer, send=lambda msg: None, name=other["name"], auth=other["auth"], waiting=name,
                               home=other["proc"])
        raise ProtocolError("unknown-peer", "no guest with that id waits for your room")

    def _leave_lobby(self, session: Session) -> None:
        name, session.waiting = session.waiting, None
        if name is None:
            return
        lobby = self.lobbies.get(name, {})
        lobby.pop(session.id, None)
        if not lobby:
            self.lobbies.pop(name, None)
        self._lobby_changed(name)

    def _knocks(self, name: str) -> Message:
        here = [{"id": g.id, "name": g.name} for g in self.lobbies.get(name, {}).values()]
        return {"type": "knocks", "waiting": here + [{"id": g["id"], "name": g["name"]}
                                                      for g in self.peers.waiting_elsewhere(name)]}

    def _lobby_changed(self, name: str) -> None:
        self.peers.lobby(name, list(self.lobbies.get(name, {}).values()))
        self.tell_lobby(name)

    def tell_lobby(self, name: str) -> None:
        """Every signed-in member of the room on this process hears who waits now (the whole list)."""
        room = self.rooms.get(name)
        if room is None:
            return
        knocks = protocol.Shared(self._knocks(name))
        for member in room.members.values():
            if member.login:
                member.send(knocks)

    def _leave(self, session: Session, reason: str) -> None:
        room = session.room
        if room is None:
            return
        room.members.pop(session.id, None)
        session.room, session.focus, session.stats, session.stats_at = None, None, {}, None
        self.peers.left(session, room)
        room.broadcast({"type": "peer-left", "id": session.id, "reason": reason})
        if not any(member.id in self.sessions for member in room.members.values()):
            self.rooms.pop(room.name, None)  # (the members of other processes are known again at a join)

    def _media(self, session: Session, msg: Message) -> None:
        if session.room is None:
            raise ProtocolError("not-joined")
        session.media = protocol.clean_media(msg.get("media"), session.media)
        self.peers.joined(session)
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
            self.peers.stats(session)
        elif kind == "link-matrix":
            session.send(link_matrix(room))
        else:
            peer = msg.get("peer")
            if peer is not None and (not isinstance(peer, str) or peer not in room.members or peer == session.id):
                raise ProtocolError("unknown-peer", "focus needs the id of another peer in your room, or null")
            session.focus = peer
            self.peers.joined(session)
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


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


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

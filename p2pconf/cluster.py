"""Several server processes serving one organisation, through Redis (`serve --redis URL`).

Each process keeps a Hub for its own connections; what they share goes through Redis
(redis-py's asyncio client), under keys that start with `p2pconf:`:

- `room:<name>` (hash: peer id -> {"proc", "peer"}): who is in a room, the authority for
  joins (a seat is taken atomically, so two processes never fill a room beyond its size).
  A process keeps a copy of each room its own members are in, where the members of other
  processes are Sessions whose `send` forwards to their process (and whose link stats
  arrive as `_stats`, once per process, for the link matrix).
- `proc:<process>` (a channel each process reads): messages for its peers. Published to a
  process that no longer reads (it died), a message is held in `held:<peer id>` (bounded)
  until that peer resumes somewhere.
- `session:<peer id>` (who it is, its room, name, media, focus) and `resume:<token hash>` ->
  peer id: a client resumes on any process, with its peer id and its place in the room. When
  its process still lives, the resuming process asks it (`_release` on its channel) to hand
  the session over, and waits (`_released`) before it takes it from Redis.
- `leases` (sorted set: peer id -> unix time): each process renews its own sessions'
  leases; when a lease runs out (a session's grace ended on a process that died), any
  process takes it out of its room and the room hears `peer-left`, reason "timeout".
- Guests waiting at a room's lobby stay on their process; each change of its list is
  published on `all` (`lobby`), so members everywhere hear every knock, and an answer goes
  to the guest's process (`_admit`, `_refuse`) once the store has it.
- `presence:<process>` (hash: login -> "online" or "in-call"): the users each process
  serves, and `procs` (sorted set: process -> unix time), each process's own lease. A
  change is also published on `all`, the channel every process reads, which also carries
  messages for all pages of one user (rings) and a dead process's `gone`. Each process
  keeps everybody else's presence in memory (`elsewhere`), so a directory page or a
  presence delivery never waits for Redis.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import redis.asyncio as redis

from . import protocol
from .signaling import PRESENCE_RANK, Hub, Message, Peers, Room, Session, _token_hash

log = logging.getLogger("p2pconf.cluster")

PREFIX = "p2pconf:"
MAX_HELD = 256  # messages held for a peer whose process died (like Hub.max_held)
REAP_EVERY_S = 1.0
HAND_OVER_TIMEOUT_S = 3.0
ALL = PREFIX + "all"  # the channel every process reads
PROCS = PREFIX + "procs"

# KEYS: room; ARGV: peer id, its record, room size. A seat, unless the room is full; then everyone.
_TAKE_SEAT = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then
  return false
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return redis.call('HGETALL', KEYS[1])
"""
# KEYS: channel, held list; ARGV: envelope, bound, ttl. Publish; held when nobody reads.
_FORWARD = """
if redis.call('PUBLISH', KEYS[1], ARGV[1]) > 0 then return 1 end
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[2]), -1)
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[3]))
return 0
"""
# KEYS: resume key, its session, its held list. The token works once: what was held, or false.
_CLAIM = """
if redis.call('DEL', KEYS[1]) == 0 or redis.call('EXISTS', KEYS[2]) == 0 then return false end
local held = redis.call('LRANGE', KEYS[3], 0, -1)
redis.call('DEL', KEYS[3])
return {1, held}
"""
# KEYS: leases or procs; ARGV: member, now. True for exactly one process when its lease has run out.
_REAP = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) <= tonumber(ARGV[2]) then redis.call('ZREM', KEYS[1], ARGV[1]) return 1 end
return 0
"""


class Cluster(Peers):
    """This process's part in a cluster: it mirrors its Hub's changes into Redis, forwards
    messages to the peers of other processes and delivers theirs."""

    def __init__(self, client: redis.Redis, hub: Hub, process: str, *, grace_s: float):
        self.redis, self.hub, self.process, self.grace_s = client, hub, process, grace_s
        self.channel = PREFIX + "proc:" + process
        self.published: dict[str, str] = {}  # login -> what this process last said of it
        self.elsewhere: dict[str, dict[str, str]] = {}  # login -> {other process: "online" or "in-call"}
        self.knocking: dict[str, dict[str, list[Message]]] = {}  # room -> {other process: its waiting guests}
        # Hand-overs of a session from a live process to this one (a resume through another process):
        self.releases: dict[str, asyncio.Future] = {}  # peer id -> its process's answer
        self.arriving: dict[str, list[Message]] = {}  # peer id -> envelopes for it that wait
        self.moved: dict[str, str] = {}  # peer id handed over to another process -> that process's channel
        self.writes: asyncio.Queue = asyncio.Queue()  # Redis commands in the order the hub made them
        self.tasks: list[asyncio.Task] = []
        self.take_seat = client.register_script(_TAKE_SEAT)
        self.forward_script = client.register_script(_FORWARD)
        self.claim_script = client.register_script(_CLAIM)
        self.reap_script = client.register_script(_REAP)
        hub.peers = self

    async def start(self) -> None:
        await self.redis.ping()  # unreachable: fail at start, with the reason
        self.pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        await self.pubsub.subscribe(self.channel, ALL)
        await self._lease_process()
        await self._seed_presence()  # after subscribing: what changes from now on comes on `all`
        self.writer = asyncio.create_task(self._write())
        self.tasks = [self.writer, *(asyncio.create_task(job()) for job in (self._read, self._renew, self._reap))]

    async def stop(self) -> None:
        # Its users stay as they are until its lease runs out: their clients resume elsewhere
        # meanwhile, so a deploy makes nobody flicker offline.
        self._queue(("ZADD", PROCS, {self.process: time.time() + self.grace_s}))
        if not self.writer.done():
            try:
                await asyncio.wait_for(self.writes.join(), 5)
            except asyncio.TimeoutError:
                log.warning("redis: %d commands not written at shutdown", self.writes.qsize())
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.pubsub.aclose()
        await self.redis.aclose()

    # -- what the hub tells the others (Peers) ------------------------------------------------

    def issued(self, session: Session) -> None:
        record = json.dumps(self._record(session))
        ttl = int(self.grace_s) + 3600
        self._queue(("SET", PREFIX + "session:" + session.id, record, "EX", ttl),
                    ("SET", PREFIX + "resume:" + session.resume_hash, session.id, "EX", ttl),
                    ("ZADD", PREFIX + "leases", {session.id: time.time() + self.grace_s}))

    def joined(self, session: Session) -> None:
        if session.room is not None and session.id in self.hub.sessions:
            self._queue(("HSET", self._room_key(session.room.name), session.id, self._seat(session)),
                        ("SET", PREFIX + "session:" + session.id, json.dumps(self._record(session)), "KEEPTTL"))

    def left(self, session: Session, room: Room) -> None:
        if session.id in self.hub.sessions:
            self._queue(("HDEL", self._room_key(room.name), session.id),
                        ("SET", PREFIX + "session:" + session.id, json.dumps(self._record(session)), "KEEPTTL"))

    def detached(self, session: Session) -> None:
        # The lease outlives the local grace a little: this process ends its own sessions.
        until = time.time() + (session.held_until - self.hub.clock()) + 5
        self._queue(("ZADD", PREFIX + "leases", {session.id: until}))

    def gone(self, session: Session) -> None:
        self._queue(("DEL", PREFIX + "session:" + session.id, PREFIX + "held:" + session.id),
                    ("DEL", PREFIX + "resume:" + (session.resume_hash or "-")),
                    ("ZREM", PREFIX + "leases", session.id))

    def stats(self, session: Session) -> None:
        homes = {m.home: m.id for m in session.room.members.values() if m.home and m.id not in self.hub.sessions}
        for channel, member_id in homes.items():  # once to each process with members in the room
            self._queue(("_FORWARD", channel, member_id, {"type": "_stats", "id": session.id, "peers": session.stats}))

    def presence_here(self, login: str, state: str) -> None:
        if self.published.get(login, "offline") == state:
            return
        key = PREFIX + "presence:" + self.process
        if state == "offline":
            del self.published[login]
            self._queue(("HDEL", key, login))
        else:
            self.published[login] = state
            self._queue(("HSET", key, login, state))
        self._queue(("PUBLISH", ALL, self._envelope(presence={login: state})))

    def presence_elsewhere(self, login: str) -> str:
        return max(self.elsewhere.get(login, {}).values(), key=PRESENCE_RANK.index, default="offline")

    def send_to_user(self, login: str, msg: Message) -> None:
        self._queue(("PUBLISH", ALL, self._envelope(user=login, msg=msg)))

    def lobby(self, room: str, waiting: list[Session]) -> None:
        guests = [{"id": g.id, "name": g.name, "auth": g.auth} for g in waiting]
        self._queue(("PUBLISH", ALL, self._envelope(lobby=room, waiting=guests)))

    def waiting_elsewhere(self, room: str) -> list[Message]:
        return [{**guest, "proc": proc} for proc, guests in self.knocking.get(room, {}).items() for guest in guests]

    def let_in_elsewhere(self, guest: Session, admit: bool) -> None:
        self._queue(("_FORWARD", PREFIX + "proc:" + guest.home, guest.id, {"type": "_admit" if admit else "_refuse"}))

    def _take_lobby(self, proc: str, room: str, waiting: list[Message]) -> None:
        """Take `waiting` as the guests process `proc` has at the lobby of `room` now."""
        procs = self.knocking.setdefault(room, {})
        if waiting:
            procs[proc] = waiting
        else:
            procs.pop(proc, None)
        if not procs:
            del self.knocking[room]
        self.hub.tell_lobby(room)

    # -- joins and resumes on this process (the transport awaits these) -----------------------

    async def before_join(self, session: Session, name: str, peer: Message) -> None:
        """Take a seat in room `name` for `session` (`peer`: what the others will see of it) and
        bring this process's copy of the room up to date; ProtocolError("room-full") when
        there is none."""
        key = self._room_key(name)
        everyone = await self.take_seat(keys=[key], args=[session.id, json.dumps(
            {"proc": self.process, "peer": peer}), self.hub.max_room_size])
        if everyone is None:
            raise protocol.ProtocolError("room-full", f"room {name!r} already has {self.hub.max_room_size} participants")
        seats = {k.decode(): json.loads(v) for k, v in zip(everyone[::2], everyone[1::2])}
        seats.pop(session.id, None)
        session.seated_with = set(seats)
        self._mirror(name, seats)

    async def after_failed_join(self, session: Session, name: str) -> None:
        """Give the seat back when the hub refused the join after all."""
        await self.redis.hdel(self._room_key(name), session.id)

    async def adopt(self, fresh: Session, token: Any) -> Session | None:
        """Resume here a session of another process (one that died, restarted, or hands it
        over): None when `token` is not a live session's or belongs to another client."""
        if not isinstance(token, str) or len(token) > 128:
            return None
        found = await self.redis.get(PREFIX + "resume:" + _token_hash(token))
        if found is None:
            return None
        record = await self.redis.get(PREFIX + "session:" + found.decode())
        state = json.loads(record) if record else None
        if state is None or (state["login"], state["guest_room"], state["auth"]) != \
                (fresh.login, fresh.guest_room, fresh.auth):
            return None
        peer_id = state["id"]
        if state["proc"] != self.process and (await self.redis.pubsub_numsub(PREFIX + "proc:" + state["proc"]))[0][1]:
            # Its process lives (the balancer sent the client elsewhere, e.g. after a change of
            # network): that process hands the session over.
            state = await self._hand_over_from(state["proc"], peer_id)
            if state is None:
                return None
        claimed = await self.claim_script(keys=[PREFIX + "resume:" + _token_hash(token), PREFIX + "session:" + peer_id,
                                                PREFIX + "held:" + peer_id])
        if not claimed:
            return None  # used meanwhile, by a quicker reconnect of the same client
        held = claimed[1]
        room = None
        if state["room"]:
            seats = await self.redis.hgetall(self._room_key(state["room"]))
            members = {k.decode(): json.loads(v) for k, v in seats.items()}
            if members.pop(peer_id, None) is not None:
                room = self._mirror(state["room"], members)
        session = self.hub.take_over(fresh, state, room, [json.loads(m)["msg"] for m in held])
        if room is not None:
            self.joined(session)  # its seat says where it is now
            for member in room.members.values():
                if member is not session and member.id not in self.hub.sessions:
                    member.send({"type": "_moved", "id": session.id})
        for envelope in self.arriving.pop(peer_id, []):
            self._deliver(envelope)
        for delay in (1.0, 3.0):  # what still reached the dead process's channel meanwhile
            asyncio.get_running_loop().call_later(delay, self.writes.put_nowait, ("_REDRAIN", session.id))
        return session

    async def _hand_over_from(self, proc: str, peer_id: str) -> Message | None:
        """Ask process `proc` to hand its session `peer_id` over; the session's state then,
        or None when `proc` does not serve it (any more) or does not answer. What reaches
        this process for the peer meanwhile waits for it."""
        self.arriving[peer_id] = []
        answer = self.releases[peer_id] = asyncio.get_running_loop().create_future()
        self._queue(("_FORWARD", PREFIX + "proc:" + proc, peer_id, {"type": "_release"}))
        try:
            async with asyncio.timeout(HAND_OVER_TIMEOUT_S):
                if await answer:
                    record = await self.redis.get(PREFIX + "session:" + peer_id)
                    return json.loads(record) if record else None
        except TimeoutError:
            log.warning("process %s did not hand session %s over", proc, peer_id)
        finally:
            del self.releases[peer_id]
        self.arriving.pop(peer_id, None)
        return None

    def _hand_over(self, session: Session, to_proc: str) -> None:
        """Another process resumes `session` (it asked with `_release`): this process forgets
        it, writes its state and what it held to Redis, answers, and from then on passes on
        what still reaches it for the peer."""
        room, channel = session.room, PREFIX + "proc:" + to_proc
        held = self.hub.hand_over(session)
        if room is not None:
            self._seat_in(room, session.id, to_proc, session.describe())
        self._queue(("SET", PREFIX + "session:" + session.id, json.dumps(self._record(session)), "KEEPTTL"))
        if held:
            self._queue(("RPUSH", PREFIX + "held:" + session.id,
                         *(self._envelope(to=session.id, msg=msg) for msg in held)))
        self._queue(("_FORWARD", channel, session.id, {"type": "_released", "ok": True}))
        self.moved[session.id] = channel
        asyncio.get_running_loop().call_later(self.grace_s + 60, self.moved.pop, session.id, None)

    # -- internals --------------------------------------------------------------------------------

    def _record(self, session: Session) -> Message:
        return {"id": session.id, "proc": self.process, "login": session.login, "guest_room": session.guest_room,
                "auth": session.auth, "room": session.room.name if session.room else None, "name": session.name,
                "media": session.media, "focus": session.focus}

    def _seat(self, session: Session) -> str:
        return json.dumps({"proc": self.process, "peer": session.describe()})

    @staticmethod
    def _room_key(name: str) -> str:
        return PREFIX + "room:" + name

    def _queue(self, *commands: tuple) -> None:
        for command in commands:
            self.writes.put_nowait(command)

    def _mirror(self, name: str, seats: dict[str, Message]) -> Room:
        """This process's copy of room `name`, with `seats` (peer id -> {"proc", "peer"}, from
        Redis) in it: its own members, and a forwarding Session for each of another process's.
        Members only go at `peer-left`: one who took a seat after `seats` was read is
        already in the copy (its peer-joined came first) and stays."""
        room = self.hub.rooms.setdefault(name, Room(name))
        for peer_id, seat in seats.items():
            self._seat_in(room, peer_id, seat["proc"], seat.get("peer", {}))
        return room

    def _seat_in(self, room: Room, peer_id: str, proc: str, peer: Message) -> None:
        """Another process's member in this process's copy of `room`, sending to `proc`."""
        if peer_id in self.hub.sessions:
            return
        member = room.members.get(peer_id)
        if member is None:
            member = room.members[peer_id] = Session(id=peer_id, send=lambda msg: None, greeted=True, room=room)
        channel = member.home = PREFIX + "proc:" + proc
        member.send = lambda msg: self.writes.put_nowait(("_FORWARD", channel, peer_id, msg))
        member.name = peer.get("name", member.name)
        member.media = peer.get("media", member.media)
        member.focus = peer.get("focus", member.focus)

    async def _write(self) -> None:
        """Apply the queued commands in order, many to a round trip."""
        while True:
            batch = [await self.writes.get()]
            while not self.writes.empty() and len(batch) < 500:
                batch.append(self.writes.get_nowait())
            try:
                pipe = self.redis.pipeline(transaction=False)
                for command in batch:
                    if command[0] == "_FORWARD":
                        _, channel, peer_id, msg = command
                        await self.forward_script(keys=[channel, PREFIX + "held:" + peer_id],
                                                  args=[self._envelope(to=peer_id, msg=msg), MAX_HELD, int(self.grace_s) + 60], client=pipe)
                    elif command[0] == "_REDRAIN":
                        pipe.lrange(PREFIX + "held:" + command[1], 0, -1)
                        pipe.delete(PREFIX + "held:" + command[1])
                    elif command[0] == "ZADD":
                        pipe.zadd(command[1], command[2])
                    else:
                        pipe.execute_command(*command)
                self._after_redrain(batch, await pipe.execute())
            except redis.RedisError as exc:
                log.warning("redis: %s (%d commands dropped)", exc, len(batch))
            finally:
                for _ in batch:
                    self.writes.task_done()

    def _after_redrain(self, batch: list[tuple], results: list) -> None:
        at = 0
        for command in batch:
            if command[0] == "_REDRAIN":
                for raw in results[at] or []:
                    self._deliver(json.loads(raw))
                at += 2
            else:
                at += 1

    async def _read(self) -> None:
        async for item in self.pubsub.listen():
            if item.get("type") == "message":
                try:
                    envelope = json.loads(item["data"])
                    if item["channel"] == ALL.encode():
                        self._heard(envelope)
                    else:
                        self._deliver(envelope)
                except Exception:  # noqa: BLE001 - one bad envelope must not stop the reader
                    log.exception("undeliverable message from the cluster")

    def _heard(self, envelope: Message) -> None:
        """News for every process: a user's presence on another one, a message for all
        pages of a user, or a process that is gone."""
        proc = envelope["from_proc"]
        if "gone" in envelope:
            if envelope["gone"] == self.process:  # taken for dead after a long stall: say it all again
                self._lease_process_later()
                for login, state in self.published.items():
                    self._queue(("HSET", PREFIX + "presence:" + self.process, login, state))
                self._queue(("PUBLISH", ALL, self._envelope(presence=self.published)))
            else:
                self._take_presence(envelope["gone"], {login: "offline" for login, procs in self.elsewhere.items()
                                                     if envelope["gone"] in procs})
                for room in [room for room, procs in self.knocking.items() if envelope["gone"] in procs]:
                    self._take_lobby(envelope["gone"], room, [])
        elif proc == self.process:
            return  # this process has acted on its own news already
        elif "presence" in envelope:
            self._take_presence(proc, envelope["presence"])
        elif "user" in envelope:
            self.hub.send_here(envelope["user"], envelope["msg"])
        elif "lobby" in envelope:
            self._take_lobby(proc, envelope["lobby"], envelope["waiting"])

    def _take_presence(self, proc: str, states: dict[str, str]) -> None:
        """Take `states` (login -> presence) as what process `proc` says of its users now."""
        for login, state in states.items():
            before = self.hub.presence(login)
            procs = self.elsewhere.setdefault(login, {})
            if state == "offline":
                procs.pop(proc, None)
                if not procs:
                    del self.elsewhere[login]
            else:
                procs[proc] = state
            self.hub.presence_changed(login, before)

    def _envelope(self, **fields: Any) -> str:
        return json.dumps({"from_proc": self.process, **fields}, separators=(",", ":"))

    def _process_lease(self) -> dict[str, float]:
        return {self.process: time.time() + max(1.0, self.grace_s / 3) + max(self.grace_s, 2.0)}

    async def _lease_process(self) -> None:
        await self.redis.zadd(PROCS, self._process_lease())

    def _lease_process_later(self) -> None:
        self._queue(("ZADD", PROCS, self._process_lease()))

    async def _seed_presence(self) -> None:
        """What the processes alive now say of their users."""
        for raw in await self.redis.zrangebyscore(PROCS, time.time(), "+inf"):
            proc = raw.decode()
            if proc != self.process:
                states = await self.redis.hgetall(PREFIX + "presence:" + proc)
                self._take_presence(proc, {k.decode(): v.decode() for k, v in states.items()})

    def _deliver(self, envelope: Message) -> None:
        """A message for one of this process's peers; room news also updates the room's copy."""
        to, msg = envelope.get("to"), envelope.get("msg") or {}
        kind = msg.get("type")
        if kind == "_released":
            if (answer := self.releases.get(to)) is not None and not answer.done():
                answer.set_result(msg.get("ok", False))
            return
        if to in self.arriving:  # being handed over to this process
            self.arriving[to].append(envelope)
            return
        session = self.hub.sessions.get(to)
        if session is None:
            if (channel := self.moved.get(to)) is not None:  # handed over: the sender learns soon
                self._queue(("PUBLISH", channel, json.dumps(envelope)))
            elif kind == "_release":
                self._queue(("_FORWARD", PREFIX + "proc:" + envelope["from_proc"], to,
                             {"type": "_released", "ok": False}))
            return  # else it has ended: the sender learns from the room
        if kind == "_release":
            self._hand_over(session, envelope["from_proc"])
            return
        if kind in ("_admit", "_refuse"):  # a member on another process answered (and it is recorded)
            self.hub.let_in(session, kind == "_admit")
            return
        room = session.room
        if room is not None:
            if kind == "_moved":
                if msg["id"] in room.members:
                    self._seat_in(room, msg["id"], envelope["from_proc"], {})
                return
            if kind == "peer-joined":
                self._seat_in(room, msg["peer"]["id"], envelope["from_proc"], msg["peer"])
            elif kind == "peer-left" and msg["id"] not in self.hub.sessions:
                room.members.pop(msg["id"], None)
            elif kind in ("peer-media", "peer-focus", "_stats") and (member := room.members.get(msg["id"])) \
                    is not None and msg["id"] not in self.hub.sessions:
                if kind == "peer-media":
                    member.media = msg["media"]
                elif kind == "peer-focus":
                    member.focus = msg["focus"]
                else:
                    member.stats, member.stats_at = msg["peers"], time.monotonic()
        if not str(kind).startswith("_"):  # the cluster's own messages stay in the cluster
            session.send(msg)

    async def _renew(self) -> None:
        """Every third of the grace period: this process still serves its connected sessions."""
        while True:
            await asyncio.sleep(max(1.0, self.grace_s / 3))
            live = {s.id: time.time() + self.grace_s for s in self.hub.sessions.values()
                    if s.greeted and not s.detached}
            if live:
                self._queue(("ZADD", PREFIX + "leases", live))
            self._lease_process_later()

    async def _reap(self) -> None:
        """End the sessions whose lease ran out: their process died and they did not resume."""
        while True:
            await asyncio.sleep(REAP_EVERY_S)
            try:
                now = time.time()
                for raw in await self.redis.zrangebyscore(PREFIX + "leases", "-inf", now, start=0, num=100):
                    peer_id = raw.decode()
                    if peer_id in self.hub.sessions or not await self.reap_script(
                            keys=[PREFIX + "leases"], args=[peer_id, now]):
                        continue
                    await self._end_elsewhere(peer_id)
                for raw in await self.redis.zrangebyscore(PROCS, "-inf", now, start=0, num=100):
                    if await self.reap_script(keys=[PROCS], args=[raw, now]):  # only one process wins this
                        await self.redis.delete(PREFIX + "presence:" + raw.decode())
                        await self.redis.publish(ALL, self._envelope(gone=raw.decode()))
                        log.info("process %s is gone: its users' presence with it", raw.decode())
            except redis.RedisError as exc:
                log.warning("redis: %s (reaping later)", exc)

    async def _end_elsewhere(self, peer_id: str) -> None:
        """Take a dead process's session out of its room; the room hears peer-left (timeout)."""
        record = await self.redis.get(PREFIX + "session:" + peer_id)
        state = json.loads(record) if record else {}
        await self.redis.delete(PREFIX + "session:" + peer_id, PREFIX + "held:" + peer_id)
        if not state.get("room"):
            return
        key = self._room_key(state["room"])
        await self.redis.hdel(key, peer_id)
        left = {"type": "peer-left", "id": peer_id, "reason": "timeout"}
        for other, seat in (await self.redis.hgetall(key)).items():
            self._queue(("_FORWARD", PREFIX + "proc:" + json.loads(seat)["proc"], other.decode(), left))
        log.info("peer %s of room %r timed out on a process that is gone", peer_id, state["room"])

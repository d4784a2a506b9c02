"""Ringing: a caller invites users into a call room; each invitee is rung on every open page.

Per invitee the state goes ringing -> accepted | declined | missed, or straight
to busy when the invitee is already in a call. The state lives in memory: a
ring that is not answered within `ring_timeout_s` is missed, and a restart
ends all ringing (the rooms themselves are stored). A call nobody is rung for
and nobody is in is forgotten by the housekeeping (`forget_finished`), and each
user may start `calls_per_minute` calls a minute.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Callable

from .ratelimit import TokenBucket
from .signaling import Hub
from .store import Room, User

FINAL = ("accepted", "declined", "missed", "busy")


@dataclass(eq=False)
class Call:
    room: Room
    caller: User
    status: dict[str, str] = field(default_factory=dict)  # invitee login -> state
    names: dict[str, str] = field(default_factory=dict)  # invitee login -> display name
    timers: dict[str, asyncio.TimerHandle] = field(default_factory=dict)
    started_at: float = field(default_factory=time.monotonic)

    def describe(self) -> dict:
        return {
            "id": self.room.id,
            "room": {"id": self.room.id, "name": self.room.name},
            "mode": self.room.mode,
            "caller": self.caller.public(),
            "invitees": [{"login": l, "name": self.names[l], "status": s} for l, s in self.status.items()],
        }

    def ring_message(self) -> dict:
        return {"type": "ring", "call": self.room.id, "room": self.room.id, "title": self.room.name,
                "mode": self.room.mode, "from": self.caller.public()}


class Calls:
    """Live calls, keyed by their room id."""

    def __init__(self, hub: Hub, ring_timeout_s: float, calls_per_minute: float = 10.0,
                 on_outcome: Callable[[str], None] = lambda status: None):
        self.hub, self.ring_timeout_s, self.calls_per_minute = hub, ring_timeout_s, calls_per_minute
        self.on_outcome = on_outcome  # told every ring's end: accepted, declined, missed or busy
        self.calls: dict[str, Call] = {}
        self._starts: dict[str, TokenBucket] = {}  # caller login -> calls they may still start

    def may_start(self, login: str) -> bool:
        """Spend one of the caller's call starts; False when they started too many lately."""
        bucket = self._starts.setdefault(
            login, TokenBucket(self.calls_per_minute / 60.0, max(1, int(self.calls_per_minute))))
        return bucket.take()

    def forget_finished(self) -> int:
        """Forget calls that ring for nobody, whose room is empty, and that started over a ring
        timeout ago; and the call-rate buckets that are full again. Returns the calls kept."""
        horizon = time.monotonic() - self.ring_timeout_s
        for room_id, call in list(self.calls.items()):
            if call.started_at < horizon and "ringing" not in call.status.values() \
                    and room_id not in self.hub.rooms:
                del self.calls[room_id]
        for login, bucket in list(self._starts.items()):
            if bucket.full():
                del self._starts[login]
        return len(self.calls)

    def start(self, room: Room, caller: User) -> Call:
        call = self.calls.get(room.id) or Call(room, caller)
        self.calls[room.id] = call
        return call

    def ring(self, call: Call, invitees: list[User]) -> None:
        """Ring each invitee who is not already ringing or in this call."""
        for user in invitees:
            if user.login == call.caller.login or call.status.get(user.login) in ("ringing", "accepted"):
                continue
            call.names[user.login] = user.name
            if self.hub.in_call(user.login):
                self._set(call, user.login, "busy")
                continue
            self._set(call, user.login, "ringing")
            for session in self.hub.sessions_of(user.login):
                session.send(call.ring_message())
            loop = asyncio.get_running_loop()
            call.timers[user.login] = loop.call_later(self.ring_timeout_s, self._set, call, user.login, "missed")

    def answer(self, call: Call, login: str, accepted: bool) -> bool:
        """Accept or decline; False when `login` is not being rung by this call."""
        if call.status.get(login) != "ringing":
            return False
        self._set(call, login, "accepted" if accepted else "declined")
        return True

    def pending_rings(self, login: str) -> list[dict]:
        """Rings for a user who opens a page while being rung."""
        return [c.ring_message() for c in self.calls.values() if c.status.get(login) == "ringing"]

    def _set(self, call: Call, login: str, status: str) -> None:
        if status == "missed" and call.status.get(login) != "ringing":
            return
        call.status[login] = status
        if status != "ringing":
            self.on_outcome(status)
        if status in FINAL and (timer := call.timers.pop(login, None)):
            timer.cancel()
        if status in ("accepted", "declined", "missed"):
            for session in self.hub.sessions_of(login):
                session.send({"type": "ring-ended", "call": call.room.id, "status": status})
        update = {"type": "call-status", "call": call.room.id, "login": login, "name": call.names.get(login, login),
                  "status": status}
        for session in self.hub.sessions_of(call.caller.login):
            session.send(update)

    def close(self) -> None:
        for call in self.calls.values():
            for timer in call.timers.values():
                timer.cancel()
        self.calls.clear()

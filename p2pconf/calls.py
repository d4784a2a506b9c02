"""Ringing: a caller invites users into a call room; each invitee is rung on every open page.

Per invitee the state goes ringing -> accepted | declined | missed, or straight
to busy when the invitee is already in a call. A ring that is not answered within
`ring_timeout_s` is missed. The states live in a call book: in memory for one
process (`CallBook`, a restart ends all ringing; the rooms themselves are stored),
in Redis for several (`cluster_state.RedisCallBook`), where a ring started on one
process is answered on another. Each user may start `calls_per_minute` calls a
minute (counted in Redis too when there are several processes).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

from .ratelimit import TokenBucket
from .signaling import Hub
from .store import Room, User

FINAL = ("accepted", "declined", "missed", "busy")
MAY_RING = ("", "declined", "missed", "busy")  # states ("": never rung) from which an invitee may be rung
# A ring ends on the process that rang, at its deadline; one still "ringing" this long after
# its deadline lost its process and counts as missed.
ORPHAN_AFTER_S = 5.0


@dataclass(eq=False)
class Call:
    """One call as the book holds it: its room, its caller and each invitee's state."""

    room: dict  # {"id", "name", "mode"}
    caller: dict  # the caller's User.public()
    status: dict[str, str] = field(default_factory=dict)  # invitee login -> state
    names: dict[str, str] = field(default_factory=dict)  # invitee login -> display name
    deadlines: dict[str, float] = field(default_factory=dict)  # invitee login -> unix time its ring ends
    started_at: float = field(default_factory=time.time)

    @property
    def id(self) -> str:
        return self.room["id"]

    def state_of(self, login: str, now: float | None = None) -> str:
        """The invitee's state; a ring whose process died before it ended counts as missed."""
        status = self.status.get(login, "")
        if status == "ringing" and self.deadlines.get(login, 0) + ORPHAN_AFTER_S <= (now or time.time()):
            return "missed"
        return status

    def describe(self) -> dict:
        now = time.time()
        return {
            "id": self.id,
            "room": {"id": self.id, "name": self.room["name"]},
            "mode": self.room["mode"],
            "caller": self.caller,
            "invitees": [{"login": l, "name": self.names[l], "status": self.state_of(l, now)} for l in self.status],
        }

    def ring_message(self) -> dict:
        return {"type": "ring", "call": self.id, "room": self.id, "title": self.room["name"],
                "mode": self.room["mode"], "from": self.caller}


class CallBook:
    """The calls of one server process, in memory."""

    def __init__(self):
        self.calls: dict[str, Call] = {}

    async def open(self, call: Call) -> None:
        """Keep `call`, unless its room has one already."""
        self.calls.setdefault(call.id, call)

    async def get(self, call_id: str) -> Call | None:
        return self.calls.get(call_id)

    async def move(self, call_id: str, login: str, status: str, allowed: Iterable[str], *, name: str = "",
                   deadline: float = 0.0, ring: float | None = None) -> bool:
        """Set `login`'s state in the call to `status` if it is one of `allowed` now (atomically
        in every book); `deadline`: when a ring ends; `ring`: only while the ring that ends at
        this deadline is the current one. False when it is not, or no such call."""
        call = self.calls.get(call_id)
        if call is None or call.state_of(login) not in allowed or (ring is not None and call.deadlines.get(login) != ring):
            return False
        call.status[login] = status
        call.names[login] = name or call.names.get(login, login)
        call.deadlines[login] = deadline
        return True

    async def ringing_for(self, login: str) -> list[Call]:
        """The calls that ring for `login` now."""
        now = time.time()
        return [c for c in self.calls.values() if c.state_of(login, now) == "ringing"]

    def forget_finished(self, horizon: float, in_use: Callable[[str], bool]) -> int:
        """Forget calls that started before `horizon`, ring for nobody and whose room is not
        `in_use`; returns how many are kept."""
        for call_id, call in list(self.calls.items()):
            if call.started_at < horizon and "ringing" not in call.status.values() and not in_use(call_id):
                del self.calls[call_id]
        return len(self.calls)

    def close(self) -> None:
        self.calls.clear()


class Calls:
    """The rules of ringing, over a call book."""

    def __init__(self, hub: Hub, ring_timeout_s: float, calls_per_minute: float = 10.0,
                 on_outcome: Callable[[str], None] = lambda status: None, book: CallBook | None = None):
        self.hub, self.ring_timeout_s, self.calls_per_minute = hub, ring_timeout_s, calls_per_minute
        self.on_outcome = on_outcome  # told every ring's end: accepted, declined, missed or busy
        self.book = book or CallBook()
        self.timers: dict[tuple[str, str], asyncio.TimerHandle] = {}  # (call, login) -> its ring's end, here
        self.tasks: set[asyncio.Task] = set()
        self._starts: dict[str, TokenBucket] = {}  # caller login -> calls they may still start
        self.start_window = None  # with other processes: a cluster_state.RedisWindow of call starts

    async def may_start(self, login: str) -> bool:
        """Spend one of the caller's call starts; False when they started too many lately."""
        if self.start_window is not None:
            return not await self.start_window.take("calls:" + login)
        bucket = self._starts.setdefault(
            login, TokenBucket(self.calls_per_minute / 60.0, max(1, int(self.calls_per_minute))))
        return bucket.take()

    def forget_finished(self) -> int:
        """Forget finished calls (see CallBook.forget_finished) and the call-rate buckets that
        are full again. Returns the calls kept."""
        for login, bucket in list(self._starts.items()):
            if bucket.full():
                del self._starts[login]
        return self.book.forget_finished(time.time() - self.ring_timeout_s, lambda room_id: room_id in self.hub.rooms)

    async def start(self, room: Room, caller: User, invitees: list[User]) -> dict:
        """Open the call of `room` (or take up the one it has) and ring `invitees`; the call's description."""
        await self.book.open(Call({"id": room.id, "name": room.name, "mode": room.mode}, caller.public()))
        return await self.ring(room.id, invitees)

    async def get(self, call_id: str) -> Call | None:
        return await self.book.get(call_id)

    async def ring(self, call_id: str, invitees: list[User]) -> dict:
        """Ring each invitee who is not already ringing or in this call; the call's description."""
        call = await self.book.get(call_id)
        for user in invitees:
            if user.login == call.caller["login"]:
                continue
            if self.hub.in_call(user.login):
                await self._move(call, user.login, "busy", MAY_RING, name=user.name)
                continue
            deadline = time.time() + self.ring_timeout_s
            if await self._move(call, user.login, "ringing", MAY_RING, name=user.name, deadline=deadline):
                self.hub.send_to_user(user.login, call.ring_message())
                self.timers[call.id, user.login] = asyncio.get_running_loop().call_later(
                    self.ring_timeout_s, self._ring_ended, call, user.login, deadline)
        return (await self.book.get(call_id)).describe()

    async def answer(self, call_id: str, login: str, accepted: bool) -> str | None:
        """Accept or decline: the new state, or None when `login` is not being rung by this call."""
        call = await self.book.get(call_id)
        status = "accepted" if accepted else "declined"
        if call is None or not await self._move(call, login, status, ("ringing",)):
            return None
        return status

    async def pending_rings(self, login: str) -> list[dict]:
        """Rings for a user who opens a page while being rung."""
        return [call.ring_message() for call in await self.book.ringing_for(login)]

    def _ring_ended(self, call: Call, login: str, deadline: float) -> None:
        """This process's ring ends: missed, unless it was answered, or a new ring (perhaps
        started on another process) took its place meanwhile."""
        self.timers.pop((call.id, login), None)
        task = asyncio.ensure_future(self._move(call, login, "missed", ("ringing",), ring=deadline))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _move(self, call: Call, login: str, status: str, allowed: Iterable[str], **extra) -> bool:
        """Change one invitee's state in the book and tell the invitee's and the caller's pages."""
        if not await self.book.move(call.id, login, status, allowed, **extra):
            return False
        if status != "ringing":
            self.on_outcome(status)
            if timer := self.timers.pop((call.id, login), None):
                timer.cancel()
        if status in ("accepted", "declined", "missed"):
            self.hub.send_to_user(login, {"type": "ring-ended", "call": call.id, "status": status})
        name = extra.get("name") or call.names.get(login, login)
        self.hub.send_to_user(call.caller["login"], {"type": "call-status", "call": call.id, "login": login,
                                                     "name": name, "status": status})
        return True

    def close(self) -> None:
        for timer in self.timers.values():
            timer.cancel()
        for task in self.tasks:
            task.cancel()
        self.book.close()

"""What the processes of a cluster share in Redis besides rooms and presence (cluster.py):
live calls with their rings, the sign-in throttle and the call-start limit.

- `call:<room id>` (hash): the call's `room` and `caller` (JSON), `started`, and per
  invitee `s:<login>` (state), `n:<login>` (name), `d:<login>` (when the ring ends). It
  expires `CALL_TTL_S` after its last change.
- `rings:<login>` (sorted set: call key -> ring deadline): the calls ringing for a user, so
  a page opened on any process is rung.
- `window:login:<login>`, `window:addr:<address>`, `window:calls:<login>` (sorted sets:
  attempt -> unix time): sign-in attempts in the throttle's window, and calls started in
  the last minute.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Callable, Iterable

import redis.asyncio as redis

from .calls import ORPHAN_AFTER_S, Call

PREFIX = "p2pconf:"
CALL_TTL_S = 24 * 3600

# KEYS: call, rings of the login; ARGV: login, status, name, deadline, ttl, now, orphan slack,
# the ring's deadline ('' for any), allowed states... Moves the login to `status` if its state
# is one of the allowed (a ring orphaned by a dead process counts as missed, as in
# Call.state_of) and, when given, the current ring is the one ending at that deadline.
_MOVE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local login = ARGV[1]
local state = redis.call('HGET', KEYS[1], 's:' .. login) or ''
local ends = redis.call('HGET', KEYS[1], 'd:' .. login) or ''
if ARGV[8] ~= '' and ends ~= ARGV[8] then return false end
if state == 'ringing' and tonumber(ends ~= '' and ends or 0) + tonumber(ARGV[7]) <= tonumber(ARGV[6]) then
  state = 'missed'
end
for i = 9, #ARGV do
  if ARGV[i] == state then
    redis.call('HSET', KEYS[1], 's:' .. login, ARGV[2], 'd:' .. login, ARGV[4])
    if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'n:' .. login, ARGV[3]) end
    redis.call('EXPIRE', KEYS[1], ARGV[5])
    if ARGV[2] == 'ringing' then
      redis.call('ZADD', KEYS[2], ARGV[4], KEYS[1])
      redis.call('EXPIRE', KEYS[2], ARGV[5])
    else
      redis.call('ZREM', KEYS[2], KEYS[1])
    end
    return 1
  end
end
return false
"""

# KEYS: the windows an attempt counts in; ARGV: now, window, limit, attempt id. 0 and the
# attempt counted in every window, or the seconds to wait when one of them is full.
_TAKE = """
local wait = 0
for i = 1, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', tonumber(ARGV[1]) - tonumber(ARGV[2]))
  if redis.call('ZCARD', KEYS[i]) >= tonumber(ARGV[3]) then
    local oldest = redis.call('ZRANGE', KEYS[i], 0, 0, 'WITHSCORES')[2]
    wait = math.max(wait, tonumber(oldest) + tonumber(ARGV[2]) - tonumber(ARGV[1]))
  end
end
if wait > 0 then return tostring(math.max(wait, 1)) end
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], ARGV[1], ARGV[4])
  redis.call('EXPIRE', KEYS[i], math.ceil(tonumber(ARGV[2])))
end
return '0'
"""


class RedisWindow:
    """At most `limit` attempts within `window_s` per name, counted by every process."""

    def __init__(self, client: redis.Redis, limit: int, window_s: float):
        self.redis, self.limit, self.window_s = client, limit, window_s
        self.take_script = client.register_script(_TAKE)

    async def take(self, *names: str) -> float:
        """Count an attempt under each name: 0, or (counting nothing) the seconds to wait."""
        return float(await self.take_script(keys=[PREFIX + "window:" + n for n in names],
                                            args=[time.time(), self.window_s, self.limit, secrets.token_hex(8)]))

    async def give_back(self, name: str) -> None:
        """Uncount the newest attempt under `name`."""
        await self.redis.zpopmax(PREFIX + "window:" + name)

    async def clear(self, name: str) -> None:
        await self.redis.delete(PREFIX + "window:" + name)


class RedisCallBook:
    """The calls of every process, in Redis (the interface of calls.CallBook)."""

    def __init__(self, client: redis.Redis):
        self.redis = client
        self.move_script = client.register_script(_MOVE)

    @staticmethod
    def _key(call_id: str) -> str:
        return PREFIX + "call:" + call_id

    async def open(self, call: Call) -> None:
        key = self._key(call.id)
        if await self.redis.hsetnx(key, "room", json.dumps(call.room)):
            await self.redis.hset(key, mapping={"caller": json.dumps(call.caller), "started": call.started_at})
        await self.redis.expire(key, CALL_TTL_S)

    async def get(self, call_id: str) -> Call | None:
        fields = {k.decode(): v.decode() for k, v in (await self.redis.hgetall(self._key(call_id))).items()}
        if "caller" not in fields:
            return None
        call = Call(json.loads(fields["room"]), json.loads(fields["caller"]), started_at=float(fields["started"]))
        for name, value in fields.items():
            kind, _, login = name.partition(":")
            if kind == "s":
                call.status[login] = value
            elif kind == "n":
                call.names[login] = value
            elif kind == "d":
                call.deadlines[login] = float(value)
        return call

    async def move(self, call_id: str, login: str, status: str, allowed: Iterable[str], *, name: str = "",
                   deadline: float = 0.0, ring: float | None = None) -> bool:
        # deadlines are compared as Redis keeps them: the text redis-py makes of the float
        return bool(await self.move_script(
            keys=[self._key(call_id), PREFIX + "rings:" + login],
            args=[login, status, name, deadline, CALL_TTL_S, time.time(), ORPHAN_AFTER_S,
                  "" if ring is None else repr(float(ring)), *allowed]))

    async def ringing_for(self, login: str) -> list[Call]:
        now = time.time()
        keys = await self.redis.zrangebyscore(PREFIX + "rings:" + login, now - ORPHAN_AFTER_S, "+inf")
        calls = [await self.get(key.decode().removeprefix(PREFIX + "call:")) for key in keys]
        return [call for call in calls if call is not None and call.state_of(login, now) == "ringing"]

    def forget_finished(self, horizon: float, in_use: Callable[[str], bool]) -> int:
        """Nothing to do: Redis lets a call expire CALL_TTL_S after its last change."""
        return 0

    def close(self) -> None:
        """The cluster closes the client."""


class RedisThrottle:
    """auth.LoginThrottle's rules over the attempts of every process, in Redis."""

    def __init__(self, client: redis.Redis, limit: int, window_s: float):
        self.window = RedisWindow(client, limit, window_s)

    async def begin(self, login: str, address: str) -> float:
        return await self.window.take("login:" + login.lower(), "addr:" + address)

    async def succeeded(self, login: str, address: str) -> None:
        await self.window.clear("login:" + login.lower())
        await self.window.give_back("addr:" + address)

    async def take_back(self, login: str, address: str) -> None:
        await self.window.give_back("login:" + login.lower())
        await self.window.give_back("addr:" + address)

    def sweep(self) -> int:
        """Nothing to do: Redis expires the attempts with the window."""
        return 0

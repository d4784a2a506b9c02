"""Rights taken away reach open sockets; what has expired is forgotten.

A user disabled, a guest link revoked or a session ended — from the API, from
`p2pconf users|rooms` in another process, or from another server process on the
same store — is written to the store's event feed in the same transaction as the
change itself. `AccessWatch` follows that feed every `access_poll_s` seconds and
closes the sockets concerned (docs/protocol.md, "Closing"): 4003 for a revoked
link, 4001 for a disabled user or an ended or expired session, 4004 for a guest
turned away at a lobby. The room hears
`peer-left` as for any closed socket.

It also does the housekeeping every `purge_interval_s`: expired sessions, spent
SSO tokens and old events are purged from the store, and sign-in throttle
entries, finished calls, idle call-rate buckets and refilled connection-test
buckets are forgotten.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web

from . import audit, protocol
from .appkeys import ACCESS, CALLS, CONFIG, HUB, LINKTEST, STORE, THROTTLE
from .signaling import Session
from .store import GUEST_REFUSED, INVITE_REVOKED, SESSION_ENDED, USER_DISABLED, Event

log = logging.getLogger("p2pconf.access")

# event kind -> (close code, which sessions it concerns)
_CLOSES = {
    USER_DISABLED: (protocol.CLOSE_SIGNED_OUT, lambda s, subject: s.login is not None and s.login == subject),
    INVITE_REVOKED: (protocol.CLOSE_REVOKED, lambda s, subject: s.guest_room == subject),
    SESSION_ENDED: (protocol.CLOSE_SIGNED_OUT, lambda s, subject: s.auth == subject),
    GUEST_REFUSED: (protocol.CLOSE_NOT_ADMITTED, lambda s, subject: s.auth == subject),
}


class AccessWatch:
    """Follows the store's event feed for one app (see the module's docstring)."""

    def __init__(self, app: web.Application):
        self.app = app
        self.last_event = 0
        self._lock = asyncio.Lock()
        self.stopped = asyncio.Event()  # set on shutdown: the watch finishes what it does and ends

    async def start(self) -> None:
        self.last_event = await self.app[STORE].last_event_id()

    async def check(self) -> int:
        """Apply new events and session expiry now; returns how many sockets were closed."""
        async with self._lock:
            closed = 0
            while events := await self.app[STORE].events_after(self.last_event):
                for ev in events:
                    closed += self._apply(ev)
                self.last_event = events[-1].id
            now = time.time()
            for session in self.app[HUB].close_where(
                    protocol.CLOSE_SIGNED_OUT, lambda s: s.expires_at is not None and s.expires_at <= now):
                audit.event("socket-closed", why="session-expired", peer=session.id, login=session.login)
                closed += 1
            return closed

    def _apply(self, ev: Event) -> int:
        if ev.kind not in _CLOSES:
            return 0
        code, concerns = _CLOSES[ev.kind]
        sessions = self.app[HUB].close_where(code, lambda s: concerns(s, ev.subject))
        for session in sessions:
            audit.event("socket-closed", why=ev.kind, code=code, peer=session.id, login=session.login,
                        room=session.room.name if session.room else None)
        return len(sessions)

    async def housekeeping(self) -> dict[str, int]:
        """Purge and forget what has expired; returns what is left or was removed, for the log."""
        purged = await self.app[STORE].purge_expired()
        return {**{f"purged_{k}": v for k, v in purged.items()},
                "throttle_entries": self.app[THROTTLE].sweep(),
                "linktest_addresses": self.app[LINKTEST].sweep(),
                "calls": self.app[CALLS].forget_finished()}

    async def run(self) -> None:
        config = self.app[CONFIG]
        next_purge = time.monotonic()
        # cancelling(): a cancel that some await swallowed still ends the loop (seen on shutdown)
        while not self.stopped.is_set() and not asyncio.current_task().cancelling():
            try:
                await self.check()
                if time.monotonic() >= next_purge:
                    log.debug("housekeeping: %s", await self.housekeeping())
                    next_purge = time.monotonic() + config.purge_interval_s
            except Exception:  # a busy or broken store must not end the watch; say so and go on
                log.exception("access watch: check failed; retrying")
            try:  # asyncio.timeout, unlike wait_for on 3.11, never swallows an outer cancel
                async with asyncio.timeout(config.access_poll_s):
                    await self.stopped.wait()
            except TimeoutError:
                pass


async def watch_access(app: web.Application):
    """cleanup_ctx: run the AccessWatch for the app's lifetime; on shutdown let it end
    by itself (no cancel in the middle of a store transaction), bounded to 10 s."""
    watch = app[ACCESS] = AccessWatch(app)
    await watch.start()
    task = asyncio.create_task(watch.run())
    yield
    watch.stopped.set()
    await asyncio.wait({task}, timeout=10)
    if not task.done():
        task.cancel()

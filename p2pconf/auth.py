"""Who is asking: passwords, sessions, CSRF, sign-in throttling and SSO tokens."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import os
import re
import secrets
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from . import protocol
from .store import Room, SessionRecord, User

SESSION_COOKIE = "p2pconf_session"
CSRF_COOKIE = "p2pconf_csrf"  # double-submit token for forms used before a session exists
CSRF_HEADER = "X-CSRF-Token"

_hasher = PasswordHasher()
# Compared against when the login is unknown, so both cases take the same time.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


LOGIN_RE = protocol.LOGIN_RE  # logins are case-insensitive: ANNA is anna
EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,190}$")


def hash_password(password: str) -> str:
    """An argon2id hash of `password`."""
    if not 8 <= len(password) <= 1024:
        raise ValueError("a password needs 8 to 1024 characters")
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Check `password` against an argon2 hash (a missing hash never matches)."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def same_token(a: str | None, b: str | None) -> bool:
    """Constant-time comparison of two tokens; None never matches."""
    return bool(a) and bool(b) and hmac.compare_digest(a, b)


@dataclass(frozen=True)
class Identity:
    """The party behind a request or a WebSocket: a user, a guest, or nobody."""

    user: User | None = None
    guest_room: Room | None = None
    guest_name: str | None = None
    csrf: str | None = None
    session_id: str | None = None  # the id hash of the session behind it
    expires_at: float | None = None  # when that session ends (unix time)
    admitted: bool = False  # a guest let in through its room's lobby

    @classmethod
    def from_session(cls, record: SessionRecord | None) -> "Identity":
        if record is None:
            return cls()
        return cls(record.user, record.guest_room, record.guest_name, record.csrf, record.id_hash, record.expires_at,
                   record.admitted)

    @property
    def is_user(self) -> bool:
        return self.user is not None

    @property
    def is_guest(self) -> bool:
        return self.guest_room is not None

    @property
    def display_name(self) -> str | None:
        return self.user.name if self.user else self.guest_name

    @property
    def login(self) -> str | None:
        return self.user.login if self.user else None


class LoginThrottle:
    """At most `limit` sign-in attempts within `window_s` that did not succeed, per login and per address.

    An attempt counts *before* its password is checked (`begin`), so any number of
    requests sent at once gets no more than `limit` checks; a correct password then
    takes its own attempt back (`succeeded`). Entries expire with the window. This one
    counts in memory, for one process; several share cluster_state.RedisThrottle.
    """

    def __init__(self, limit: int = 5, window_s: float = 900.0, clock=time.monotonic):
        self.limit, self.window_s, self.clock = limit, window_s, clock
        self._attempts: dict[str, deque[float]] = {}

    @staticmethod
    def _keys(login: str, address: str) -> tuple[str, str]:
        return f"login:{login.lower()}", f"addr:{address}"

    def _recent(self, key: str) -> deque[float]:
        q = self._attempts.get(key) or deque()
        while q and self.clock() - q[0] > self.window_s:
            q.popleft()
        return q

    async def begin(self, login: str, address: str) -> float:
        """Count an attempt: 0 when it may go on to the password check, else seconds to wait."""
        queues = [self._recent(key) for key in self._keys(login, address)]
        waits = [self.window_s - (self.clock() - q[0]) for q in queues if len(q) >= self.limit]
        if waits:
            return max(max(waits), 1.0)
        for key, q in zip(self._keys(login, address), queues):
            q.append(self.clock())
            self._attempts[key] = q
        return 0.0

    async def succeeded(self, login: str, address: str) -> None:
        """The password was right: forget the login's failures and give the address its attempt back."""
        await self.take_back(login, address)
        self._attempts.pop(self._keys(login, address)[0], None)

    async def take_back(self, login: str, address: str) -> None:
        """Uncount one attempt that was never checked."""
        for key in self._keys(login, address):
            if q := self._attempts.get(key):
                q.pop()

    def sweep(self) -> int:
        """Forget entries whose attempts have all expired; returns how many are left."""
        for key in list(self._attempts):
            if not self._recent(key):
                del self._attempts[key]
        return len(self._attempts)


class Overloaded(Exception):
    """Too many password checks are waiting already; try again after `retry_after_s`."""

    def __init__(self, retry_after_s: int):
        super().__init__(f"busy; try again in {retry_after_s} s")
        self.retry_after_s = retry_after_s


HASH_THREAD_NICENESS = 10


def _yield_cpu() -> None:
    """Lower this (hashing) thread's CPU priority: when the cores are busy, the event loop,
    which relays every call's signaling, comes first and a sign-in waits a little longer.
    (Linux applies a thread id's niceness to that thread alone.)"""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASH_THREAD_NICENESS)


class HashPool:
    """Runs argon2 off the event loop, in `workers` threads (argon2 releases the GIL).

    A check takes about 0.1-0.3 s of one core, so a burst of sign-ins must not run on
    the loop that relays every call's signaling. At most `workers + max_waiting`
    checks are admitted at once; more are refused at once (`Overloaded`).
    """

    def __init__(self, workers: int | None = None, max_waiting: int | None = None):
        self.workers = workers or max(1, (os.cpu_count() or 2) - 1)
        self.capacity = self.workers + (max_waiting if max_waiting is not None else 4 * self.workers)
        self.admitted = 0
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="argon2", initializer=_yield_cpu)

    async def run(self, fn, *args):
        if self.admitted >= self.capacity:
            raise Overloaded(retry_after_s=2)
        self.admitted += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        finally:
            self.admitted -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


async def attempt_sign_in(store, throttle: LoginThrottle, hashes: HashPool, login: str, password: str,
                          address: str) -> tuple[User | None, float]:
    """Check a sign-in: (user, 0) when it succeeds, (None, seconds to wait) when
    throttled, (None, 0) for a wrong login or password (which counts as a failure).
    Raises Overloaded when too many checks are running already (the attempt is not counted)."""
    if wait := await throttle.begin(login, address):
        return None, wait
    try:
        found = await store.password_hash(login) if login else None
        ok = await hashes.run(verify_password, found[1] if found else None, password)
    except Overloaded:
        await throttle.take_back(login, address)  # not checked, so not a failure either
        raise
    if not ok or not found[0].active:
        return None, 0.0
    await throttle.succeeded(login, address)
    return found[0], 0.0


class SsoError(Exception):
    """An SSO token was refused; `code` is "sso-expired" or "sso-invalid"."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def read_sso_token(token: str, secret: str, max_lifetime_s: float = 300.0, leeway_s: float = 10.0) -> dict:
    """Verify the host platform's HS256 token and return {login, name, email, expires_at}.

    The token must carry numeric `exp` and `iat` no more than `max_lifetime_s` apart,
    and `sub`, the login, checked like `p2pconf users add` checks one. `name` is
    folded and cut to 40 characters and must be printable text; `email` is optional.
    """
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"], leeway=leeway_s,
                            options={"require": ["exp", "iat", "sub"]})
    except jwt.ExpiredSignatureError:
        raise SsoError("sso-expired", "the sign-in link has expired; open the module from the platform again") from None
    except jwt.PyJWTError as exc:
        raise SsoError("sso-invalid", f"the sign-in token is not valid ({exc})") from None
    exp, iat = claims["exp"], claims["iat"]
    if not all(type(v) in (int, float) for v in (exp, iat)):
        raise SsoError("sso-invalid", "the sign-in token's exp and iat must be numbers")
    if exp - iat > max_lifetime_s:
        raise SsoError("sso-invalid", f"the sign-in token lives longer than {max_lifetime_s:.0f} s")
    login, name, email = claims["sub"], claims.get("name") or claims["sub"], claims.get("email") or None
    if not isinstance(login, str) or not LOGIN_RE.match(login):
        raise SsoError("sso-invalid", "the sign-in token's sub must be a login of 1 to 64 letters, digits or . _ @ -")
    try:
        name = protocol.clean_name(" ".join(name.split())[:protocol.MAX_NAME_CHARS] if isinstance(name, str) else name)
    except protocol.ProtocolError:
        raise SsoError("sso-invalid", "the sign-in token's name must be printable text") from None
    if email is not None and (not isinstance(email, str) or not EMAIL_RE.match(email) or not email.isprintable()):
        raise SsoError("sso-invalid", "the sign-in token's email is not an address")
    return {"login": login, "name": name, "email": email, "expires_at": float(exp) + leeway_s}

"""Who is asking: passwords, sessions, CSRF, sign-in throttling and SSO tokens."""

from __future__ import annotations

import hmac
import secrets
import time
from collections import defaultdict, deque
from dataclasses import dataclass

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from .store import Room, SessionRecord, User

SESSION_COOKIE = "p2pconf_session"
CSRF_COOKIE = "p2pconf_csrf"  # double-submit token for forms used before a session exists
CSRF_HEADER = "X-CSRF-Token"

_hasher = PasswordHasher()
# Compared against when the login is unknown, so both cases take the same time.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


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

    @classmethod
    def from_session(cls, record: SessionRecord | None) -> "Identity":
        if record is None:
            return cls()
        return cls(record.user, record.guest_room, record.guest_name, record.csrf)

    @property
    def is_user(self) -> bool:
        return self.user is not None

    @property
    def is_guest(self) -> bool:
        return self.guest_room is not None

    @property
    def display_name(self) -> str | None:
        return self.user.name if self.user else self.guest_name


class LoginThrottle:
    """Refuses sign-in after `limit` failures within `window_s`, per login and per address."""

    def __init__(self, limit: int = 5, window_s: float = 900.0, clock=time.monotonic):
        self.limit, self.window_s, self.clock = limit, window_s, clock
        self._failures: dict[str, deque[float]] = defaultdict(deque)

    def _recent(self, key: str) -> deque[float]:
        q = self._failures[key]
        while q and self.clock() - q[0] > self.window_s:
            q.popleft()
        return q

    def retry_after(self, login: str, address: str) -> float:
        """0 when a try is allowed, else seconds until it is."""
        waits = []
        for key in (f"login:{login.lower()}", f"addr:{address}"):
            q = self._recent(key)
            if len(q) >= self.limit:
                waits.append(self.window_s - (self.clock() - q[0]))
        return max(waits, default=0.0)

    def failed(self, login: str, address: str) -> None:
        for key in (f"login:{login.lower()}", f"addr:{address}"):
            self._recent(key).append(self.clock())

    def succeeded(self, login: str) -> None:
        self._failures.pop(f"login:{login.lower()}", None)


async def attempt_sign_in(store, throttle: LoginThrottle, login: str, password: str,
                          address: str) -> tuple[User | None, float]:
    """Check a sign-in: (user, 0) when it succeeds, (None, seconds to wait) when
    throttled, (None, 0) for a wrong login or password (which counts as a failure)."""
    if wait := throttle.retry_after(login, address):
        return None, wait
    found = await store.password_hash(login) if login else None
    if not verify_password(found[1] if found else None, password) or not found[0].active:
        throttle.failed(login, address)
        return None, 0.0
    throttle.succeeded(login)
    return found[0], 0.0


class SsoError(Exception):
    """An SSO token was refused; `code` is "sso-expired" or "sso-invalid"."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def read_sso_token(token: str, secret: str, max_lifetime_s: float = 300.0, leeway_s: float = 10.0) -> dict:
    """Verify the host platform's HS256 token and return {login, name, email}.

    The token must carry `exp` and `iat` no more than `max_lifetime_s` apart, and
    `sub` (the login) and `name`; `email` is optional.
    """
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"], leeway=leeway_s,
                            options={"require": ["exp", "iat", "sub"]})
    except jwt.ExpiredSignatureError:
        raise SsoError("sso-expired", "the sign-in link has expired; open the module from the platform again") from None
    except jwt.PyJWTError as exc:
        raise SsoError("sso-invalid", f"the sign-in token is not valid ({exc})") from None
    if claims["exp"] - claims["iat"] > max_lifetime_s:
        raise SsoError("sso-invalid", f"the sign-in token lives longer than {max_lifetime_s:.0f} s")
    login, name = claims.get("sub"), claims.get("name") or claims.get("sub")
    if not isinstance(login, str) or not 1 <= len(login) <= 64 or not isinstance(name, str):
        raise SsoError("sso-invalid", "the sign-in token names no valid user")
    email = claims.get("email") if isinstance(claims.get("email"), str) else None
    return {"login": login, "name": name.strip()[:80] or login, "email": email}

"""The data layer: users, rooms, invites and sessions in one SQLite file (WAL mode).

Everything else talks to `Store` only, so a networked database can replace
SQLite behind the same methods. The schema is versioned with SQLite's
`user_version`; `MIGRATIONS[n]` upgrades version n to n+1 and runs once, on open.
The CLI opens the same file while the server runs; WAL lets both work at once.

Every change is one transaction that commits or rolls back (`_transaction`,
BEGIN IMMEDIATE with a busy timeout): a failed write never leaves a transaction
open that would pin an old snapshot or hold the write lock. Changes that take
rights away (a disabled user, a revoked link, an ended session) also append a
row to `events`, in the same transaction; every server process on the file
follows that feed and closes the sockets concerned (`access.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

DB_FILE = "p2pconf.sqlite3"

MIGRATIONS = [
    """
    CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        login TEXT NOT NULL UNIQUE COLLATE NOCASE,
        name TEXT NOT NULL,
        email TEXT,
        password_hash TEXT,
        active INTEGER NOT NULL DEFAULT 1,
        created_at REAL NOT NULL
    );
    CREATE TABLE rooms (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('call', 'guest')),
        mode TEXT NOT NULL DEFAULT 'audio+video',
        created_by INTEGER REFERENCES users(id),
        created_at REAL NOT NULL
    );
    CREATE TABLE room_members (
        room_id TEXT NOT NULL REFERENCES rooms(id),
        user_id INTEGER NOT NULL REFERENCES users(id),
        PRIMARY KEY (room_id, user_id)
    );
    CREATE TABLE invites (
        id INTEGER PRIMARY KEY,
        token_hash TEXT NOT NULL UNIQUE,
        room_id TEXT NOT NULL REFERENCES rooms(id),
        created_by INTEGER REFERENCES users(id),
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        revoked_at REAL
    );
    CREATE TABLE sessions (
        id_hash TEXT PRIMARY KEY,
        user_id INTEGER REFERENCES users(id),
        guest_room_id TEXT REFERENCES rooms(id),
        guest_name TEXT,
        csrf TEXT NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL
    );
    CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
    """
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        subject TEXT NOT NULL,
        at REAL NOT NULL
    );
    CREATE TABLE sso_tokens (token_hash TEXT PRIMARY KEY, expires_at REAL NOT NULL);
    CREATE INDEX sessions_expiry ON sessions(expires_at);
    """,
]

# Kinds of `events` rows: who lost which right (the subject).
USER_DISABLED = "user-disabled"  # subject: the login
INVITE_REVOKED = "invite-revoked"  # subject: the guest room's id
SESSION_ENDED = "session-ended"  # subject: the session's id hash
EVENTS_KEPT_S = 3600.0  # purged after this; followers poll every second or so
BUSY_TIMEOUT_MS = 5000


def token_hash(token: str) -> str:
    """Tokens are stored hashed: a copy of the database lets nobody in."""
    return hashlib.sha256(token.encode()).hexdigest()


class StoreError(Exception):
    """A refused change; `code` is the API's error code."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class User:
    id: int
    login: str
    name: str
    email: str | None
    active: bool
    has_password: bool

    def public(self) -> dict[str, Any]:
        return {"login": self.login, "name": self.name}


@dataclass(frozen=True)
class Room:
    id: str
    name: str
    kind: str
    mode: str
    created_by: int | None


@dataclass(frozen=True)
class Invite:
    id: int
    room: Room
    created_by: int | None
    expires_at: float
    revoked_at: float | None

    def state(self, now: float | None = None) -> str:
        """"valid", "expired" or "revoked"."""
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if (now or time.time()) >= self.expires_at else "valid"


@dataclass(frozen=True)
class SessionRecord:
    id_hash: str
    user: User | None
    guest_room: Room | None
    guest_name: str | None
    csrf: str
    expires_at: float


@dataclass(frozen=True)
class Event:
    id: int
    kind: str
    subject: str


class Store:
    """Async access to the data directory's SQLite file."""

    def __init__(self, db: aiosqlite.Connection, path: Path):
        self.db, self.path = db, path
        self._writing = asyncio.Lock()  # one transaction at a time on this connection

    @classmethod
    async def open(cls, data_dir: Path) -> "Store":
        """Open (creating if needed) the store in `data_dir` and migrate it."""
        data_dir.mkdir(parents=True, exist_ok=True)
        path = data_dir / DB_FILE
        # isolation_level=None: no implicit transactions; _transaction() begins and ends each one.
        db = await aiosqlite.connect(path, isolation_level=None)
        db.row_factory = sqlite3.Row
        await db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA foreign_keys=ON")
        store = cls(db, path)
        await store._migrate()
        return store

    async def close(self) -> None:
        await self.db.close()

    async def _migrate(self) -> None:
        async with self._transaction() as db:  # two processes opening a new file migrate it once
            (version,) = await (await db.execute("PRAGMA user_version")).fetchone()
            for number in range(version, len(MIGRATIONS)):
                for statement in MIGRATIONS[number].split(";"):
                    if statement.strip():
                        await db.execute(statement)
                await db.execute(f"PRAGMA user_version = {number + 1}")

    @contextlib.asynccontextmanager
    async def _transaction(self):
        """One write transaction: BEGIN IMMEDIATE (waits up to the busy timeout for the
        write lock), then COMMIT, or ROLLBACK on any error. Raises StoreError("busy")
        when the lock could not be had."""
        async with self._writing:
            try:
                await self.db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise StoreError("busy", f"the database is busy ({exc}); try again") from None
            try:
                yield self.db
                await self.db.execute("COMMIT")
            except BaseException:
                if self.db.in_transaction:
                    await self.db.execute("ROLLBACK")
                raise

    async def _event(self, db, kind: str, subject: str) -> None:
        await db.execute("INSERT INTO events(kind, subject, at) VALUES (?, ?, ?)", (kind, subject, time.time()))

    async def schema_version(self) -> int:
        (version,) = await (await self.db.execute("PRAGMA user_version")).fetchone()
        return version

    # -- settings -------------------------------------------------------------------------

    async def set_setting(self, key: str, value: str) -> None:
        async with self._transaction() as db:
            await db.execute("INSERT OR REPLACE INTO settings(key, value) VALUES (?, ?)", (key, value))

    async def setting(self, key: str) -> str | None:
        row = await (await self.db.execute("SELECT value FROM settings WHERE key = ?", (key,))).fetchone()
        return row["value"] if row else None

    # -- users ----------------------------------------------------------------------------

    @staticmethod
    def _user(row) -> User | None:
        if row is None:
            return None
        return User(row["id"], row["login"], row["name"], row["email"], bool(row["active"]),
                    row["password_hash"] is not None)

    async def add_user(self, login: str, name: str, email: str | None = None,
                       password_hash: str | None = None) -> User:
        """Add a user; StoreError("user-exists") when the login (in any case) is taken."""
        await self.add_users([(login, name, email, password_hash)])
        return await self.user_by_login(login)

    async def add_users(self, rows: list[tuple[str, str, str | None, str | None]]) -> None:
        """Add users (login, name, email, password hash), all or nothing."""
        now = time.time()
        try:
            async with self._transaction() as db:
                await db.executemany(
                    "INSERT INTO users(login, name, email, password_hash, created_at) VALUES (?, ?, ?, ?, ?)",
                    [(*row, now) for row in rows])
        except sqlite3.IntegrityError:
            raise StoreError("user-exists", f"a user {rows[0][0]!r} exists already" if len(rows) == 1
                             else "a user with one of these logins exists already") from None

    async def update_user(self, user_id: int, *, name: str | None = None, email: str | None = None) -> None:
        async with self._transaction() as db:
            await db.execute("UPDATE users SET name = COALESCE(?, name), email = COALESCE(?, email) WHERE id = ?",
                             (name, email, user_id))

    async def user_by_login(self, login: str) -> User | None:
        cur = await self.db.execute("SELECT * FROM users WHERE login = ?", (login,))
        return self._user(await cur.fetchone())

    async def user_by_id(self, user_id: int) -> User | None:
        cur = await self.db.execute("SELECT * FROM users WHERE id = ?", (user_id,))
        return self._user(await cur.fetchone())

    async def password_hash(self, login: str) -> tuple[User, str] | None:
        cur = await self.db.execute("SELECT * FROM users WHERE login = ? AND password_hash IS NOT NULL", (login,))
        row = await cur.fetchone()
        return (self._user(row), row["password_hash"]) if row else None

    async def set_password_hash(self, user_id: int, password_hash: str) -> None:
        async with self._transaction() as db:
            await db.execute("UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user_id))

    async def users(self, *, active_only: bool = False) -> list[User]:
        sql = "SELECT * FROM users" + (" WHERE active = 1" if active_only else "") + " ORDER BY name COLLATE NOCASE"
        return [self._user(r) for r in await (await self.db.execute(sql)).fetchall()]

    async def count_users(self) -> int:
        (n,) = await (await self.db.execute("SELECT COUNT(*) FROM users")).fetchone()
        return n

    async def disable_user(self, login: str) -> User:
        """Disable a user and end their sessions; open sockets follow through the event feed."""
        async with self._transaction() as db:
            row = await (await db.execute("SELECT id, login FROM users WHERE login = ?", (login,))).fetchone()
            if row is None:
                raise StoreError("no-such-user", f"no user {login!r}")
            await db.execute("UPDATE users SET active = 0 WHERE id = ?", (row["id"],))
            await db.execute("DELETE FROM sessions WHERE user_id = ?", (row["id"],))
            await self._event(db, USER_DISABLED, row["login"])
        return await self.user_by_login(login)

    # -- rooms ----------------------------------------------------------------------------

    async def create_room(self, name: str, kind: str, *, mode: str = "audio+video",
                          created_by: int | None = None, members: list[int] = ()) -> Room:
        room = Room(secrets.token_urlsafe(12), name, kind, mode, created_by)
        async with self._transaction() as db:
            await db.execute("INSERT INTO rooms(id, name, kind, mode, created_by, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                             (room.id, name, kind, mode, created_by, time.time()))
            await self._add_members(db, room.id, [*([created_by] if created_by else []), *members])
        return room

    @staticmethod
    async def _add_members(db, room_id: str, user_ids) -> None:
        await db.executemany("INSERT OR IGNORE INTO room_members(room_id, user_id) VALUES (?, ?)",
                             [(room_id, uid) for uid in user_ids])

    async def add_members(self, room_id: str, user_ids: list[int]) -> None:
        async with self._transaction() as db:
            await self._add_members(db, room_id, user_ids)

    async def room(self, room_id: str) -> Room | None:
        row = await (await self.db.execute("SELECT * FROM rooms WHERE id = ?", (room_id,))).fetchone()
        return Room(row["id"], row["name"], row["kind"], row["mode"], row["created_by"]) if row else None

    async def is_member(self, room_id: str, user_id: int) -> bool:
        cur = await self.db.execute("SELECT 1 FROM room_members WHERE room_id = ? AND user_id = ?", (room_id, user_id))
        return await cur.fetchone() is not None

    # -- invites --------------------------------------------------------------------------

    async def create_invite(self, room: Room, ttl_s: float, created_by: int | None = None) -> tuple[str, Invite]:
        """A new guest link token (192 random bits) for `room`; only its hash is stored."""
        token = secrets.token_urlsafe(24)
        now = time.time()
        async with self._transaction() as db:
            cur = await db.execute(
                "INSERT INTO invites(token_hash, room_id, created_by, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
                (token_hash(token), room.id, created_by, now, now + ttl_s))
        return token, Invite(cur.lastrowid, room, created_by, now + ttl_s, None)

    async def _invites(self, where: str, args: tuple) -> list[Invite]:
        cur = await self.db.execute(
            "SELECT i.id, i.created_by, i.expires_at, i.revoked_at, r.id AS rid, r.name, r.kind, r.mode, "
            "r.created_by AS rby FROM invites i JOIN rooms r ON r.id = i.room_id " + where + " ORDER BY i.id", args)
        return [Invite(r["id"], Room(r["rid"], r["name"], r["kind"], r["mode"], r["rby"]), r["created_by"],
                       r["expires_at"], r["revoked_at"]) for r in await cur.fetchall()]

    async def invite_by_token(self, token: str) -> Invite | None:
        found = await self._invites("WHERE i.token_hash = ?", (token_hash(token),))
        return found[0] if found else None

    async def invite_by_id(self, invite_id: int) -> Invite | None:
        found = await self._invites("WHERE i.id = ?", (invite_id,))
        return found[0] if found else None

    async def invites(self, created_by: int | None = None) -> list[Invite]:
        if created_by is None:
            return await self._invites("", ())
        return await self._invites("WHERE i.created_by = ?", (created_by,))

    async def revoke_invite(self, invite_id: int) -> None:
        """Revoke a link; its room's guests lose their sessions and (event feed) their sockets."""
        async with self._transaction() as db:
            row = await (await db.execute("SELECT room_id FROM invites WHERE id = ?", (invite_id,))).fetchone()
            if row is None:
                return
            await db.execute("UPDATE invites SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                             (time.time(), invite_id))
            await db.execute("DELETE FROM sessions WHERE guest_room_id = ?", (row["room_id"],))
            await self._event(db, INVITE_REVOKED, row["room_id"])

    # -- sessions ---------------------------------------------------------------------------

    async def create_session(self, *, ttl_s: float, user: User | None = None, guest_room: Room | None = None,
                             guest_name: str | None = None) -> tuple[str, str]:
        """A new session; returns (cookie token, CSRF token). Only the token's hash is stored."""
        token, csrf, now = secrets.token_urlsafe(32), secrets.token_urlsafe(24), time.time()
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO sessions(id_hash, user_id, guest_room_id, guest_name, csrf, created_at, expires_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (token_hash(token), user.id if user else None, guest_room.id if guest_room else None, guest_name,
                 csrf, now, now + ttl_s))
        return token, csrf

    async def session(self, token: str) -> SessionRecord | None:
        row = await (await self.db.execute("SELECT * FROM sessions WHERE id_hash = ? AND expires_at > ?",
                                           (token_hash(token), time.time()))).fetchone()
        if row is None:
            return None
        user = await self.user_by_id(row["user_id"]) if row["user_id"] else None
        if row["user_id"] and (user is None or not user.active):
            return None
        room = await self.room(row["guest_room_id"]) if row["guest_room_id"] else None
        return SessionRecord(row["id_hash"], user, room, row["guest_name"], row["csrf"], row["expires_at"])

    async def delete_session(self, token: str) -> None:
        """Sign out: the session ends here and (event feed) on its open sockets."""
        async with self._transaction() as db:
            cur = await db.execute("DELETE FROM sessions WHERE id_hash = ?", (token_hash(token),))
            if cur.rowcount:
                await self._event(db, SESSION_ENDED, token_hash(token))

    # -- single sign-on tokens ------------------------------------------------------------------

    async def use_sso_token(self, token: str, expires_at: float) -> bool:
        """Record an SSO token as used until it expires; False when it was used before (a replay)."""
        try:
            async with self._transaction() as db:
                await db.execute("INSERT INTO sso_tokens(token_hash, expires_at) VALUES (?, ?)",
                                 (token_hash(token), expires_at))
        except sqlite3.IntegrityError:
            return False
        return True

    # -- the event feed and housekeeping ----------------------------------------------------------

    async def last_event_id(self) -> int:
        (last,) = await (await self.db.execute("SELECT COALESCE(MAX(id), 0) FROM events")).fetchone()
        return last

    async def events_after(self, event_id: int, limit: int = 1000) -> list[Event]:
        """Events newer than `event_id`, oldest first."""
        cur = await self.db.execute("SELECT id, kind, subject FROM events WHERE id > ? ORDER BY id LIMIT ?",
                                    (event_id, limit))
        return [Event(r["id"], r["kind"], r["subject"]) for r in await cur.fetchall()]

    async def purge_expired(self) -> dict[str, int]:
        """Delete expired sessions, spent SSO tokens and old events; returns how many of each."""
        now = time.time()
        async with self._transaction() as db:
            counts = {}
            for table, sql, args in (
                ("sessions", "DELETE FROM sessions WHERE expires_at <= ?", (now,)),
                ("sso_tokens", "DELETE FROM sso_tokens WHERE expires_at <= ?", (now,)),
                ("events", "DELETE FROM events WHERE at <= ?", (now - EVENTS_KEPT_S,)),
            ):
                counts[table] = (await db.execute(sql, args)).rowcount
        return counts

"""The data layer: users, rooms, invites, sessions and the directory, behind one `Store`.

Everything else talks to `Store` only. Its SQL is written once, in the dialect
SQLite and PostgreSQL share, with `?` placeholders; `sqlite.py` (the embedded
default, one file in the data directory) and `postgres.py` (`--database
postgresql://...`) run it. The schema is versioned (`schema.py`), migrated on open.

Every change is one transaction that commits or rolls back. Changes that take
rights away (a disabled user, a revoked link, an ended session) also append a
row to `events`, in the same transaction; every server process on the database
follows that feed and closes the sockets concerned (`access.py`).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import schema, search
from .errors import Conflict, StoreError

# Kinds of `events` rows: who lost which right (the subject).
USER_DISABLED = "user-disabled"  # subject: the login
INVITE_REVOKED = "invite-revoked"  # subject: the guest room's id
SESSION_ENDED = "session-ended"  # subject: the session's id hash
GUEST_REFUSED = "guest-refused"  # subject: the refused guest's session id hash
EVENTS_KEPT_S = 3600.0  # purged after this; followers poll every second or so


def token_hash(token: str) -> str:
    """Tokens are stored hashed: a copy of the database lets nobody in."""
    return hashlib.sha256(token.encode()).hexdigest()


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
    lobby: bool = False  # its guests wait until a member lets them in


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
    admitted: bool = False  # a guest let into a room with a lobby


@dataclass(frozen=True)
class Event:
    id: int
    kind: str
    subject: str


MAX_FAVORITES = 100
RECENT_CONTACTS = 10


def is_database_url(location: str | os.PathLike | None) -> bool:
    return isinstance(location, str) and location.startswith(("postgresql://", "postgres://"))


_USER_COLUMNS = "id, login, name, email, active, password_hash IS NOT NULL AS has_password"
_U_COLUMNS = ", ".join("u." + c for c in _USER_COLUMNS.split(", "))  # the same, of `users u`
FEW_MATCHES = 2_000  # a long term matching fewer is read whole; beyond, its short prefix is read in order
COUNT_CAP, TERM_COUNT_TTL_S = 20_000, 300.0  # the search planner's word counts: counted up to, kept for


class Store:
    """Async access to the organisation's data, on SQLite or PostgreSQL."""

    def __init__(self, db):
        self.db = db
        self._counts: dict[str, tuple[int, float]] = {}  # term -> (words, valid until): see _term_counts

    @classmethod
    async def open(cls, location: str | Path) -> "Store":
        """Open and migrate the store: a postgresql:// URL, or a data directory (SQLite)."""
        if is_database_url(location):
            from .postgres import PostgresDatabase  # asyncpg only where it is used
            db = await PostgresDatabase.open(str(location))
        else:
            from .sqlite import SqliteDatabase
            db = await SqliteDatabase.open(Path(location))
        store = cls(db)
        try:
            await db.migrate(schema.POSTGRES if db.dialect == "postgresql" else schema.SQLITE)
        except BaseException:
            await db.close()
            raise
        return store

    async def close(self) -> None:
        await self.db.close()

    @property
    def dialect(self) -> str:
        return self.db.dialect

    @property
    def in_transaction(self) -> bool:
        return self.db.in_transaction

    async def fetchone(self, sql: str, *args: Any):
        """One row of a read-only query in the shared dialect (tests and tools)."""
        return await self.db.fetchone(sql, args)

    async def fetchall(self, sql: str, *args: Any) -> list:
        return await self.db.fetchall(sql, args)

    async def _event(self, tx, kind: str, subject: str) -> None:
        if self.db.serialize_events:
            await tx.execute(self.db.serialize_events)
        await tx.execute("INSERT INTO events(kind, subject, at) VALUES (?, ?, ?)", (kind, subject, time.time()))

    async def schema_version(self) -> int:
        return await self.db.schema_version()

    # -- settings -------------------------------------------------------------------------

    async def set_setting(self, key: str, value: str) -> None:
        async with self.db.transaction() as tx:
            await tx.execute("INSERT INTO settings(key, value) VALUES (?, ?) "
                             "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))

    async def setting(self, key: str) -> str | None:
        row = await self.db.fetchone("SELECT value FROM settings WHERE key = ?", (key,))
        return row["value"] if row else None

    # -- users ----------------------------------------------------------------------------

    @staticmethod
    def _user(row) -> User | None:
        if row is None:
            return None
        return User(row["id"], row["login"], row["name"], row["email"], bool(row["active"]),
                    bool(row["has_password"]))

    async def add_user(self, login: str, name: str, email: str | None = None,
                       password_hash: str | None = None) -> User:
        """Add a user; StoreError("user-exists") when the login (in any case) is taken."""
        await self.add_users([(login, name, email, password_hash)])
        return await self.user_by_login(login)

    async def add_users(self, rows: list[tuple[str, str, str | None, str | None]]) -> None:
        """Add users (login, name, email, password hash), all or nothing, with their search words."""
        now = time.time()
        try:
            async with self.db.transaction() as tx:
                await tx.executemany(
                    "INSERT INTO users(login, name, email, password_hash, created_at, sort_key) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    [(login, name, email, pw, now, search.sort_key(name)) for login, name, email, pw in rows])
                await self._index_logins(tx, [row[0] for row in rows], new=True)
        except Conflict:
            raise StoreError("user-exists", f"a user {rows[0][0]!r} exists already" if len(rows) == 1
                             else "a user with one of these logins exists already") from None

    async def _index_logins(self, tx, logins: list[str], chunk: int = 500, *, new: bool = False) -> None:
        for at in range(0, len(logins), chunk):
            part = [login.lower() for login in logins[at:at + chunk]]
            found = await tx.fetchall("SELECT id, login, name, email FROM users WHERE lower(login) IN ("
                                      + ", ".join("?" * len(part)) + ")", part)
            await schema.index_users(tx, [(r["id"], r["login"], r["name"], r["email"]) for r in found], new=new)

    async def existing_logins(self, logins: list[str], chunk: int = 500) -> set[str]:
        """Which of these logins are taken (lower-cased)."""
        taken: set[str] = set()
        for at in range(0, len(logins), chunk):
            part = [login.lower() for login in logins[at:at + chunk]]
            rows = await self.db.fetchall("SELECT lower(login) AS l FROM users WHERE lower(login) IN ("
                                          + ", ".join("?" * len(part)) + ")", part)
            taken.update(r["l"] for r in rows)
        return taken

    async def update_user(self, user_id: int, *, name: str | None = None, email: str | None = None) -> None:
        async with self.db.transaction() as tx:
            await tx.execute("UPDATE users SET name = COALESCE(?, name), email = COALESCE(?, email) WHERE id = ?",
                             (name, email, user_id))
            row = await tx.fetchone("SELECT id, login, name, email FROM users WHERE id = ?", (user_id,))
            if row:
                await schema.index_users(tx, [(row["id"], row["login"], row["name"], row["email"])])

    async def user_by_login(self, login: str) -> User | None:
        return self._user(await self.db.fetchone(
            f"SELECT {_USER_COLUMNS} FROM users WHERE lower(login) = lower(?)", (login,)))

    async def user_by_id(self, user_id: int) -> User | None:
        return self._user(await self.db.fetchone(f"SELECT {_USER_COLUMNS} FROM users WHERE id = ?", (user_id,)))

    async def password_hash(self, login: str) -> tuple[User, str] | None:
        row = await self.db.fetchone(f"SELECT {_USER_COLUMNS}, password_hash FROM users "
                                     "WHERE lower(login) = lower(?) AND password_hash IS NOT NULL", (login,))
        return (self._user(row), row["password_hash"]) if row else None

    async def set_password_hash(self, user_id: int, password_hash: str) -> None:
        async with self.db.transaction() as tx:
            await tx.execute("UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user_id))

    async def users(self, *, active_only: bool = False) -> list[User]:
        """Every user, in directory order (the admin CLI's list; pages use search_users)."""
        sql = f"SELECT {_USER_COLUMNS} FROM users" + (" WHERE active = 1" if active_only else "")
        return [self._user(r) for r in await self.db.fetchall(sql + " ORDER BY sort_key, id")]

    async def count_users(self) -> int:
        return (await self.db.fetchone("SELECT COUNT(*) AS n FROM users"))["n"]

    async def disable_user(self, login: str) -> User:
        """Disable a user and end their sessions; open sockets follow through the event feed."""
        async with self.db.transaction() as tx:
            row = await tx.fetchone("SELECT id, login FROM users WHERE lower(login) = lower(?)", (login,))
            if row is None:
                raise StoreError("no-such-user", f"no user {login!r}")
            await tx.execute("UPDATE users SET active = 0 WHERE id = ?", (row["id"],))
            await schema.unindex_users(tx, [row["id"]])  # out of the directory
            await tx.execute("DELETE FROM sessions WHERE user_id = ?", (row["id"],))
            await self._event(tx, USER_DISABLED, row["login"])
        return await self.user_by_login(login)

    # -- the directory ----------------------------------------------------------------------

    async def search_users(self, query: str = "", *, after: str | None = None,
                           limit: int = search.PAGE_SIZE) -> tuple[list[User], str | None]:
        """Active users whose words start with every term of `query` (all users for an empty
        query), in directory order: at most `limit`, and the cursor of the next page (or None).
        `after` is a cursor from an earlier answer; BadCursor when it is none of ours.

        The term with the fewest words (counts kept a while, _term_counts) leads; the others
        are checked on each candidate's own words. A short term's people are read from
        user_prefixes in directory order until the page is full, so a common one meets its
        page early and nothing ever reads all the "m"s to sort them; a longer term's words
        are read whole when there are few, else its short prefix leads in order."""
        limit = max(1, min(limit, search.PAGE_SIZE))
        terms = search.query_terms(query)
        position, position_args = "", ()
        if after is not None:
            key, last_id = search.decode_cursor(after)
            position, position_args = " AND (sort_key > ? OR (sort_key = ? AND {id} > ?))", (key, key, last_id)
        if not terms:
            rows = await self.db.fetchall(f"SELECT {_USER_COLUMNS}, sort_key FROM users WHERE active = 1"
                                          + position.format(id="id") + " ORDER BY sort_key, id LIMIT ?",
                                          (*position_args, limit + 1))
            return self._page(rows, limit)
        counts = await self._term_counts(terms)
        lead = min(terms, key=counts.__getitem__)
        terms.remove(lead)
        if len(lead) > search.SHORT_PREFIX and counts[lead] >= FEW_MATCHES:
            terms.append(lead)  # too many to read whole: its short prefix in order, the term checked
            lead = lead[:search.SHORT_PREFIX]
        # Each other term is checked on the candidate's own few words (index user_id, word), in
        # a scalar subquery: as EXISTS, PostgreSQL made it a semi join that probed the term's
        # whole word range per candidate, estimating one row for any range (150 ms, "dimi ivan").
        also = ("(SELECT 1 FROM user_words o WHERE o.user_id = m.user_id AND o.word >= ? AND o.word < ?"
                " LIMIT 1) IS NOT NULL")
        found = (f"SELECT sort_key, user_id FROM ({self._matches(lead)}) m WHERE 1 = 1"
                 + position.format(id="user_id") + "".join(" AND " + also for _ in terms)
                 + " ORDER BY sort_key, user_id LIMIT ?")
        # CROSS JOIN: the page's few people first, then their rows (disabled users have no words)
        rows = await self.db.fetchall(
            f"SELECT {_U_COLUMNS}, u.sort_key FROM ({found}) f CROSS JOIN users u "
            "WHERE u.id = f.user_id AND u.active = 1 ORDER BY f.sort_key, f.user_id",
            (*self._match_args(lead), *position_args, *(a for t in terms for a in search.prefix_range(t)), limit + 1))
        return self._page(rows, limit)

    @staticmethod
    def _matches(term: str) -> str:
        """The (sort_key, user_id) of the people with a word starting with `term`: from the
        prefix table, in directory order, for a short term; from the word range otherwise."""
        if len(term) <= search.SHORT_PREFIX:
            return "SELECT sort_key, user_id FROM user_prefixes WHERE prefix = ?"
        return "SELECT DISTINCT sort_key, user_id FROM user_words WHERE word >= ? AND word < ?"

    async def _term_counts(self, terms: list[str]) -> dict[str, int]:
        """How many words start with each term, up to COUNT_CAP: the planner's statistics,
        kept for TERM_COUNT_TTL_S (a stale count only makes a plan slower, never wrong)."""
        now = time.monotonic()
        counts = {t: c for t in terms if (c := self._counts.get(t)) and c[1] > now}
        missing = [t for t in terms if t not in counts]
        if missing:
            row = await self.db.fetchone("SELECT " + ", ".join(
                f"(SELECT COUNT(*) FROM ({self._counted(t)} LIMIT ?) few) AS n{i}" for i, t in enumerate(missing)),
                [a for t in missing for a in (*self._match_args(t), COUNT_CAP)])
            if len(self._counts) > 10_000:
                self._counts.clear()
            for i, t in enumerate(missing):
                counts[t] = self._counts[t] = (row[f"n{i}"], now + TERM_COUNT_TTL_S)
        return {t: c[0] for t, c in counts.items()}

    @staticmethod
    def _counted(term: str) -> str:
        """Rows to count for `term` (words, not people: a bound is all that is needed)."""
        if len(term) <= search.SHORT_PREFIX:
            return "SELECT 1 FROM user_prefixes WHERE prefix = ?"
        return "SELECT 1 FROM user_words WHERE word >= ? AND word < ?"

    @staticmethod
    def _match_args(term: str) -> tuple[str, ...]:
        return (term,) if len(term) <= search.SHORT_PREFIX else search.prefix_range(term)

    def _page(self, rows: list, limit: int) -> tuple[list[User], str | None]:
        more = len(rows) > limit
        rows = rows[:limit]
        return [self._user(r) for r in rows], (search.encode_cursor(rows[-1]["sort_key"], rows[-1]["id"])
                                              if more else None)

    async def set_favorite(self, user_id: int, favorite_id: int, favorite: bool) -> None:
        """Mark or unmark a favourite; StoreError("too-many-favorites") beyond MAX_FAVORITES."""
        async with self.db.transaction() as tx:
            if not favorite:
                await tx.execute("DELETE FROM favorites WHERE user_id = ? AND favorite_id = ?", (user_id, favorite_id))
                return
            count = (await tx.fetchone("SELECT COUNT(*) AS n FROM favorites WHERE user_id = ?", (user_id,)))["n"]
            if count >= MAX_FAVORITES:
                raise StoreError("too-many-favorites", f"at most {MAX_FAVORITES} favourites")
            await tx.execute("INSERT INTO favorites(user_id, favorite_id, added_at) VALUES (?, ?, ?) "
                             "ON CONFLICT DO NOTHING", (user_id, favorite_id, time.time()))

    async def favorites(self, user_id: int) -> list[User]:
        """This user's favourites who are active, in directory order."""
        rows = await self.db.fetchall(
            # CROSS JOIN: SQLite starts from this user's few favourites, not from the whole directory
            f"SELECT {_U_COLUMNS} FROM favorites f CROSS JOIN users u "
            "WHERE u.id = f.favorite_id AND f.user_id = ? AND u.active = 1 ORDER BY u.sort_key, u.id",
            (user_id,))
        return [self._user(r) for r in rows]

    async def record_call(self, caller_id: int, callee_ids: list[int]) -> None:
        """The caller and each callee have called each other now (recent contacts, both ways)."""
        now = time.time()
        pairs = [(a, b, now) for callee in callee_ids if callee != caller_id
                 for a, b in ((caller_id, callee), (callee, caller_id))]
        async with self.db.transaction() as tx:
            await tx.executemany("INSERT INTO contacts(user_id, contact_id, last_call_at) VALUES (?, ?, ?) "
                                 "ON CONFLICT (user_id, contact_id) DO UPDATE SET last_call_at = excluded.last_call_at",
                                 pairs)

    async def recent_contacts(self, user_id: int, limit: int = RECENT_CONTACTS) -> list[User]:
        """Whom this user called or was called by most recently, newest first (active users)."""
        rows = await self.db.fetchall(
            f"SELECT {_U_COLUMNS} FROM contacts c CROSS JOIN users u "
            "WHERE u.id = c.contact_id AND c.user_id = ? AND u.active = 1 "
            "ORDER BY c.last_call_at DESC, u.id LIMIT ?", (user_id, limit))
        return [self._user(r) for r in rows]

    # -- rooms ----------------------------------------------------------------------------

    async def create_room(self, name: str, kind: str, *, mode: str = "audio+video",
                          created_by: int | None = None, members: list[int] = (), lobby: bool = False) -> Room:
        """A new room; with `lobby`, its guests wait until a member lets them in."""
        room = Room(secrets.token_urlsafe(12), name, kind, mode, created_by, lobby)
        async with self.db.transaction() as tx:
            await tx.execute("INSERT INTO rooms(id, name, kind, mode, created_by, created_at, lobby) "
                             "VALUES (?, ?, ?, ?, ?, ?, ?)", (room.id, name, kind, mode, created_by, time.time(), int(lobby)))
            await self._add_members(tx, room.id, [*([created_by] if created_by else []), *members])
        return room

    @staticmethod
    async def _add_members(tx, room_id: str, user_ids) -> None:
        await tx.executemany("INSERT INTO room_members(room_id, user_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
                             [(room_id, uid) for uid in dict.fromkeys(user_ids)])

    async def add_members(self, room_id: str, user_ids: list[int]) -> None:
        async with self.db.transaction() as tx:
            await self._add_members(tx, room_id, user_ids)

    async def room(self, room_id: str) -> Room | None:
        row = await self.db.fetchone("SELECT * FROM rooms WHERE id = ?", (room_id,))
        return Room(row["id"], row["name"], row["kind"], row["mode"], row["created_by"], bool(row["lobby"])) if row else None

    async def is_member(self, room_id: str, user_id: int) -> bool:
        row = await self.db.fetchone("SELECT 1 AS yes FROM room_members WHERE room_id = ? AND user_id = ?",
                                     (room_id, user_id))
        return row is not None

    # -- invites --------------------------------------------------------------------------

    async def create_invite(self, room: Room, ttl_s: float, created_by: int | None = None) -> tuple[str, Invite]:
        """A new guest link token (192 random bits) for `room`; only its hash is stored."""
        token = secrets.token_urlsafe(24)
        now = time.time()
        async with self.db.transaction() as tx:
            row = await tx.fetchone(
                "INSERT INTO invites(token_hash, room_id, created_by, created_at, expires_at) VALUES (?, ?, ?, ?, ?) "
                "RETURNING id", (token_hash(token), room.id, created_by, now, now + ttl_s))
        return token, Invite(row["id"], room, created_by, now + ttl_s, None)

    async def _invites(self, where: str, args: tuple) -> list[Invite]:
        rows = await self.db.fetchall(
            "SELECT i.id, i.created_by, i.expires_at, i.revoked_at, r.id AS rid, r.name, r.kind, r.mode, "
            "r.created_by AS rby, r.lobby FROM invites i JOIN rooms r ON r.id = i.room_id " + where + " ORDER BY i.id", args)
        return [Invite(r["id"], Room(r["rid"], r["name"], r["kind"], r["mode"], r["rby"], bool(r["lobby"])), r["created_by"],
                       r["expires_at"], r["revoked_at"]) for r in rows]

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
        async with self.db.transaction() as tx:
            row = await tx.fetchone("SELECT room_id FROM invites WHERE id = ?", (invite_id,))
            if row is None:
                return
            await tx.execute("UPDATE invites SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                             (time.time(), invite_id))
            await tx.execute("DELETE FROM sessions WHERE guest_room_id = ?", (row["room_id"],))
            await self._event(tx, INVITE_REVOKED, row["room_id"])

    # -- sessions ---------------------------------------------------------------------------

    async def create_session(self, *, ttl_s: float, user: User | None = None, guest_room: Room | None = None,
                             guest_name: str | None = None) -> tuple[str, str]:
        """A new session; returns (cookie token, CSRF token). Only the token's hash is stored."""
        token, csrf, now = secrets.token_urlsafe(32), secrets.token_urlsafe(24), time.time()
        async with self.db.transaction() as tx:
            await tx.execute(
                "INSERT INTO sessions(id_hash, user_id, guest_room_id, guest_name, csrf, created_at, expires_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (token_hash(token), user.id if user else None, guest_room.id if guest_room else None, guest_name,
                 csrf, now, now + ttl_s))
        return token, csrf

    async def session(self, token: str) -> SessionRecord | None:
        row = await self.db.fetchone("SELECT * FROM sessions WHERE id_hash = ? AND expires_at > ?",
                                     (token_hash(token), time.time()))
        if row is None:
            return None
        user = await self.user_by_id(row["user_id"]) if row["user_id"] else None
        if row["user_id"] and (user is None or not user.active):
            return None
        room = await self.room(row["guest_room_id"]) if row["guest_room_id"] else None
        return SessionRecord(row["id_hash"], user, room, row["guest_name"], row["csrf"], row["expires_at"],
                             bool(row["admitted"]))

    async def delete_session(self, token: str) -> None:
        """Sign out: the session ends here and (event feed) on its open sockets."""
        async with self.db.transaction() as tx:
            if await tx.execute("DELETE FROM sessions WHERE id_hash = ?", (token_hash(token),)):
                await self._event(tx, SESSION_ENDED, token_hash(token))

    async def admit_guest(self, id_hash: str) -> None:
        """A member let the guest of this session in: it may join its room from now on."""
        async with self.db.transaction() as tx:
            await tx.execute("UPDATE sessions SET admitted = 1 WHERE id_hash = ? AND guest_room_id IS NOT NULL",
                             (id_hash,))

    async def refuse_guest(self, id_hash: str) -> None:
        """A member turned this guest away: the session ends here and (event feed) on its sockets."""
        async with self.db.transaction() as tx:
            if await tx.execute("DELETE FROM sessions WHERE id_hash = ? AND guest_room_id IS NOT NULL", (id_hash,)):
                await self._event(tx, GUEST_REFUSED, id_hash)

    # -- single sign-on tokens ------------------------------------------------------------------

    async def use_sso_token(self, token: str, expires_at: float) -> bool:
        """Record an SSO token as used until it expires; False when it was used before (a replay)."""
        try:
            async with self.db.transaction() as tx:
                await tx.execute("INSERT INTO sso_tokens(token_hash, expires_at) VALUES (?, ?)",
                                 (token_hash(token), expires_at))
        except Conflict:
            return False
        return True

    # -- the event feed and housekeeping ----------------------------------------------------------

    async def last_event_id(self) -> int:
        return (await self.db.fetchone("SELECT COALESCE(MAX(id), 0) AS last FROM events"))["last"]

    async def events_after(self, event_id: int, limit: int = 1000) -> list[Event]:
        """Events newer than `event_id`, oldest first."""
        rows = await self.db.fetchall("SELECT id, kind, subject FROM events WHERE id > ? ORDER BY id LIMIT ?",
                                      (event_id, limit))
        return [Event(r["id"], r["kind"], r["subject"]) for r in rows]

    async def purge_expired(self) -> dict[str, int]:
        """Delete expired sessions, spent SSO tokens and old events; returns how many of each."""
        now = time.time()
        async with self.db.transaction() as tx:
            return {
                "sessions": await tx.execute("DELETE FROM sessions WHERE expires_at <= ?", (now,)),
                "sso_tokens": await tx.execute("DELETE FROM sso_tokens WHERE expires_at <= ?", (now,)),
                "events": await tx.execute("DELETE FROM events WHERE at <= ?", (now - EVENTS_KEPT_S,)),
            }

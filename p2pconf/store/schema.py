"""The schema, one list of migrations per database: step n upgrades version n to n + 1.

Both lists describe the same tables, columns and versions; only the dialect differs
(SQLite's INTEGER PRIMARY KEY and NOCASE, PostgreSQL's identities, DOUBLE PRECISION
and an index on lower(login)). A step is SQL (statements separated by `;`) or an
async function of the transaction, for what SQL cannot do (the search words are made
in Python, store/search.py, so that both databases find the same people).
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Union

from . import search

Step = Union[str, Callable[[Any], Awaitable[None]]]


async def run_step(tx, step: Step) -> None:
    if isinstance(step, str):
        for statement in step.split(";"):
            if statement.strip():
                await tx.execute(statement)
    else:
        await step(tx)


async def index_users(tx, users: list[tuple[int, str, str, str | None]], *, new: bool = False) -> None:
    """Set the directory's sort key, search words and short prefixes of (id, login, name,
    email) rows (`new`: they have none yet). Each row carries its user's sort key, so the
    users of a short prefix come out of the index in directory order."""
    if not users:
        return
    keyed = [(uid, search.sort_key(name), search.words_of(name, login, email)) for uid, login, name, email in users]
    await tx.executemany("UPDATE users SET sort_key = ? WHERE id = ?", [(key, uid) for uid, key, _ in keyed])
    if not new:
        await unindex_users(tx, [uid for uid, _, _ in keyed])
    # in index order: a B-tree fills far faster from sorted rows (an import of 100,000: 1.4 M prefixes)
    await tx.insert_rows("user_words", ("word", "sort_key", "user_id"),
                         sorted((word, key, uid) for uid, key, words in keyed for word in words))
    await tx.insert_rows("user_prefixes", ("prefix", "sort_key", "user_id"),
                         sorted((prefix, key, uid) for uid, key, words in keyed for prefix in search.prefixes_of(words)))


async def unindex_users(tx, user_ids: list[int]) -> None:
    """Take users out of the directory's search (a disabled user is found by no one). Their
    prefixes are found from their words (no second index on a table of ~14 rows a user)."""
    for uid in user_ids:
        rows = await tx.fetchall("SELECT word, sort_key FROM user_words WHERE user_id = ?", (uid,))
        by_key: dict[str, set[str]] = {}
        for r in rows:
            by_key.setdefault(r["sort_key"], set()).add(r["word"])
        await tx.executemany("DELETE FROM user_prefixes WHERE prefix = ? AND sort_key = ? AND user_id = ?",
                             [(prefix, key, uid) for key, words in by_key.items()
                              for prefix in search.prefixes_of(words)])
        await tx.execute("DELETE FROM user_words WHERE user_id = ?", (uid,))


def _prefixes(sql: str) -> Step:
    """Version 4's table, then every user indexed (words and prefixes)."""
    async def step(tx) -> None:
        await run_step(tx, sql)
        rows = await tx.fetchall("SELECT id, login, name, email FROM users")
        await index_users(tx, [(r["id"], r["login"], r["name"], r["email"]) for r in rows])
    return step


_PREFIXES = """
    CREATE TABLE user_prefixes (
        prefix TEXT {binary} NOT NULL,
        sort_key TEXT {binary} NOT NULL,
        user_id BIGINT NOT NULL REFERENCES users(id),
        PRIMARY KEY (prefix, sort_key, user_id)
    ) {without_rowid}
"""

# Version 3 in both dialects: the directory (search words, order), favourites, recent contacts;
# version 4 adds the words' short prefixes (so "m" or "mü" reads its first page in order) and
# indexes the users already there.
_DIRECTORY = """
    CREATE INDEX users_directory ON users(active, sort_key, id);
    CREATE TABLE user_words (
        word TEXT {binary} NOT NULL,
        sort_key TEXT {binary} NOT NULL,
        user_id {id} NOT NULL REFERENCES users(id),
        PRIMARY KEY (word, sort_key, user_id)
    ) {without_rowid};
    CREATE INDEX user_words_user ON user_words(user_id, word);
    CREATE TABLE favorites (
        user_id {id} NOT NULL REFERENCES users(id),
        favorite_id {id} NOT NULL REFERENCES users(id),
        added_at {time} NOT NULL,
        PRIMARY KEY (user_id, favorite_id)
    );
    CREATE TABLE contacts (
        user_id {id} NOT NULL REFERENCES users(id),
        contact_id {id} NOT NULL REFERENCES users(id),
        last_call_at {time} NOT NULL,
        PRIMARY KEY (user_id, contact_id)
    );
    CREATE INDEX contacts_recent ON contacts(user_id, last_call_at)
"""

# Guest rooms whose guests wait until a member lets them in, and the guest sessions let in.
_LOBBY = """
    ALTER TABLE rooms ADD COLUMN lobby INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE sessions ADD COLUMN admitted INTEGER NOT NULL DEFAULT 0
"""

SQLITE = [
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
    ("ALTER TABLE users ADD COLUMN sort_key TEXT NOT NULL DEFAULT '';"
     "CREATE INDEX users_login_lower ON users(lower(login));"
     + _DIRECTORY.format(binary="", id="INTEGER", time="REAL", without_rowid="WITHOUT ROWID")),
    _prefixes(_PREFIXES.format(binary="", without_rowid="WITHOUT ROWID")),
    _LOBBY,
]

POSTGRES = [
    """
    CREATE TABLE users (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        login TEXT NOT NULL,
        name TEXT NOT NULL,
        email TEXT,
        password_hash TEXT,
        active INTEGER NOT NULL DEFAULT 1,
        created_at DOUBLE PRECISION NOT NULL
    );
    CREATE UNIQUE INDEX users_login_lower ON users(lower(login));
    CREATE TABLE rooms (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('call', 'guest')),
        mode TEXT NOT NULL DEFAULT 'audio+video',
        created_by BIGINT REFERENCES users(id),
        created_at DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE room_members (
        room_id TEXT NOT NULL REFERENCES rooms(id),
        user_id BIGINT NOT NULL REFERENCES users(id),
        PRIMARY KEY (room_id, user_id)
    );
    CREATE TABLE invites (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        token_hash TEXT NOT NULL UNIQUE,
        room_id TEXT NOT NULL REFERENCES rooms(id),
        created_by BIGINT REFERENCES users(id),
        created_at DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL,
        revoked_at DOUBLE PRECISION
    );
    CREATE TABLE sessions (
        id_hash TEXT PRIMARY KEY,
        user_id BIGINT REFERENCES users(id),
        guest_room_id TEXT REFERENCES rooms(id),
        guest_name TEXT,
        csrf TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
    """
    CREATE TABLE events (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        kind TEXT NOT NULL,
        subject TEXT NOT NULL,
        at DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE sso_tokens (token_hash TEXT PRIMARY KEY, expires_at DOUBLE PRECISION NOT NULL);
    CREATE INDEX sessions_expiry ON sessions(expires_at);
    """,
    # COLLATE "C": words compare byte by byte, as in SQLite, so a prefix is one index range.
    ("ALTER TABLE users ADD COLUMN sort_key TEXT COLLATE \"C\" NOT NULL DEFAULT '';"
     + _DIRECTORY.format(binary='COLLATE "C"', id="BIGINT", time="DOUBLE PRECISION", without_rowid="")),
    _prefixes(_PREFIXES.format(binary='COLLATE "C"', without_rowid="")),
    _LOBBY,
]
assert len(SQLITE) == len(POSTGRES)

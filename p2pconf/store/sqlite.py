"""The embedded database: one SQLite file in the data directory (WAL mode), via aiosqlite.

The CLI opens the same file while the server runs; WAL lets both work at once.
Every write is one transaction, BEGIN IMMEDIATE with a busy timeout: a failed write
never leaves a transaction open that would pin an old snapshot or hold the write lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path
from typing import Any, Sequence

import aiosqlite

from .errors import Conflict, StoreError
from .schema import run_step

DB_FILE = "p2pconf.sqlite3"
BUSY_TIMEOUT_MS = 5000


@contextlib.contextmanager
def _conflicts():
    """A unique key taken is a Conflict; other integrity errors are bugs and stay what they are."""
    try:
        yield
    except sqlite3.IntegrityError as exc:
        if "UNIQUE" not in str(exc):
            raise
        raise Conflict(str(exc)) from None


class SqliteDatabase:
    """What the Store needs of a database, for SQLite. SQL uses `?` placeholders."""

    dialect = "sqlite"
    serialize_events = None  # SQLite's write lock already orders every transaction

    def __init__(self, db: aiosqlite.Connection, path: Path):
        self.db, self.path = db, path
        self._writing = asyncio.Lock()  # one transaction at a time on this connection

    @classmethod
    async def open(cls, data_dir: Path) -> "SqliteDatabase":
        data_dir.mkdir(parents=True, exist_ok=True)
        path = data_dir / DB_FILE
        # isolation_level=None: no implicit transactions; transaction() begins and ends each one.
        db = await aiosqlite.connect(path, isolation_level=None)
        db.row_factory = sqlite3.Row
        await db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA foreign_keys=ON")
        await db.execute("PRAGMA cache_size=-65536")  # 64 MiB of pages: the directory's indexes stay in memory
        return cls(db, path)

    async def close(self) -> None:
        await self.db.close()

    @property
    def in_transaction(self) -> bool:
        return self.db.in_transaction

    async def fetchone(self, sql: str, args: Sequence[Any] = ()) -> Any:
        return await (await self.db.execute(sql, args)).fetchone()

    async def fetchall(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        return list(await (await self.db.execute(sql, args)).fetchall())

    async def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        """Run one statement (inside transaction()); returns the rows it changed."""
        with _conflicts():
            return (await self.db.execute(sql, args)).rowcount

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with _conflicts():
            await self.db.executemany(sql, rows)

    async def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Many new rows at once (PostgreSQL copies them; here one prepared INSERT)."""
        await self.executemany(f"INSERT INTO {table}({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                               rows)

    @contextlib.asynccontextmanager
    async def transaction(self):
        """One write transaction: BEGIN IMMEDIATE (waits up to the busy timeout for the
        write lock), then COMMIT, or ROLLBACK on any error. Raises StoreError("busy")
        when the lock could not be had. Yields this database for the statements."""
        async with self._writing:
            try:
                await self.db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise StoreError("busy", f"the database is busy ({exc}); try again") from None
            try:
                yield self
                await self.db.execute("COMMIT")
            except BaseException:
                if self.db.in_transaction:
                    await self.db.execute("ROLLBACK")
                raise

    async def schema_version(self) -> int:
        (version,) = await self.fetchone("PRAGMA user_version")
        return version

    async def migrate(self, steps) -> None:
        """Bring the schema to len(steps); two processes opening a new file migrate it once."""
        async with self.transaction() as tx:
            (version,) = await tx.fetchone("PRAGMA user_version")
            for number in range(version, len(steps)):
                await run_step(tx, steps[number])
                await self.db.execute(f"PRAGMA user_version = {number + 1}")

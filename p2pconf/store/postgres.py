"""An organisation's PostgreSQL server, via asyncpg: `--database postgresql://...`.

The Store's SQL is written once with `?` placeholders; here they become `$1, $2, ...`.
Reads go to the pool; every write is one transaction on one pooled connection.
A server that cannot be reached, or a pool that stays exhausted, is StoreError("busy")
(a 503 with Retry-After at the API), never a traceback.
"""

from __future__ import annotations

import contextlib
import functools
import re
from typing import Any, Sequence

import asyncpg

from .errors import Conflict, StoreError
from .schema import run_step

POOL_SIZE = 10
ACQUIRE_TIMEOUT_S = 5.0
_UNAVAILABLE = (OSError, asyncpg.PostgresConnectionError, asyncpg.TooManyConnectionsError,
                asyncpg.CannotConnectNowError, asyncpg.InterfaceError, TimeoutError)


@functools.lru_cache(maxsize=512)
def dollar_params(sql: str) -> str:
    """`?` placeholders as PostgreSQL's `$n` (the Store's SQL has no `?` in literals)."""
    count = 0

    def number(_match: re.Match) -> str:
        nonlocal count
        count += 1
        return f"${count}"

    return re.sub(r"\?", number, sql)


@contextlib.contextmanager
def _errors():
    try:
        yield
    except asyncpg.UniqueViolationError as exc:
        raise Conflict(str(exc)) from None
    except _UNAVAILABLE as exc:
        raise StoreError("busy", f"the database is not available ({exc.__class__.__name__}); try again") from None


class _Transaction:
    """The statements of one transaction, on its connection."""

    def __init__(self, conn: asyncpg.Connection):
        self.conn = conn

    async def fetchone(self, sql: str, args: Sequence[Any] = ()) -> Any:
        with _errors():
            return await self.conn.fetchrow(dollar_params(sql), *args)

    async def fetchall(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        with _errors():
            return await self.conn.fetch(dollar_params(sql), *args)

    async def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        with _errors():
            status = await self.conn.execute(dollar_params(sql), *args)
        count = status.rsplit(" ", 1)[-1]  # "DELETE 3", "INSERT 0 1"
        return int(count) if count.isdigit() else 0

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with _errors():
            await self.conn.executemany(dollar_params(sql), rows)

    async def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Many new rows at once: COPY (an import's 1.4 million search prefixes)."""
        with _errors():
            await self.conn.copy_records_to_table(table, columns=list(columns), records=rows)


class PostgresDatabase:
    """What the Store needs of a database, for PostgreSQL."""

    dialect = "postgresql"
    # Event ids must become visible in order (followers read `id > last`): an identity
    # taken by a transaction that commits later would be skipped. Event writers queue here.
    serialize_events = "LOCK TABLE events IN SHARE ROW EXCLUSIVE MODE"

    def __init__(self, pool: asyncpg.Pool, url: str):
        self.pool, self.url = pool, url
        self._open_transactions = 0

    @classmethod
    async def open(cls, url: str) -> "PostgresDatabase":
        try:
            pool = await asyncpg.create_pool(url, min_size=1, max_size=POOL_SIZE, command_timeout=30)
        except (*_UNAVAILABLE, asyncpg.PostgresError) as exc:
            raise StoreError("unavailable", f"cannot connect to PostgreSQL: {exc}") from None
        return cls(pool, url)

    async def close(self) -> None:
        await self.pool.close()

    @property
    def in_transaction(self) -> bool:
        return self._open_transactions > 0

    async def fetchone(self, sql: str, args: Sequence[Any] = ()) -> Any:
        with _errors():
            return await self.pool.fetchrow(dollar_params(sql), *args, timeout=ACQUIRE_TIMEOUT_S)

    async def fetchall(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        with _errors():
            return await self.pool.fetch(dollar_params(sql), *args, timeout=ACQUIRE_TIMEOUT_S)

    @contextlib.asynccontextmanager
    async def transaction(self):
        """One transaction on one pooled connection: COMMIT, or ROLLBACK on any error."""
        with _errors():
            conn = await self.pool.acquire(timeout=ACQUIRE_TIMEOUT_S)
        self._open_transactions += 1
        try:
            with _errors():
                tx = conn.transaction()
                await tx.start()
            try:
                yield _Transaction(conn)
            except BaseException:
                with contextlib.suppress(*_UNAVAILABLE):
                    await tx.rollback()
                raise
            with _errors():
                await tx.commit()
        finally:
            self._open_transactions -= 1
            await self.pool.release(conn)

    async def schema_version(self) -> int:
        row = await self.fetchone("SELECT to_regclass('schema_version') IS NOT NULL AS present")
        return (await self.fetchone("SELECT version FROM schema_version"))["version"] if row["present"] else 0

    async def migrate(self, steps) -> None:
        """Bring the schema to len(steps); two processes starting at once migrate it once."""
        async with self.transaction() as tx:
            await tx.execute("SELECT pg_advisory_xact_lock(7240213)")  # any fixed number: p2pconf's
            await tx.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = await tx.fetchone("SELECT version FROM schema_version")
            if row is None:
                await tx.execute("INSERT INTO schema_version(version) VALUES (0)")
            for number in range(row["version"] if row else 0, len(steps)):
                await run_step(tx, steps[number])
                await tx.execute("UPDATE schema_version SET version = ?", (number + 1,))

"""Advisory locks on a connection of their own: a lock lives as long as its connection, so it dies with its process.

`indexer.ownership` decides what to lock and how long to wait; this module only takes and gives back the locks.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg

# What a writer holding a lock runs first in each of its transactions: raises to write nothing (the lock is gone).
WriteCheck = Callable[[asyncpg.Connection], Awaitable[None]]


class Locks:
    """Advisory locks taken on one dedicated connection."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self.pid = conn.get_server_pid()  # the backend holding the locks, as `pg_locks` names it

    async def acquire(self, key: int) -> bool:
        """Take lock `key` if it is free; whether this connection holds it now."""
        return bool(await self._conn.fetchval("SELECT pg_try_advisory_lock($1)", key))

    async def release(self, key: int) -> None:
        """Give lock `key` back (best effort: a broken connection has already given it back)."""
        with contextlib.suppress(Exception):
            await self._conn.execute("SELECT pg_advisory_unlock($1)", key)


async def still_held(conn: asyncpg.Connection, pid: int, key: int) -> bool:
    """Whether backend `pid` holds the session advisory lock `key` now (asked on any connection)."""
    return await conn.fetchval(
        """SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = $1
                                                   AND classid = $2 AND objid = $3 AND objsubid = 1)""",
        pid,
        (key >> 32) & 0xFFFFFFFF,  # a bigint key is shown as its high and low 32 bits
        key & 0xFFFFFFFF,
    )


async def wait_for_writers(conn: asyncpg.Connection, key: int) -> None:
    """Take the transaction advisory lock `key`: until the caller's transaction ends, no other takes it."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", key)


@contextlib.asynccontextmanager
async def hold(pool: asyncpg.Pool) -> AsyncIterator[Locks]:
    """A connection of `pool` to take locks on while inside; on leaving, it goes back (with any lock still held)."""
    conn = await pool.acquire()
    try:
        yield Locks(conn)
    finally:
        with contextlib.suppress(Exception):
            await pool.release(conn)

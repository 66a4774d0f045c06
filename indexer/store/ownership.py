"""Advisory locks on a connection of their own: a lock lives as long as its connection, so it dies with its process.

`indexer.ownership` decides what to lock and how long to wait; this module only takes and gives back the locks.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime

import asyncpg

# What a writer holding a lock runs first in each of its transactions: raises to write nothing (the lock is gone).
WriteCheck = Callable[[asyncpg.Connection], Awaitable[None]]


class Locks:
    """Advisory locks taken on one dedicated connection, whose backend is `pid`, started at `started`: the two
    name it for good (a pid alone may come again, in a restarted server above all)."""

    def __init__(self, conn: asyncpg.Connection, started: datetime) -> None:
        self._conn = conn
        self.pid = conn.get_server_pid()
        self.started = started

    async def acquire(self, key: int) -> bool:
        """Take lock `key` if it is free; whether this connection holds it now."""
        return bool(await self._conn.fetchval("SELECT pg_try_advisory_lock($1)", key))

    async def release(self, key: int) -> None:
        """Give lock `key` back (best effort: a broken connection has already given it back)."""
        with contextlib.suppress(Exception):
            await self._conn.execute("SELECT pg_advisory_unlock($1)", key)


async def still_held(conn: asyncpg.Connection, pid: int, started: datetime, key: int) -> bool:
    """Whether the backend `pid` started at `started` holds the session advisory lock `key` now (asked on any
    connection of the same role: pg_stat_activity shows a backend's start to its own role)."""
    return await conn.fetchval(
        """SELECT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                           WHERE l.locktype = 'advisory' AND l.granted AND l.pid = $1 AND a.backend_start = $2
                             AND l.classid = $3 AND l.objid = $4 AND l.objsubid = 1)""",
        pid,
        started,
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
        yield Locks(
            conn, await conn.fetchval("SELECT backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()")
        )
    finally:
        with contextlib.suppress(Exception):
            await pool.release(conn)

"""Advisory locks on a connection of their own: a lock lives as long as its connection, so it dies with its process.

`indexer.ownership` decides what to lock and how long to wait; this module only takes and gives back the locks.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg


class Locks:
    """Advisory locks taken on one dedicated connection."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def acquire(self, key: int) -> bool:
        """Take lock `key` if it is free; whether this connection holds it now."""
        return bool(await self._conn.fetchval("SELECT pg_try_advisory_lock($1)", key))

    async def release(self, key: int) -> None:
        """Give lock `key` back (best effort: a broken connection has already given it back)."""
        with contextlib.suppress(Exception):
            await self._conn.execute("SELECT pg_advisory_unlock($1)", key)


@contextlib.asynccontextmanager
async def hold(pool: asyncpg.Pool) -> AsyncIterator[Locks]:
    """A connection of `pool` to take locks on while inside; on leaving, it goes back (with any lock still held)."""
    conn = await pool.acquire()
    try:
        yield Locks(conn)
    finally:
        with contextlib.suppress(Exception):
            await pool.release(conn)

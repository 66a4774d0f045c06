"""Which process runs what: one Postgres advisory lock per chain, and one for the projector.

Several `indexer run` processes may share a database. Each chain is indexed by the
process holding its lock; the lock lives on a dedicated connection (`indexer.store.ownership`),
so when a process dies its connection goes and the lock with it, and another process,
retrying every poll interval, takes the chain over. The cursor guard in the store stays the
last line of defence should two writers ever meet.

A lock connection can be lost while its process runs on (the server restarted it, a firewall
dropped it idle): the lock is free then, and another process takes the work over. What holds a
lock gets a `Fence` to check inside each of its writing transactions: it fails there, before
anything is written, once the lock is gone, and it orders the writers one after the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from indexer.clock import sleep_unless
from indexer.errors import IndexerError
from indexer.store.ownership import hold, still_held, wait_for_writers


class OwnershipLost(IndexerError):
    """This process's lock connection was lost, and the lock with it: nothing more was written; restart it."""


@dataclass(frozen=True, slots=True)
class Fence:
    """Held lock `name` (key `key` on the backend `pid` started at `started`), checked in the transactions that
    write under it."""

    name: str
    key: int
    pid: int
    started: datetime

    async def check(self, conn: asyncpg.Connection) -> None:
        """In the caller's transaction: wait for any other writer under this lock to commit, then make sure
        this process holds the lock still (else raise OwnershipLost). Until the transaction ends, no other
        writer under it gets past its own check."""
        await wait_for_writers(conn, self.writers_key)
        if not await still_held(conn, self.pid, self.started, self.key):
            raise OwnershipLost(
                f"{self.name}: this process no longer holds its lock (its lock connection was lost; another process "
                "may have taken over); nothing was written, and it stops here: restart it"
            )

    @property
    def writers_key(self) -> int:
        """The transaction lock its writers take, one after the other."""
        return lock_key(f"{self.name}:writes")

    async def after_the_last_writer(self, pool: asyncpg.Pool) -> None:
        """Wait until a write under this lock still running (by a process that lost it) has committed: what
        the new holder reads next is after it."""
        async with pool.acquire() as conn, conn.transaction():
            await wait_for_writers(conn, self.writers_key)


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for `name`."""
    digest = hashlib.blake2b(f"multistaking-indexer:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def process_name() -> str:
    """How this process names itself as an owner: host and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


@contextlib.asynccontextmanager
async def owned(
    pool: asyncpg.Pool, name: str, stop: asyncio.Event, *, wait: bool, retry_seconds: float
) -> AsyncIterator[Fence | None]:
    """Hold the lock `name` while inside; with `wait`, retry until it is free or `stop` is set. Yields its fence
    when held, else None."""
    key = lock_key(name)
    async with hold(pool) as locks:
        held = False
        try:
            while True:
                held = await locks.acquire(key)
                if held or not wait or stop.is_set():
                    break
                await sleep_unless(stop, retry_seconds)
            fence = Fence(name, key, locks.pid, locks.started) if held else None
            if fence is not None:
                await fence.after_the_last_writer(pool)
            yield fence
        finally:
            if held:
                await locks.release(key)

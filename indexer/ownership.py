"""Which process runs what: one Postgres advisory lock per chain, and one for the projector.

Several `indexer run` processes may share a database. Each chain is indexed by the
process holding its lock; the lock lives on a dedicated connection (`indexer.store.ownership`),
so when a process dies its connection goes and the lock with it, and another process,
retrying every poll interval, takes the chain over. The cursor guard in the store stays the
last line of defence should two writers ever meet.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
from collections.abc import AsyncIterator

import asyncpg

from indexer.clock import sleep_unless
from indexer.store.ownership import hold


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
) -> AsyncIterator[bool]:
    """Hold the lock `name` while inside; with `wait`, retry until it is free or `stop` is set. Yields whether held."""
    key = lock_key(name)
    async with hold(pool) as locks:
        held = False
        try:
            while True:
                held = await locks.acquire(key)
                if held or not wait or stop.is_set():
                    break
                await sleep_unless(stop, retry_seconds)
            yield held
        finally:
            if held:
                await locks.release(key)

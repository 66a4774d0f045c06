"""The chain-agnostic watcher loop: fetch a range, store it with the cursor, repeat.

The next range is fetched while the current one is written, so the node and
Postgres work at the same time. A stop request lets the batch in hand commit.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Protocol

import asyncpg
import structlog

from indexer.batch import Batch, BlockRef
from indexer.errors import FatalError, RetryableError
from indexer.store.cursors import load_cursor, record_head
from indexer.store.events import write_batch

log = structlog.get_logger(__name__)


class Source(Protocol):
    """What the watcher needs of a chain: its head and its events by block range."""

    name: str

    async def head(self) -> int: ...

    async def fetch(self, start: int, last_allowed: int) -> Batch: ...

    async def close(self) -> None: ...


class Watcher:
    """Indexes one chain into the event log."""

    def __init__(self, source: Source, chain: Any, pool: asyncpg.Pool, *, keep_blocks: int | None = None) -> None:
        self.source = source
        self.chain = chain
        self.pool = pool
        self.keep_blocks = keep_blocks if keep_blocks is not None else max(2 * chain.confirmations, 64)
        self.start_block = min(c.start_block for c in chain.contracts)
        self.log = log.bind(chain=chain.name)
        self.events_written = 0

    async def run(self, stop: asyncio.Event, *, once: bool) -> None:
        """Index to the confirmed head; with `once` return then, else keep following until `stop` is set."""
        backoff = self.chain.poll_interval_seconds
        while not stop.is_set():
            try:
                await self.catch_up(stop)
                backoff = self.chain.poll_interval_seconds
            except RetryableError as exc:
                if once:
                    raise
                self.log.warning("retrying", error=str(exc), in_seconds=round(backoff, 2))
                await _sleep_unless(stop, backoff)
                backoff = min(backoff * 2, 60.0)
                continue
            if once:
                return
            await _sleep_unless(stop, self.chain.poll_interval_seconds)

    async def catch_up(self, stop: asyncio.Event) -> int:
        """Index every block up to the current confirmed head; returns the number of new events."""
        head = await self.source.head()
        confirmed = head - self.chain.confirmations
        cursor = await load_cursor(self.pool, self.chain.name)
        start = cursor.number + 1 if cursor else self.start_block
        if start > confirmed:
            if cursor is not None:
                await record_head(self.pool, self.chain.name, head, confirmed)
            return 0
        written = 0
        began, first = time.monotonic(), start
        pending = asyncio.create_task(self.source.fetch(start, confirmed))
        try:
            while True:
                batch = await pending
                start = batch.last.number + 1
                more = start <= confirmed and not stop.is_set()
                if more:
                    pending = asyncio.create_task(self.source.fetch(start, confirmed))
                new = await self._store(batch, head, confirmed)
                written += new
                self.log.info(
                    "batch_indexed",
                    block=batch.last.number,
                    first_block=batch.first_block,
                    events=len(batch.events),
                    new_events=new,
                    blocks_per_second=round((batch.last.number - first + 1) / max(time.monotonic() - began, 1e-6)),
                )
                if not more:
                    return written
        finally:
            if not pending.done():
                pending.cancel()
                await asyncio.gather(pending, return_exceptions=True)

    async def _store(self, batch: Batch, head: int, confirmed: int) -> int:
        async with self.pool.acquire() as conn:
            new = await write_batch(
                conn,
                batch,
                chain_id=self.chain.chain_id,
                head_block=head,
                confirmed_block=confirmed,
                keep_blocks=self.keep_blocks,
            )
        self.events_written += new
        return new


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except asyncio.TimeoutError:
        pass


__all__ = ["BlockRef", "FatalError", "Source", "Watcher"]

"""The chain-agnostic watcher loop: fetch block ranges, decode them, store them with the cursor.

The three steps run as concurrent stages joined by small queues, so the node
serving the next range, Python decoding this one and Postgres storing the
last one all happen at once. A stop request lets the batch being written
commit, then returns; nothing half-written is ever visible.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any, Protocol

import asyncpg
import structlog

from indexer.batch import Batch
from indexer.errors import RetryableError
from indexer.store.cursors import load_cursor, record_head
from indexer.store.events import write_batch

log = structlog.get_logger(__name__)

_DONE = object()


class Fetched(Protocol):
    """A fetched, not yet decoded, block range; `last` is its end block."""

    last: Any


class Source(Protocol):
    """What the watcher needs of a chain: its head and its events by block range."""

    name: str

    async def head(self) -> int: ...

    async def fetch_logs(self, start: int, last_allowed: int) -> Fetched: ...

    def batches(self, fetched: Fetched) -> AsyncIterator[Batch]: ...

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
            except (RetryableError, ExceptionGroup) as exc:
                retryable = _retryable(exc)
                if once or retryable is None:
                    raise retryable or exc from None
                self.log.warning("retrying", error=str(retryable), in_seconds=round(backoff, 2))
                await _sleep_unless(stop, backoff)
                backoff = min(backoff * 2, 60.0)
                continue
            backoff = self.chain.poll_interval_seconds
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
        fetched: asyncio.Queue[Any] = asyncio.Queue(maxsize=1)
        decoded: asyncio.Queue[Any] = asyncio.Queue(maxsize=2)
        written_before = self.events_written
        async with asyncio.TaskGroup() as group:
            fetcher = group.create_task(self._fetch(start, confirmed, stop, fetched))
            decoder = group.create_task(self._decode(fetched, decoded))
            await self._write(decoded, head, confirmed, stop, start)
            fetcher.cancel()  # after a stop: nothing more is wanted
            decoder.cancel()
        return self.events_written - written_before

    async def _fetch(self, start: int, confirmed: int, stop: asyncio.Event, out: asyncio.Queue[Any]) -> None:
        while start <= confirmed and not stop.is_set():
            fetched = await self.source.fetch_logs(start, confirmed)
            await out.put(fetched)
            start = fetched.last.number + 1
        await out.put(_DONE)

    async def _decode(self, inbox: asyncio.Queue[Any], out: asyncio.Queue[Any]) -> None:
        while (fetched := await inbox.get()) is not _DONE:
            async for batch in self.source.batches(fetched):
                await out.put(batch)
        await out.put(_DONE)

    async def _write(
        self, inbox: asyncio.Queue[Any], head: int, confirmed: int, stop: asyncio.Event, first: int
    ) -> None:
        began = time.monotonic()
        while (batch := await inbox.get()) is not _DONE:
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
            self.log.info(
                "batch_indexed",
                block=batch.last.number,
                first_block=batch.first_block,
                events=len(batch.events),
                new_events=new,
                blocks_per_second=round((batch.last.number - first + 1) / max(time.monotonic() - began, 1e-6)),
            )
            if stop.is_set():
                return


def _retryable(exc: BaseException) -> RetryableError | None:
    """The retryable error behind `exc` (unwrapping task groups), if that is all it is."""
    if isinstance(exc, RetryableError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        inner = [_retryable(e) for e in exc.exceptions]
        if inner and all(e is not None for e in inner):
            return inner[0]
    return None


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass

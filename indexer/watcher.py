"""The one follow loop: every source (EVM, TRON, a social feed) is read, decoded and stored by it.

A source is an adapter behind the small `Source` protocol: its head, its blocks by number, a
range of its logs fetched and cut into batches. The loop owns everything else: the cursor,
reorg detection and repair (`reorg.py`), the retry and back-off of transient failures, the
source's health row, and writing each batch with the cursor in one transaction (`store/`).

The three steps run as concurrent stages joined by small queues, so the node
serving the next range, Python decoding this one and Postgres storing the
last one all happen at once. A stop request lets the batch being written
commit, then returns; nothing half-written is ever visible.
"""

from __future__ import annotations

import asyncio
import collections
import operator
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol

import asyncpg
import structlog

from indexer import reorg
from indexer.batch import Batch, BlockRef
from indexer.clock import sleep_unless
from indexer.errors import FatalError, IndexerError, ReorgDetected, RetryableError, RpcError
from indexer.ownership import Fence
from indexer.progress import Progress
from indexer.projector.committed import CommittedEvents
from indexer.store.cursors import adopt_contracts, known_contracts, load_cursor, record_head, record_health
from indexer.store.events import newest_event_block, write_batch
from indexer.store.ownership import WriteCheck

log = structlog.get_logger(__name__)

_DONE = object()
_EVENT_TYPE = operator.attrgetter("event_type")
ONCE_ATTEMPTS = 5  # `run --once` tries this often when a node gives bad answers (stale, lagging)


class Fetched(Protocol):
    """A fetched, not yet decoded, block range; `last` is its end block."""

    last: Any


class Source(Protocol):
    """What the follow loop needs of a source: its head, its blocks, and its events by block range.

    Optional: `solidified()` (the node's own final height, TRON), `committed(batch, inserted)` (told
    after each batch is stored), `best_effort_once` (`run --once` notes the source as retrying and
    goes on instead of failing, a feed).
    """

    name: str
    chain_id: int
    confirmations: int  # blocks below the head that are final
    retained_blocks: int | None  # block hashes kept for reorg repair; None: max(2 x confirmations, 64)
    contract_starts: Mapping[str, int]  # contract address -> its start block (empty for a feed)
    start_block: int  # where indexing begins when there is no cursor yet

    async def poll(self, cursor: int | None) -> tuple[int, BlockRef | None]: ...

    async def blocks(self, numbers: list[int]) -> dict[int, BlockRef]: ...

    async def fetch_logs(self, start: int, last_allowed: int, headers_from: int | None = None) -> Fetched: ...

    def batches(self, fetched: Fetched) -> AsyncIterator[Batch]: ...

    async def close(self) -> None: ...


class Watcher:
    """Indexes one chain into the event log."""

    def __init__(
        self,
        source: Source,
        chain: Any,
        pool: asyncpg.Pool,
        *,
        keep_blocks: int | None = None,
        metrics: Any = None,
        committed: CommittedEvents | None = None,
    ) -> None:
        """`committed`: where to hand each committed batch for this process's projector (node chains only)."""
        self.source = source
        self.metrics = metrics
        self.chain = chain
        self.pool = pool
        if keep_blocks is None:
            keep_blocks = source.retained_blocks
        self.keep_blocks = keep_blocks if keep_blocks is not None else max(2 * source.confirmations, 64)
        self.log = log.bind(chain=chain.name)
        self.events_written = 0
        self.ancestor_misses = 0  # polls in a row that found no remembered block on the node's chain
        self.committed = committed
        self.fresh_above = -1  # the newest block with stored events at the start: below, the log may hold more
        # The highest block a reorg rewound: until the cursor passes it, ranges come with all their headers (in
        # the request of their logs), even below the kept window's top, where a reorg deeper than the
        # confirmations left the node's answers most likely to mix branches.
        self.rewound_to = -1
        self.handed_over = False  # whether a batch went to `committed` yet (the first of a chain with no events?)
        self.fence: Fence | None = None  # the chain's lock, checked in every batch's transaction (set by its owner)

    async def run(self, stop: asyncio.Event, *, once: bool) -> None:
        """Index to the confirmed head; with `once` return then, else keep following until `stop` is set."""
        try:
            await self._run(stop, once=once)
        except BaseException:
            if self.committed is not None:  # another process may index the chain now: its projector reads the log
                self.committed.forget(self.chain.name)
            raise

    async def _run(self, stop: asyncio.Event, *, once: bool) -> None:
        backoff = self.chain.poll_interval_seconds
        failures = 0
        healthy = False  # whether this run has recorded the source as ok
        await self.adopt_contracts()
        if self.committed is not None:  # batches re-indexing stored history are not handed on (see CommittedEvents)
            self.fresh_above = await newest_event_block(self.pool, self.chain.name)
        while not stop.is_set():
            try:
                await self.catch_up(stop, follow_head=not once)
            except ReorgDetected as exc:  # found while writing: repair on the next pass, at once
                self.log.warning("reorg_detected", reason=str(exc))
                continue
            except (RetryableError, ExceptionGroup) as exc:
                retryable = _retryable(exc)
                failures += 1
                if retryable is not None and once and getattr(self.source, "best_effort_once", False):
                    self.log.warning("source_unavailable", error=str(retryable))
                    await record_health(self.pool, self.chain.name, "retrying", str(retryable))
                    return
                # `--once` gives up at once when every RPC URL failed, and after a few tries on bad answers
                if retryable is None or (once and (isinstance(retryable, RpcError) or failures >= ONCE_ATTEMPTS)):
                    raise retryable or _unwrapped(exc) from None
                self.log.warning("retrying", error=str(retryable), in_seconds=round(backoff, 2))
                await record_health(self.pool, self.chain.name, "retrying", str(retryable))
                healthy = False
                await sleep_unless(stop, backoff)
                backoff = min(backoff * 2, 60.0)
                continue
            if not healthy:
                await record_health(self.pool, self.chain.name, "ok", None)
                healthy = True
            failures = 0
            backoff = self.chain.poll_interval_seconds
            if once:
                return
            await sleep_unless(stop, self.chain.poll_interval_seconds)

    async def catch_up(self, stop: asyncio.Event, *, follow_head: bool = False) -> int:
        """Index every block up to the confirmed head (or the head itself); returns the number of new events.

        Blocks above the confirmed height are stored too when following the head; the
        views tell them apart. Before anything else the cursor's block is checked against
        the node: if the chain reorganized under it, the indexer rewinds first.
        """
        cursor = await load_cursor(self.pool, self.chain.name)
        head, canonical = await self.source.poll(cursor.number if cursor else None)
        if cursor is not None and (canonical is None or canonical.hash != cursor.hash):
            if canonical is None and head >= cursor.number:
                raise RetryableError(f"chain {self.chain.name}: the node has no block {cursor.number} (lagging node?)")
            if self.committed is not None:
                self.committed.forget(self.chain.name)
            orphaned_tip = cursor.number
            try:
                cursor = await reorg.repair(self.pool, self.source, self.chain.name, cursor, window=self.keep_blocks,
                                            metrics=self.metrics, attempt=self.ancestor_misses + 1,
                                            fence=self._fence())  # fmt: skip
            except reorg.NoCommonAncestor:
                self.ancestor_misses += 1
                raise
            self.ancestor_misses = 0
            self.rewound_to = max(self.rewound_to, orphaned_tip)
        confirmed = head - self.source.confirmations
        final = getattr(self.source, "solidified", None)  # TRON: the node says which block is final
        if final is not None:
            confirmed = min(confirmed, await final())
        target = head if follow_head else confirmed
        start = cursor.number + 1 if cursor else self.source.start_block
        if start > target:
            if cursor is not None:
                await record_head(self.pool, self.chain.name, head, confirmed)
            return 0
        fetched: asyncio.Queue[Any] = asyncio.Queue(maxsize=1)
        decoded: asyncio.Queue[Any] = asyncio.Queue(maxsize=2)
        written_before = self.events_written
        headers_from = head - self.keep_blocks + 1
        async with asyncio.TaskGroup() as group:
            fetcher = group.create_task(self._fetch(start, target, headers_from, stop, fetched))
            decoder = group.create_task(self._decode(fetched, decoded))
            await self._write(decoded, head, confirmed, stop, start, target)
            fetcher.cancel()  # after a stop: nothing more is wanted
            decoder.cancel()
        return self.events_written - written_before

    async def adopt_contracts(self) -> None:
        """Index the history of contracts added to the config after the chain was indexed past their start."""
        configured = dict(self.source.contract_starts)
        if not configured:
            return
        cursor = await load_cursor(self.pool, self.chain.name)
        known = await known_contracts(self.pool, self.chain.name)
        added = {address: start for address, start in configured.items() if address not in known}
        rewind_to = None
        if cursor is not None and known and added and min(added.values()) <= cursor.number:
            earliest = min(added.values())
            if earliest == 0:
                raise FatalError(
                    f"chain {self.chain.name}: contract(s) {', '.join(sorted(added))} added with start_block 0 after "
                    "the chain was indexed: give them their deployment block as start_block"
                )
            rewind_to = (await self.source.blocks([earliest - 1])).get(earliest - 1)
            if rewind_to is None:
                raise RetryableError(f"chain {self.chain.name}: the node has no block {earliest - 1}")
            self.log.warning(
                "contracts_added", contracts=sorted(added), rewind_to=rewind_to.number, block=cursor.number
            )
        if added:
            async with self.pool.acquire() as conn:
                await adopt_contracts(conn, self.chain.name, added, rewind_to, self._fence())

    def _fence(self) -> WriteCheck | None:
        """What the store runs first in each writing transaction: the lock check, while the chain is owned."""
        return None if self.fence is None else self.fence.check

    async def _fetch(
        self, start: int, target: int, headers_from: int, stop: asyncio.Event, out: asyncio.Queue[Any]
    ) -> None:
        while start <= target and not stop.is_set():
            if start <= self.rewound_to:  # the branch a reorg replaced, fetched again: every header with its logs
                fetched = await self.source.fetch_logs(start, min(target, self.rewound_to), start)
            else:
                fetched = await self.source.fetch_logs(start, target, headers_from)
            if self.metrics is not None:
                self.metrics.log_range_fetched(self.chain.name, fetched.last.number - start + 1)
            await out.put(fetched)
            start = fetched.last.number + 1
        await out.put(_DONE)

    async def _decode(self, inbox: asyncio.Queue[Any], out: asyncio.Queue[Any]) -> None:
        while (fetched := await inbox.get()) is not _DONE:
            async for batch in self.source.batches(fetched):
                await out.put(batch)
        await out.put(_DONE)

    async def _write(
        self, inbox: asyncio.Queue[Any], head: int, confirmed: int, stop: asyncio.Event, first: int, target: int
    ) -> None:
        began = time.monotonic()
        progress = Progress(self.chain.name, first, target)
        while (batch := await inbox.get()) is not _DONE:
            async with self.pool.acquire() as conn:
                new = await write_batch(
                    conn,
                    batch,
                    chain_id=self.source.chain_id,
                    head_block=head,
                    confirmed_block=confirmed,
                    keep_blocks=self.keep_blocks,
                    fence=self._fence(),
                )
            committed = getattr(self.source, "committed", None)
            if committed is not None:
                committed(batch, new)
            if self.committed is not None and batch.first_block > self.fresh_above:
                self.committed.committed(batch, new, first=self.fresh_above == -1 and not self.handed_over)
                self.handed_over = True
            self.events_written += new
            progress.update(batch.last.number, new, time.monotonic() - began)
            if self.metrics is not None:
                by_type = collections.Counter(map(_EVENT_TYPE, batch.events))  # StrEnum: types are their names
                self.metrics.batch_indexed(
                    self.chain.name, batch.last.number, head, confirmed, by_type, batch.last.time
                )
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


def _unwrapped(exc: BaseException) -> BaseException:
    """The indexer's own error inside a task group's exception, if there is one."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _unwrapped(inner)
            if isinstance(found, IndexerError):
                return found
    return exc

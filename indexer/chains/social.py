"""The social feed source: read signed delegation records for the follow loop, like a chain's logs.

A feed has no blocks, so its "chain" is a poll clock in unix seconds: each poll is one block
whose number and time are `max(previous + 1, now)`, and the records accepted in it are events
whose block number and time are their `issued_at`. The follow loop (`watcher.py`) drives it
through the same protocol as an EVM or TRON source and writes each poll as one batch with the
feed's cursor; the feed's frontier is "everything read up to now". It never reorganizes, but a
record dated at or before `poll clock - settle_seconds` (published late) lands below what the
projector may have folded: its batch says the feed's history changed from there, and the store
records that like a reorg, so the projections rebuild.

The whole feed (a JSON Lines file, or an HTTP URL answering a JSON array) is read on every poll
and judged by the pure `decode.social.judge`: records already stored are skipped quietly, items
judged for good are remembered by fingerprint and neither re-checked nor re-logged.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import aiohttp
import structlog

from indexer.batch import Batch, BlockRef
from indexer.clock import current as current_clock
from indexer.decode.social import (
    Content,
    Judgement,
    Rejected,
    apply_order,
    judge,
    parse_jsonl,
    record_content,
    to_event,
)
from indexer.errors import RetryableError
from indexer.redact import redact_url

log = structlog.get_logger(__name__)

REQUEST_TIMEOUT_SECONDS = 10.0
MAX_FEED_BYTES = 256 * 1024 * 1024  # an HTTP feed larger than this is refused rather than read into memory

StoredRecords = Mapping[tuple[str, int], Content]  # (staker, nonce) -> what the stored event says


class FeedUnavailable(RetryableError):
    """The feed could not be read this time (file missing, HTTP error, not a JSON array): the next poll retries."""


@dataclass(frozen=True, slots=True)
class FeedRead:
    """One read of the feed, judged: what `fetch_logs` hands to `batches`."""

    first: int  # the first clock tick this poll covers (the cursor + 1)
    last: BlockRef  # the poll's clock tick
    judgement: Judgement


def _is_url(url: str) -> bool:
    return url.startswith(("http://", "https://"))


def _tick(number: int) -> BlockRef:
    return BlockRef(number=number, hash="", parent_hash=None, time=number)


class SocialSource:
    """One configured social feed (`kind: social`), read by the follow loop.

    `load_stored` returns the records the event log already holds for this feed (the service
    passes the store's query); `clock` gives unix seconds (a test or simulation passes its own).
    """

    chain_id = 0
    confirmations = 0  # a poll's records are final once read
    retained_blocks = 0  # no block hashes to keep: a feed never reorganizes
    best_effort_once = True  # `run --once` records an unreadable feed as retrying and goes on
    contract_starts: Mapping[str, int] = MappingProxyType({})  # a feed has no contracts

    def __init__(
        self,
        chain: Any,
        *,
        load_stored: Callable[[], Awaitable[StoredRecords]],
        clock: Callable[[], float] | None = None,
        request_timeout: float = REQUEST_TIMEOUT_SECONDS,
        metrics: Any = None,
    ) -> None:
        self.chain = chain
        self.name: str = chain.name
        self.clock = clock or (lambda: current_clock().time())  # unix seconds
        self.metrics = metrics
        self.settle: int = chain.settle_seconds  # how far back the projector may already have folded
        self.request_timeout = request_timeout
        self.rejections: Counter[str] = Counter()  # by reason, since start (for tests and metrics)
        self.accepted_total = 0  # records written, since start
        self.polls = 0
        self.failures = 0  # reads that failed
        self.last_error: str | None = None
        self.log = log.bind(chain=self.name)
        self._load_stored = load_stored
        self._session: aiohttp.ClientSession | None = None
        self._now = 0
        self._committed: int | None = None  # the clock tick of the last batch this source saw committed
        self._stored: dict[tuple[str, int], Content] | None = None  # as the event log holds them
        self._settled: set[str] = set()  # fingerprints of items judged for good
        self._judged: dict[int, Judgement] = {}  # clock tick -> its read's judgement, until the batch is stored

    @property
    def start_block(self) -> int:
        """The first poll's clock tick (the feed's history starts when it is first read)."""
        return self._now

    # -- the follow loop's protocol ------------------------------------------------------------------------------

    async def poll(self, cursor: int | None) -> tuple[int, BlockRef | None]:
        """The clock tick this poll reads at (`head`), and the cursor's tick (a feed never reorganizes)."""
        self._now = int(self.clock())
        if cursor != self._committed:  # a restart, or a write whose outcome this source did not see
            self._stored = None
            self._committed = cursor
        self._judged.clear()
        head = self._now if cursor is None else max(cursor + 1, self._now)
        return head, None if cursor is None else _tick(cursor)

    async def blocks(self, numbers: list[int]) -> dict[int, BlockRef]:
        """Every tick the loop remembers is still there: a feed has no other branch."""
        return {n: _tick(n) for n in numbers}

    async def fetch_logs(self, start: int, last_allowed: int, headers_from: int | None = None) -> FeedRead:
        """Read the whole feed and judge it; FeedUnavailable when it cannot be read."""
        self.polls += 1
        try:
            items = await self.read()
        except FeedUnavailable as exc:
            self.failures += 1
            self.last_error = str(exc)
            self.log.warning("feed_unavailable", url=redact_url(self.chain.url), error=str(exc))
            raise
        if self._stored is None:
            self._stored = dict(await self._load_stored())
        judgement = judge(items, feed=self.name, now=self._now, stored=self._stored, settled=self._settled)
        rejected = Counter(str(verdict.reason) for _, verdict in judgement.rejected)
        for item, verdict in judgement.rejected:
            self._log_rejection(item, verdict)
        self.rejections.update(rejected)
        self.last_error = None
        return FeedRead(first=start, last=_tick(last_allowed), judgement=judgement)

    async def batches(self, fetched: FeedRead) -> AsyncIterator[Batch]:
        """The poll as one batch: the accepted records in (issued_at, nonce) order, and whether any came late."""
        events = sorted((to_event(r, self.name, self.chain.asset) for r in fetched.judgement.accepted), key=apply_order)
        previous = None if self._committed is None else fetched.first - 1
        late = [e.block_number for e in events if previous is not None and e.block_number <= previous - self.settle]
        yield Batch(
            chain=self.name,
            first_block=fetched.first,
            last=fetched.last,
            events=tuple(events),
            history_changed_since=min(late) if late else None,
        )
        self._judged[fetched.last.number] = fetched.judgement

    def committed(self, batch: Batch, inserted: int) -> None:
        """The loop wrote `batch` (`inserted` new rows): remember its records, and count late ones."""
        judgement = self._judged.pop(batch.last.number)
        assert self._stored is not None
        for record in judgement.accepted:
            self._stored[record.key] = record_content(record)
        self._settled |= judgement.settled
        self._committed = batch.last.number
        self.accepted_total += inserted
        if judgement.accepted or judgement.rejected:
            rejected = Counter(str(verdict.reason) for _, verdict in judgement.rejected)
            self.log.info("feed_polled", accepted=len(judgement.accepted), written=inserted, rejected=dict(rejected))
        if inserted != len(batch.events):
            self.log.warning("feed_records_already_stored", expected=len(batch.events), inserted=inserted)
        if batch.history_changed_since is not None and inserted:
            late = sum(e.block_number <= batch.first_block - 1 - self.settle for e in batch.events)
            self.log.warning("feed_records_late", records=late, oldest_issued_at=batch.history_changed_since,
                             clock=batch.first_block - 1)  # fmt: skip
            if self.metrics is not None:
                self.metrics.feed_late(self.name, late)

    # -- reading -------------------------------------------------------------------------------------------------

    async def read(self) -> list[object]:
        """Every item of the feed, decoded from JSON (a non-JSON line of a file is kept as a bad line)."""
        if _is_url(self.chain.url):
            return await self._read_http()
        path = Path(self.chain.url.removeprefix("file://"))
        try:
            text = await asyncio.to_thread(path.read_text, encoding="utf-8", errors="replace")
        except OSError as exc:
            raise FeedUnavailable(f"cannot read {path}: {exc.strerror or exc}") from exc
        return parse_jsonl(text)

    async def _read_http(self) -> list[object]:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.request_timeout))
        try:
            async with self._session.get(self.chain.url, headers={"Accept": "application/json"}) as response:
                if response.status != 200:
                    raise FeedUnavailable(f"HTTP {response.status}")
                if response.content_length is not None and response.content_length > MAX_FEED_BYTES:
                    raise FeedUnavailable(f"feed of {response.content_length} bytes is too large")
                body = await response.content.read(MAX_FEED_BYTES + 1)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise FeedUnavailable(f"{exc.__class__.__name__}: {exc}") from exc
        if len(body) > MAX_FEED_BYTES:
            raise FeedUnavailable("feed is too large")
        try:
            items = json.loads(body)
        except ValueError as exc:
            raise FeedUnavailable(f"answer is not JSON: {exc}") from exc
        if not isinstance(items, list):
            raise FeedUnavailable(f"answer is a JSON {type(items).__name__}, not an array")
        return items

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _log_rejection(self, item: object, verdict: Rejected) -> None:
        """One log line per rejected record: reason, staker and nonce as given, never the signature."""
        if self.metrics is not None:
            self.metrics.feed_rejected(self.name, str(verdict.reason))
        staker: Any = None
        nonce: Any = None
        if verdict.record is not None:
            staker, nonce = verdict.record.staker, verdict.record.nonce
        elif isinstance(item, Mapping):
            staker, nonce = _short(item.get("staker")), _short(item.get("nonce"))
        self.log.warning(
            "feed_record_rejected", reason=str(verdict.reason), detail=verdict.detail, staker=staker, nonce=nonce
        )


def _short(value: Any) -> Any:
    """A scalar from an untrusted record, safe to log."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if abs(value) < 10**80 else "<huge>"
    if isinstance(value, str):
        return value[:64]
    return f"<{type(value).__name__}>"

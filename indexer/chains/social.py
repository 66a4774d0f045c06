"""The social feed source: read signed delegation records, check them, store the accepted ones as events.

The whole feed (a JSON Lines file, or an HTTP URL answering a JSON array) is
re-read on every poll. Each poll is one transaction: the accepted records and
the feed's cursor. The cursor is a poll clock in unix seconds (block number ==
block time == max(previous + 1, now)), so the feed's frontier is "everything
read up to now" and events (whose block number and time are `issued_at`) are
confirmed once the clock passes them.

A record already stored (same staker, nonce and content) is skipped quietly on
re-reads; a record judged for good (accepted, or rejected for a reason time
cannot change) is remembered by its fingerprint and neither re-checked nor
re-logged by this instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import structlog

from indexer.batch import Batch, BlockRef
from indexer.decode.social import (
    Accepted,
    Reason,
    Record,
    Rejected,
    apply_order,
    check_record,
    parse_record,
    parse_tx_key,
    record_content,
    to_event,
)
from indexer.errors import FatalError
from indexer.events import EventType
from indexer.store.cursors import record_health
from indexer.store.events import write_batch

log = structlog.get_logger(__name__)

REQUEST_TIMEOUT_SECONDS = 10.0
MAX_FEED_BYTES = 256 * 1024 * 1024  # an HTTP feed larger than this is refused rather than read into memory
# Verdicts that time can change are not remembered: the record is judged again on the next poll.
_TRANSIENT = frozenset({Reason.ISSUED_IN_FUTURE})


class FeedUnavailable(Exception):
    """The feed could not be read this time (file missing, HTTP error, not a JSON array...)."""


class _BadLine:
    """A JSON Lines line that is not JSON."""

    __slots__ = ("line", "error")

    def __init__(self, line: int, error: str) -> None:
        self.line = line
        self.error = error


def fingerprint(item: object) -> str:
    """A stable digest of one feed item (its JSON, keys sorted)."""
    if isinstance(item, _BadLine):
        text = f"badline:{item.line}:{item.error}"
    else:
        text = json.dumps(item, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def parse_jsonl(text: str) -> list[object]:
    """The items of a JSON Lines text: blank lines skipped, a line that is not JSON kept as a `_BadLine`."""
    items: list[object] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            items.append(json.loads(line))
        except ValueError as exc:
            items.append(_BadLine(number, f"{exc.__class__.__name__}: {exc}"))
    return items


def _is_url(url: str) -> bool:
    return url.startswith(("http://", "https://"))


class SocialSource:
    """One configured social feed (`kind: social`)."""

    def __init__(self, chain: Any, *, request_timeout: float = REQUEST_TIMEOUT_SECONDS, metrics: Any = None) -> None:
        self.chain = chain
        self.metrics = metrics
        self.name: str = chain.name
        self.url: str = chain.url
        self.asset: str = chain.asset
        self.poll_interval: float = float(chain.poll_interval_seconds)
        self.settle: int = chain.settle_seconds  # how far back the projector may already have folded
        self.request_timeout = request_timeout
        self.rejections: Counter[str] = Counter()  # by reason, since start (for metrics)
        self.accepted_total = 0
        self.polls = 0
        self.failures = 0  # polls that could not read the feed or store its records
        self._failing = False  # whether the last poll failed (recorded in chain_health)
        self.last_error: str | None = None
        self.log = log.bind(chain=self.name)
        self._session: aiohttp.ClientSession | None = None
        self._cursor: int | None = None  # the feed's poll clock as stored; None before the first poll
        self._stored: dict[tuple[str, int], tuple[Any, ...]] | None = None  # (staker, nonce) -> content
        self._settled: set[str] = set()  # fingerprints of items judged for good

    # -- reading -----------------------------------------------------------

    async def read(self) -> list[object]:
        """Every item of the feed, decoded from JSON (a non-JSON line of a file is kept as a bad line)."""
        if _is_url(self.url):
            return await self._read_http()
        path = Path(self.url.removeprefix("file://"))
        try:
            text = await asyncio.to_thread(path.read_text, encoding="utf-8", errors="replace")
        except OSError as exc:
            raise FeedUnavailable(f"cannot read {path}: {exc.strerror or exc}") from exc
        return parse_jsonl(text)

    async def _read_http(self) -> list[object]:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.request_timeout))
        try:
            async with self._session.get(self.url, headers={"Accept": "application/json"}) as response:
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

    # -- state ---------------------------------------------------------------

    async def _load_state(self, pool: asyncpg.Pool) -> None:
        """The feed's cursor and the (staker, nonce) keys it already stored."""
        self._cursor = await pool.fetchval("SELECT block_number FROM chain_cursors WHERE chain = $1", self.name)
        rows = await pool.fetch(
            """SELECT tx_hash, pool, amount::text AS amount, event_type, extract(epoch FROM block_time)::bigint AS t
                 FROM events WHERE chain = $1""",
            self.name,
        )
        stored: dict[tuple[str, int], tuple[Any, ...]] = {}
        for r in rows:
            action = "delegate" if r["event_type"] == EventType.SOCIAL_DELEGATE else "undelegate"
            amount = None if r["amount"] is None else int(r["amount"])
            stored[parse_tx_key(r["tx_hash"])] = (r["pool"], amount, action, r["t"])
        self._stored = stored

    # -- polling -------------------------------------------------------------

    async def poll_once(self, pool: asyncpg.Pool, now: int | None = None) -> tuple[int, Counter[str]]:
        """Read the feed once and store what is new; returns (records accepted, rejections by reason).

        A feed that cannot be read is logged and counted, and nothing moves: the next poll retries.
        `now` defaults to the wall clock: the one place wall time decides anything
        ("the deadline has not passed when the record is first read").
        """
        now = int(time.time()) if now is None else now
        self.polls += 1
        try:
            items = await self.read()
        except FeedUnavailable as exc:
            self.failures += 1
            self.last_error = str(exc)
            self.log.warning("feed_unavailable", url=_redacted(self.url), error=str(exc))
            return 0, Counter()
        if self._stored is None:
            await self._load_state(pool)
        assert self._stored is not None
        stored = self._stored
        seen: set[tuple[str, int]] = set(stored)
        reread: set[tuple[str, int]] = set()  # stored keys met again in this read
        accepted: list[Record] = []
        rejected: Counter[str] = Counter()
        settled: set[str] = set()
        for item in items:
            fp = fingerprint(item)
            if fp in self._settled:
                continue
            if isinstance(item, _BadLine):
                verdict: Accepted | Rejected = Rejected(Reason.MALFORMED, f"line {item.line} is not JSON: {item.error}")
            else:
                parsed = parse_record(item)
                if isinstance(parsed, Record) and parsed.key in stored and parsed.key not in reread:
                    if stored[parsed.key] == record_content(parsed):
                        # A re-read of a stored record (after a restart, or an identical copy): nothing new.
                        reread.add(parsed.key)
                        settled.add(fp)
                        continue
                verdict = check_record(item, feed=self.name, now=now, seen=seen)
            if isinstance(verdict, Accepted):
                accepted.append(verdict.record)
                seen.add(verdict.record.key)
                reread.add(verdict.record.key)
            else:
                rejected[verdict.reason] += 1
                self._log_rejection(item, verdict)
            if not (isinstance(verdict, Rejected) and verdict.reason in _TRANSIENT):
                settled.add(fp)
        try:
            written = await self._store(pool, accepted, now)
        except FatalError:
            raise
        except (asyncpg.PostgresError, OSError) as exc:
            self.failures += 1
            self.last_error = f"store: {exc.__class__.__name__}: {exc}"
            self.log.warning("feed_store_failed", error=self.last_error)
            self._stored = None  # reload from the database: the transaction may or may not have committed
            return 0, rejected
        for record in accepted:
            stored[record.key] = record_content(record)
        self._settled |= settled
        self.rejections.update(rejected)
        self.accepted_total += written
        self.last_error = None
        if accepted or rejected:
            self.log.info("feed_polled", accepted=len(accepted), written=written, rejected=dict(rejected))
        return len(accepted), rejected

    async def _store(self, pool: asyncpg.Pool, records: list[Record], now: int) -> int:
        """Write the accepted records and move the poll clock, in one transaction; returns rows inserted."""
        events = sorted((to_event(r, self.name, self.asset) for r in records), key=apply_order)
        previous = self._cursor
        tick = now if previous is None else max(previous + 1, now)
        batch = Batch(
            chain=self.name,
            first_block=tick if previous is None else previous + 1,
            last=BlockRef(number=tick, hash="", parent_hash=None, time=tick),
            events=tuple(events),
        )
        # the projector folds this feed up to (poll clock - settle time): a record dated at or before that
        # may land below what it already folded, so its history is marked changed from there on, like a reorg
        late = [e.block_number for e in events if previous is not None and e.block_number <= previous - self.settle]
        async with pool.acquire() as conn, conn.transaction():
            inserted = await write_batch(conn, batch, chain_id=0, head_block=tick, confirmed_block=tick, keep_blocks=0)
            if late and inserted:
                await mark_changed_history(conn, self.name, since=min(late), clock=previous)
        if late and inserted:
            self.log.warning("feed_records_late", records=len(late), oldest_issued_at=min(late), clock=previous)
            if self.metrics is not None:
                self.metrics.feed_late(self.name, len(late))
        self._cursor = tick
        if inserted != len(events):
            self.log.warning("feed_records_already_stored", expected=len(events), inserted=inserted)
        return inserted

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

    async def run(self, pool: asyncpg.Pool, stop: asyncio.Event, *, once: bool = False) -> None:
        """Poll every `poll_interval_seconds` until `stop` is set (or once). Only a FatalError escapes."""
        while not stop.is_set():
            failures_before = self.failures
            try:
                await self.poll_once(pool)
            except FatalError:
                raise
            except Exception as exc:  # a source never stops the service for a transient failure
                self.failures += 1
                self.last_error = f"{exc.__class__.__name__}: {exc}"
                self._stored = None
                self.log.exception("feed_poll_failed")
            failing = self.failures > failures_before
            if failing or self._failing:  # shows in `indexer status` / v_indexer_status
                self._failing = failing
                with contextlib.suppress(Exception):
                    await record_health(
                        pool, self.name, "retrying" if failing else "ok", self.last_error if failing else None
                    )
            if once:
                return
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.poll_interval)
            except TimeoutError:
                pass


async def mark_changed_history(conn: asyncpg.Connection, feed: str, *, since: int, clock: int) -> None:
    """Record that the feed's history changed from `since` (a record came late), so projections rebuild.

    Kept with the chains' reorgs: "the log below the indexed point changed after block `since` - 1".
    """
    await conn.execute(
        """INSERT INTO reorgs (chain, ancestor_block, ancestor_hash, orphaned_block, orphaned_hash, depth,
                               events_removed)
           VALUES ($1, $2, '', $3, '', $4, 0)""",
        feed,
        since - 1,
        clock,
        max(clock - since + 1, 0),
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


def _redacted(url: str) -> str:
    """A feed URL without credentials or query string (which may carry a token)."""
    if not _is_url(url):
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"

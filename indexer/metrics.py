"""Every Prometheus metric of the indexer, declared in one place on a registry that is passed in.

Names carry the `indexer_` prefix, counters end in `_total`, durations in
`_seconds`, and per-chain series carry a `chain` label. Two kinds of values:

- counters and histograms (events ingested, RPC calls, reorgs, ...) count what
  *this process* did since it started; Prometheus' `rate()` handles restarts.
- the per-chain gauges (head, indexed and confirmed block, lag), projector lag
  and `indexer_epochs_closed_total` are re-read from the database by
  `refresh_from_db` before each scrape (`indexer.store.health`), so they say
  what the database holds whichever process wrote it, and survive restarts.
  Between scrapes the watchers also set the per-chain gauges as they go. Epochs
  are closed by `indexer epochs close`, another process: the counter is the
  database's count of closed epochs, which only grows (a close is final).
"""

from __future__ import annotations

import asyncio
import platform
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily

from indexer import __version__
from indexer.store import health

log = structlog.get_logger(__name__)

RPC_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
LOG_RANGE_BUCKETS = (1, 10, 100, 500, 1_000, 2_000, 5_000, 10_000, 50_000, 100_000)
REORG_DEPTH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 32, 64, 128, 256)

Observer = Callable[[str, str, float, str | None], None]


class DatabaseCounter:
    """A counter whose value is a count the database keeps (read at each scrape), not one this process made."""

    def __init__(self, name: str, documentation: str, registry: CollectorRegistry) -> None:
        self.name, self.documentation = name, documentation
        self.value = 0
        registry.register(self)

    def set(self, value: int) -> None:
        """The count as last read from the database."""
        self.value = value

    def describe(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(self.name, self.documentation)

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(self.name, self.documentation, value=self.value)


class Metrics:
    """The indexer's metrics on `registry`, with the helpers the service calls to update them."""

    def __init__(self, registry: CollectorRegistry, *, version: str = __version__) -> None:
        self.registry = registry
        r = registry
        self.head_block = Gauge("indexer_head_block", "Node's head block when last polled", ["chain"], registry=r)
        self.indexed_block = Gauge("indexer_indexed_block", "Last fully indexed block", ["chain"], registry=r)
        self.confirmed_block = Gauge(
            "indexer_confirmed_block", "Head minus the chain's confirmations", ["chain"], registry=r
        )
        self.lag_blocks = Gauge("indexer_lag_blocks", "Head block minus indexed block", ["chain"], registry=r)
        self.lag_seconds = Gauge(
            "indexer_lag_seconds",
            "Age of the indexed block while behind the head (0 at the head)",
            ["chain"],
            registry=r,
        )
        self.cursor_updated = Gauge(
            "indexer_cursor_updated_timestamp_seconds",
            "Unix time the chain's cursor last advanced or saw the head",
            ["chain"],
            registry=r,
        )
        self.unresolved_pools = Gauge(
            "indexer_unresolved_pools", "Events whose string pool name is not known yet", ["chain"], registry=r
        )
        self.events_ingested = Counter(
            "indexer_events_ingested_total", "Events written to the event log", ["chain", "type"], registry=r
        )
        self.rpc_requests = Counter(
            "indexer_rpc_requests_total", "JSON-RPC HTTP requests sent", ["chain", "url", "method"], registry=r
        )
        self.rpc_errors = Counter(
            "indexer_rpc_errors_total",
            "JSON-RPC HTTP requests that failed, by kind (timeout, connection, http_NNN, rate_limited, malformed; "
            "error_object: answered with a JSON-RPC error)",
            ["chain", "url", "method", "kind"],
            registry=r,
        )
        self.rpc_seconds = Histogram(
            "indexer_rpc_request_seconds",
            "Duration of JSON-RPC HTTP requests",
            ["chain", "method"],
            buckets=RPC_SECONDS_BUCKETS,
            registry=r,
        )
        self.log_range = Histogram(
            "indexer_get_logs_range_blocks",
            "Blocks covered by one eth_getLogs range",
            ["chain"],
            buckets=LOG_RANGE_BUCKETS,
            registry=r,
        )
        self.reorgs = Counter("indexer_reorgs_total", "Chain reorganizations repaired", ["chain"], registry=r)
        self.reorg_depth = Histogram(
            "indexer_reorg_depth", "Blocks rewound per reorg", ["chain"], buckets=REORG_DEPTH_BUCKETS, registry=r
        )
        self.projector_lag = Gauge(
            "indexer_projector_lag_seconds",
            "Confirmed block time the projector may fold minus the block time it has folded up to",
            registry=r,
        )
        self.projector_frontier = Gauge(
            "indexer_projector_frontier_timestamp_seconds", "Block time up to which events are folded", registry=r
        )
        self.epochs_closed = DatabaseCounter("indexer_epochs_closed_total", "Reward epochs closed", r)
        self.feed_records_rejected = Counter(
            "indexer_feed_records_rejected_total", "Feed records refused, by reason", ["feed", "reason"], registry=r
        )
        self.feed_records_late = Counter(
            "indexer_feed_records_late_total",
            "Feed records stored after the projector had folded past their date (each rebuilds the projections)",
            ["feed"],
            registry=r,
        )
        self.database_up = Gauge(
            "indexer_database_up", "1 if the last read of the database for metrics succeeded", registry=r
        )
        # What the service does by itself (SPEC 9); set by the process holding the projector's lock.
        self.validators_without_reward = Gauge(
            "indexer_epoch_validators_without_reward",
            "Validators that had stake in the epoch closed last by the service but no recorded reward",
            registry=r,
        )
        self.verify_mismatches = Gauge(
            "indexer_verify_mismatches",
            "Readings that differed from the projections (or failed) at the last periodic verify",
            ["chain", "contract"],
            registry=r,
        )
        self.verify_readings = Counter(
            "indexer_verify_readings", "Contract readings made by the periodic verify", registry=r
        )
        self.verify_last_success = Gauge(
            "indexer_verify_last_success_timestamp_seconds",
            "Unix time the last periodic verify ran through",
            registry=r,
        )
        self.verify_interval = Gauge(
            "indexer_verify_interval_seconds", "How often the service verifies (0: never)", registry=r
        )
        self.build = Info("indexer_build", "Version of the running indexer", registry=r)
        self.build.info({"version": version, "python": platform.python_version()})
        if Path("/proc/self/stat").exists():  # Linux: start time, CPU, memory, file descriptors
            ProcessCollector(namespace="indexer", registry=r)
        else:
            start = Gauge("indexer_process_start_time_seconds", "Unix time the process started", registry=r)
            start.set(time.time())

    # -- called by the RPC client, the watchers, the projector, the feeds ------------------------------

    def rpc_observer(self, chain: str) -> Observer:
        """A callback for `RpcClient(observer=...)`: (method, redacted url, seconds, error kind or None)."""

        def observe(method: str, url: str, seconds: float, error_kind: str | None) -> None:
            self.rpc_requests.labels(chain, url, method).inc()
            self.rpc_seconds.labels(chain, method).observe(seconds)
            if error_kind is not None:
                self.rpc_errors.labels(chain, url, method, error_kind).inc()

        return observe

    def batch_indexed(
        self,
        chain: str,
        block: int,
        head: int,
        confirmed: int,
        events_by_type: Mapping[Any, int],
        block_time: int | None = None,
        now: float | None = None,
    ) -> None:
        """A batch ending at `block` (block time `block_time`, unix s) was written, holding these events."""
        self.head_block.labels(chain).set(head)
        self.indexed_block.labels(chain).set(block)
        self.confirmed_block.labels(chain).set(confirmed)
        self.lag_blocks.labels(chain).set(max(head - block, 0))
        if block >= head:
            self.lag_seconds.labels(chain).set(0)
        elif block_time is not None:
            self.lag_seconds.labels(chain).set(max((time.time() if now is None else now) - block_time, 0))
        self.cursor_updated.labels(chain).set(time.time() if now is None else now)
        for kind, count in events_by_type.items():
            if count:
                self.events_ingested.labels(chain, str(kind)).inc(count)

    def log_range_fetched(self, chain: str, blocks: int) -> None:
        """One eth_getLogs range of `blocks` blocks was fetched."""
        self.log_range.labels(chain).observe(blocks)

    def reorg(self, chain: str, depth: int) -> None:
        """A reorg of `depth` blocks (orphaned tip minus common ancestor) was repaired."""
        self.reorgs.labels(chain).inc()
        self.reorg_depth.labels(chain).observe(depth)

    def feed_rejected(self, feed: str, reason: str) -> None:
        """A record of feed `feed` was refused; `reason` is a short fixed word (not the record's text)."""
        self.feed_records_rejected.labels(feed, reason).inc()

    def feed_late(self, feed: str, records: int) -> None:
        """`records` of feed `feed` came in dated before what the projector may already have folded."""
        self.feed_records_late.labels(feed).inc(records)

    def verified(self, contracts: Sequence[tuple[str, str]], mismatched: Sequence[tuple[str, str]], readings: int,
                 now: float) -> None:  # fmt: skip
        """A periodic verify ran through: per (chain, contract) the mismatches it found (0 for the others)."""
        self.verify_mismatches.clear()
        for chain, contract in contracts:
            self.verify_mismatches.labels(chain, contract).set(0)
        for chain, contract in mismatched:
            self.verify_mismatches.labels(chain, contract).inc()
        self.verify_readings.inc(readings)
        self.verify_last_success.set(now)

    def exposition(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)

    # -- from the database ------------------------------------------------------------------------------

    async def refresh_from_db(
        self, pool: asyncpg.Pool, *, projected_chains: Sequence[str] | None = None, timeout: float = 2.0
    ) -> bool:
        """Re-read the database-backed values (see `apply_reading`); False (and database_up 0) if it failed.

        `projected_chains`: the chains the projector folds (None: every chain with a cursor). The series of
        chains that have no cursor any more are dropped. On failure the last values stay.
        """
        try:
            async with asyncio.timeout(timeout):
                reading = await health.read(pool, projected_chains)
        except Exception as exc:  # noqa: BLE001 - a scrape still serves the process's own counters
            self.database_up.set(0)
            detail = str(exc)[:200] if isinstance(exc, asyncpg.PostgresError) else ""  # server messages hold no DSN
            log.warning("metrics_refresh_failed", error=type(exc).__name__, detail=detail)
            return False
        self.database_up.set(1)
        self.apply_reading(reading)
        return True

    def apply_reading(self, reading: health.Reading) -> None:
        """Set the database-backed values from one reading (no await: a scrape never sees half of it)."""
        self.apply_status(reading.chains)
        if reading.frontier_time is not None:
            self.projector_frontier.set(reading.frontier_time)
            if reading.foldable_time is not None:
                self.projector_lag.set(max(reading.foldable_time - reading.frontier_time, 0))
        self.epochs_closed.set(reading.epochs_closed)

    def apply_status(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Replace the per-chain gauges with rows shaped like `v_indexer_status` (plus lag_seconds, updated_at)."""
        gauges = {
            "head_block": self.head_block,
            "indexed_block": self.indexed_block,
            "confirmed_block": self.confirmed_block,
            "lag_blocks": self.lag_blocks,
            "lag_seconds": self.lag_seconds,
            "updated_at": self.cursor_updated,
            "unresolved_pools": self.unresolved_pools,
        }
        for gauge in gauges.values():
            gauge.clear()
        for row in rows:
            for column, gauge in gauges.items():
                if row[column] is not None:
                    gauge.labels(row["chain"]).set(float(row[column]))

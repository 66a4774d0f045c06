"""What the service does by itself (SPEC 9): close epochs, compute loyalty points, verify the projections.

Run by `indexer run` in exactly one process, the one holding the projector's advisory lock
(`service._owned_projector`), next to the projector. Three small loops on the service's TaskGroup
rather than a scheduling library: each is "do it when due, then wait", the due rules come from the
data (chains' confirmed times, UTC days), and the waits must stop at once on SIGTERM
(`clock.sleep_unless`) - what APScheduler and the like add (cron syntax, job stores, executors) is
not needed here, and their own threads and clocks would be one more thing to stop and to simulate.

- **Auto close** (`epochs.auto_close`): epoch N is due once every chain's confirmed block time and
  every feed's settled clock has passed its end + `close_after_seconds`. "Time since the end" is
  read on the chains' own clocks (their confirmed block times follow the wall clock within the
  confirmation delay), which keeps closing deterministic and replayable. The close is
  `epochs.close.close_epoch`, the same as `indexer epochs close N`, so the results are identical and
  a second process finds the epoch closed.
- **Loyalty points** (when `loyalty:` is set): through the last complete UTC day, once a day.
- **Verify** (`verify.interval_seconds`, 0 turns it off): `verify` every interval, its result in the
  `indexer_verify_*` metrics.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import structlog

from indexer import clock
from indexer.clock import sleep_unless
from indexer.epochs.close import close_epoch, feed_settle_seconds, lagging_sources, node_chains, schedule
from indexer.errors import IndexerError
from indexer.metrics import Metrics
from indexer.store import epochs as epochs_store

log = structlog.get_logger(__name__)

CHECK_SECONDS = 60.0  # how often the day's loyalty points are looked at


def due_epochs(genesis: int, length: int, close_after: int, horizon: int | None, closed: set[int]) -> list[int]:
    """The epochs to close now, oldest first (pure): every epoch not closed whose end + `close_after` is at or
    before `horizon`, the time every chain and feed has passed (None: some source has not started)."""
    if horizon is None:
        return []
    last = (horizon - close_after - genesis) // length - 1  # epoch n ends at genesis + (n + 1) * length
    return [n for n in range(0, last + 1) if n not in closed]


async def close_due(pool: asyncpg.Pool, config, metrics: Metrics | None) -> list[int]:
    """Close every epoch that is due (see `due_epochs`); returns those closed by this call."""
    settle = feed_settle_seconds(config)
    frontier = await epochs_store.confirmed_times(pool, [*node_chains(config), *settle])
    if not frontier:
        return []
    horizon = _horizon(frontier, settle)
    sched = schedule(config)
    due = due_epochs(sched.genesis, sched.length, config.epochs.close_after_seconds, horizon,
                     await epochs_store.closed_epochs(pool))  # fmt: skip
    closed = []
    for epoch in due:
        result = await close_epoch(pool, config, epoch)
        if result.already_closed:
            continue  # closed meanwhile (by hand)
        closed.append(epoch)
        log.info("epoch_closed", epoch=epoch, root=result.root, total=result.total, by="schedule")
        if result.validators_without_reward:
            log.warning("epoch_validators_without_reward", epoch=epoch,
                        validators=list(result.validators_without_reward))  # fmt: skip
        if metrics is not None:
            metrics.validators_without_reward.set(len(result.validators_without_reward))
    return closed


def _horizon(frontier: dict[str, tuple[int | None, int | None]], settle: dict[str, int]) -> int | None:
    """The time every source has passed: the least confirmed block time or settled feed clock."""
    if lagging_sources(0, frontier, settle):  # a source never indexed or read
        return None
    return min(time - settle.get(name, 0) for name, (_, time) in frontier.items())


async def auto_close(pool: asyncpg.Pool, config, metrics: Metrics | None, stop: asyncio.Event, interval: float) -> None:
    """Close due epochs every `interval` seconds until `stop`."""
    while not stop.is_set():
        try:
            await close_due(pool, config, metrics)
        except (IndexerError, asyncpg.PostgresError, OSError) as exc:
            log.warning("auto_close_failed", error=str(exc))
        await sleep_unless(stop, interval)


async def daily_points(
    pool: asyncpg.Pool, config, stop: asyncio.Event, *, retry: float, now: Callable[[], float] | None = None
) -> None:
    """Compute loyalty points through the last complete UTC day, once a day, until `stop`; a day the chains have
    not confirmed yet is tried again every `retry` seconds."""
    from indexer.points.runner import compute_points

    now = now or (lambda: clock.current().time())
    done = None
    while not stop.is_set():
        through = datetime.fromtimestamp(now(), UTC).date() - timedelta(days=1)
        if through != done and through >= config.loyalty.start:
            try:
                rows = await compute_points(pool, config, through)
                log.info("points_computed", through=through.isoformat(), rows=rows, by="schedule")
                done = through
            except (IndexerError, asyncpg.PostgresError, OSError) as exc:
                log.warning("points_failed", through=through.isoformat(), error=str(exc))
        await sleep_unless(stop, CHECK_SECONDS if through == done else retry)


async def periodic_verify(
    pool: asyncpg.Pool, config, metrics: Metrics, stop: asyncio.Event, *, now: Callable[[], float] | None = None
) -> None:
    """Run `verify` every `verify.interval_seconds` until `stop`; its result goes to the metrics."""
    from indexer.verify import verify

    now = now or (lambda: clock.current().time())
    interval = config.verify.interval_seconds
    contracts = [(c.name, k.name) for c in config.chains if c.kind == "evm" for k in c.contracts]
    while not stop.is_set():
        try:
            mismatches, readings = await verify(config, pool)
        except (IndexerError, asyncpg.PostgresError, OSError) as exc:
            log.warning("verify_failed", error=str(exc))
        else:
            metrics.verified(contracts, [(m.chain, m.contract) for m in mismatches], readings, now())
            if mismatches:
                log.error("verify_mismatches", mismatches=len(mismatches), readings=readings,
                          first=[f"{m.chain}/{m.contract} {m.what}" for m in mismatches[:5]])  # fmt: skip
            else:
                log.info("verified", readings=readings)
        await sleep_unless(stop, interval)


async def run_schedules(pool: asyncpg.Pool, config, metrics: Metrics | None, stop: asyncio.Event, *,
                        interval: float) -> None:  # fmt: skip
    """Every schedule the config turns on, until `stop` (`interval`: how often auto close looks)."""
    if metrics is not None:
        metrics.verify_interval.set(config.verify.interval_seconds)
    async with asyncio.TaskGroup() as group:
        if config.epochs.auto_close:
            group.create_task(auto_close(pool, config, metrics, stop, interval), name="auto-close")
        if config.loyalty is not None:
            group.create_task(daily_points(pool, config, stop, retry=max(interval, 1.0)), name="daily-points")
        if config.verify.interval_seconds > 0 and metrics is not None:
            group.create_task(periodic_verify(pool, config, metrics, stop), name="verify")

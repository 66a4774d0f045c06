"""The projector's thin IO shell: read confirmed events up to the frontier, fold, write what changed.

The frontier is the smallest confirmed block time over all configured chains: only
events at or before it are final everywhere, so folding them in canonical order
gives the same result whichever chain was indexed first. A reorg that reached below
what was already folded makes the projector rebuild everything from the event log.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from decimal import Decimal

import asyncpg
import structlog

from indexer.errors import ConfigError
from indexer.events import Event
from indexer.projector.fold import fold
from indexer.projector.state import EMPTY, ProjectionState, canonical_order
from indexer.store.projections import load_state, read_events, replace_all, save_changes, write_assets

BATCH = 200_000  # events read per chain per fold
log = structlog.get_logger(__name__)


def asset_weights(config) -> dict[str, tuple[int, Decimal]]:
    """Each asset's (decimals, weight) from the configured contracts and feeds; they must agree."""
    assets: dict[str, tuple[int, Decimal]] = {}
    for chain in config.chains:
        sources = getattr(chain, "contracts", None) or [chain]
        for source in sources:
            spec = (source.decimals, Decimal(source.weight))
            if assets.setdefault(source.asset, spec) != spec:
                raise ConfigError(
                    f"asset {source.asset} has decimals/weight {assets[source.asset]} in one place and {spec} in "
                    f"chain {chain.name}: one asset must be weighed the same everywhere"
                )
    return assets


def fold_limits(chains: list[tuple[str, int, int | None]]) -> tuple[dict[str, tuple[int, int]], int] | None:
    """From (chain, confirmed block, confirmed block time): per chain the (block, time) up to which to fold.

    Events before the frontier time (the smallest confirmed block time) are final on every
    chain. At exactly that time, a chain still confirmed only up to it may add more events,
    which sort after the chains named before it: so events at the frontier time are folded
    only from chains named at or before the first chain sitting at the frontier. None while
    a chain has no confirmed block yet.
    """
    if not chains or any(time is None for _, _, time in chains):
        return None
    until = min(time for _, _, time in chains if time is not None)
    first_open = min(name for name, _, time in chains if time == until)
    return {name: (block, until if name <= first_open else until - 1) for name, block, _ in chains}, until


class Projector:
    """Keeps the projection tables equal to the fold of the confirmed event log."""

    def __init__(self, pool: asyncpg.Pool, config, *, batch: int = BATCH) -> None:
        self.pool = pool
        self.chains = sorted(c.name for c in config.chains if c.kind in ("evm", "tron"))
        self.coverage = sorted(
            [
                *self.chains,
                *(f"{c.name}/{k.address}" for c in config.chains if c.kind in ("evm", "tron") for k in c.contracts),
            ]
        )
        self.assets = asset_weights(config)
        self.batch = batch
        self.state: ProjectionState | None = None
        self.log = log.bind(component="projector")

    async def step(self) -> int:
        """Fold every event that is confirmed on all chains and not folded yet; returns how many."""
        if self.state is None:
            covered = await self.pool.fetchval("SELECT coverage FROM projector_state")
            if covered is not None and sorted(covered) != self.coverage:
                self.log.warning("coverage_changed", projected=sorted(covered), configured=self.coverage)
                return await self.reproject()  # the projections must cover exactly the configured chains/contracts
            await write_assets(self.pool, self.assets)
            self.state = await load_state(self.pool)
        frontier = await self._frontier()
        if frontier is None:
            return 0
        confirmed, until = frontier
        reorged, reorgs_seen = await self._reorged_below_watermark()
        if reorged or await self._pool_named_since():
            return await self.reproject()
        folded = 0
        while True:
            events, complete = await self._next_events(confirmed, until)
            if not events:
                break
            state, changes = fold(self.state, events)
            async with self.pool.acquire() as conn, conn.transaction():
                await save_changes(conn, state, changes)
                await self._remember(conn, until, reorgs_seen)
            self.state = state
            folded += len(events)
            if complete:
                break
        return folded

    async def reproject(self) -> int:
        """Rebuild every projection from the event log; returns the events folded."""
        started = time.perf_counter()
        reorgs_seen = await self.pool.fetchval("SELECT coalesce(max(id), 0) FROM reorgs")
        frontier = await self._frontier()
        state, folded = EMPTY, 0
        if frontier is not None:
            confirmed, until = frontier
            self.state = EMPTY
            while True:
                events, complete = await self._next_events(confirmed, until)
                if not events:
                    break
                self.state, _ = fold(self.state, events)
                folded += len(events)
                if complete:
                    break
            state = self.state
        async with self.pool.acquire() as conn, conn.transaction():
            await write_assets(conn, self.assets)
            await replace_all(conn, state)
            await self._remember(conn, frontier[1] if frontier else None, reorgs_seen)
        self.state = state
        self.log.info("reprojected", events=folded, seconds=round(time.perf_counter() - started, 2))
        return folded

    async def _frontier(self) -> tuple[Mapping[str, tuple[int, int]], int] | None:
        """Per chain, (confirmed block, last block time safe to fold); and the common frontier time."""
        rows = await self.pool.fetch(
            "SELECT chain, confirmed_block, confirmed_time FROM v_chain_frontier WHERE chain = ANY($1::text[])",
            self.chains,
        )
        if len(rows) < len(self.chains):
            return None
        return fold_limits([(r["chain"], r["confirmed_block"], r["confirmed_time"]) for r in rows])

    async def _next_events(self, limits: Mapping[str, tuple[int, int]], until: int) -> tuple[list[Event], bool]:
        """The next events in canonical order, a prefix safe to fold; and whether nothing more is left."""
        assert self.state is not None
        per_chain: dict[str, list[Event]] = {}
        for chain, (block, last_time) in limits.items():
            mark = self.state.watermarks.get(chain)
            after = (mark[1], mark[2], mark[3]) if mark else (-1, -1, "")
            per_chain[chain] = await read_events(self.pool, chain, after, block, last_time, self.batch)
        truncated = [events[-1] for events in per_chain.values() if len(events) == self.batch]
        merged = sorted((e for events in per_chain.values() for e in events), key=canonical_order)
        if not truncated:
            return merged, True
        cut = min(canonical_order(e) for e in truncated)  # a chain cut short may hold earlier events further on
        return [e for e in merged if canonical_order(e) <= cut], False

    async def _reorged_below_watermark(self) -> tuple[bool, int]:
        """Whether a reorg since the last step removed events already folded; and the newest reorg id checked."""
        assert self.state is not None
        seen = await self.pool.fetchval("SELECT coalesce(max(reorgs_seen), 0) FROM projector_state")
        rows = await self.pool.fetch("SELECT id, chain, ancestor_block FROM reorgs WHERE id > $1 ORDER BY id", seen)
        for row in rows:
            mark = self.state.watermarks.get(row["chain"])
            if mark is not None and row["ancestor_block"] < mark[1]:
                self.log.warning("reorg_below_projection", chain=row["chain"], ancestor=row["ancestor_block"])
                return True, seen
        return False, rows[-1]["id"] if rows else seen

    async def _pool_named_since(self) -> bool:
        """Whether a pool folded under its hash (`hash:<keccak>`) has a name now: its rows must move to the name."""
        named = await self.pool.fetchval(
            """SELECT EXISTS (SELECT 1 FROM pool_amounts a JOIN pool_names n ON a.pool = 'hash:' || n.pool_hash)"""
        )
        if named:
            self.log.info("pool_named", reason="a string pool folded under its hash got its name: reprojecting")
        return named

    async def _remember(self, conn, frontier_time: int | None, reorgs_seen: int) -> None:
        await conn.execute(
            """INSERT INTO projector_state (id, reorgs_seen, frontier_time, coverage, updated_at)
               VALUES (true, $2, $1, $3, now())
               ON CONFLICT (id) DO UPDATE SET reorgs_seen = EXCLUDED.reorgs_seen, coverage = EXCLUDED.coverage,
                   frontier_time = coalesce(EXCLUDED.frontier_time, projector_state.frontier_time),
                   updated_at = now()""",
            frontier_time,
            reorgs_seen,
            self.coverage,
        )


async def run_projector(projector: Projector, stop: asyncio.Event, *, interval: float) -> None:
    """Project every `interval` seconds until `stop` is set."""
    while not stop.is_set():
        await projector.step()
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval)
        except TimeoutError:
            pass

"""The projector's thin IO shell: read confirmed events up to the frontier, fold, write what changed.

The frontier is the smallest confirmed block time over all configured chains: only
events at or before it are final everywhere, so folding them in canonical order
gives the same result whichever chain was indexed first. Social feeds touch only their
own asset and fold on their own clock. A reorg (or a late feed record) that reached
below what was already folded makes the projector rebuild everything from the event log.

Three things overlap in a step: Postgres reads the next events, a thread folds the
current ones into an open draft, and a task writes the last frozen draft's changes.
The reads and writes are `indexer.store.projections` (tables, events) and
`indexer.store.projector` (its state row, the frontier, the reorgs); the transactions are here.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import aclosing
from decimal import Decimal

import asyncpg
import structlog

from indexer.clock import sleep_unless
from indexer.errors import ConfigError, IndexerError
from indexer.events import Event
from indexer.ownership import Fence, owned
from indexer.projection import EMPTY, Checkpoint, ProjectionState
from indexer.projector.committed import CommittedEvents
from indexer.projector.draft import Draft
from indexer.projector.feed import read_ahead, read_merged
from indexer.projector.fold import apply
from indexer.store import projector as projector_store
from indexer.store.projections import (
    Stage,
    load_state,
    read_events,
    replace_all,
    stage_changes,
    write_assets,
    write_stages,
)

BATCH = 50_000  # events folded between two writes (one transaction each)
READ_BATCH = 10_000  # events read per chain at a time, folded while the next ones are read
WIDEST_BATCH = 4  # how many batches a draft may fold before its write while it rewrites more rows than events
REBUILD_BATCH = 50_000  # the same for `reproject`, which writes once at the end
log = structlog.get_logger(__name__)


def asset_weights(config) -> dict[str, tuple[int, Decimal]]:
    """Each asset's (decimals, weight) from the configured contracts and feeds; they must agree.

    A feed's points are an asset of their own: they fold on the feed's clock, apart from the chains.
    """
    on_chain = {k.asset for c in config.chains if c.kind in ("evm", "tron") for k in c.contracts}
    for feed in (c for c in config.chains if c.kind == "social"):
        if feed.asset in on_chain:
            raise ConfigError(
                f"chains.{feed.name}.asset: {feed.asset} is also a staked token's asset; social points need an "
                "asset of their own (default SOCIAL)"
            )
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

    def __init__(
        self,
        pool: asyncpg.Pool,
        config,
        *,
        batch: int = BATCH,
        read_batch: int = READ_BATCH,
        committed: CommittedEvents | None = None,
    ) -> None:
        """`committed`: the events this process's watchers committed, read from memory where they cover a read."""
        self.pool = pool
        self.committed = committed
        self.chains = sorted(c.name for c in config.chains if c.kind in ("evm", "tron"))
        # social feeds fold on their own clock, held back by their settle time for records published late
        self.feeds = {c.name: int(c.settle_seconds) for c in config.chains if c.kind == "social"}
        self.coverage = sorted(
            [
                *self.chains,
                *self.feeds,
                *(f"{c.name}/{k.address}" for c in config.chains if c.kind in ("evm", "tron") for k in c.contracts),
            ]
        )
        self.assets = asset_weights(config)
        self.batch, self.read_batch = batch, read_batch
        self.state: ProjectionState | None = None
        self.remembered: tuple[int | None, int] | None = None  # (frontier time, reorgs seen) last written
        self.fence: Fence | None = None  # while set, checked in every transaction that writes or loads the tables
        self.log = log.bind(component="projector")

    async def step(self) -> int:
        """Fold every event that is confirmed on all chains and not folded yet; returns how many."""
        if self.state is None:
            covered = await projector_store.coverage(self.pool)
            if covered is not None and sorted(covered) != self.coverage:
                self.log.warning("coverage_changed", projected=sorted(covered), configured=self.coverage)
                return await self.reproject()  # the projections must cover exactly the configured chains/contracts
            async with self._transaction() as conn:  # after the last writer's commit, if another process wrote
                await write_assets(conn, self.assets)
                self.state = await load_state(conn)
        limits, until = await self._frontier()
        if not limits:
            return 0
        reorged, reorgs_seen = await self._reorged_below_checkpoint()
        if reorged or await self._pool_named_since() or await self._reproject_requested():
            return await self.reproject()
        folded, unwritten, writing = 0, 0, None
        draft = Draft(self.state, self.feeds.keys())
        try:
            async with aclosing(read_ahead(self._read(limits, self.state, self.read_batch))) as batches:
                async for events in batches:
                    # in a thread: meanwhile the loop reads the next batch and the server applies the last write
                    await asyncio.to_thread(apply, draft, events)
                    folded += len(events)
                    unwritten += len(events)
                    if time_to_write(unwritten, draft.written(), self.batch):
                        writing = await self._write(draft, writing, reorgs_seen)
                        draft, unwritten = Draft(self.state, self.feeds.keys()), 0
            if unwritten:
                writing = await self._write(draft, writing, reorgs_seen)
            if writing is not None:
                await writing
            if (until, reorgs_seen) != self.remembered:
                async with self._transaction() as conn:
                    await self._remember(conn, until, reorgs_seen)  # folded up to the frontier, events or not
        except BaseException:
            if writing is not None and not writing.done():
                writing.cancel()
                await asyncio.gather(writing, return_exceptions=True)
            self.state, self.remembered = None, None  # what was written is unsure: load it from the tables next time
            raise
        return folded

    async def reproject(self) -> int:
        """Rebuild every projection from the event log; returns the events folded."""
        started = time.perf_counter()
        request = await projector_store.reproject_request(self.pool)  # answered by this rebuild, and older ones
        reorgs_seen = await projector_store.newest_reorg(self.pool)
        limits, until = await self._frontier()
        draft, folded = Draft(EMPTY, self.feeds.keys()), 0
        self.state = None
        async with aclosing(read_ahead(self._read(limits, EMPTY, REBUILD_BATCH))) as batches:
            async for events in batches:
                await asyncio.to_thread(apply, draft, events)  # in a thread: meanwhile the loop reads the next batch
                folded += len(events)
        state, _ = draft.freeze(changes=False)
        async with self._transaction() as conn:
            await write_assets(conn, self.assets)
            await replace_all(conn, state)
            await self._remember(conn, until, reorgs_seen)
            await projector_store.reproject_answered(conn, request)
        self.state = state
        self.log.info("reprojected", events=folded, seconds=round(time.perf_counter() - started, 2))
        return folded

    def _read(
        self, limits: Mapping[str, tuple[int, int]], state: ProjectionState, batch: int
    ) -> AsyncIterator[list[Event]]:
        """Batches of the events after the state's checkpoints up to the limits, in canonical order."""

        async def read(chain: str, after: Checkpoint | None, limit: int) -> list[Event]:
            if self.committed is not None:
                kept = self.committed.read(chain, after, *limits[chain], limit)
                if kept is not None:
                    return kept
            return await read_events(self.pool, chain, after, *limits[chain], limit)

        after = {chain: state.checkpoints.get(chain) for chain in limits}
        return read_merged(read, after, batch)

    async def _write(self, draft: Draft, previous: asyncio.Task | None, reorgs_seen: int) -> asyncio.Task:
        """Freeze the draft into the new state and write what changed in one transaction, in a task started once
        the previous write is done: the caller folds on while the server applies the rows."""
        before = self.state
        assert before is not None
        state, stages = await asyncio.to_thread(_freeze, draft, before)
        if previous is not None:
            await previous
        self.state, frontier_time = state, self._folded_until(state)

        async def write() -> None:
            async with self._transaction() as conn:
                await self._remember(conn, frontier_time, reorgs_seen)
                await write_stages(conn, stages)

        return asyncio.create_task(write())

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[asyncpg.Connection]:
        """A transaction on the projection tables; with a fence, it first checks this process still holds them."""
        async with self.pool.acquire() as conn, conn.transaction():
            if self.fence is not None:
                await self.fence.check(conn)
            yield conn

    async def _frontier(self) -> tuple[dict[str, tuple[int, int]], int | None]:
        """Per chain and feed, the (block, block time) up to which to fold; and the chains' common frontier time.

        The chains fold together up to their common frontier (none while one has no confirmed
        block yet); each feed up to its poll clock less its settle time, whatever the chains do.
        """
        found = await projector_store.chain_frontier(self.pool, [*self.chains, *self.feeds])
        if self.committed is not None:  # a kept chain folds up to what was handed over (see CommittedEvents)
            for chain in self.chains:
                reach = self.committed.reach(chain)
                if chain in found and reach is not None and reach[0] < found[chain][0]:
                    found[chain] = reach
        limits: dict[str, tuple[int, int]] = {}
        until = None
        if self.chains and all(chain in found for chain in self.chains):
            chains = fold_limits([(chain, *found[chain]) for chain in self.chains])
            if chains is not None:
                limits, until = dict(chains[0]), chains[1]
        for feed, settle in self.feeds.items():
            if feed in found and found[feed][1] is not None:
                limit = found[feed][1] - settle  # a feed's block numbers are its poll times
                limits[feed] = (limit, limit)
        return limits, until

    def _folded_until(self, state: ProjectionState) -> int | None:
        """The block time before which every chain's events are folded, as far as `state` got."""
        times = [state.checkpoints[chain][0] for chain in self.chains if chain in state.checkpoints]
        return max(times) - 1 if times else None  # events at the last one's time may go on in the next batch

    async def _reorged_below_checkpoint(self) -> tuple[bool, int]:
        """Whether a reorg since the last step removed events already folded; and the newest reorg id checked."""
        assert self.state is not None
        seen = await projector_store.reorgs_seen(self.pool)
        reorgs = await projector_store.reorgs_after(self.pool, seen)
        for reorg in reorgs:
            applied_to = self.state.checkpoints.get(reorg.chain)
            if applied_to is not None and reorg.ancestor_block < applied_to[2]:
                self.log.warning("reorg_below_projection", chain=reorg.chain, ancestor=reorg.ancestor_block)
                return True, seen
        return False, reorgs[-1].id if reorgs else seen

    async def _pool_named_since(self) -> bool:
        """Whether a pool folded under its hash (`hash:<keccak>`) has a name now: its rows must move to the name."""
        named = await projector_store.hashed_pool_named(self.pool)
        if named:
            self.log.info("pool_named", reason="a string pool folded under its hash got its name: reprojecting")
        return named

    async def _reproject_requested(self) -> bool:
        """Whether `indexer reproject` asked this projector to rebuild the projections (another process held it)."""
        requested = await projector_store.reproject_request(self.pool) is not None
        if requested:
            self.log.info("reproject_requested", reason="indexer reproject asked the projector to rebuild")
        return requested

    async def _remember(self, conn, frontier_time: int | None, reorgs_seen: int) -> None:
        """Record in the caller's transaction up to which block time the projections are folded."""
        self.remembered = (frontier_time, reorgs_seen)
        await projector_store.remember(conn, frontier_time, reorgs_seen, self.coverage)


def time_to_write(events: int, rows: int, batch: int) -> bool:
    """Whether to write a draft that folded `events` into `rows` keys: every `batch` events, or up to
    WIDEST_BATCH times later while the rows outnumber the events. Such a batch took from whole pools
    pro rata, and the next one would likely rewrite the same rows: fold on and write each row once."""
    return events >= batch and (rows <= events or events >= WIDEST_BATCH * batch)


def _freeze(draft: Draft, before: ProjectionState) -> tuple[ProjectionState, list[Stage]]:
    """The draft's new state and its changed rows, ready to copy (in a worker thread: the fold waits for it,
    so that the server starts on the rows as early as it can)."""
    state, changes = draft.freeze()
    return state, stage_changes(before, state, changes)


class ReprojectNotAnswered(IndexerError):
    """`indexer reproject` asked the process holding the projector to rebuild, and it has not in time."""


async def reproject_owned(pool: asyncpg.Pool, config, *, wait_seconds: float = 300.0, poll: float = 0.25) -> int | None:
    """`indexer reproject`: rebuild the projections here while holding the projector's lock (the events folded);
    while another process holds it (a running service), ask that one to rebuild them and wait until it has
    (None), at most `wait_seconds`. Two processes rebuilding at once would mix their rows."""
    asked = False
    give_up = time.monotonic() + wait_seconds
    while True:
        async with owned(pool, "projector", asyncio.Event(), wait=False, retry_seconds=0) as mine:
            if mine is not None:  # free (again): rebuild here, answering a request left for the last holder too
                projector = Projector(pool, config)
                projector.fence = mine
                return await projector.reproject()
        if not asked:
            await projector_store.request_reproject(pool)
            asked = True
            log.info("reproject_requested", detail="another process holds the projector: it rebuilds them")
        elif await projector_store.reproject_request(pool) is None:
            return None
        if time.monotonic() >= give_up:
            raise ReprojectNotAnswered(
                f"reproject: asked the process holding the projector to rebuild the projections; it has not within "
                f"{wait_seconds:g} s (it does at its next step once every chain has a confirmed block; a release "
                "older than this one does not answer). The request stays: run again to wait on, or stop that process"
            )
        await asyncio.sleep(poll)


async def run_projector(projector: Projector, stop: asyncio.Event, *, interval: float) -> None:
    """Project every `interval` seconds until `stop` is set."""
    while not stop.is_set():
        await projector.step()
        await sleep_unless(stop, interval)

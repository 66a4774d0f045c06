"""The service: one watcher task per chain under one TaskGroup, signals handled here only."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator

import asyncpg
import structlog

from indexer.chains.evm import EvmSource
from indexer.chains.rpc import RpcClient
from indexer.chains.social import SocialSource
from indexer.decode.calldata import names_by_hash
from indexer.projector.runner import Projector, run_projector
from indexer.runtime import tune_gc
from indexer.store.cursors import load_pool_names
from indexer.store.database import apply_schema, create_pool, embedded_dsn
from indexer.watcher import Watcher

log = structlog.get_logger(__name__)


@contextlib.asynccontextmanager
async def open_database(config) -> AsyncIterator[asyncpg.Pool]:
    """The configured database (or the embedded one), schema applied."""
    dsn = config.database.dsn or embedded_dsn()
    pool = await create_pool(dsn, max_size=max(4, 2 * len(config.chains)))
    try:
        await apply_schema(pool)
        yield pool
    finally:
        await pool.close()


def build_source(chain, known_pools: dict[str, str]) -> EvmSource:
    """The source for one configured chain."""
    rpc = RpcClient(chain.name, chain.rpc, timeout=chain.request_timeout_seconds)
    return EvmSource(chain, rpc, known_pools)


async def index_chains(config, pool: asyncpg.Pool, stop: asyncio.Event, *, once: bool, project: bool = True) -> None:
    """Run every chain's watcher and the projector until done (`once`) or until `stop` is set."""
    known = await load_pool_names(pool) | names_by_hash(v.id for v in config.validators)
    sources = [build_source(chain, known) for chain in config.chains if chain.kind == "evm"]
    socials = [SocialSource(chain) for chain in config.chains if chain.kind == "social"]
    projector = Projector(pool, config) if project else None
    try:
        async with asyncio.TaskGroup() as group:
            for source in sources:
                watcher = Watcher(source, source.chain, pool)
                group.create_task(watcher.run(stop, once=once), name=f"watch:{source.name}")
            for social in socials:
                group.create_task(social.run(pool, stop, once=once), name=f"social:{social.name}")
            if projector is not None and not once:
                interval = min((c.poll_interval_seconds for c in config.chains), default=1.0)
                group.create_task(run_projector(projector, stop, interval=interval), name="projector")
        if projector is not None and once:
            await projector.step()
    finally:
        for source in sources:
            await source.close()
        for social in socials:
            await social.close()


async def run(config, *, once: bool) -> None:
    """The `run` command: index (and follow, unless `once`) every configured chain."""
    tune_gc()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, _request_stop, stop, sig)
    try:
        async with open_database(config) as pool:
            await index_chains(config, pool, stop, once=once)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _request_stop(stop: asyncio.Event, sig: signal.Signals) -> None:
    log.info("stopping", signal=sig.name)
    stop.set()

"""The service: one watcher task per chain under one TaskGroup, signals handled here only."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import asyncpg
import structlog
from prometheus_client import CollectorRegistry

from indexer.chains.evm import EvmSource
from indexer.chains.rpc import RpcClient
from indexer.chains.variants import check_variants
from indexer.clock import sleep_unless
from indexer.decode.calldata import names_by_hash
from indexer.errors import IndexerError
from indexer.metrics import Metrics
from indexer.ownership import OwnershipLost, owned, process_name
from indexer.projector.committed import CommittedEvents
from indexer.projector.runner import Projector, run_projector
from indexer.runtime import tune_gc
from indexer.store.cursors import load_pool_names, record_health, record_owner
from indexer.store.database import apply_schema, create_pool, create_read_pool, embedded_dsn
from indexer.watcher import Watcher

if TYPE_CHECKING:
    from indexer.chains.tron import TronSource

log = structlog.get_logger(__name__)
NODE_CHAINS = ("evm", "tron")  # chains with blocks, followed by a Watcher
ONCE_PROJECT_WAIT_SECONDS = 0.25  # `run --once`: the projector's pause between steps while the watchers write
ONCE_PROJECTOR_WAIT_SECONDS = 10.0  # `run --once`: how long to wait for another process's projector lock


@contextlib.asynccontextmanager
async def open_database(config) -> AsyncIterator[asyncpg.Pool]:
    """The configured database (or the embedded one), schema applied."""
    dsn = config.database.dsn or embedded_dsn()
    pool = await create_pool(dsn, max_size=2 * len(config.chains) + 4)  # a lock connection per chain, and work
    try:
        await apply_schema(pool)
        yield pool
    finally:
        await pool.close()


def build_source(chain, known_pools: dict[str, str], metrics: Metrics | None = None) -> EvmSource | TronSource:
    """The source for one configured chain (EVM or TRON)."""
    if chain.kind == "tron":  # tronpy loads only for a TRON chain: `run` starts sooner without one
        from indexer.chains.tron import TronSource

        return TronSource(chain, pool_names=known_pools)
    observer = metrics.rpc_observer(chain.name) if metrics is not None else None
    rpc = RpcClient(chain.name, chain.rpc, timeout=chain.request_timeout_seconds, observer=observer,
                    max_response_bytes=chain.max_response_bytes)  # fmt: skip
    return EvmSource(chain, rpc, known_pools)


def build_feeds(config, pool: asyncpg.Pool, metrics: Metrics | None = None) -> list:
    """The sources of the configured social feeds (their modules load only when there is one)."""
    chains = [chain for chain in config.chains if chain.kind == "social"]
    if not chains:
        return []
    from indexer.chains.social import SocialSource
    from indexer.store.feeds import stored_records

    return [
        SocialSource(chain, load_stored=functools.partial(stored_records, pool, chain.name), metrics=metrics)
        for chain in chains
    ]


async def index_chains(
    config, pool: asyncpg.Pool, stop: asyncio.Event, *, once: bool, project: bool = True, metrics: Metrics | None = None
) -> None:
    """Run every chain's watcher and the projector until done (`once`) or until `stop` is set."""
    known = await load_pool_names(pool) | names_by_hash(v.id for v in config.validators)
    sources = [build_source(chain, known, metrics) for chain in config.chains if chain.kind in NODE_CHAINS]
    feeds = build_feeds(config, pool, metrics)
    committed = CommittedEvents() if project else None  # the watchers hand their batches to the projector
    projector = Projector(pool, config, committed=committed) if project else None
    failed: list[IndexerError] = []
    try:
        async with asyncio.TaskGroup() as group:
            watchers = [
                group.create_task(
                    _owned_chain(_watcher(source, pool, metrics, committed), pool, stop, once, failed),
                    name=f"watch:{source.name}",
                )
                for source in [*sources, *feeds]
            ]
            if projector is not None and not once:
                interval = min((c.poll_interval_seconds for c in config.chains), default=1.0)
                group.create_task(_owned_projector(projector, pool, stop, interval, config, metrics), name="projector")
            elif projector is not None:
                group.create_task(_project_while(projector, pool, stop, watchers), name="projector")
        if failed:
            raise failed[0]
    finally:
        for source in [*sources, *feeds]:
            await source.close()


def _watcher(source, pool: asyncpg.Pool, metrics: Metrics | None, committed: CommittedEvents | None) -> Watcher:
    """A chain's watcher; a node chain's hands what it commits to this process's projector (a feed's log can
    change below what it committed: records published late)."""
    kept = committed if source.chain.kind in NODE_CHAINS else None
    return Watcher(source, source.chain, pool, metrics=metrics, committed=kept)


async def _project_while(
    projector: Projector, pool: asyncpg.Pool, stop: asyncio.Event, watchers: list[asyncio.Task]
) -> None:
    """`run --once`: fold what the watchers commit while they index, then the rest once they are done.

    The frontier says what each step may fold, whatever the watchers are doing, so folding while they
    write gives the same tables as folding after them. Only in the process holding the projector's lock;
    when another holds it, that one may have made its last step before these watchers committed (two
    `run --once` at once), so once they are done this one folds their events if the lock comes free
    within ONCE_PROJECTOR_WAIT_SECONDS (a `run` service holding it for good folds them itself).
    """
    async with owned(pool, "projector", stop, wait=False, retry_seconds=0) as mine:
        if mine:
            projector.fence = mine
            while not all(watcher.done() for watcher in watchers):
                await projector.step()
                await asyncio.wait(watchers, timeout=ONCE_PROJECT_WAIT_SECONDS)  # let a few batches come in
            await projector.step()  # what the last batches committed
            return
    if watchers:
        await asyncio.wait(watchers)
    give_up = asyncio.get_running_loop().time() + ONCE_PROJECTOR_WAIT_SECONDS
    while not stop.is_set():
        async with owned(pool, "projector", stop, wait=False, retry_seconds=0) as mine:
            if mine:
                projector.fence = mine
                await projector.step()
                return
        if asyncio.get_running_loop().time() >= give_up:
            log.info("projector_busy", detail="another process holds the projector; it folds these events")
            return
        await sleep_unless(stop, ONCE_PROJECT_WAIT_SECONDS)


async def _owned_projector(
    projector: Projector, pool: asyncpg.Pool, stop: asyncio.Event, interval: float, config, metrics: Metrics | None
) -> None:
    """Project, and run the schedules (auto close, daily points, verify), in exactly one process: the one
    holding the projector's lock."""
    from indexer.schedules import run_schedules  # only the process holding the projector runs them

    async with owned(pool, "projector", stop, wait=True, retry_seconds=interval) as mine:
        if mine:
            log.info("projector_owned", owner=process_name())
            projector.fence = mine
            async with asyncio.TaskGroup() as group:
                group.create_task(run_projector(projector, stop, interval=interval), name="project")
                group.create_task(run_schedules(pool, config, metrics, stop, interval=interval), name="schedules")


async def _owned_chain(watcher: Watcher, pool: asyncpg.Pool, stop: asyncio.Event, once: bool, failed: list) -> None:
    """Run one chain while this process holds its lock (waiting for it in `run`; skipping it with `--once`)."""
    chain = watcher.chain.name
    async with owned(
        pool, f"chain:{chain}", stop, wait=not once, retry_seconds=watcher.chain.poll_interval_seconds
    ) as mine:
        if not mine:
            if not stop.is_set():
                log.info("chain_indexed_elsewhere", chain=chain)
            return
        await record_owner(pool, chain, process_name())
        log.info("chain_owned", chain=chain, owner=process_name())
        watcher.fence = mine
        await _isolated(watcher, pool, stop, once, failed)


async def _isolated(watcher: Watcher, pool: asyncpg.Pool, stop: asyncio.Event, once: bool, failed: list) -> None:
    """Run one chain; when it fails for good, record it and let the other chains go on (`run`), or stop (`--once`).
    A lost lock stops the process instead: the chain's health is its new owner's to tell."""
    try:
        await watcher.run(stop, once=once)
    except OwnershipLost:
        raise  # another process may index the chain now: this one stops (its supervisor restarts it)
    except IndexerError as exc:
        await record_health(pool, watcher.chain.name, "failed", str(exc))
        if once:
            raise
        log.error("chain_stopped", chain=watcher.chain.name, error=str(exc))
        failed.append(exc)  # the process exits non-zero when it stops


async def run(config, *, once: bool) -> None:
    """The `run` command: index (and follow, unless `once`) every configured chain."""
    tune_gc()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, _request_stop, stop, sig)
    metrics = Metrics(CollectorRegistry())
    try:
        await check_variants(config.chains)  # a misconfigured contract stops the start before anything is written
        async with open_database(config) as pool:
            server = read_pool = None
            if not once:  # `run --once` is for scripts: no port to clash on (nor the API's imports to load)
                from indexer.http import HttpServer

                watched = [c for c in config.chains if c.kind in NODE_CHAINS]
                # The /v1 API reads as indexer_reader through its own small pool (a replica's, when read_dsn is set).
                read_pool = await create_read_pool(config.database.read_dsn or config.database.dsn or embedded_dsn())
                server = HttpServer(
                    metrics, pool, watched, projected_chains=[c.name for c in watched], read_pool=read_pool
                )
                await server.start(config.http.host, config.http.port)
            try:
                await index_chains(config, pool, stop, once=once, metrics=metrics)
            finally:
                if server is not None:
                    await server.stop()
                if read_pool is not None:
                    await read_pool.close()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _request_stop(stop: asyncio.Event, sig: signal.Signals) -> None:
    log.info("stopping", signal=sig.name)
    stop.set()

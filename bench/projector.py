"""Projector benchmark: reproject and incremental projection speed against a naive baseline.

Run by hand: `.venv/bin/python bench/projector.py --events 1000000`. The event log is
synthesized (a small model of the contracts: stakes with their mints, LST transfers,
unstakes with their burns, over two chains, thousands of stakers and fifty pools) and
written through the store, because making a million events on anvil takes too long here.
Reprojects the first nine tenths, then prints events/s for one incremental step over the
last tenth (with where its time went: the fold, freezing and staging, COPY, the write), for
`reproject` of the whole log (checking that it gives the same tables), and for a naive
baseline (one UPDATE + commit per event) in the same run.

One run per workload (`--over-unstakes`): none, 0.1% and 1% of unstakes made by holders of
transferred LST beyond their own position there. Each such unstake takes the excess pro rata
from every other position in the pool, and those positions, now below what their stakers
staked, make later full unstakes exceed them too: a tenth of the unstakes cascade at 1%,
and nearly every position changes in every batch. The synthetic streams are dropped and
the database vacuumed before timing, so that neither the generator's million Python
objects nor the bulk load's pending autovacuum lands in the projector's numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.backfill import Stages, fresh_database  # noqa: E402
from indexer.batch import Batch, BlockRef  # noqa: E402
from indexer.config import parse_config  # noqa: E402
from indexer.events import Event, EventType  # noqa: E402
from indexer.logs import configure_logging  # noqa: E402
from indexer.projector.committed import CommittedEvents  # noqa: E402
from indexer.projector.runner import BATCH, READ_BATCH, Projector  # noqa: E402
from indexer.runtime import tune_gc  # noqa: E402
from indexer.store.database import apply_schema, create_pool  # noqa: E402
from indexer.store.events import write_batch  # noqa: E402
from indexer.store.projections import TABLES  # noqa: E402

ZERO = "0x" + "00" * 20
CONTRACTS = {"eth": ("0x" + "e1" * 20, "native", "ETH"), "bsc": ("0x" + "b5" * 20, "erc20", "TKN")}


def synthesize(count: int, seed: int = 1, over_unstakes: float = 0.01) -> tuple[dict[str, list[Event]], float]:
    """Valid event streams per chain (every unstake within its pool, every transfer within a balance), and the
    share of unstakes that took more than the holder's own position in that pool."""
    rng = random.Random(seed)
    stakers = [f"0x{i:040x}" for i in range(1, 4001)]
    pools = [f"0x{0xA000 + i:040x}" for i in range(50)]
    streams: dict[str, list[Event]] = {name: [] for name in CONTRACTS}
    state = {name: ({}, {}, {}) for name in CONTRACTS}  # chain -> (balances, pool totals, own stakes)
    staked_keys = {name: [] for name in CONTRACTS}  # keys ever staked, for O(1) sampling (stale ones skipped)
    holders = {name: [] for name in CONTRACTS}  # holders ever funded, likewise
    made = unstakes = over = 0
    block = {name: 0 for name in CONTRACTS}
    while made < count:
        chain = rng.choice(list(CONTRACTS))
        contract, kind, asset = CONTRACTS[chain]
        balances, totals, stakes = state[chain]
        block[chain] += 1
        number, when = block[chain], 1_767_225_600 + block[chain] * 12
        tx = f"0x{made:064x}"
        logs: list[tuple] = []
        roll, who = rng.random(), rng.choice(stakers)
        if roll < 0.5 or not balances:
            amount, pool = rng.randint(10**15, 10**19), rng.choice(pools)
            logs = [(EventType.TRANSFER, ZERO, who, None, amount), (EventType.STAKE, who, None, pool, amount)]
            balances[who] = balances.get(who, 0) + amount
            totals[pool] = totals.get(pool, 0) + amount
            stakes[(who, pool)] = stakes.get((who, pool), 0) + amount
            staked_keys[chain].append((who, pool))
            holders[chain].append(who)
        elif roll < 0.75:
            sender = rng.choice(holders[chain])
            if not balances.get(sender):
                continue
            amount = rng.randint(1, balances[sender])
            logs = [(EventType.TRANSFER, sender, who, None, amount)]
            balances[sender] -= amount
            balances[who] = balances.get(who, 0) + amount
            holders[chain].append(who)
        elif rng.random() >= over_unstakes:  # a staker unstakes from its own position
            sampled = (rng.choice(staked_keys[chain]) for _ in range(16))
            live = [k for k in sampled if stakes.get(k) and balances.get(k[0])]
            if not live:  # mostly stale keys: keep only live ones
                staked_keys[chain] = [k for k in dict.fromkeys(staked_keys[chain]) if stakes.get(k)]
                continue
            holder, pool = live[0]
            amount = min(rng.randint(1, stakes[(holder, pool)]), balances[holder], totals[pool])
        else:  # a holder of transferred LST unstakes more than it staked there
            holder, pool = rng.choice(holders[chain]), rng.choice(pools)
            if not balances.get(holder) or not totals.get(pool):
                continue
            amount = min(rng.randint(1, balances[holder]), totals[pool])
        if not logs:  # an unstake
            if amount == 0:
                continue
            unstakes += 1
            over += stakes.get((holder, pool), 0) < amount
            logs = [(EventType.TRANSFER, holder, ZERO, None, amount), (EventType.UNSTAKE, holder, None, pool, amount)]
            balances[holder] -= amount
            totals[pool] -= amount
            left = stakes.get((holder, pool), 0) - amount
            if left > 0:
                stakes[(holder, pool)] = left
            else:
                stakes.pop((holder, pool), None)
        for index, (kind_, staker, counterparty, pool, amount) in enumerate(logs):
            streams[chain].append(Event(chain, 1, contract, kind, 1, number, f"0x{number:064x}", when, tx, index,
                                        kind_, asset, staker, counterparty, pool, None, amount))  # fmt: skip
        for holder in (who, *(log[1] for log in logs)):
            if balances.get(holder) == 0:
                del balances[holder]
        made += len(logs)
    return streams, over / max(unstakes, 1)


async def store(pool, streams: dict[str, list[Event]], upto: float, kept: CommittedEvents | None = None) -> None:
    """Write the first `upto` share of each chain's stream, with the chain confirmed to its last block; each batch
    handed to `kept` once written, as `run`'s watchers hand theirs to its projector."""
    for chain, events in streams.items():
        cursor = await pool.fetchval("SELECT block_number FROM chain_cursors WHERE chain = $1", chain)
        start = 0 if cursor is None else next(i for i, e in enumerate(events) if e.block_number > cursor)
        end = int(len(events) * upto)
        while end < len(events) and events[end].block_number == events[end - 1].block_number:
            end += 1
        for i in range(start, end, 20_000):
            part = events[i : min(i + 20_000, end)]
            j = i + len(part)
            while j < end and events[j].block_number == part[-1].block_number:
                part.append(events[j])
                j += 1
            if not part:
                continue
            last = part[-1]
            batch = Batch(
                chain,
                part[0].block_number if cursor is None and i == 0 else (cursor or 0) + 1,
                BlockRef(last.block_number, last.block_hash, None, last.block_time),
                tuple(part),
            )
            async with pool.acquire() as conn:
                new = await write_batch(conn, batch, chain_id=1, head_block=last.block_number,
                                        confirmed_block=last.block_number, keep_blocks=64)  # fmt: skip
            if kept is not None:
                kept.committed(batch, new)
            cursor = last.block_number
            if j >= end:
                break


def timed_stages() -> Stages:
    """The projector's stages timed from now until `restore`: the fold (in its thread), freezing the draft and
    staging its changed rows (in a thread), the COPY of the staged rows, and the whole write transaction."""
    import indexer.projector.runner as runner
    import indexer.store.projections as projections

    stages = Stages()
    stages.wrap(runner, "apply", "fold")
    stages.wrap(runner, "_freeze", "freeze and stage")
    stages.wrap(projections, "_copy", "COPY")
    stages.wrap(runner, "write_stages", "write (COPY and applying the rows)")
    return stages


async def saved(pool, action: str) -> None:
    """Save the projection tables aside (`action` "save") or put the saved rows back ("restore")."""
    async with pool.acquire() as conn, conn.transaction():
        for table in [*(t.name for t in TABLES), "projector_state"]:
            if action == "save":
                await conn.execute(f"DROP TABLE IF EXISTS saved_{table}; CREATE TABLE saved_{table} AS TABLE {table}")
            else:
                await conn.execute(f"TRUNCATE {table}; INSERT INTO {table} TABLE saved_{table}")


async def checksums(pool) -> dict[str, str]:
    """A digest of every projection table's rows, to compare two projections of the same log."""
    digests = {}
    for table, row in (("validator_amounts", "t"), ("pool_amounts", "t"), ("positions", "t"), ("lst_balances", "t"),
                       ("projector_cursor", "(chain, block_time, block_number, log_index, tx_hash)")):  # fmt: skip
        digests[table] = await pool.fetchval(
            f"SELECT md5(coalesce(string_agg(r, ',' ORDER BY r), '')) FROM (SELECT {row}::text AS r FROM {table} t) s"
        )
    return digests


async def naive(pool, events: list[Event]) -> float:
    """One UPDATE (upsert) per event, each in its own transaction."""
    async with pool.acquire() as conn:
        await conn.execute("CREATE TEMP TABLE naive_pools (pool text PRIMARY KEY, amount numeric(78,0))")
        await conn.execute("CREATE TEMP TABLE naive_balances (holder text PRIMARY KEY, amount numeric(78,0))")
        started = time.perf_counter()
        for e in events:
            async with conn.transaction():
                if e.event_type is EventType.TRANSFER:
                    for holder, delta in ((e.staker, -e.amount), (e.counterparty, e.amount)):
                        await conn.execute(
                            """INSERT INTO naive_balances VALUES ($1, $2) ON CONFLICT (holder)
                                              DO UPDATE SET amount = naive_balances.amount + $2""",
                            holder,
                            delta,
                        )
                else:
                    delta = e.amount if e.event_type is EventType.STAKE else -e.amount
                    await conn.execute(
                        """INSERT INTO naive_pools VALUES ($1, $2) ON CONFLICT (pool)
                                          DO UPDATE SET amount = naive_pools.amount + $2""",
                        e.pool,
                        delta,
                    )
        return len(events) / (time.perf_counter() - started)


async def main(args) -> None:
    configure_logging("warning")
    tune_gc()
    config = parse_config({"chains": [
        {"name": name, "kind": "evm", "chain_id": 1, "rpc": ["http://127.0.0.1:1"],
         "contracts": [{"name": name, "kind": kind, "version": 1, "address": address, "start_block": 0,
                        "asset": asset}]}
        for name, (address, kind, asset) in CONTRACTS.items()]})  # fmt: skip
    naive_rate = None
    for share in args.over_unstakes:
        print(f"--- workload: {share:.1%} of unstakes by holders of transferred LST, beyond their own position")
        naive_rate = await workload(args, config, share, naive_rate)


async def workload(args, config, share: float, naive_rate: float | None) -> float:
    """Reproject 90% of a synthetic log, then fold the last 10% in one incremental step; returns the naive rate."""
    started = time.perf_counter()
    streams, over = synthesize(args.events, over_unstakes=share)
    total = sum(len(s) for s in streams.values())
    print(
        f"synthesized {total:,} events in {time.perf_counter() - started:.1f} s; "
        f"{over:.1%} of unstakes took more than the holder's own position (the excess: off the pool's others)"
    )
    dsn = await fresh_database(args.server)
    pool = await create_pool(dsn)
    await apply_schema(pool)
    started = time.perf_counter()
    await store(pool, streams, 0.9)
    print(f"stored 90% through the event log writer in {time.perf_counter() - started:.1f} s")
    sample = (
        []
        if naive_rate is not None
        else sorted(  # the naive baseline runs once, on the first workload
            (e for s in streams.values() for e in s), key=lambda e: (e.block_time, e.chain)
        )[: args.naive]
    )
    stored = {r["chain"]: r["block_number"] for r in await pool.fetch("SELECT chain, block_number FROM chain_cursors")}
    tail = {chain: [e for e in events if e.block_number > stored[chain]] for chain, events in streams.items()}
    del streams  # a million synthetic events the indexer would never hold: out of the collector's way
    gc.collect()

    projector = Projector(pool, config, batch=args.batch, read_batch=args.read_batch)
    started = time.perf_counter()
    first = await projector.reproject()
    print(f"reproject of the first 90% (to start from): {first:,} events in {time.perf_counter() - started:.1f} s")
    kept = CommittedEvents()  # what `run`'s watchers would have handed its projector
    await store(pool, tail, 1.0, kept)
    del tail
    gc.collect()
    await saved(pool, "save")
    await pool.execute("VACUUM ANALYZE")  # settle: the reproject and the last events were bulk-written just now
    before = projector.state
    stages = timed_stages()
    started = time.perf_counter()
    incremental = await projector.step()
    incremental_seconds = time.perf_counter() - started
    stages.restore()
    positions = await pool.fetchval("SELECT count(*) FROM positions")
    projected = await checksums(pool)

    await saved(pool, "restore")  # the same step again, in `run`: the events as handed over where they cover a read
    await pool.execute("VACUUM ANALYZE")
    handed = Projector(pool, config, batch=args.batch, read_batch=args.read_batch, committed=kept)
    handed.state = before
    started = time.perf_counter()
    assert await handed.step() == incremental
    handed_seconds = time.perf_counter() - started
    same_handed = await checksums(pool) == projected
    started = time.perf_counter()
    folded = await Projector(pool, config).reproject()
    reproject_seconds = time.perf_counter() - started
    same = await checksums(pool) == projected
    if naive_rate is None:
        naive_rate = await naive(pool, sample) if sample else 0.0
    await pool.close()

    print(
        f"incremental: {incremental:,} events in {incremental_seconds:.1f} s = "
        f"{incremental / incremental_seconds:,.0f} events/s (target >= 50,000; {positions:,} positions held)"
    )
    print(
        "  where its time went (busy seconds; the fold overlaps the reads, the write the next fold): "
        + ", ".join(f"{stage} {seconds:.2f} s" for stage, seconds in stages.seconds.items())
    )
    print(
        f"  the same step with the events handed over as in `run` (up to {kept.limit:,} kept): "
        f"{handed_seconds:.1f} s = {incremental / handed_seconds:,.0f} events/s; "
        f"tables equal: {'yes' if same_handed else 'NO'}"
    )
    print(
        f"reproject:   {folded:,} events in {reproject_seconds:.1f} s = {folded / reproject_seconds:,.0f} events/s"
        f" (target: 1,000,000 in < 60 s); its tables equal the incremental ones: {'yes' if same else 'NO'}"
    )
    if naive_rate:
        print(
            f"naive (one UPDATE + commit per event, {min(args.naive, total):,} events): {naive_rate:,.0f} events/s; "
            f"reproject {folded / reproject_seconds / naive_rate:.0f}x, "
            f"incremental {incremental / incremental_seconds / naive_rate:.0f}x"
        )
    else:
        print("naive baseline skipped (--naive 0)")
    return naive_rate


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument(
        "--over-unstakes",
        type=float,
        nargs="+",
        default=[0.0, 0.001, 0.01],
        help="workloads: shares of unstakes by LST holders beyond their own position in that pool (pro rata)",
    )
    parser.add_argument("--batch", type=int, default=BATCH, help="events folded between two writes")
    parser.add_argument("--read-batch", type=int, default=READ_BATCH, help="events read per chain at a time")
    parser.add_argument("--naive", type=int, default=5_000, help="events for the naive baseline (0: skip it)")
    parser.add_argument(
        "--server", default=os.environ.get("INDEXER_BENCH_SERVER", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    arguments = parser.parse_args()
    if arguments.naive < 0 or arguments.events <= 0:
        parser.error("--events must be positive and --naive not negative")
    asyncio.run(main(arguments))

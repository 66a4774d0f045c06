"""Positions benchmark: writing changed positions as bucket rows against a row per position, in one run.

Run by hand: `.venv/bin/python bench/positions.py [--stakers 100000]`. One pool of `--stakers`
positions is written by the projector's own code (`stage_changes` + `write_stages`) into
`position_buckets`, and the same rows into a baseline table laid out as `positions` was
before migration 0006 (a row per position, the same key, fillfactor 50, the same
COPY-then-UPDATE path). Then, each timed as the median of `--rounds`:
  1. sparse: 100 positions of the pool change (live following: a few events a step),
  2. whole pool: every position changes (a pro rata, SPEC 4),
printing milliseconds per write (of which staging the rows in Python) and the ratio to the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
from pathlib import Path
from types import MappingProxyType as Frozen

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.backfill import fresh_database  # noqa: E402
from indexer.logs import configure_logging  # noqa: E402
from indexer.projection import Changes, ProjectionState  # noqa: E402
from indexer.store.database import apply_schema, create_pool  # noqa: E402
from indexer.store.projections import copy_line, replace_all, stage_changes, write_stages  # noqa: E402

POOL = ("0x" + "ab" * 20, "ETH")
BASELINE = """CREATE TABLE baseline_positions (staker text NOT NULL, validator text NOT NULL, asset text NOT NULL,
                                              amount numeric(78, 0) NOT NULL, PRIMARY KEY (validator, asset, staker))
              WITH (fillfactor = 50);
              CREATE TEMP TABLE stage_baseline (staker text, validator text, asset text, amount numeric)
              ON COMMIT DELETE ROWS"""


def state_of(held: dict[str, int]) -> ProjectionState:
    return ProjectionState(validators=Frozen({POOL: sum(held.values())}), positions=Frozen({POOL: Frozen(held)}))


async def bucket_write(pool, before: ProjectionState, after: ProjectionState, changed: list[str]) -> tuple[float, ...]:
    """The projector's write of the changed positions: seconds staging them in Python, and in all."""
    started = time.perf_counter()
    changes = Changes(validators=frozenset({POOL}), positions=frozenset((s, *POOL) for s in changed))
    stages = stage_changes(before, after, changes)
    staged = time.perf_counter()
    async with pool.acquire() as conn, conn.transaction():
        await write_stages(conn, stages)
    return staged - started, time.perf_counter() - started


async def baseline_write(conn, after: dict[str, int], changed: list[str]) -> tuple[float, float]:
    """The same positions as rows: COPY text, then UPDATE ... FROM the stage, as the projector did before 0006."""
    started = time.perf_counter()
    data = ("\n".join(copy_line((s, *POOL, after[s])) for s in changed) + "\n").encode()
    staged = time.perf_counter()
    async with conn.transaction():
        await conn.copy_to_table("stage_baseline", source=memoryview(data), format="text")
        await conn.execute("""UPDATE baseline_positions t SET amount = s.amount FROM stage_baseline s
                               WHERE t.validator = s.validator AND t.asset = s.asset AND t.staker = s.staker""")
    return staged - started, time.perf_counter() - started


async def main(args) -> None:
    configure_logging("warning")
    dsn = await fresh_database(args.server)
    pool = await create_pool(dsn)
    await apply_schema(pool)
    rng = random.Random(5)
    stakers = [f"0x{i:040x}" for i in range(1, args.stakers + 1)]
    held = {s: rng.randint(10**15, 10**19) for s in stakers}
    state = state_of(held)
    async with pool.acquire() as conn:
        async with conn.transaction():
            await replace_all(conn, state)
        await conn.execute(BASELINE)
        await conn.copy_records_to_table("baseline_positions", records=[(s, *POOL, n) for s, n in held.items()])
        await conn.execute("VACUUM ANALYZE")
        print(f"one pool of {args.stakers:,} positions; median of {args.rounds} writes each")
        for name, count in (("sparse: 100 positions changed", 100), ("whole pool: every position changed", None)):
            buckets, rows = [], []
            for _ in range(args.rounds):
                changed = stakers if count is None else rng.sample(stakers, count)
                now = dict(state.positions[POOL])
                for s in changed:
                    now[s] -= 1
                after = state_of(now)
                buckets.append(await bucket_write(pool, state, after, changed))
                rows.append(await baseline_write(conn, now, changed))
                state = after
            medians = ([statistics.median(t) * 1e3 for t in zip(*runs, strict=True)] for runs in (buckets, rows))
            (bp, b), (rp, r) = medians
            print(
                f"  {name:<36} bucket rows {b:7.1f} ms ({bp:5.1f} in Python)   a row per position {r:7.1f} ms "
                f"({rp:5.1f} in Python)   ratio {r / b:5.2f}x"
            )
    await pool.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stakers", type=int, default=100_000, help="positions in the pool")
    parser.add_argument("--rounds", type=int, default=11, help="writes timed per case")
    parser.add_argument(
        "--server", default=os.environ.get("INDEXER_BENCH_SERVER", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    arguments = parser.parse_args()
    if arguments.stakers < 100 or arguments.rounds < 1:
        parser.error("--stakers must be at least 100 and --rounds at least 1")
    asyncio.run(main(arguments))

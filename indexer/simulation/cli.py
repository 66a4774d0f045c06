"""`python -m indexer.simulation` (`make simulate`): run seeded schedules, report divergences.

    make simulate SEEDS=N [START=S] [SEED=S] [PLANT=name|list] [JOBS=3]

Runs seeds START..START+N-1 (or the one SEED), plus the regression seeds kept in
`tests/fixtures/simulation_regressions.txt`. A divergence prints its seed, the one command that
replays it alone, and the schedule's trace. The last line is exactly
`simulate: N schedules, D divergences`; the exit status is 0 only when D is 0.
Postgres: INDEXER_SIM_DSN, else INDEXER_TEST_DSN, else the server on 127.0.0.1:5432 when it
answers, else an embedded one; each worker uses a database of its own, dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import socket
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg

from indexer.simulation.harness import Outcome, Schedule
from indexer.simulation.plants import PLANTS

REGRESSIONS = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "simulation_regressions.txt"


def regression_seeds() -> list[int]:
    """The seeds that once found a bug, kept so that it stays found."""
    if not REGRESSIONS.exists():
        return []
    return [int(line.split("#")[0]) for line in REGRESSIONS.read_text().splitlines() if line.split("#")[0].strip()]


def server_dsn() -> str:
    for name in ("INDEXER_SIM_DSN", "INDEXER_TEST_DSN"):
        if os.environ.get(name):
            return os.environ[name]
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=0.5):
            return "postgresql://postgres@127.0.0.1:5432/postgres"
    except OSError:
        import pgserver

        os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
        return pgserver.get_server(Path(tempfile.mkdtemp(prefix="indexer-sim-pg-")), cleanup_mode="delete").get_uri()


def _with_database(dsn: str, name: str) -> str:
    scheme, rest = dsn.split("://", 1)
    authority, _, tail = rest.partition("/")
    query = tail.partition("?")[2]
    return f"{scheme}://{authority}/{name}" + (f"?{query}" if query else "")


async def run_seeds(seeds: list[int], plant: str | None, dsn: str) -> list[Outcome]:
    """Run `seeds` one after another on a database of their own; every outcome."""
    from indexer.store.database import apply_schema, create_pool
    from indexer.store.events import prepare_connection

    name = f"indexer_sim_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    try:
        pool = await create_pool(_with_database(dsn, name), max_size=1)
        await apply_schema(pool)
        await pool.close()
        conn = await asyncpg.connect(_with_database(dsn, name))
        await prepare_connection(conn)
        outcomes = []
        for seed in seeds:
            transaction = conn.transaction()
            await transaction.start()
            try:
                outcomes.append(await Schedule(seed, conn, plant).run())
            finally:
                await transaction.rollback()
        await conn.close()
        return outcomes
    finally:
        admin = await asyncpg.connect(dsn)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def _worker(args: tuple[list[int], str | None, str]) -> list[Outcome]:
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    return asyncio.run(run_seeds(*args))


def replay_command(seed: int, plant: str | None) -> str:
    return f"make simulate SEED={seed}" + (f" PLANT={plant}" if plant else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m indexer.simulation", description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=100, help="how many seeds, from --start")
    parser.add_argument("--start", type=int, default=0, help="the first seed")
    parser.add_argument("--seed", type=int, help="run this one seed alone and print its trace")
    parser.add_argument("--plant", help="a bug to plant in the real code ('list' prints them)")
    parser.add_argument("--jobs", type=int, default=3, help="worker processes")
    parser.add_argument("--no-regressions", action="store_true", help="leave out the kept regression seeds")
    args = parser.parse_args(argv)
    if args.plant == "list":
        print("\n".join(PLANTS))
        return 0
    if args.plant and args.plant not in PLANTS:
        parser.error(f"unknown plant {args.plant!r}: one of {', '.join(PLANTS)}")
    if args.seeds < 0:
        parser.error("--seeds must not be negative")
    if args.seed is not None:
        seeds = [args.seed]
    else:
        seeds = list(range(args.start, args.start + args.seeds))
        if not args.no_regressions and not args.plant:
            seeds += [s for s in regression_seeds() if s not in set(seeds)]
    dsn = server_dsn()
    began = time.monotonic()
    jobs = max(1, min(args.jobs, len(seeds)))
    chunks = [seeds[i::jobs] for i in range(jobs)]
    if jobs == 1:
        outcomes = _worker((seeds, args.plant, dsn))
    else:
        with multiprocessing.get_context("spawn").Pool(jobs) as workers:
            outcomes = [o for chunk in workers.map(_worker, [(c, args.plant, dsn) for c in chunks]) for o in chunk]
    outcomes.sort(key=lambda o: seeds.index(o.seed))
    diverged = [o for o in outcomes if o.diverged]
    for outcome in diverged:
        print(f"DIVERGENCE seed {outcome.seed}: {outcome.divergence}")
        print(f"  replay: {replay_command(outcome.seed, args.plant)}")
        for line in outcome.trace:
            print(f"  | {line}")
    if args.seed is not None and not diverged:
        for line in outcomes[0].trace:
            print(f"  | {line}")
    loud = sum(o.loud_stop for o in outcomes)
    print(f"({time.monotonic() - began:.1f} s; {loud} stopped loudly on a reorg deeper than the kept window)",
          file=sys.stderr)  # fmt: skip
    print(f"simulate: {len(outcomes)} schedules, {len(diverged)} divergences")
    return 0 if not diverged else 1

"""`python -m indexer.simulation` (`make simulate`): run seeded schedules, report divergences.

    make simulate SEEDS=N [START=S] [SEED=S] [PLANT=name|list] [JOBS=4]

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
import hashlib
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
from indexer.store.database import create_database, drop_databases

SETTINGS = {"jit": "off"}  # the workers' databases: compiling a plan costs more than such small queries gain
CHUNK = 25  # seeds handed to a worker at a time: small enough to keep every worker busy to the end
VACUUM_EVERY = 25  # schedules between two VACUUMs: each leaves dead rows behind, and autovacuum may be off
PROGRESS = 1000  # a line on stderr every this many schedules
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


async def connect(database_dsn: str) -> asyncpg.Connection:
    """The one connection schedules run on, its staging tables made."""
    from indexer.store.database import prepare_connection

    conn = await asyncpg.connect(database_dsn)
    await prepare_connection(conn)
    return conn


async def run_schedules(conn: asyncpg.Connection, seeds: list[int], plant: str | None) -> list[Outcome]:
    """Run `seeds` one after another on `conn` (a database with the schema), each in a transaction rolled back."""
    from indexer.store.database import vacuum

    outcomes = []
    for done, seed in enumerate(seeds, 1):
        transaction = conn.transaction()
        await transaction.start()
        try:
            outcomes.append(await Schedule(seed, conn, plant).run())
        finally:
            await transaction.rollback()
            if done % VACUUM_EVERY == 0:
                await vacuum(conn)
    return outcomes


async def run_seeds(seeds: list[int], plant: str | None, dsn: str) -> list[Outcome]:
    """Run `seeds` one after another on a database of their own, dropped at the end; every outcome."""
    prefix = f"indexer_sim_{uuid.uuid4().hex[:10]}"
    try:
        conn = await connect(await create_database(dsn, prefix, **SETTINGS))
        try:
            return await run_schedules(conn, seeds, plant)
        finally:
            await conn.close()
    finally:
        await drop_databases(dsn, prefix)


def _quiet_logs() -> None:
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))


# A worker process's own event loop and connection to its own database (made by `_start_worker`): kept
# from chunk to chunk, so that the server keeps the statements it prepared.
_loop: asyncio.AbstractEventLoop | None = None
_conn: asyncpg.Connection | None = None


def _start_worker(dsn: str, prefix: str) -> None:
    global _loop, _conn
    _quiet_logs()
    _loop = asyncio.new_event_loop()
    database = _loop.run_until_complete(create_database(dsn, f"{prefix}_{os.getpid()}", **SETTINGS))
    _conn = _loop.run_until_complete(connect(database))


def _run_chunk(args: tuple[list[int], str | None]) -> list[Outcome]:
    assert _loop is not None and _conn is not None
    return _loop.run_until_complete(run_schedules(_conn, *args))


def run_parallel(seeds: list[int], plant: str | None, dsn: str, jobs: int) -> list[Outcome]:
    """Run `seeds` on `jobs` worker processes (a database each), in small chunks handed to whichever is free."""
    prefix = f"indexer_sim_{uuid.uuid4().hex[:10]}"
    size = max(1, min(CHUNK, len(seeds) // (jobs * 4)))
    chunks = [(seeds[i : i + size], plant) for i in range(0, len(seeds), size)]
    outcomes: list[Outcome] = []
    began = time.monotonic()
    try:
        context = multiprocessing.get_context("spawn")
        with context.Pool(jobs, initializer=_start_worker, initargs=(dsn, prefix)) as workers:
            for done in workers.imap_unordered(_run_chunk, chunks):
                outcomes.extend(done)
                if len(outcomes) // PROGRESS != (len(outcomes) - len(done)) // PROGRESS:
                    elapsed = time.monotonic() - began
                    print(f"  {len(outcomes)} of {len(seeds)} run ({elapsed:.0f} s)", file=sys.stderr, flush=True)
    finally:
        asyncio.run(drop_databases(dsn, prefix))
    return outcomes


def replay_command(seed: int, plant: str | None) -> str:
    return f"make simulate SEED={seed}" + (f" PLANT={plant}" if plant else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m indexer.simulation", description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=100, help="how many seeds, from --start")
    parser.add_argument("--start", type=int, default=0, help="the first seed")
    parser.add_argument("--seed", type=int, help="run this one seed alone and print its trace")
    parser.add_argument("--plant", help="a bug to plant in the real code ('list' prints them)")
    parser.add_argument("--jobs", type=int, default=4, help="worker processes")
    parser.add_argument("--no-regressions", action="store_true", help="leave out the kept regression seeds")
    args = parser.parse_args(argv)
    if args.plant == "list":
        print("\n".join(PLANTS))
        return 0
    if args.plant and args.plant not in PLANTS:
        parser.error(f"unknown plant {args.plant!r}: one of {', '.join(PLANTS)}")
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
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
    if jobs == 1:
        _quiet_logs()
        outcomes = asyncio.run(run_seeds(seeds, args.plant, dsn))
    else:
        outcomes = run_parallel(seeds, args.plant, dsn, jobs)
    order = {seed: i for i, seed in enumerate(seeds)}
    outcomes.sort(key=lambda o: order[o.seed])
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
    traces = hashlib.sha256("\n".join(line for o in outcomes for line in (f"seed {o.seed}", *o.trace)).encode())
    print(f"({time.monotonic() - began:.1f} s; {loud} stopped loudly on a reorg deeper than the kept window; "
          f"traces {traces.hexdigest()[:16]})",
          file=sys.stderr)  # fmt: skip
    print(f"simulate: {len(outcomes)} schedules, {len(diverged)} divergences")
    return 0 if not diverged else 1

"""The deterministic simulation on real Postgres: kept seeds pass, one seed replays byte for byte, plants are found."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time

import asyncpg
import pytest
import structlog

from indexer.simulation import cli
from indexer.simulation.database import SimDatabase
from indexer.simulation.plants import PLANTS
from tests.conftest import ROOT

pytestmark = pytest.mark.integration

# For each planted bug, a seed that finds it (the first of seeds 0.. to do so when it was written); the
# simulator must keep finding it there, and the same seed without the plant must pass.
FOUND_BY = {
    "parent_check_skipped": 25,
    "stale_branch_logs_accepted": 1,
    "range_end_off_by_one": 0,
    "batch_folded_twice": 0,
    "above_confirmed_folded": 0,
    "reorg_not_rewound": 0,
}


@pytest.fixture(scope="module", autouse=True)
def quiet_logs():
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    yield
    structlog.reset_defaults()


def run(seeds: list[int], plant: str | None, dsn: str):
    return asyncio.run(cli.run_seeds(seeds, plant, dsn))


@pytest.fixture(scope="module")
def dsn(server_dsn: str) -> str:
    return server_dsn


def test_the_kept_regression_seeds_and_a_first_range_match_the_oracle(dsn):
    seeds = sorted({*cli.regression_seeds(), *range(30)})
    assert len(cli.regression_seeds()) >= 4
    diverged = [(o.seed, o.divergence) for o in run(seeds, None, dsn) if o.diverged]
    assert diverged == []


def test_the_same_seed_gives_the_same_trace_twice(dsn):
    """Seed 76 has faults at every kind of node answer, three crashes and a reorg."""
    first, second = run([76, 76], None, dsn)
    assert first.trace == second.trace
    assert any("crash" in line for line in first.trace) and any("reorg" in line for line in first.trace)
    assert "\n".join(first.trace).encode() == "\n".join(second.trace).encode()


@pytest.mark.parametrize("plant", sorted(PLANTS))
def test_every_planted_bug_is_found(plant, dsn):
    seed = FOUND_BY[plant]
    [with_bug] = run([seed], plant, dsn)
    assert with_bug.diverged, f"{plant} not found at seed {seed}"
    assert f"make simulate SEED={seed} PLANT={plant}" == cli.replay_command(seed, plant)
    [without] = run([seed], None, dsn)
    assert not without.diverged, without.divergence


def test_the_command_lists_the_plants_and_ends_with_the_summary_line(dsn, monkeypatch):
    listed = subprocess.run([sys.executable, "-m", "indexer.simulation", "--plant", "list"], cwd=ROOT,
                            capture_output=True, text=True, check=True)  # fmt: skip
    assert listed.stdout.split() == list(PLANTS) and len(PLANTS) >= 5
    monkeypatch.setenv("INDEXER_SIM_DSN", dsn)
    ran = subprocess.run([sys.executable, "-m", "indexer.simulation", "--seeds", "3", "--no-regressions",
                          "--jobs", "1"], cwd=ROOT, capture_output=True, text=True)  # fmt: skip
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert ran.stdout.splitlines()[-1] == "simulate: 3 schedules, 0 divergences"
    command = [sys.executable, "-m", "indexer.simulation", "--seed", "0", "--plant", "range_end_off_by_one"]
    planted = subprocess.run([*command, "--jobs", "1"], cwd=ROOT, capture_output=True, text=True)
    assert planted.returncode == 1
    assert "replay: make simulate SEED=0 PLANT=range_end_off_by_one" in planted.stdout
    assert planted.stdout.splitlines()[-1] == "simulate: 1 schedules, 1 divergences"


def test_a_cancelled_statement_runs_to_its_end_and_the_schedule_goes_on(dsn):
    """Cancelled, asyncpg would send the server a cancel request that may hit a later statement and abort the
    schedule's transaction (seen once in 10,000 seeds): the simulation's connection lets the statement finish."""

    async def main() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("BEGIN")
            db = SimDatabase(conn)
            sleeping = asyncio.create_task(db.fetchval("SELECT 7 FROM pg_sleep(0.3)"))
            await asyncio.sleep(0.05)
            sleeping.cancel()
            began = time.monotonic()
            with pytest.raises(asyncio.CancelledError):
                await sleeping
            assert time.monotonic() - began > 0.15  # it waited for the statement
            assert await db.fetchval("SELECT 1") == 1  # the transaction is not aborted

            answered = asyncio.create_task(db.fetchval("SELECT 7 FROM pg_sleep(0.1)"))
            await asyncio.sleep(0.01)
            await db.quiet()  # the simulated nodes answer only once no statement is in flight
            assert answered.done() and answered.result() == 7
        finally:
            await conn.close()

    asyncio.run(main())


def test_the_traces_are_the_same_in_one_process_and_across_worker_processes(dsn, monkeypatch):
    """Nothing of a run but its seed decides a trace: not Postgres's speed under load, nor what ran before in
    the process, nor the process (its hash seed)."""
    monkeypatch.setenv("INDEXER_SIM_DSN", dsn)

    def digest(jobs: int) -> str:
        command = [sys.executable, "-m", "indexer.simulation", "--seeds", "24", "--start", "170", "--no-regressions"]
        ran = subprocess.run([*command, "--jobs", str(jobs)], cwd=ROOT, capture_output=True, text=True)
        assert ran.returncode == 0, ran.stdout + ran.stderr
        return ran.stderr.rsplit("traces ", 1)[1].split(")")[0]

    alone = digest(1)
    assert digest(4) == alone
    serial = {o.seed: o.trace for o in run(list(range(170, 194)), None, dsn)}
    assert serial == {o.seed: o.trace for o in cli.run_parallel(list(range(170, 194)), None, dsn, 3)}

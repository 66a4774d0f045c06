"""Several `indexer run` processes on one database: each chain indexed by one, taken over after a crash."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time

from tests.integration.conftest import INDEXER, chain_config, write_config
from tests.integration.test_cli import event_log, run_cli

POOL = "0x" + "a1" * 20


async def owners(db) -> dict[str, int]:
    rows = await db.fetch("SELECT chain, owner FROM v_indexer_status WHERE owner IS NOT NULL")
    return {r["chain"]: int(r["owner"].rsplit(":", 1)[1]) for r in rows}


async def test_each_chain_has_one_owner_and_a_killed_owners_chains_are_taken_over(
    db, database_dsn, driver, deployment, anvil, tmp_path
):
    chains = [chain_config(deployment, [anvil.url], name=name, poll_interval_seconds=0.2) for name in ("alpha", "beta")]
    processes = [
        subprocess.Popen(
            [*INDEXER, "--config", str(write_config(tmp_path / f"{i}.yaml", database_dsn, chains)), "run"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for i in range(2)
    ]
    try:
        await driver.stake("native_v1", driver.accounts[1], POOL, 10**18)
        for _ in range(200):
            if len(await owners(db)) == 2:
                break
            await asyncio.sleep(0.05)
        before = await owners(db)
        pids = {p.pid for p in processes}
        assert set(before) == {"alpha", "beta"} and set(before.values()) <= pids  # one owner per chain

        victim = next(p for p in processes if p.pid == before["alpha"])
        survivor = next(p for p in processes if p is not victim)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
        killed_at = time.monotonic()
        receipt = await driver.stake("native_v1", driver.accounts[2], POOL, 2 * 10**18)
        tx = receipt["transactionHash"].to_0x_hex()
        for _ in range(300):
            indexed = await db.fetchval("SELECT count(DISTINCT chain) FROM events WHERE tx_hash = $1", tx)
            if (await owners(db)).get("alpha") == survivor.pid and indexed == 2:
                break
            await asyncio.sleep(0.05)
        took_over = time.monotonic() - killed_at
        assert (await owners(db)) == {"alpha": survivor.pid, "beta": survivor.pid}
        assert await db.fetchval("SELECT count(DISTINCT chain) FROM events WHERE tx_hash = $1", tx) == 2
        assert took_over < 10

        # two writers on one chain would trip the cursor guard and fail that chain
        assert await db.fetchval("SELECT count(*) FROM chain_health WHERE state <> 'ok'") == 0
        survivor.send_signal(signal.SIGTERM)
        assert survivor.wait(timeout=10) == 0, survivor.stderr.read()
    finally:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                process.kill()

    reference = write_config(tmp_path / "ref.yaml", database_dsn,
                             [chain_config(deployment, [anvil.url], name="ref", confirmations=0)])  # fmt: skip
    assert run_cli(reference, "run", "--once").returncode == 0
    ref = await event_log(db, "ref")
    for name in ("alpha", "beta"):
        assert await event_log(db, name) == ref

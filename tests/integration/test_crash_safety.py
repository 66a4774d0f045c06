"""SIGKILL at any moment loses and doubles nothing: cursor and events commit together."""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import subprocess

from tests.integration.conftest import INDEXER, chain_config, write_config
from tests.integration.test_cli import event_log, run_cli

POOLS = ["0x" + f"{i:02x}" * 20 for i in range(1, 6)]


async def keep_staking(driver, stop: asyncio.Event) -> int:
    """New blocks with events while the indexer follows the head."""
    sent = 0
    while not stop.is_set():
        await driver.stake("native_v2", driver.accounts[1 + sent % 3], f"validator-{sent % 4}", 10**17 * (sent + 1))
        sent += 1
        await asyncio.sleep(0.1)
    return sent


async def test_twenty_sigkills_during_backfill_and_follow_give_the_uninterrupted_log(
    db, database_dsn, driver, deployment, anvil, tmp_path
):
    for _ in range(20):  # a backlog: 200 events per block
        await driver.stake_many_native_v1(driver.accounts[4], POOLS, 10**15, 20)
    small_steps = chain_config(
        deployment, [anvil.url], confirmations=2, initial_block_range=1, max_block_range=2, poll_interval_seconds=0.1
    )
    config = write_config(tmp_path / "chains.yaml", database_dsn, [small_steps])
    rng = random.Random(20261122)
    stop_traffic = asyncio.Event()
    traffic = asyncio.create_task(keep_staking(driver, stop_traffic))
    kills = 0
    try:
        for attempt in range(20):
            process = subprocess.Popen(
                [*INDEXER, "--config", str(config), "run"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            if attempt == 0:  # the first kill comes once a batch is committed, so the backfill is surely mid-way
                for _ in range(600):
                    if await db.fetchval("SELECT count(*) FROM chain_cursors WHERE chain = 'local'"):
                        break
                    await asyncio.sleep(0.05)
            await asyncio.sleep(rng.uniform(0.3, 1.5))  # then any moment: start-up, mid-batch, following
            process.send_signal(signal.SIGKILL)
            await asyncio.to_thread(process.wait, 10)
            kills += process.returncode == -signal.SIGKILL
    finally:
        stop_traffic.set()
        sent = await traffic
    assert kills == 20 and sent > 10
    progress = await db.fetchval("SELECT block_number FROM chain_cursors WHERE chain = 'local'")
    assert progress is not None  # the killed runs did index something

    finish = subprocess.Popen(
        [*INDEXER, "--config", str(config), "run"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        head = await driver.w3.eth.block_number
        for _ in range(400):  # the chain taken over by this process (not a killed one's row), then indexed to the head
            owner = await db.fetchval("SELECT owner FROM chain_health WHERE chain = 'local'")
            indexed = await db.fetchval("SELECT block_number FROM chain_cursors WHERE chain = 'local'")
            if owner is not None and owner.endswith(f":{finish.pid}") and indexed == head:
                break
            await asyncio.sleep(0.05)
        finish.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(finish.wait, 10) == 0, finish.stderr.read()
    finally:
        with contextlib.suppress(ProcessLookupError):
            finish.kill()

    reference = write_config(
        tmp_path / "ref.yaml", database_dsn, [chain_config(deployment, [anvil.url], name="ref", confirmations=0)]
    )
    assert run_cli(reference, "run", "--once").returncode == 0
    interrupted, uninterrupted = await event_log(db, "local"), await event_log(db, "ref")
    assert len(uninterrupted) == 20 * 100 * 2 + sent * 2
    assert interrupted == uninterrupted


async def test_sigterm_while_the_service_starts_is_a_clean_stop(db, database_dsn, deployment, anvil, tmp_path):
    config = write_config(tmp_path / "chains.yaml", database_dsn, [chain_config(deployment, [anvil.url])])
    for delay in (0.1, 0.25, 0.5):  # imports, configuration, database: before `run` takes signals over
        process = subprocess.Popen([*INDEXER, "--config", str(config), "run"], stderr=subprocess.PIPE, text=True)
        await asyncio.sleep(delay)
        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 10) == 0, process.stderr.read()

"""A process writes under a lock (the projector's, a chain's) only while it holds it; the projector's writers go
one after the other, and `indexer reproject` leaves the rebuild to the projector's holder."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import subprocess
from datetime import timedelta

import pytest

from indexer.ownership import OwnershipLost, lock_key, owned
from indexer.projector.runner import Projector, reproject_owned
from indexer.service import build_source, index_chains
from indexer.store.cursors import adopt_contracts, known_contracts, load_cursor
from indexer.store.events import rewind
from indexer.watcher import Watcher
from tests.integration.conftest import INDEXER, chain_config, write_config
from tests.integration.test_cli import run_cli
from tests.integration.test_projector import config_for, snapshot

POOL = "0x" + "a1" * 20


async def indexed_not_projected(db, driver, deployment, anvil):
    """Two stakes in the event log, the projections empty; the config."""
    await driver.stake("native_v1", driver.accounts[1], POOL, 10**18)
    await driver.stake("native_v1", driver.accounts[2], POOL, 3 * 10**18)
    config = config_for(deployment, anvil.url)
    await index_chains(config, db, asyncio.Event(), once=True, project=False)
    assert await db.fetchval("SELECT count(*) FROM events WHERE event_type = 'stake'") == 2
    return config


async def lose(db, pid: int) -> None:
    """Terminate a backend (as a restarted server or a dropped connection would) and wait until it is gone."""
    assert await db.fetchval("SELECT pg_terminate_backend($1)", pid)
    for _ in range(200):
        if not await db.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"backend {pid} still there")


async def empty(db) -> bool:
    rows = await snapshot(db)
    return not any(rows.values()) and await db.fetchval("SELECT count(*) FROM projector_state") == 0


async def test_a_projector_whose_lock_connection_is_lost_writes_nothing_and_another_takes_over(
    db, driver, deployment, anvil
):
    config = await indexed_not_projected(db, driver, deployment, anvil)
    async with owned(db, "projector", asyncio.Event(), wait=False, retry_seconds=0) as fence:
        assert fence is not None
        projector = Projector(db, config)
        projector.fence = fence
        await lose(db, fence.pid)  # the lock goes with its connection
        with pytest.raises(OwnershipLost, match="no longer holds its lock"):
            await projector.step()
        assert await empty(db)

        async with owned(db, "projector", asyncio.Event(), wait=False, retry_seconds=0) as other:
            assert other is not None and other.pid != fence.pid  # the lock was free: another process takes it
            successor = Projector(db, config)
            successor.fence = other
            assert await successor.step() == await db.fetchval("SELECT count(*) FROM events")
    amounts = await db.fetch("SELECT amount FROM validator_amounts")
    assert [int(r["amount"]) for r in amounts] == [4 * 10**18]


async def test_a_new_owner_loads_the_tables_only_after_the_last_owners_write_commits(db, driver, deployment, anvil):
    config = await indexed_not_projected(db, driver, deployment, anvil)
    async with owned(db, "projector", asyncio.Event(), wait=False, retry_seconds=0) as first:
        assert first is not None
        async with db.acquire() as conn:
            writing = conn.transaction()
            await writing.start()
            await first.check(conn)  # the first owner is writing ...
            await conn.execute("INSERT INTO validator_amounts (validator, asset, amount) VALUES ('marker', 'ETH', 5)")
            await lose(db, first.pid)  # ... when its lock connection goes

            async def take_over() -> Projector:
                async with owned(db, "projector", asyncio.Event(), wait=False, retry_seconds=0) as second:
                    assert second is not None
                    successor = Projector(db, config)
                    successor.fence = second
                    await successor.step()
                    return successor

            stepping = asyncio.create_task(take_over())
            await asyncio.sleep(0.5)
            assert not stepping.done()  # it waits for the first owner's transaction
            await writing.commit()
            successor = await asyncio.wait_for(stepping, timeout=10)
    assert successor.state is not None and successor.state.validators[("marker", "ETH")] == 5  # it read that write


async def test_a_fence_names_its_backend_by_pid_and_start_so_a_pid_that_comes_again_is_not_it(db):
    """After a server restart pids start over: another process's lock connection may get this one's old pid."""
    async with owned(db, "chain:local", asyncio.Event(), wait=False, retry_seconds=0) as fence:
        assert fence is not None
        async with db.acquire() as conn, conn.transaction():
            await fence.check(conn)  # held: passes
        same_pid_later = dataclasses.replace(fence, started=fence.started + timedelta(seconds=1))
        async with db.acquire() as conn, conn.transaction():
            with pytest.raises(OwnershipLost):
                await same_pid_later.check(conn)


async def test_a_new_owner_starts_only_after_the_last_owners_write_commits(db):
    """A chain's new owner reads its cursor first: a write of the last owner still running must be committed."""
    async with owned(db, "chain:local", asyncio.Event(), wait=False, retry_seconds=0) as first:
        assert first is not None
        async with db.acquire() as conn:
            writing = conn.transaction()
            await writing.start()
            await first.check(conn)  # the first owner is writing a batch ...
            await lose(db, first.pid)  # ... when its lock connection goes

            async def take_over() -> bool:
                async with owned(db, "chain:local", asyncio.Event(), wait=False, retry_seconds=0) as second:
                    return second is not None

            taking = asyncio.create_task(take_over())
            await asyncio.sleep(0.5)
            assert not taking.done()  # the lock is free, but its last writer has not committed
            await writing.commit()
            assert await asyncio.wait_for(taking, timeout=10)


async def test_cli_reproject_gives_up_after_its_wait_leaving_the_request(db, database_dsn, deployment, anvil, tmp_path):
    path = write_config(tmp_path / "chains.yaml", database_dsn, [chain_config(deployment, [anvil.url])])
    async with owned(db, "projector", asyncio.Event(), wait=False, retry_seconds=0) as held:
        assert held is not None  # a holder that never answers (a release without the request)
        waited = await asyncio.to_thread(run_cli, path, "reproject", "--wait-seconds", "1")
    assert waited.returncode == 1
    assert "it has not within 1 s" in waited.stderr and "The request stays" in waited.stderr
    assert await db.fetchval("SELECT reproject_requested_at FROM projector_state") is not None


async def test_a_held_fence_lets_every_write_through(db, driver, deployment, anvil):
    config = await indexed_not_projected(db, driver, deployment, anvil)
    async with owned(db, "projector", asyncio.Event(), wait=False, retry_seconds=0) as fence:
        projector = Projector(db, config)
        projector.fence = fence
        assert await projector.step() == await db.fetchval("SELECT count(*) FROM events")
        stepped = await snapshot(db)
        assert await projector.reproject() == await db.fetchval("SELECT count(*) FROM events")
    assert await snapshot(db) == stepped and stepped["positions"]


async def test_cli_reproject_asks_the_process_holding_the_projector_and_waits_for_its_rebuild(
    db, database_dsn, driver, deployment, anvil, tmp_path
):
    config = await indexed_not_projected(db, driver, deployment, anvil)
    path = write_config(tmp_path / "chains.yaml", database_dsn, [chain_config(deployment, [anvil.url])])
    async with owned(db, "projector", asyncio.Event(), wait=False, retry_seconds=0) as held:
        service = Projector(db, config)  # the running service's projector
        service.fence = held
        await service.step()
        projected = await snapshot(db)
        tamper = "UPDATE position_buckets SET amounts = (SELECT array_agg(a + 1) FROM unnest(amounts) a)"
        await db.execute(tamper)  # tampered: only a rebuild mends it
        asking = asyncio.create_task(asyncio.to_thread(run_cli, path, "reproject"))
        for _ in range(200):
            if await db.fetchval("SELECT reproject_requested_at FROM projector_state") is not None:
                break
            await asyncio.sleep(0.05)
        assert not asking.done()  # it waits for the holder, writing nothing itself
        assert await snapshot(db) != projected
        await service.step()  # the holder's next step answers the request
        asked = await asyncio.wait_for(asking, timeout=30)
    assert asked.returncode == 0, asked.stderr
    assert asked.stdout == "reproject: rebuilt by the process holding the projector\n"
    assert await snapshot(db) == projected
    assert await db.fetchval("SELECT reproject_requested_at FROM projector_state") is None
    assert await service.step() == 0  # answered once: no second rebuild

    done = await asyncio.to_thread(run_cli, path, "reproject")  # nobody holds it now: rebuilt by the command
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"reproject: {await db.fetchval('SELECT count(*) FROM events')} events folded\n"
    assert await snapshot(db) == projected


async def test_a_request_left_by_a_holder_that_stopped_is_answered_by_the_command_itself(db, driver, deployment, anvil):
    config = await indexed_not_projected(db, driver, deployment, anvil)
    async with owned(db, "projector", asyncio.Event(), wait=False, retry_seconds=0) as held:
        assert held is not None
        asking = asyncio.create_task(reproject_owned(db, config, poll=0.05))
        await asyncio.sleep(0.3)
        assert not asking.done()
    # the holder stopped without answering: the command takes the lock and rebuilds, clearing the request
    assert await asyncio.wait_for(asking, timeout=30) == await db.fetchval("SELECT count(*) FROM events")
    assert await db.fetchval("SELECT reproject_requested_at FROM projector_state") is None
    assert (await snapshot(db))["positions"]


async def test_a_watcher_whose_lock_connection_is_lost_stores_nothing(db, driver, deployment, anvil):
    config = config_for(deployment, anvil.url)
    await driver.stake("native_v1", driver.accounts[1], POOL, 10**18)
    source = build_source(config.chains[0], {})
    try:
        async with owned(db, "chain:local", asyncio.Event(), wait=False, retry_seconds=0) as fence:
            watcher = Watcher(source, config.chains[0], db)
            watcher.fence = fence
            await lose(db, fence.pid)
            with pytest.raises(OwnershipLost, match="chain:local: this process no longer holds its lock"):
                await watcher.run(asyncio.Event(), once=True)
    finally:
        await source.close()
    assert await db.fetchval("SELECT count(*) FROM events") == 0
    assert await db.fetchval("SELECT count(*) FROM chain_cursors") == 0


async def test_a_rewind_or_a_contracts_adoption_without_the_chains_lock_changes_nothing(db, driver, deployment, anvil):
    config = await indexed_not_projected(db, driver, deployment, anvil)
    cursor = await load_cursor(db, "local")
    source = build_source(config.chains[0], {})
    try:
        ancestor = (await source.blocks([1]))[1]
    finally:
        await source.close()
    stored = await db.fetchval("SELECT count(*) FROM events")
    async with owned(db, "chain:local", asyncio.Event(), wait=False, retry_seconds=0) as fence:
        await lose(db, fence.pid)
        async with db.acquire() as conn:
            with pytest.raises(OwnershipLost):
                await rewind(conn, "local", ancestor, cursor, fence.check)
    assert await db.fetchval("SELECT count(*) FROM events") == stored > 0
    assert await load_cursor(db, "local") == cursor
    assert await db.fetchval("SELECT count(*) FROM reorgs") == 0

    contracts = await known_contracts(db, "local")
    async with owned(db, "chain:local", asyncio.Event(), wait=False, retry_seconds=0) as fence:
        await lose(db, fence.pid)
        async with db.acquire() as conn:
            with pytest.raises(OwnershipLost):  # a contract added to the config: its adoption moves the cursor back
                await adopt_contracts(conn, "local", {"0x" + "cd" * 20: 0}, ancestor, fence.check)
    assert await known_contracts(db, "local") == contracts
    assert await load_cursor(db, "local") == cursor


@pytest.mark.parametrize("lock", ["projector", "chain:local"])
async def test_run_stops_with_a_clear_error_when_a_lock_connection_is_lost(
    lock, db, database_dsn, driver, deployment, anvil, tmp_path
):
    """`run` exits 1 naming the lost lock (its supervisor restarts it) instead of writing on without it."""
    key = lock_key(lock)
    path = write_config(
        tmp_path / "chains.yaml", database_dsn, [chain_config(deployment, [anvil.url], poll_interval_seconds=0.2)]
    )
    process = subprocess.Popen([*INDEXER, "--config", str(path), "run"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        holder = None
        for _ in range(300):
            holder = await db.fetchval(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = $1 AND objid = $2 AND granted",
                (key >> 32) & 0xFFFFFFFF,
                key & 0xFFFFFFFF,
            )
            if holder is not None:
                break
            await asyncio.sleep(0.05)
        assert holder is not None, f"the service never took the lock {lock}"
        await lose(db, holder)
        await driver.stake("native_v1", driver.accounts[3], POOL, 10**18)  # something to write
        code = await asyncio.to_thread(process.wait, 30)
        assert code == 1
        assert f"indexer: error: {lock}: this process no longer holds its lock" in process.stderr.read()
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.kill()

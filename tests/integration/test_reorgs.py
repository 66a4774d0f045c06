"""Following the head through reorgs on a real anvil: the event log always equals a fresh index of the final chain."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from eth_account import Account

from indexer.config import parse_config
from indexer.errors import ReorgTooDeep
from indexer.service import build_source
from indexer.watcher import Watcher
from tests.integration.conftest import chain_config, indexed_to_head, until

ETHER = 10**18
POOL = "0x" + "a1" * 20
CONFIRMATIONS = 2
EVENT_LOG = """SELECT block_number, block_hash, tx_hash, log_index, event_type, staker, counterparty, pool, amount
                 FROM events WHERE chain = $1 ORDER BY block_number, log_index"""
# anvil's default dev accounts come from this well-known test mnemonic.
ANVIL_MNEMONIC = "test test test test test test test test test test test junk"
Account.enable_unaudited_hdwallet_features()


def config_for(deployment, url: str, name: str, **overrides):
    settings = {"confirmations": CONFIRMATIONS} | overrides
    document = {"chains": [chain_config(deployment, [url], name=name, **settings)]}
    return parse_config(document).chains[0]


@contextlib.asynccontextmanager
async def following(db, chain) -> AsyncIterator[tuple[Watcher, asyncio.Task]]:
    """A watcher following the head in the background."""
    source = build_source(chain, {})
    watcher = Watcher(source, chain, db)
    stop = asyncio.Event()
    task = asyncio.create_task(watcher.run(stop, once=False))
    try:
        yield watcher, task
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)
        await source.close()


async def fresh_index_equals(db, deployment, anvil, driver) -> None:
    """Index the final chain from scratch under another name and compare the two logs."""
    chain = config_for(deployment, anvil.url, "fresh", confirmations=0)
    source = build_source(chain, {})
    await Watcher(source, chain, db).run(asyncio.Event(), once=True)
    await source.close()
    followed, fresh = await db.fetch(EVENT_LOG, "local"), await db.fetch(EVENT_LOG, "fresh")
    assert [tuple(r) for r in followed] == [tuple(r) for r in fresh]
    for number, block_hash in {(r["block_number"], r["block_hash"]) for r in followed}:  # nothing orphaned remains
        assert (await driver.w3.eth.get_block(number))["hash"].to_0x_hex() == block_hash


@pytest.mark.parametrize("depth", [1, 3, CONFIRMATIONS + 2])
async def test_anvil_reorg_while_following_leaves_the_log_of_the_final_chain(db, driver, deployment, anvil, depth):
    a, b = driver.accounts[1], driver.accounts[2]
    chain = config_for(deployment, anvil.url, "local")
    async with following(db, chain) as (_, task):
        for i in range(depth + 2):  # the last `depth` blocks, each with a stake, will be replaced
            await driver.stake("native_v1", a if i % 2 else b, POOL, (i + 1) * ETHER)
        await until(lambda: indexed_to_head(db, driver))
        before = await db.fetchval("SELECT count(*) FROM events WHERE chain = 'local'")
        await driver.rpc("anvil_reorg", [depth, []])
        await until(lambda: indexed_to_head(db, driver))
        assert not task.done()
    reorg = await db.fetchrow("SELECT depth, events_removed FROM reorgs WHERE chain = 'local'")
    assert (reorg["depth"], reorg["events_removed"]) == (depth, 2 * depth)  # each replaced block held 2 events
    assert await db.fetchval("SELECT count(*) FROM events WHERE chain = 'local'") == before - 2 * depth
    await fresh_index_equals(db, deployment, anvil, driver)


async def test_orphaned_transaction_disappears_and_reincluded_one_appears_once_in_its_new_block(
    db, driver, deployment, anvil
):
    w3 = driver.w3
    signer = Account.from_mnemonic(ANVIL_MNEMONIC, account_path="m/44'/60'/0'/0/3")
    assert signer.address == driver.accounts[3]
    staking = driver.contract("native_v1")
    chain = config_for(deployment, anvil.url, "local")
    async with following(db, chain):
        await driver.stake("native_v1", driver.accounts[1], POOL, ETHER)
        await until(lambda: indexed_to_head(db, driver))
        snapshot = await driver.rpc("evm_snapshot", [])
        orphan = await driver.stake("native_v1", driver.accounts[2], POOL, 2 * ETHER)
        call = staking.functions.stake(w3.to_checksum_address(POOL))
        tx = await call.build_transaction(
            {
                "from": signer.address,
                "value": 3 * ETHER,
                "nonce": await w3.eth.get_transaction_count(signer.address),
                "gas": 200_000,
                "maxFeePerGas": 10**10,
                "maxPriorityFeePerGas": 10**9,
            }
        )
        raw = signer.sign_transaction(tx).raw_transaction
        moved = await w3.eth.wait_for_transaction_receipt(await w3.eth.send_raw_transaction(raw))
        await until(lambda: indexed_to_head(db, driver))
        assert (
            await db.fetchval("SELECT count(*) FROM events WHERE tx_hash = $1", orphan["transactionHash"].to_0x_hex())
            == 2
        )

        assert await driver.rpc("evm_revert", [snapshot]) is True
        await driver.mine(2)  # the re-included transaction lands one block later than before
        again = await w3.eth.wait_for_transaction_receipt(await w3.eth.send_raw_transaction(raw))
        await driver.mine(1)
        await until(lambda: indexed_to_head(db, driver))

    assert again["transactionHash"] == moved["transactionHash"]
    assert again["blockNumber"] == moved["blockNumber"] + 1
    assert (
        await db.fetchval("SELECT count(*) FROM events WHERE tx_hash = $1", orphan["transactionHash"].to_0x_hex()) == 0
    )
    rows = await db.fetch(
        "SELECT block_number, block_hash FROM events WHERE tx_hash = $1", again["transactionHash"].to_0x_hex()
    )
    assert [(r["block_number"], r["block_hash"]) for r in rows] == [
        (again["blockNumber"], again["blockHash"].to_0x_hex())
    ] * 2
    await fresh_index_equals(db, deployment, anvil, driver)


async def test_the_branch_a_reorg_replaced_is_fetched_again_with_all_its_headers(
    db, driver, deployment, anvil, monkeypatch
):
    """Even when the head has moved on so far that those blocks lie below the kept window's top, where a range
    otherwise comes with its last header only: there a stale node's header could vouch for an orphaned block."""
    chain = config_for(deployment, anvil.url, "local")
    for i in range(4):
        await driver.stake("native_v1", driver.accounts[1], POOL, (i + 1) * ETHER)
    source = build_source(chain, {})
    watcher = Watcher(source, chain, db)
    await watcher.run(asyncio.Event(), once=True)
    tip = await db.fetchval("SELECT block_number FROM chain_cursors WHERE chain = 'local'")
    await driver.rpc("anvil_reorg", [3, []])
    await driver.mine(80)  # the replaced blocks now lie 80 blocks below the head
    asked: list[tuple[int, int, int | None]] = []
    fetch_logs = type(source).fetch_logs

    async def recorded(self, start, last_allowed, headers_from=None):
        asked.append((start, last_allowed, headers_from))
        return await fetch_logs(self, start, last_allowed, headers_from)

    monkeypatch.setattr(type(source), "fetch_logs", recorded)
    await watcher.run(asyncio.Event(), once=True)
    await source.close()
    ancestor = await db.fetchval("SELECT ancestor_block FROM reorgs WHERE chain = 'local'")
    assert ancestor < tip and asked[0] == (ancestor + 1, tip, ancestor + 1)
    assert all(headers_from > tip for start, _, headers_from in asked if start > tip)  # then as usual
    await fresh_index_equals(db, deployment, anvil, driver)


async def test_a_range_below_the_kept_window_names_its_first_blocks_parent_even_without_logs(
    db, driver, deployment, anvil
):
    """There a range comes with few headers (its last, and its log blocks'); its first block's always comes, so
    the store checks that the range goes on from the cursor's block: a cursor left on an orphaned block (a stale
    node answered the last range) is found at the next write even when no log names the block after it
    (simulation seed 45777)."""
    chain = config_for(deployment, anvil.url, "local")
    await driver.stake("native_v1", driver.accounts[1], POOL, ETHER)
    await driver.mine(40)  # blocks without logs
    head = int(await driver.rpc("eth_blockNumber", []), 16)
    source = build_source(chain, {})
    try:
        start = head - 30
        fetched = await source.fetch_logs(start, head - 20, head - 5)  # all of it below the headers' zone
        batches = [b async for b in source.batches(fetched)]
        before = (await source.blocks([start - 1]))[start - 1]
    finally:
        await source.close()
    assert fetched.logs == [] and start in fetched.headers
    assert batches[0].first_block == start and batches[0].parent_hash == before.hash


async def test_reorg_deeper_than_the_kept_window_is_fatal_and_changes_nothing(db, driver, deployment, anvil):
    chain = config_for(deployment, anvil.url, "local")
    snapshot = await driver.rpc("evm_snapshot", [])
    await driver.stake("native_v1", driver.accounts[1], POOL, ETHER)
    await driver.mine(70)  # more than the 64 block hashes kept
    source = build_source(chain, {})
    watcher = Watcher(source, chain, db)
    await watcher.run(asyncio.Event(), once=True)
    events, cursor = await db.fetchval("SELECT count(*) FROM events"), await db.fetchrow("SELECT * FROM chain_cursors")
    assert events == 2 and watcher.keep_blocks == 64

    assert await driver.rpc("evm_revert", [snapshot]) is True
    await driver.mine(80)  # a different, longer branch from below the window
    with pytest.raises(ReorgTooDeep, match="reorganized below block"):
        await watcher.run(asyncio.Event(), once=True)
    await source.close()
    assert await db.fetchval("SELECT count(*) FROM events") == events
    assert await db.fetchrow("SELECT * FROM chain_cursors") == cursor

"""Reward epochs on a real chain: stakes at known block times, a close checked by hand, proofs verified on chain."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from indexer.config import parse_config
from indexer.epochs.close import EpochError, add_reward, close_epoch, proof
from indexer.localchain import artifacts
from indexer.metrics import Metrics
from indexer.service import index_chains
from tests.integration.conftest import chain_config

VALIDATOR = "0x" + "a1" * 20
LENGTH = 1000
TOKEN = 10**18


@pytest.fixture
async def epochs_db(db):
    """The session database (schema.sql applied) with the epoch tables emptied."""
    await db.execute("TRUNCATE epoch_rewards, epochs, epoch_allocations")
    return db


async def at(driver, ts: int) -> None:
    await driver.rpc("evm_setNextBlockTimestamp", [ts])


async def table_dump(db) -> dict[str, list[tuple]]:
    return {
        t: [tuple(r) for r in await db.fetch(f"SELECT * FROM {t} ORDER BY 1, 2, 3")]
        for t in ("epochs", "epoch_rewards", "epoch_allocations")
    }


async def test_close_splits_by_time_weighted_stake_and_proofs_verify_on_chain(epochs_db, driver, deployment, anvil):
    db = epochs_db
    latest = await driver.w3.eth.get_block("latest")
    genesis = latest["timestamp"] + 100
    config = parse_config(
        {
            "epochs": {"genesis": datetime.fromtimestamp(genesis, UTC).isoformat(), "length_seconds": LENGTH},
            "validators": [{"id": VALIDATOR, "commission_bps": 1000}],
            "chains": [chain_config(deployment, [anvil.url], confirmations=0)],
        }
    )
    a, b, c = driver.accounts[1], driver.accounts[2], driver.accounts[3]
    await at(driver, genesis - 50)  # before the epoch: A holds for the whole epoch
    await driver.stake("native_v1", a, VALIDATOR, 100 * TOKEN)
    await at(driver, genesis + 500)  # B holds for the last 500 s
    await driver.stake("native_v1", b, VALIDATOR, 100 * TOKEN)
    await index_chains(config, db, asyncio.Event(), once=True)

    await add_reward(db, config, 0, VALIDATOR, "KLY", 3000)
    await add_reward(db, config, 0, VALIDATOR, "ETH", 10)
    with pytest.raises(EpochError, match=r"epoch 0 .*not every chain.*: local \(confirmed block time"):
        await close_epoch(db, config, 0)
    assert await db.fetchval("SELECT status FROM v_epochs WHERE epoch = 0") == "open"

    await at(driver, genesis + LENGTH)  # exactly the end: belongs to epoch 1, C gets nothing in epoch 0
    await driver.stake("native_v1", c, VALIDATOR, 100 * TOKEN)
    await index_chains(config, db, asyncio.Event(), once=True)

    first = await close_epoch(db, config, 0)
    assert not first.already_closed and first.total == 3010 and first.root
    rows = await db.fetch("SELECT validator, staker, asset, amount FROM v_epoch_allocations WHERE epoch = 0")
    got = {(r["staker"], r["asset"]): int(r["amount"]) for r in rows}
    assert {r["validator"] for r in rows} == {VALIDATOR}
    # A: 100 x 1000 s, B: 100 x 500 s -> 2:1 of what the 10% commission leaves.
    assert got == {
        (VALIDATOR, "KLY"): 300,
        (a.lower(), "KLY"): 1800,
        (b.lower(), "KLY"): 900,
        (VALIDATOR, "ETH"): 1,
        (a.lower(), "ETH"): 6,
        (b.lower(), "ETH"): 3,
    }
    epoch_row = await db.fetchrow("SELECT * FROM v_epochs WHERE epoch = 0")
    assert (epoch_row["status"], epoch_row["root"], epoch_row["total"]) == ("closed", first.root, 3010)
    assert epoch_row["start_time"].timestamp() == genesis and epoch_row["end_time"].timestamp() == genesis + LENGTH

    # Final: closing again returns the same root and changes nothing, not even closed_at.
    before = await table_dump(db)
    again = await close_epoch(db, config, 0)
    assert again.already_closed and again.root == first.root
    assert await table_dump(db) == before
    with pytest.raises(EpochError, match="closed"):
        await add_reward(db, config, 0, VALIDATOR, "KLY", 1)
    with pytest.raises(asyncpg.RaiseError, match="closed and final"):
        await db.execute(f"INSERT INTO epoch_rewards VALUES (0, '{VALIDATOR}', 'DOT', 5)")
    with pytest.raises(asyncpg.RaiseError, match="closed and final"):
        await db.execute("UPDATE epoch_allocations SET amount = amount + 1 WHERE epoch = 0")
    assert await table_dump(db) == before

    # The proofs verify on chain through OpenZeppelin MerkleProof.
    w3 = driver.w3
    factory = w3.eth.contract(abi=artifacts.abi("MerkleClaim"), bytecode=artifacts.bytecode("MerkleClaim"))
    receipt = await w3.eth.wait_for_transaction_receipt(await factory.constructor().transact({"from": a}))
    claim = w3.eth.contract(address=receipt["contractAddress"], abi=artifacts.abi("MerkleClaim"))
    await w3.eth.wait_for_transaction_receipt(
        await claim.functions.setRoot(0, bytes.fromhex(first.root[2:])).transact({"from": a})
    )
    checked = 0
    for staker in (a, b):
        exported = await proof(db, 0, staker)
        assert exported["root"] == first.root
        assert {(x["asset"], int(x["amount"])) for x in exported["leaves"]} == {
            (asset, amount) for (s, asset), amount in got.items() if s == staker.lower()
        }
        for leaf in exported["leaves"]:
            path = [bytes.fromhex(p[2:]) for p in leaf["proof"]]
            assert len(path) == 2  # four leaves
            amount = int(leaf["amount"])
            assert await claim.functions.claimable(0, staker, leaf["asset"], amount, path).call()
            assert not await claim.functions.claimable(0, staker, leaf["asset"], amount + 1, path).call()
            assert not await claim.functions.claimable(1, staker, leaf["asset"], amount, path).call()
            checked += 1
    assert checked == 4
    assert (await proof(db, 0, c))["leaves"] == []
    assert (await proof(db, 0, VALIDATOR))["leaves"] == []  # commission is not in the tree


async def test_epochs_closed_metric_is_the_count_of_closes_in_the_database(epochs_db, driver, deployment, anvil):
    """Epochs are closed by `indexer epochs close`, not by the serving process: its scrape reads the count."""
    db = epochs_db
    genesis = (await driver.w3.eth.get_block("latest"))["timestamp"] + 100
    config = parse_config({
        "epochs": {"genesis": datetime.fromtimestamp(genesis, UTC).isoformat(), "length_seconds": LENGTH},
        "validators": [{"id": VALIDATOR}],
        "chains": [chain_config(deployment, [anvil.url], confirmations=0)],
    })  # fmt: skip
    metrics = Metrics(CollectorRegistry())

    async def closed_total() -> float:
        assert await metrics.refresh_from_db(db)
        text = metrics.exposition().decode()
        samples = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
        return samples["indexer_epochs_closed_total"]

    assert await closed_total() == 0
    await at(driver, genesis + 10)
    await driver.stake("native_v1", driver.accounts[1], VALIDATOR, 100 * TOKEN)
    await at(driver, genesis + 2 * LENGTH + 10)
    await driver.mine(1)
    await index_chains(config, db, asyncio.Event(), once=True)
    await add_reward(db, config, 0, VALIDATOR, "KLY", 1000)
    assert await closed_total() == 0  # a reward opens the epoch; it is not closed yet
    assert not (await close_epoch(db, config, 0)).already_closed
    assert await closed_total() == 1
    assert (await close_epoch(db, config, 0)).already_closed
    assert await closed_total() == 1  # closing again closes nothing
    assert (await close_epoch(db, config, 1)).root is None  # no rewards: closed all the same
    assert await closed_total() == 2


async def test_a_chain_not_indexed_yet_blocks_the_close(epochs_db, deployment, anvil):
    config = parse_config(
        {
            "epochs": {"genesis": "2020-01-01T00:00:00Z", "length_seconds": 60},
            "chains": [chain_config(deployment, [anvil.url])],
        }
    )
    with pytest.raises(EpochError, match=r"local \(confirmed block time None\)"):
        await close_epoch(epochs_db, config, 0)
    with pytest.raises(EpochError, match="not closed"):
        await proof(epochs_db, 0, VALIDATOR)


async def test_a_reorg_into_a_closed_epoch_is_a_loud_fatal_error_and_changes_nothing(
    epochs_db, driver, deployment, anvil
):
    from indexer.errors import ReorgBelowClosedEpoch
    from indexer.service import build_source
    from indexer.watcher import Watcher

    db = epochs_db
    genesis = (await driver.w3.eth.get_block("latest"))["timestamp"] + 100
    config = parse_config({
        "epochs": {"genesis": datetime.fromtimestamp(genesis, UTC).isoformat(), "length_seconds": LENGTH},
        "validators": [{"id": VALIDATOR, "commission_bps": 0}],
        "chains": [chain_config(deployment, [anvil.url], confirmations=0)],
    })  # fmt: skip
    snapshot = await driver.rpc("evm_snapshot", [])
    await at(driver, genesis + 10)
    await driver.stake("native_v1", driver.accounts[1], VALIDATOR, 100 * TOKEN)
    await at(driver, genesis + LENGTH + 10)
    await driver.mine(1)
    await index_chains(config, db, asyncio.Event(), once=True)
    await add_reward(db, config, 0, VALIDATOR, "KLY", 1000)
    closed = await close_epoch(db, config, 0)
    events, cursor = await db.fetchval("SELECT count(*) FROM events"), await db.fetchrow("SELECT * FROM chain_cursors")

    assert await driver.rpc("evm_revert", [snapshot]) is True  # a branch without the stake
    await at(driver, genesis + 20)
    await driver.mine(3)
    chain = config.chains[0]
    source = build_source(chain, {})
    try:
        with pytest.raises(ReorgBelowClosedEpoch, match="closed reward epoch"):
            await Watcher(source, chain, db).run(asyncio.Event(), once=True)
    finally:
        await source.close()
    assert await db.fetchval("SELECT count(*) FROM events") == events
    assert await db.fetchrow("SELECT * FROM chain_cursors") == cursor
    assert (await close_epoch(db, config, 0)).root == closed.root

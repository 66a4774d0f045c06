"""The event log from a real anvil: every event of every contract variant lands once, exactly."""

from __future__ import annotations

import asyncio

from eth_utils import keccak
from web3 import AsyncWeb3

from indexer.chains.evm import EvmSource
from indexer.config import parse_config
from indexer.localchain import Driver
from indexer.projector.runner import Projector
from tests.integration.conftest import chain_config

ETHER = 10**18
ZERO = "0x" + "00" * 20
POOL_A = "0x" + "a1" * 20
POOL_B = "0x" + "b2" * 20
LOCK = 3 * 24 * 3600

STAKE = keccak(text="StakeOccured(address,address,uint256)")
TOPICS = {  # topic0 -> the event type the indexer must give it
    "0x" + keccak(text=s).hex(): t
    for s, t in [
        ("StakeOccured(address,address,uint256)", "stake"),
        ("StakeOccured(address,string,uint256)", "stake"),
        ("UnstakeOccured(address,address,uint256)", "unstake"),
        ("UnstakeRequested(address,string,uint256,uint256)", "unstake_request"),
        ("UnstakeRequested(address,address,uint256,uint256)", "unstake_request"),
        ("UnstakeMultipleRequested(address,uint256,uint256)", "unstake_batch"),
        ("Withdrawal(address,uint256)", "withdrawal"),
        ("Transfer(address,address,uint256)", "transfer"),
    ]
}


async def index_once(db, deployment, rpc: list[str], **chain_overrides) -> None:
    from indexer.service import index_chains

    config = parse_config(
        {
            "database": {"dsn": "unused"},
            "validators": [{"id": "validator-one"}],
            "chains": [chain_config(deployment, rpc, **chain_overrides)],
        }
    )
    await index_chains(config, db, asyncio.Event(), once=True)


def lower(address: str) -> str:
    return address.lower()


async def staking_script(d: Driver) -> list[tuple]:
    """Drive every action of every variant; return the expected events in order.

    Each is (tx, type, staker, counterparty, pool, amount, token_id, unlock time).
    """
    a, b, c = (lower(x) for x in d.accounts[1:4])
    batcher = d.deployment.batcher
    expected: list[tuple] = []

    async def expect(receipt, *events):
        block = await d.w3.eth.get_block(receipt["blockNumber"])
        for event in events:
            unlock = block["timestamp"] + LOCK if event[0] in ("unstake_request", "unstake_batch") else None
            expected.append((receipt["transactionHash"].to_0x_hex(), *event, unlock))

    # native v1: stake, unstake, unstakeMultiple
    await expect(
        await d.stake("native_v1", a, POOL_A, 5 * ETHER),
        ("transfer", ZERO, a, None, 5 * ETHER, None),
        ("stake", a, None, POOL_A, 5 * ETHER, None),
    )
    await expect(
        await d.stake("native_v1", b, POOL_B, 2 * ETHER),
        ("transfer", ZERO, b, None, 2 * ETHER, None),
        ("stake", b, None, POOL_B, 2 * ETHER, None),
    )
    await expect(
        await d.unstake("native_v1", a, POOL_A, ETHER),
        ("transfer", a, ZERO, None, ETHER, None),
        ("unstake", a, None, POOL_A, ETHER, None),
    )
    await expect(await d.transfer_lst("native_v1", a, c, 2 * ETHER), ("transfer", a, c, None, 2 * ETHER, None))
    await expect(
        await d.unstake_multiple("native_v1", c, [POOL_A, POOL_B], [ETHER, ETHER]),
        ("transfer", c, ZERO, None, ETHER, None),
        ("unstake", c, None, POOL_A, ETHER, None),
        ("transfer", c, ZERO, None, ETHER, None),
        ("unstake", c, None, POOL_B, ETHER, None),
    )
    # native v2: string pools by calldata (validator-three), by trace (validator-two via the batcher),
    # by config pre-seed (validator-one); unstake, unstakeMultiple (aggregate once), withdraw
    await expect(
        await d.stake("native_v2", a, "validator-one", 3 * ETHER),
        ("transfer", ZERO, a, None, 3 * ETHER, None),
        ("stake", a, None, "validator-one", 3 * ETHER, None),
    )
    await expect(
        await d.stake("native_v2", b, "validator-three", 4 * ETHER),
        ("transfer", ZERO, b, None, 4 * ETHER, None),
        ("stake", b, None, "validator-three", 4 * ETHER, None),
    )
    await expect(
        await d.stake_via_batcher_v2(c, ["validator-two"], [6 * ETHER]),
        ("transfer", ZERO, batcher, None, 6 * ETHER, None),
        ("stake", batcher, None, "validator-two", 6 * ETHER, None),
    )
    await expect(
        await d.unstake("native_v2", a, "validator-one", ETHER),
        ("transfer", a, ZERO, None, ETHER, None),
        ("unstake_request", a, None, "validator-one", ETHER, None),
    )
    await expect(
        await d.unstake_multiple("native_v2", b, ["validator-three", "validator-two"], [ETHER, 2 * ETHER]),
        ("transfer", b, ZERO, None, ETHER, None),
        ("unstake_request", b, None, "validator-three", ETHER, None),
        ("transfer", b, ZERO, None, 2 * ETHER, None),
        ("unstake_request", b, None, "validator-two", 2 * ETHER, None),
        ("unstake_batch", b, None, None, 3 * ETHER, None),
    )
    # erc20 v1 and v2
    await expect(
        await d.stake("erc20_v1", a, POOL_A, 7 * ETHER),
        ("transfer", ZERO, a, None, 7 * ETHER, None),
        ("stake", a, None, POOL_A, 7 * ETHER, None),
    )
    await expect(
        await d.unstake("erc20_v1", a, POOL_A, 7 * ETHER),
        ("transfer", a, ZERO, None, 7 * ETHER, None),
        ("unstake", a, None, POOL_A, 7 * ETHER, None),
    )
    await expect(
        await d.stake("erc20_v2", b, POOL_B, 9 * ETHER),
        ("transfer", ZERO, b, None, 9 * ETHER, None),
        ("stake", b, None, POOL_B, 9 * ETHER, None),
    )
    await expect(
        await d.unstake("erc20_v2", b, POOL_B, 4 * ETHER),
        ("transfer", b, ZERO, None, 4 * ETHER, None),
        ("unstake_request", b, None, POOL_B, 4 * ETHER, None),
    )
    await expect(
        await d.unstake_multiple("erc20_v2", b, [POOL_B], [ETHER]),
        ("transfer", b, ZERO, None, ETHER, None),
        ("unstake_request", b, None, POOL_B, ETHER, None),
        ("unstake_batch", b, None, None, ETHER, None),
    )
    # erc721: stake a token, move the LST, the new holder unstakes
    await expect(
        await d.stake("erc721_v1", a, POOL_A, 77), ("transfer", ZERO, a, None, 1, 77), ("stake", a, None, POOL_A, 1, 77)
    )
    await expect(await d.transfer_lst("erc721_v1", a, c, 77), ("transfer", a, c, None, 1, 77))
    await expect(
        await d.unstake("erc721_v1", c, POOL_A, 77),
        ("transfer", c, ZERO, None, 1, 77),
        ("unstake", c, None, POOL_A, 1, 77),
    )
    # erc721 v2: requests name the NFT; NFT 0 can be requested but never withdrawn
    assert await d._nft_owner(0) is None, "NFT 0 must be free for this script"
    for token in (78, 0):
        await expect(
            await d.stake("erc721_v2", a, POOL_B, token),
            ("transfer", ZERO, a, None, 1, token),
            ("stake", a, None, POOL_B, 1, token),
        )
    await expect(await d.transfer_lst("erc721_v2", a, c, 78), ("transfer", a, c, None, 1, 78))
    await expect(
        await d.unstake("erc721_v2", c, POOL_B, 78),
        ("transfer", c, ZERO, None, 1, 78),
        ("unstake_request", c, None, POOL_B, 1, 78),
    )
    await expect(
        await d.unstake("erc721_v2", a, POOL_B, 0),
        ("transfer", a, ZERO, None, 1, 0),
        ("unstake_request", a, None, POOL_B, 1, 0),
    )
    # the 3-day lock, then withdrawals
    await d.advance_time(LOCK + 1)
    await expect(await d.withdraw("native_v2", b), ("withdrawal", b, None, None, 3 * ETHER, None))
    await expect(await d.withdraw("erc20_v2", b), ("withdrawal", b, None, None, 5 * ETHER, None))
    await expect(await d.withdraw("erc721_v2", c), ("withdrawal", c, None, None, 1, 78))
    return expected


async def receipt_logs(w3: AsyncWeb3, tx_hashes: set[str], contracts: set[str]) -> dict[str, list[tuple[int, str]]]:
    """(logIndex, event type) of the staking contracts' logs in each transaction, from the node's receipts."""
    logs: dict[str, list[tuple[int, str]]] = {}
    for tx in tx_hashes:
        receipt = await w3.eth.get_transaction_receipt(tx)
        logs[tx] = [
            (entry["logIndex"], TOPICS[entry["topics"][0].to_0x_hex()])
            for entry in receipt["logs"]
            if entry["address"].lower() in contracts
        ]
    return logs


async def test_every_event_of_every_variant_lands_once_exactly(db, driver, deployment, anvil):
    expected = await staking_script(driver)
    await index_once(db, deployment, [anvil.url])
    await index_once(db, deployment, [anvil.url])  # a second pass adds nothing

    rows = await db.fetch("""SELECT tx_hash, log_index, event_type, staker, counterparty, pool, amount, token_id,
                                    extract(epoch FROM unlock_time)::bigint AS unlock, chain, chain_id, block_number,
                                    block_hash, extract(epoch FROM block_time)::bigint AS time, asset, contract
                               FROM events ORDER BY block_number, log_index""")
    got = [
        (
            r["tx_hash"],
            r["event_type"],
            r["staker"],
            r["counterparty"],
            r["pool"],
            int(r["amount"]),
            None if r["token_id"] is None else int(r["token_id"]),
            r["unlock"],
        )
        for r in rows
    ]
    assert got == expected

    staking = {c["address"] for c in deployment.contracts()}
    by_tx = await receipt_logs(driver.w3, {r["tx_hash"] for r in rows}, staking)
    assert {(r["tx_hash"], r["log_index"], r["event_type"]) for r in rows} == {
        (tx, index, kind) for tx, logs in by_tx.items() for index, kind in logs
    }
    assets = {c["address"]: c["asset"] for c in deployment.contracts()}
    for r in rows:
        block = await driver.w3.eth.get_block(r["block_number"])
        assert (r["block_hash"], r["time"]) == (block["hash"].to_0x_hex(), block["timestamp"])
        assert (r["chain"], r["chain_id"], r["asset"]) == ("local", 31337, assets[r["contract"]])
    assert await db.fetchval("SELECT count(*) FROM events WHERE pool IS NULL AND pool_hash IS NOT NULL") == 0
    # ERC-721 v2: NFT 0's request stays pending (amount 1 with its token id); NFT 78's was settled.
    await Projector(db, parse_config({"chains": [chain_config(deployment, [anvil.url])]})).step()
    pending = await db.fetch("SELECT staker, amount, token_id FROM v_pending_withdrawals WHERE contract = $1",
                             deployment.erc721_v2)  # fmt: skip
    assert [tuple(r) for r in pending] == [(a_of(driver), 1, 0)]


def a_of(driver: Driver) -> str:
    return lower(driver.accounts[1])


async def test_start_block_after_first_events_skips_them(db, driver, deployment, anvil):
    a = lower(driver.accounts[1])
    early = await driver.stake("native_v1", a, POOL_A, ETHER)
    late = await driver.stake("native_v1", a, POOL_B, 2 * ETHER)
    await index_once(db, deployment, [anvil.url], start_block=late["blockNumber"])
    rows = await db.fetch("SELECT DISTINCT tx_hash FROM events")
    assert [r["tx_hash"] for r in rows] == [late["transactionHash"].to_0x_hex()]
    assert early["blockNumber"] < late["blockNumber"]


async def test_unreachable_rpc_url_fails_over_to_the_next(db, driver, deployment, anvil):
    from indexer.localchain.anvil import free_port

    receipt = await driver.stake("native_v1", lower(driver.accounts[1]), POOL_A, ETHER)
    dead = f"http://127.0.0.1:{free_port()}"
    await index_once(db, deployment, [dead, anvil.url])
    assert (
        await db.fetchval("SELECT count(*) FROM events WHERE tx_hash = $1", receipt["transactionHash"].to_0x_hex()) == 2
    )
    assert await db.fetchval("SELECT indexed_block FROM v_indexer_status") == await driver.w3.eth.block_number


async def test_an_answer_beyond_max_response_bytes_is_refused_unread_and_its_range_halved(
    db, driver, deployment, anvil, monkeypatch
):
    pools = [f"0x{i:040x}" for i in range(1, 11)]
    for _ in range(3):  # 3 x 500 stakes in three blocks: 3,000 logs, about 2 MB in one answer
        await driver.stake_many_native_v1(driver.accounts[1], pools, 1, 50)
    sizes: list[int] = []
    fetch_logs = EvmSource.fetch_logs

    async def recorded(self, start, last_allowed, headers_from=None):
        fetched = await fetch_logs(self, start, last_allowed, headers_from)
        sizes.append(fetched.last.number - start + 1)
        return fetched

    monkeypatch.setattr(EvmSource, "fetch_logs", recorded)
    head = await driver.w3.eth.block_number
    await index_once(db, deployment, [anvil.url], initial_block_range=head + 1, max_block_range=head + 1,
                     max_response_bytes=1 << 20)  # fmt: skip
    assert await db.fetchval("SELECT count(*) FROM events WHERE contract = $1", deployment.native_v1.lower()) == 3_000
    assert sizes[0] < head + 1  # the whole chain in one answer was refused; smaller ranges took it all


async def test_string_pool_behind_a_batcher_is_named_by_the_call_tracer(db, driver, deployment, anvil):
    receipt = await driver.stake_via_batcher_v2(
        driver.accounts[2], ["validator-four", "validator-five"], [ETHER, 2 * ETHER]
    )
    await index_once(db, deployment, [anvil.url])
    rows = await db.fetch(
        "SELECT pool, amount FROM events WHERE tx_hash = $1 AND event_type = 'stake' ORDER BY log_index",
        receipt["transactionHash"].to_0x_hex(),
    )
    assert [(r["pool"], int(r["amount"])) for r in rows] == [("validator-four", ETHER), ("validator-five", 2 * ETHER)]


async def test_unresolved_pool_is_counted_then_named_by_a_later_transaction(db, driver, deployment, anvil):
    hidden = await driver.stake_via_batcher_v2(driver.accounts[2], ["validator-six"], [ETHER])
    await index_once(db, deployment, [anvil.url], use_call_tracer=False)
    row = await db.fetchrow(
        "SELECT pool, pool_hash FROM events WHERE tx_hash = $1 AND event_type = 'stake'",
        hidden["transactionHash"].to_0x_hex(),
    )
    assert (row["pool"], row["pool_hash"]) == (None, "0x" + keccak(text="validator-six").hex())
    assert await db.fetchval("SELECT unresolved_pools FROM v_indexer_status WHERE chain = 'local'") == 1

    await driver.stake("native_v2", driver.accounts[3], "validator-six", ETHER)  # a direct call names it
    await index_once(db, deployment, [anvil.url], use_call_tracer=False)
    assert (
        await db.fetchval(
            "SELECT pool FROM events WHERE tx_hash = $1 AND event_type = 'stake'", hidden["transactionHash"].to_0x_hex()
        )
        == "validator-six"
    )
    assert await db.fetchval("SELECT unresolved_pools FROM v_indexer_status WHERE chain = 'local'") == 0

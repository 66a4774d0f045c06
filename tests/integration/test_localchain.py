"""The local chain harness: anvil, deployment and traffic produce the SPEC's events and state."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest
from eth_abi import decode
from eth_utils import keccak

from indexer.localchain import Anvil, Driver, TransactionReverted, anvil_binary, realistic_mix
from indexer.localchain.traffic import LOCK_SECONDS

pytestmark = pytest.mark.integration

ETHER = 10**18
ZERO_TOPIC = "0x" + "00" * 32

# Addresses of a deploy_all on a fresh anvil (deployer = accounts[0], nonces 0..8).
EXPECTED_ADDRESSES = {
    "token": "0x5fbdb2315678afecb367f032d93f642f64180aa3",
    "nft": "0xe7f1725e7734ce288f8367e1bb143e90bb3f0512",
    "native_v1": "0x9fe46736679d2d9a65f0992f2272de9f3c7fa6e0",
    "native_v2": "0xcf7ed3acca5a467e9e704c703e8d87f634fb0fc9",
    "erc20_v1": "0xdc64a140aa3e981100a9beca4e685f962f0cf6c9",
    "erc20_v2": "0x5fc8d32690cc91d4c39d9d3abcbd16989f875707",
    "erc721_v1": "0x0165878a594ca255338adfa4d48449f69242eb8f",
    "batcher": "0xa513e6e4b8f2a923d98304ec87f64353c4d5c853",
    "erc721_v2": "0x2279b7a0a67db372996a5fab50d91eaa73d2ebe6",
}


def topic0(signature: str) -> str:
    """keccak256 of an event signature, as a 0x topic."""
    return "0x" + keccak(text=signature).hex()


TRANSFER = topic0("Transfer(address,address,uint256)")
STAKE_ADDR = topic0("StakeOccured(address,address,uint256)")
STAKE_STR = topic0("StakeOccured(address,string,uint256)")
UNSTAKE = topic0("UnstakeOccured(address,address,uint256)")
REQUEST_STR = topic0("UnstakeRequested(address,string,uint256,uint256)")
REQUEST_ADDR = topic0("UnstakeRequested(address,address,uint256,uint256)")
REQUEST_MULTI = topic0("UnstakeMultipleRequested(address,uint256,uint256)")
WITHDRAWAL = topic0("Withdrawal(address,uint256)")


def addr_topic(address: str) -> str:
    """An address as an indexed topic."""
    return "0x" + "00" * 12 + address.lower().removeprefix("0x")


def int_topic(value: int) -> str:
    """A uint256 as an indexed topic."""
    return "0x" + value.to_bytes(32, "big").hex()


def string_topic(value: str) -> str:
    """An indexed string: keccak256 of its bytes."""
    return "0x" + keccak(text=value).hex()


def simple_logs(receipt: Any) -> list[dict[str, Any]]:
    """Receipt logs as plain dicts: lower-case address, 0x topics, 0x data."""
    return [
        {
            "address": log["address"].lower(),
            "topics": [t.to_0x_hex() for t in log["topics"]],
            "data": log["data"].to_0x_hex(),
        }
        for log in receipt["logs"]
    ]


def by_topic(receipt: Any, topic: str) -> list[dict[str, Any]]:
    """Logs of a receipt whose topic0 is `topic`."""
    return [log for log in simple_logs(receipt) if log["topics"][0] == topic]


def data_uint(log: dict[str, Any]) -> int:
    """The single non-indexed uint256 of a log."""
    return int(decode(["uint256"], bytes.fromhex(log["data"][2:]))[0])


async def pool_of(driver: Driver, contract: str, pool: str) -> int:
    """stakingPools(pool) of a fungible staking contract; the number of NFTs getStakedTokens(pool) lists."""
    return await driver.pool_size(contract, pool)


async def lst_balance(driver: Driver, contract: str, holder: str) -> int:
    """balanceOf(holder) of a contract."""
    return int(await driver.contract(contract).functions.balanceOf(holder).call())


async def native_balance_change(driver: Driver, holder: str, receipt: Any, before: int) -> int:
    """Change of the holder's native balance, with the receipt's gas fee added back."""
    after = await driver.w3.eth.get_balance(holder)
    return after - before + receipt["gasUsed"] * receipt["effectiveGasPrice"]


def test_anvil_binary_honours_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """ANVIL_BIN wins, and a missing one is a clear error."""
    monkeypatch.setenv("ANVIL_BIN", str(tmp_path / "nope"))
    with pytest.raises(RuntimeError, match="ANVIL_BIN"):
        anvil_binary()
    monkeypatch.delenv("ANVIL_BIN")
    assert anvil_binary().is_file()


def test_anvil_start_failure_reports_stderr() -> None:
    """A node that cannot start raises with anvil's own complaint."""
    node = Anvil(extra_args=["--no-such-flag"])
    with pytest.raises(RuntimeError, match="no-such-flag"):
        node.start()
    assert not node.running


async def test_deployment_is_deterministic(driver: Driver, anvil: Anvil) -> None:
    """Fresh anvil + deploy_all gives fixed addresses and chains.yaml-ready entries."""
    assert driver.deployment.as_dict() == EXPECTED_ADDRESSES
    assert await driver.w3.eth.chain_id == 31337
    entries = driver.deployment.contracts()
    assert [(c["name"], c["kind"], c["version"], c["asset"], c["decimals"]) for c in entries] == [
        ("klyeth_v1", "native", 1, "ETH", 18),
        ("klyeth", "native", 2, "ETH", 18),
        ("klytoken_v1", "erc20", 1, "TKN", 18),
        ("klytoken", "erc20", 2, "TKN", 18),
        ("klynft", "erc721", 1, "NFT", 0),
        ("klynft_v2", "erc721", 2, "NFT", 0),
    ]
    for entry in entries:
        assert await driver.w3.eth.get_code(driver.w3.to_checksum_address(entry["address"]))
    for contract in ("native_v2", "erc20_v2", "erc721_v2"):
        assert int(await driver.contract(contract).functions.lockPeriod().call()) == 3 * 86_400


async def test_native_v1_stake_and_unstake_by_another_holder(driver: Driver) -> None:
    """Stake mints LST; a non-staker holding transferred LST unstakes and is paid at once."""
    staker, holder, pool = driver.accounts[1], driver.accounts[9], driver.accounts[16]
    dep = driver.deployment
    pool_before = await pool_of(driver, "native_v1", pool)
    receipt = await driver.stake("native_v1", staker, pool, 5 * ETHER)
    logs = simple_logs(receipt)
    assert [log["topics"][0] for log in logs] == [TRANSFER, STAKE_ADDR]
    assert logs[0]["topics"][1:] == [ZERO_TOPIC, addr_topic(staker)]
    assert logs[1] == {
        "address": dep.native_v1,
        "topics": [STAKE_ADDR, addr_topic(staker), addr_topic(pool), int_topic(5 * ETHER)],
        "data": "0x",
    }
    assert await pool_of(driver, "native_v1", pool) == pool_before + 5 * ETHER

    await driver.transfer_lst("native_v1", staker, holder, 2 * ETHER)
    eth_before = await driver.w3.eth.get_balance(holder)
    receipt = await driver.unstake("native_v1", holder, pool, 2 * ETHER)
    [burn] = by_topic(receipt, TRANSFER)
    assert burn["topics"][1:] == [addr_topic(holder), ZERO_TOPIC]
    [event] = by_topic(receipt, UNSTAKE)
    assert event["topics"][1:] == [addr_topic(holder), addr_topic(pool), int_topic(2 * ETHER)]
    assert await native_balance_change(driver, holder, receipt, eth_before) == 2 * ETHER
    assert await pool_of(driver, "native_v1", pool) == pool_before + 3 * ETHER
    assert await lst_balance(driver, "native_v1", holder) == 0

    with pytest.raises(TransactionReverted, match="pool balance too low"):
        await driver.unstake("native_v1", staker, driver.accounts[19], ETHER)
    with pytest.raises(TransactionReverted, match="ERC20InsufficientBalance"):
        await driver.unstake("native_v1", holder, pool, ETHER)  # holds no LST any more


async def test_v1_unstake_multiple_emits_one_event_per_pool(driver: Driver) -> None:
    """unstakeMultiple on v1 (native and erc20) pays out and logs each pool once."""
    staker = driver.accounts[2]
    pools = driver.accounts[16:18]
    for contract in ("native_v1", "erc20_v1"):
        for pool in pools:
            await driver.stake(contract, staker, pool, 4 * ETHER)
        before = [await pool_of(driver, contract, p) for p in pools]
        receipt = await driver.unstake_multiple(contract, staker, pools, [ETHER, 3 * ETHER])
        events = by_topic(receipt, UNSTAKE)
        assert [e["topics"][1:] for e in events] == [
            [addr_topic(staker), addr_topic(pools[0]), int_topic(ETHER)],
            [addr_topic(staker), addr_topic(pools[1]), int_topic(3 * ETHER)],
        ]
        assert {e["address"] for e in events} == {getattr(driver.deployment, contract)}
        assert len(by_topic(receipt, TRANSFER)) == (2 if contract == "native_v1" else 4)
        assert [await pool_of(driver, contract, p) for p in pools] == [before[0] - ETHER, before[1] - 3 * ETHER]


async def test_erc20_v1_moves_the_token(driver: Driver) -> None:
    """Staking pulls the token in; unstaking returns it immediately."""
    staker, pool = driver.accounts[3], driver.accounts[17]
    token = driver.contract("token")
    staking = driver.deployment.erc20_v1
    held_before = int(await token.functions.balanceOf(driver.w3.to_checksum_address(staking)).call())
    pool_before = await pool_of(driver, "erc20_v1", pool)
    receipt = await driver.stake("erc20_v1", staker, pool, 7 * ETHER)
    [event] = by_topic(receipt, STAKE_ADDR)
    assert event["address"] == staking
    assert event["topics"][1:] == [addr_topic(staker), addr_topic(pool), int_topic(7 * ETHER)]
    staking_balance = token.functions.balanceOf(driver.w3.to_checksum_address(staking))
    assert int(await staking_balance.call()) == held_before + 7 * ETHER
    assert int(await token.functions.balanceOf(staker).call()) == 0
    assert await pool_of(driver, "erc20_v1", pool) == pool_before + 7 * ETHER
    await driver.unstake("erc20_v1", staker, pool, 7 * ETHER)
    assert await pool_of(driver, "erc20_v1", pool) == pool_before
    assert int(await token.functions.balanceOf(staker).call()) == 7 * ETHER
    assert await lst_balance(driver, "erc20_v1", staker) == 0


async def test_native_v2_string_pool_lock_and_withdraw(driver: Driver) -> None:
    """String pools are hashed in topics; withdraw reverts before 3 days and pays after."""
    staker, pool = driver.accounts[4], "validator-one"
    before = await pool_of(driver, "native_v2", pool)
    receipt = await driver.stake("native_v2", staker, pool, 3 * ETHER)
    [event] = by_topic(receipt, STAKE_STR)
    assert event["topics"][1:] == [addr_topic(staker), string_topic(pool), int_topic(3 * ETHER)]
    assert await pool_of(driver, "native_v2", pool) == before + 3 * ETHER

    receipt = await driver.unstake("native_v2", staker, pool, ETHER)
    block = await driver.w3.eth.get_block(receipt["blockNumber"])
    [request] = by_topic(receipt, REQUEST_STR)
    assert request["topics"][1:] == [addr_topic(staker), string_topic(pool), int_topic(ETHER)]
    unlock = data_uint(request)
    assert unlock == block["timestamp"] + LOCK_SECONDS
    assert [t["topics"][1:] for t in by_topic(receipt, TRANSFER)] == [[addr_topic(staker), ZERO_TOPIC]]
    assert await pool_of(driver, "native_v2", pool) == before + 2 * ETHER
    assert (await driver.withdrawal_requests("native_v2", staker))[-1] == (ETHER, unlock)

    with pytest.raises(TransactionReverted, match="nothing to withdraw"):
        await driver.withdraw("native_v2", staker)
    await driver.advance_time(LOCK_SECONDS - 120)
    with pytest.raises(TransactionReverted, match="nothing to withdraw"):
        await driver.withdraw("native_v2", staker)
    await driver.advance_time(240)
    eth_before = await driver.w3.eth.get_balance(staker)
    receipt = await driver.withdraw("native_v2", staker)
    assert (await driver.w3.eth.get_block(receipt["blockNumber"]))["timestamp"] >= unlock
    [withdrawal] = simple_logs(receipt)
    assert withdrawal["topics"] == [WITHDRAWAL, addr_topic(staker), int_topic(ETHER)]
    assert await native_balance_change(driver, staker, receipt, eth_before) == ETHER
    assert (await driver.withdrawal_requests("native_v2", staker))[-1] == (0, 0)  # deleted in place
    with pytest.raises(TransactionReverted, match="nothing to withdraw"):
        await driver.withdraw("native_v2", staker)


@pytest.mark.parametrize("contract", ["native_v2", "erc20_v2"])
async def test_v2_unstake_multiple_emits_per_pool_and_aggregate(driver: Driver, contract: str) -> None:
    """unstakeMultiple on v2: one UnstakeRequested per pool, then one UnstakeMultipleRequested."""
    staker = driver.accounts[5]
    if contract == "native_v2":
        pools, pool_topics, request_topic = ["validator-two", "validator-three"], string_topic, REQUEST_STR
    else:
        pools, pool_topics, request_topic = driver.accounts[16:18], addr_topic, REQUEST_ADDR
    for pool in pools:
        await driver.stake(contract, staker, pool, 10 * ETHER)
    amounts = [2 * ETHER, 5 * ETHER]
    receipt = await driver.unstake_multiple(contract, staker, pools, amounts)
    logs = simple_logs(receipt)
    assert [log["topics"][0] for log in logs] == [TRANSFER, request_topic, TRANSFER, request_topic, REQUEST_MULTI]
    requests = by_topic(receipt, request_topic)
    assert [r["topics"][1:] for r in requests] == [
        [addr_topic(staker), pool_topics(pools[0]), int_topic(amounts[0])],
        [addr_topic(staker), pool_topics(pools[1]), int_topic(amounts[1])],
    ]
    [aggregate] = by_topic(receipt, REQUEST_MULTI)
    assert aggregate["topics"][1:] == [addr_topic(staker), int_topic(sum(amounts))]
    unlock = data_uint(aggregate)
    assert [data_uint(r) for r in requests] == [unlock, unlock]
    assert {log["address"] for log in logs} == {getattr(driver.deployment, contract)}

    with pytest.raises(TransactionReverted):
        await driver.withdraw(contract, staker)
    await driver.advance_time(LOCK_SECONDS + 1)
    receipt = await driver.withdraw(contract, staker)
    [withdrawal] = by_topic(receipt, WITHDRAWAL)
    assert withdrawal["topics"][1:] == [addr_topic(staker), int_topic(sum(amounts))]
    if contract == "erc20_v2":
        assert int(await driver.contract("token").functions.balanceOf(staker).call()) >= sum(amounts)


@pytest.mark.parametrize("contract", ["erc721_v1", "erc721_v2"])
async def test_erc721_stake_transfer_unstake(driver: Driver, contract: str) -> None:
    """The LST is the same tokenId; only its holder, naming the pool that holds it, can unstake."""
    staker, holder = driver.accounts[6], driver.accounts[7]
    pool, other_pool = driver.accounts[16], driver.accounts[17]
    [token_id] = await driver.fresh_token_ids(1, start=100)
    before = await driver.staked_tokens(contract, pool)
    receipt = await driver.stake(contract, staker, pool, token_id)
    [event] = by_topic(receipt, STAKE_ADDR)
    assert event["address"] == getattr(driver.deployment, contract)
    assert event["topics"][1:] == [addr_topic(staker), addr_topic(pool), int_topic(token_id)]
    lst, nft = driver.contract(contract), driver.contract("nft")
    assert await lst.functions.ownerOf(token_id).call() == staker
    assert (await nft.functions.ownerOf(token_id).call()).lower() == getattr(driver.deployment, contract)
    assert sorted(await driver.staked_tokens(contract, pool)) == sorted([*before, token_id])

    await driver.transfer_lst(contract, staker, holder, token_id)
    with pytest.raises(TransactionReverted, match="not the LST's holder"):
        await driver.unstake(contract, staker, pool, token_id)
    with pytest.raises(TransactionReverted, match="not staked in this pool"):
        await driver.unstake(contract, holder, other_pool, token_id)
    receipt = await driver.unstake(contract, holder, pool, token_id)
    [event] = by_topic(receipt, UNSTAKE if contract == "erc721_v1" else REQUEST_ADDR)
    assert event["topics"][1:] == [addr_topic(holder), addr_topic(pool), int_topic(token_id)]
    if contract == "erc721_v2":  # the NFT comes back only after the lock, through withdraw()
        assert (await nft.functions.ownerOf(token_id).call()).lower() == driver.deployment.erc721_v2
        await driver.advance_time(LOCK_SECONDS)
        receipt = await driver.withdraw(contract, holder)
        assert [log["topics"][1:] for log in by_topic(receipt, WITHDRAWAL)] == [
            [addr_topic(holder), int_topic(token_id)]
        ]
    assert await nft.functions.ownerOf(token_id).call() == holder
    assert sorted(await driver.staked_tokens(contract, pool)) == sorted(before)
    assert await lst_balance(driver, contract, holder) == 0


async def test_erc721_v2_withdraw_returns_each_matured_nft_and_never_token_zero(driver: Driver) -> None:
    """One Withdrawal per NFT returned; settled entries read (0, 0) in place; a request for NFT 0 stays."""
    staker, pool = driver.accounts[8], driver.accounts[17]
    first, second, third = await driver.fresh_token_ids(3, start=200)
    zero_free = await driver._nft_owner(0) is None
    ids = [first, second, third] + ([0] if zero_free else [])
    for token_id in ids:
        await driver.stake("erc721_v2", staker, pool, token_id)
    for token_id in (first, second, *([0] if zero_free else [])):
        await driver.unstake("erc721_v2", staker, pool, token_id)
    await driver.advance_time(LOCK_SECONDS)
    await driver.unstake("erc721_v2", staker, pool, third)  # not matured at the withdraw below
    receipt = await driver.withdraw("erc721_v2", staker)
    withdrawn = [int(log["topics"][2], 16) for log in by_topic(receipt, WITHDRAWAL)]
    assert withdrawn == [first, second]
    entries = await driver.withdrawal_requests("erc721_v2", staker)
    assert entries[:2] == [(0, 0), (0, 0)]
    if zero_free:
        assert entries[2][0] == 0 and entries[2][1] > 0  # NFT 0: matured, never returned
    assert entries[-1][0] == third
    with pytest.raises(TransactionReverted, match="nothing to withdraw"):
        await driver.withdraw("erc721_v2", staker)


async def test_batcher_calls_are_visible_to_the_call_tracer(driver: Driver) -> None:
    """A batcher-forwarded v2 stake: top-level calldata is not stake(string), callTracer shows the inner call."""
    staker = driver.accounts[8]
    dep = driver.deployment
    receipt = await driver.stake_via_batcher_v2(staker, ["validator-one", "validator-two"], [ETHER, 2 * ETHER])
    tx = await driver.w3.eth.get_transaction(receipt["transactionHash"])
    assert tx["to"].lower() == dep.batcher
    stake_selector = "0x" + keccak(text="stake(string)")[:4].hex()
    assert not tx["input"].to_0x_hex().startswith(stake_selector)
    events = by_topic(receipt, STAKE_STR)
    assert [e["topics"][1:3] for e in events] == [
        [addr_topic(dep.batcher), string_topic("validator-one")],
        [addr_topic(dep.batcher), string_topic("validator-two")],
    ]
    assert await lst_balance(driver, "native_v2", driver.w3.to_checksum_address(dep.batcher)) >= 3 * ETHER

    trace = await driver.rpc(
        "debug_traceTransaction", [receipt["transactionHash"].to_0x_hex(), {"tracer": "callTracer"}]
    )
    assert trace["type"] == "CALL" and trace["to"] == dep.batcher
    inner = trace["calls"]
    assert [(c["type"], c["to"], c["input"][:10]) for c in inner] == [("CALL", dep.native_v2, stake_selector)] * 2
    names = [decode(["string"], bytes.fromhex(c["input"][10:]))[0] for c in inner]
    assert names == ["validator-one", "validator-two"]

    receipt = await driver.unstake_via_batcher_v2(staker, "validator-two", ETHER)
    [request] = by_topic(receipt, REQUEST_STR)
    assert request["topics"][1:3] == [addr_topic(dep.batcher), string_topic("validator-two")]


async def test_stake_many_in_one_transaction(driver: Driver) -> None:
    """The batcher emits rounds x pools (or count) stake events in a single transaction."""
    sender, pools = driver.accounts[10], driver.accounts[16:18]
    before = [await pool_of(driver, "native_v1", p) for p in pools]
    receipt = await driver.stake_many_native_v1(sender, pools, 10**9, 50)
    events = by_topic(receipt, STAKE_ADDR)
    assert len(events) == 100 and len(by_topic(receipt, TRANSFER)) == 100
    assert [await pool_of(driver, "native_v1", p) for p in pools] == [b + 50 * 10**9 for b in before]

    pool = driver.accounts[18]
    before_erc20 = await pool_of(driver, "erc20_v1", pool)
    receipt = await driver.stake_many_erc20_v1(sender, pool, 3 * ETHER, 40)
    events = [e for e in by_topic(receipt, STAKE_ADDR) if e["address"] == driver.deployment.erc20_v1]
    assert len(events) == 40
    assert await pool_of(driver, "erc20_v1", pool) == before_erc20 + 120 * ETHER


async def test_logs_carry_block_timestamp_and_mine_works(driver: Driver) -> None:
    """anvil's eth_getLogs includes blockTimestamp (hex) equal to the block's timestamp; anvil_mine mines n blocks."""
    await driver.stake("native_v1", driver.accounts[1], "0x" + "a1" * 20, ETHER)
    start = await driver.w3.eth.block_number
    await driver.mine(5)
    assert await driver.w3.eth.block_number == start + 5
    logs = await driver.rpc("eth_getLogs", [{"fromBlock": "0x0", "toBlock": "latest"}])
    assert logs
    sample = logs[-1]
    block = await driver.w3.eth.get_block(int(sample["blockNumber"], 16))
    assert int(sample["blockTimestamp"], 16) == block["timestamp"]


async def test_realistic_mix_events_reconcile_with_state(driver: Driver) -> None:
    """After realistic_mix, folding every log reproduces the pools and balanceOf of all six contracts."""
    sent = await realistic_mix(driver)
    assert sent > 50
    w3, dep = driver.w3, driver.deployment
    names = ["validator-one", "validator-two", "validator-three"]
    for contract in ("native_v1", "native_v2", "erc20_v1", "erc20_v2", "erc721_v1", "erc721_v2"):
        nft = contract.startswith("erc721")
        address = getattr(dep, contract)
        logs = await driver.rpc("eth_getLogs", [{"fromBlock": "0x0", "toBlock": "latest", "address": address}])
        pools: dict[str, int] = defaultdict(int)
        balances: dict[str, int] = defaultdict(int)
        kinds: set[str] = set()
        for log in logs:
            topics = log["topics"]
            kinds.add(topics[0])
            if topics[0] in (STAKE_ADDR, STAKE_STR):
                pools[topics[2]] += 1 if nft else int(topics[3], 16)
            elif topics[0] in (UNSTAKE, REQUEST_STR, REQUEST_ADDR):
                pools[topics[2]] -= 1 if nft else int(topics[3], 16)
            elif topics[0] == TRANSFER:
                value = 1 if nft else int(topics[3] if len(topics) == 4 else log["data"], 16)
                balances[topics[1]] -= value
                balances[topics[2]] += value
        if contract.endswith("v2"):
            assert ({WITHDRAWAL} if nft else {REQUEST_MULTI, WITHDRAWAL}) <= kinds, contract
        candidates = names if contract == "native_v2" else [a.lower() for a in driver.accounts]
        topic_of = string_topic if contract == "native_v2" else addr_topic
        for pool in candidates:
            assert await pool_of(driver, contract, pool) == pools.get(topic_of(pool), 0), (contract, pool)
        assert set(pools) <= {topic_of(p) for p in candidates}
        for topic, amount in balances.items():
            if topic != ZERO_TOPIC:
                holder = w3.to_checksum_address("0x" + topic[-40:])
                assert await lst_balance(driver, contract, holder) == amount, (contract, holder)
        if not nft:  # the ERC-721 LST has no totalSupply
            assert int(await driver.contract(contract).functions.totalSupply().call()) == -balances[ZERO_TOPIC]

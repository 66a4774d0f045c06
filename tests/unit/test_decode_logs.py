"""Decoding raw logs of every contract variant into Events (pure)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from eth_abi import encode
from eth_utils import keccak
from hypothesis import given
from hypothesis import strategies as st

from indexer.decode.logs import ChainSpec, LogDecoder, MalformedLog, needs_pool_name
from indexer.errors import DecodeError
from indexer.events import EventType

CHAIN = ChainSpec("local", 31337)
CONTRACT = "0x" + "ab" * 20
STAKER = "0x" + "11" * 20
POOL = "0x" + "22" * 20
OTHER = "0x" + "33" * 20
ZERO = "0x" + "00" * 20


@dataclass(frozen=True)
class Contract:
    name: str
    kind: str
    version: int
    asset: str
    address: str = CONTRACT


def t(signature: str) -> str:
    return "0x" + keccak(text=signature).hex()


def word(value: int | str) -> str:
    if isinstance(value, str):  # address
        return "0x" + value[2:].rjust(64, "0")
    return "0x" + value.to_bytes(32, "big").hex()


def raw(topics: list[str], data: bytes = b"", block_number: int = 7, **extra) -> dict:
    """A log as eth_getLogs returns it."""
    return {
        "address": CONTRACT,
        "topics": topics,
        "data": "0x" + data.hex(),
        "blockNumber": hex(block_number),
        "blockHash": "0x" + "cd" * 32,
        "transactionHash": "0x" + "ef" * 32,
        "logIndex": "0x3",
        "removed": False,
    } | extra


def decode(log: dict, kind: str, version: int, names=None):
    number = int(log["blockNumber"], 16)
    return LogDecoder(Contract("c", kind, version, "ETH"), CHAIN).decode(log, names or {}, {number: 1_700_000_000})


@pytest.mark.parametrize("kind", ["native", "erc20"])
def test_v1_stake_and_unstake_carry_address_pool_and_amount(kind):
    stake = decode(
        raw([t("StakeOccured(address,address,uint256)"), word(STAKER), word(POOL), word(5 * 10**18)]), kind, 1
    )
    assert (stake.event_type, stake.staker, stake.pool, stake.amount) == (EventType.STAKE, STAKER, POOL, 5 * 10**18)
    assert (stake.chain, stake.chain_id, stake.block_number, stake.log_index, stake.block_time) == (
        "local",
        31337,
        7,
        3,
        1_700_000_000,
    )
    assert stake.asset == "ETH" and stake.contract == CONTRACT and stake.contract_kind == kind
    unstake = decode(raw([t("UnstakeOccured(address,address,uint256)"), word(STAKER), word(POOL), word(2)]), kind, 1)
    assert (unstake.event_type, unstake.staker, unstake.pool, unstake.amount) == (EventType.UNSTAKE, STAKER, POOL, 2)


def test_native_v2_stake_resolves_string_pool_from_known_names():
    name = "validator-one"
    pool_hash = "0x" + keccak(text=name).hex()
    log = raw([t("StakeOccured(address,string,uint256)"), word(STAKER), pool_hash, word(10)])
    resolved = decode(log, "native", 2, {pool_hash: name})
    assert (resolved.pool, resolved.pool_hash, resolved.pool_resolved) == (name, pool_hash, True)
    unresolved = decode(log, "native", 2)
    assert (unresolved.pool, unresolved.pool_hash, unresolved.pool_resolved) == (None, pool_hash, False)
    assert needs_pool_name(log, Contract("c", "native", 2, "ETH")) == pool_hash


def test_native_v2_unstake_request_has_unlock_time_from_data():
    pool_hash = "0x" + keccak(text="v").hex()
    log = raw(
        [t("UnstakeRequested(address,string,uint256,uint256)"), word(STAKER), pool_hash, word(9)],
        encode(["uint256"], [1_700_259_200]),
    )
    event = decode(log, "native", 2, {pool_hash: "v"})
    assert (event.event_type, event.pool, event.amount, event.unlock_time) == (
        EventType.UNSTAKE_REQUEST,
        "v",
        9,
        1_700_259_200,
    )


def test_erc20_v2_unstake_request_has_address_pool():
    log = raw(
        [t("UnstakeRequested(address,address,uint256,uint256)"), word(STAKER), word(POOL), word(4)],
        encode(["uint256"], [123]),
    )
    event = decode(log, "erc20", 2)
    assert (event.event_type, event.pool, event.amount, event.unlock_time) == (EventType.UNSTAKE_REQUEST, POOL, 4, 123)


@pytest.mark.parametrize("kind", ["native", "erc20"])
def test_v2_batch_aggregate_and_withdrawal(kind):
    batch = decode(
        raw(
            [t("UnstakeMultipleRequested(address,uint256,uint256)"), word(STAKER), word(30)], encode(["uint256"], [99])
        ),
        kind,
        2,
    )
    assert (batch.event_type, batch.staker, batch.amount, batch.unlock_time, batch.pool) == (
        EventType.UNSTAKE_BATCH,
        STAKER,
        30,
        99,
        None,
    )
    withdrawal = decode(raw([t("Withdrawal(address,uint256)"), word(STAKER), word(30)]), kind, 2)
    assert (withdrawal.event_type, withdrawal.staker, withdrawal.amount, withdrawal.pool) == (
        EventType.WITHDRAWAL,
        STAKER,
        30,
        None,
    )


def test_erc20_transfer_value_in_data_and_erc721_token_in_topic():
    transfer = decode(
        raw([t("Transfer(address,address,uint256)"), word(ZERO), word(OTHER)], encode(["uint256"], [2**256 - 1])),
        "native",
        1,
    )
    assert (transfer.event_type, transfer.staker, transfer.counterparty, transfer.amount, transfer.token_id) == (
        EventType.TRANSFER,
        ZERO,
        OTHER,
        2**256 - 1,
        None,
    )
    nft = decode(raw([t("Transfer(address,address,uint256)"), word(STAKER), word(OTHER), word(42)]), "erc721", 1)
    assert (nft.staker, nft.counterparty, nft.amount, nft.token_id) == (STAKER, OTHER, 1, 42)


def test_erc721_stake_counts_one_token():
    event = decode(raw([t("StakeOccured(address,address,uint256)"), word(STAKER), word(POOL), word(77)]), "erc721", 1)
    assert (event.event_type, event.pool, event.amount, event.token_id) == (EventType.STAKE, POOL, 1, 77)


def test_erc721_v2_request_and_withdrawal_name_the_token():
    """ERC-721 v2: UnstakeRequested carries the token id (amount 1) and its unlock time; each Withdrawal one NFT."""
    request = decode(
        raw(
            [t("UnstakeRequested(address,address,uint256,uint256)"), word(STAKER), word(POOL), word(9)],
            encode(["uint256"], [1_700_259_200]),
        ),
        "erc721",
        2,
    )
    assert (
        request.event_type,
        request.staker,
        request.pool,
        request.amount,
        request.token_id,
        request.unlock_time,
    ) == (
        EventType.UNSTAKE_REQUEST,
        STAKER,
        POOL,
        1,
        9,
        1_700_259_200,
    )
    withdrawal = decode(raw([t("Withdrawal(address,uint256)"), word(STAKER), word(0)]), "erc721", 2)
    assert (withdrawal.event_type, withdrawal.amount, withdrawal.token_id) == (EventType.WITHDRAWAL, 1, 0)
    fungible = decode(raw([t("Withdrawal(address,uint256)"), word(STAKER), word(5)]), "erc20", 2)
    assert (fungible.amount, fungible.token_id) == (5, None)


def test_erc721_v2_has_no_unstake_multiple():
    log = raw([t("UnstakeMultipleRequested(address,uint256,uint256)"), word(STAKER), word(3)], encode(["uint256"], [1]))
    with pytest.raises(DecodeError, match="kind.*version"):
        decode(log, "erc721", 2)


def test_unfollowed_events_are_skipped():
    approval = raw([t("Approval(address,address,uint256)"), word(STAKER), word(OTHER)], encode(["uint256"], [1]))
    assert decode(approval, "erc20", 1) is None


def test_staking_event_of_another_version_is_a_decode_error_naming_the_contract():
    log = raw([t("StakeOccured(address,string,uint256)"), word(STAKER), word(5), word(1)])
    with pytest.raises(DecodeError, match="kind.*version"):
        decode(log, "native", 1)


def test_log_with_wrong_topic_count_is_a_decode_error():
    with pytest.raises(DecodeError, match="does not match"):
        decode(raw([t("StakeOccured(address,address,uint256)"), word(STAKER), word(POOL)]), "native", 1)


def test_node_timestamp_and_upper_case_hex_are_read():
    log = raw(
        [
            t("Withdrawal(address,uint256)").upper().replace("0X", "0x"),
            word(STAKER.upper()[2:].rjust(42, "0")),
            word(1),
        ],
        address=CONTRACT.upper().replace("0X", "0x"),
        blockHash="0x" + "AA" * 32,
        blockTimestamp="0x10",
    )
    event = decode(log, "native", 2)
    assert (event.contract, event.block_time, event.block_hash) == (CONTRACT, 16, "0x" + "aa" * 32)
    assert event.staker == STAKER


def test_broken_log_from_the_node_is_malformed_not_an_abi_error():
    log = raw([t("Withdrawal(address,uint256)"), word(STAKER), word(1)])
    del log["transactionHash"]
    with pytest.raises(MalformedLog, match="malformed log"):
        decode(log, "native", 2)
    with pytest.raises(MalformedLog):
        decode(raw([t("Withdrawal(address,uint256)"), word(STAKER), word(1)], logIndex="zz"), "native", 2)


@given(amount=st.integers(min_value=0, max_value=2**256 - 1), block=st.integers(0, 2**40))
def test_any_uint256_amount_round_trips_exactly(amount, block):
    event = decode(
        raw([t("StakeOccured(address,address,uint256)"), word(STAKER), word(POOL), word(amount)], block_number=block),
        "erc20",
        2,
    )
    assert event.amount == amount and event.block_number == block

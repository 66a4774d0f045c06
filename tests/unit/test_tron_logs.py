"""TRON address forms and the conversion of TRON logs to the EVM log shape (pure)."""

from __future__ import annotations

import pytest

from indexer.batch import BlockRef
from indexer.chains.tron import block_logs, block_ref, calldata_by_tx, to_base58, tron_log_to_rpc
from indexer.config import tron_address, tron_evm_address
from indexer.decode import signatures as sig
from indexer.decode.logs import ChainSpec, LogDecoder
from indexer.events import EventType

# Published pairs: a TRON developer-docs example account and the USDT (TRC-20) contract.
VECTORS = [
    ("TLa2f6VPqDgRE67v1736s7bJ8Ray5wYjU7", "4174472e7d35395a6b5add427eecb7f4b62ad2b071"),
    ("TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t", "41a614f803b6fd780986a42c78ec9c7f77e6ded13c"),
]
BLOCK = BlockRef(number=5, hash="0x" + "ab" * 32, parent_hash="0x" + "cd" * 32, time=1_700_000_015)


@pytest.mark.parametrize(("b58", "hex41"), VECTORS)
def test_published_address_vectors_convert_both_ways(b58, hex41):
    assert tron_address(hex41) == b58
    assert tron_address(hex41[2:]) == b58  # 20-byte form of event logs
    assert tron_address("0x" + hex41[2:]) == b58
    assert tron_address(b58) == b58
    assert tron_evm_address(b58) == tron_evm_address(hex41) == "0x" + hex41[2:]


def test_a_corrupted_base58_address_is_refused():
    with pytest.raises(ValueError, match="checksum"):
        tron_address("TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6u")


def test_a_log_without_data_becomes_an_rpc_log_with_empty_data():
    topics = [sig.STAKE_ADDRESS_POOL[2:], "00" * 12 + "11" * 20, "00" * 12 + "22" * 20, f"{7:064x}"]
    log = {"address": "a614f803b6fd780986a42c78ec9c7f77e6ded13c", "topics": topics}
    rpc = tron_log_to_rpc(log, BLOCK, "EF" * 32, 3)
    assert rpc == {
        "address": "0xa614f803b6fd780986a42c78ec9c7f77e6ded13c",
        "topics": ["0x" + t for t in topics],
        "data": "0x",
        "blockNumber": "0x5",
        "blockHash": BLOCK.hash,
        "blockTimestamp": hex(BLOCK.time),
        "transactionHash": "0x" + "ef" * 32,
        "logIndex": "0x3",
        "removed": False,
    }


def test_a_41_prefixed_log_address_is_accepted_and_a_bad_one_refused():
    rpc = tron_log_to_rpc({"address": "41" + "aa" * 20, "topics": [], "data": "00"}, BLOCK, "01" * 32, 0)
    assert rpc["address"] == "0x" + "aa" * 20 and rpc["data"] == "0x00"
    with pytest.raises(ValueError):
        tron_log_to_rpc({"address": "aa" * 19, "topics": []}, BLOCK, "01" * 32, 0)
    with pytest.raises(ValueError):
        tron_log_to_rpc({"topics": []}, BLOCK, "01" * 32, 0)


def _block(tx_ids, number=5):
    raw = {"number": number, "timestamp": 1_700_000_015_000, "parentHash": "cd" * 32}
    return {
        "blockID": "ab" * 32,
        "block_header": {"raw_data": raw},
        "transactions": [{"txID": t, "raw_data": {"contract": []}} for t in tx_ids],
    }


def _info(tx_id, n_logs, number=5, **extra):
    logs = [{"address": "aa" * 20, "topics": [f"{i:064x}"], "data": f"{i:064x}"} for i in range(n_logs)]
    return {"id": tx_id, "blockNumber": number, "blockTimeStamp": 1_700_000_015_000, "log": logs} | extra


def test_log_index_counts_across_the_whole_block_in_transaction_order():
    a, b, c = "0a" * 32, "0b" * 32, "0c" * 32
    infos = [_info(b, 1), _info(a, 2), _info(c, 3)]  # answered out of block order
    logs = block_logs(_block([a, b, c]), infos)
    assert [(item["transactionHash"], item["logIndex"]) for item in logs] == [
        ("0x" + a, "0x0"),
        ("0x" + a, "0x1"),
        ("0x" + b, "0x2"),
        ("0x" + c, "0x3"),
        ("0x" + c, "0x4"),
        ("0x" + c, "0x5"),
    ]
    assert {item["blockHash"] for item in logs} == {"0x" + "ab" * 32}


def test_failed_transactions_and_transactions_without_logs_contribute_nothing():
    a, b, c = "0a" * 32, "0b" * 32, "0c" * 32
    infos = [_info(a, 2, result="FAILED"), {"id": b, "blockNumber": 5}, _info(c, 1)]
    logs = block_logs(_block([a, b, c]), infos)
    assert [(item["transactionHash"], item["logIndex"]) for item in logs] == [("0x" + c, "0x0")]


def test_infos_of_another_fork_or_block_are_refused():
    with pytest.raises(ValueError, match="not in block"):
        block_logs(_block(["0a" * 32]), [_info("0f" * 32, 1)])
    with pytest.raises(ValueError, match="names block"):
        block_logs(_block(["0a" * 32]), [_info("0a" * 32, 1, number=6)])


def test_genesis_without_number_and_malformed_blocks():
    genesis = {"blockID": "00" * 32, "block_header": {"raw_data": {"timestamp": 0, "parentHash": "11" * 32}}}
    assert block_ref(genesis) == BlockRef(0, "0x" + "00" * 32, "0x" + "11" * 32, 0)
    with pytest.raises(ValueError):
        block_ref({"blockID": "00" * 32})


def test_calldata_of_trigger_smart_contract_calls_is_found_per_transaction():
    block = _block([])
    value = {"data": "deadbeef", "contract_address": "41" + "aa" * 20}
    block["transactions"] = [
        {
            "txID": "0A" * 32,
            "raw_data": {"contract": [{"parameter": {"value": value}, "type": "TriggerSmartContract"}]},
        },
        {"txID": "0b" * 32, "raw_data": {"contract": [{"parameter": {"value": {}}, "type": "TransferContract"}]}},
    ]
    assert calldata_by_tx(block) == {"0x" + "0a" * 32: [("0x" + "aa" * 20, "0xdeadbeef")]}


class _Contract:
    name = "trx"
    address = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"
    kind = "native"
    version = 1
    asset = "TRX"


def test_a_decoded_all_indexed_stake_has_base58_addresses():
    staker, pool = VECTORS[0][1], "41" + "22" * 20
    topics = [sig.STAKE_ADDRESS_POOL[2:], "00" * 12 + staker[2:], "00" * 12 + pool[2:], f"{5_000_000:064x}"]
    rpc = tron_log_to_rpc({"address": VECTORS[1][1][2:], "topics": topics}, BLOCK, "01" * 32, 0)
    event = to_base58(LogDecoder(_Contract(), ChainSpec("tron", 728126428)).decode(rpc, {}, {}))
    assert event.event_type == EventType.STAKE and event.amount == 5_000_000
    assert (event.contract, event.staker, event.pool) == (VECTORS[1][0], VECTORS[0][0], tron_address(pool))
    assert event.block_time == BLOCK.time and event.tx_hash == "0x" + "01" * 32

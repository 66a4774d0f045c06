"""Recovering string pool names from calldata and call traces (pure)."""

from __future__ import annotations

from eth_abi import encode
from eth_utils import keccak

from indexer.decode.calldata import calls_to, names_by_hash, pool_names_in_calldata


def call(signature: str, types: list[str], values: list) -> str:
    return "0x" + keccak(text=signature)[:4].hex() + encode(types, values).hex()


def test_names_from_each_string_pool_function():
    assert pool_names_in_calldata(call("stake(string)", ["string"], ["validator-one"])) == ["validator-one"]
    assert pool_names_in_calldata(call("unstake(string,uint256)", ["string", "uint256"], ["v2", 5])) == ["v2"]
    multi = call("unstakeMultiple(string[],uint256[])", ["string[]", "uint256[]"], [["a", "ünï"], [1, 2]])
    assert pool_names_in_calldata(multi) == ["a", "ünï"]


def test_other_or_broken_calldata_gives_no_names():
    assert pool_names_in_calldata(call("stake(address)", ["address"], ["0x" + "11" * 20])) == []
    assert pool_names_in_calldata("0x") == []
    assert pool_names_in_calldata(call("stake(string)", ["string"], ["x"])[:20]) == []


def test_names_by_hash_is_keccak_of_utf8_name():
    assert names_by_hash(["validator-one"]) == {"0x" + keccak(b"validator-one").hex(): "validator-one"}


def test_calls_to_walks_nested_frames_in_order():
    target = "0x" + "aa" * 20
    trace = {
        "to": "0x" + "bb" * 20,
        "input": "0x0",
        "calls": [
            {"to": target, "input": "0x1"},
            {"to": "0x" + "cc" * 20, "calls": [{"to": target.upper().replace("0X", "0x"), "input": "0x2"}]},
        ],
    }
    assert [f["input"] for f in calls_to(trace, target)] == ["0x1", "0x2"]

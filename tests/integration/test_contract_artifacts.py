"""The committed contract artifacts match the Solidity sources and the SPEC's ABIs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from indexer.localchain import artifacts

REPO = Path(__file__).resolve().parents[2]

# SPEC section 2: the exact event signatures of each contract (plus the LST's own
# Transfer/Approval, and ApprovalForAll for the ERC-721).
ERC20_EVENTS = {"Transfer(address,address,uint256)", "Approval(address,address,uint256)"}
ERC721_EVENTS = ERC20_EVENTS | {"ApprovalForAll(address,address,bool)"}
V2_COMMON = {"UnstakeMultipleRequested(address,uint256,uint256)", "Withdrawal(address,uint256)"}
EXPECTED_EVENTS = {
    "MerkleClaim": {"RootSet(uint256,bytes32)"},
    "NativeStakingV1": ERC20_EVENTS
    | {"StakeOccured(address,address,uint256)", "UnstakeOccured(address,address,uint256)"},
    "NativeStakingV2": ERC20_EVENTS
    | V2_COMMON
    | {"StakeOccured(address,string,uint256)", "UnstakeRequested(address,string,uint256,uint256)"},
    "Erc20StakingV1": ERC20_EVENTS
    | {"StakeOccured(address,address,uint256)", "UnstakeOccured(address,address,uint256)"},
    "Erc20StakingV2": ERC20_EVENTS
    | V2_COMMON
    | {"StakeOccured(address,address,uint256)", "UnstakeRequested(address,address,uint256,uint256)"},
    "Erc721Staking": ERC721_EVENTS
    | {"StakeOccured(address,address,uint256)", "UnstakeOccured(address,address,uint256)"},
    "TestToken": ERC20_EVENTS,
    "TestNft": ERC721_EVENTS,
    "StakeBatcher": set(),
}
# Which inputs are indexed, per staking event (the SPEC's "indexed" markers).
EXPECTED_INDEXED = {
    "StakeOccured": [True, True, True],
    "UnstakeOccured": [True, True, True],
    "UnstakeRequested": [True, True, True, False],
    "UnstakeMultipleRequested": [True, True, False],
    "Withdrawal": [True, True],
}
EXPECTED_FUNCTIONS = {
    "NativeStakingV1": {
        "stake(address)",
        "unstake(address,uint256)",
        "unstakeMultiple(address[],uint256[])",
        "stakingPools(address)",
    },
    "NativeStakingV2": {
        "stake(string)",
        "unstake(string,uint256)",
        "unstakeMultiple(string[],uint256[])",
        "withdraw()",
        "stakingPools(string)",
        "LOCK()",
    },
    "Erc20StakingV1": {
        "stake(address,uint256)",
        "unstake(address,uint256)",
        "unstakeMultiple(address[],uint256[])",
        "stakingPools(address)",
    },
    "Erc20StakingV2": {
        "stake(address,uint256)",
        "unstake(address,uint256)",
        "unstakeMultiple(address[],uint256[])",
        "withdraw()",
        "stakingPools(address)",
        "LOCK()",
    },
    "Erc721Staking": {"stake(address,uint256)", "unstake(address,uint256)", "stakingPools(address)"},
    "StakeBatcher": {
        "stakeManyNativeV1(address,address[],uint256,uint256)",
        "stakeManyErc20V1(address,address,address,uint256,uint256)",
        "stakeNativeV2(address,string[],uint256[])",
        "unstakeNativeV2(address,string,uint256)",
    },
}


def _signature(entry: dict) -> str:
    """Canonical signature of an ABI entry."""
    return f"{entry['name']}({','.join(i['type'] for i in entry['inputs'])})"


def test_artifacts_match_sources() -> None:
    """`node contracts/build.mjs --check` recompiles and finds artifacts.json up to date."""
    node = shutil.which("node")
    assert node, "node is not on PATH"
    assert (REPO / "node_modules" / "solc").is_dir(), "node_modules missing: run `npm ci`"
    result = subprocess.run(
        [node, "contracts/build.mjs", "--check"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"artifacts are stale:\n{result.stdout}\n{result.stderr}"


@pytest.mark.parametrize("name", sorted(EXPECTED_EVENTS))
def test_events_are_exactly_the_spec_ones(name: str) -> None:
    """Each contract emits exactly the SPEC's events, indexed as the SPEC says."""
    events = [e for e in artifacts.abi(name) if e["type"] == "event"]
    assert {_signature(e) for e in events} == EXPECTED_EVENTS[name]
    for event in events:
        if event["name"] in EXPECTED_INDEXED:
            assert [i["indexed"] for i in event["inputs"]] == EXPECTED_INDEXED[event["name"]], event["name"]


@pytest.mark.parametrize("name", sorted(EXPECTED_FUNCTIONS))
def test_functions_include_the_spec_ones(name: str) -> None:
    """The SPEC's functions exist with their exact argument types."""
    functions = {_signature(e) for e in artifacts.abi(name) if e["type"] == "function"}
    assert EXPECTED_FUNCTIONS[name] <= functions


def test_every_artifact_has_creation_bytecode() -> None:
    """All nine deployable contracts are there with non-empty bytecode."""
    assert artifacts.names() == sorted(EXPECTED_EVENTS)
    for name in artifacts.names():
        assert artifacts.bytecode(name).startswith("0x60")

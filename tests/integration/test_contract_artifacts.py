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
    "Erc721StakingV1": ERC721_EVENTS
    | {"StakeOccured(address,address,uint256)", "UnstakeOccured(address,address,uint256)"},
    "Erc721StakingV2": ERC721_EVENTS
    | {
        "StakeOccured(address,address,uint256)",
        "UnstakeRequested(address,address,uint256,uint256)",
        "Withdrawal(address,uint256)",  # one per NFT returned, carrying its token id
    },
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
# The plain OpenZeppelin LSTs: every function of ERC20 / ERC721 (no totalSupply on the ERC-721).
OZ_ERC20 = {
    "name()",
    "symbol()",
    "decimals()",
    "totalSupply()",
    "balanceOf(address)",
    "transfer(address,uint256)",
    "allowance(address,address)",
    "approve(address,uint256)",
    "transferFrom(address,address,uint256)",
}
OZ_ERC721 = {
    "name()",
    "symbol()",
    "tokenURI(uint256)",
    "supportsInterface(bytes4)",
    "balanceOf(address)",
    "ownerOf(uint256)",
    "approve(address,uint256)",
    "getApproved(uint256)",
    "setApprovalForAll(address,bool)",
    "isApprovedForAll(address,address)",
    "transferFrom(address,address,uint256)",
    "safeTransferFrom(address,address,uint256)",
    "safeTransferFrom(address,address,uint256,bytes)",
}
# SPEC section 2, "What the real contracts expose": v2 keeps withdrawalRequests(staker, index) with no
# length getter, and lockPeriod(); ERC-20 and ERC-721 kinds name their deposit token; ERC-721 pools are
# private (getStakedTokens, no stakingPools).
V2_GETTERS = {"withdraw()", "withdrawalRequests(address,uint256)", "lockPeriod()"}
EXPECTED_FUNCTIONS = {
    "NativeStakingV1": OZ_ERC20
    | {"stake(address)", "unstake(address,uint256)", "unstakeMultiple(address[],uint256[])", "stakingPools(address)"},
    "NativeStakingV2": OZ_ERC20
    | V2_GETTERS
    | {"stake(string)", "unstake(string,uint256)", "unstakeMultiple(string[],uint256[])", "stakingPools(string)"},
    "Erc20StakingV1": OZ_ERC20
    | {
        "stake(address,uint256)",
        "unstake(address,uint256)",
        "unstakeMultiple(address[],uint256[])",
        "stakingPools(address)",
        "depositToken()",
    },
    "Erc20StakingV2": OZ_ERC20
    | V2_GETTERS
    | {
        "stake(address,uint256)",
        "unstake(address,uint256)",
        "unstakeMultiple(address[],uint256[])",
        "stakingPools(address)",
        "depositToken()",
    },
    "Erc721StakingV1": OZ_ERC721
    | {"stake(address,uint256)", "unstake(address,uint256)", "getStakedTokens(address)", "depositToken()"},
    "Erc721StakingV2": OZ_ERC721
    | V2_GETTERS
    | {"stake(address,uint256)", "unstake(address,uint256)", "getStakedTokens(address)", "depositToken()"},
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
def test_functions_are_exactly_the_real_ones(name: str) -> None:
    """Each contract has the real contract's functions with their exact argument types, and no extra getter."""
    functions = {_signature(e) for e in artifacts.abi(name) if e["type"] == "function"}
    assert functions == EXPECTED_FUNCTIONS[name]


def test_withdrawal_requests_and_staked_tokens_return_what_the_real_contracts_return() -> None:
    """withdrawalRequests -> (uint256, uint256); getStakedTokens -> uint256[]."""
    for name in ("NativeStakingV2", "Erc20StakingV2", "Erc721StakingV2"):
        (entry,) = [e for e in artifacts.abi(name) if e.get("name") == "withdrawalRequests"]
        assert [o["type"] for o in entry["outputs"]] == ["uint256", "uint256"], name
    for name in ("Erc721StakingV1", "Erc721StakingV2"):
        (entry,) = [e for e in artifacts.abi(name) if e.get("name") == "getStakedTokens"]
        assert [o["type"] for o in entry["outputs"]] == ["uint256[]"], name


def test_every_artifact_has_creation_bytecode() -> None:
    """All ten deployable contracts are there with non-empty bytecode."""
    assert artifacts.names() == sorted(EXPECTED_EVENTS)
    for name in artifacts.names():
        assert artifacts.bytecode(name).startswith("0x60")

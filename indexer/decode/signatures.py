"""Event topics and function selectors of the multistaking contracts (SPEC section 2)."""

from __future__ import annotations

from eth_hash.auto import keccak


def topic(signature: str) -> str:
    """The 0x hex topic0 of an event signature."""
    return "0x" + keccak(signature.encode()).hex()


def selector(signature: str) -> str:
    """The 0x hex 4-byte selector of a function signature."""
    return "0x" + keccak(signature.encode())[:4].hex()


STAKE_ADDRESS_POOL = topic("StakeOccured(address,address,uint256)")
STAKE_STRING_POOL = topic("StakeOccured(address,string,uint256)")
UNSTAKE = topic("UnstakeOccured(address,address,uint256)")
UNSTAKE_REQUEST_ADDRESS_POOL = topic("UnstakeRequested(address,address,uint256,uint256)")
UNSTAKE_REQUEST_STRING_POOL = topic("UnstakeRequested(address,string,uint256,uint256)")
UNSTAKE_MULTIPLE_REQUESTED = topic("UnstakeMultipleRequested(address,uint256,uint256)")
WITHDRAWAL = topic("Withdrawal(address,uint256)")
TRANSFER = topic("Transfer(address,address,uint256)")

# Functions whose calldata names string pools (native v2).
STAKE_STRING = selector("stake(string)")
UNSTAKE_STRING = selector("unstake(string,uint256)")
UNSTAKE_MULTIPLE_STRING = selector("unstakeMultiple(string[],uint256[])")

ALL_STAKING_TOPICS = frozenset(
    {
        STAKE_ADDRESS_POOL,
        STAKE_STRING_POOL,
        UNSTAKE,
        UNSTAKE_REQUEST_ADDRESS_POOL,
        UNSTAKE_REQUEST_STRING_POOL,
        UNSTAKE_MULTIPLE_REQUESTED,
        WITHDRAWAL,
    }
)

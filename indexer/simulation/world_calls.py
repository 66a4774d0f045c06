"""Random valid calls to the simulated contracts, and each call's calldata and `callTracer` trace.

`random_call` only proposes calls the contracts accept in the given state (a
holder unstakes within its LST balance and the pool's amount, from any pool:
"foreign" LST included; withdrawals only once a request has matured).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cache
from typing import Any

from eth_abi import encode as abi_encode

from indexer.decode.signatures import selector
from indexer.simulation.world_state import (
    ADDRESS_POOLS,
    BATCHER,
    BY_ADDRESS,
    CONTRACTS,
    OUTSIDERS,
    STAKERS,
    STRING_POOLS,
    Call,
    ContractState,
    WorldState,
)

NATIVE_V2 = CONTRACTS[1].address
_RECIPIENTS = STAKERS + OUTSIDERS


@dataclass(frozen=True, slots=True)
class Mix:
    """How often each kind of call is drawn (relative weights) and the rates of the odd cases."""

    stake: int = 30
    unstake: int = 22
    unstake_multiple: int = 8
    transfer: int = 18
    withdraw: int = 14
    approve: int = 3
    batcher_rate: float = 0.25  # native v2 stakes (and the batcher's unstakes) forwarded by the batcher
    zero_rate: float = 0.03  # zero-amount unstakes and transfers (legal on chain)


def _amount(rng: random.Random) -> int:
    style = rng.random()
    if style < 0.2:
        return rng.randint(1, 1000)
    if style < 0.9:
        return rng.randint(1, 50) * 10**17
    return rng.randint(1, 10**27)


def _part(rng: random.Random, most: int, mix: Mix) -> int:
    """An amount in [0, most]: often all of it, sometimes zero."""
    roll = rng.random()
    if roll < mix.zero_rate or most == 0:
        return 0
    return most if roll < 0.25 else rng.randint(1, most)


def random_call(rng: random.Random, state: WorldState, now: int, mix: Mix) -> Call:
    """One call that the contracts accept at time `now` (falls back to a stake, always possible)."""
    address = rng.choice(CONTRACTS).address
    c = state.contracts[address]
    weights = (mix.stake, mix.unstake, mix.unstake_multiple, mix.transfer, mix.withdraw, mix.approve)
    kind = rng.choices(("stake", "unstake", "multiple", "transfer", "withdraw", "approve"), weights)[0]
    if kind == "unstake":
        call = _unstake(rng, c, mix)
    elif kind == "multiple":
        call = _unstake_multiple(rng, c, mix)
    elif kind == "transfer":
        call = _transfer(rng, c, mix)
    elif kind == "withdraw":
        call = _withdraw(rng, c, now)
    elif kind == "approve":
        call = _approve(rng, c)
    else:
        call = None
    return call or _stake(rng, state, c, mix)


def _pools_of(c: ContractState) -> tuple[str, ...]:
    return STRING_POOLS if c.info.address == NATIVE_V2 else ADDRESS_POOLS


def _stake(rng: random.Random, state: WorldState, c: ContractState, mix: Mix) -> Call:
    if c.nft:
        free = sorted(t for t, owner in state.nft_owner.items() if owner in _RECIPIENTS)
        if not free:  # every NFT is staked or locked: stake fungible instead
            return _stake(rng, state, state.contracts[CONTRACTS[0].address], mix)
        token = rng.choice(free)
        return Call(c.info.address, state.nft_owner[token], "stake", (rng.choice(ADDRESS_POOLS), token))
    sender = rng.choice(STAKERS)
    if c.info.address == NATIVE_V2 and rng.random() < mix.batcher_rate:
        count = rng.randint(1, 3)
        pools = tuple(rng.choice(STRING_POOLS) for _ in range(count))
        return Call(c.info.address, sender, "batchStake", (pools, tuple(_amount(rng) for _ in range(count))))
    return Call(c.info.address, sender, "stake", (rng.choice(_pools_of(c)), _amount(rng)))


def _unstake(rng: random.Random, c: ContractState, mix: Mix) -> Call | None:
    if c.nft:
        if not c.owners:
            return None
        token = rng.choice(sorted(c.owners))
        return Call(c.info.address, c.owners[token], "unstake", (c.token_pool[token], token))
    holders, pools = c.holders(), sorted(p for p, amount in c.pools.items() if amount)
    if not holders or not pools:
        return None
    holder, pool = rng.choice(holders), rng.choice(pools)
    amount = _part(rng, min(c.balances[holder], c.pools[pool]), mix)
    if holder == BATCHER:  # the batcher's LST is unstaked through the batcher, by anyone
        return Call(c.info.address, rng.choice(STAKERS), "batchUnstake", (pool, amount))
    return Call(c.info.address, holder, "unstake", (pool, amount))


def _unstake_multiple(rng: random.Random, c: ContractState, mix: Mix) -> Call | None:
    holders = [h for h in c.holders() if h != BATCHER]
    pools = sorted(p for p, amount in c.pools.items() if amount)
    if c.nft or not holders or not pools:
        return None
    holder = rng.choice(holders)
    left, balance = dict(c.pools), c.balances[holder]
    chosen, amounts = [], []
    for _ in range(rng.randint(1, 3)):
        pool = rng.choice(pools)  # a pool may come twice: legal, taken in turn
        amount = _part(rng, min(balance, left[pool]), mix)
        left[pool] -= amount
        balance -= amount
        chosen.append(pool)
        amounts.append(amount)
    if sum(amounts) == 0 and c.info.kind == "erc20" and c.info.version == 1:
        return None  # ERC-20 v1 reverts on a zero total
    return Call(c.info.address, holder, "unstakeMultiple", (tuple(chosen), tuple(amounts)))


def _transfer(rng: random.Random, c: ContractState, mix: Mix) -> Call | None:
    holders = [h for h in c.holders() if h != BATCHER]  # the batcher cannot transfer
    if not holders:
        return None
    receiver = rng.choice(_RECIPIENTS)  # may be the sender itself
    if c.nft:
        token = rng.choice(sorted(t for t, owner in c.owners.items() if owner != BATCHER))
        return Call(c.info.address, c.owners[token], "transfer", (receiver, token))
    holder = rng.choice(holders)
    return Call(c.info.address, holder, "transfer", (receiver, _part(rng, c.balances[holder], mix)))


def _withdraw(rng: random.Random, c: ContractState, now: int) -> Call | None:
    if c.info.version != 2:
        return None
    ready = [h for h in sorted(c.requests) if h != BATCHER and c.withdrawable(h, now)]  # the batcher cannot withdraw
    return Call(c.info.address, rng.choice(ready), "withdraw") if ready else None


def _approve(rng: random.Random, c: ContractState) -> Call | None:
    if c.nft:
        if not c.owners:
            return None
        token = rng.choice(sorted(c.owners))
        return Call(c.info.address, c.owners[token], "approve", (rng.choice(_RECIPIENTS), token))
    return Call(c.info.address, rng.choice(STAKERS), "approve", (rng.choice(_RECIPIENTS), _amount(rng)))


@cache
def _selector(signature: str) -> bytes:
    return bytes.fromhex(selector(signature)[2:])


def _encoded(signature: str, values: list[Any]) -> str:
    types = signature[signature.index("(") + 1 : -1]
    args = abi_encode(types.split(","), values) if types else b""
    return "0x" + (_selector(signature) + args).hex()


def calldata(call: Call) -> str:
    """The transaction's input: the staking contract's calldata, or the batcher's."""
    info = BY_ADDRESS[call.contract]
    pool_type = "string" if info.address == NATIVE_V2 else "address"
    fn, args = call.fn, call.args
    if fn == "batchStake":
        return _encoded("stakeNativeV2(address,string[],uint256[])", [call.contract, list(args[0]), list(args[1])])
    if fn == "batchUnstake":
        return _encoded("unstakeNativeV2(address,string,uint256)", [call.contract, *args])
    if fn == "stake" and info.kind == "native":
        return _encoded(f"stake({pool_type})", [args[0]])
    if fn in ("stake", "unstake"):
        return _encoded(f"{fn}({pool_type},uint256)", list(args))
    if fn == "unstakeMultiple":
        return _encoded(f"unstakeMultiple({pool_type}[],uint256[])", [list(args[0]), list(args[1])])
    if fn == "transfer" and info.kind == "erc721":
        return _encoded("transferFrom(address,address,uint256)", [call.sender, *args])
    if fn in ("transfer", "approve"):
        return _encoded(f"{fn}(address,uint256)", list(args))
    return _encoded("withdraw()", [])


def recipient(call: Call) -> str:
    """The transaction's `to`."""
    return BATCHER if call.fn.startswith("batch") else call.contract


def value(call: Call) -> int:
    """The native coin the transaction sends."""
    if call.fn == "batchStake":
        return sum(call.args[1])
    if call.fn == "stake" and BY_ADDRESS[call.contract].kind == "native":
        return call.args[1]
    return 0


def trace(call: Call) -> dict[str, Any]:
    """The `callTracer` trace: a batcher call shows the staking contract's calls only as inner frames."""
    top: dict[str, Any] = {
        "type": "CALL",
        "from": call.sender,
        "to": recipient(call),
        "value": hex(value(call)),
        "gas": "0x1c9c380",
        "gasUsed": "0x30d40",
        "input": calldata(call),
        "output": "0x",
    }
    if call.fn == "batchStake":
        top["calls"] = [
            {
                "type": "CALL",
                "from": BATCHER,
                "to": call.contract,
                "value": hex(amount),
                "input": _encoded("stake(string)", [pool]),
                "output": "0x",
            }
            for pool, amount in zip(*call.args, strict=True)
        ]
    elif call.fn == "batchUnstake":
        inner = _encoded("unstake(string,uint256)", list(call.args))
        top["calls"] = [{"type": "CALL", "from": BATCHER, "to": call.contract, "value": "0x0", "input": inner}]
    return top

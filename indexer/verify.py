"""`indexer verify`: reconcile the projections with the contracts' own state through eth_call.

Only the getters the real contracts have (SPEC section 2) are read: `stakingPools` on the fungible
kinds, `getStakedTokens(pool)` (the exact set of token ids) and `ownerOf` on ERC-721, `balanceOf`
everywhere, `totalSupply` where it exists (not on the ERC-721 LST), and on every v2 contract each
staker's `withdrawalRequests(staker, i)` entries, read until the call reverts (there is no length
getter). A reading the node cannot answer is reported as a failed reading, never passed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import asyncpg
from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode

from indexer.chains.rpc import JsonRpcError, RpcClient
from indexer.decode.signatures import selector
from indexer.errors import RetryableError
from indexer.store.reconciliation import ChainProjection, ContractProjection, NotCaughtUp, chain_projection

CALL_BATCH = 100
FAILED = None  # on_chain of a reading the node could not answer


@dataclass(frozen=True, slots=True)
class Mismatch:
    chain: str
    contract: str
    what: str  # e.g. "stakingPools(validator-one)"
    projected: Any
    on_chain: Any  # FAILED when the call failed


@dataclass(frozen=True, slots=True)
class Reading:
    """One eth_call and the value the projections expect it to return."""

    label: str
    data: str  # calldata
    projected: Any
    decode: Callable[[bytes], Any]


def calldata(signature: str, types: list[str], values: list) -> str:
    """ABI-encoded call of `signature` with `values`."""
    return selector(signature) + abi_encode(types, values).hex()


def _uint(raw: bytes) -> int:
    return abi_decode(["uint256"], raw)[0]


def _address(raw: bytes) -> str:
    return abi_decode(["address"], raw)[0].lower()


def _token_set(raw: bytes) -> tuple[int, ...]:
    return tuple(sorted(abi_decode(["uint256[]"], raw)[0]))


def readings_for(contract, projection: ContractProjection) -> list[Reading]:
    """Every single-call reading to compare on one contract (pure); withdrawal requests come apart."""
    readings: list[Reading] = []
    nft = contract.kind == "erc721"
    if nft:
        staked: dict[str, list[int]] = defaultdict(list)
        for token, pool in projection.token_pools.items():
            staked[pool].append(token)
        for pool in sorted(set(staked) | set(projection.pools)):
            data = calldata("getStakedTokens(address)", ["address"], [pool])
            readings.append(Reading(f"getStakedTokens({pool})", data, tuple(sorted(staked[pool])), _token_set))
        for token, owner in sorted(projection.token_owners.items()):
            readings.append(Reading(f"ownerOf({token})", calldata("ownerOf(uint256)", ["uint256"], [token]), owner,
                                    _address))  # fmt: skip
    else:
        string_pools = contract.kind == "native" and contract.version == 2
        for pool, amount in sorted(projection.pools.items()):
            if pool.startswith("hash:"):
                continue  # an unresolved string pool cannot be asked for by name
            data = (calldata("stakingPools(string)", ["string"], [pool]) if string_pools
                    else calldata("stakingPools(address)", ["address"], [pool]))  # fmt: skip
            readings.append(Reading(f"stakingPools({pool})", data, amount, _uint))
    for holder, balance in sorted(projection.balances.items()):
        readings.append(Reading(f"balanceOf({holder})", calldata("balanceOf(address)", ["address"], [holder]), balance,
                                _uint))  # fmt: skip
    if not nft:
        readings.append(Reading("totalSupply()", selector("totalSupply()"), sum(projection.balances.values()), _uint))
    return readings


def open_requests(nft: bool, entries: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """The withdrawal requests still open among `withdrawalRequests` entries (value, unlock time), comparable form.

    A settled entry reads (0, 0). Fungible: (unlock time, total amount) per unlock time, zero amounts left out
    (the contract never pays them). ERC-721 v2: (unlock time, token id) per request, NFT 0 included (it is
    never returned, so it stays open).
    """
    if nft:
        return tuple(sorted((unlock, token) for token, unlock in entries if unlock))
    totals: dict[int, int] = defaultdict(int)
    for amount, unlock in entries:
        if amount:
            totals[unlock] += amount
    return tuple(sorted(totals.items()))


def _is_revert(error: JsonRpcError) -> bool:
    return "revert" in error.message.lower()


async def _call_all(rpc: RpcClient, address: str, datas: list[str], block: str) -> list[Any]:
    answers: list[Any] = []
    for start in range(0, len(datas), CALL_BATCH):
        part = datas[start : start + CALL_BATCH]
        answers += await rpc.batch([("eth_call", [{"to": address, "data": d}, block]) for d in part])
    return answers


async def withdrawal_entries(
    rpc: RpcClient, address: str, stakers: dict[str, int], block: str
) -> tuple[dict[str, list[tuple[int, int]] | None], int]:
    """Every `withdrawalRequests(staker, i)` entry per staker, read until the call reverts; None when a call failed.

    `stakers` maps each staker to the requests it logged, a good first guess of its array's length
    (`unstakeMultiple` pushes one entry for several logs); the reads go on until the revert. Also the calls made.
    """
    entries: dict[str, list[tuple[int, int]] | None] = {staker: [] for staker in stakers}
    wanted = {staker: count + 1 for staker, count in stakers.items()}
    calls = 0
    while wanted:
        plan = [
            (staker, index)
            for staker, n in wanted.items()
            for index in range(len(entries[staker]), len(entries[staker]) + n)
        ]  # type: ignore[arg-type]  # noqa: E501
        datas = [calldata("withdrawalRequests(address,uint256)", ["address", "uint256"], [s, i]) for s, i in plan]
        answers = await _call_all(rpc, address, datas, block)
        calls += len(plan)
        ended: set[str] = set()
        for (staker, _), answer in zip(plan, answers, strict=True):
            if staker in ended:
                continue
            if isinstance(answer, JsonRpcError):
                if not _is_revert(answer):
                    entries[staker] = None
                ended.add(staker)
                continue
            entries[staker].append(tuple(abi_decode(["uint256", "uint256"], bytes.fromhex(answer[2:]))))  # type: ignore[union-attr]
        wanted = {staker: 2 * n for staker, n in wanted.items() if staker not in ended}
    return entries, calls


async def verify_chain(chain, projection: ChainProjection) -> tuple[list[Mismatch], int]:
    """Every difference between one EVM chain's projections and its contracts at the projected block."""
    mismatches: list[Mismatch] = []
    readings = 0
    block = hex(projection.block)
    rpc = RpcClient(chain.name, chain.rpc, timeout=chain.request_timeout_seconds)
    try:
        for contract in chain.contracts:
            projected = projection.contracts.get(contract.address, ContractProjection())
            single = readings_for(contract, projected)
            answers = await _call_all(rpc, contract.address, [r.data for r in single], block)
            readings += len(single)
            for reading, answer in zip(single, answers, strict=True):
                actual = FAILED if isinstance(answer, JsonRpcError) else reading.decode(bytes.fromhex(answer[2:]))
                if actual != reading.projected:
                    mismatches.append(Mismatch(chain.name, contract.name, reading.label, reading.projected, actual))
            if contract.version != 2:
                continue
            nft = contract.kind == "erc721"
            stakers = dict.fromkeys(projected.pending, 0) | projected.requesters
            entries, calls = await withdrawal_entries(rpc, contract.address, stakers, block)
            readings += calls
            for staker in sorted(stakers):
                expected = open_requests(
                    nft,
                    ((token if nft else amount, unlock) for amount, unlock, token in projected.pending.get(staker, ())),
                )
                found = entries[staker]
                actual = FAILED if found is None else open_requests(nft, found)
                if actual != expected:
                    label = f"withdrawalRequests({staker}, *)"
                    mismatches.append(Mismatch(chain.name, contract.name, label, expected, actual))
    finally:
        await rpc.close()
    return mismatches, readings


async def verify(config, pool: asyncpg.Pool) -> tuple[list[Mismatch], int]:
    """Every difference between the projections and the EVM chains at the projected block; and the readings made."""
    mismatches: list[Mismatch] = []
    readings = 0
    for chain in (c for c in config.chains if c.kind == "evm"):
        try:
            projection = await chain_projection(pool, chain.name)
        except NotCaughtUp:
            raise RetryableError(f"chain {chain.name}: the projections have not caught up with its confirmed "
                                 "block yet: run `indexer run --once` first") from None  # fmt: skip
        found, made = await verify_chain(chain, projection)
        mismatches += found
        readings += made
    return mismatches, readings


def _shown(value: Any) -> str:
    if value is FAILED:
        return "(call failed)"
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


async def print_verify(config, pool: asyncpg.Pool) -> int:
    """The `verify` command: a table of mismatches and failed readings; exit 1 if any."""
    mismatches, readings = await verify(config, pool)
    if not mismatches:
        print(f"verify: {readings} readings, 0 mismatches")
        return 0
    print(f"{'chain':<12}{'contract':<14}{'reading':<60} {'projected':>40} {'on chain':>40}")
    for m in mismatches:
        print(f"{m.chain:<12}{m.contract:<14}{m.what:<60} {_shown(m.projected):>40} {_shown(m.on_chain):>40}")
    failed = sum(m.on_chain is FAILED for m in mismatches)
    print(f"verify: {readings} readings, {len(mismatches)} mismatches ({failed} failed readings)")
    return 1

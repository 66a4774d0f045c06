"""`indexer verify`: reconcile the projections with the contracts' own state through eth_call."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import asyncpg
from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode

from indexer.chains.rpc import JsonRpcError, RpcClient
from indexer.decode.signatures import selector
from indexer.errors import RetryableError

CALL_BATCH = 100


@dataclass(frozen=True, slots=True)
class Mismatch:
    chain: str
    contract: str
    what: str  # e.g. "stakingPools(validator-one)"
    projected: int
    on_chain: int | None  # None when the call failed


def calldata(signature: str, types: list[str], values: list) -> str:
    """ABI-encoded call of `signature` with `values`."""
    return selector(signature) + abi_encode(types, values).hex()


def checks_for(contract, pools: dict[str, int], balances: dict[str, int]) -> list[tuple[str, str, int]]:
    """(label, calldata, projected value) for every reading to compare on one contract (pure)."""
    checks = []
    for pool, amount in sorted(pools.items()):
        if pool.startswith("hash:"):
            continue  # an unresolved string pool cannot be asked for by name
        if contract.kind == "native" and contract.version == 2:
            checks.append((f"stakingPools({pool})", calldata("stakingPools(string)", ["string"], [pool]), amount))
        else:
            checks.append((f"stakingPools({pool})", calldata("stakingPools(address)", ["address"], [pool]), amount))
    for holder, balance in sorted(balances.items()):
        checks.append((f"balanceOf({holder})", calldata("balanceOf(address)", ["address"], [holder]), balance))
    if contract.kind != "erc721":
        checks.append(("totalSupply()", selector("totalSupply()"), sum(balances.values())))
    return checks


async def verify(config, pool: asyncpg.Pool) -> tuple[list[Mismatch], int]:
    """Every difference between the projections and the chains at the projected block; and the readings made."""
    mismatches: list[Mismatch] = []
    readings = 0
    frontier = await pool.fetchval("SELECT frontier_time FROM projector_state")
    for chain in (c for c in config.chains if c.kind == "evm"):
        row = await pool.fetchrow("SELECT confirmed_block, confirmed_time FROM v_chain_frontier WHERE chain = $1",
                                  chain.name)  # fmt: skip
        if row is None or frontier is None or row["confirmed_time"] is None or frontier < row["confirmed_time"]:
            raise RetryableError(f"chain {chain.name}: the projections have not caught up with its confirmed "
                                 "block yet: run `indexer run --once` first")  # fmt: skip
        block = hex(row["confirmed_block"])
        pools: dict[str, dict[str, int]] = defaultdict(dict)
        for r in await pool.fetch("SELECT contract, pool, amount FROM pool_amounts WHERE chain = $1", chain.name):
            pools[r["contract"]][r["pool"]] = int(r["amount"])
        balances: dict[str, dict[str, int]] = defaultdict(dict)
        for r in await pool.fetch("SELECT contract, holder, balance FROM lst_balances WHERE chain = $1", chain.name):
            balances[r["contract"]][r["holder"]] = int(r["balance"])
        rpc = RpcClient(chain.name, chain.rpc, timeout=chain.request_timeout_seconds)
        try:
            for contract in chain.contracts:
                checks = checks_for(contract, pools[contract.address], balances[contract.address])
                readings += len(checks)
                for start in range(0, len(checks), CALL_BATCH):
                    part = checks[start : start + CALL_BATCH]
                    answers = await rpc.batch(
                        [("eth_call", [{"to": contract.address, "data": data}, block]) for _, data, _ in part]
                    )
                    for (label, _, projected), answer in zip(part, answers, strict=True):
                        actual = (
                            None
                            if isinstance(answer, JsonRpcError)
                            else abi_decode(["uint256"], bytes.fromhex(answer[2:]))[0]
                        )
                        if actual != projected:
                            mismatches.append(Mismatch(chain.name, contract.name, label, projected, actual))
        finally:
            await rpc.close()
    return mismatches, readings


async def print_verify(config, pool: asyncpg.Pool) -> int:
    """The `verify` command: a table of mismatches; exit 1 if any."""
    mismatches, readings = await verify(config, pool)
    if not mismatches:
        print(f"verify: {readings} readings, 0 mismatches")
        return 0
    print(f"{'chain':<12}{'contract':<14}{'reading':<60}{'projected':>28}{'on chain':>28}")
    for m in mismatches:
        actual = "(call failed)" if m.on_chain is None else m.on_chain
        print(f"{m.chain:<12}{m.contract:<14}{m.what:<60}{m.projected:>28}{actual:>28}")
    print(f"verify: {readings} readings, {len(mismatches)} mismatches")
    return 1

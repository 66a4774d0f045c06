"""What `verify` compares with the contracts: one chain's projections at its confirmed block, read in one snapshot."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import asyncpg


@dataclass(slots=True)
class ContractProjection:
    """One contract's projected state, in the chain's canonical address form."""

    pools: dict[str, int] = field(default_factory=dict)  # pool -> amount (ERC-721: tokens staked)
    balances: dict[str, int] = field(default_factory=dict)  # holder -> LST balance
    token_owners: dict[int, str] = field(default_factory=dict)  # ERC-721: token id -> LST holder
    token_pools: dict[int, str] = field(default_factory=dict)  # ERC-721: token id -> pool it is staked in
    pending: dict[str, list[tuple[int, int, int | None]]] = field(default_factory=dict)  # staker -> open
    # withdrawal requests as (amount, unlock time, token id)
    requesters: dict[str, int] = field(default_factory=dict)  # staker -> unstake requests logged (confirmed)


@dataclass(frozen=True, slots=True)
class ChainProjection:
    block: int  # the confirmed block the projections stand at
    contracts: dict[str, ContractProjection]  # contract address -> its projection


class NotCaughtUp(Exception):
    """The projections have not folded the chain's confirmed block yet."""


async def chain_projection(pool: asyncpg.Pool, chain: str) -> ChainProjection:
    """Every projected value `verify` reads back from `chain`'s contracts, from one consistent snapshot."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        frontier = await conn.fetchval("SELECT frontier_time FROM projector_state")
        row = await conn.fetchrow(
            "SELECT confirmed_block, confirmed_time FROM v_chain_frontier WHERE chain = $1", chain
        )
        if row is None or frontier is None or row["confirmed_time"] is None or frontier < row["confirmed_time"]:
            raise NotCaughtUp(chain)
        contracts: dict[str, ContractProjection] = defaultdict(ContractProjection)
        for r in await conn.fetch("SELECT contract, pool, amount FROM pool_amounts WHERE chain = $1", chain):
            contracts[r["contract"]].pools[r["pool"]] = int(r["amount"])
        for r in await conn.fetch("SELECT contract, holder, balance FROM lst_balances WHERE chain = $1", chain):
            contracts[r["contract"]].balances[r["holder"]] = int(r["balance"])
        for r in await conn.fetch("SELECT contract, token_id, owner, pool FROM lst_tokens WHERE chain = $1", chain):
            projection = contracts[r["contract"]]
            if r["owner"] is not None:
                projection.token_owners[int(r["token_id"])] = r["owner"]
            if r["pool"] is not None:
                projection.token_pools[int(r["token_id"])] = r["pool"]
        for r in await conn.fetch(
            """SELECT contract, staker, amount, extract(epoch FROM unlock_time)::bigint AS unlock, token_id
                 FROM pending_withdrawals WHERE chain = $1 ORDER BY contract, staker, position""",
            chain,
        ):
            token = None if r["token_id"] is None else int(r["token_id"])
            contracts[r["contract"]].pending.setdefault(r["staker"], []).append((int(r["amount"]), r["unlock"], token))
        for r in await conn.fetch(
            """SELECT contract, staker, count(*) AS requests FROM events
                WHERE chain = $1 AND event_type = 'unstake_request' AND block_number <= $2
                GROUP BY contract, staker""",
            chain,
            row["confirmed_block"],
        ):
            contracts[r["contract"]].requesters[r["staker"]] = r["requests"]
        return ChainProjection(row["confirmed_block"], dict(contracts))

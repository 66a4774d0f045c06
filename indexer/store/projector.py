"""The projector's own bookkeeping in Postgres: its state row, the chains' frontier, the reorgs it has accounted for.

`projector_state` is one row: up to which block time the projections are folded, the newest
reorg accounted for, the chains and contracts the projections cover, and a rebuild asked of the
projector by `indexer reproject` while another process holds it. The projection tables
themselves, and the events to fold, are `indexer.store.projections`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg


@dataclass(frozen=True, slots=True)
class Reorg:
    id: int
    chain: str
    ancestor_block: int  # the last block both branches share: events above it were removed


async def coverage(conn: asyncpg.Connection | asyncpg.Pool) -> list[str] | None:
    """The chains and contracts ("chain/address") the projections cover; None before the first write."""
    return await conn.fetchval("SELECT coverage FROM projector_state")


async def chain_frontier(
    conn: asyncpg.Connection | asyncpg.Pool, chains: Iterable[str]
) -> dict[str, tuple[int, int | None]]:
    """Per chain with a cursor: (confirmed block, confirmed block time); chains not indexed yet are left out."""
    rows = await conn.fetch(
        "SELECT chain, confirmed_block, confirmed_time FROM v_chain_frontier WHERE chain = ANY($1::text[])",
        list(chains),
    )
    return {r["chain"]: (r["confirmed_block"], r["confirmed_time"]) for r in rows}


async def newest_reorg(conn: asyncpg.Connection | asyncpg.Pool) -> int:
    """The id of the newest reorg recorded (0: none yet)."""
    return await conn.fetchval("SELECT coalesce(max(id), 0) FROM reorgs")


async def reorgs_seen(conn: asyncpg.Connection | asyncpg.Pool) -> int:
    """The newest reorg id the projections have accounted for (0: none)."""
    return await conn.fetchval("SELECT coalesce(max(reorgs_seen), 0) FROM projector_state")


async def reorgs_after(conn: asyncpg.Connection | asyncpg.Pool, seen: int) -> list[Reorg]:
    """The reorgs recorded after id `seen`, oldest first."""
    rows = await conn.fetch("SELECT id, chain, ancestor_block FROM reorgs WHERE id > $1 ORDER BY id", seen)
    return [Reorg(r["id"], r["chain"], r["ancestor_block"]) for r in rows]


async def hashed_pool_named(conn: asyncpg.Connection | asyncpg.Pool) -> bool:
    """Whether a pool folded under its hash (`hash:<keccak>`) has a name now."""
    return await conn.fetchval(
        """SELECT EXISTS (SELECT 1 FROM pool_amounts a JOIN pool_names n ON a.pool = 'hash:' || n.pool_hash)"""
    )


async def request_reproject(conn: asyncpg.Connection | asyncpg.Pool) -> None:
    """Ask the projector, in whichever process holds it, to rebuild the projections at its next step."""
    await conn.execute(
        """INSERT INTO projector_state (id, reproject_requested_at) VALUES (true, clock_timestamp())
           ON CONFLICT (id) DO UPDATE SET reproject_requested_at = EXCLUDED.reproject_requested_at"""
    )


async def reproject_request(conn: asyncpg.Connection | asyncpg.Pool) -> datetime | None:
    """When the pending rebuild request was made; None when there is none."""
    return await conn.fetchval("SELECT reproject_requested_at FROM projector_state")


async def reproject_answered(conn: asyncpg.Connection, request: datetime | None) -> None:
    """Clear the request `request` (and any older) in the caller's transaction: a newer one stays for the next."""
    if request is not None:
        await conn.execute(
            "UPDATE projector_state SET reproject_requested_at = NULL WHERE reproject_requested_at <= $1", request
        )


async def remember(
    conn: asyncpg.Connection | asyncpg.Pool, frontier_time: int | None, reorgs_seen: int, coverage: Sequence[str]
) -> None:
    """Record up to which block time the projections are folded (None: keep the last), the newest reorg accounted
    for and what they cover; in the caller's transaction when given a connection inside one."""
    await conn.execute(
        """INSERT INTO projector_state (id, reorgs_seen, frontier_time, coverage, updated_at)
           VALUES (true, $2, $1, $3, now())
           ON CONFLICT (id) DO UPDATE SET reorgs_seen = EXCLUDED.reorgs_seen, coverage = EXCLUDED.coverage,
               frontier_time = coalesce(EXCLUDED.frontier_time, projector_state.frontier_time),
               updated_at = now()""",
        frontier_time,
        reorgs_seen,
        coverage,
    )

"""How the indexer stands, as the operator's endpoints and `indexer status` read it from the database.

`/readyz` asks whether the database answers and how old each chain's cursor is; `/metrics`
reads its database-backed values (per-chain status, the projector's frontier, epochs closed)
at each scrape; `indexer status` and the demo print the rows of `v_indexer_status`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

# One row per chain cursor; lag in seconds is 0 once the indexed block is the node's head.
_STATUS_SQL = """
SELECT chain, head_block, indexed_block, confirmed_block, lag_blocks, unresolved_pools,
       extract(epoch FROM updated_at)::float8 AS updated_at,
       CASE WHEN indexed_block >= head_block THEN 0
            ELSE greatest(extract(epoch FROM now() - indexed_block_time), 0) END::float8 AS lag_seconds
  FROM v_indexer_status
"""
# How far the projector's frontier trails the newest block time it may fold (the smallest
# confirmed block time over the chains it projects; $1 NULL: every chain with a cursor).
_PROJECTOR_SQL = """
SELECT p.frontier_time,
       (SELECT min(f.confirmed_time) FROM v_chain_frontier f
         WHERE $1::text[] IS NULL OR f.chain = ANY($1::text[])) AS foldable_time
  FROM projector_state p
"""
_EPOCHS_CLOSED_SQL = "SELECT count(*) FROM epochs WHERE closed_at IS NOT NULL"


@dataclass(frozen=True, slots=True)
class Reading:
    """What `/metrics` reads from the database at a scrape."""

    chains: tuple[dict[str, Any], ...]  # rows of v_indexer_status: chain, blocks, lag_seconds, updated_at (unix s)
    frontier_time: int | None  # the block time the projector has folded up to (None: not yet)
    foldable_time: int | None  # the smallest confirmed block time over the projected chains
    epochs_closed: int  # reward epochs closed so far (a close is final: this only grows)


async def read(pool: asyncpg.Pool, projected_chains: Sequence[str] | None) -> Reading:
    """The database-backed metrics, on one connection; `projected_chains` None: every chain with a cursor."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(_STATUS_SQL)
        projector = await conn.fetchrow(_PROJECTOR_SQL, None if projected_chains is None else list(projected_chains))
        closed = await conn.fetchval(_EPOCHS_CLOSED_SQL)
    return Reading(
        chains=tuple(dict(r) for r in rows),
        frontier_time=None if projector is None else projector["frontier_time"],
        foldable_time=None if projector is None else projector["foldable_time"],
        epochs_closed=closed,
    )


async def cursor_ages(pool: asyncpg.Pool, chains: Iterable[str]) -> dict[str, float]:
    """Seconds since each chain's cursor was last updated (chains without a cursor are left out).

    Asks `SELECT 1` first: whatever this raises means the database does not answer.
    """
    async with pool.acquire() as conn:
        await conn.fetchval("SELECT 1")
        rows = await conn.fetch(
            "SELECT chain, extract(epoch FROM now() - updated_at)::float8 AS age"
            " FROM chain_cursors WHERE chain = ANY($1::text[])",
            list(chains),
        )
    return {r["chain"]: r["age"] for r in rows}


async def chain_status(conn: asyncpg.Connection | asyncpg.Pool, chain: str | None = None) -> list[dict[str, Any]]:
    """The rows of v_indexer_status by chain (`chain`: only its row, if it has one)."""
    if chain is None:
        rows = await conn.fetch("SELECT * FROM v_indexer_status ORDER BY chain")
    else:
        rows = await conn.fetch("SELECT * FROM v_indexer_status WHERE chain = $1", chain)
    return [dict(r) for r in rows]

"""Where each chain stands: its cursor, its recent block hashes, its contracts and health, the known pool names;
and forgetting a chain altogether."""

from __future__ import annotations

import asyncpg

from indexer.batch import BlockRef
from indexer.store.ownership import WriteCheck


async def load_cursor(conn: asyncpg.Connection | asyncpg.Pool, chain: str) -> BlockRef | None:
    """The last fully indexed block of `chain`, or None before its first batch."""
    row = await conn.fetchrow(
        """SELECT block_number, block_hash, extract(epoch FROM block_time)::bigint AS time,
                  (SELECT parent_hash FROM recent_blocks r
                    WHERE r.chain = c.chain AND r.block_number = c.block_number) AS parent_hash
             FROM chain_cursors c WHERE chain = $1""",
        chain,
    )
    if row is None:
        return None
    return BlockRef(row["block_number"], row["block_hash"], row["parent_hash"], row["time"])


async def record_head(
    conn: asyncpg.Connection | asyncpg.Pool, chain: str, head_block: int, confirmed_block: int
) -> None:
    """Note the node's head on a poll that found nothing new to index.

    The confirmed block never goes back on a node's word (a lagging node answers a lower head):
    only a reorg's rewind lowers it.
    """
    await conn.execute(
        """UPDATE chain_cursors SET head_block = $2, confirmed_block = GREATEST(confirmed_block, $3),
                  updated_at = now() WHERE chain = $1""",
        chain,
        head_block,
        confirmed_block,
    )


async def load_pool_names(conn: asyncpg.Connection | asyncpg.Pool) -> dict[str, str]:
    """Every pool name learnt so far, by keccak256."""
    rows = await conn.fetch("SELECT pool_hash, name FROM pool_names")
    return {r["pool_hash"]: r["name"] for r in rows}


async def load_recent_blocks(conn: asyncpg.Connection | asyncpg.Pool, chain: str) -> list[BlockRef]:
    """The remembered block hashes of `chain`, newest first."""
    rows = await conn.fetch(
        """SELECT block_number, block_hash, parent_hash FROM recent_blocks
            WHERE chain = $1 ORDER BY block_number DESC""",
        chain,
    )
    return [BlockRef(r["block_number"], r["block_hash"], r["parent_hash"], 0) for r in rows]


async def adopt_contracts(
    conn: asyncpg.Connection,
    chain: str,
    contracts: dict[str, int],
    rewind_to: BlockRef | None,
    fence: WriteCheck | None = None,
) -> None:
    """Record the chain's contracts (address -> start block); with `rewind_to`, move the cursor back there.
    `fence` as in `events.write_batch`."""
    async with conn.transaction():
        if fence is not None:
            await fence(conn)
        if rewind_to is not None:
            await conn.execute(
                """UPDATE chain_cursors SET block_number = $2, block_hash = $3, block_time = to_timestamp($4),
                          updated_at = now() WHERE chain = $1""",
                chain,
                rewind_to.number,
                rewind_to.hash,
                rewind_to.time,
            )
        await conn.execute(
            """INSERT INTO chain_contracts (chain, address, start_block)
               SELECT $1, * FROM unnest($2::text[], $3::bigint[]) ON CONFLICT DO NOTHING""",
            chain,
            list(contracts),
            list(contracts.values()),
        )


async def known_contracts(conn: asyncpg.Connection | asyncpg.Pool, chain: str) -> set[str]:
    """The contracts the chain's cursor covers."""
    return {r["address"] for r in await conn.fetch("SELECT address FROM chain_contracts WHERE chain = $1", chain)}


async def record_health(conn: asyncpg.Connection | asyncpg.Pool, chain: str, state: str, error: str | None) -> None:
    """Note how a source is doing: 'ok', 'retrying' (with the error) or 'failed' (stopped, with the error)."""
    await conn.execute(
        """INSERT INTO chain_health AS h (chain, state, error, since, updated_at) VALUES ($1, $2, $3, now(), now())
           ON CONFLICT (chain) DO UPDATE SET error = EXCLUDED.error, updated_at = now(),
               since = CASE WHEN h.state = EXCLUDED.state THEN h.since ELSE now() END, state = EXCLUDED.state""",
        chain,
        state,
        error,
    )


async def record_owner(conn: asyncpg.Connection | asyncpg.Pool, chain: str, owner: str) -> None:
    """Note which process (host:pid) indexes `chain` now."""
    await conn.execute(
        """INSERT INTO chain_health AS h (chain, state, owner) VALUES ($1, 'ok', $2)
           ON CONFLICT (chain) DO UPDATE SET owner = EXCLUDED.owner, updated_at = now()""",
        chain,
        owner,
    )


async def forget_chain(pool: asyncpg.Pool, chain: str) -> None:
    """Drop everything indexed of `chain` (its events, cursor and block hashes) in one transaction."""
    async with pool.acquire() as conn, conn.transaction():
        for table in ("events", "chain_cursors", "recent_blocks"):
            await conn.execute(f"DELETE FROM {table} WHERE chain = $1", chain)

"""Writing batches to the event log: COPY into staging, one idempotent INSERT, cursor in the same transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg

from indexer.batch import Batch
from indexer.errors import FatalError
from indexer.events import Event

EVENT_COLUMNS = (
    "chain", "chain_id", "contract", "contract_kind", "contract_version", "block_number", "block_hash",
    "block_time", "tx_hash", "log_index", "event_type", "staker", "counterparty", "pool", "pool_hash",
    "amount", "token_id", "unlock_time", "asset",
)  # fmt: skip
_COLUMN_LIST = ", ".join(EVENT_COLUMNS)

_CREATE_STAGING = f"""
CREATE TEMP TABLE IF NOT EXISTS events_staging ON COMMIT DELETE ROWS AS
SELECT {_COLUMN_LIST} FROM events WITH NO DATA
"""
_INSERT_FROM_STAGING = f"""
INSERT INTO events ({_COLUMN_LIST})
SELECT {_COLUMN_LIST} FROM events_staging
ON CONFLICT (chain, tx_hash, log_index) DO NOTHING
"""


def _timestamp(seconds: int | None, cache: dict[int, datetime]) -> datetime | None:
    if seconds is None:
        return None
    value = cache.get(seconds)
    if value is None:
        value = cache[seconds] = datetime.fromtimestamp(seconds, UTC)
    return value


def event_records(events: Sequence[Event]) -> list[tuple[Any, ...]]:
    """Events as rows in EVENT_COLUMNS order."""
    times: dict[int, datetime] = {}
    return [
        (
            e.chain, e.chain_id, e.contract, e.contract_kind, e.contract_version, e.block_number, e.block_hash,
            _timestamp(e.block_time, times), e.tx_hash, e.log_index, e.event_type.value, e.staker,
            e.counterparty, e.pool, e.pool_hash, e.amount, e.token_id, _timestamp(e.unlock_time, times), e.asset,
        )  # fmt: skip
        for e in events
    ]


async def insert_events(conn: asyncpg.Connection, events: Sequence[Event]) -> int:
    """Insert events idempotently inside the caller's transaction; returns how many were new."""
    if not events:
        return 0
    await conn.execute(_CREATE_STAGING)
    await conn.copy_records_to_table("events_staging", records=event_records(events), columns=EVENT_COLUMNS)
    status = await conn.execute(_INSERT_FROM_STAGING)
    await conn.execute("TRUNCATE events_staging")
    return int(status.rsplit(" ", 1)[1])


async def save_pool_names(conn: asyncpg.Connection, names: dict[str, str] | Any) -> None:
    """Remember pool names and resolve every stored event that waited for one of them."""
    if not names:
        return
    hashes, values = list(names.keys()), list(names.values())
    await conn.execute(
        """INSERT INTO pool_names (pool_hash, name) SELECT * FROM unnest($1::text[], $2::text[])
           ON CONFLICT (pool_hash) DO NOTHING""",
        hashes,
        values,
    )
    await conn.execute(
        """UPDATE events e SET pool = p.name FROM pool_names p
           WHERE e.pool IS NULL AND e.pool_hash = p.pool_hash AND p.pool_hash = ANY($1::text[])""",
        hashes,
    )


async def write_batch(
    conn: asyncpg.Connection,
    batch: Batch,
    *,
    chain_id: int,
    head_block: int,
    confirmed_block: int,
    keep_blocks: int,
) -> int:
    """Store a batch and move the chain's cursor to its last block, atomically; returns new events.

    The cursor must still be where this batch starts (`first_block - 1`), or absent:
    anything else means another writer moved it, which is fatal.
    """
    async with conn.transaction():
        await _advance_cursor(conn, batch, chain_id, head_block, confirmed_block)
        await save_pool_names(conn, batch.pool_names)
        inserted = await insert_events(conn, batch.events)
        blocks = {b.number: b for b in batch.blocks} | {batch.last.number: batch.last}
        await conn.executemany(
            """INSERT INTO recent_blocks (chain, block_number, block_hash, parent_hash) VALUES ($1, $2, $3, $4)
               ON CONFLICT (chain, block_number) DO UPDATE
               SET block_hash = EXCLUDED.block_hash, parent_hash = EXCLUDED.parent_hash""",
            [(batch.chain, b.number, b.hash, b.parent_hash) for b in blocks.values()],
        )
        await conn.execute(
            "DELETE FROM recent_blocks WHERE chain = $1 AND block_number < $2",
            batch.chain,
            batch.last.number - keep_blocks,
        )
    return inserted


async def _advance_cursor(
    conn: asyncpg.Connection, batch: Batch, chain_id: int, head_block: int, confirmed_block: int
) -> None:
    last = batch.last
    row = await conn.fetchrow(
        """INSERT INTO chain_cursors AS c
               (chain, chain_id, block_number, block_hash, block_time, head_block, confirmed_block, updated_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, now())
           ON CONFLICT (chain) DO UPDATE SET
               block_number = EXCLUDED.block_number, block_hash = EXCLUDED.block_hash,
               block_time = EXCLUDED.block_time, head_block = EXCLUDED.head_block,
               confirmed_block = EXCLUDED.confirmed_block, updated_at = now()
           WHERE c.block_number = $8
           RETURNING 1""",
        batch.chain,
        chain_id,
        last.number,
        last.hash,
        datetime.fromtimestamp(last.time, UTC),
        head_block,
        confirmed_block,
        batch.first_block - 1,
    )
    if row is None:
        raise FatalError(
            f"chain {batch.chain}: the cursor is no longer at block {batch.first_block - 1}; "
            "another process is indexing this chain, or the database was changed by hand"
        )

"""Writing batches to the event log: COPY into staging, one idempotent INSERT, cursor in the same transaction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg

from indexer.batch import Batch, BlockRef
from indexer.errors import FatalError, ReorgBelowClosedEpoch, ReorgDetected
from indexer.events import Event
from indexer.store.ownership import WriteCheck

EVENT_COLUMNS = (
    "chain",
    "chain_id",
    "contract",
    "contract_kind",
    "contract_version",
    "block_number",
    "block_hash",
    "block_time",
    "tx_hash",
    "log_index",
    "event_type",
    "staker",
    "counterparty",
    "pool",
    "pool_hash",
    "amount",
    "token_id",
    "unlock_time",
    "asset",
)
_COLUMN_LIST = ", ".join(EVENT_COLUMNS)

# Staging takes amounts as text and times as epoch seconds: asyncpg's binary NUMERIC
# and timestamptz encoders cost about four times as much as Postgres's own casts.
CREATE_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS events_staging (
    chain text, chain_id bigint, contract text, contract_kind text, contract_version smallint,
    block_number bigint, block_hash text, block_time bigint, tx_hash text, log_index integer,
    event_type text, staker text, counterparty text, pool text, pool_hash text,
    amount text, token_id text, unlock_time bigint, asset text
) ON COMMIT DELETE ROWS
"""


def event_records(events: Sequence[Event]) -> list[tuple[Any, ...]]:
    """Events as staging rows in EVENT_COLUMNS order (amounts as decimal text, times as epoch seconds)."""
    return [
        (
            e.chain,
            e.chain_id,
            e.contract,
            e.contract_kind,
            e.contract_version,
            e.block_number,
            e.block_hash,
            e.block_time,
            e.tx_hash,
            e.log_index,
            e.event_type.value,
            e.staker,
            e.counterparty,
            e.pool,
            e.pool_hash,
            None if e.amount is None else str(e.amount),
            None if e.token_id is None else str(e.token_id),
            e.unlock_time,
            e.asset,
        )
        for e in events
    ]


async def save_pool_names(conn: asyncpg.Connection, names: Mapping[str, str]) -> None:
    """Remember pool names and resolve every stored event that waited for one of them."""
    if not names:
        return
    await conn.execute(
        """WITH learnt AS (
               INSERT INTO pool_names (pool_hash, name) SELECT * FROM unnest($1::text[], $2::text[])
               ON CONFLICT (pool_hash) DO NOTHING RETURNING pool_hash, name)
           UPDATE events e SET pool = p.name FROM unnest($1::text[], $2::text[]) AS p(pool_hash, name)
            WHERE e.pool IS NULL AND e.pool_hash = p.pool_hash""",
        list(names.keys()),
        list(names.values()),
    )


# One round trip per batch after the COPY: move the cursor (guarded), insert the staged
# events, remember the range's block hashes and trim old ones. Data-modifying CTEs all run.
# Cursor and events commit together, so losing the last commits to a server crash only means
# re-indexing those blocks: durability can wait for the WAL writer (synchronous_commit off for
# this transaction, set here rather than by a statement of its own). `{on_conflict}` is empty
# for the first try: above the cursor nothing is stored in the common case, and a plain INSERT
# costs the server about a third less than ON CONFLICT DO NOTHING (a speculative insertion per
# row). A unique violation (events kept from before, e.g. a contract added to the config, or a
# node answering a log twice) makes `write_batch` store the batch again with the conflicts skipped.
_STORE_BATCH_TEMPLATE = f"""
WITH moved AS (
    INSERT INTO chain_cursors AS c
           (chain, chain_id, block_number, block_hash, block_time, head_block, confirmed_block, updated_at)
    VALUES ($1, $2, $3, $4, to_timestamp($5), $6, $7, now())
    ON CONFLICT (chain) DO UPDATE SET
        block_number = EXCLUDED.block_number, block_hash = EXCLUDED.block_hash,
        block_time = EXCLUDED.block_time, head_block = EXCLUDED.head_block,
        confirmed_block = GREATEST(c.confirmed_block, EXCLUDED.confirmed_block), updated_at = now()
    WHERE c.block_number = $8 AND ($13::text IS NULL OR c.block_hash = $13)
    RETURNING 1
), inserted AS (
    INSERT INTO events ({_COLUMN_LIST})
    SELECT chain, chain_id, contract, contract_kind, contract_version, block_number, block_hash,
           to_timestamp(block_time), tx_hash, log_index, event_type, staker, counterparty, pool, pool_hash,
           amount::numeric(78, 0), token_id::numeric(78, 0), to_timestamp(unlock_time), asset
      FROM events_staging
    {{on_conflict}}
    RETURNING 1
), remembered AS (
    INSERT INTO recent_blocks (chain, block_number, block_hash, parent_hash, block_time)
    SELECT $1, * FROM unnest($9::bigint[], $10::text[], $11::text[], $14::bigint[])
    ON CONFLICT (chain, block_number) DO UPDATE
        SET block_hash = EXCLUDED.block_hash, parent_hash = EXCLUDED.parent_hash, block_time = EXCLUDED.block_time
), trimmed AS (
    DELETE FROM recent_blocks WHERE chain = $1 AND block_number < $12
)
SELECT (SELECT count(*) FROM moved) AS moved, (SELECT count(*) FROM inserted) AS inserted,
       set_config('synchronous_commit', 'off', true) AS synchronous_commit
"""
_STORE_BATCH = _STORE_BATCH_TEMPLATE.format(on_conflict="")
_STORE_BATCH_SKIPPING_STORED = _STORE_BATCH_TEMPLATE.format(
    on_conflict="ON CONFLICT (chain, tx_hash, log_index) DO NOTHING"
)


async def write_batch(
    conn: asyncpg.Connection,
    batch: Batch,
    *,
    chain_id: int,
    head_block: int,
    confirmed_block: int,
    keep_blocks: int,
    fence: WriteCheck | None = None,
) -> int:
    """Store a batch and move the chain's cursor to its last block, atomically; returns new events.

    The cursor must still be where this batch starts (`first_block - 1`), or absent:
    anything else means another writer moved it, which is fatal. `fence`, when given, runs
    first in the transaction and raises to write nothing (the writer's lock is gone). The
    connection must have been prepared by `database.prepare_connection` (the store's pools do it).
    """
    last = batch.last
    oldest_kept = last.number - keep_blocks
    blocks = sorted(
        (
            b
            for b in {b.number: b for b in batch.blocks}.values()
            if b.number >= oldest_kept and b.number != last.number
        ),
        key=lambda b: b.number,
    ) + [last]
    values = (
        batch.chain,
        chain_id,
        last.number,
        last.hash,
        last.time,
        head_block,
        confirmed_block,
        batch.first_block - 1,
        [b.number for b in blocks],
        [b.hash for b in blocks],
        [b.parent_hash for b in blocks],
        oldest_kept,
        batch.parent_hash,
        [b.time for b in blocks],
    )
    try:
        return await _store(conn, batch, _STORE_BATCH, values, fence)
    except asyncpg.UniqueViolationError:  # some of its events are stored already: rolled back, store it skipping them
        return await _store(conn, batch, _STORE_BATCH_SKIPPING_STORED, values, fence)


async def _store(
    conn: asyncpg.Connection,
    batch: Batch,
    statement: str,
    values: tuple[Any, ...],
    fence: WriteCheck | None,
) -> int:
    """One try at storing the batch with its cursor and block hashes, in one transaction; returns new events."""
    async with conn.transaction():
        if fence is not None:
            await fence(conn)
        await save_pool_names(conn, batch.pool_names)
        if batch.events:
            await conn.copy_records_to_table(
                "events_staging", records=event_records(batch.events), columns=EVENT_COLUMNS
            )
        row = await conn.fetchrow(statement, *values)
        if row["moved"] != 1:
            await _refuse(conn, batch)
        if batch.history_changed_since is not None and row["inserted"]:
            await _record_history_change(conn, batch.chain, since=batch.history_changed_since,
                                         clock=batch.first_block - 1)  # fmt: skip
    return row["inserted"]


async def newest_event_block(conn: asyncpg.Connection | asyncpg.Pool, chain: str) -> int:
    """The newest block holding a stored event of `chain` (-1 when none)."""
    newest = await conn.fetchval("SELECT max(block_number) FROM events WHERE chain = $1", chain)
    return -1 if newest is None else newest


async def _record_history_change(conn: asyncpg.Connection, chain: str, *, since: int, clock: int) -> None:
    """Record that a feed's log changed from `since` on (a record came late), so the projections rebuild.

    Kept with the chains' reorgs: "the log below the indexed point changed after block `since` - 1".
    """
    await conn.execute(
        """INSERT INTO reorgs (chain, ancestor_block, ancestor_hash, orphaned_block, orphaned_hash, depth,
                               events_removed)
           VALUES ($1, $2, '', $3, '', $4, 0)""",
        chain,
        since - 1,
        clock,
        max(clock - since + 1, 0),
    )


async def _refuse(conn: asyncpg.Connection, batch: Batch) -> None:
    """Explain why the cursor did not move: the chain reorganized, or someone else moved it."""
    cursor = await conn.fetchrow("SELECT block_number, block_hash FROM chain_cursors WHERE chain = $1", batch.chain)
    if cursor is not None and cursor["block_number"] == batch.first_block - 1:
        raise ReorgDetected(
            f"chain {batch.chain}: block {batch.first_block} does not follow the indexed block "
            f"{cursor['block_number']} ({cursor['block_hash']} != parent {batch.parent_hash})"
        )
    raise FatalError(
        f"chain {batch.chain}: the cursor is no longer at block {batch.first_block - 1}; "
        "another process is indexing this chain, or the database was changed by hand"
    )


async def rewind(
    conn: asyncpg.Connection,
    chain: str,
    ancestor: BlockRef,
    orphaned_tip: BlockRef,
    fence: WriteCheck | None = None,
) -> int:
    """Undo everything above `ancestor` (the last block both branches share), atomically; returns events removed.

    Refused (ReorgBelowClosedEpoch, nothing changed) when `ancestor` lies before the end of a closed reward
    epoch: closed epochs are final, so their events must not be rewound silently. `fence` as in `write_batch`.
    """
    async with conn.transaction():
        if fence is not None:
            await fence(conn)
        closed_end = await conn.fetchval(
            "SELECT extract(epoch FROM max(end_time))::bigint FROM epochs WHERE closed_at IS NOT NULL"
        )
        if closed_end is not None and ancestor.time < closed_end:
            raise ReorgBelowClosedEpoch(
                f"chain {chain}: a reorg back to block {ancestor.number} (time {ancestor.time}) reaches into "
                f"a closed reward epoch (ended at {closed_end}); nothing was rewound: the epoch's allocations may be "
                "wrong, investigate before resuming"
            )
        removed = await conn.fetchval(
            """WITH gone AS (DELETE FROM events WHERE chain = $1 AND block_number > $2 RETURNING 1)
               SELECT count(*) FROM gone""",
            chain,
            ancestor.number,
        )
        await conn.execute("DELETE FROM recent_blocks WHERE chain = $1 AND block_number > $2", chain, ancestor.number)
        await conn.execute(
            """UPDATE chain_cursors SET block_number = $2, block_hash = $3, block_time = to_timestamp($4),
                      confirmed_block = LEAST(confirmed_block, $2), updated_at = now()
                WHERE chain = $1""",
            chain,
            ancestor.number,
            ancestor.hash,
            ancestor.time,
        )
        await conn.execute(
            """INSERT INTO reorgs (chain, ancestor_block, ancestor_hash, orphaned_block, orphaned_hash, depth,
                                   events_removed)
               VALUES ($1, $2, $3, $4, $5, $6, $7)""",
            chain,
            ancestor.number,
            ancestor.hash,
            orphaned_tip.number,
            orphaned_tip.hash,
            orphaned_tip.number - ancestor.number,
            removed,
        )
    return removed

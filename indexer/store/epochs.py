"""Reward epochs in Postgres: rewards, epoch rows, allocations, and the confirmed events to replay.

Every function takes a connection or pool; the ones that lock or write expect the caller's
transaction (see `indexer.epochs.close`). Tables: `epoch_rewards`, `epochs`, `epoch_allocations` in schema.sql.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from indexer.events import Event
from indexer.projection import Checkpoint, checkpoint
from indexer.store.projections import read_events
from indexer.store.projector import chain_frontier

BATCH = 100_000  # events read per query


@dataclass(frozen=True, slots=True)
class EpochRow:
    epoch: int
    start_time: int
    end_time: int
    root: str | None
    closed_at: datetime | None
    total: int | None

    @property
    def closed(self) -> bool:
        return self.closed_at is not None


def _ts(unix: int) -> datetime:
    return datetime.fromtimestamp(unix, UTC)


def _row(r) -> EpochRow | None:
    if r is None:
        return None
    return EpochRow(
        r["epoch"],
        int(r["start_time"].timestamp()),
        int(r["end_time"].timestamp()),
        r["root"],
        r["closed_at"],
        None if r["total"] is None else int(r["total"]),
    )


async def get_epoch(conn: asyncpg.Connection | asyncpg.Pool, epoch: int) -> EpochRow | None:
    """The epoch's row, None if it has neither a reward nor a close."""
    return _row(await conn.fetchrow("SELECT * FROM epochs WHERE epoch = $1", epoch))


async def lock_epoch(conn: asyncpg.Connection, epoch: int, start: int, end: int) -> EpochRow:
    """Create the epoch's row if missing and lock it for the caller's transaction."""
    await conn.execute(
        "INSERT INTO epochs (epoch, start_time, end_time) VALUES ($1, $2, $3) ON CONFLICT (epoch) DO NOTHING",
        epoch,
        _ts(start),
        _ts(end),
    )
    row = _row(await conn.fetchrow("SELECT * FROM epochs WHERE epoch = $1 FOR UPDATE", epoch))
    assert row is not None
    return row


async def put_reward(conn: asyncpg.Connection, epoch: int, validator: str, asset: str, amount: int) -> None:
    """Set the validator's reward of `asset` for the epoch (a second `add` for the same key replaces it)."""
    await conn.execute(
        """INSERT INTO epoch_rewards (epoch, validator, asset, amount) VALUES ($1, $2, $3, $4::text::numeric)
           ON CONFLICT (epoch, validator, asset) DO UPDATE SET amount = EXCLUDED.amount""",
        epoch,
        validator,
        asset,
        str(amount),
    )


async def rewards(conn: asyncpg.Connection | asyncpg.Pool, epoch: int) -> list[tuple[str, str, int]]:
    """(validator, asset, amount) of the epoch, sorted."""
    rows = await conn.fetch(
        "SELECT validator, asset, amount::text FROM epoch_rewards WHERE epoch = $1 ORDER BY validator, asset", epoch
    )
    return [(r[0], r[1], int(r[2])) for r in rows]


async def closed_epochs(conn: asyncpg.Connection | asyncpg.Pool) -> set[int]:
    """The numbers of every closed epoch."""
    return {r[0] for r in await conn.fetch("SELECT epoch FROM epochs WHERE closed_at IS NOT NULL")}


async def confirmed_times(conn: asyncpg.Connection | asyncpg.Pool, chains: Iterable[str]) -> dict[str, tuple]:
    """Per chain: (confirmed block, confirmed block time); (None, None) for a chain not indexed yet."""
    names = sorted(chains)
    found = await chain_frontier(conn, names)
    return {name: found.get(name, (None, None)) for name in names}


async def events_before(
    conn: asyncpg.Connection | asyncpg.Pool, limits: dict[str, int], end: int, batch: int = BATCH
) -> list[Event]:
    """Every event of the chains in `limits` (chain -> confirmed block) with block time < `end`, canonical order."""
    merged: list[Event] = []
    for chain, block in sorted(limits.items()):
        after: Checkpoint | None = None
        while True:
            events = await read_events(conn, chain, after, block, end - 1, batch)
            merged.extend(events)
            if len(events) < batch:
                break
            after = checkpoint(events[-1])
    merged.sort(key=checkpoint)
    return merged


async def write_close(
    conn: asyncpg.Connection,
    epoch: int,
    allocations: list[tuple[str, str, str, str, int]],
    root: str | None,
    total: int,
) -> None:
    """Store the allocations (validator, staker, asset, kind, amount), mark the epoch closed; caller's transaction."""
    if allocations:
        await conn.executemany(
            """INSERT INTO epoch_allocations (epoch, validator, staker, asset, kind, amount)
               VALUES ($1, $2, $3, $4, $5, $6::text::numeric)""",
            [(epoch, v, s, a, k, str(amount)) for v, s, a, k, amount in allocations],
        )
    await conn.execute(
        "UPDATE epochs SET root = $2, total = $3::text::numeric, closed_at = now() WHERE epoch = $1",
        epoch,
        root,
        str(total),
    )


async def staker_leaves(conn: asyncpg.Connection | asyncpg.Pool, epoch: int) -> list[tuple[str, str, int]]:
    """(staker, asset, amount) of the epoch's Merkle leaves: stake allocations summed over validators."""
    rows = await conn.fetch(
        """SELECT staker, asset, sum(amount)::text FROM epoch_allocations
            WHERE epoch = $1 AND kind = 'stake' GROUP BY staker, asset HAVING sum(amount) > 0
            ORDER BY staker, asset""",
        epoch,
    )
    return [(r[0], r[1], int(r[2])) for r in rows]

"""The HTTP API's reads (SPEC 9): views only, parameterised, through the read-only pool of `create_read_pool`.

Every function takes the read pool (or a connection of it) and returns plain values: amounts as
decimal strings (cast in SQL, so no float or exponent ever shows), times as aware datetimes.
The views are in schema.sql; `v_epoch_leaves` and `v_epoch_totals` exist for this module.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

import asyncpg

Reader = asyncpg.Pool | asyncpg.Connection


@dataclass(frozen=True, slots=True)
class EpochRow:
    epoch: int
    status: str  # "open" | "closed"
    root: str | None
    start: datetime
    end: datetime
    totals: dict[str, str]  # asset -> decimal amount


_EPOCHS = """
SELECT e.epoch, e.status, e.root, e.start_time, e.end_time,
       coalesce((SELECT json_object_agg(t.asset, t.amount::text ORDER BY t.asset)
                   FROM v_epoch_totals t WHERE t.epoch = e.epoch)::text, '{}') AS totals
  FROM v_epochs e
"""


def _epoch(row: asyncpg.Record) -> EpochRow:
    return EpochRow(row[0], row[1], row[2], row[3], row[4], json.loads(row[5]))


async def epochs(reader: Reader, limit: int, before: int | None) -> list[EpochRow]:
    """Up to `limit` epochs, newest first; only those numbered below `before` when it is given."""
    rows = await reader.fetch(
        _EPOCHS + " WHERE $2::bigint IS NULL OR e.epoch < $2::bigint ORDER BY e.epoch DESC LIMIT $1", limit, before
    )
    return [_epoch(r) for r in rows]


async def epoch(reader: Reader, number: int) -> EpochRow | None:
    """Epoch `number`, None when it has neither a reward nor a close."""
    row = await reader.fetchrow(_EPOCHS + " WHERE e.epoch = $1", number)
    return None if row is None else _epoch(row)


async def epoch_leaves(reader: Reader, number: int) -> list[tuple[str, str, int]]:
    """(staker, asset, amount) of the epoch's Merkle leaves (stake allocations summed over validators)."""
    rows = await reader.fetch(
        "SELECT staker, asset, amount::text FROM v_epoch_leaves WHERE epoch = $1 ORDER BY staker, asset", number
    )
    return [(r[0], r[1], int(r[2])) for r in rows]


async def validators(reader: Reader) -> list[dict[str, str]]:
    """The rows of v_validator_points, by validator and asset."""
    rows = await reader.fetch(
        "SELECT validator, asset, amount::text, points::text FROM v_validator_points ORDER BY validator, asset"
    )
    return [{"validator": r[0], "asset": r[1], "amount": r[2], "points": r[3]} for r in rows]


# staker_positions (schema.sql) reads the staker's bucket rows through the index, not every position
STAKER_POSITIONS = """SELECT validator, asset, amount::text, share::text FROM staker_positions($1)
                       ORDER BY validator, asset"""


async def staker(reader: Reader, address: str) -> dict[str, list[dict]]:
    """The staker's positions, liquid-token balances and open unstake requests (lists, empty when none)."""
    async with _connection(reader) as conn:
        positions = await conn.fetch(STAKER_POSITIONS, address)
        balances = await conn.fetch(
            "SELECT chain, contract, balance::text FROM v_lst_balances WHERE holder = $1 ORDER BY chain, contract",
            address,
        )
        pending = await conn.fetch(
            """SELECT chain, contract, amount::text, unlock_time, token_id::text FROM v_pending_withdrawals
                WHERE staker = $1 ORDER BY unlock_time, chain, contract, token_id""",
            address,
        )
    return {
        "positions": [{"validator": r[0], "asset": r[1], "amount": r[2], "share": r[3]} for r in positions],
        "lst_balances": [{"chain": r[0], "contract": r[1], "balance": r[2]} for r in balances],
        "pending_withdrawals": [
            {"chain": r[0], "contract": r[1], "amount": r[2], "unlock_time": r[3], "token_id": r[4]} for r in pending
        ],
    }


@contextlib.asynccontextmanager
async def _connection(reader: Reader) -> AsyncIterator[asyncpg.Connection]:
    """One connection of `reader` for several queries: acquired from a pool (and released), or the connection."""
    if isinstance(reader, asyncpg.Pool):
        async with reader.acquire() as conn:
            yield conn
    else:
        yield reader

"""The loyalty program in Postgres: the operator's activity points and prices in, each staker's daily points out.

Tables: `loyalty_activity`, `asset_prices` (filled by the operator) and `staker_points` (written by
`indexer points compute`, see `indexer.points.runner`) in schema.sql.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from decimal import Decimal

import asyncpg


async def activity(conn: asyncpg.Connection | asyncpg.Pool, first: date, last: date) -> dict[tuple[str, date], Decimal]:
    """The activity points of each (staker, day) from `first` through `last`."""
    rows = await conn.fetch("SELECT staker, day, points FROM loyalty_activity WHERE day BETWEEN $1 AND $2", first, last)
    return {(r["staker"], r["day"]): r["points"] for r in rows}


async def prices(conn: asyncpg.Connection | asyncpg.Pool, asset: str, through: date) -> dict[date, Decimal]:
    """The USD price of `asset` on each day that has one, through `through`, by day."""
    rows = await conn.fetch(
        "SELECT day, usd FROM asset_prices WHERE asset = $1 AND day <= $2 ORDER BY day", asset, through
    )
    return {r["day"]: r["usd"] for r in rows}


async def replace_days(pool: asyncpg.Pool, first: date, last: date, rows: Sequence[tuple]) -> None:
    """Replace every staker's points from `first` through `last` with `rows`, in one transaction.

    A row: (staker, day, staked, multiplier, total_boost, boosted_points, staking_points, additional_points).
    """
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("DELETE FROM staker_points WHERE day BETWEEN $1 AND $2", first, last)
        await conn.executemany("INSERT INTO staker_points VALUES ($1, $2, $3, $4, $5, $6, $7, $8)", rows)

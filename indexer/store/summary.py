"""What the event log and the projections hold, at a glance (what `indexer demo` prints).

Events counted per contract and type, and each validator's points as `v_validator_points` shows them.
"""

from __future__ import annotations

from typing import Any

import asyncpg


async def event_counts(conn: asyncpg.Connection | asyncpg.Pool, chain: str) -> list[tuple[str, str, int]]:
    """(contract, event type, events) of `chain`, by contract and type."""
    rows = await conn.fetch(
        "SELECT contract, event_type, count(*) AS n FROM events WHERE chain = $1 GROUP BY 1, 2 ORDER BY 1, 2",
        chain,
    )
    return [(r["contract"], r["event_type"], r["n"]) for r in rows]


async def validator_points(conn: asyncpg.Connection | asyncpg.Pool) -> list[dict[str, Any]]:
    """Rows of v_validator_points (validator, asset, amount, points) with the asset's decimals, most points first."""
    rows = await conn.fetch(
        """SELECT v.validator, v.asset, v.amount, v.points, a.decimals
             FROM v_validator_points v JOIN assets a USING (asset) ORDER BY v.points DESC, v.validator, v.asset"""
    )
    return [dict(r) for r in rows]

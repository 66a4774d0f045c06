"""Social feeds' records as the event log holds them (what a feed source needs to resume after a restart)."""

from __future__ import annotations

import asyncpg

from indexer.decode.social import Content, parse_tx_key
from indexer.events import EventType


async def stored_records(pool: asyncpg.Pool, feed: str) -> dict[tuple[str, int], Content]:
    """(staker, nonce) -> (validator, points, action, issued_at) of every record of `feed` in the event log."""
    rows = await pool.fetch(
        """SELECT tx_hash, pool, amount::text AS amount, event_type, extract(epoch FROM block_time)::bigint AS t
             FROM events WHERE chain = $1""",
        feed,
    )
    stored = {}
    for r in rows:
        action = "delegate" if r["event_type"] == EventType.SOCIAL_DELEGATE else "undelegate"
        amount = None if r["amount"] is None else int(r["amount"])
        stored[parse_tx_key(r["tx_hash"])] = (r["pool"], amount, action, r["t"])
    return stored

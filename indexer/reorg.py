"""Reorgs: how the follow loop notices that a chain changed under it, finds where, and undoes it.

- **Detect.** Every poll compares the node's block at the cursor's height with the cursor's hash;
  a range fetched in the kept window must link block to block by parent hash (`unlinked`), and
  its first block to the cursor's block, which the store checks again inside the write.
- **Find the common ancestor.** The newest remembered block (`recent_blocks`, the newest
  `max(2 x confirmations, 64)` blocks) that the node still has with the same hash.
- **Rewind** everything above it in one transaction (events, remembered blocks, the cursor, a row
  in `reorgs`), unless it reaches into a closed reward epoch: closed epochs are final, so that is
  a loud stop, as is a reorg deeper than the kept window. The projector sees the new `reorgs` row
  and rebuilds before anything reads it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import asyncpg
import structlog

from indexer.batch import BlockRef
from indexer.errors import ReorgBelowClosedEpoch, ReorgTooDeep, RetryableError

if TYPE_CHECKING:
    from indexer.store.ownership import WriteCheck

log = structlog.get_logger(__name__)


def unlinked(blocks: Sequence[BlockRef], *, consecutive_only: bool = False) -> BlockRef | None:
    """The first of `blocks` (consecutive, ascending) that does not name the one before as its parent (pure).

    None when they all link: a range fetched from a node that reorganized meanwhile does not, and is
    fetched again rather than stored. With `consecutive_only`, `blocks` ascend with gaps, and only a block
    right after another, whose parent hash is known, is checked.
    """
    for previous, block in zip(blocks, blocks[1:], strict=False):
        if consecutive_only and (block.number != previous.number + 1 or block.parent_hash is None):
            continue
        if block.parent_hash != previous.hash:
            return block
    return None


def common_ancestor(remembered: Sequence[BlockRef], canonical: Mapping[int, BlockRef]) -> BlockRef | None:
    """The newest remembered block (`remembered` newest first) the node's chain still holds with the same hash."""
    for block in remembered:
        found = canonical.get(block.number)
        if found is not None and found.hash == block.hash:
            return found
    return None


# How many polls in a row must find none of the remembered blocks on the node's chain before the reorg is
# declared deeper than the window: one answer of a node that lags or sits on a stale branch must not stop a
# chain for good (the simulation found that; see tests/fixtures/simulation_regressions.txt).
TOO_DEEP_AFTER = 3


class NoCommonAncestor(RetryableError):
    """None of the remembered blocks is on the node's chain: asked again before it is called too deep."""


async def repair(
    pool: asyncpg.Pool,
    source: Any,
    chain: str,
    cursor: BlockRef,
    *,
    window: int,
    metrics: Any,
    attempt: int = 1,
    fence: WriteCheck | None = None,
) -> BlockRef:
    """Rewind `chain` to the newest remembered block the node still has; returns the new cursor (`fence`: as in
    `store.events.write_batch`).

    When no remembered block is on the node's chain: NoCommonAncestor (retryable) for the first
    `TOO_DEEP_AFTER - 1` attempts in a row, then ReorgTooDeep. ReorgBelowClosedEpoch (nothing rewound)
    when the ancestor lies inside a closed reward epoch.
    """
    # Imported here: the sources use this module's pure checks and must not pull in the store with them.
    from indexer.store.cursors import load_recent_blocks
    from indexer.store.events import rewind

    remembered = await load_recent_blocks(pool, chain)
    ancestor = common_ancestor(remembered, await source.blocks([b.number for b in remembered]))
    if ancestor is None:
        oldest = remembered[-1].number if remembered else cursor.number
        if attempt < TOO_DEEP_AFTER:
            raise NoCommonAncestor(
                f"chain {chain}: none of the remembered blocks {oldest}..{cursor.number} is on the node's chain "
                f"(attempt {attempt} of {TOO_DEEP_AFTER}): asking again"
            )
        log.error("reorg_too_deep", chain=chain, block=cursor.number, oldest_remembered=oldest)
        raise ReorgTooDeep(
            f"chain {chain}: the chain reorganized below block {oldest}, the oldest block hash kept "
            f"(window {window} blocks); the event log may hold orphaned events: re-index this chain"
        )
    depth = cursor.number - ancestor.number
    try:
        async with pool.acquire() as conn:
            removed = await rewind(conn, chain, ancestor, cursor, fence)
    except ReorgBelowClosedEpoch:
        log.error("reorg_below_closed_epoch", chain=chain, block=cursor.number, ancestor=ancestor.number)
        if metrics is not None:
            metrics.reorg(chain, depth)
        raise
    log.warning("reorg_repaired", chain=chain, block=cursor.number, ancestor=ancestor.number, depth=depth,
                events_removed=removed)  # fmt: skip
    if metrics is not None:
        metrics.reorg(chain, depth)
    return ancestor

"""What a source hands the store for one block range: events plus the blocks that vouch for them."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from indexer.events import Event

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class BlockRef:
    """A block as the indexer remembers it: enough to resume and to detect a reorg."""

    number: int
    hash: str
    parent_hash: str | None
    time: int  # unix seconds


@dataclass(frozen=True, slots=True)
class Batch:
    """Everything learnt from blocks `first_block..last.number` of one chain, stored in one transaction."""

    chain: str
    first_block: int
    last: BlockRef
    events: tuple[Event, ...] = ()
    blocks: tuple[BlockRef, ...] = ()  # hashes seen in the range (blocks with logs, the range end)
    pool_names: Mapping[str, str] = field(default_factory=dict)  # keccak256(name) -> name, newly learnt
    parent_hash: str | None = None  # hash of block first_block - 1 as the node saw it, when known
    # A feed's record came late: the log changed from this block (issued_at) on, below what may have been
    # projected; stored with the batch as a change of history (a row in `reorgs`), so projections rebuild.
    history_changed_since: int | None = None


def split_at_blocks(
    items: Sequence[T], size: int, last_block: int, key: Callable[[T], int]
) -> list[tuple[Sequence[T], int]]:
    """Items ordered by block (`key`) cut into chunks of about `size`, never splitting a block.

    Each chunk comes with the block it ends at; the last chunk always ends at
    `last_block`, so a range without items is one empty chunk.
    """
    chunks: list[tuple[Sequence[T], int]] = []
    begin = 0
    while len(items) - begin > size:
        cut = begin + size
        block = key(items[cut - 1])
        while cut < len(items) and key(items[cut]) == block:
            cut += 1
        if cut == len(items):
            break
        chunks.append((items[begin:cut], block))
        begin = cut
    chunks.append((items[begin:], last_block))
    return chunks

"""What a source hands the store for one block range: events plus the blocks that vouch for them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from indexer.events import Event


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

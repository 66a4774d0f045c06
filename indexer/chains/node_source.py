"""What the follow loop reads of a node-backed source (EVM, TRON): its follow settings, from its chain's config."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class NodeSource:
    """The `Source` protocol's settings for a chain with blocks and configured contracts (see `watcher.Source`)."""

    chain: Any
    retained_blocks: int | None = None  # the loop keeps max(2 x confirmations, 64) block hashes

    @property
    def chain_id(self) -> int:
        return self.chain.chain_id

    @property
    def confirmations(self) -> int:
        return self.chain.confirmations

    @property
    def contract_starts(self) -> Mapping[str, int]:
        return {c.address: c.start_block for c in self.chain.contracts}

    @property
    def start_block(self) -> int:
        return min(c.start_block for c in self.chain.contracts)

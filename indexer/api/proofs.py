"""Closed epochs' Merkle trees, cached: a closed epoch is final, so its leaves and tree are read and built once.

`EpochTree` answers a staker's proofs with the same leaves, order and hex as `indexer proof`
(`indexer.epochs.close.proof`), from the project's own leaf and tree functions. `ProofCache` keeps
the trees of the last few epochs asked for (LRU); concurrent misses on one epoch share one read
and one build, and the build (keccak over every leaf) runs in a worker thread so the event loop,
which also follows the chains, keeps turning.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from indexer.api.errors import ApiError
from indexer.epochs import merkle
from indexer.epochs.close import build_leaves
from indexer.store import api as store

CACHED_EPOCHS = 8


class RootMismatch(RuntimeError):
    """The stored allocations of a closed epoch no longer give its stored root: the database was changed behind us."""


@dataclass(frozen=True, slots=True)
class EpochTree:
    epoch: int
    root: str | None
    tree: tuple[bytes, ...]
    index: dict[bytes, int]  # leaf hash -> leaf index (0 = smallest hash), as merkle.index_of gives
    leaves: dict[str, tuple[tuple[str, int, bytes], ...]]  # staker -> ((asset, amount, leaf hash), ...) by asset

    def proof(self, staker: str) -> dict[str, Any] | None:
        """`indexer proof`'s JSON for `staker` (canonical form), None when the staker has no leaf."""
        mine = self.leaves.get(staker)
        if not mine:
            return None
        return {
            "epoch": self.epoch,
            "root": self.root,
            "staker": staker,
            "leaves": [
                {
                    "asset": asset,
                    "amount": str(amount),
                    "leaf": "0x" + leaf.hex(),
                    "proof": ["0x" + p.hex() for p in merkle.proof(self.tree, self.index[leaf])],
                }
                for asset, amount, leaf in mine
            ],
        }


def build_epoch_tree(epoch: int, root: str | None, rows: Sequence[tuple[str, str, int]]) -> EpochTree:
    """The tree of a closed epoch from its leaves (staker, asset, amount); RootMismatch if it is not `root`."""
    hashed = build_leaves(epoch, rows)
    if not hashed:
        if root is not None:
            raise RootMismatch(f"epoch {epoch} has root {root} but no leaves")
        return EpochTree(epoch, None, (), {}, {})
    tree = merkle.build_tree(list(hashed))
    if "0x" + merkle.root(tree).hex() != root:
        raise RootMismatch(f"epoch {epoch}: the stored allocations no longer give the stored root {root}")
    by_staker: dict[str, list[tuple[str, int, bytes]]] = defaultdict(list)
    for leaf, (staker, asset, amount) in sorted(hashed.items(), key=lambda kv: kv[1]):  # `proof`'s order
        by_staker[staker].append((asset, amount, leaf))
    index = {leaf: i for i, leaf in enumerate(sorted(hashed))}
    return EpochTree(epoch, root, tree, index, {s: tuple(v) for s, v in by_staker.items()})


class ProofCache:
    """The trees of the `size` closed epochs asked for last; an unknown or open epoch is an ApiError 404."""

    def __init__(self, reader: asyncpg.Pool, size: int = CACHED_EPOCHS) -> None:
        self.reader = reader
        self.size = size
        self._trees: OrderedDict[int, EpochTree] = OrderedDict()
        self._filling: dict[int, asyncio.Future[EpochTree]] = {}

    def cached(self, epoch: int) -> EpochTree | None:
        tree = self._trees.get(epoch)
        if tree is not None:
            self._trees.move_to_end(epoch)
        return tree

    async def get(self, epoch: int) -> EpochTree:
        tree = self.cached(epoch)
        if tree is not None:
            return tree
        filling = self._filling.get(epoch)
        if filling is None:
            filling = self._filling[epoch] = asyncio.ensure_future(self._fill(epoch))
            filling.add_done_callback(lambda _: self._filling.pop(epoch, None))
        return await asyncio.shield(filling)  # a client that goes away does not cancel the others' build

    async def _fill(self, epoch: int) -> EpochTree:
        row = await store.epoch(self.reader, epoch)
        if row is None:
            raise ApiError(404, f"epoch {epoch} is unknown")
        if row.status != "closed":
            raise ApiError(404, f"epoch {epoch} is open: its proofs exist once it is closed")
        rows = await store.epoch_leaves(self.reader, epoch)
        tree = await asyncio.to_thread(build_epoch_tree, epoch, row.root, rows)
        self._trees[epoch] = tree
        while len(self._trees) > self.size:
            self._trees.popitem(last=False)
        return tree

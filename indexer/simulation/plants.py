"""Bugs the simulator can plant in the real code at run time, to prove it finds them.

Each plant is a context manager that patches one thing in the indexer's modules for the length of
a schedule and puts it back afterwards: the code under test is the real code with one fault, the
kind of bug peer indexers shipped (a stale branch's logs stored, a range end dropped, a batch
folded twice, a reorg not undone, events above the confirmed height folded).
`make simulate PLANT=list` prints their names; `make simulate PLANT=name` runs with one.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

from indexer.batch import BlockRef
from indexer.chains import evm, rpc
from indexer.projector import runner
from indexer.store import cursors
from indexer.store import events as store_events
from indexer.store import projector as projector_store


@contextlib.contextmanager
def _patched(target: Any, name: str, replacement: Any) -> Iterator[None]:
    original = getattr(target, name)
    setattr(target, name, replacement)
    try:
        yield
    finally:
        setattr(target, name, original)


@contextlib.contextmanager
def parent_check_skipped() -> Iterator[None]:
    """Ranges are stored without checking that their blocks link to each other and to the cursor."""
    original = evm.block_batches

    async def unlinked_batches(*args: Any, **kwargs: Any):
        async for batch in original(*args, **kwargs):
            yield dataclasses.replace(batch, parent_hash=None)

    with _patched(evm, "unlinked", lambda blocks: None), _patched(evm, "block_batches", unlinked_batches):
        yield


@contextlib.contextmanager
def stale_branch_logs_accepted() -> Iterator[None]:
    """A log's block hash is not checked against the node's header: logs of another branch are stored."""

    async def trusting(self: evm.EvmSource, logs: list, headers: dict[int, BlockRef]) -> dict[int, BlockRef]:
        blocks = dict(headers)
        for log in logs:
            number = int(log["blockNumber"], 16)
            if number not in blocks:
                time = int(log["blockTimestamp"], 16) if log.get("blockTimestamp") else 0
                blocks[number] = BlockRef(number, str(log["blockHash"]).lower(), None, time)
        missing = sorted(n for n, b in blocks.items() if not b.time)
        blocks |= await self.blocks(missing)
        return blocks

    with _patched(evm.EvmSource, "_blocks_of", trusting):
        yield


@contextlib.contextmanager
def range_end_off_by_one() -> Iterator[None]:
    """eth_getLogs asks for one block less than the range the source then says it covered."""
    original = rpc.RpcClient.batch

    async def batch(self: rpc.RpcClient, calls: list) -> list:
        shifted = []
        for method, params in calls:
            if method == "eth_getLogs":
                query = dict(params[0])
                if int(query["toBlock"], 16) > int(query["fromBlock"], 16):
                    query["toBlock"] = hex(int(query["toBlock"], 16) - 1)
                params = [query]
            shifted.append((method, params))
        return await original(self, shifted)

    with _patched(rpc.RpcClient, "batch", batch):
        yield


@contextlib.contextmanager
def batch_folded_twice() -> Iterator[None]:
    """The projector folds a batch again as if retried, its replay guard bypassed."""
    original = runner.apply

    def twice(draft: Any, events: list) -> int:
        before = dict(draft.checkpoints)
        latest = draft.latest
        applied = original(draft, events)
        draft.checkpoints.clear()
        draft.checkpoints.update(before)
        draft.latest = latest
        original(draft, events)
        return applied

    with _patched(runner, "apply", twice):
        yield


@contextlib.contextmanager
def above_confirmed_folded() -> Iterator[None]:
    """The projector folds up to each chain's cursor (its head) instead of its confirmed block."""
    original = projector_store.chain_frontier

    async def to_the_head(conn: Any, chains: Any) -> dict:
        found = await original(conn, chains)
        for chain in list(found):
            cursor = await cursors.load_cursor(conn, chain)
            if cursor is not None:
                found[chain] = (cursor.number, cursor.time)
        return found

    with _patched(projector_store, "chain_frontier", to_the_head):
        yield


@contextlib.contextmanager
def reorg_not_rewound() -> Iterator[None]:
    """A detected reorg is not undone: the events of the orphaned blocks stay and the cursor stays on them."""

    async def keep(conn: Any, chain: str, ancestor: BlockRef, orphaned_tip: BlockRef) -> int:
        return 0

    with _patched(store_events, "rewind", keep):
        yield


PLANTS: dict[str, Callable[[], contextlib.AbstractContextManager]] = {
    "parent_check_skipped": parent_check_skipped,
    "stale_branch_logs_accepted": stale_branch_logs_accepted,
    "range_end_off_by_one": range_end_off_by_one,
    "batch_folded_twice": batch_folded_twice,
    "above_confirmed_folded": above_confirmed_folded,
    "reorg_not_rewound": reorg_not_rewound,
}

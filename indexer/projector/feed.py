"""The confirmed events still to fold, merged across chains in canonical order and read ahead of the fold.

Each chain's events come from the store in chain order, a limited number at a time. Events
of several chains can only be merged up to the earliest last-read event of a chain that has
more to read: that chain's next events may sort before anything later. `ready_prefix` is
that rule (pure); `read_merged` drives it over the store, and `read_ahead` keeps the next
batch in flight while the caller folds the current one.
"""

from __future__ import annotations

import asyncio
import heapq
from bisect import bisect_right
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from typing import TypeVar

from indexer.events import Event
from indexer.projection import canonical_order

Position = tuple[int, int, str]  # (block, log index, tx hash): read events after this place in the chain
Reader = Callable[[str, Position, int], Awaitable[list[Event]]]  # (chain, after, limit) -> next events
T = TypeVar("T")


def ready_prefix(
    buffers: Mapping[str, Sequence[Event]], open_chains: Collection[str]
) -> tuple[list[Event], dict[str, list[Event]]]:
    """Events safe to fold now, in canonical order, and what stays buffered per chain.

    A chain is open while the store may hold more of its events than were read; every open
    chain must have at least one event buffered. Without open chains, everything is ready.
    """
    if any(not buffers.get(chain) for chain in open_chains):
        raise ValueError("an open chain has nothing buffered: read it before merging")
    cut = min((canonical_order(buffers[chain][-1]) for chain in open_chains), default=None)
    ready, rest = [], {}
    for chain, events in buffers.items():
        split = len(events) if cut is None else bisect_right(events, cut, key=canonical_order)
        ready.append(events[:split])
        rest[chain] = list(events[split:])
    return list(heapq.merge(*ready, key=canonical_order)), rest


async def read_merged(read: Reader, after: Mapping[str, Position], limit: int) -> AsyncIterator[list[Event]]:
    """Batches of every chain's remaining events in canonical order, reading `limit` events per chain at a time."""
    positions = dict(after)
    buffers: dict[str, list[Event]] = {chain: [] for chain in positions}
    open_chains = set(positions)
    while open_chains or any(buffers.values()):
        empty = sorted(chain for chain in open_chains if not buffers[chain])
        reads = await asyncio.gather(*(read(chain, positions[chain], limit) for chain in empty))
        for chain, events in zip(empty, reads, strict=True):
            if len(events) < limit:
                open_chains.discard(chain)
            if events:
                buffers[chain] = events
                positions[chain] = (events[-1].block_number, events[-1].log_index, events[-1].tx_hash)
        ready, buffers = ready_prefix(buffers, open_chains)
        if ready:
            yield ready


async def read_ahead(batches: AsyncIterator[T]) -> AsyncIterator[T]:
    """The same batches, the next one already being read while the caller works on the current one."""
    upcoming: asyncio.Future[T] = asyncio.ensure_future(anext(batches))
    try:
        while True:
            try:
                batch = await upcoming
            except StopAsyncIteration:
                return
            upcoming = asyncio.ensure_future(anext(batches))
            await asyncio.sleep(0)  # let the next read's queries go out before the caller's CPU-bound work
            yield batch
    finally:
        if not upcoming.done():
            upcoming.cancel()
            try:
                await upcoming
            except (asyncio.CancelledError, StopAsyncIteration):
                pass
        aclose = getattr(batches, "aclose", None)
        if aclose is not None:
            await aclose()

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
from indexer.projection import Checkpoint, checkpoint

# (chain, after, limit) -> the chain's next `limit` events after checkpoint `after` (None: from its start)
Reader = Callable[[str, Checkpoint | None, int], Awaitable[list[Event]]]
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
    cut = min((checkpoint(buffers[chain][-1]) for chain in open_chains), default=None)
    ready, rest = [], {}
    for chain, events in buffers.items():
        split = len(events) if cut is None else bisect_right(events, cut, key=checkpoint)
        ready.append(events[:split])
        rest[chain] = list(events[split:])
    return list(heapq.merge(*ready, key=checkpoint)), rest


async def read_merged(read: Reader, after: Mapping[str, Checkpoint | None], limit: int) -> AsyncIterator[list[Event]]:
    """Batches of every chain's remaining events in canonical order, reading `limit` events per chain at a time."""
    read_to = dict(after)  # chain -> checkpoint of the last event read
    buffers: dict[str, list[Event]] = {chain: [] for chain in read_to}
    open_chains = set(read_to)
    while open_chains or any(buffers.values()):
        empty = sorted(chain for chain in open_chains if not buffers[chain])
        reads = await asyncio.gather(*(read(chain, read_to[chain], limit) for chain in empty))
        for chain, events in zip(empty, reads, strict=True):
            if len(events) < limit:
                open_chains.discard(chain)
            if events:
                buffers[chain] = events
                read_to[chain] = checkpoint(events[-1])
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
            await asyncio.wait([upcoming])  # its end, whatever it is, is not the caller's: an error it raised
        if not upcoming.cancelled():  # while cancelled must not replace the one the caller is leaving with
            upcoming.exception()  # dropped, and so marked (not logged at garbage collection as never retrieved)
        aclose = getattr(batches, "aclose", None)
        if aclose is not None:
            await aclose()

"""Turning a fetched block range into batches the store writes, shared by the node sources."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping, Sequence

from indexer.batch import Batch, BlockRef, split_at_blocks
from indexer.decode.logs import RpcLog, log_block_number
from indexer.events import Event


async def block_batches(
    chain: str,
    first_block: int,
    last: BlockRef,
    logs: list[RpcLog],
    blocks: Mapping[int, BlockRef],
    size: int,
    decode: Callable[[Sequence[RpcLog]], tuple[Event, ...]],
    pool_names: Mapping[str, str],
) -> AsyncIterator[Batch]:
    """Batches of about `size` logs split at block boundaries, decoded one chunk at a time.

    The first can be written while the next is decoded; newly learnt pool names travel
    with the first batch, and each batch carries its first block's parent hash when known.
    `logs` is consumed: emptied at once, each chunk's logs let go as soon as they are decoded,
    so that a range far denser than expected (after empty ranges the next one grows fourfold)
    does not stay in memory whole until its last batch is written.
    """
    chunks: list = split_at_blocks(logs, size, last.number, key=log_block_number)
    logs.clear()
    first = first_block
    for i in range(len(chunks)):
        chunk, chunk_end = chunks[i]
        chunks[i] = None
        events = decode(chunk)
        del chunk
        yield Batch(
            chain=chain,
            first_block=first,
            last=blocks[chunk_end],
            events=events,
            blocks=tuple(b for n, b in blocks.items() if first <= n <= chunk_end),
            pool_names=pool_names if first == first_block else {},
            parent_hash=blocks[first].parent_hash if first in blocks else None,
        )
        first = chunk_end + 1
        await asyncio.sleep(0)  # let the writer send what it has while the next chunk decodes

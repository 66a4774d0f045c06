"""Cutting a range's events into batches at block boundaries (pure)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from indexer.batch import split_at_blocks
from indexer.events import Event, EventType


def BLOCK(e: Event) -> int:  # noqa: N802 - a key function, named like a constant
    return e.block_number


def event(block: int, index: int) -> Event:
    return Event("c", 1, "0x", "native", 1, block, "0xh", 0, "0xt", index, EventType.STAKE, "ETH")


def events_in(blocks: list[int]) -> list[Event]:
    return [event(b, i) for i, b in enumerate(sorted(blocks))]


def test_empty_range_is_one_empty_chunk_ending_at_the_range_end():
    assert split_at_blocks([], 10, 99, key=BLOCK) == [([], 99)]


def test_a_block_is_never_split_even_when_larger_than_the_size():
    evs = events_in([5] * 7 + [6] * 2)
    assert [(len(c), end) for c, end in split_at_blocks(evs, 3, 9, key=BLOCK)] == [(7, 5), (2, 9)]


@given(blocks=st.lists(st.integers(0, 50), max_size=200), size=st.integers(1, 40))
def test_chunks_cover_the_events_in_order_and_end_at_block_boundaries(blocks, size):
    evs = events_in(blocks)
    chunks = split_at_blocks(evs, size, 60, key=BLOCK)
    assert [e for chunk, _ in chunks for e in chunk] == evs
    assert all(isinstance(chunk, list) for chunk, _ in chunks)
    assert chunks[-1][1] == 60
    ends = [end for _, end in chunks]
    assert ends == sorted(set(ends))  # strictly increasing
    previous_end = -1
    for chunk, end in chunks:
        assert all(previous_end < e.block_number <= end for e in chunk)
        previous_end = end
    assert all(len(chunk) >= size for chunk, _ in chunks[:-1])


class Log(dict):
    """A node's log (a dict) that a weak reference can watch."""


def test_a_ranges_logs_are_let_go_chunk_by_chunk_as_they_are_decoded():
    import asyncio
    import gc
    import weakref

    from indexer.batch import BlockRef
    from indexer.chains.batches import block_batches

    logs = [Log(blockNumber=hex(block)) for block in (1, 1, 2, 3, 3, 3, 4)]
    alive = [weakref.ref(log) for log in logs]
    blocks = {n: BlockRef(n, f"0x{n}", f"0x{n - 1}", 100 + n) for n in range(1, 6)}
    decoded: list[int] = []

    def decode(chunk):
        decoded.append(len(chunk))
        return ()

    async def batches():
        seen = []
        async for batch in block_batches("c", 1, blocks[5], logs, blocks, 2, decode, {}):
            gc.collect()
            seen.append((batch.first_block, batch.last.number, [ref() is not None for ref in alive]))
        return seen

    seen = asyncio.run(batches())
    assert logs == []  # taken over by block_batches
    assert decoded == [2, 4, 1]  # chunks of about 2 logs, a block never split
    assert [(first, last) for first, last, _ in seen] == [(1, 1), (2, 3), (4, 5)]
    assert seen[0][2] == [False, False, True, True, True, True, True]  # block 1's logs gone once decoded
    assert seen[1][2] == [False] * 6 + [True]

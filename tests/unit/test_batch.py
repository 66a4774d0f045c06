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

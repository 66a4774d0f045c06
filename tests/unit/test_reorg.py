"""The pure parts of reorg handling: blocks that do not link, and the common ancestor of two branches."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from indexer.batch import BlockRef
from indexer.reorg import common_ancestor, unlinked


def chain(start: int, length: int, fork: str = "a", parent: str | None = None) -> list[BlockRef]:
    blocks, previous = [], parent
    for number in range(start, start + length):
        block = BlockRef(number, f"0x{fork}{number}", previous, 1_700_000_000 + number)
        blocks.append(block)
        previous = block.hash
    return blocks


def test_a_linked_range_has_no_unlinked_block():
    assert unlinked(chain(5, 10)) is None
    assert unlinked([]) is None and unlinked(chain(1, 1)) is None


@given(length=st.integers(2, 30), cut=st.integers(1, 29))
def test_the_first_block_of_another_branch_is_the_unlinked_one(length, cut):
    cut = min(cut, length - 1)
    ours = chain(0, length)
    theirs = chain(cut, length - cut, fork="b", parent="0xsomething-else")
    mixed = ours[:cut] + theirs
    assert unlinked(mixed) == theirs[0]


@given(length=st.integers(1, 40), depth=st.integers(0, 40))
def test_the_common_ancestor_is_the_newest_block_both_branches_hold(length, depth):
    depth = min(depth, length)
    old = chain(0, length)
    new = {b.number: b for b in old[: length - depth] + chain(length - depth, depth + 3, fork="b")}
    remembered = list(reversed(old))  # newest first, as the store returns them
    ancestor = common_ancestor(remembered, new)
    if depth == length:
        assert ancestor is None  # the reorg reaches below everything remembered: too deep
    else:
        assert ancestor == old[length - depth - 1]

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


def test_with_gaps_only_neighbours_whose_parent_is_known_must_link():
    ours = chain(0, 6)
    orphan = BlockRef(3, "0xorphan3", ours[2].hash, 0)  # a stale node's block 3, under our block 4
    assert unlinked([ours[1], orphan, ours[4]], consecutive_only=True) == ours[4]
    assert unlinked([ours[1], orphan, ours[5]], consecutive_only=True) is None  # 4 is missing: nothing to compare
    no_parent = BlockRef(4, ours[4].hash, None, 0)  # a log vouched for its block: its parent is unknown
    assert unlinked([orphan, no_parent], consecutive_only=True) is None
    assert unlinked([ours[0], ours[2], ours[3]], consecutive_only=True) is None


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

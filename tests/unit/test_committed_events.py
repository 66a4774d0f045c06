"""The watchers' hand-over answers a projector read exactly as the event log would, or not at all."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from indexer.batch import Batch, BlockRef
from indexer.events import Event, EventType
from indexer.projection import checkpoint
from indexer.projector.committed import CommittedEvents, order_key

CHAIN = "eth"


def event(block: int, time: int, log_index: int, tx: str = "0xaa", **fields) -> Event:
    fields = {"staker": "0x01", "pool": "0x02", "amount": 1, **fields}
    return Event(CHAIN, 1, "0xc0", "native", 1, block, f"0xb{block}", time, tx, log_index, EventType.STAKE, "ETH",
                 **fields)  # fmt: skip


def batch(first: int, last: int, events: list[Event], time: int = 0) -> Batch:
    return Batch(CHAIN, first, BlockRef(last, f"0xb{last}", None, time), tuple(events))


def the_log(stored: list[Event], after, up_to_block: int, up_to_time: int, limit: int) -> list[Event]:
    """What `store.projections.read_events` selects, over the stored events (its SQL, in Python)."""
    start = (after[2], after[3], after[4]) if after is not None else (-1, -1, "")
    chosen = [
        e for e in stored if order_key(e) > start and e.block_number <= up_to_block and e.block_time <= up_to_time
    ]
    return sorted(chosen, key=order_key)[:limit]


@st.composite
def histories(draw):
    """A chain's blocks (times rising, a few events each, tx hashes and log indexes in any order within a
    block), cut into batches; each batch stored whole, or with some events skipped as stored before."""
    blocks, time = [], 0
    for number in range(draw(st.integers(1, 30))):
        time += draw(st.integers(0, 2))
        count = draw(st.integers(0, 3))
        indexes = draw(st.permutations(range(count)))
        blocks.append([event(number, time, i, tx=draw(st.sampled_from(["0xaa", "0xbb"]))) for i in indexes])
    cuts = sorted(set(draw(st.lists(st.integers(1, len(blocks) - 1), max_size=8)))) if len(blocks) > 1 else []
    bounds = list(zip([0, *cuts], [*cuts, len(blocks)], strict=True))
    batches = []
    for first, end in bounds:
        events = [e for block in blocks[first:end] for e in block]
        skipped = draw(st.booleans()) and draw(st.integers(0, 9)) == 0 and bool(events)
        batches.append((batch(first, end - 1, events, blocks[end - 1][0].block_time if blocks[end - 1] else 0),
                        len(events) - 1 if skipped else len(events)))  # fmt: skip
    return batches


@settings(max_examples=300, deadline=None)
@given(histories(), st.data())
def test_a_read_answered_from_memory_is_what_the_log_answers(history, data):
    kept, stored, answered = CommittedEvents(limit=data.draw(st.integers(1, 60))), [], 0
    for index, (handed, new) in enumerate(history):
        stored.extend(handed.events)  # the log holds the batch (its skipped events were there before)
        kept.committed(handed, new, first=index == 0)  # the first batch starts the chain's log
        for _ in range(data.draw(st.integers(0, 3))):
            after = data.draw(st.none() | st.sampled_from(stored).map(checkpoint)) if stored else None
            up_to_block = data.draw(st.integers(-1, handed.last.number + 2))
            up_to_time, limit = data.draw(st.integers(-1, 70)), data.draw(st.integers(1, 5))
            found = kept.read(CHAIN, after, up_to_block, up_to_time, limit)
            if found is not None:
                answered += 1
                assert found == the_log(stored, after, up_to_block, up_to_time, limit)
        assert len(kept) <= kept.limit


def test_reads_beyond_what_was_handed_over_go_to_the_log():
    kept = CommittedEvents()
    kept.committed(batch(5, 6, [event(5, 10, 0), event(6, 11, 0)], time=11), 2)
    assert kept.read(CHAIN, None, 6, 99, 10) is None  # from the chain's start: blocks before 5 were not handed over
    assert kept.read(CHAIN, checkpoint(event(4, 9, 0)), 6, 99, 10) is None
    assert kept.read(CHAIN, checkpoint(event(5, 10, 0)), 7, 99, 10) is None  # block 7 is not handed over yet
    assert kept.read(CHAIN, checkpoint(event(5, 10, 0)), 6, 99, 10) == [event(6, 11, 0)]
    assert kept.read("bsc", checkpoint(event(5, 10, 0)), 6, 99, 10) is None
    assert kept.reach(CHAIN) == (6, 11)


def test_the_first_batch_of_a_chain_answers_reads_from_its_start():
    kept = CommittedEvents()
    kept.committed(batch(5, 6, [event(5, 10, 0), event(6, 11, 0)], time=11), 2, first=True)
    assert kept.read(CHAIN, None, 6, 99, 10) == [event(5, 10, 0), event(6, 11, 0)]
    kept.forget(CHAIN)
    kept.committed(batch(7, 7, [event(7, 12, 0)], time=12), 1)  # a new run: from block 7 on only
    assert kept.read(CHAIN, None, 7, 99, 10) is None


def test_what_the_log_may_hold_differently_is_not_kept():
    kept = CommittedEvents()
    kept.committed(batch(0, 1, [event(0, 1, 0)], time=1), 1)
    kept.committed(batch(2, 2, [event(2, 2, 0), event(2, 2, 1)], time=2), 1)  # one was stored before: unknown which
    assert kept.read(CHAIN, checkpoint(event(0, 1, 0)), 1, 99, 10) is None and kept.reach(CHAIN) is None
    kept.committed(batch(3, 3, [event(3, 3, 0, pool=None, pool_hash="0x99")], time=3), 1)  # its name comes later
    assert kept.reach(CHAIN) is None
    kept.committed(batch(4, 4, [event(4, 4, 0)], time=4), 1)
    kept.committed(batch(6, 6, [event(6, 6, 0)], time=6), 1)  # does not follow block 4: the run starts anew
    assert kept.read(CHAIN, checkpoint(event(4, 4, 0)), 6, 99, 10) is None
    assert kept.read(CHAIN, checkpoint(event(5, 5, 9)), 6, 99, 10) is None  # block 5 may hold more: not handed over
    kept.committed(batch(7, 7, [event(7, 7, 0)], time=7), 1)
    assert kept.read(CHAIN, checkpoint(event(6, 6, 0)), 7, 99, 10) == [event(7, 7, 0)]
    kept.forget(CHAIN)
    assert kept.read(CHAIN, checkpoint(event(6, 6, 0)), 7, 99, 10) is None


def test_memory_is_bounded_and_let_go_as_the_projector_reads_on():
    kept = CommittedEvents(limit=3)
    events = [event(n, n, 0) for n in range(5)]
    kept.committed(batch(0, 4, events, time=4), 5)
    assert len(kept) == 3
    assert kept.read(CHAIN, checkpoint(events[0]), 4, 99, 10) is None  # events[1] was let go
    assert kept.read(CHAIN, checkpoint(events[1]), 4, 99, 10) == events[2:]
    assert kept.read(CHAIN, checkpoint(events[3]), 4, 99, 10) == events[4:]
    assert len(kept) == 1


def test_only_node_chains_hand_their_batches_over():
    """A feed's log can change below what it committed (records published late): its reads stay on the log."""
    from types import SimpleNamespace

    from indexer.service import _watcher

    kept = CommittedEvents()
    for kind, expected in (("evm", kept), ("tron", kept), ("social", None)):
        chain = SimpleNamespace(kind=kind, name=kind, poll_interval_seconds=1.0)
        source = SimpleNamespace(chain=chain, retained_blocks=None, confirmations=0)
        assert _watcher(source, None, None, kept).committed is expected

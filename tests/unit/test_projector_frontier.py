"""Which confirmed events the projector may fold (the frontier rule), and when it writes them (pure)."""

from __future__ import annotations

from indexer.projector.runner import fold_limits


def test_a_chain_still_at_the_frontier_time_holds_back_later_named_chains_at_that_time():
    limits, until = fold_limits([("alpha", 10, 100), ("beta", 20, 100), ("gamma", 30, 105)])
    assert until == 100
    # alpha may still add blocks at t=100; they sort before beta's and gamma's events at t=100
    assert limits == {"alpha": (10, 100), "beta": (20, 99), "gamma": (30, 99)}


def test_chains_named_before_the_open_one_fold_their_events_at_the_frontier_time():
    limits, until = fold_limits([("alpha", 10, 105), ("beta", 20, 100)])
    assert (until, limits) == (100, {"alpha": (10, 100), "beta": (20, 100)})


def test_a_single_chain_folds_up_to_its_confirmed_block_time():
    assert fold_limits([("local", 7, 50)]) == ({"local": (7, 50)}, 50)


def test_a_chain_without_a_confirmed_block_stops_the_projection():
    assert fold_limits([("a", 1, 10), ("b", 1, None)]) is None
    assert fold_limits([]) is None


def test_a_draft_is_written_every_batch_unless_it_rewrote_more_rows_than_it_folded_events():
    from indexer.projector.runner import WIDEST_BATCH, time_to_write

    assert not time_to_write(999, 10, 1000)  # not a batch yet
    assert time_to_write(1000, 1000, 1000)  # a batch, as many rows as events
    assert not time_to_write(1000, 1001, 1000)  # wide (pro rata over whole pools): fold on...
    assert not time_to_write(WIDEST_BATCH * 1000 - 1, 10**6, 1000)
    assert time_to_write(WIDEST_BATCH * 1000, 10**6, 1000)  # ...but not forever

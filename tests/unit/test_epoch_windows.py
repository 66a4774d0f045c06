"""Epoch windows: half-open [start, end) windows from genesis, and when an epoch may close (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from indexer.epochs.close import lagging_sources
from indexer.epochs.windows import EpochSchedule

GENESIS = 1_767_225_600  # 2026-01-01T00:00:00Z, the shipped chains.yaml genesis
DAY = 86_400
SCHEDULE = EpochSchedule(GENESIS, DAY)


def test_epoch_bounds_are_genesis_plus_n_lengths():
    assert SCHEDULE.epoch_bounds(0) == (GENESIS, GENESIS + DAY)
    assert SCHEDULE.epoch_bounds(3) == (GENESIS + 3 * DAY, GENESIS + 4 * DAY)


def test_a_block_at_exactly_the_end_belongs_to_the_next_epoch():
    _, end = SCHEDULE.epoch_bounds(5)
    assert SCHEDULE.epoch_of(end - 1) == 5
    assert SCHEDULE.epoch_of(end) == 6


def test_genesis_itself_is_epoch_zero_and_earlier_times_are_refused():
    assert SCHEDULE.epoch_of(GENESIS) == 0
    with pytest.raises(ValueError, match="before the epoch genesis"):
        SCHEDULE.epoch_of(GENESIS - 1)


def test_bad_length_and_negative_epoch_are_refused():
    with pytest.raises(ValueError):
        EpochSchedule(GENESIS, 0)
    with pytest.raises(ValueError):
        SCHEDULE.epoch_bounds(-1)


@given(st.integers(min_value=GENESIS, max_value=GENESIS + 10**9), st.integers(min_value=1, max_value=10**7))
def test_every_time_lies_in_the_window_of_its_epoch(ts, length):
    schedule = EpochSchedule(GENESIS, length)
    start, end = schedule.epoch_bounds(schedule.epoch_of(ts))
    assert start <= ts < end and end - start == length


def test_an_epoch_waits_for_every_chain_confirmed_past_its_end():
    _, end = SCHEDULE.epoch_bounds(2)
    frontier = {"tron": (5, end - 1), "ethereum": (9, end), "bsc": (7, end + 30), "arbitrum": (None, None)}
    assert lagging_sources(end, frontier, {}) == [
        "arbitrum (confirmed block time None)",
        f"tron (confirmed block time {end - 1})",
    ]
    assert lagging_sources(end, {"ethereum": (9, end), "tron": (5, end + 1)}, {}) == []


def test_an_epoch_waits_for_every_social_feed_settled_past_its_end():
    """A feed's settled clock is its last read less its settle time; a feed never read blocks."""
    _, end = SCHEDULE.epoch_bounds(2)
    settle = {"social": 120, "other": 0, "quiet": 60}
    frontier = {"social": (end + 100, end + 100), "other": (end, end), "quiet": (None, None), "eth": (1, end)}
    assert lagging_sources(end, frontier, settle) == [
        "social feed quiet (never read)",
        f"social feed social (settled clock {end - 20})",
    ]
    assert lagging_sources(end, {"social": (end + 120, end + 120)}, settle) == []


@given(
    length=st.integers(1, 5_000),
    close_after=st.integers(0, 20_000),
    ends_passed=st.one_of(st.none(), st.integers(-5, 60)),
    slack=st.floats(0, 0.999),
    closed=st.sets(st.integers(0, 70), max_size=20),
)
def test_due_epochs_are_exactly_the_open_ones_whose_end_and_grace_have_passed(
    length, close_after, ends_passed, slack, closed
):
    from indexer.schedules import due_epochs

    horizon = None if ends_passed is None else GENESIS + close_after + int((ends_passed + slack) * length)
    due = due_epochs(GENESIS, length, close_after, horizon, closed)
    assert due == sorted(due) and not set(due) & closed
    if horizon is None:
        assert due == []
        return
    schedule = EpochSchedule(GENESIS, length)
    for n in range(0, 70):
        end = schedule.epoch_bounds(n)[1]
        assert (n in due) == (end + close_after <= horizon and n not in closed), n

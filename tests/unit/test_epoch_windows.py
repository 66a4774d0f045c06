"""Epoch windows: half-open [start, end) windows from genesis, and when an epoch may close (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

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


def test_can_close_names_every_chain_still_before_the_end():
    _, end = SCHEDULE.epoch_bounds(2)
    cursors = {"tron": end - 1, "ethereum": end, "bsc": end + 30, "arbitrum": None}
    assert SCHEDULE.can_close(2, cursors) == ["arbitrum", "tron"]


def test_can_close_is_empty_once_every_cursor_reached_the_end():
    _, end = SCHEDULE.epoch_bounds(2)
    assert SCHEDULE.can_close(2, {"ethereum": end, "tron": end + 1}) == []
    assert SCHEDULE.can_close(1, {"ethereum": end - 1}) == []  # epoch 1 ended a day earlier

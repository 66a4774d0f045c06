"""Time-weighted stake and the exact largest-remainder split of a validator's reward (pure)."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from indexer.epochs.split import AssetWeight, split_reward, stake_seconds, weighted_shares

A, B, C = "0x" + "aa" * 20, "0x" + "bb" * 20, "0x" + "cc" * 20


# --- stake_seconds ---------------------------------------------------------------------------


def test_stake_seconds_integrates_amount_over_the_window():
    # 100 held from before the window, raised to 300 at t=40, cut to 0 at t=90, window [10, 100)
    assert stake_seconds([(40, 300), (90, 0)], 10, 100, opening=100) == 100 * 30 + 300 * 50


def test_changes_before_the_window_set_the_opening_and_changes_at_the_end_do_not_count():
    assert stake_seconds([(5, 70), (100, 999)], 10, 100) == 70 * 90
    assert stake_seconds([(10, 5)], 10, 100, opening=1000) == 5 * 90  # a change at exactly start counts from start


def test_several_changes_at_one_timestamp_keep_the_last():
    assert stake_seconds([(50, 1), (50, 2), (50, 3)], 0, 100, opening=0) == 3 * 50


def test_zero_length_window_and_bad_input():
    assert stake_seconds([(5, 10)], 7, 7, opening=10) == 0
    with pytest.raises(ValueError, match="not sorted"):
        stake_seconds([(20, 1), (10, 2)], 0, 100)
    with pytest.raises(ValueError, match="ends before"):
        stake_seconds([], 10, 5)
    with pytest.raises(ValueError, match="negative"):
        stake_seconds([(1, -1)], 0, 10)


timelines = st.lists(st.tuples(st.integers(0, 60), st.integers(0, 1000)), max_size=8).map(
    lambda xs: sorted(xs, key=lambda x: x[0])
)


def _amount_at(timeline, opening, t):
    amount = opening
    for ts, after in timeline:
        if ts <= t:
            amount = after
    return amount


@given(timelines, st.integers(0, 1000), st.integers(0, 60), st.integers(0, 60))
def test_stake_seconds_equals_the_per_second_sum(timeline, opening, a, b):
    start, end = min(a, b), max(a, b)
    expected = sum(_amount_at(timeline, opening, t) for t in range(start, end))
    assert stake_seconds(timeline, start, end, opening) == expected


@given(timelines, st.integers(0, 1000), st.lists(st.integers(0, 60), min_size=3, max_size=3))
def test_cutting_the_window_anywhere_changes_nothing(timeline, opening, cuts):
    a, b, c = sorted(cuts)
    whole = stake_seconds(timeline, a, c, opening)
    assert whole == stake_seconds(timeline, a, b, opening) + stake_seconds(timeline, b, c, opening)


# --- weighted_shares -------------------------------------------------------------------------


def test_weights_apply_per_whole_token_so_decimals_compare_fairly():
    weights = {"USDT": AssetWeight(6, 1), "klyETH": AssetWeight(18, Decimal("2.5"))}
    shares = weighted_shares([(A, "USDT", 3 * 10**6 * 100), (B, "klyETH", 10**18 * 100), (A, "klyETH", 0)], weights)
    assert shares == {A: Fraction(300), B: Fraction(250)}


def test_unknown_asset_and_float_weight_are_refused():
    with pytest.raises(ValueError, match="no weight"):
        weighted_shares([(A, "DOGE", 1)], {})
    with pytest.raises(TypeError):
        AssetWeight(18, 1.5)


# --- split_reward ----------------------------------------------------------------------------


def test_hand_computed_split():
    # window [0, 100): A holds 100 throughout, B stakes 100 at t=50; reward 1000 at 10% commission
    weights = {"ETH": AssetWeight(0, 1)}
    positions = [(A, "ETH", stake_seconds([], 0, 100, 100)), (B, "ETH", stake_seconds([(50, 100)], 0, 100))]
    assert split_reward(1000, 1000, weighted_shares(positions, weights)) == (100, {A: 600, B: 300})


def test_commission_is_floored():
    assert split_reward(999, 1, {A: Fraction(1)}) == (0, {A: 999})
    assert split_reward(10_001, 1, {A: Fraction(1)}) == (1, {A: 10_000})


def test_leftover_units_go_to_the_largest_remainders_then_the_lower_address():
    assert split_reward(2, 0, {C: Fraction(1), A: Fraction(1), B: Fraction(1)}) == (0, {A: 1, B: 1, C: 0})
    assert split_reward(1, 0, {"0xBB": Fraction(1), "0xaa": Fraction(1)}) == (0, {"0xaa": 1, "0xBB": 0})
    # exact parts: A 3*2/7 = 6/7, B 3*5/7 = 2 + 1/7; the spare unit goes to the larger remainder, A
    assert split_reward(3, 0, {A: Fraction(2), B: Fraction(5)}) == (0, {A: 1, B: 2})


def test_zero_share_stakers_get_nothing_and_are_left_out():
    assert split_reward(10, 0, {A: Fraction(1), B: Fraction(0)}) == (0, {A: 10})


def test_with_no_stake_at_all_the_whole_reward_is_commission():
    assert split_reward(1234, 500, {}) == (1234, {})
    assert split_reward(1234, 500, {A: Fraction(0)}) == (1234, {})
    shares = weighted_shares([(A, "ETH", stake_seconds([], 50, 50, 10))], {"ETH": AssetWeight(0, 1)})
    assert split_reward(7, 0, shares) == (7, {})  # zero-length window


def test_bad_arguments_are_refused():
    for args in [(-1, 0, {}), (1, 10_001, {}), (1, -1, {}), (1, 0, {A: Fraction(-1)})]:
        with pytest.raises(ValueError):
            split_reward(*args)


stakers = st.text("0123456789abcdef", min_size=40, max_size=40).map(lambda h: "0x" + h)
share_maps = st.dictionaries(stakers, st.fractions(min_value=0, max_value=10**6, max_denominator=10**9), max_size=12)
rewards = st.integers(0, 10**30)
bps = st.integers(0, 10_000)


@given(rewards, bps, share_maps)
def test_commission_and_allocations_sum_exactly_to_the_reward(reward, commission_bps, shares):
    commission, allocations = split_reward(reward, commission_bps, shares)
    assert commission + sum(allocations.values()) == reward
    assert all(a >= 0 for a in allocations.values())
    total = sum(shares.values())
    if total > 0:
        assert commission == reward * commission_bps // 10_000
        rest = reward - commission
        for staker, amount in allocations.items():
            assert abs(amount - rest * shares[staker] / total) < 1  # each within one unit of its exact part


@given(rewards, bps, share_maps)
def test_the_split_does_not_depend_on_input_order(reward, commission_bps, shares):
    reversed_shares = dict(reversed(list(shares.items())))
    assert split_reward(reward, commission_bps, shares) == split_reward(reward, commission_bps, reversed_shares)


@given(rewards, bps, st.integers(1, 10**24), st.integers(1, 10**6), st.integers(0, 10**6), share_maps)
def test_twice_the_stake_for_the_same_time_gets_twice_within_one_unit(reward, commission_bps, amount, t0, dt, others):
    weights = {"ETH": AssetWeight(18, 1)}
    positions = [
        (A, "ETH", stake_seconds([(t0, 2 * amount)], 0, t0 + dt + 1)),
        (B, "ETH", stake_seconds([(t0, amount)], 0, t0 + dt + 1)),
    ]
    shares = weighted_shares(positions, weights) | {k: v for k, v in others.items() if k not in (A, B)}
    _, allocations = split_reward(reward, commission_bps, shares)
    assert abs(allocations[A] - 2 * allocations[B]) <= 1


def test_loyalty_daily_changes_and_prices_are_exact():
    from datetime import date
    from fractions import Fraction

    from indexer.points.runner import daily_changes, daily_prices, day_start

    d0, d1, d2 = date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 3)
    timelines = {
        ("s", "v1", "TKN"): [(day_start(d0) + 10, 100), (day_start(d1) + 5, 40)],
        ("s", "v2", "TKN"): [(day_start(d1) + 7, 30)],
        ("s", "v1", "ETH"): [(day_start(d0), 9)],  # another asset is ignored
    }
    assert daily_changes(timelines, "TKN", d0) == {"s": {d0: [100], d1: [-60, 30]}}
    prices = daily_prices({date(2026, 2, 27): Fraction(1, 5), d2: Fraction(1, 4)}, [d0, d1, d2])
    assert prices == {d0: Fraction(1, 5), d1: Fraction(1, 5), d2: Fraction(1, 4)}

"""The loyalty boost program (SPEC section 6): the six seeds/002 scenarios as golden tests, plus properties (pure)."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from indexer.points.loyalty import (
    DayInput,
    LoyaltyProgram,
    boosted_points,
    daily_points,
    dilute,
    multiplier_after,
    simulate,
    total_boost,
)

SEED = LoyaltyProgram()  # the seed's constants are the defaults
PPD = 1_000_000


def day(ppd=PPD, price="0.25", *changes):
    return DayInput(ppd, Decimal(price), tuple(changes))


# One continuous life of "User A" through scenarios 1, 2, 4, 5 and 6:
# day 0 stake 200,000 at $0.2; days 1..90 hold at $0.25; day 90 stake 100,000 (scenario 3);
# days 91..630 hold ("another 540 days"); day 631 unstake 200,000; day 632 earn only 100,000 ppd.
HOLD_90 = [day(PPD, "0.2", 200_000)] + [day() for _ in range(90)]
LIFE = HOLD_90[:-1] + [day(PPD, "0.25", 100_000)] + [day() for _ in range(540)] + [day(PPD, "0.25", -200_000)]
LIFE += [day(100_000)]


def test_scenario_1_basic_staking():
    """Seed: "the moment User A stakes their 200,000 KMNO, they earn a total 240,000 ppd - and a total 1,240,000 ppd".

    The seed's numbers: 400,000 x 30% = 120,000 boosted, 200,000 x 0.2 x 3 = 120,000 staking.
    """
    first = simulate(SEED, HOLD_90[:1])[0]
    assert (first.multiplier, first.total_boost) == (0, Fraction(3, 10))
    assert (first.boosted_points, first.staking_points, first.additional_points) == (120_000, 120_000, 240_000)
    assert PPD + first.additional_points == 1_240_000


def test_scenario_2_ninety_days_staked():
    """Seed: "after remaining staked for 90 days, User A earns a total 450,000 additional ppd - and a total 1,450,000".

    Multiplier 90 x 0.5% = 45%, total boost 75%: 400,000 x 75% = 300,000 plus 200,000 x 0.25 x 3 = 150,000.
    """
    r = simulate(SEED, HOLD_90)[90]
    assert (r.multiplier, r.total_boost) == (Fraction(45, 100), Fraction(75, 100))
    assert (r.boosted_points, r.staking_points, r.additional_points) == (300_000, 150_000, 450_000)
    assert PPD + r.additional_points == 1_450_000


def test_scenario_3_staking_additional_kmno_with_the_seed_slips_corrected():
    """Seed: "0.45 * (1 - 100,000 / 300,000) = 0.3 = 30%", "600,000 * 0.6 = 360,000 ppd",
    "300,000 * 0.25 * 0.3 = 225,000 ppd" and "a total 825,000 additional ppd - and a total 1,825,000 ppd".

    Differs from the seed (SPEC section 6): the seed writes `x 0.3` where it means `x 3` (its 225,000 is
    right), and its 825,000 adds the unboosted 600,000 instead of the boosted 360,000. By its own
    formulas the day is 360,000 + 225,000 = 585,000 additional and 1,585,000 total ppd.
    """
    r = simulate(SEED, LIFE[:91])[90]
    assert (r.staked, r.multiplier, r.total_boost) == (300_000, Fraction(3, 10), Fraction(6, 10))
    assert (r.boosted_points, r.staking_points) == (360_000, 225_000)
    assert r.additional_points == 585_000 and PPD + r.additional_points == 1_585_000


def test_scenario_4_staking_for_maximum_boost():
    """Seed: "after achieving the maximum boost, User A earns a total 2,025,000 additional ppd - and a total 3,025,000".

    After another 540 days the multiplier (30% + 270%) is capped at 270%, total boost 300%:
    600,000 x 300% = 1,800,000 plus 300,000 x 0.25 x 3 = 225,000.
    """
    r = simulate(SEED, LIFE[:631])[630]
    assert (r.multiplier, r.total_boost) == (Fraction(27, 10), Fraction(3))
    assert (r.boosted_points, r.staking_points, r.additional_points) == (1_800_000, 225_000, 2_025_000)
    assert PPD + r.additional_points == 3_025_000


def test_scenario_5_withdrawing_keeps_the_boost():
    """Seed: "after unstaking 200,000 KMNO, User A earns a total 675,000 additional ppd - and a total 1,675,000 ppd".

    Unstaking leaves the 300% boost: 200,000 x 300% = 600,000 plus 100,000 x 0.25 x 3 = 75,000.
    """
    r = simulate(SEED, LIFE[:632])[631]
    assert (r.staked, r.total_boost) == (100_000, Fraction(3))
    assert (r.boosted_points, r.staking_points, r.additional_points) == (600_000, 75_000, 675_000)
    assert PPD + r.additional_points == 1_675_000


def test_scenario_6_boost_capped_by_points_earned():
    """Seed: "Thus: User A Staking Points Boost: 100,000 * 300% = 300,000 ppd".

    The seed leaves the day's total out; SPEC section 6 completes it: the 100,000 KMNO still earn
    100,000 x 0.25 x 3 = 75,000 staking points, so 300,000 + 75,000 = 375,000 additional ppd.
    """
    r = simulate(SEED, LIFE)[632]
    assert (r.boosted_points, r.staking_points, r.additional_points) == (300_000, 75_000, 375_000)


def test_seed_multiplier_examples():
    """Seed: "for a year, their Staking Multiplier will be at 182.5%" and "270% ... staked for exactly 540 days"."""
    assert multiplier_after(SEED, 365) == Fraction(1825, 1000)
    assert multiplier_after(SEED, 539) < multiplier_after(SEED, 540) == Fraction(27, 10) == multiplier_after(SEED, 9999)


def test_seed_dilution_example():
    """Seed: "50% * (1 - 2000/3000) = 17%".

    The seed rounds to whole percent; exactly it is 1/6 = 16.67%, kept here floored to 18 decimals.
    """
    m = dilute(SEED, Fraction(1, 2), 2000, 3000)
    assert m == Fraction(166_666_666_666_666_666, 10**18)
    assert round(m * 100) == 17


def test_seed_boost_cap_examples():
    """Seed: "1000 * 2 * 50% = 1000 max additional points" and "500 * 50% = 250 additional points".

    A 50% total boost is the 30% base plus a 20% multiplier.
    """
    assert total_boost(SEED, Fraction(1, 5)) == Fraction(1, 2)
    assert boosted_points(SEED, 1000, 10**9, Fraction(1, 5)) == 1000
    assert boosted_points(SEED, 1000, 500, Fraction(1, 5)) == 250


def test_amounts_are_base_units_of_the_token():
    """Scenario 2 again with an 18-decimal token: the same points."""
    program = LoyaltyProgram(decimals=18)
    assert daily_points(program, 200_000 * 10**18, PPD, Decimal("0.45"), Decimal("0.25")) == 450_000


def test_points_are_floored_and_components_add_up():
    r = simulate(SEED, [DayInput(PPD, Fraction(1, 3), (1,))])[0]
    assert (r.boosted_points, r.staking_points, r.additional_points) == (0, 1, 1)  # 2 x 0.3 = 0.6 -> 0


def test_constants_are_configurable_and_exact():
    program = LoyaltyProgram(base_boost="0.1", daily_rate=Decimal("0.01"), multiplier_cap=1, total_boost_cap="1.05")
    assert multiplier_after(program, 150) == 1 and total_boost(program, 1) == Fraction(105, 100)
    with pytest.raises(TypeError):
        LoyaltyProgram(base_boost=0.3)
    with pytest.raises(TypeError):
        simulate(SEED, [DayInput(PPD, 0.25, (10,))])


def test_unstaking_more_than_staked_is_refused():
    with pytest.raises(ValueError, match="cannot unstake"):
        simulate(SEED, [day(PPD, "1", 10, -11)])


def test_the_multiplier_grows_only_while_staked_and_restaking_from_zero_starts_over():
    results = simulate(SEED, [day(PPD, "1", 10), day(), day(PPD, "1", -10), day(), day(PPD, "1", 5)])
    assert [r.multiplier for r in results] == [0, Fraction(1, 200), Fraction(2, 200), Fraction(2, 200), 0]


multipliers = st.fractions(min_value=0, max_value=Fraction(27, 10), max_denominator=10**6)
balances = st.integers(0, 10**30)


@given(multipliers, st.integers(0, 5000))
def test_multiplier_never_exceeds_the_cap(start, days):
    assert multiplier_after(SEED, days, start) <= SEED.multiplier_cap
    assert total_boost(SEED, multiplier_after(SEED, days, start)) <= SEED.total_boost_cap


@given(multipliers, balances, st.integers(0, 10**30))
def test_dilution_never_increases_the_multiplier(m, old, added):
    assert 0 <= dilute(SEED, m, added, old + added) <= m


changes = st.lists(st.integers(-(10**24), 10**24), max_size=4)
day_schedules = st.lists(st.tuples(changes, st.integers(0, 10**7)), max_size=40)


@given(day_schedules)
def test_simulated_multiplier_stays_capped_and_unstakes_never_change_it(schedule):
    staked, inputs = 0, []
    for cs, ppd in schedule:
        valid = []
        for c in cs:
            if c >= 0 or -c <= staked:
                valid.append(c)
                staked += c
        inputs.append(DayInput(ppd, 1, tuple(valid)))
    results = simulate(SEED, inputs)
    previous = Fraction(0)
    for day_in, r in zip(inputs, results, strict=True):
        assert 0 <= r.multiplier <= SEED.multiplier_cap
        if not any(c > 0 for c in day_in.changes):  # no new stake today: dilution cannot have run
            assert r.multiplier == previous
        else:
            assert r.multiplier <= previous
        previous = multiplier_after(SEED, 1, r.multiplier) if r.staked > 0 else r.multiplier


@given(multipliers, balances, st.integers(1, 10**30))
def test_an_unstake_leaves_the_multiplier_unchanged(m, kept, removed):
    before = simulate(SEED, [DayInput(0, 1, (kept + removed,))], multiplier=m)[0]
    after = simulate(SEED, [DayInput(0, 1, (kept + removed, -removed))], multiplier=m)[0]
    assert after.multiplier == before.multiplier and after.staked == kept

"""The pro rata on limb arrays (projector/vector.py) gives exactly what the largest-remainder rule gives (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from indexer.projection import EMPTY
from indexer.projector import draft as draft_module
from indexer.projector import fold
from indexer.projector.vector import LIMIT, PoolVector, fits
from tests.unit.test_projector_fold import ALICE, BOB, CAROL, DAVE, P, burn, move, stake_tx, tx, unstake
from tests.unit.test_rounding import by_fractions as fractions_rule


def by_fractions(amount: int, holdings: dict[str, int]) -> dict[str, int]:
    """SPEC 4 with exact Fractions (the definition `test_rounding` checks the integer rule against), by name."""
    return dict(zip(holdings, fractions_rule(amount, list(holdings.values()), list(holdings)), strict=True))


NAMES = st.from_regex(r"0x[0-9a-f]{4}", fullmatch=True)


@st.composite
def pools(draw):
    size = draw(st.integers(1, 80))
    amount = draw(
        st.sampled_from(
            [
                st.integers(0, 3),  # equal remainders at the cut in most examples
                st.integers(10**15, 10**21),  # token-sized
                st.integers(0, LIMIT // size - 1),  # up to the limbs' limit
                st.sampled_from([0, 7, 7, 10**20, 2**90]),  # many equal positions
            ]
        )
    )
    holdings = draw(st.dictionaries(NAMES, amount, min_size=size, max_size=size))
    total = sum(holdings.values())
    taken = draw(st.one_of(st.integers(0, total), st.just(total), st.integers(0, min(total, 3 * size))))
    return holdings, taken


@settings(max_examples=500, deadline=None)
@given(pools())
def test_taking_pro_rata_on_limbs_is_the_exact_largest_remainder_rule(pool):
    holdings, amount = pool
    vector = PoolVector(holdings)
    vector.take_pro_rata(amount)
    expected = by_fractions(amount, holdings) if sum(holdings.values()) else dict.fromkeys(holdings, 0)
    assert dict(vector.items()) == {n: held - expected[n] for n, held in holdings.items() if held - expected[n]}
    assert vector.total == sum(holdings.values()) - amount


@given(holdings=st.dictionaries(NAMES, st.integers(1, 10**20), min_size=1, max_size=30), data=st.data())
def test_single_positions_read_and_move_like_integers(holdings, data):
    vector = PoolVector(holdings)
    name = data.draw(st.sampled_from([*holdings, "0xnew"]))
    delta = data.draw(st.integers(-holdings.get(name, 0), 10**21))
    assert vector.add(name, delta)
    assert vector.get(name) == holdings.get(name, 0) + delta
    assert vector.total == sum(holdings.values()) + delta
    assert dict(vector.items()) == {n: v for n, v in (holdings | {name: holdings.get(name, 0) + delta}).items() if v}


def test_positions_gone_to_zero_are_dropped_once_they_are_half_the_pool_and_the_rest_is_unchanged():
    holdings = {f"0x{i:04x}": 10**18 + i for i in range(100)}
    vector = PoolVector(holdings)
    for name in list(holdings)[:60]:  # 60 stakers leave the pool
        assert vector.add(name, -holdings[name])
    vector.add("0xnew", 5)
    left = {name: held for name, held in holdings.items() if name >= "0x003c"} | {"0xnew": 5}
    vector.take_pro_rata(12_345)
    expected = by_fractions(12_345, left)
    assert vector.size == 41  # the 60 zeros are gone from the arrays
    assert dict(vector.items()) == {name: held - expected[name] for name, held in left.items()}
    assert vector.get("0x0000") == 0 and vector.add("0x0000", 3) and vector.get("0x0000") == 3


def test_a_pool_at_the_limbs_limit_is_refused_and_an_add_reaching_it_changes_nothing():
    assert fits(LIMIT - 1) and not fits(LIMIT)
    with pytest.raises(ValueError, match="cannot be kept"):
        PoolVector({ALICE: LIMIT})
    vector = PoolVector({ALICE: LIMIT - 10, BOB: 5})
    assert not vector.add(CAROL, 5)
    assert dict(vector.items()) == {ALICE: LIMIT - 10, BOB: 5} and vector.total == LIMIT - 5
    with pytest.raises(ValueError, match="cannot take 6 from holdings totalling 5"):
        PoolVector({ALICE: 5}).take_pro_rata(6)


def test_a_pool_growing_past_the_limit_goes_back_to_integers_and_folds_the_same(monkeypatch):
    paths: list[str] = []
    monkeypatch.setattr(PoolVector, "take_pro_rata", _noting(PoolVector.take_pro_rata, "limbs", paths))
    monkeypatch.setattr(draft_module, "shares", _noting(draft_module.shares, "integers", paths))
    big = 2**93
    events = [
        *stake_tx(1, ALICE, P, big + 3),
        *stake_tx(2, BOB, P, big - 1),
        *stake_tx(3, CAROL, P, 7),
        *tx(4, move(ALICE, DAVE, 1000)),
        *tx(5, burn(DAVE, 1000), unstake(DAVE, P, 1000)),  # beyond dave's (no) position: limbs from here
        *stake_tx(6, DAVE, P, 2 * big + 5000),  # the pool's total passes 2^95: back to Python integers
        *tx(7, move(BOB, CAROL, 500)),
        *tx(8, burn(CAROL, 507), unstake(CAROL, P, 507)),  # beyond carol's 7: Python integers
    ]
    saved = draft_module.VECTOR_AT
    try:
        draft_module.VECTOR_AT = 1
        with_limbs = fold(EMPTY, events)
        draft_module.VECTOR_AT = 10**9
        without = fold(EMPTY, events)
    finally:
        draft_module.VECTOR_AT = saved
    assert with_limbs == without
    assert paths == ["limbs", "integers", "integers", "integers"]  # limbs, then integers; then without limbs
    assert sum(with_limbs[0].positions[(P, "ETH")].values()) == with_limbs[0].validators[(P, "ETH")]


def _noting(function, name: str, paths: list[str]):
    def noted(*args, **kwargs):
        paths.append(name)
        return function(*args, **kwargs)

    return noted

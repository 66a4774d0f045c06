"""The one largest-remainder split: floors plus one unit to the largest remainders, ties to the lower key, exact."""

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from indexer.rounding import largest_remainder


def by_fractions(amount: int, weights: list[int], keys: list[str]) -> list[int]:
    """The definition, with exact Fractions: floor each share, then +1 to the largest remainders, lower key first."""
    total = sum(weights)
    exact = [Fraction(amount * w, total) for w in weights]
    parts = [int(share) for share in exact]  # floor: shares are not negative
    ranked = sorted(range(len(weights)), key=lambda i: (-(exact[i] - parts[i]), keys[i]))
    for i in ranked[: amount - sum(parts)]:
        parts[i] += 1
    return parts


WEIGHTS = st.integers(0, 10**6)


@st.composite
def splits(draw, weight=WEIGHTS):
    keys = draw(st.lists(st.text("0123456789abcdef", min_size=1, max_size=4), min_size=1, max_size=40, unique=True))
    weights = draw(st.lists(weight, min_size=len(keys), max_size=len(keys)).filter(any))
    amount = draw(st.one_of(st.integers(0, 3 * len(keys)), st.integers(0, 10 * sum(weights)), st.integers(0, 10**30)))
    return amount, weights, keys


def check(amount: int, weights: list[int], keys: list[str]) -> None:
    parts = largest_remainder(amount, weights, keys)
    assert parts == by_fractions(amount, weights, keys)
    assert sum(parts) == amount
    total = sum(weights)
    assert all(amount * w // total <= p <= -(-amount * w // total) for p, w in zip(parts, weights, strict=True))
    assert largest_remainder(amount, weights, keys, total) == parts


@given(splits())
def test_largest_remainder_is_the_exact_fraction_definition(split):
    check(*split)


@given(splits(weight=st.integers(0, 3)))
def test_equal_remainders_go_to_the_lower_key_first(split):
    check(*split)  # few distinct weights: remainders tie at the cut in most examples


@given(splits(weight=st.integers(10**15, 10**19)))
def test_token_sized_weights_split_exactly(split):
    check(*split)


def test_ties_go_to_the_lower_key_whatever_the_order():
    assert largest_remainder(2, [1, 1, 1], ["c", "a", "b"]) == [0, 1, 1]
    assert largest_remainder(1, [5, 5], [("0xbb", "0xBB"), ("0xaa", "0xaa")]) == [0, 1]  # keys compare as given
    assert largest_remainder(3, [2, 5], ["a", "b"]) == [1, 2]
    assert largest_remainder(0, [0, 0], ["a", "b"]) == [0, 0]


@pytest.mark.parametrize(("amount", "weights"), [(-1, [1, 2]), (1, [0, 0]), (1, [])])
def test_a_negative_amount_or_nothing_to_share_by_is_refused(amount, weights):
    with pytest.raises(ValueError, match="cannot share"):
        largest_remainder(amount, weights, [str(i) for i in range(len(weights))])

"""The largest-remainder method: an integer amount shared exactly in proportion to integer weights (pure).

One implementation for every exact split: the pro rata of an over-unstake (`projector/prorata.py`,
a hot path) and a validator's reward among its stakers (`epochs/split.py`). Its one twin is
`projector/vector.py`, the same rule on limb arrays for the projector's large pools, tested equal
to the Fraction definition and to the fold on Python integers.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from typing import Any


def largest_remainder(amount: int, weights: Sequence[int], keys: Sequence[Any], total: int | None = None) -> list[int]:
    """Each weight's part of `amount`, in the order of `weights`; the parts sum to `amount` exactly.

    Each part is floor(amount * weight / total); the units left over (fewer than there are
    weights) go one each to the largest remainders, equal remainders to the lower key
    first (`keys[i]` is weight i's, all distinct). Weights are not negative; `total`, when
    the caller has it at hand, is `sum(weights)`. ValueError if `amount` is negative, or
    positive with nothing to share it by. The arithmetic runs in C (map over int methods):
    a few thousand weights share in about a millisecond.
    """
    if total is None:
        total = sum(weights)
    if amount < 0 or (amount and total <= 0):
        raise ValueError(f"cannot share {amount} by weights totalling {total}")
    if amount == 0:
        return [0] * len(weights)
    if amount * max(weights) < total:  # every floor is zero, every remainder amount * weight: rank the weights
        parts = [0] * len(weights)
        for i in _largest(amount, weights, keys):
            parts[i] = 1
        return parts
    parts, remainders = map(list, zip(*map(total.__rdivmod__, map(amount.__mul__, weights)), strict=True))
    left = amount - sum(parts)  # fewer than len(weights): each floor misses less than one unit
    if left:
        for i in _largest(left, remainders, keys):
            parts[i] += 1
    return parts


def _largest(count: int, values: Sequence[int], keys: Sequence[Any]) -> list[int]:
    """The indexes of the `count` largest values, equal ones by lower key."""
    if count * 8 < len(values):  # as sorted(..., reverse=True)[:count + 1]: stable, equal ones in order
        ranked = heapq.nlargest(count + 1, range(len(values)), key=values.__getitem__)
    else:
        ranked = sorted(range(len(values)), key=values.__getitem__, reverse=True)
    cut = values[ranked[count - 1]]
    if count == len(ranked) or values[ranked[count]] != cut:  # none equal to the last one left out
        return ranked[:count]
    above = [i for i in ranked[:count] if values[i] > cut]  # equal values straddle the cut: by key
    at = sorted((i for i, remainder in enumerate(values) if remainder == cut), key=keys.__getitem__)
    return above + at[: count - len(above)]

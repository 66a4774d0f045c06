"""Sharing an integer amount out among holders pro rata, exactly: largest remainder, ties by address (pure)."""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence


def take_pro_rata(holdings: Mapping[str, int], amount: int, exclude: str | None = None) -> dict[str, int]:
    """What each holder (but `exclude`) gives up when `amount` is taken from them in proportion to their size.

    The result sums to `amount` and never exceeds a holding; holders giving nothing are left out.
    """
    others = dict(holdings)
    if exclude is not None:
        others.pop(exclude, None)
    holders = list(others)
    taken = shares(holders, list(others.values()), amount)
    return {holder: share for holder, share in zip(holders, taken, strict=True) if share}


def shares(holders: Sequence[str], held: Sequence[int], amount: int) -> list[int]:
    """What each holder gives up when `amount` is taken from `held` (same order as `holders`) pro rata.

    Each gives floor(amount * held / total); the units left over go one each to the largest
    remainders, equal remainders to the lower address first. The arithmetic runs in C
    (map over int methods): a pool of a few thousand positions shares in about a millisecond.
    """
    total = sum(held)
    if not 0 <= amount <= total:
        raise ValueError(f"cannot take {amount} from holdings totalling {total}")
    if amount == 0:
        return [0] * len(held)
    if amount * max(held) < total:  # every floor is zero, every remainder amount * held: rank the holdings
        taken = [0] * len(held)
        for i in _largest(amount, held, holders):
            taken[i] = 1
        return taken
    taken, remainders = map(list, zip(*map(total.__rdivmod__, map(amount.__mul__, held)), strict=True))
    left = amount - sum(taken)  # fewer than len(held): each floor misses less than one unit
    if left:
        for i in _largest(left, remainders, holders):
            taken[i] += 1
    return taken


def _largest(count: int, values: Sequence[int], holders: Sequence[str]) -> list[int]:
    """The indexes of the `count` largest values, equal ones by lower address."""
    if count * 8 < len(values):  # as sorted(..., reverse=True)[:count + 1]: stable, equal ones in order
        ranked = heapq.nlargest(count + 1, range(len(values)), key=values.__getitem__)
    else:
        ranked = sorted(range(len(values)), key=values.__getitem__, reverse=True)
    cut = values[ranked[count - 1]]
    if count == len(ranked) or values[ranked[count]] != cut:  # none equal to the last one left out
        return ranked[:count]
    above = [i for i in ranked[:count] if values[i] > cut]  # equal values straddle the cut: by address
    at = sorted((i for i, remainder in enumerate(values) if remainder == cut), key=holders.__getitem__)
    return above + at[: count - len(above)]

"""Sharing an integer amount out among holders pro rata, exactly: largest remainder, ties by address (pure)."""

from __future__ import annotations

import heapq
from collections.abc import Mapping


def take_pro_rata(holdings: Mapping[str, int], amount: int, exclude: str | None = None) -> dict[str, int]:
    """What each holder (but `exclude`) gives up when `amount` is taken from them in proportion to their size.

    Each gives floor(amount * held / total); the units left over go one each to the largest
    remainders, equal remainders to the lower address first. The result sums to `amount`
    and never exceeds a holding; holders giving nothing are left out.

    A holder below total / amount gives a floor of zero and keeps the remainder amount * held,
    which orders as its holding does: so when little is taken (the usual over-unstake excess
    of a few units), only the big holders are divided and the largest of the small ones ranked.
    """
    total = sum(holdings.values()) - holdings.get(exclude, 0) if exclude is not None else sum(holdings.values())
    if not 0 <= amount <= total:
        raise ValueError(f"cannot take {amount} from holdings totalling {total}")
    if amount == 0:
        return {}
    threshold = -(-total // amount)  # the smallest holding with a floor share of at least one
    others = holdings.items() if exclude is None else [(h, held) for h, held in holdings.items() if h != exclude]
    big = [(holder, divmod(amount * held, total)) for holder, held in others if held >= threshold]
    taken = {holder: share for holder, (share, _) in big}
    left = amount - sum(taken.values())
    if not left:
        return taken
    # (-remainder, holder): the largest remainders first, equal ones by address
    remainders = [(-remainder, holder) for holder, (_, remainder) in big if remainder]
    if len(big) < len(others):  # a small holder's remainder is amount * held: rank by holding, keep the first few
        small = [(-held, holder) for holder, held in others if held < threshold]
        remainders += [(held * amount, holder) for held, holder in _first(left, small)]
    for _, holder in _first(left, remainders):
        taken[holder] = taken.get(holder, 0) + 1
    return taken


def _first(count: int, items: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """The `count` smallest items, in order."""
    return heapq.nsmallest(count, items) if count * 8 < len(items) else sorted(items)[:count]

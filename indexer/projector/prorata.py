"""Sharing an integer amount out among holders pro rata, exactly: largest remainder, ties by address (pure)."""

from __future__ import annotations

import heapq
from collections.abc import Mapping


def take_pro_rata(holdings: Mapping[str, int], amount: int, exclude: str | None = None) -> dict[str, int]:
    """What each holder (but `exclude`) gives up when `amount` is taken from them in proportion to their size.

    Each gives floor(amount * held / total); the units left over go one each to the largest
    remainders, equal remainders to the lower address first. The result sums to `amount`
    and never exceeds a holding; holders giving nothing are left out.
    """
    total = sum(holdings.values()) - holdings.get(exclude, 0) if exclude is not None else sum(holdings.values())
    if not 0 <= amount <= total:
        raise ValueError(f"cannot take {amount} from holdings totalling {total}")
    if amount == 0:
        return {}
    holders = [holder for holder in holdings if holder != exclude]
    parts = [divmod(amount * holdings[holder], total) for holder in holders]
    taken = {holder: share for holder, (share, _) in zip(holders, parts, strict=True) if share}
    left = amount - sum(taken.values())
    if left:
        remainders = [(-remainder, holder) for holder, (_, remainder) in zip(holders, parts, strict=True) if remainder]
        first = heapq.nsmallest(left, remainders) if left * 8 < len(remainders) else sorted(remainders)[:left]
        for _, holder in first:
            taken[holder] = taken.get(holder, 0) + 1
    return taken

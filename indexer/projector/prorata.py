"""Sharing an integer amount out among holders pro rata, exactly: largest remainder, ties by address (pure)."""

from __future__ import annotations

import heapq
from collections.abc import Mapping


def take_pro_rata(holdings: Mapping[str, int], amount: int) -> dict[str, int]:
    """What each holder gives up when `amount` is taken from `holdings` in proportion to their size.

    Each gives floor(amount * held / total); the units left over go one each to the largest
    remainders, equal remainders to the lower address first. The result sums to `amount`
    and never exceeds a holding; holders giving nothing are left out.
    """
    total = sum(holdings.values())
    if not 0 <= amount <= total:
        raise ValueError(f"cannot take {amount} from holdings totalling {total}")
    if amount == 0:
        return {}
    taken: dict[str, int] = {}
    remainders: list[tuple[int, str]] = []
    for holder, held in holdings.items():
        share, remainder = divmod(amount * held, total)
        taken[holder] = share
        if remainder:
            remainders.append((-remainder, holder))
    left = amount - sum(taken.values())
    for _, holder in heapq.nsmallest(left, remainders):
        taken[holder] += 1
    return {holder: share for holder, share in taken.items() if share}

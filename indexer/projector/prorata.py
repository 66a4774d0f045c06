"""Sharing an integer amount out among holders pro rata, exactly: largest remainder, ties by address (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from indexer.rounding import largest_remainder


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
    remainders, equal remainders to the lower address first (`rounding.largest_remainder`).
    """
    total = sum(held)
    if not 0 <= amount <= total:
        raise ValueError(f"cannot take {amount} from holdings totalling {total}")
    return largest_remainder(amount, held, holders, total)

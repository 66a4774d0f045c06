"""Time-weighted stake and the exact integer split of a validator's reward among its stakers.

Rounding: shares are exact Fractions; the stakers' part of a reward is cut with the
largest-remainder method (`rounding.largest_remainder`: floor every exact allocation, then
hand the leftover base units one each to the largest fractional remainders, ties to the
lower address, compared case-insensitively first), so commission + sum(allocations) ==
reward always. When no staker has a positive share the
whole reward goes to the validator as commission: nothing is lost, and the epoch can still
close (a closed epoch's stake can never change, so refusing would block it forever).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from math import lcm

from indexer.rounding import largest_remainder


@dataclass(frozen=True, slots=True)
class AssetWeight:
    """How an asset's base units count: `amount / 10**decimals * weight` (weight per whole token)."""

    decimals: int
    weight: Fraction | Decimal | int

    def __post_init__(self) -> None:
        if isinstance(self.weight, float):
            raise TypeError("asset weight must be exact (int, Decimal or Fraction), not float")
        if self.decimals < 0 or self.weight < 0:
            raise ValueError(f"decimals and weight must not be negative: {self.decimals}, {self.weight}")


def stake_seconds(timeline: Sequence[tuple[int, int]], start: int, end: int, opening: int = 0) -> int:
    """Integral of one position's amount over [start, end) in base-unit-seconds.

    `timeline` is sorted (timestamp, amount after the change); `opening` is the amount before the
    first change. A change at time t counts from t on, so one at exactly `end` is not counted.
    """
    if end < start:
        raise ValueError(f"window ends before it starts: [{start}, {end})")
    if opening < 0:
        raise ValueError(f"negative opening amount {opening}")
    total, amount, t = 0, opening, start
    last_ts = None
    for ts, after in timeline:
        if last_ts is not None and ts < last_ts:
            raise ValueError(f"timeline is not sorted: {ts} after {last_ts}")
        if after < 0:
            raise ValueError(f"negative position amount {after} at {ts}")
        last_ts = ts
        if ts >= end:
            break
        if ts > t:
            total += amount * (ts - t)
            t = ts
        amount = after
    return total + amount * (end - t)


def weighted_shares(
    positions: Iterable[tuple[str, str, int]], weights: Mapping[str, AssetWeight]
) -> dict[str, Fraction]:
    """Each staker's exact share: the sum over its (staker, asset, stake_seconds) of seconds / 10**decimals * weight."""
    shares: dict[str, Fraction] = {}
    for staker, asset, seconds in positions:
        if seconds < 0:
            raise ValueError(f"negative stake-seconds {seconds} for {staker} in {asset}")
        try:
            w = weights[asset]
        except KeyError:
            raise ValueError(f"no weight configured for asset {asset!r}") from None
        shares[staker] = shares.get(staker, Fraction(0)) + Fraction(seconds, 10**w.decimals) * Fraction(w.weight)
    return shares


def split_reward(reward: int, commission_bps: int, shares: Mapping[str, Fraction]) -> tuple[int, dict[str, int]]:
    """(commission, allocations): floor(reward * bps / 10000) to the validator, the rest pro rata to `shares`.

    Every staker with a positive share is in the allocations (possibly with 0 units); stakers
    with a zero share are left out. If every share is zero the
    commission is the whole reward and the allocations are empty.
    """
    if reward < 0:
        raise ValueError(f"reward must not be negative, got {reward}")
    if not 0 <= commission_bps <= 10_000:
        raise ValueError(f"commission_bps must be within 0..10000, got {commission_bps}")
    if any(s < 0 for s in shares.values()):
        raise ValueError("shares must not be negative")
    commission = reward * commission_bps // 10_000
    rest = reward - commission
    holders = {k: Fraction(s) for k, s in shares.items() if s > 0}
    if not holders:
        return reward, {}
    scale = lcm(*(share.denominator for share in holders.values()))  # the shares as integers, in proportion
    weights = [share.numerator * (scale // share.denominator) for share in holders.values()]
    parts = largest_remainder(rest, weights, [(staker.lower(), staker) for staker in holders])
    return commission, dict(zip(holders, parts, strict=True))

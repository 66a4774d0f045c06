"""The loyalty boost program of SPEC section 6: a staking multiplier that grows per day staked, and daily points.

Arithmetic is exact (Fraction); floats are refused. Rounding rules:
- the multiplier is floored to `multiplier_decimals` decimal places after each dilution, so with
  decimal constants it always fits a NUMERIC column, and dilution never raises it;
- a day's boosted points and staking points are each floored to whole points, and the day's
  additional points are their sum (so the stored columns add up exactly).
Amounts are in the token's base units (`decimals`); prices are USD per whole token.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from decimal import Decimal
from fractions import Fraction

Exact = Fraction | Decimal | int | str  # exact numbers; a str is parsed as a decimal or a/b


def _exact(name: str, value: Exact) -> Fraction:
    """`value` as a Fraction; floats are refused because they are not exact."""
    if isinstance(value, float | bool):
        raise TypeError(f"{name} must be exact (int, Decimal, Fraction or str), got {value!r}")
    return Fraction(value)


@dataclass(frozen=True, slots=True)
class LoyaltyProgram:
    """Every constant of the program; the defaults are the seed's (30% base, +0.5 pp/day, caps 270% / 300%)."""

    base_boost: Fraction = Fraction(3, 10)
    daily_rate: Fraction = Fraction(1, 200)
    multiplier_cap: Fraction = Fraction(27, 10)
    total_boost_cap: Fraction = Fraction(3)
    boostable_per_token: Fraction = Fraction(2)  # activity points per day the boost covers per whole token staked
    points_per_usd: Fraction = Fraction(3)  # staking points per day per USD staked
    decimals: int = 0  # the staked token's decimals
    multiplier_decimals: int = 18

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.name not in ("decimals", "multiplier_decimals"):
                value = _exact(f.name, getattr(self, f.name))
                if value < 0:
                    raise ValueError(f"{f.name} must not be negative, got {value}")
                object.__setattr__(self, f.name, value)
        if self.decimals < 0 or self.multiplier_decimals < 0:
            raise ValueError("decimals and multiplier_decimals must not be negative")


def _floor_to(value: Fraction, places: int) -> Fraction:
    """`value` floored to `places` decimal places."""
    scale = 10**places
    return Fraction(value.numerator * scale // value.denominator, scale)


def multiplier_after(program: LoyaltyProgram, days: int, start: Exact = 0) -> Fraction:
    """The staking multiplier after `days` more days staked from `start`, capped."""
    if days < 0:
        raise ValueError(f"days must not be negative, got {days}")
    return min(_exact("start", start) + days * program.daily_rate, program.multiplier_cap)


def dilute(program: LoyaltyProgram, multiplier: Exact, added: int, new_balance: int) -> Fraction:
    """The multiplier after staking `added` more, making `new_balance`: m x (1 - added / new_balance), floored."""
    if not 0 <= added <= new_balance:
        raise ValueError(f"need 0 <= added <= new_balance, got {added} and {new_balance}")
    m = _exact("multiplier", multiplier)
    if added == 0:
        return m
    return _floor_to(m * (1 - Fraction(added, new_balance)), program.multiplier_decimals)


def total_boost(program: LoyaltyProgram, multiplier: Exact) -> Fraction:
    """Base boost plus the multiplier, capped at the total cap."""
    return min(program.base_boost + _exact("multiplier", multiplier), program.total_boost_cap)


def boosted_points(program: LoyaltyProgram, staked: int, activity_ppd: Exact, multiplier: Exact) -> int:
    """Floor of min(activity points per day, whole tokens staked x 2) x total boost."""
    cap = Fraction(staked, 10**program.decimals) * program.boostable_per_token
    boostable = min(_exact("activity_ppd", activity_ppd), cap)
    return int(boostable * total_boost(program, multiplier) // 1)


def staking_points(program: LoyaltyProgram, staked: int, usd_price: Exact) -> int:
    """Floor of whole tokens staked x USD price x 3."""
    return int(Fraction(staked, 10**program.decimals) * _exact("usd_price", usd_price) * program.points_per_usd // 1)


def daily_points(program: LoyaltyProgram, staked: int, activity_ppd: Exact, multiplier: Exact, usd_price: Exact) -> int:
    """A day's additional points: boosted points plus staking points (each floored)."""
    return boosted_points(program, staked, activity_ppd, multiplier) + staking_points(program, staked, usd_price)


@dataclass(frozen=True, slots=True)
class DayInput:
    """One day: stake changes in order (positive stakes, negative unstakes, base units), activity ppd, USD price."""

    activity_ppd: Exact
    usd_price: Exact
    changes: tuple[int, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class DayResult:
    """One day's outcome, after that day's stake changes."""

    staked: int
    multiplier: Fraction
    total_boost: Fraction
    boosted_points: int
    staking_points: int
    additional_points: int


def simulate(
    program: LoyaltyProgram, days: Iterable[DayInput], staked: int = 0, multiplier: Exact = 0
) -> list[DayResult]:
    """Day by day: apply the day's changes, score the day, then grow the multiplier if still staked.

    A stake dilutes the multiplier, an unstake leaves it alone, and a day that ends with
    stake adds `daily_rate` (up to the cap). So a stake made on day 0 scores day 0 at the base
    boost and day 90 with a 45% multiplier.
    """
    m = _exact("multiplier", multiplier)
    results = []
    for day in days:
        for change in day.changes:
            if change >= 0:
                staked += change
                m = dilute(program, m, change, staked)
            elif -change > staked:
                raise ValueError(f"cannot unstake {-change}, only {staked} staked")
            else:
                staked += change
        boosted = boosted_points(program, staked, day.activity_ppd, m)
        staking = staking_points(program, staked, day.usd_price)
        results.append(DayResult(staked, m, total_boost(program, m), boosted, staking, boosted + staking))
        if staked > 0:
            m = multiplier_after(program, 1, m)
    return results

"""`indexer points compute`: the loyalty program's points per staker per day, from confirmed positions.

Each staker's staked amount of the program's asset is its total position over all
validators (as the projector defines positions), replayed from the event log; the day's
stake changes, the operator-filled activity points and USD price feed the pure simulator.
The days computed are rewritten as a whole, so computing again gives the same rows; the
reads and the write are `indexer.store.points` and `indexer.store.epochs`.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import asyncpg

from indexer.epochs.close import node_chains, position_timelines
from indexer.errors import ConfigError, IndexerError
from indexer.points.loyalty import DayInput, LoyaltyProgram, simulate
from indexer.projector.runner import asset_weights
from indexer.store import epochs as epoch_store
from indexer.store import points as points_store

DAY = 86_400


class PointsError(IndexerError):
    """Loyalty points cannot be computed for these days yet: the chains have not confirmed them."""


def program_of(config) -> LoyaltyProgram:
    """The configured program, with the staked asset's decimals."""
    if config.loyalty is None:
        raise ConfigError("loyalty: the config has no `loyalty` section")
    loyalty = config.loyalty
    weights = asset_weights(config)
    if loyalty.asset not in weights:
        raise ConfigError(f"loyalty.asset: no configured contract stakes {loyalty.asset!r}")
    return LoyaltyProgram(
        base_boost=loyalty.base_boost, daily_rate=loyalty.daily_rate, multiplier_cap=loyalty.multiplier_cap,
        total_boost_cap=loyalty.total_boost_cap, boostable_per_token=loyalty.boostable_per_token,
        points_per_usd=loyalty.points_per_usd, decimals=weights[loyalty.asset][0],
    )  # fmt: skip


def day_start(day: date) -> int:
    """Unix seconds at 00:00 UTC of `day`."""
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


def daily_changes(
    timelines: dict[tuple[str, str, str], list[tuple[int, int]]], asset: str, first: date
) -> dict[str, dict[date, list[int]]]:
    """Per staker, per day: the changes of its total staked `asset` in time order (pure)."""
    per_staker: dict[str, list[tuple[int, str, int]]] = defaultdict(list)
    for (staker, validator, key_asset), timeline in timelines.items():
        if key_asset == asset:
            per_staker[staker].extend((ts, validator, amount) for ts, amount in timeline)
    changes: dict[str, dict[date, list[int]]] = defaultdict(lambda: defaultdict(list))
    for staker, points in per_staker.items():
        current: dict[str, int] = {}
        total = 0
        for ts, validator, amount in sorted(points):
            current[validator] = amount
            new_total = sum(current.values())
            if new_total != total:
                day = max(datetime.fromtimestamp(ts, UTC).date(), first)
                changes[staker][day].append(new_total - total)
                total = new_total
    return changes


def daily_prices(known: dict[date, Fraction], days: list[date]) -> dict[date, Fraction]:
    """The price of each day: the day's own, else the latest before it, else 0 (pure)."""
    earlier = sorted(d for d in known if d < days[0])
    price = known[earlier[-1]] if earlier else Fraction(0)
    prices = {}
    for day in days:
        price = known.get(day, price)
        prices[day] = price
    return prices


async def compute_points(pool: asyncpg.Pool, config, through: date) -> int:
    """Compute and store every staker's points from the program start through `through`; returns rows written."""
    program = program_of(config)
    loyalty = config.loyalty
    if through < loyalty.start:
        raise PointsError(f"--through {through} is before the program's start ({loyalty.start})")
    end = day_start(through) + DAY
    frontier = await epoch_store.confirmed_times(pool, node_chains(config))
    behind = [c for c, (_, t) in sorted(frontier.items()) if t is None or t < end]
    if behind:
        raise PointsError(f"days through {through} are not confirmed on every chain yet: {', '.join(behind)}")
    events = await epoch_store.events_before(pool, {c: b for c, (b, _) in frontier.items()}, end)
    changes = daily_changes(position_timelines(events), loyalty.asset, loyalty.start)
    days = [loyalty.start + timedelta(days=i) for i in range((through - loyalty.start).days + 1)]
    recorded = await points_store.activity(pool, loyalty.start, through)
    activity = {key: Fraction(str(points)) for key, points in recorded.items()}
    known = await points_store.prices(pool, loyalty.asset, through)
    prices = daily_prices({day: Fraction(str(usd)) for day, usd in known.items()}, days)
    rows = []
    for staker in sorted(changes):
        inputs = [DayInput(activity.get((staker, d), 0), prices[d], tuple(changes[staker].get(d, ()))) for d in days]
        for day, result in zip(days, simulate(program, inputs), strict=True):
            if result.staked or result.additional_points:
                rows.append((staker, day, result.staked, _decimal(result.multiplier), _decimal(result.total_boost),
                             result.boosted_points, result.staking_points, result.additional_points))  # fmt: skip
    await points_store.replace_days(pool, loyalty.start, through, rows)
    return len(rows)


def _decimal(value: Fraction) -> Decimal:
    return Decimal(value.numerator) / Decimal(value.denominator)

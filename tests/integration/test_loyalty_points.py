"""Loyalty points from a real chain: seed Scenarios 1 and 2 (02_*: 240,000 then 450,000 additional ppd)."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from decimal import Decimal

import pytest

from indexer.config import parse_config
from indexer.points.runner import PointsError, compute_points, day_start
from indexer.service import index_chains
from tests.integration.conftest import chain_config

TOKEN = 10**18
POOL = "0x" + "a1" * 20


async def test_seed_scenarios_one_and_two_from_stakes_on_anvil(db, driver, deployment, anvil):
    latest = await driver.w3.eth.get_block("latest")
    start = date.fromtimestamp(latest["timestamp"]) + timedelta(days=2)
    config = parse_config({
        "loyalty": {"asset": "TKN", "start": start.isoformat()},
        "chains": [chain_config(deployment, [anvil.url], confirmations=0)],
    })  # fmt: skip
    staker = driver.accounts[1]
    await driver.rpc("evm_setNextBlockTimestamp", [day_start(start) + 3600])  # "User A stakes 200,000 KMNO" (day 0)
    await driver.stake("erc20_v1", staker, POOL, 200_000 * TOKEN)
    await index_chains(config, db, asyncio.Event(), once=True)
    with pytest.raises(PointsError, match="not confirmed"):
        await compute_points(db, config, start)  # day 0 has not ended on the chain yet

    await driver.rpc("evm_setNextBlockTimestamp", [day_start(start + timedelta(days=91))])
    await driver.mine(1)
    await index_chains(config, db, asyncio.Event(), once=True)
    who = staker.lower()
    await db.executemany(
        "INSERT INTO loyalty_activity VALUES ($1, $2, 1000000)", [(who, start + timedelta(days=i)) for i in range(91)]
    )  # "earns 1,000,000 points per day"
    await db.execute(
        "INSERT INTO asset_prices VALUES ('TKN', $1, 0.2), ('TKN', $2, 0.25)", start, start + timedelta(days=90)
    )  # "KMNO Price = $0.2", later "now at $0.25"
    assert await compute_points(db, config, start + timedelta(days=90)) == 91

    day0 = await db.fetchrow("SELECT * FROM v_staker_points WHERE staker = $1 AND day = $2", who, start)
    # Scenario 1: 400,000 x 30% = 120,000 boosted + 200,000 x 0.2 x 3 = 120,000 -> 240,000 additional ppd
    assert (day0["boosted_points"], day0["staking_points"], day0["points"]) == (120_000, 120_000, 240_000)
    day90 = await db.fetchrow("SELECT * FROM v_staker_points WHERE staker = $1 AND day = $2",
                              who, start + timedelta(days=90))  # fmt: skip
    # Scenario 2: multiplier 45%, total boost 75%: 300,000 + 200,000 x 0.25 x 3 = 150,000 -> 450,000
    assert (day90["multiplier"], day90["total_boost"]) == (Decimal("0.45"), Decimal("0.75"))
    assert (day90["boosted_points"], day90["staking_points"], day90["points"]) == (300_000, 150_000, 450_000)

    before = [tuple(r) for r in await db.fetch("SELECT * FROM staker_points ORDER BY day")]
    await compute_points(db, config, start + timedelta(days=90))  # computing again changes nothing
    assert [tuple(r) for r in await db.fetch("SELECT * FROM staker_points ORDER BY day")] == before

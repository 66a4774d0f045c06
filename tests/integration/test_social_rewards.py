"""Social delegators share the rewards (SPEC 5): a real chain, a real signed feed, a close checked by hand."""

from __future__ import annotations

import asyncio
import functools
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path

import pytest
from eth_account import Account

from indexer.chains.social import SocialSource
from indexer.config import parse_config
from indexer.epochs.close import EpochError, add_reward, close_epoch, proof
from indexer.localchain import artifacts
from indexer.service import index_chains
from indexer.store.feeds import stored_records
from indexer.watcher import Watcher
from tests.integration.conftest import chain_config
from tests.signed_feed import signed, write_jsonl

pytestmark = pytest.mark.integration

VALIDATOR = "0x" + "a1" * 20
LENGTH = 1000
TOKEN = 10**18
COMMISSION_BPS = 1000
FEED_WEIGHT = Fraction(5, 2)
SETTLE = 60
REWARD = 1_000_003
# anvil's dev accounts 1 and 2 (its well-known test mnemonic): they stake on chain and delegate on the feed.
DEV_KEYS = [
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
]
SOCIAL_ONLY = [Account.from_key(bytes([i + 41]) * 32) for i in range(2)]  # delegate on the feed only


def configs(deployment, anvil, genesis: int, feed: Path):
    """(the whole config: two staking contracts and the feed; the chain alone, for indexing it)."""
    chain = chain_config(deployment, [anvil.url], confirmations=0)
    chain["contracts"] = [c for c in chain["contracts"] if c["name"] in ("klyeth_v1", "klytoken_v1")]
    social = {"name": "social", "kind": "social", "url": str(feed), "settle_seconds": SETTLE,
              "weight": str(FEED_WEIGHT.numerator / FEED_WEIGHT.denominator)}  # fmt: skip
    top = {
        "epochs": {"genesis": datetime.fromtimestamp(genesis, UTC).isoformat(), "length_seconds": LENGTH},
        "validators": [{"id": VALIDATOR, "commission_bps": COMMISSION_BPS}],
    }
    return parse_config(top | {"chains": [chain, social]}), parse_config(top | {"chains": [chain]})


async def read_feed(db, config, clock: int) -> None:
    """One poll of the feed by the follow loop, its clock at `clock` (the chain's time, not the wall's)."""
    chain = config.chain("social")
    source = SocialSource(chain, load_stored=functools.partial(stored_records, db, "social"), clock=lambda: clock)
    try:
        await Watcher(source, chain, db).run(asyncio.Event(), once=True)
    finally:
        await source.close()


def largest_remainder(total: int, shares: dict[str, Fraction]) -> dict[str, int]:
    """The exact split written out for this test: floors, then one unit each to the largest remainders, ties to
    the lower address."""
    whole = sum(shares.values())
    exact = {s: total * share / whole for s, share in shares.items()}
    floors = {s: int(x) for s, x in exact.items()}
    left = total - sum(floors.values())
    for s in sorted(exact, key=lambda s: (-(exact[s] - floors[s]), s))[:left]:
        floors[s] += 1
    return floors


async def test_social_delegators_share_the_rewards_by_time_weighted_points(db, driver, deployment, anvil, tmp_path):
    a, b = (Account.from_key(k) for k in DEV_KEYS)
    assert [a.address, b.address] == driver.accounts[1:3]  # the dev keys are anvil's accounts 1 and 2
    c, d = SOCIAL_ONLY
    genesis = (await driver.w3.eth.get_block("latest"))["timestamp"] + 100
    end = genesis + LENGTH
    feed = tmp_path / "feed.jsonl"
    config, chain_only = configs(deployment, anvil, genesis, feed)

    async def at(ts: int) -> None:
        await driver.rpc("evm_setNextBlockTimestamp", [ts])

    async def time_of(receipt) -> int:
        return (await driver.w3.eth.get_block(receipt["blockNumber"]))["timestamp"]

    # On chain: a stakes 100 ETH before the epoch and unstakes 30 inside it; b stakes 40 TKN inside it.
    await at(genesis - 50)
    await driver.stake("native_v1", a.address, VALIDATOR, 100 * TOKEN)
    await at(genesis + 200)
    b_staked = await time_of(await driver.stake("erc20_v1", b.address, VALIDATOR, 40 * TOKEN))
    await at(genesis + 600)
    a_unstaked = await time_of(await driver.unstake("native_v1", a.address, VALIDATOR, 30 * TOKEN))
    assert genesis + 200 <= b_staked < a_unstaked < end
    # On the feed: c delegates 500 points, a (also on chain) 200, d delegates and undelegates inside the epoch.
    deadline = end + 10 * LENGTH
    records = [
        signed(c, validator=VALIDATOR, points=500, nonce=1, issued_at=genesis + 100, deadline=deadline),
        signed(a, validator=VALIDATOR, points=200, nonce=1, issued_at=genesis + 300, deadline=deadline),
        signed(d, validator=VALIDATOR, points=1000, nonce=1, issued_at=genesis + 400, deadline=deadline),
        signed(d, validator=VALIDATOR, points=1000, nonce=2, action="undelegate", issued_at=genesis + 700,
               deadline=deadline),
    ]  # fmt: skip
    write_jsonl(feed, records)
    await at(end + 5)
    await driver.mine(1)
    await index_chains(chain_only, db, asyncio.Event(), once=True)
    await read_feed(db, config, genesis + 900)
    assert await db.fetchval("SELECT count(*) FROM events WHERE chain = 'social'") == 4
    await add_reward(db, config, 0, VALIDATOR, "KLY", REWARD)

    # The feed's settled clock (its last read less the settle time) has not passed the end: refused, naming it.
    with pytest.raises(EpochError, match=rf"not every chain.*social feed social \(settled clock {genesis + 840}\)"):
        await close_epoch(db, config, 0)
    await read_feed(db, config, end + SETTLE)  # read again: settled exactly at the end
    closed = await close_epoch(db, config, 0)
    assert closed.root and closed.total == REWARD

    # The split written out by hand from the transactions' block times and the records: tokens and points
    # x seconds held inside [genesis, end), per whole token x weight (ETH, TKN: 1; the feed's points: 2.5).
    tokens = {
        a.address.lower(): Fraction(100 * (a_unstaked - genesis) + 70 * (end - a_unstaked))
        + 200 * (end - genesis - 300) * FEED_WEIGHT,
        b.address.lower(): Fraction(40 * (end - b_staked)),
        c.address.lower(): 500 * (end - genesis - 100) * FEED_WEIGHT,
        d.address.lower(): 1000 * 300 * FEED_WEIGHT,
    }
    commission = REWARD * COMMISSION_BPS // 10_000
    expected = largest_remainder(REWARD - commission, tokens)
    rows = await db.fetch("SELECT staker, amount, commission FROM v_epoch_allocations WHERE epoch = 0")
    got = {r["staker"]: int(r["amount"]) for r in rows if not r["commission"]}
    assert got == expected
    assert [int(r["amount"]) for r in rows if r["commission"]] == [commission]
    assert sum(int(r["amount"]) for r in rows) == REWARD

    # Every social delegator's proof verifies on chain through MerkleClaim.
    w3, owner = driver.w3, driver.accounts[0]
    factory = w3.eth.contract(abi=artifacts.abi("MerkleClaim"), bytecode=artifacts.bytecode("MerkleClaim"))
    receipt = await w3.eth.wait_for_transaction_receipt(await factory.constructor().transact({"from": owner}))
    claim = w3.eth.contract(address=receipt["contractAddress"], abi=artifacts.abi("MerkleClaim"))
    await w3.eth.wait_for_transaction_receipt(
        await claim.functions.setRoot(0, bytes.fromhex(closed.root[2:])).transact({"from": owner})
    )
    for delegator in (a, c, d):
        exported = await proof(db, 0, delegator.address)
        [leaf] = exported["leaves"]
        assert (leaf["asset"], int(leaf["amount"])) == ("KLY", expected[delegator.address.lower()])
        path = [bytes.fromhex(p[2:]) for p in leaf["proof"]]
        amount = int(leaf["amount"])
        assert await claim.functions.claimable(0, delegator.address, "KLY", amount, path).call()
        assert not await claim.functions.claimable(0, delegator.address, "KLY", amount + 1, path).call()

    # A record published late, dated inside the closed epoch: the closed epoch stays as it was (rows, root,
    # proofs); it counts in the next epoch from its issued_at on, which is before that epoch starts.
    before = {
        "allocations": [tuple(r) for r in await db.fetch("SELECT * FROM epoch_allocations ORDER BY 1, 2, 3, 4, 5")],
        "epochs": [tuple(r) for r in await db.fetch("SELECT * FROM epochs ORDER BY 1")],
        "proofs": [await proof(db, 0, x.address) for x in (a, b, c, d)],
    }
    late = signed(SOCIAL_ONLY[1], validator=VALIDATOR, points=400, nonce=3, issued_at=genesis + 500, deadline=deadline)
    write_jsonl(feed, [*records, late])
    await read_feed(db, config, end + LENGTH + SETTLE)
    assert await db.fetchval("SELECT count(*) FROM events WHERE chain = 'social'") == 5
    assert await db.fetchval("SELECT count(*) FROM reorgs WHERE chain = 'social'") == 1  # a change of its history
    assert (await close_epoch(db, config, 0)).already_closed
    assert before == {
        "allocations": [tuple(r) for r in await db.fetch("SELECT * FROM epoch_allocations ORDER BY 1, 2, 3, 4, 5")],
        "epochs": [tuple(r) for r in await db.fetch("SELECT * FROM epochs ORDER BY 1")],
        "proofs": [await proof(db, 0, x.address) for x in (a, b, c, d)],
    }
    await at(end + LENGTH + 5)
    await driver.mine(1)
    await index_chains(chain_only, db, asyncio.Event(), once=True)
    await add_reward(db, config, 1, VALIDATOR, "KLY", REWARD)
    assert (await close_epoch(db, config, 1)).root
    next_rows = await db.fetch("SELECT staker, amount FROM v_epoch_allocations WHERE epoch = 1 AND NOT commission")
    whole_epoch = {  # every position held for the whole of epoch 1; d's late 400 points among them
        a.address.lower(): Fraction(70 * LENGTH) + 200 * LENGTH * FEED_WEIGHT,
        b.address.lower(): Fraction(40 * LENGTH),
        c.address.lower(): 500 * LENGTH * FEED_WEIGHT,
        d.address.lower(): 400 * LENGTH * FEED_WEIGHT,
    }
    assert {r["staker"]: int(r["amount"]) for r in next_rows} == largest_remainder(REWARD - commission, whole_epoch)

"""The projector on a real chain: projections equal the contracts' state, reproject is exact, reorgs are undone."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import asyncpg
import pytest

from indexer import service
from indexer.chains.evm import EvmSource
from indexer.chains.rpc import RpcClient
from indexer.config import parse_config
from indexer.errors import RpcError
from indexer.localchain import realistic_mix
from indexer.localchain.anvil import free_port
from indexer.projector.committed import CommittedEvents
from indexer.projector.runner import Projector
from indexer.service import index_chains
from indexer.store.projections import TABLES, read_events
from indexer.verify import verify
from indexer.watcher import Watcher
from tests.integration.conftest import chain_config

PROJECTIONS = {
    "validator_amounts": "validator, asset",
    "pool_amounts": "chain, contract, pool",
    "positions": "validator, asset, staker",
    "lst_balances": "chain, contract, holder",
    "lst_tokens": "chain, contract, token_id",
    "pending_withdrawals": "chain, contract, staker, position",
    "projector_cursor": "chain",
}


def config_for(deployment, url: str, **overrides):
    chain = chain_config(deployment, [url], **({"confirmations": 0} | overrides))
    return parse_config({"validators": [{"id": "validator-one"}], "chains": [chain]})


async def snapshot(db) -> dict[str, list[tuple]]:
    tables = {}
    for table, order in PROJECTIONS.items():
        columns = "*" if table != "projector_cursor" else "chain, block_time, block_number, log_index, tx_hash"
        tables[table] = [tuple(r) for r in await db.fetch(f"SELECT {columns} FROM {table} ORDER BY {order}")]
    return tables


async def test_projections_match_the_contracts_and_reproject_is_identical(db, driver, deployment, anvil):
    for seed in (7, 11):
        await realistic_mix(driver, seed)
    config = config_for(deployment, anvil.url)
    await index_chains(config, db, asyncio.Event(), once=True)

    mismatches, readings = await verify(config, db)
    assert readings >= 30 and mismatches == []
    invariant = await db.fetch(
        """SELECT v.validator, v.asset, v.amount, coalesce(sum(p.amount), 0) AS positions
             FROM validator_amounts v LEFT JOIN positions p USING (validator, asset)
            GROUP BY 1, 2, 3 HAVING v.amount <> coalesce(sum(p.amount), 0)"""
    )
    assert invariant == []
    shares = await db.fetch("SELECT validator, asset, sum(share) AS total FROM v_staker_positions GROUP BY 1, 2")
    assert shares and all(abs(r["total"] - 1) < Decimal("1e-15") for r in shares)  # each share rounded by numeric
    points = await db.fetch("SELECT * FROM v_validator_points WHERE asset = 'NFT'")
    assert points and all(r["points"] == r["amount"] for r in points)  # 0 decimals, weight 1

    before = await snapshot(db)
    assert len(before["positions"]) > 5 and len(before["lst_balances"]) > 5
    assert await Projector(db, config).reproject() == await db.fetchval("SELECT count(*) FROM events")
    assert await snapshot(db) == before

    # from nothing, reading two events a chain at a time, writing every three while the next are folded: the same
    await db.execute(f"TRUNCATE projector_state, {', '.join(table.name for table in TABLES)}")
    stepwise = Projector(db, config, batch=3, read_batch=2)
    assert await stepwise.step() == await db.fetchval("SELECT count(*) FROM events")
    assert await snapshot(db) == before
    assert await stepwise.step() == 0


async def test_run_once_folds_while_the_watcher_writes_to_the_tables_of_a_reproject(
    db, driver, deployment, anvil, monkeypatch
):
    await realistic_mix(driver, 5)
    config = config_for(deployment, anvil.url, max_block_range=2, initial_block_range=1, target_logs_per_request=2)
    monkeypatch.setattr(service, "ONCE_PROJECT_WAIT_SECONDS", 0)  # step as often as the watcher commits
    folded: list[int] = []
    step = Projector.step

    async def counted(self: Projector) -> int:
        folded.append(await step(self))
        return folded[-1]

    monkeypatch.setattr(Projector, "step", counted)
    answered = []  # reads the watcher's hand-over answered from memory: each must be what the log answers
    read = CommittedEvents.read

    def recorded(self: CommittedEvents, *args):
        found = read(self, *args)
        if found is not None:
            answered.append((args, found))
        return found

    monkeypatch.setattr(CommittedEvents, "read", recorded)
    await index_chains(config, db, asyncio.Event(), once=True)

    assert sum(len(found) for _, found in answered) > 10
    for (chain, after, up_to_block, up_to_time, limit), found in answered:
        assert found == await read_events(db, chain, after, up_to_block, up_to_time, limit)
    assert sum(1 for n in folded if n) > 1  # folded in several steps, while the watcher wrote
    assert sum(folded) == await db.fetchval("SELECT count(*) FROM events")
    alongside = await snapshot(db)
    await Projector(db, config).reproject()
    assert await snapshot(db) == alongside


async def test_a_watcher_stopped_by_an_error_lets_its_hand_over_go(db, driver, deployment, anvil):
    """Its chain may be indexed by another process from now on: the projector must read it from the log again."""
    await driver.stake("native_v2", driver.accounts[1], "validator-one", 10**18)
    chain = config_for(deployment, anvil.url).chains[0]
    kept = CommittedEvents()

    async def run_once(url: str, attempts: int) -> None:
        source = EvmSource(chain, RpcClient(chain.name, [url], attempts=attempts))
        try:
            await Watcher(source, chain, db, committed=kept).run(asyncio.Event(), once=True)
        finally:
            await source.close()

    await run_once(anvil.url, 6)
    assert kept.reach(chain.name) is not None  # a watcher done with its work keeps what it handed over
    with pytest.raises(RpcError):
        await run_once(f"http://127.0.0.1:{free_port()}", 1)
    assert kept.reach(chain.name) is None


async def test_verify_reports_a_tampered_projection(db, driver, deployment, anvil):
    await driver.stake("native_v2", driver.accounts[1], "validator-one", 5 * 10**18)
    config = config_for(deployment, anvil.url)
    await index_chains(config, db, asyncio.Event(), once=True)
    await db.execute("UPDATE pool_amounts SET amount = amount + 1 WHERE pool = 'validator-one'")
    mismatches, _ = await verify(config, db)
    assert [(m.what, m.projected, m.on_chain) for m in mismatches] == [
        ("stakingPools(validator-one)", 5 * 10**18 + 1, 5 * 10**18)
    ]


async def test_reorg_below_the_projection_leaves_a_fresh_projection(db, driver, deployment, anvil):
    config = config_for(deployment, anvil.url)
    await driver.stake("native_v1", driver.accounts[1], "0x" + "a1" * 20, 10**18)
    await index_chains(config, db, asyncio.Event(), once=True)
    snapshot_id = await driver.rpc("evm_snapshot", [])
    await driver.stake("native_v1", driver.accounts[2], "0x" + "a1" * 20, 7 * 10**18)  # to be orphaned
    await index_chains(config, db, asyncio.Event(), once=True)
    assert await db.fetchval("SELECT amount FROM validator_amounts") == 8 * 10**18

    assert await driver.rpc("evm_revert", [snapshot_id]) is True
    await driver.stake("native_v1", driver.accounts[3], "0x" + "b2" * 20, 2 * 10**18)
    await driver.mine(2)
    await index_chains(config, db, asyncio.Event(), once=True)
    assert await db.fetchval("SELECT count(*) FROM reorgs") == 1
    after = await snapshot(db)
    assert dict(await db.fetch("SELECT validator, amount FROM validator_amounts")) == {
        "0x" + "a1" * 20: 10**18,
        "0x" + "b2" * 20: 2 * 10**18,
    }
    assert (await verify(config, db))[0] == []
    await Projector(db, config).reproject()
    assert await snapshot(db) == after


async def test_reader_role_reads_the_views_and_nothing_else(db, database_dsn):
    conn = await asyncpg.connect(database_dsn)
    try:
        async with conn.transaction():
            await conn.execute("SET LOCAL ROLE indexer_reader")
            for view in (
                "v_validator_points",
                "v_staker_positions",
                "v_lst_balances",
                "v_pending_withdrawals",
                "v_indexer_status",
                "v_validator_leaderboard",
                "v_pending_events",
            ):
                await conn.fetch(f"SELECT * FROM {view} LIMIT 1")
        for table in ("events", "positions", "position_buckets", "chain_cursors"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                async with conn.transaction():
                    await conn.execute("SET LOCAL ROLE indexer_reader")
                    await conn.fetch(f"SELECT * FROM {table} LIMIT 1")
    finally:
        await conn.close()


async def test_a_changed_set_of_chains_rebuilds_the_projections(db, driver, deployment, anvil):
    await driver.stake("native_v1", driver.accounts[1], "0x" + "a1" * 20, 10**18)
    first = config_for(deployment, anvil.url)
    await index_chains(first, db, asyncio.Event(), once=True)
    await driver.stake("native_v1", driver.accounts[2], "0x" + "a1" * 20, 2 * 10**18)
    await driver.advance_time(5)  # a later block: events at the last stake's second are final on both chains
    both = parse_config(
        {
            "chains": [
                chain_config(deployment, [anvil.url], confirmations=0),
                chain_config(deployment, [anvil.url], name="again", confirmations=0),
            ]
        }
    )
    await index_chains(both, db, asyncio.Event(), once=True)  # "again" has events older than "local"'s cursor
    assert [c for c in await db.fetchval("SELECT coverage FROM projector_state") if "/" not in c] == ["again", "local"]
    assert await db.fetchval("SELECT amount FROM validator_amounts") == 2 * 3 * 10**18  # both chains, all events


async def test_a_pool_named_after_it_was_projected_moves_to_its_name(db, driver, deployment, anvil):
    await driver.stake_via_batcher_v2(driver.accounts[2], ["validator-nine"], [10**18])
    config = config_for(deployment, anvil.url, use_call_tracer=False)
    await index_chains(config, db, asyncio.Event(), once=True)
    assert [r["validator"][:5] for r in await db.fetch("SELECT validator FROM validator_amounts")] == ["hash:"]

    await driver.stake("native_v2", driver.accounts[3], "validator-nine", 2 * 10**18)  # a direct call names it
    await driver.advance_time(5)
    await index_chains(config, db, asyncio.Event(), once=True)
    assert dict(await db.fetch("SELECT validator, amount FROM validator_amounts")) == {"validator-nine": 3 * 10**18}
    assert (await verify(config, db))[0] == []


async def test_a_contract_added_later_gets_its_history_indexed_and_projected(db, driver, deployment, anvil):
    await driver.stake("native_v1", driver.accounts[1], "0x" + "a1" * 20, 10**18)
    await driver.stake("native_v2", driver.accounts[2], "validator-one", 4 * 10**18)
    await driver.advance_time(5)
    everything = chain_config(deployment, [anvil.url], confirmations=0, start_block=1)
    without_v2 = everything | {"contracts": [c for c in everything["contracts"] if c["name"] != "klyeth"]}
    await index_chains(parse_config({"chains": [without_v2]}), db, asyncio.Event(), once=True)
    assert await db.fetchval("SELECT count(*) FROM events WHERE contract = $1", deployment.native_v2) == 0

    config = parse_config({"chains": [everything]})
    await index_chains(config, db, asyncio.Event(), once=True)
    fresh = parse_config({"chains": [everything | {"name": "fresh"}]})
    await index_chains(fresh, db, asyncio.Event(), once=True, project=False)
    log = """SELECT tx_hash, log_index, event_type, pool, amount FROM events
              WHERE chain = $1 ORDER BY block_number, log_index"""
    assert [tuple(r) for r in await db.fetch(log, "local")] == [tuple(r) for r in await db.fetch(log, "fresh")]
    assert (
        await db.fetchval("SELECT count(*) FROM events WHERE chain = 'local' AND contract = $1", deployment.native_v2)
        == 2
    )
    assert await db.fetchval("SELECT amount FROM validator_amounts WHERE validator = 'validator-one'") == 4 * 10**18
    assert (await verify(config, db))[0] == []

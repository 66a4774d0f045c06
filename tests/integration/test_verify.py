"""`verify` reads the six real variants through the getters they really have, and finds every tampered projection."""

from __future__ import annotations

import asyncio

import pytest

from indexer.config import parse_config
from indexer.localchain import realistic_mix
from indexer.projector.runner import Projector
from indexer.service import index_chains
from indexer.store.reconciliation import ChainProjection, ContractProjection
from indexer.verify import FAILED, verify, verify_chain
from tests.integration.conftest import INDEXER, chain_config, write_config

pytestmark = pytest.mark.integration


def config_for(deployment, url: str):
    return parse_config({"validators": [{"id": "validator-one"}], "chains": [chain_config(deployment, [url])]})


@pytest.fixture
async def indexed(db, driver, deployment, anvil):
    """Two rounds of the realistic mix over all six variants, indexed and projected; verify finds nothing."""
    for seed in (7, 11):
        await realistic_mix(driver, seed)
    config = config_for(deployment, anvil.url)
    await index_chains(config, db, asyncio.Event(), once=True)
    mismatches, readings = await verify(config, db)
    assert mismatches == [], mismatches
    return config, readings


async def test_every_log_is_in_the_event_log_once_and_verify_reads_the_real_getters(db, driver, deployment, indexed):
    config, readings = indexed
    logs = await driver.rpc("eth_getLogs", [{"fromBlock": "0x0", "toBlock": "latest",
                                             "address": [c.address for c in config.chains[0].contracts]}])  # fmt: skip
    approval = "0x8c5be1e5ebec7d5bd14f71427d1e84f3dd0314c0f7b2291e5b200ac8c7c3b925"
    approval_all = "0x17307eab39ab6107e8899845ad3d59bd9653f200f220920489ca2b5937696c31"
    followed = {(log["transactionHash"], int(log["logIndex"], 16)) for log in logs
                if log["topics"][0] not in (approval, approval_all)}  # fmt: skip
    rows = await db.fetch("SELECT tx_hash, log_index FROM events")
    assert len(rows) == len(followed) and {tuple(r) for r in rows} == followed
    # v2 requests still open on each v2 contract, NFT 0's among them (the real contract never returns it)
    pending = await db.fetch("SELECT contract, amount, token_id FROM v_pending_withdrawals")
    assert {r["contract"] for r in pending} == {deployment.native_v2, deployment.erc20_v2, deployment.erc721_v2}
    assert (deployment.erc721_v2, 1, 0) in {tuple(r) for r in pending}
    # stakingPools, getStakedTokens, ownerOf, balanceOf, totalSupply and withdrawalRequests readings
    tokens = await db.fetchval("SELECT count(*) FROM lst_tokens WHERE owner IS NOT NULL")
    assert tokens > 0 and readings > tokens + 40


TAMPERS = [
    ("stakingPools", "UPDATE pool_amounts SET amount = amount + 1 WHERE contract = '{erc20_v1}' "
                     "AND pool = (SELECT min(pool) FROM pool_amounts WHERE contract = '{erc20_v1}')"),
    ("getStakedTokens", "UPDATE lst_tokens SET pool = '0x' || repeat('ee', 20) WHERE contract = '{erc721_v2}' "
                        "AND token_id = (SELECT min(token_id) FROM lst_tokens WHERE contract = '{erc721_v2}' "
                        "AND pool IS NOT NULL)"),
    ("ownerOf", "UPDATE lst_tokens SET owner = '0x' || repeat('ee', 20) WHERE contract = '{erc721_v1}' "
                "AND token_id = (SELECT min(token_id) FROM lst_tokens WHERE contract = '{erc721_v1}' "
                "AND owner IS NOT NULL)"),
    ("balanceOf", "UPDATE lst_balances SET balance = balance - 1 WHERE contract = '{native_v2}' "
                  "AND holder = (SELECT min(holder) FROM lst_balances WHERE contract = '{native_v2}')"),
    ("withdrawalRequests", "UPDATE pending_withdrawals SET amount = amount + 1 WHERE contract = '{erc20_v2}'"),
    ("withdrawalRequests", "UPDATE pending_withdrawals SET token_id = token_id + 1000 WHERE contract = '{erc721_v2}'"),
    ("withdrawalRequests", "DELETE FROM pending_withdrawals WHERE contract = '{native_v2}'"),
]  # fmt: skip


async def test_a_tampered_row_of_each_projection_kind_is_found(db, deployment, indexed):
    config, _ = indexed
    for reading, statement in TAMPERS:
        changed = await db.execute(statement.format(**deployment.as_dict()))
        assert changed.split()[-1] != "0", statement
        mismatches, _ = await verify(config, db)
        assert mismatches, statement
        assert {m.what.split("(")[0] for m in mismatches} <= {reading, "totalSupply"}, (statement, mismatches)
        assert any(m.what.startswith(reading) for m in mismatches), (statement, mismatches)
        await Projector(db, config).reproject()
        assert (await verify(config, db))[0] == []


async def test_a_reading_the_contract_cannot_answer_is_a_failed_reading(driver, deployment, anvil):
    """getStakedTokens asked of a native contract (as a wrong config would): reported as failed, never a pass."""
    config = config_for(deployment, anvil.url)
    chain = config.chains[0]
    wrong = next(c for c in chain.contracts if c.name == "klyeth_v1").model_copy(update={"kind": "erc721"})
    chain = chain.model_copy(update={"contracts": (wrong,)})
    pool = "0x" + "a1" * 20
    projection = ChainProjection(await driver.w3.eth.block_number, {wrong.address: ContractProjection(pools={pool: 1})})
    mismatches, readings = await verify_chain(chain, projection)
    assert readings == 1
    assert [(m.what, m.projected, m.on_chain) for m in mismatches] == [(f"getStakedTokens({pool})", (), FAILED)]


async def test_verify_command_prints_failed_readings_and_exits_1(db, tmp_path, database_dsn, deployment, anvil, driver):
    await driver.stake("erc721_v2", driver.accounts[1], "0x" + "a1" * 20, (await driver.fresh_token_ids(1))[0])
    config = write_config(tmp_path / "chains.yaml", database_dsn, [chain_config(deployment, [anvil.url])])
    run = await asyncio.create_subprocess_exec(*INDEXER, "--config", str(config), "run", "--once")
    assert await run.wait() == 0
    await db.execute("UPDATE lst_tokens SET owner = '0x' || repeat('ee', 20)")
    process = await asyncio.create_subprocess_exec(*INDEXER, "--config", str(config), "verify",
                                                   stdout=asyncio.subprocess.PIPE)  # fmt: skip
    out, _ = await process.communicate()
    assert process.returncode == 1
    text = out.decode()
    assert "ownerOf(" in text and "0x" + "ee" * 20 in text and "1 mismatches" in text


@pytest.mark.parametrize(
    ("name", "change", "answers_as"),
    [
        ("klyeth", {"version": 1}, "native v2"),
        ("klynft", {"kind": "erc20"}, "erc721 v1"),
        ("klynft_v2", {"version": 1}, "erc721 v2"),
        ("klytoken_v1", {"kind": "native"}, "erc20 v1"),
    ],
)
async def test_a_contract_configured_as_another_variant_stops_the_start(
    db, tmp_path, database_dsn, deployment, anvil, driver, name, change, answers_as
):
    await driver.stake("native_v1", driver.accounts[1], "0x" + "a1" * 20, 10**18)
    chain = chain_config(deployment, [anvil.url])
    chain["contracts"] = [c | change if c["name"] == name else c for c in chain["contracts"]]
    config = write_config(tmp_path / "chains.yaml", database_dsn, [chain])
    process = await asyncio.create_subprocess_exec(*INDEXER, "--config", str(config), "run", "--once",
                                                   stderr=asyncio.subprocess.PIPE)  # fmt: skip
    _, err = await process.communicate()
    assert process.returncode == 2
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1, lines
    configured = {**next(c for c in deployment.contracts() if c["name"] == name), **change}
    assert f"contract {name} (" in lines[0]
    assert f"configured as {configured['kind']} v{configured['version']}" in lines[0]
    assert f"answers as {answers_as}" in lines[0]
    assert await db.fetchval("SELECT count(*) FROM events") == 0
    assert await db.fetchval("SELECT count(*) FROM chain_cursors") == 0


async def test_an_address_without_code_stops_the_start(db, tmp_path, database_dsn, deployment, anvil):
    chain = chain_config(deployment, [anvil.url])
    chain["contracts"] = [chain["contracts"][0] | {"address": "0x" + "12" * 20}]
    config = write_config(tmp_path / "chains.yaml", database_dsn, [chain])
    process = await asyncio.create_subprocess_exec(*INDEXER, "--config", str(config), "run", "--once",
                                                   stderr=asyncio.subprocess.PIPE)  # fmt: skip
    _, err = await process.communicate()
    assert process.returncode == 2 and "no contract code is deployed at that address" in err.decode()
    assert await db.fetchval("SELECT count(*) FROM chain_cursors") == 0

"""The `indexer` process: run --once, restarts after SIGKILL, SIGTERM, and one-line errors."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time

import aiohttp
import yaml
from prometheus_client.parser import text_string_to_metric_families

from indexer.localchain import realistic_mix
from indexer.localchain.anvil import free_port
from tests.integration.conftest import INDEXER, chain_config, write_config

EVENT_LOG = """SELECT chain_id, contract, contract_kind, contract_version, block_number, block_hash, block_time,
                      tx_hash, log_index, event_type, staker, counterparty, pool, pool_hash, amount, token_id,
                      unlock_time, asset
                 FROM events WHERE chain = $1 ORDER BY block_number, log_index"""


def run_cli(config, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*INDEXER, "--config", str(config), *args], capture_output=True, text=True, timeout=timeout)


async def event_log(db, chain: str = "local") -> list[tuple]:
    return [tuple(r) for r in await db.fetch(EVENT_LOG, chain)]


async def test_run_once_twice_adds_nothing(db, database_dsn, driver, deployment, anvil, tmp_path):
    await realistic_mix(driver)
    config = write_config(tmp_path / "chains.yaml", database_dsn, [chain_config(deployment, [anvil.url])])
    first = run_cli(config, "run", "--once")
    assert first.returncode == 0, first.stderr
    before = await event_log(db)
    assert len(before) > 50
    second = run_cli(config, "run", "--once")
    assert second.returncode == 0, second.stderr
    assert await event_log(db) == before
    assert await db.fetchval("SELECT indexed_block FROM v_indexer_status") == await driver.w3.eth.block_number


async def test_run_follows_new_blocks_and_exits_zero_on_sigterm(db, database_dsn, driver, deployment, anvil, tmp_path):
    config = write_config(tmp_path / "chains.yaml", database_dsn, [chain_config(deployment, [anvil.url])])
    process = subprocess.Popen(
        [*INDEXER, "--config", str(config), "run"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        receipt = await driver.stake("native_v2", driver.accounts[1], "validator-one", 10**18)
        tx = receipt["transactionHash"].to_0x_hex()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not await db.fetchval(
            "SELECT count(*) FROM events WHERE tx_hash = $1", tx
        ):
            await asyncio.sleep(0.05)
        assert await db.fetchval("SELECT count(*) FROM events WHERE tx_hash = $1", tx) == 2

        listen = yaml.safe_load(config.read_text())["http"]["listen"]
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://{listen}/readyz") as ready:
                assert ready.status == 200, await ready.text()
            async with http.get(f"http://{listen}/metrics") as scrape:
                families = {f.name: f for f in text_string_to_metric_families(await scrape.text())}
        indexed = {s.labels["chain"]: s.value for s in families["indexer_indexed_block"].samples}
        cursor = await db.fetchval("SELECT block_number FROM chain_cursors WHERE chain = 'local'")
        assert indexed["local"] == cursor
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0, process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()


def assert_one_line_error(result: subprocess.CompletedProcess, code: int, *fragments: str) -> None:
    assert result.returncode == code, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("indexer: error:")]
    assert len(lines) == 1, result.stderr
    assert all(fragment in lines[0] for fragment in fragments), lines[0]
    assert "Traceback" not in result.stderr


def test_bad_config_is_one_line_naming_the_field(tmp_path, deployment):
    chain = chain_config(deployment, ["http://127.0.0.1:1"])
    chain["contracts"][0]["colour"] = "blue"
    config = write_config(tmp_path / "chains.yaml", "postgresql://127.0.0.1:1/x", [chain])
    assert_one_line_error(run_cli(config, "run", "--once"), 2, "chains[0].contracts[0].colour")


def test_missing_config_file_is_one_line(tmp_path):
    assert_one_line_error(run_cli(tmp_path / "nope.yaml", "run", "--once"), 2, "nope.yaml")


def test_unreachable_database_is_one_line(tmp_path, deployment, anvil):
    dsn = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    config = write_config(tmp_path / "chains.yaml", dsn, [chain_config(deployment, [anvil.url])])
    assert_one_line_error(run_cli(config, "run", "--once"), 1, "cannot connect to the database")


def test_unreachable_rpc_is_one_line_and_secrets_stay_hidden(tmp_path, database_dsn, deployment):
    url = f"http://127.0.0.1:{free_port()}/v2/abcdefghij0123456789secret"
    config = write_config(tmp_path / "chains.yaml", database_dsn, [chain_config(deployment, [url])])
    result = run_cli(config, "run", "--once")
    assert_one_line_error(result, 1, "failed on every RPC URL")
    assert "abcdefghij0123456789secret" not in result.stderr + result.stdout


def test_environment_expansion_reaches_the_process(tmp_path, database_dsn, deployment, anvil):
    config = write_config(tmp_path / "chains.yaml", "${TEST_INDEXER_DSN}", [chain_config(deployment, ["${TEST_RPC}"])])
    env = os.environ | {"TEST_INDEXER_DSN": database_dsn, "TEST_RPC": anvil.url}
    result = subprocess.run(
        [*INDEXER, "--config", str(config), "run", "--once"], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 0, result.stderr


async def test_one_process_indexes_an_evm_chain_and_a_social_feed(
    db, database_dsn, driver, deployment, anvil, tmp_path
):
    import json

    from eth_account import Account
    from eth_account.messages import encode_defunct

    staker = Account.create()
    record = {"staker": staker.address, "validator": "validator-one", "points": 250, "action": "delegate",
              "nonce": 1, "issued_at": int(time.time()) - 10, "deadline": int(time.time()) + 3600}  # fmt: skip
    message = "\n".join([
        "Klyntar social delegation", f"staker: {staker.address.lower()}", "validator: validator-one",
        "action: delegate", "points: 250", "nonce: 1", f"issued_at: {record['issued_at']}",
        f"deadline: {record['deadline']}",
    ])  # fmt: skip
    record["signature"] = "0x" + Account.sign_message(encode_defunct(text=message), staker.key).signature.hex()
    feed = tmp_path / "feed.jsonl"
    feed.write_text(json.dumps(record) + "\n")
    receipt = await driver.stake("native_v1", driver.accounts[1], "0x" + "a1" * 20, 10**18)
    social = {"name": "social", "kind": "social", "url": str(feed), "poll_interval_seconds": 0.2, "settle_seconds": 0}
    config = write_config(tmp_path / "chains.yaml", database_dsn, [chain_config(deployment, [anvil.url]), social])
    result = run_cli(config, "run", "--once")
    assert result.returncode == 0, result.stderr
    assert await db.fetchval("SELECT count(*) FROM events WHERE tx_hash = $1",
                             receipt["transactionHash"].to_0x_hex()) == 2  # fmt: skip
    row = await db.fetchrow("SELECT event_type, staker, pool, amount FROM events WHERE chain = 'social'")
    assert tuple(row) == ("social_delegate", staker.address.lower(), "validator-one", 250)
    points = await db.fetch("SELECT validator, asset, amount FROM v_validator_points ORDER BY asset")
    assert [tuple(r) for r in points] == [("0x" + "a1" * 20, "ETH", 10**18), ("validator-one", "SOCIAL", 250)]


async def test_a_failing_chain_shows_in_status_and_does_not_stop_the_others(
    db, database_dsn, driver, deployment, anvil, tmp_path
):
    dead = chain_config(deployment, [f"http://127.0.0.1:{free_port()}/v2/abcdefghij0123456789secret"], name="dead")
    config = write_config(tmp_path / "chains.yaml", database_dsn, [chain_config(deployment, [anvil.url]), dead])
    process = subprocess.Popen([*INDEXER, "--config", str(config), "run"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        receipt = await driver.stake("native_v1", driver.accounts[1], "0x" + "a1" * 20, 10**18)
        tx = receipt["transactionHash"].to_0x_hex()
        for _ in range(200):
            state = await db.fetchval("SELECT state FROM v_indexer_status WHERE chain = 'dead'")
            if state == "retrying" and await db.fetchval("SELECT count(*) FROM events WHERE tx_hash = $1", tx):
                break
            await asyncio.sleep(0.1)
        assert await db.fetchval("SELECT count(*) FROM events WHERE tx_hash = $1", tx) == 2  # the healthy chain goes on
        row = await db.fetchrow("SELECT state, error FROM v_indexer_status WHERE chain = 'dead'")
        assert row["state"] == "retrying" and "failed on every RPC URL" in row["error"]
        assert "secret" not in row["error"]
        status = run_cli(config, "status")
        assert status.returncode == 0, status.stderr
        assert "dead" in status.stdout and "retrying" in status.stdout
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0, process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()


async def test_a_chain_that_fails_for_good_stops_alone_and_the_process_exits_non_zero(
    db, database_dsn, driver, deployment, anvil, tmp_path
):
    # A plain NFT collection configured as a native v1 contract: it has none of the getters that tell the
    # variants apart, so the start check lets it pass, and its first Transfer (four topics) does not decode.
    wrong = chain_config(deployment, [anvil.url], name="wrong")
    wrong["contracts"] = [c | {"address": deployment.nft} for c in wrong["contracts"] if c["name"] == "klyeth_v1"]
    config = write_config(tmp_path / "chains.yaml", database_dsn, [chain_config(deployment, [anvil.url]), wrong])
    await driver.stake("erc721_v1", driver.accounts[1], "0x" + "a1" * 20, (await driver.fresh_token_ids(1))[0])
    process = subprocess.Popen([*INDEXER, "--config", str(config), "run"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        for _ in range(200):
            if await db.fetchval("SELECT state FROM v_indexer_status WHERE chain = 'wrong'") == "failed":
                break
            await asyncio.sleep(0.1)
        row = await db.fetchrow("SELECT state, error FROM v_indexer_status WHERE chain = 'wrong'")
        assert row["state"] == "failed" and "kind" in row["error"] and "version" in row["error"]
        receipt = await driver.stake("native_v1", driver.accounts[2], "0x" + "a1" * 20, 10**18)
        tx = receipt["transactionHash"].to_0x_hex()
        for _ in range(200):  # the healthy chain still follows new blocks
            if await db.fetchval("SELECT count(*) FROM events WHERE tx_hash = $1", tx):
                break
            await asyncio.sleep(0.1)
        assert await db.fetchval("SELECT count(*) FROM events WHERE tx_hash = $1 AND chain = 'local'", tx) == 2
        assert run_cli(config, "status").returncode == 1
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 1
        assert "indexer: error:" in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()


async def test_rewards_and_epochs_commands_record_and_refuse_with_one_line(
    db, tmp_path, database_dsn, deployment, anvil
):
    config = write_config(tmp_path / "chains.yaml", database_dsn, [chain_config(deployment, [anvil.url])])
    future = str(100_000)  # an epoch that ends centuries from now: no chain can have confirmed past it
    added = run_cli(config, "rewards", "add", "--epoch", future, "--validator", "validator-one", "--asset", "ETH",
                    "--amount", "1000")  # fmt: skip
    assert added.returncode == 0 and "reward recorded" in added.stdout, added.stderr
    refused = run_cli(config, "epochs", "close", future)  # no chain has confirmed past the epoch's end
    assert_one_line_error(refused, 1, "local")
    open_proof = run_cli(config, "proof", "--epoch", future, "--staker", "0x" + "11" * 20)
    assert open_proof.returncode == 1 and "indexer: error:" in open_proof.stderr

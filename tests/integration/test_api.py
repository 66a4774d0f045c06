"""The read-only /v1 API (SPEC 9) on real Postgres and a real anvil: an `indexer run` process end to end,
proofs verified on chain, bad inputs refused without touching anything, a role that cannot write."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from types import SimpleNamespace
from urllib.parse import quote

import aiohttp
import asyncpg
import pytest
import yarl
from openapi_spec_validator import validate
from prometheus_client import CollectorRegistry

from indexer.api.proofs import build_epoch_tree
from indexer.config import parse_config
from indexer.epochs import merkle
from indexer.epochs.close import add_reward, close_epoch, proof
from indexer.http import HttpServer
from indexer.localchain import artifacts
from indexer.localchain.anvil import free_port
from indexer.metrics import Metrics
from indexer.service import index_chains
from indexer.store.database import create_read_pool
from tests.conftest import TABLES
from tests.integration.conftest import INDEXER, chain_config, write_config

VALIDATOR = "0x" + "a1" * 20  # the v1 contracts' address pool
NAMED = "validator-one"  # the native v2 contract's string pool
LENGTH = 1000
ETHER = 10**18
SECRET = "hunter2-S3cretPassw0rd"
TRON_STAKER = "TJRabPrwbZy45sbavfcjinPJC18kjpRTv8"  # a valid base58check address, unknown here


@dataclass(frozen=True)
class Chain:
    """An epoch 0 closed over real stakes, an epoch 1 open with a reward; `late` staked after epoch 0 only."""

    config: dict
    genesis: int
    root: str
    stakers: list[str]  # with a leaf in epoch 0
    late: str
    withdrawing: str  # has a pending withdrawal


async def at(driver, ts: int) -> None:
    await driver.rpc("evm_setNextBlockTimestamp", [ts])


@pytest.fixture
async def chain(db, driver, deployment, anvil) -> Chain:
    await db.execute("TRUNCATE epoch_rewards, epochs, epoch_allocations")
    genesis = (await driver.w3.eth.get_block("latest"))["timestamp"] + 100
    document = {
        "epochs": {"genesis": datetime.fromtimestamp(genesis, UTC).isoformat(), "length_seconds": LENGTH},
        "validators": [{"id": VALIDATOR, "commission_bps": 1000}, {"id": NAMED, "commission_bps": 500}],
        "chains": [chain_config(deployment, [anvil.url], confirmations=0)],
    }
    config = parse_config(document)
    a, b, c, d, e = driver.accounts[1:6]
    await at(driver, genesis - 50)
    await driver.stake("native_v1", a, VALIDATOR, 100 * ETHER)
    await driver.stake("erc20_v1", c, VALIDATOR, 200 * ETHER)
    await driver.stake("native_v1", c, VALIDATOR, 10 * ETHER)
    await driver.stake("native_v2", d, NAMED, 10 * ETHER)
    await at(driver, genesis + 100)
    await driver.unstake("native_v2", d, NAMED, ETHER)  # a pending withdrawal for d
    await at(driver, genesis + 500)
    await driver.stake("native_v1", b, VALIDATOR, 50 * ETHER)
    await at(driver, genesis + LENGTH + 1)  # epoch 1: e has no leaf in epoch 0
    await driver.stake("native_v1", e, VALIDATOR, ETHER)
    await index_chains(config, db, asyncio.Event(), once=True)
    await add_reward(db, config, 0, VALIDATOR, "KLY", 3000)
    await add_reward(db, config, 0, VALIDATOR, "ETH", 10)
    await add_reward(db, config, 0, NAMED, "KLY", 1000)
    closed = await close_epoch(db, config, 0)
    await add_reward(db, config, 1, VALIDATOR, "KLY", 7)
    stakers = sorted({r[0] for r in await db.fetch("SELECT staker FROM v_epoch_leaves WHERE epoch = 0")})
    assert stakers == sorted(x.lower() for x in (a, b, c, d))
    return Chain(document, genesis, closed.root, stakers, e.lower(), d.lower())


@contextlib.asynccontextmanager
async def serving(db: asyncpg.Pool, read_pool: asyncpg.Pool) -> AsyncIterator[tuple[HttpServer, str]]:
    """The HTTP server in this process, with the API on `read_pool`."""
    watched = [SimpleNamespace(name="local", poll_interval_seconds=1.0)]
    server = HttpServer(Metrics(CollectorRegistry()), db, watched, read_pool=read_pool)
    port = await server.start("127.0.0.1", 0)
    try:
        yield server, f"http://127.0.0.1:{port}"
    finally:
        await server.stop()


@pytest.fixture
async def read_pool(database_dsn) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_read_pool(database_dsn)
    yield pool
    await pool.close()


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
        yield session


async def get(client: aiohttp.ClientSession, url: str, method: str = "GET") -> tuple[int, str, dict]:
    """(status, body text, body JSON) of `url`, sent exactly as written (already percent-encoded)."""
    async with client.request(method, yarl.URL(url, encoded=True)) as response:
        text = await response.text()
        assert response.content_type == "application/json", text
        return response.status, text, json.loads(text)


async def row_counts(db: asyncpg.Pool) -> dict[str, int]:
    return {t: await db.fetchval(f"SELECT count(*) FROM {t}") for t in TABLES}


async def staker_from_views(db: asyncpg.Pool, staker: str) -> dict:
    """What /v1/stakers/{staker} must answer, read from the views by hand."""
    positions = await db.fetch(
        "SELECT validator, asset, amount::text, share::text FROM v_staker_positions WHERE staker = $1", staker
    )
    balances = await db.fetch("SELECT chain, contract, balance::text FROM v_lst_balances WHERE holder = $1", staker)
    pending = await db.fetch(
        """SELECT chain, contract, amount::text, unlock_time, token_id::text
             FROM v_pending_withdrawals WHERE staker = $1""",
        staker,
    )
    return {
        "staker": staker,
        "positions": sorted(
            ({"validator": r[0], "asset": r[1], "amount": r[2], "share": r[3]} for r in positions),
            key=lambda p: (p["validator"], p["asset"]),
        ),
        "lst_balances": sorted(
            ({"chain": r[0], "contract": r[1], "balance": r[2]} for r in balances),
            key=lambda b: (b["chain"], b["contract"]),
        ),
        "pending_withdrawals": [
            {
                "chain": r[0],
                "contract": r[1],
                "amount": r[2],
                "token_id": r[4],
                "unlock_time": r[3].astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
            for r in pending
        ],  # fmt: skip
    }


async def deploy_claim(driver, root: str):
    """The MerkleClaim contract with epoch 0's root published."""
    w3, owner = driver.w3, driver.accounts[0]
    factory = w3.eth.contract(abi=artifacts.abi("MerkleClaim"), bytecode=artifacts.bytecode("MerkleClaim"))
    receipt = await w3.eth.wait_for_transaction_receipt(await factory.constructor().transact({"from": owner}))
    claim = w3.eth.contract(address=receipt["contractAddress"], abi=artifacts.abi("MerkleClaim"))
    await w3.eth.wait_for_transaction_receipt(
        await claim.functions.setRoot(0, bytes.fromhex(root[2:])).transact({"from": owner})
    )
    return claim


async def test_indexer_run_serves_epochs_proofs_validators_and_stakers(
    chain, db, database_dsn, driver, deployment, anvil, client, tmp_path
):
    """End to end: a real `indexer run` answers every endpoint from the chain and the close, reading through
    `database.read_dsn` (a login role of its own, member of indexer_reader, its password the secret to keep)."""
    reader = f"api_reader_{uuid.uuid4().hex[:8]}"
    await db.execute(f"CREATE ROLE {reader} LOGIN PASSWORD '{SECRET}'; GRANT indexer_reader TO {reader}")
    scheme, rest = database_dsn.split("://", 1)
    read_dsn = f"{scheme}://{reader}:{SECRET}@{rest.rpartition('@')[2]}"
    listen = f"127.0.0.1:{free_port()}"
    config = write_config(
        tmp_path / "chains.yaml",
        database_dsn,
        chain.config["chains"],
        database={"dsn": database_dsn, "read_dsn": read_dsn},
        http={"listen": listen},
        epochs=chain.config["epochs"],
        validators=chain.config["validators"],
    )
    process = subprocess.Popen(
        [*INDEXER, "--config", str(config), "run"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    base = f"http://{listen}"
    texts: list[str] = []
    try:
        for _ in range(400):
            with contextlib.suppress(aiohttp.ClientError):
                async with client.get(f"{base}/v1/validators") as response:
                    if response.status == 200:
                        break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the API did not answer")

        # Epochs, newest first, with their totals; pages by `before`.
        status, text, body = await get(client, f"{base}/v1/epochs")
        texts.append(text)
        start = datetime.fromtimestamp(chain.genesis, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        middle = datetime.fromtimestamp(chain.genesis + LENGTH, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        end = datetime.fromtimestamp(chain.genesis + 2 * LENGTH, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        first = {"epoch": 1, "start": middle, "end": end, "status": "open", "root": None, "totals": {"KLY": "7"}}
        zero = {
            "epoch": 0,
            "start": start,
            "end": middle,
            "status": "closed",
            "root": chain.root,
            "totals": {"ETH": "10", "KLY": "4000"},
        }
        assert (status, body) == (200, {"epochs": [first, zero]})
        assert (await get(client, f"{base}/v1/epochs?limit=1"))[2] == {"epochs": [first]}
        assert (await get(client, f"{base}/v1/epochs?limit=1&before=1"))[2] == {"epochs": [zero]}
        assert (await get(client, f"{base}/v1/epochs?before=0"))[2] == {"epochs": []}
        assert (await get(client, f"{base}/v1/epochs/0"))[:3:2] == (200, zero)
        assert (await get(client, f"{base}/v1/epochs/1"))[:3:2] == (200, first)

        # Every staker's proof: `indexer proof`'s JSON, verified on chain; a tampered amount is not.
        claim = await deploy_claim(driver, chain.root)
        verified = 0
        for staker in chain.stakers:
            status, text, body = await get(client, f"{base}/v1/epochs/0/proofs/{staker.upper().replace('0X', '0x')}")
            texts.append(text)
            assert status == 200 and body == await proof(db, 0, staker)
            assert body["staker"] == staker and body["root"] == chain.root and body["leaves"]
            account = driver.w3.to_checksum_address(staker)
            for leaf in body["leaves"]:
                path, amount = [bytes.fromhex(p[2:]) for p in leaf["proof"]], int(leaf["amount"])
                assert await claim.functions.claimable(0, account, leaf["asset"], amount, path).call()
                assert not await claim.functions.claimable(0, account, leaf["asset"], amount + 1, path).call()
                verified += 1
        assert verified == await db.fetchval("SELECT count(*) FROM v_epoch_leaves WHERE epoch = 0") >= 5
        two_assets = await db.fetchval(
            "SELECT staker FROM v_epoch_leaves WHERE epoch = 0 GROUP BY staker HAVING count(*) > 1 LIMIT 1"
        )
        cli = subprocess.run(
            [*INDEXER, "--config", str(config), "proof", "--epoch", "0", "--staker", two_assets],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert cli.returncode == 0, cli.stderr
        assert (await get(client, f"{base}/v1/epochs/0/proofs/{two_assets}"))[2] == json.loads(cli.stdout)

        # Validators and stakers: the rows of the views.
        status, text, body = await get(client, f"{base}/v1/validators")
        texts.append(text)
        rows = await db.fetch("SELECT validator, asset, amount::text, points::text FROM v_validator_points")
        assert status == 200
        assert sorted(tuple(v.values()) for v in body["validators"]) == sorted(tuple(r) for r in rows)
        assert {v["validator"] for v in body["validators"]} == {VALIDATOR, NAMED}
        for staker in (chain.withdrawing, chain.late, *chain.stakers):
            status, text, body = await get(client, f"{base}/v1/stakers/{staker}")
            texts.append(text)
            assert status == 200 and body == await staker_from_views(db, staker)
        body = (await get(client, f"{base}/v1/stakers/{chain.withdrawing}"))[2]
        assert [(p["validator"], p["amount"]) for p in body["positions"]] == [(NAMED, str(9 * ETHER))]
        assert body["pending_withdrawals"][0]["amount"] == str(ETHER) and body["lst_balances"]

        # Not there: 404 with a reason.
        for path in (
            "/v1/epochs/7",
            "/v1/epochs/7/proofs/" + chain.late,
            "/v1/epochs/1/proofs/" + chain.stakers[0],  # open
            "/v1/epochs/0/proofs/" + chain.late,  # no leaf in epoch 0
            "/v1/epochs/0/proofs/" + TRON_STAKER,
            "/v1/stakers/0x" + "99" * 20,
            "/v1/stakers/" + TRON_STAKER,
            "/v1/nothing",
        ):
            status, text, body = await get(client, base + path)
            texts.append(text)
            assert status == 404 and set(body) == {"error"} and body["error"], path
        assert "open" in (await get(client, f"{base}/v1/epochs/1/proofs/{chain.stakers[0]}"))[2]["error"]
        readers = await db.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = $1 AND application_name = 'indexer-api'", reader
        )
        assert readers >= 1  # the API's pool is on read_dsn
        async with client.get(f"{base}/metrics") as response:  # the operator's endpoints are as they were
            assert response.status == 200 and "indexer_head_block" in await response.text()
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
        await db.execute(f"DROP ROLE IF EXISTS {reader}")
    assert process.returncode == 0, stderr
    assert texts and not any(SECRET in t or reader in t for t in texts)


BAD = [
    "/v1/epochs/abc",
    "/v1/epochs/-1",
    "/v1/epochs/1.5",
    "/v1/epochs/" + quote("1;DROP TABLE events", safe=""),
    "/v1/epochs/" + quote("' OR 1=1--", safe=""),
    "/v1/epochs/99999999999999999999999",
    "/v1/epochs?limit=1000",
    "/v1/epochs?limit=101",
    "/v1/epochs?limit=0",
    "/v1/epochs?limit=-5",
    "/v1/epochs?limit=" + quote("1;DROP TABLE events", safe=""),
    "/v1/epochs?before=" + quote("' OR 1=1--", safe=""),
    "/v1/epochs?before=-1",
    "/v1/epochs?limit=1&limit=2",
    "/v1/epochs?" + quote("' OR 1=1--", safe="") + "=1",
    "/v1/epochs/0?x=1",
    "/v1/epochs/-1/proofs/0x" + "11" * 20,
    "/v1/epochs/" + quote("0 OR 1=1", safe="") + "/proofs/0x" + "11" * 20,
    "/v1/epochs/0/proofs/0x1234",
    "/v1/epochs/0/proofs/0x" + "g1" * 20,
    "/v1/epochs/0/proofs/" + quote("' OR 1=1--", safe=""),
    "/v1/epochs/0/proofs/" + quote("0x" + "11" * 20 + "';DROP TABLE events;--", safe=""),
    "/v1/epochs/0/proofs/" + TRON_STAKER[:-1] + "9",  # bad checksum
    "/v1/validators?limit=1",
    "/v1/validators?" + quote("1;DROP TABLE events", safe=""),
    "/v1/stakers/0x" + "11" * 19,
    "/v1/stakers/" + quote("' OR 1=1--", safe=""),
    "/v1/stakers/" + quote("1;DROP TABLE events", safe=""),
    "/v1/stakers/T" + "0" * 33,
]


async def test_malformed_inputs_answer_400_json_and_change_nothing(chain, db, read_pool, client):
    before = await row_counts(db)
    async with serving(db, read_pool) as (_, base):
        for path in BAD:
            status, text, body = await get(client, base + path)
            assert status == 400, (path, text)
            assert set(body) == {"error"} and body["error"], path
            assert "Traceback" not in text and "asyncpg" not in text
        async with client.post(f"{base}/v1/epochs") as response:  # read-only
            assert response.status == 405 and set(await response.json()) == {"error"}
    assert await row_counts(db) == before
    assert before["events"] > 0 and before["epoch_allocations"] > 0


async def test_a_proof_of_a_cached_closed_epoch_reads_nothing(chain, db, database_dsn, client):
    """After the first proof, the epoch's tree is in memory: with the read pool closed, proofs still answer."""
    pool = await create_read_pool(database_dsn)
    async with serving(db, pool) as (server, base):
        first = await asyncio.gather(*(get(client, f"{base}/v1/epochs/0/proofs/{s}") for s in chain.stakers * 5))
        assert {status for status, _, _ in first} == {200}
        await pool.close()  # any query now fails
        for staker in chain.stakers:
            status, _, body = await get(client, f"{base}/v1/epochs/0/proofs/{staker}")
            assert status == 200 and body == await proof(db, 0, staker)
        assert (await get(client, f"{base}/v1/epochs/0/proofs/{chain.late}"))[0] == 404  # no leaf, from the cache
        status, text, body = await get(client, f"{base}/v1/epochs/0")
        assert (status, body) == (503, {"error": "database unavailable"})


async def test_the_cached_tree_gives_merkle_index_of_for_every_leaf(chain, db):
    rows = [(s, a, int(x)) for s, a, x in await db.fetch("SELECT staker, asset, amount FROM v_epoch_leaves")]
    tree = build_epoch_tree(0, chain.root, rows)
    assert tree.index and all(merkle.index_of(tree.tree, leaf) == i for leaf, i in tree.index.items())


async def test_the_read_pool_is_the_reader_role_with_a_statement_timeout_and_cannot_write(read_pool, db):
    before = await row_counts(db)
    async with read_pool.acquire() as conn:
        assert await conn.fetchval("SELECT current_user") == "indexer_reader"
        assert await conn.fetchval("SHOW statement_timeout") == "2s"
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
            await conn.execute(
                """INSERT INTO epoch_rewards (epoch, validator, asset, amount) VALUES (99, 'v', 'KLY', 1)"""
            )
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
            await conn.execute("DELETE FROM events")
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
            await conn.fetch("SELECT * FROM epoch_allocations")  # tables are not granted, only views
    async with read_pool.acquire() as conn:  # released and acquired again: still the reader
        assert await conn.fetchval("SELECT current_user") == "indexer_reader"
    assert await row_counts(db) == before


async def test_a_database_that_fails_answers_503_and_shows_no_dsn(db, client):
    port = free_port()  # nothing listens there
    secret_dsn = f"postgresql://indexer:{SECRET}@127.0.0.1:{port}/indexer"
    pool = await create_read_pool(secret_dsn)
    try:
        async with serving(db, pool) as (_, base):
            for path in ("/v1/epochs", "/v1/epochs/0", "/v1/epochs/0/proofs/0x" + "11" * 20, "/v1/validators"):
                status, text, body = await get(client, base + path)
                assert (status, body) == (503, {"error": "database unavailable"}), path
                assert SECRET not in text and str(port) not in text
    finally:
        await pool.close()


async def test_an_unexpected_error_answers_500_internal_error(db, read_pool, client, monkeypatch):
    from indexer.store import api as store

    async def broken(reader):
        raise RuntimeError(f"postgresql://indexer:{SECRET}@db.internal/indexer went wrong")

    monkeypatch.setattr(store, "validators", broken)
    async with serving(db, read_pool) as (_, base):
        status, text, body = await get(client, f"{base}/v1/validators")
    assert (status, body) == (500, {"error": "internal error"}) and SECRET not in text


async def test_the_openapi_document_validates_and_names_every_v1_route(db, read_pool, client):
    async with serving(db, read_pool) as (server, base):
        status, _, document = await get(client, f"{base}/v1/openapi.json")
        routed = {r.canonical for r in server.app.router.resources() if r.canonical.startswith("/v1")}
    assert status == 200
    validate(document)
    assert set(document["paths"]) == routed
    assert len(routed) == 6

"""The TRON source against the TRON node test peer, into a real Postgres event log."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
from structlog.testing import capture_logs

from indexer.chains.tron import API_KEY_HEADER, TronSource
from indexer.config import parse_config
from indexer.decode.calldata import pool_hash
from indexer.watcher import Watcher
from tests import tron_node as tn

TRX = 10**6
TRX_V1 = tn.random_address("native v1")
TRX_V2 = tn.random_address("native v2")
OTHER = tn.random_address("not configured")
ALICE, BOB, CAROL = (tn.random_address(n) for n in ("alice", "bob", "carol"))
POOL = tn.random_address("validator")
ZERO = "T9yD14Nj9j7xAB4dbGeiX9h8unkKHxuWwb"  # base58 of 41 + 20 zero bytes
API_KEY = "tron-test-key-4f9c2a7e1b"
EVENT_LOG = """SELECT block_number, block_hash, tx_hash, log_index, event_type, contract, staker, counterparty, pool,
                      pool_hash, amount, unlock_time, asset
                 FROM events WHERE chain = $1 ORDER BY block_number, log_index"""


@pytest.fixture
async def node() -> AsyncIterator[tn.TronNode]:
    peer = tn.TronNode(solid_lag=0)
    await peer.start()
    yield peer
    await peer.stop()


def tron_chain(urls: list[str], name: str = "tron", **overrides):
    contracts = [
        {"name": "trx", "kind": "native", "version": 1, "address": TRX_V1, "start_block": 0, "asset": "TRX"},
        {"name": "trx2", "kind": "native", "version": 2, "address": TRX_V2, "start_block": 0, "asset": "TRX"},
    ]
    for contract in contracts:
        contract["decimals"] = 6
    document = {"kind": "tron", "name": name, "rpc": urls, "confirmations": 0, "contracts": contracts} | overrides
    return parse_config({"chains": [document]}).chains[0]


async def index_once(db, chain) -> TronSource:
    source = TronSource(chain)
    try:
        await Watcher(source, chain, db).run(asyncio.Event(), once=True)
    finally:
        await source.close()
    return source


def script(node: tn.TronNode) -> None:
    """Blocks 1..6: stakes, a transfer, an unstake, string-pool stakes and a withdrawal, and a foreign log."""
    node.mine([tn.stake(TRX_V1, ALICE, POOL, 100 * TRX), tn.stake(OTHER, ALICE, POOL, 1)])
    node.mine([tn.stake(TRX_V1, BOB, POOL, 7 * TRX), tn.transfer(TRX_V1, ALICE, CAROL, 30 * TRX)])
    node.mine([], count=2)
    node.mine([tn.unstake(TRX_V1, CAROL, POOL, 30 * TRX), tn.stake_string(TRX_V2, ALICE, "validator-one", 5 * TRX)])
    node.mine([tn.unstake_request_string(TRX_V2, ALICE, "validator-one", 2 * TRX, 1_700_300_000)])
    node.mine([tn.withdrawal(TRX_V2, ALICE, 2 * TRX)])


def rows(records) -> list[tuple]:
    return [
        (r["block_number"], r["event_type"], r["contract"], r["staker"], r["counterparty"], r["pool"], int(r["amount"]))
        for r in records
    ]


async def test_backfill_stores_exactly_the_scripted_events_with_base58_addresses(db, node):
    script(node)
    await index_once(db, tron_chain([node.url]))
    events = await db.fetch(EVENT_LOG, "tron")
    assert rows(events) == [
        (1, "transfer", TRX_V1, ZERO, ALICE, None, 100 * TRX),  # mint
        (1, "stake", TRX_V1, ALICE, None, POOL, 100 * TRX),
        (2, "transfer", TRX_V1, ZERO, BOB, None, 7 * TRX),
        (2, "stake", TRX_V1, BOB, None, POOL, 7 * TRX),
        (2, "transfer", TRX_V1, ALICE, CAROL, None, 30 * TRX),
        (5, "transfer", TRX_V1, CAROL, ZERO, None, 30 * TRX),  # burn
        (5, "unstake", TRX_V1, CAROL, None, POOL, 30 * TRX),
        (5, "stake", TRX_V2, ALICE, None, "validator-one", 5 * TRX),
        (6, "unstake_request", TRX_V2, ALICE, None, "validator-one", 2 * TRX),
        (7, "withdrawal", TRX_V2, ALICE, None, None, 2 * TRX),
    ]
    block1 = node.chain[1]
    first = events[0]
    assert (first["block_hash"], first["tx_hash"]) == ("0x" + block1.block_id, "0x" + block1.txs[0].tx_id)
    # log index counts across the block: the foreign contract's log (index 2, 3) is skipped, not renumbered
    assert [r["log_index"] for r in events if r["block_number"] in (1, 2, 5)] == [0, 1, 0, 1, 2, 0, 1, 2]
    assert {r["asset"] for r in events} == {"TRX"}
    assert events[7]["pool_hash"] == pool_hash("validator-one")
    assert events[8]["unlock_time"].timestamp() == 1_700_300_000
    assert await db.fetchval("SELECT name FROM pool_names WHERE pool_hash = $1", pool_hash("validator-one")) == (
        "validator-one"
    )
    cursor = await db.fetchrow("SELECT block_number, block_hash FROM chain_cursors WHERE chain = 'tron'")
    assert (cursor["block_number"], cursor["block_hash"]) == (node.head.number, "0x" + node.head.block_id)


async def test_a_fork_of_the_last_two_blocks_leaves_only_the_canonical_events(db, node):
    script(node)
    chain = tron_chain([node.url])
    await index_once(db, chain)
    orphaned = [tx.tx_id for block in node.chain[-2:] for tx in block.txs]
    assert await db.fetchval("SELECT count(*) FROM events WHERE tx_hash = ANY($1)", ["0x" + t for t in orphaned]) == 2
    node.fork(
        2,
        [
            [tn.stake(TRX_V1, CAROL, POOL, 11 * TRX)],
            [],
            [tn.stake_string(TRX_V2, BOB, "validator-two", 3 * TRX)],
        ],
    )
    await index_once(db, chain)
    assert await db.fetchval("SELECT count(*) FROM events WHERE tx_hash = ANY($1)", ["0x" + t for t in orphaned]) == 0
    reorg = await db.fetchrow("SELECT depth, events_removed FROM reorgs WHERE chain = 'tron'")
    assert (reorg["depth"], reorg["events_removed"]) == (2, 2)

    await index_once(db, tron_chain([node.url], name="fresh"))
    followed, fresh = await db.fetch(EVENT_LOG, "tron"), await db.fetch(EVENT_LOG, "fresh")
    assert [tuple(r) for r in followed] == [tuple(r) for r in fresh]
    assert rows(followed)[-3:] == [
        (6, "transfer", TRX_V1, ZERO, CAROL, None, 11 * TRX),
        (6, "stake", TRX_V1, CAROL, None, POOL, 11 * TRX),
        (8, "stake", TRX_V2, BOB, None, "validator-two", 3 * TRX),
    ]
    for number, block_hash in {(r["block_number"], r["block_hash"]) for r in followed}:  # nothing orphaned remains
        assert block_hash == "0x" + node.chain[number].block_id


def _dead_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


async def test_api_key_is_sent_never_logged_and_rate_limits_and_dead_urls_are_retried(db, node, capsys):
    script(node)
    node.fail_next("/wallet/getblockbynum", 429, 429)
    node.fail_next("/wallet/gettransactioninfobyblocknum", 429)
    node.fail_next("/wallet/getnowblock", 503)
    chain = tron_chain([_dead_url(), node.url], api_key=API_KEY)
    with capture_logs() as logs:
        await index_once(db, chain)
    assert await db.fetchval("SELECT count(*) FROM events WHERE chain = 'tron'") == 10
    assert sorted(status for _, status in node.served_errors) == [429, 429, 429, 503]
    assert node.requests and all(headers.get(API_KEY_HEADER) == API_KEY for _, headers, _ in node.requests)
    assert any(entry["event"] == "tron_rate_limited" for entry in logs)
    captured = capsys.readouterr()
    assert API_KEY not in repr(logs) + captured.out + captured.err
    assert API_KEY not in repr(chain)


async def test_solidified_height_and_head(node):
    node.solid_lag = 2  # the solidified block trails the head
    script(node)
    source = TronSource(tron_chain([node.url]))
    try:
        assert await source.solidified() == node.head.number - 2
        head, block = await source.poll(3)
        assert head == node.head.number and block.hash == "0x" + node.chain[3].block_id
        assert (await source.poll(head + 1))[1] is None
        assert set(await source.blocks([1, 2, head + 5])) == {1, 2}
    finally:
        await source.close()


async def test_once_stops_at_the_solidified_block(db, node):
    node.solid_lag = 2
    script(node)
    await index_once(db, tron_chain([node.url]))
    assert await db.fetchval("SELECT block_number FROM chain_cursors WHERE chain = 'tron'") == node.head.number - 2


async def test_one_process_runs_an_evm_chain_a_tron_chain_and_a_social_feed(
    db, database_dsn, node, driver, deployment, anvil, tmp_path
):
    from tests.integration.conftest import INDEXER, chain_config, write_config

    script(node)
    receipt = await driver.stake("native_v1", driver.accounts[1], "0x" + "a1" * 20, 10**18)
    feed = tmp_path / "feed.jsonl"
    feed.write_text("")
    tron = {"kind": "tron", "name": "tron", "rpc": [node.url], "confirmations": 0,
            "contracts": [{"name": "trx", "kind": "native", "version": 1, "address": TRX_V1, "start_block": 0,
                           "asset": "TRX", "decimals": 6}]}  # fmt: skip
    social = {"name": "social", "kind": "social", "url": str(feed)}
    config = write_config(tmp_path / "chains.yaml", database_dsn, [chain_config(deployment, [anvil.url]), tron, social])
    process = await asyncio.create_subprocess_exec(*INDEXER, "--config", str(config), "run", "--once",
                                                   stderr=asyncio.subprocess.PIPE)  # fmt: skip
    _, stderr = await asyncio.wait_for(process.communicate(), 60)  # the TRON peer answers meanwhile
    assert process.returncode == 0, stderr.decode()[-2000:]
    chains = {r["chain"]: r["n"] for r in await db.fetch("SELECT chain, count(*) AS n FROM events GROUP BY chain")}
    assert chains["local"] == 2 and chains["tron"] >= 6
    assert (
        await db.fetchval("SELECT count(*) FROM events WHERE tx_hash = $1", receipt["transactionHash"].to_0x_hex()) == 2
    )
    assert await db.fetchval("SELECT state FROM v_indexer_status WHERE chain = 'social'") in ("ok", None)
    assert await db.fetchval("SELECT count(*) FROM v_indexer_status WHERE chain IN ('local', 'tron', 'social')") == 3

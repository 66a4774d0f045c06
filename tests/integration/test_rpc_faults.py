"""RPC failover and retry through a fault-injecting proxy in front of a real anvil: the event log stays exact.

Each test indexes through `FaultProxy` (tests/integration/fault_proxy.py) and compares the
result with an index of the same chain read straight from anvil under the name `direct`.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import sys
from collections.abc import Iterator

import pytest
import structlog

from indexer.chains.evm import EvmSource
from indexer.chains.rpc import RpcClient
from indexer.config import parse_config
from indexer.localchain import realistic_mix
from indexer.localchain.anvil import free_port
from indexer.logs import configure_logging
from indexer.service import build_source
from indexer.watcher import Watcher
from tests.integration.conftest import chain_config, indexed_to_head, until
from tests.integration.fault_proxy import Fault, FaultPlan, FaultProxy, Rule

ETHER = 10**18
POOL = "0x" + "a1" * 20
KEEP_BLOCKS = 64  # the watcher's header window with confirmations 0 (max(2 * confirmations, 64))
# Many small requests, and a client timeout the proxy's TIMEOUT fault outlasts.
FAULTY = {"max_block_range": 4, "initial_block_range": 2, "request_timeout_seconds": 1, "confirmations": 0}
FAST_FOLLOW = FAULTY | {"poll_interval_seconds": 0.05}
API_KEY = "k3y_9f8e7d6c5b4a39281706f5e4d3c2b1a0"  # looks like a provider key: redact_url must hide it


def chain_for(deployment, urls: list[str], name: str = "local", **overrides):
    return parse_config({"chains": [chain_config(deployment, urls, name=name, **overrides)]}).chains[0]


def quick_retry_source(chain) -> EvmSource:
    """`build_source`, with the client's backoff capped at 0.15 s (else about 0.5 s of jitter per retry)."""
    rpc = RpcClient(chain.name, chain.rpc, timeout=chain.request_timeout_seconds, max_backoff=0.15)
    return EvmSource(chain, rpc, {})


async def index_once(db, chain, source: EvmSource | None = None) -> None:
    source = source or build_source(chain, {})
    try:
        await Watcher(source, chain, db).run(asyncio.Event(), once=True)
    finally:
        await source.close()


@contextlib.asynccontextmanager
async def following(db, chain):
    """A watcher following the head in the background; stopped (and its source closed) on exit."""
    source = build_source(chain, {})
    stop = asyncio.Event()
    task = asyncio.create_task(Watcher(source, chain, db).run(stop, once=False))
    try:
        yield task
    finally:
        stop.set()
        try:
            await asyncio.wait_for(task, 10)
        finally:
            await source.close()


async def event_log(db, chain: str) -> list[tuple]:
    """Every column of every event but `chain`, in chain order."""
    columns = await db.fetch(
        """SELECT column_name FROM information_schema.columns
            WHERE table_schema = current_schema() AND table_name = 'events' AND column_name <> 'chain'
            ORDER BY ordinal_position"""
    )
    names = ", ".join(f'"{c["column_name"]}"' for c in columns)
    rows = await db.fetch(f"SELECT {names} FROM events WHERE chain = $1 ORDER BY block_number, log_index", chain)
    return [tuple(r) for r in rows]


async def assert_equals_direct_index(db, deployment, anvil, chain: str = "local") -> list[tuple]:
    """Index the chain straight from anvil as `direct`; the two logs and cursors must be identical."""
    await index_once(db, chain_for(deployment, [anvil.url], name="direct", confirmations=0))
    through_proxy, direct = await event_log(db, chain), await event_log(db, "direct")
    assert direct, "the direct index found no events: the comparison would prove nothing"
    assert through_proxy == direct
    cursors = await db.fetch(
        "SELECT chain, block_number, block_hash FROM chain_cursors WHERE chain IN ($1, 'direct')", chain
    )
    assert len({(c["block_number"], c["block_hash"]) for c in cursors}) == 1 and len(cursors) == 2
    return direct


async def test_every_fault_kind_is_survived_and_the_log_is_exact(db, driver, deployment, anvil):
    await realistic_mix(driver)
    transport = [f for f in Fault if f is not Fault.STALE_LOGS]
    # Each transport fault twice, one every other request: kind i armed on requests 2i+1 and 2i+17 (fired on the
    # next request it fits); stale logs armed on the 2nd and 5th eth_getLogs requests (fired on the next answer
    # holding logs). At most 3 faults in a row per call (the client gives up after 6 attempts), and only 2 stale
    # answers (`run --once` gives up after 5 bad answers).
    rules = [Rule(fault, start=2 * i, every=2 * len(transport), times=2) for i, fault in enumerate(transport)]
    rules.append(Rule(Fault.STALE_LOGS, method="eth_getLogs", start=1, every=3, times=2))
    plan = FaultPlan(rules, max_faults_per_call=3)
    async with FaultProxy(anvil.url, plan, hold_seconds=1.5) as proxy:
        chain = chain_for(deployment, [proxy.url], **FAULTY)
        await index_once(db, chain, quick_retry_source(chain))

    assert {fault: proxy.injected[fault] for fault in Fault} == {fault: 2 for fault in Fault}, proxy.injections
    assert plan.done
    assert proxy.requests > 2 * proxy.injected.total()  # faults interleaved with good answers
    direct = await assert_equals_direct_index(db, deployment, anvil)
    assert len(direct) > 100


@pytest.mark.parametrize("dead", ["http_500", "closed_port"])
async def test_failover_to_the_healthy_url_when_the_first_is_dead(db, driver, deployment, anvil, dead):
    await driver.stake("native_v1", driver.accounts[1], POOL, ETHER)
    await driver.stake("native_v2", driver.accounts[2], "validator-one", 2 * ETHER)
    await driver.mine(30)
    await driver.stake("native_v1", driver.accounts[2], POOL, 3 * ETHER)
    async with contextlib.AsyncExitStack() as stack:
        healthy = await stack.enter_async_context(FaultProxy(anvil.url))
        if dead == "http_500":
            broken = await stack.enter_async_context(FaultProxy(anvil.url, FaultPlan.always(Fault.HTTP_500)))
            first_url = broken.url
        else:
            first_url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
        await index_once(db, chain_for(deployment, [first_url, healthy.url], **FAULTY))
        if dead == "http_500":
            # tried once, then never again in this run (rotation, then its 30 s cool-down): no request is wasted
            assert broken.requests == broken.injected[Fault.HTTP_500] == 1
            assert broken.forwarded == 0
        assert healthy.forwarded == healthy.requests > 10
    await assert_equals_direct_index(db, deployment, anvil)


async def test_stale_logs_are_rejected_and_never_stored(db, driver, deployment, anvil):
    a, b = driver.accounts[1], driver.accounts[2]
    await driver.stake("native_v1", a, POOL, ETHER)
    await driver.stake("native_v2", b, "validator-two", 2 * ETHER)
    await driver.stake("native_v1", b, POOL, 3 * ETHER)
    await driver.mine(KEEP_BLOCKS + 6)  # these logs now lie below the header window: checked via fetched headers
    head_before = await driver.w3.eth.block_number

    node_hashes: dict[int, str] = {}
    stored_wrong: list[tuple[int, str, str]] = []

    async def check_stored() -> None:
        """Every stored event's block hash is the node's block hash at that height."""
        rows = await db.fetch("SELECT DISTINCT block_number, block_hash FROM events")
        for number, block_hash in ((r["block_number"], r["block_hash"]) for r in rows):
            if number not in node_hashes:
                node_hashes[number] = (await driver.w3.eth.get_block(number))["hash"].to_0x_hex()
            if node_hashes[number] != block_hash:
                stored_wrong.append((number, block_hash, node_hashes[number]))

    async def watch_store(done: asyncio.Event) -> None:
        while not done.is_set():
            await check_stored()
            await asyncio.sleep(0.01)

    # The first 5 eth_getLogs answers holding logs are stale (more than `--once` would tolerate: follow mode).
    plan = FaultPlan([Rule(Fault.STALE_LOGS, method="eth_getLogs", times=5)], max_faults_per_call=None)
    done = asyncio.Event()
    async with FaultProxy(anvil.url, plan) as proxy:
        monitor = asyncio.create_task(watch_store(done))
        try:
            async with following(db, chain_for(deployment, [proxy.url], **FAST_FOLLOW)) as task:
                await until(lambda: indexed_to_head(db, driver))
                await check_stored()
                assert stored_wrong == []
                assert proxy.injected[Fault.STALE_LOGS] == 5 and plan.done
                below_window = list(proxy.stale_blocks)
                assert below_window and max(below_window) <= head_before - KEEP_BLOCKS

                # New events at the head: their headers travel with eth_getLogs in the same batch.
                proxy.plan = near_head = FaultPlan(
                    [Rule(Fault.STALE_LOGS, method="eth_getLogs", times=3)], max_faults_per_call=None
                )
                await driver.stake("native_v1", a, POOL, 4 * ETHER)
                await driver.stake("native_v2", a, "validator-three", 5 * ETHER)
                await until(lambda: indexed_to_head(db, driver))
                await check_stored()
                assert stored_wrong == []
                assert near_head.done and proxy.injected[Fault.STALE_LOGS] == 8
                in_window = proxy.stale_blocks[len(below_window) :]
                assert in_window and min(in_window) > head_before
                assert not task.done()
        finally:
            done.set()
            await monitor
    await check_stored()
    assert stored_wrong == []
    assert await db.fetchval("SELECT count(*) FROM reorgs") == 0  # a stale answer is not mistaken for a reorg
    direct = await assert_equals_direct_index(db, deployment, anvil)
    assert len(direct) == 10  # 5 stakes, each a mint Transfer and a StakeOccured
    await check_stored()  # the direct index too
    assert stored_wrong == [] and len(node_hashes) == 5


@contextlib.contextmanager
def captured_logs() -> Iterator[io.StringIO]:
    """The indexer's own log output (configure_logging at debug) into a buffer; the old config restored after."""
    buffer = io.StringIO()
    saved = structlog.get_config()
    real_stderr, sys.stderr = sys.stderr, buffer
    try:
        configure_logging("debug")
    finally:
        sys.stderr = real_stderr
    structlog.configure(cache_logger_on_first_use=False)  # loggers bound in this test only
    try:
        yield buffer
    finally:
        structlog.configure(**saved)


async def test_rpc_url_secrets_never_reach_the_logs(db, driver, deployment, anvil, caplog):
    caplog.set_level(logging.WARNING)
    await driver.stake("native_v1", driver.accounts[1], POOL, ETHER)
    await driver.stake("native_v2", driver.accounts[2], "validator-one", ETHER)
    # Six faults in a row on the first call exhaust the client's attempts: the watcher logs the RpcError and retries.
    kinds = [Fault.HTTP_500, Fault.HTTP_429, Fault.TRUNCATED, Fault.RATE_LIMIT_ERROR, Fault.HTTP_503, Fault.HTTP_502]
    plan = FaultPlan([Rule(kind, start=i) for i, kind in enumerate(kinds)], max_faults_per_call=None)
    async with FaultProxy(anvil.url, plan) as proxy:
        url = f"{proxy.url}/v3/{API_KEY}"
        with captured_logs() as logs:
            async with following(db, chain_for(deployment, [url], **FAST_FOLLOW)):
                await until(lambda: indexed_to_head(db, driver))
        assert [i.fault for i in proxy.injections] == kinds and [i.request for i in proxy.injections] == [*range(1, 7)]

    text = logs.getvalue()
    assert API_KEY not in text
    assert API_KEY not in caplog.text
    retries = [line for line in text.splitlines() if '"event": "retrying"' in line]
    assert len(retries) == 1, text
    assert f"{proxy.url}/v3/***" in retries[0] and "HTTP 502" in retries[0]  # the failing URL, redacted
    assert '"event": "batch_indexed"' in text  # the capture saw the whole run
    await assert_equals_direct_index(db, deployment, anvil)


async def test_every_request_is_counted_and_a_node_error_answer_by_its_own_kind(anvil):
    """Error objects (a call the node refused) are answers, not transport failures: counted apart, not retried."""
    from indexer.chains.rpc import JsonRpcError

    seen: list[tuple[str, str | None]] = []
    rpc = RpcClient("local", [anvil.url], observer=lambda method, url, seconds, kind: seen.append((method, kind)))
    try:
        assert int(await rpc.request("eth_chainId", []), 16) == 31337
        with pytest.raises(JsonRpcError, match="eth_noSuchMethod"):
            await rpc.request("eth_noSuchMethod", [])
        answers = await rpc.batch([("eth_blockNumber", []), ("eth_noSuchMethod", [])])
        assert isinstance(answers[1], JsonRpcError)
    finally:
        await rpc.close()
    assert seen == [
        ("eth_chainId", None),
        ("eth_noSuchMethod", "error_object"),
        ("batch:eth_blockNumber", "error_object"),
    ]
